/* The server side of secure aggregation as a state machine fed with client
 * messages (Bonawitz et al. CCS 2017, Fig. 4). Every message is checked against
 * what the protocol allows at that point; a bad one is refused and its sender
 * dropped, never trusted. Unmasking rebuilds the survivors' self-mask seeds and
 * the dropped clients' mask keys, then regenerates and subtracts those masks in
 * parallel over coordinate blocks (any thread count gives the same sum). */
#include <stdlib.h>
#include <sodium.h>
#include "federate/crypto.h"
#include "federate/error.h"
#include "federate/pool.h"
#include "secagg_internal.h"

enum {
    F_ADV = 1,       /* U0: advertised keys */
    F_SHARED = 2,    /* U1: sent shares */
    F_MASKED = 4,    /* sent a masked input */
    F_ANSWERED = 8,  /* U3: answered the reveal request */
    F_OFFENDER = 16, /* refused for a bad message: out of the round */
    F_ACCUSED = 32,  /* a neighbour could not decrypt its share */
    F_IN = 64,       /* U2: input in the sum */
    F_DROPPED = 128, /* U1 \ U2: its pairwise masks must be removed */
};

struct fed_secagg_server {
    fed_secagg_cfg cfg;
    sa_ring ring;
    sa_graph g;
    size_t L;
    int n, k, stage;
    fed_pool *pool;
    uint8_t *f;
    uint8_t (*c_pk)[32], (*s_pk)[32], (*commit)[32];
    int *sh_m;           /* stage 1: number of ciphertexts from each client */
    uint32_t **sh_to;    /* their recipients (ascending) */
    uint8_t **sh_ct;     /* and the ciphertexts */
    uint8_t **y;         /* stage 2: masked inputs (wire format), summed when the stage closes */
    uint32_t **compl;    /* complaints: peers whose share did not decrypt */
    int *ncompl;
    fed_shamir_share **ans_b, **ans_s; /* stage 3: shares each responder revealed */
    uint32_t **ans_bo, **ans_so;       /* and whose they are */
    int *nans_b, *nans_s;
    void *acc;
    uint64_t *result;
    /* consistency check (cfg.consistency only) */
    uint8_t (*adv_sig)[SA_SIG]; /* stage 0: each advertisement's signature, forwarded in key lists */
    uint8_t (*chk_sig)[SA_SIG]; /* each client's signature on U3 */
    uint8_t *signed_u3;         /* 1: chk_sig[u] verified */
    uint8_t *u3_wire;           /* U3 as sent: ascending u32 ids */
    uint32_t nu3;
    uint8_t *u3_tbs;            /* the bytes each signature covers */
    size_t u3_tbs_len;
};

/* What the current stage index means: without the check the index itself,
 * with it 3 is K_CHECK and 4, 5 are unmasking and done. */
enum { K_ADV = 0, K_SHARE = 1, K_MASKED = 2, K_UNMASK = 3, K_DONE = 4, K_CHECK = 5 };

static int kind_of(const fed_secagg_server *s, int stage) {
    if (stage < 0 || !s->cfg.consistency || stage < 3) return stage;
    return stage == 3 ? K_CHECK : stage == 4 ? K_UNMASK : stage == 5 ? K_DONE : stage + 1;
}

static int kind(const fed_secagg_server *s) { return kind_of(s, s->stage); }

/* index of the last (unmasking) stage */
static int last_stage(const fed_secagg_server *s) { return fed_secagg_stage_count(&s->cfg) - 1; }

static int nbrs_alloc(fed_secagg_server *s, uint32_t **out) {
    *out = malloc(((size_t)s->k + 1) * sizeof **out);
    return *out ? 0 : fed_error(FED_ENOMEM, "secagg server: neighbour list");
}

int fed_secagg_server_new(fed_secagg_server **out, const fed_secagg_cfg *cfg, size_t L) {
    *out = NULL;
    int rc = fed_secagg_cfg_check(cfg);
    if (rc) return rc;
    if (sodium_init() < 0) return fed_error(FED_EINTERNAL, "secagg server: libsodium failed to initialize");
    fed_secagg_server *s = calloc(1, sizeof *s);
    if (!s) return fed_error(FED_ENOMEM, "secagg server");
    s->cfg = *cfg;
    s->n = cfg->n;
    s->L = L;
    sa_ring_init(&s->ring, cfg);
    if ((rc = sa_graph_init(&s->g, cfg->n, cfg->degree, cfg->graph_seed))) {
        free(s);
        return rc;
    }
    s->k = sa_graph_degree(&s->g);
    size_t n = (size_t)s->n;
    s->f = calloc(n, 1);
    s->c_pk = calloc(n, 32);
    s->s_pk = calloc(n, 32);
    s->commit = calloc(n, 32);
    s->sh_m = calloc(n, sizeof *s->sh_m);
    s->sh_to = calloc(n, sizeof *s->sh_to);
    s->sh_ct = calloc(n, sizeof *s->sh_ct);
    s->y = calloc(n, sizeof *s->y);
    s->compl = calloc(n, sizeof *s->compl);
    s->ncompl = calloc(n, sizeof *s->ncompl);
    s->ans_b = calloc(n, sizeof *s->ans_b);
    s->ans_s = calloc(n, sizeof *s->ans_s);
    s->ans_bo = calloc(n, sizeof *s->ans_bo);
    s->ans_so = calloc(n, sizeof *s->ans_so);
    s->nans_b = calloc(n, sizeof *s->nans_b);
    s->nans_s = calloc(n, sizeof *s->nans_s);
    if (cfg->consistency) {
        s->adv_sig = calloc(n, SA_SIG);
        s->chk_sig = calloc(n, SA_SIG);
        s->signed_u3 = calloc(n, 1);
    }
    int threads = cfg->threads < 1 ? 1 : cfg->threads;
    rc = fed_pool_new(&s->pool, threads);
    if (!rc && (!s->f || !s->c_pk || !s->s_pk || !s->commit || !s->sh_m || !s->sh_to || !s->sh_ct || !s->y ||
                !s->compl || !s->ncompl || !s->ans_b || !s->ans_s || !s->ans_bo || !s->ans_so || !s->nans_b ||
                !s->nans_s || (cfg->consistency && (!s->adv_sig || !s->chk_sig || !s->signed_u3))))
        rc = fed_error(FED_ENOMEM, "secagg server: %d clients", s->n);
    if (rc) {
        fed_secagg_server_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

static void free_y(fed_secagg_server *s, int u) {
    free(s->y[u]);
    s->y[u] = NULL;
}

void fed_secagg_server_free(fed_secagg_server *s) {
    if (!s) return;
    for (int u = 0; u < s->n; u++) {
        if (s->sh_to) free(s->sh_to[u]);
        if (s->sh_ct) free(s->sh_ct[u]);
        if (s->y) free_y(s, u);
        if (s->compl) free(s->compl[u]);
        if (s->ans_b && s->ans_b[u]) sodium_memzero(s->ans_b[u], (size_t)s->nans_b[u] * sizeof(fed_shamir_share));
        if (s->ans_s && s->ans_s[u]) sodium_memzero(s->ans_s[u], (size_t)s->nans_s[u] * sizeof(fed_shamir_share));
        if (s->ans_b) free(s->ans_b[u]);
        if (s->ans_s) free(s->ans_s[u]);
        if (s->ans_bo) free(s->ans_bo[u]);
        if (s->ans_so) free(s->ans_so[u]);
    }
    free(s->f);
    free(s->c_pk);
    free(s->s_pk);
    free(s->commit);
    free(s->sh_m);
    free(s->sh_to);
    free(s->sh_ct);
    free(s->y);
    free(s->compl);
    free(s->ncompl);
    free(s->ans_b);
    free(s->ans_s);
    free(s->ans_bo);
    free(s->ans_so);
    free(s->nans_b);
    free(s->nans_s);
    free(s->acc);
    free(s->result);
    free(s->adv_sig);
    free(s->chk_sig);
    free(s->signed_u3);
    free(s->u3_wire);
    free(s->u3_tbs);
    fed_pool_free(s->pool);
    sa_graph_free(&s->g);
    free(s);
}

int fed_secagg_server_stage(const fed_secagg_server *s) { return s ? s->stage : -1; }

static int fail(fed_secagg_server *s, int rc) {
    s->stage = -1;
    return rc;
}

/* Refuses a message: the sender is out of the round from now on. */
static int refuse(fed_secagg_server *s, uint32_t u, int rc) {
    s->f[u] |= F_OFFENDER;
    return rc;
}

/* whether u takes part in the stage of kind k */
static int in_set(const fed_secagg_server *s, uint32_t u, int k) {
    uint8_t f = s->f[u];
    if (f & F_OFFENDER) return 0;
    switch (k) {
    case K_ADV: return 1;
    case K_SHARE: return (f & F_ADV) != 0;
    case K_MASKED: return (f & F_SHARED) != 0;
    case K_CHECK: return (f & F_IN) != 0;
    case K_UNMASK: return (f & F_IN) != 0 && (!s->cfg.consistency || s->signed_u3[u]);
    default: return 0;
    }
}

/* U0-neighbours of u, ascending: the peers u was told about at stage 1 */
static int key_list(const fed_secagg_server *s, uint32_t u, uint32_t *nb) {
    int c = sa_graph_nbrs(&s->g, u, nb), m = 0;
    for (int i = 0; i < c; i++)
        if ((s->f[nb[i]] & F_ADV)) nb[m++] = nb[i];
    return m;
}

static int recv_adv(fed_secagg_server *s, uint32_t u, const uint8_t *msg, size_t len) {
    size_t want = SA_HDR + 64 + (s->cfg.consistency ? SA_SIG : 0);
    if (len != want) return refuse(s, u, fed_error(FED_EFORMAT, "secagg server: advertisement of client %u has "
                                                                "%zu bytes, expected %zu", (unsigned)u, len, want));
    if (s->cfg.consistency) {
        uint8_t tbs[SA_ADV_TBS];
        sa_adv_tbs(tbs, s->cfg.round, s->cfg.context, u, msg + SA_HDR, msg + SA_HDR + 32);
        if (fed_sign_verify(msg + SA_HDR + 64, tbs, sizeof tbs, s->cfg.sign_pks[u]))
            return refuse(s, u, fed_error(FED_EFORMAT, "secagg server: advertisement of client %u is not signed by it",
                                          (unsigned)u));
    }
    /* a low-order public key would make every shared secret with it known */
    static const uint8_t probe[32] = {9, 1, 2, 3, 4, 5, 6, 7, 8};
    uint8_t t[32];
    for (int i = 0; i < 2; i++)
        if (crypto_scalarmult(t, probe, msg + SA_HDR + 32 * i) != 0)
            return refuse(s, u, fed_error(FED_EFORMAT, "secagg server: client %u advertised a low-order public key",
                                          (unsigned)u));
    memcpy(s->c_pk[u], msg + SA_HDR, 32);
    memcpy(s->s_pk[u], msg + SA_HDR + 32, 32);
    if (s->cfg.consistency) memcpy(s->adv_sig[u], msg + SA_HDR + 64, SA_SIG);
    s->f[u] |= F_ADV;
    return 0;
}

static int recv_shares(fed_secagg_server *s, uint32_t u, const uint8_t *msg, size_t len) {
    uint32_t *nb;
    int rc = nbrs_alloc(s, &nb);
    if (rc) return rc;
    int m = key_list(s, u, nb);
    sa_rd r = {msg, len, SA_HDR, 0};
    const uint8_t *commit = sa_rdn(&r, 32);
    uint32_t cnt = sa_rd32(&r);
    if (r.bad || cnt != (uint32_t)m) {
        free(nb);
        return refuse(s, u, fed_error(FED_EFORMAT, "secagg server: client %u sent %u shares, expected %d",
                                      (unsigned)u, (unsigned)cnt, m));
    }
    if (len != SA_HDR + 36 + (size_t)m * (4 + SA_CT_LEN)) {
        free(nb);
        return refuse(s, u, fed_error(FED_EFORMAT, "secagg server: share message of client %u has %zu bytes, expected %zu",
                                      (unsigned)u, len, SA_HDR + 36 + (size_t)m * (4 + SA_CT_LEN)));
    }
    uint8_t *ct = malloc((size_t)m * SA_CT_LEN + 1);
    if (!ct) {
        free(nb);
        return fed_error(FED_ENOMEM, "secagg server: shares");
    }
    for (int j = 0; j < m; j++) {
        uint32_t v = sa_rd32(&r);
        const uint8_t *c = sa_rdn(&r, SA_CT_LEN);
        if (v != nb[j]) {
            free(nb);
            free(ct);
            return refuse(s, u, fed_error(FED_EFORMAT, "secagg server: client %u addressed share %d to client %u, "
                                                       "expected %u", (unsigned)u, j, (unsigned)v, (unsigned)nb[j]));
        }
        memcpy(ct + (size_t)j * SA_CT_LEN, c, SA_CT_LEN);
    }
    memcpy(s->commit[u], commit, 32);
    s->sh_m[u] = m;
    s->sh_to[u] = nb;
    s->sh_ct[u] = ct;
    s->f[u] |= F_SHARED;
    return 0;
}

static int recv_masked(fed_secagg_server *s, uint32_t u, const uint8_t *msg, size_t len) {
    sa_rd r = {msg, len, SA_HDR, 0};
    uint32_t nc = sa_rd32(&r);
    if (r.bad || nc > (uint32_t)s->k)
        return refuse(s, u, fed_error(FED_EFORMAT, "secagg server: masked input of client %u is malformed", (unsigned)u));
    const uint8_t *cl = sa_rdn(&r, (size_t)nc * 4);
    uint64_t L = sa_rd64(&r);
    size_t ws = (size_t)s->ring.ws, nb = sa_ring_wire_bytes(&s->ring, s->L);
    if (r.bad || L != s->L || len - r.off != nb)
        return refuse(s, u, fed_error(FED_EFORMAT, "secagg server: masked input of client %u has %zu bytes, expected "
                                                   "%zu elements", (unsigned)u, len, s->L));
    const uint8_t *y = msg + r.off;
    uint32_t *compl = malloc(((size_t)nc + 1) * sizeof *compl);
    if (!compl) return fed_error(FED_ENOMEM, "secagg server: complaints");
    for (uint32_t i = 0; i < nc; i++) {
        uint32_t v = sa_get32(cl + 4 * i);
        if (!sa_graph_is_nbr(&s->g, u, v) || !(s->f[v] & F_SHARED) || (i > 0 && v <= compl[i - 1])) {
            free(compl);
            return refuse(s, u, fed_error(FED_EFORMAT, "secagg server: client %u complains about client %u, which sent "
                                                       "it no share", (unsigned)u, (unsigned)v));
        }
        compl[i] = v;
    }
    if (s->ring.kind == SA_K32) {
        unsigned pad = (unsigned)(s->L * (size_t)s->ring.bits % 8); /* bits used in the last byte */
        if (pad && y[nb - 1] >> pad) {
            free(compl);
            return refuse(s, u, fed_error(FED_EFORMAT, "secagg server: masked input of client %u has nonzero padding "
                                                       "bits", (unsigned)u));
        }
    } else if (s->ring.bits < 8 * (int)ws || s->ring.kind == SA_KMOD) {
        for (size_t i = 0; i < s->L; i++) {
            uint64_t v = ws == 4 ? sa_get32(y + 4 * i) : sa_get64(y + 8 * i);
            if (s->ring.R && v >= s->ring.R) {
                free(compl);
                return refuse(s, u, fed_error(FED_EFORMAT, "secagg server: masked input of client %u has element %zu "
                                                           "outside the ring", (unsigned)u, i));
            }
        }
    }
    s->y[u] = malloc(nb + 1);
    if (!s->y[u]) {
        free(compl);
        return fed_error(FED_ENOMEM, "secagg server: masked input of %zu elements", s->L);
    }
    memcpy(s->y[u], y, nb);
    s->compl[u] = compl;
    s->ncompl[u] = (int)nc;
    s->f[u] |= F_MASKED;
    return 0;
}

/* The reveal request to v: self-mask shares of its surviving neighbours (and its
 * own), mask-key shares of its dropped neighbours, minus those it never got. */
static int reveal_lists(const fed_secagg_server *s, uint32_t v, uint32_t *bl, int *nb, uint32_t *sl, int *ns) {
    uint32_t *nbr;
    int rc = nbrs_alloc((fed_secagg_server *)s, &nbr);
    if (rc) return rc;
    int c = sa_graph_nbrs(&s->g, v, nbr);
    nbr[c++] = v;
    /* keep ascending with v inserted */
    for (int i = c - 1; i > 0 && nbr[i] < nbr[i - 1]; i--) {
        uint32_t t = nbr[i];
        nbr[i] = nbr[i - 1];
        nbr[i - 1] = t;
    }
    *nb = *ns = 0;
    for (int i = 0; i < c; i++) {
        uint32_t w = nbr[i];
        if (w != v && sa_find_u32(s->compl[v], s->ncompl[v], w) >= 0) continue;
        if (s->f[w] & F_IN) bl[(*nb)++] = w;
        else if ((s->f[w] & F_DROPPED) && w != v) sl[(*ns)++] = w;
    }
    free(nbr);
    return 0;
}

static int recv_unmask(fed_secagg_server *s, uint32_t v, const uint8_t *msg, size_t len) {
    uint32_t *bl = malloc(((size_t)s->k + 1) * 4), *sl = malloc(((size_t)s->k + 1) * 4);
    fed_shamir_share *sb = NULL, *ss = NULL;
    uint32_t *bo = NULL, *so = NULL;
    int nb, ns, rc = 0;
    if (!bl || !sl || (rc = reveal_lists(s, v, bl, &nb, sl, &ns))) {
        free(bl);
        free(sl);
        return rc ? rc : fed_error(FED_ENOMEM, "secagg server: reveal lists");
    }
    sa_rd r = {msg, len, SA_HDR, 0};
    uint32_t gb = sa_rd32(&r);
    const uint8_t *pb = sa_rdn(&r, (size_t)(gb <= (uint32_t)s->k + 1 ? gb : 0) * SA_SHARE_WIRE);
    uint32_t gs = sa_rd32(&r);
    const uint8_t *ps = sa_rdn(&r, (size_t)(gs <= (uint32_t)s->k ? gs : 0) * SA_SHARE_WIRE);
    if (r.bad || gb > (uint32_t)s->k + 1 || gs > (uint32_t)s->k || r.off != len) {
        rc = fed_error(FED_EFORMAT, "secagg server: unmask message of client %u (%zu bytes) is malformed", (unsigned)v, len);
        goto bad;
    }
    /* answering for both secrets of one peer is the one thing never allowed */
    uint8_t *seen = calloc((size_t)s->n, 1);
    if (!seen) {
        rc = fed_error(FED_ENOMEM, "secagg server: unmask");
        goto bad;
    }
    for (uint32_t i = 0; i < gb; i++) {
        uint32_t w = sa_get32(pb + (size_t)i * SA_SHARE_WIRE);
        if (w < (uint32_t)s->n) seen[w] = 1;
    }
    for (uint32_t j = 0; j < gs && !rc; j++) {
        uint32_t w = sa_get32(ps + (size_t)j * SA_SHARE_WIRE);
        if (w < (uint32_t)s->n && seen[w])
            rc = fed_error(FED_EFORMAT, "secagg server: client %u revealed both shares of client %u", (unsigned)v,
                           (unsigned)w);
    }
    free(seen);
    if (rc) goto bad;
    if (gb != (uint32_t)nb || gs != (uint32_t)ns) {
        rc = fed_error(FED_EFORMAT, "secagg server: client %u sent %u + %u shares, asked for %d + %d", (unsigned)v,
                       (unsigned)gb, (unsigned)gs, nb, ns);
        goto bad;
    }
    sb = malloc(((size_t)nb + 1) * sizeof *sb);
    ss = malloc(((size_t)ns + 1) * sizeof *ss);
    bo = malloc(((size_t)nb + 1) * 4);
    so = malloc(((size_t)ns + 1) * 4);
    if (!sb || !ss || !bo || !so) {
        free(bl);
        free(sl);
        free(sb);
        free(ss);
        free(bo);
        free(so);
        return fed_error(FED_ENOMEM, "secagg server: shares");
    }
    for (int pass = 0; pass < 2; pass++) {
        int cnt = pass ? ns : nb;
        const uint8_t *p = pass ? ps : pb;
        const uint32_t *want = pass ? sl : bl;
        for (int i = 0; i < cnt; i++, p += SA_SHARE_WIRE) {
            uint32_t w = sa_get32(p);
            if (w != want[i]) {
                rc = fed_error(FED_EFORMAT, "secagg server: client %u sent a share of client %u it was not asked for",
                               (unsigned)v, (unsigned)w);
                goto bad;
            }
            fed_shamir_share *sh = pass ? &ss[i] : &sb[i];
            sh->x = v + 1;
            for (int q = 0; q < FED_SHAMIR_CHUNKS; q++) sh->y[q] = sa_get64(p + 4 + 8 * q);
            (pass ? so : bo)[i] = w;
        }
    }
    s->ans_b[v] = sb;
    s->ans_s[v] = ss;
    s->ans_bo[v] = bo;
    s->ans_so[v] = so;
    s->nans_b[v] = nb;
    s->nans_s[v] = ns;
    s->f[v] |= F_ANSWERED;
    free(bl);
    free(sl);
    return 0;
bad:
    free(bl);
    free(sl);
    if (sb) sodium_memzero(sb, ((size_t)nb + 1) * sizeof *sb);
    if (ss) sodium_memzero(ss, ((size_t)ns + 1) * sizeof *ss);
    free(sb);
    free(ss);
    free(bo);
    free(so);
    return refuse(s, v, rc);
}

/* A client's signature on U3: verified here, forwarded with the reveal requests. */
static int recv_check(fed_secagg_server *s, uint32_t u, const uint8_t *msg, size_t len) {
    if (len != SA_HDR + SA_SIG)
        return refuse(s, u, fed_error(FED_EFORMAT, "secagg server: consistency signature of client %u has %zu bytes, "
                                                   "expected %d", (unsigned)u, len, SA_HDR + SA_SIG));
    if (fed_sign_verify(msg + SA_HDR, s->u3_tbs, s->u3_tbs_len, s->cfg.sign_pks[u]))
        return refuse(s, u, fed_error(FED_EFORMAT, "secagg server: client %u's signature on U3 does not verify",
                                      (unsigned)u));
    memcpy(s->chk_sig[u], msg + SA_HDR, SA_SIG);
    s->signed_u3[u] = 1;
    return 0;
}

int fed_secagg_server_receive(fed_secagg_server *s, uint32_t from, const uint8_t *msg, size_t len) {
    if (!s) return fed_error(FED_EINVAL, "secagg server: NULL");
    int k = kind(s);
    if (k < 0 || k == K_DONE) return fed_error(FED_ESTATE, "secagg server: round is over (stage %d)", s->stage);
    if (from >= (uint32_t)s->n)
        return fed_error(FED_EINVAL, "secagg server: message from unknown client %u (round has %d)", (unsigned)from, s->n);
    if (!in_set(s, from, k))
        return fed_error(FED_ESTATE, "secagg server: client %u is not in the round at stage %d", (unsigned)from, s->stage);
    if (k == K_CHECK ? s->signed_u3[from] != 0 : (s->f[from] & (k == K_ADV      ? F_ADV
                                                                 : k == K_SHARE  ? F_SHARED
                                                                 : k == K_MASKED ? F_MASKED
                                                                                 : F_ANSWERED)) != 0) {
        /* a second message for one stage: drop the sender (and, from stage 2 on, its first one) */
        if (k == K_MASKED) s->f[from] &= (uint8_t)~F_MASKED;
        if (k == K_UNMASK) s->f[from] &= (uint8_t)~F_ANSWERED;
        if (k == K_CHECK) s->signed_u3[from] = 0;
        return refuse(s, from, fed_error(FED_EFORMAT, "secagg server: duplicate stage-%d message from client %u",
                                         s->stage, (unsigned)from));
    }
    int rc = sa_check_hdr(msg, len, k == K_CHECK ? SA_C_CHECK : k, from, s->cfg.round, "secagg server");
    if (rc) return refuse(s, from, rc);
    switch (k) {
    case K_ADV: return recv_adv(s, from, msg, len);
    case K_SHARE: return recv_shares(s, from, msg, len);
    case K_MASKED: return recv_masked(s, from, msg, len);
    case K_CHECK: return recv_check(s, from, msg, len);
    default: return recv_unmask(s, from, msg, len);
    }
}

/* ---- closing stages ---- */
#define SUM_CHUNK 4096

typedef struct sum_ctx {
    fed_secagg_server *s;
    const int *ids;
    int nids;
    const sa_stream *st;
    size_t ns;
} sum_ctx;

static void sum_task(void *p, size_t task, int worker) {
    (void)worker;
    sum_ctx *c = p;
    fed_secagg_server *s = c->s;
    size_t off = task * SUM_CHUNK, len = s->L - off < SUM_CHUNK ? s->L - off : SUM_CHUNK;
    uint8_t *acc = (uint8_t *)s->acc + off * (size_t)s->ring.es;
    size_t wo = sa_ring_wire_off(&s->ring, off), avail = sa_ring_wire_bytes(&s->ring, s->L) - wo;
    for (int i = 0; i < c->nids; i++) sa_ring_add_wire(&s->ring, acc, s->y[c->ids[i]] + wo, avail, len);
}

static int close_masked(fed_secagg_server *s) {
    /* U2: masked inputs that arrived, from clients no neighbour accused */
    for (int u = 0; u < s->n; u++)
        if (in_set(s, (uint32_t)u, K_MASKED) && (s->f[u] & F_MASKED))
            for (int i = 0; i < s->ncompl[u]; i++) s->f[s->compl[u][i]] |= F_ACCUSED;
    int *ids = malloc((size_t)s->n * sizeof *ids), m = 0;
    if (!ids) return fed_error(FED_ENOMEM, "secagg server");
    for (int u = 0; u < s->n; u++) {
        uint8_t f = s->f[u];
        if (!(f & F_SHARED)) continue; /* never in U1: no one masked with it */
        if ((f & F_MASKED) && !(f & (F_OFFENDER | F_ACCUSED))) {
            s->f[u] |= F_IN;
            ids[m++] = u;
        } else {
            s->f[u] |= F_DROPPED;
            free_y(s, u);
        }
    }
    if (m < s->cfg.threshold) {
        free(ids);
        return fed_error(FED_ESTATE, "secagg server: round failed: %d masked inputs, threshold %d", m, s->cfg.threshold);
    }
    if (s->cfg.consistency) {
        /* U3, the set every survivor signs in the consistency check */
        s->u3_wire = malloc((size_t)m * 4 + 1);
        if (!s->u3_wire) {
            free(ids);
            return fed_error(FED_ENOMEM, "secagg server: U3");
        }
        for (int i = 0; i < m; i++) sa_put32(s->u3_wire + 4 * (size_t)i, (uint32_t)ids[i]);
        s->nu3 = (uint32_t)m;
        if (!(s->u3_tbs = sa_u3_tbs(s->cfg.round, s->cfg.context, s->u3_wire, s->nu3, &s->u3_tbs_len))) {
            free(ids);
            return fed_error(FED_ENOMEM, "secagg server: U3");
        }
    }
    s->acc = calloc(s->L ? s->L : 1, (size_t)s->ring.es);
    if (!s->acc) {
        free(ids);
        return fed_error(FED_ENOMEM, "secagg server: sum of %zu elements", s->L);
    }
    sum_ctx c = {s, ids, m, NULL, 0};
    if (s->ring.kind == SA_KMOD) {
        for (int i = 0; i < m; i++)
            sa_ring_add_wire(&s->ring, s->acc, s->y[ids[i]], sa_ring_wire_bytes(&s->ring, s->L), s->L);
    } else {
        fed_pool_run(s->pool, (s->L + SUM_CHUNK - 1) / SUM_CHUNK, sum_task, &c);
    }
    for (int i = 0; i < m; i++) free_y(s, ids[i]);
    free(ids);
    return 0;
}

/* shares of one secret gathered from the responders, in responder order */
typedef struct gather {
    fed_secagg_server *s;
    int *who;              /* secret owners to rebuild */
    int nwho;
    int is_s;              /* 0: self-mask seeds b, 1: mask keys s_sk */
    uint8_t (*secret)[32];
    int *rc;
    char (*err)[160];
    const uint32_t *cxs;   /* the most common point set (the first t responders) */
    const uint64_t *clam;  /* and its Lagrange coefficients, computed once */
} gather;

/* Rebuilds one secret from t shares and checks it against the owner's public key
 * (mask keys) or commitment (self-mask seeds). When the first t shares fail the
 * check - a responder sent a wrong share - other windows of t shares are tried. */
static void rebuild_task(void *p, size_t task, int worker) {
    (void)worker;
    gather *g = p;
    fed_secagg_server *s = g->s;
    uint32_t u = (uint32_t)g->who[task];
    int t = s->cfg.threshold, have = 0, cap = s->k + 1;
    fed_shamir_share *sp = malloc((size_t)cap * sizeof *sp), *w = malloc((size_t)t * sizeof *w);
    uint64_t *lam = malloc((size_t)t * sizeof *lam);
    uint32_t *xs = calloc((size_t)t, sizeof *xs);
    if (!sp || !w || !lam || !xs) {
        free(sp);
        free(w);
        free(lam);
        free(xs);
        g->rc[task] = FED_ENOMEM;
        snprintf(g->err[task], sizeof g->err[task], "out of memory");
        return;
    }
    for (int v = 0; v < s->n && have < cap; v++) {
        if ((s->f[v] & (F_ANSWERED | F_OFFENDER)) != F_ANSWERED) continue;
        int cnt = g->is_s ? s->nans_s[v] : s->nans_b[v];
        const uint32_t *own = g->is_s ? s->ans_so[v] : s->ans_bo[v];
        int i = sa_find_u32(own, cnt, u);
        if (i >= 0) sp[have++] = g->is_s ? s->ans_s[v][i] : s->ans_b[v][i];
    }
    int rc = 0;
    if (have < t) {
        rc = FED_ESTATE;
        snprintf(g->err[task], sizeof g->err[task], "%d shares of the %s of client %u, threshold %d", have,
                 g->is_s ? "mask key" : "self-mask seed", (unsigned)u, t);
    } else {
        /* first the first t shares; on a failed check, the first t leaving out one
         * share at a time, which survives any single wrong share when have > t */
        rc = FED_EFORMAT;
        for (int skip = -1; skip < t && rc; skip++) {
            if (skip >= 0 && have < t + 1) break;
            for (int i = 0, c = 0; c < t; i++)
                if (i != skip) w[c++] = sp[i];
            int same = skip < 0 && g->clam != NULL;
            for (int i = 0; i < t && same; i++) same = w[i].x == g->cxs[i];
            const uint64_t *use = g->clam;
            if (!same) {
                for (int i = 0; i < t; i++) xs[i] = w[i].x;
                use = sa_shamir_lagrange(xs, t, lam) ? NULL : lam;
            }
            if (!use || sa_shamir_combine_lam(w, t, use, g->secret[task]) != 0) continue;
            uint8_t chk[32];
            if (g->is_s) crypto_scalarmult_base(chk, g->secret[task]);
            else sa_commit(chk, g->secret[task], s->cfg.round, u);
            if (sodium_memcmp(chk, g->is_s ? s->s_pk[u] : s->commit[u], 32) == 0) rc = 0;
        }
        if (rc) {
            sodium_memzero(g->secret[task], 32);
            snprintf(g->err[task], sizeof g->err[task], "no %d of the %d shares rebuild the %s of client %u (wrong "
                     "shares)", t, have, g->is_s ? "mask key" : "self-mask seed", (unsigned)u);
        }
    }
    sodium_memzero(sp, (size_t)cap * sizeof *sp);
    sodium_memzero(w, (size_t)t * sizeof *w);
    free(sp);
    free(w);
    free(lam);
    free(xs);
    g->rc[task] = rc;
}

typedef struct pair_ctx {
    fed_secagg_server *s;
    const int *dropped;
    uint8_t (*s_sk)[32];
    const size_t *first; /* index of dropped[i]'s first stream */
    sa_stream *st;
    int *rc;
} pair_ctx;

static void pair_task(void *p, size_t task, int worker) {
    (void)worker;
    pair_ctx *c = p;
    fed_secagg_server *s = c->s;
    uint32_t w = (uint32_t)c->dropped[task];
    uint32_t *nb = malloc(((size_t)s->k + 1) * 4);
    if (!nb) {
        c->rc[task] = FED_ENOMEM;
        return;
    }
    int cnt = sa_graph_nbrs(&s->g, w, nb);
    size_t j = c->first[task];
    for (int i = 0; i < cnt; i++) {
        uint32_t v = nb[i];
        if (!(s->f[v] & F_IN)) continue;
        /* v added sign(v, w) * PRG(s_vw); take it off again */
        if (sa_pair_seed(c->st[j].seed, c->s_sk[task], s->s_pk[v], s->cfg.round, w, v)) c->rc[task] = FED_EFORMAT;
        c->st[j].sign = -sa_sign(v, w);
        j++;
    }
    free(nb);
}

static void unmask_task(void *p, size_t task, int worker) {
    (void)worker;
    sum_ctx *c = p;
    fed_secagg_server *s = c->s;
    size_t off = task * SUM_CHUNK, len = s->L - off < SUM_CHUNK ? s->L - off : SUM_CHUNK;
    sa_prg_apply(&s->ring, (uint8_t *)s->acc + off * (size_t)s->ring.es, off, len, c->st, c->ns);
}

static int close_unmask(fed_secagg_server *s) {
    int responders = 0;
    for (int u = 0; u < s->n; u++) responders += (s->f[u] & (F_ANSWERED | F_OFFENDER)) == F_ANSWERED;
    if (responders < s->cfg.threshold)
        return fed_error(FED_ESTATE, "secagg server: round failed: %d clients answered the unmasking request, "
                                     "threshold %d", responders, s->cfg.threshold);
    int n = s->n, nin = 0, ndrop = 0;
    int *in = malloc((size_t)n * sizeof *in), *dr = malloc((size_t)n * sizeof *dr);
    size_t *first = malloc(((size_t)n + 1) * sizeof *first);
    int *rcs = calloc((size_t)n, sizeof *rcs);
    char (*err)[160] = calloc((size_t)n, sizeof *err);
    uint8_t (*bsec)[32] = NULL, (*ssec)[32] = NULL;
    sa_stream *st = NULL;
    size_t nst = 0;
    int rc = 0;
    if (!in || !dr || !first || !rcs || !err) {
        rc = fed_error(FED_ENOMEM, "secagg server: unmasking");
        goto out;
    }
    for (int u = 0; u < n; u++) {
        if (s->f[u] & F_IN) in[nin++] = u;
        else if (s->f[u] & F_DROPPED) dr[ndrop++] = u;
    }
    bsec = calloc((size_t)nin + 1, 32);
    ssec = calloc((size_t)ndrop + 1, 32);
    if (!bsec || !ssec) {
        rc = fed_error(FED_ENOMEM, "secagg server: unmasking");
        goto out;
    }
    /* the first t responders hold shares of nearly every secret in the full graph */
    int t = s->cfg.threshold, nc = 0;
    uint32_t *cxs = malloc((size_t)t * sizeof *cxs);
    uint64_t *clam = malloc((size_t)t * sizeof *clam);
    if (!cxs || !clam) {
        free(cxs);
        free(clam);
        rc = fed_error(FED_ENOMEM, "secagg server: unmasking");
        goto out;
    }
    for (int v = 0; v < n && nc < t; v++)
        if ((s->f[v] & (F_ANSWERED | F_OFFENDER)) == F_ANSWERED) cxs[nc++] = (uint32_t)v + 1;
    const uint64_t *cl = nc == t && sa_shamir_lagrange(cxs, t, clam) == 0 ? clam : NULL;
    gather gb = {s, in, nin, 0, bsec, rcs, err, cxs, cl};
    fed_pool_run(s->pool, (size_t)nin, rebuild_task, &gb);
    for (int i = 0; i < nin && !rc; i++)
        if (rcs[i]) rc = fed_error(FED_ESTATE, "secagg server: round failed: %s", err[i]);
    if (rc) {
        free(cxs);
        free(clam);
        goto out;
    }
    gather gs = {s, dr, ndrop, 1, ssec, rcs, err, cxs, cl};
    fed_pool_run(s->pool, (size_t)ndrop, rebuild_task, &gs);
    free(cxs);
    free(clam);
    for (int i = 0; i < ndrop && !rc; i++)
        if (rcs[i]) rc = fed_error(FED_ESTATE, "secagg server: round failed: %s", err[i]);
    if (rc) goto out;
    /* streams: every survivor's self mask, then dropped-survivor pair masks */
    nst = (size_t)nin;
    uint32_t *nb = malloc(((size_t)s->k + 1) * 4);
    if (!nb) {
        rc = fed_error(FED_ENOMEM, "secagg server");
        goto out;
    }
    for (int i = 0; i < ndrop; i++) {
        first[i] = nst;
        int cnt = sa_graph_nbrs(&s->g, (uint32_t)dr[i], nb);
        for (int j = 0; j < cnt; j++) nst += (s->f[nb[j]] & F_IN) != 0;
    }
    free(nb);
    st = malloc((nst + 1) * sizeof *st);
    if (!st) {
        rc = fed_error(FED_ENOMEM, "secagg server: %zu mask streams", nst);
        goto out;
    }
    for (int i = 0; i < nin; i++) {
        memcpy(st[i].seed, bsec[i], 32);
        st[i].sign = -1;
    }
    memset(rcs, 0, (size_t)n * sizeof *rcs);
    pair_ctx pc = {s, dr, ssec, first, st, rcs};
    fed_pool_run(s->pool, (size_t)ndrop, pair_task, &pc);
    for (int i = 0; i < ndrop && !rc; i++)
        if (rcs[i]) rc = fed_error(FED_ESTATE, "secagg server: round failed: pair masks of client %d", dr[i]);
    if (rc) goto out;
    sum_ctx c = {s, NULL, 0, st, nst};
    if (s->ring.kind == SA_KMOD) sa_prg_apply(&s->ring, s->acc, 0, s->L, st, nst);
    else fed_pool_run(s->pool, (s->L + SUM_CHUNK - 1) / SUM_CHUNK, unmask_task, &c);
    sa_ring_reduce(&s->ring, s->acc, s->L);
    s->result = malloc((s->L ? s->L : 1) * sizeof *s->result);
    if (!s->result) {
        rc = fed_error(FED_ENOMEM, "secagg server: result");
        goto out;
    }
    if (s->ring.es == 4)
        for (size_t i = 0; i < s->L; i++) s->result[i] = ((const uint32_t *)s->acc)[i];
    else
        memcpy(s->result, s->acc, s->L * 8);
out:
    if (st) sodium_memzero(st, (nst + 1) * sizeof *st);
    if (bsec) sodium_memzero(bsec, ((size_t)nin + 1) * 32);
    if (ssec) sodium_memzero(ssec, ((size_t)ndrop + 1) * 32);
    free(st);
    free(bsec);
    free(ssec);
    free(in);
    free(dr);
    free(first);
    free(rcs);
    free(err);
    return rc;
}

int fed_secagg_server_finish_stage(fed_secagg_server *s) {
    if (!s) return fed_error(FED_EINVAL, "secagg server: NULL");
    if (s->stage < 0 || s->stage > last_stage(s))
        return fed_error(FED_ESTATE, "secagg server: round is over (stage %d)", s->stage);
    int rc = 0;
    if (kind(s) == K_CHECK) {
        int m = 0;
        for (int u = 0; u < s->n; u++) m += s->signed_u3[u] && !(s->f[u] & F_OFFENDER);
        if (m < s->cfg.threshold)
            rc = fed_error(FED_ESTATE, "secagg server: round failed: %d clients signed U3, threshold %d", m,
                           s->cfg.threshold);
    } else if (s->stage <= 1) {
        uint8_t flag = s->stage == 0 ? F_ADV : F_SHARED;
        int m = 0;
        for (int u = 0; u < s->n; u++) m += (s->f[u] & (flag | F_OFFENDER)) == flag;
        if (m < s->cfg.threshold)
            rc = fed_error(FED_ESTATE, "secagg server: round failed: %d clients %s, threshold %d", m,
                           s->stage == 0 ? "advertised keys" : "shared keys", s->cfg.threshold);
    } else if (s->stage == 2) {
        rc = close_masked(s);
    } else {
        rc = close_unmask(s);
    }
    if (rc) return fail(s, rc);
    s->stage++;
    return 0;
}

int fed_secagg_server_message(fed_secagg_server *s, uint32_t to, uint8_t **out, size_t *out_len) {
    if (!s || !out || !out_len) return fed_error(FED_EINVAL, "secagg server: NULL");
    *out = NULL;
    *out_len = 0;
    if (to >= (uint32_t)s->n) return fed_error(FED_EINVAL, "secagg server: unknown client %u", (unsigned)to);
    if (s->stage < 1 || s->stage > last_stage(s))
        return fed_error(FED_ESTATE, "secagg server: no message to send at stage %d", s->stage);
    int k = kind(s);
    if (!in_set(s, to, k))
        return fed_error(FED_ESTATE, "secagg server: client %u is no longer in the round", (unsigned)to);
    uint8_t *msg = NULL;
    size_t len = 0;
    uint32_t *nb = malloc(((size_t)s->k + 1) * 4), *sl = malloc(((size_t)s->k + 1) * 4);
    int rc = 0;
    if (!nb || !sl) {
        rc = fed_error(FED_ENOMEM, "secagg server: message");
        goto out;
    }
    if (k == K_SHARE) {
        int m = key_list(s, to, nb);
        size_t ent = 68 + (s->cfg.consistency ? SA_SIG : 0);
        len = SA_HDR + 4 + (size_t)m * ent;
        if (!(msg = malloc(len))) goto oom;
        sa_put_hdr(msg, SA_S_KEYS, to, s->cfg.round);
        sa_put32(msg + SA_HDR, (uint32_t)m);
        uint8_t *p = msg + SA_HDR + 4;
        for (int j = 0; j < m; j++, p += ent) {
            sa_put32(p, nb[j]);
            memcpy(p + 4, s->c_pk[nb[j]], 32);
            memcpy(p + 36, s->s_pk[nb[j]], 32);
            if (s->cfg.consistency) memcpy(p + 68, s->adv_sig[nb[j]], SA_SIG);
        }
    } else if (k == K_CHECK) {
        len = SA_HDR + 4 + (size_t)s->nu3 * 4;
        if (!(msg = malloc(len))) goto oom;
        sa_put_hdr(msg, SA_S_CHECK, to, s->cfg.round);
        sa_put32(msg + SA_HDR, s->nu3);
        if (s->nu3) memcpy(msg + SA_HDR + 4, s->u3_wire, (size_t)s->nu3 * 4);
    } else if (k == K_MASKED) {
        int c = sa_graph_nbrs(&s->g, to, nb), m = 0;
        for (int i = 0; i < c; i++)
            if ((s->f[nb[i]] & F_SHARED)) nb[m++] = nb[i]; /* U1, offenders of stage 2 included: it masked with them */
        len = SA_HDR + 4 + (size_t)m * (4 + SA_CT_LEN);
        if (!(msg = malloc(len))) goto oom;
        sa_put_hdr(msg, SA_S_SHARES, to, s->cfg.round);
        sa_put32(msg + SA_HDR, (uint32_t)m);
        uint8_t *p = msg + SA_HDR + 4;
        for (int j = 0; j < m; j++, p += 4 + SA_CT_LEN) {
            uint32_t w = nb[j];
            int i = sa_find_u32(s->sh_to[w], s->sh_m[w], to);
            if (i < 0) {
                rc = fed_error(FED_EINTERNAL, "secagg server: no share from %u to %u", (unsigned)w, (unsigned)to);
                goto out;
            }
            sa_put32(p, w);
            memcpy(p + 4, s->sh_ct[w] + (size_t)i * SA_CT_LEN, SA_CT_LEN);
        }
    } else {
        int b, d;
        if ((rc = reveal_lists(s, to, nb, &b, sl, &d))) goto out;
        len = SA_HDR + 8 + ((size_t)b + d) * 4;
        int g = 0;
        uint32_t *sg = NULL;
        if (s->cfg.consistency) {
            /* the signatures on U3 of to and its neighbours, ascending */
            if (!(sg = malloc(((size_t)s->k + 1) * 4))) goto oom;
            int c = sa_graph_nbrs(&s->g, to, sg);
            sg[c++] = to;
            for (int i = c - 1; i > 0 && sg[i] < sg[i - 1]; i--) {
                uint32_t t = sg[i];
                sg[i] = sg[i - 1];
                sg[i - 1] = t;
            }
            /* every verified signature, also of a client refused later on: it is still evidence */
            for (int i = 0; i < c; i++)
                if (s->signed_u3[sg[i]]) sg[g++] = sg[i];
            len += 4 + (size_t)g * (4 + SA_SIG);
        }
        if (!(msg = malloc(len))) {
            free(sg);
            goto oom;
        }
        sa_put_hdr(msg, SA_S_REVEAL, to, s->cfg.round);
        sa_put32(msg + SA_HDR, (uint32_t)b);
        for (int j = 0; j < b; j++) sa_put32(msg + SA_HDR + 4 + 4 * j, nb[j]);
        sa_put32(msg + SA_HDR + 4 + 4 * (size_t)b, (uint32_t)d);
        for (int j = 0; j < d; j++) sa_put32(msg + SA_HDR + 8 + 4 * ((size_t)b + j), sl[j]);
        if (s->cfg.consistency) {
            uint8_t *p = msg + SA_HDR + 8 + ((size_t)b + d) * 4;
            sa_put32(p, (uint32_t)g);
            p += 4;
            for (int j = 0; j < g; j++, p += 4 + SA_SIG) {
                sa_put32(p, sg[j]);
                memcpy(p + 4, s->chk_sig[sg[j]], SA_SIG);
            }
            free(sg);
        }
    }
    goto out;
oom:
    rc = fed_error(FED_ENOMEM, "secagg server: message");
out:
    free(nb);
    free(sl);
    if (rc) {
        free(msg);
        return rc;
    }
    *out = msg;
    *out_len = len;
    return 0;
}

int fed_secagg_server_result(const fed_secagg_server *s, uint64_t *sum, uint8_t *included) {
    if (!s || (!sum && s->L)) return fed_error(FED_EINVAL, "secagg server: NULL");
    if (kind(s) != K_DONE || !s->result) return fed_error(FED_ESTATE, "secagg server: no result (stage %d)", s->stage);
    memcpy(sum, s->result, s->L * sizeof *sum);
    if (included)
        for (int u = 0; u < s->n; u++) included[u] = (s->f[u] & F_IN) != 0;
    return 0;
}

int fed_secagg_server_offenders(const fed_secagg_server *s, uint8_t *offender) {
    if (!s || !offender) return fed_error(FED_EINVAL, "secagg server: NULL");
    for (int u = 0; u < s->n; u++) offender[u] = (s->f[u] & (F_OFFENDER | F_ACCUSED)) != 0;
    return 0;
}
