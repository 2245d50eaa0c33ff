/* The client side of secure aggregation (Bonawitz et al. CCS 2017, Fig. 4; SecAgg+
 * neighbourhoods of Bell et al. CCS 2020): two X25519 key pairs (c: share
 * encryption, s: mask agreement), Shamir shares of the self-mask seed b and of
 * the mask key s_sk for each neighbour (and itself), the masked input
 * y = x + PRG(b) + sum_v +-PRG(s_uv), and at the end the shares the server asks
 * for - never both shares of one peer. */
#include <stdlib.h>
#include <sodium.h>
#include "federate/crypto.h"
#include "federate/error.h"
#include "secagg_internal.h"

struct fed_secagg_client {
    fed_secagg_cfg cfg;
    sa_ring ring;
    sa_graph g;
    uint32_t id;
    int stage; /* next call: 0 advertise, 1 share keys, 2 masked input, CL_CHECK consistency (only with
                  cfg.consistency), 3 unmask, 4 done, -1 dead */
    uint8_t c_sk[32], c_pk[32], s_sk[32], s_pk[32], b[32];
    int m;              /* peers named by the server at stage 1 (neighbours that advertised) */
    uint32_t *peer;     /* ascending */
    uint8_t (*peer_c)[32], (*peer_s)[32], (*key)[32];
    fed_shamir_share self_b, self_s;
    uint8_t *got;       /* per peer: 0 no share relayed, 1 share ok, 2 share undecryptable */
    fed_shamir_share *rb, *rs;
    /* consistency check */
    uint8_t sign_sk[64]; /* long-term Ed25519 key, wiped once U3 is signed */
    int has_sk;
    uint32_t *u3;        /* the U3 this client signed, ascending */
    uint32_t nu3;
    uint8_t *u3_tbs;     /* and the signed bytes */
    size_t u3_tbs_len;
};

enum { CL_CHECK = 5 };

int fed_secagg_client_new(fed_secagg_client **out, const fed_secagg_cfg *cfg, uint32_t id) {
    *out = NULL;
    int rc = fed_secagg_cfg_check(cfg);
    if (rc) return rc;
    if (id >= (uint32_t)cfg->n) return fed_error(FED_EINVAL, "secagg client: id %u outside 0..%d", (unsigned)id, cfg->n - 1);
    if (sodium_init() < 0) return fed_error(FED_EINTERNAL, "secagg client: libsodium failed to initialize");
    fed_secagg_client *c = calloc(1, sizeof *c);
    if (!c) return fed_error(FED_ENOMEM, "secagg client");
    c->cfg = *cfg;
    c->id = id;
    sa_ring_init(&c->ring, cfg);
    if ((rc = sa_graph_init(&c->g, cfg->n, cfg->degree, cfg->graph_seed))) {
        free(c);
        return rc;
    }
    *out = c;
    return 0;
}

static void wipe_free(void *p, size_t n) {
    if (p) sodium_memzero(p, n);
    free(p);
}

void fed_secagg_client_free(fed_secagg_client *c) {
    if (!c) return;
    size_t m = (size_t)c->m;
    free(c->peer);
    free(c->peer_c);
    free(c->peer_s);
    wipe_free(c->key, m * 32);
    free(c->got);
    wipe_free(c->rb, m * sizeof *c->rb);
    wipe_free(c->rs, m * sizeof *c->rs);
    free(c->u3);
    free(c->u3_tbs);
    sa_graph_free(&c->g);
    sodium_memzero(c, sizeof *c);
    free(c);
}

static int dead(fed_secagg_client *c, int rc) {
    c->stage = -1;
    return rc;
}

static int want_stage(fed_secagg_client *c, int s, const char *what) {
    if (c->stage != s)
        return fed_error(FED_ESTATE, "secagg client %u: %s called at stage %d (expected %d)", (unsigned)c->id, what,
                         c->stage, s);
    return 0;
}

int fed_secagg_client_set_signing_key(fed_secagg_client *c, const uint8_t sk[64]) {
    if (!c || !sk) return fed_error(FED_EINVAL, "secagg client: NULL");
    if (!c->cfg.consistency)
        return fed_error(FED_EINVAL, "secagg client %u: a signing key without the consistency check", (unsigned)c->id);
    int rc = want_stage(c, 0, "set_signing_key");
    if (rc) return rc;
    uint8_t pk[32];
    if (fed_sign_sk_to_pk(pk, sk) || sodium_memcmp(pk, c->cfg.sign_pks[c->id], 32) != 0)
        return fed_error(FED_EINVAL, "secagg client %u: signing key does not match sign_pks[%u]", (unsigned)c->id,
                         (unsigned)c->id);
    memcpy(c->sign_sk, sk, 64);
    c->has_sk = 1;
    return 0;
}

int fed_secagg_client_advertise(fed_secagg_client *c, uint8_t **out, size_t *out_len) {
    int rc = want_stage(c, 0, "advertise");
    if (rc) return rc;
    if (c->cfg.consistency && !c->has_sk)
        return fed_error(FED_ESTATE, "secagg client %u: the consistency check needs its signing key "
                                     "(fed_secagg_client_set_signing_key)", (unsigned)c->id);
    size_t len = SA_HDR + 64 + (c->cfg.consistency ? SA_SIG : 0);
    randombytes_buf(c->c_sk, 32);
    randombytes_buf(c->s_sk, 32);
    randombytes_buf(c->b, 32);
    crypto_scalarmult_base(c->c_pk, c->c_sk);
    crypto_scalarmult_base(c->s_pk, c->s_sk);
    uint8_t *msg = malloc(len);
    if (!msg) return fed_error(FED_ENOMEM, "secagg client: message");
    sa_put_hdr(msg, SA_C_ADV, c->id, c->cfg.round);
    memcpy(msg + SA_HDR, c->c_pk, 32);
    memcpy(msg + SA_HDR + 32, c->s_pk, 32);
    if (c->cfg.consistency) {
        uint8_t tbs[SA_ADV_TBS];
        sa_adv_tbs(tbs, c->cfg.round, c->cfg.context, c->id, c->c_pk, c->s_pk);
        if ((rc = fed_sign_detached(msg + SA_HDR + 64, tbs, sizeof tbs, c->sign_sk))) {
            free(msg);
            return dead(c, rc);
        }
    }
    *out = msg;
    *out_len = len;
    c->stage = 1;
    return 0;
}

static int peer_index(const fed_secagg_client *c, uint32_t v) { return sa_find_u32(c->peer, c->m, v); }

#define AD_LEN 20
/* additional data of a share ciphertext: it is bound to the round and to both ends */
static void share_ad(uint8_t ad[AD_LEN], uint64_t round, uint32_t from, uint32_t to) {
    memcpy(ad, "FSAs", 4);
    sa_put32(ad + 4, from);
    sa_put32(ad + 8, to);
    sa_put64(ad + 12, round);
}

int fed_secagg_client_share_keys(fed_secagg_client *c, const uint8_t *in, size_t in_len, uint8_t **out,
                                 size_t *out_len) {
    int rc = want_stage(c, 1, "share_keys");
    if (rc) return rc;
    if ((rc = sa_check_hdr(in, in_len, SA_S_KEYS, c->id, c->cfg.round, "secagg client: key list"))) return dead(c, rc);
    sa_rd r = {in, in_len, SA_HDR, 0};
    uint32_t m = sa_rd32(&r);
    int k = sa_graph_degree(&c->g);
    if (r.bad || m > (uint32_t)k)
        return dead(c, fed_error(FED_EFORMAT, "secagg client %u: key list of %u peers (degree %d)", (unsigned)c->id,
                                 (unsigned)m, k));
    size_t ent = 68 + (c->cfg.consistency ? SA_SIG : 0);
    if (in_len != SA_HDR + 4 + (size_t)m * ent)
        return dead(c, fed_error(FED_EFORMAT, "secagg client %u: key list of %zu bytes for %u peers", (unsigned)c->id,
                                 in_len, (unsigned)m));
    if ((int)m + 1 < c->cfg.threshold)
        return dead(c, fed_error(FED_ESTATE, "secagg client %u: %u peers left, fewer than threshold %d - 1",
                                 (unsigned)c->id, (unsigned)m, c->cfg.threshold));
    c->m = (int)m;
    c->peer = malloc((m + 1) * sizeof *c->peer);
    c->peer_c = malloc((m + 1) * 32);
    c->peer_s = malloc((m + 1) * 32);
    c->key = malloc((m + 1) * 32);
    c->got = calloc(m + 1, 1);
    c->rb = calloc(m + 1, sizeof *c->rb);
    c->rs = calloc(m + 1, sizeof *c->rs);
    uint32_t *xs = malloc((m + 1) * sizeof *xs);
    fed_shamir_share *sb = malloc((m + 1) * sizeof *sb), *ss = malloc((m + 1) * sizeof *ss);
    size_t len = SA_HDR + 32 + 4 + (size_t)m * (4 + SA_CT_LEN);
    uint8_t *msg = malloc(len);
    if (!c->peer || !c->peer_c || !c->peer_s || !c->key || !c->got || !c->rb || !c->rs || !xs || !sb || !ss || !msg) {
        rc = fed_error(FED_ENOMEM, "secagg client: %u peers", (unsigned)m);
        goto out;
    }
    for (uint32_t j = 0; j < m; j++) {
        uint32_t v = sa_rd32(&r);
        const uint8_t *cp = sa_rdn(&r, 32), *sp = sa_rdn(&r, 32);
        if (!sa_graph_is_nbr(&c->g, c->id, v) || (j > 0 && v <= c->peer[j - 1])) {
            rc = fed_error(FED_EFORMAT, "secagg client %u: key list names client %u, not a new neighbour",
                           (unsigned)c->id, (unsigned)v);
            goto out;
        }
        if (c->cfg.consistency) {
            /* the keys must be v's own: a server cannot substitute its keys for them */
            const uint8_t *sig = sa_rdn(&r, SA_SIG);
            uint8_t tbs[SA_ADV_TBS];
            sa_adv_tbs(tbs, c->cfg.round, c->cfg.context, v, cp, sp);
            if (fed_sign_verify(sig, tbs, sizeof tbs, c->cfg.sign_pks[v])) {
                rc = fed_error(FED_EFORMAT, "secagg client %u: the keys of client %u in the key list are not signed "
                                            "by it", (unsigned)c->id, (unsigned)v);
                goto out;
            }
        }
        c->peer[j] = v;
        memcpy(c->peer_c[j], cp, 32);
        memcpy(c->peer_s[j], sp, 32);
        if ((rc = sa_enc_key(c->key[j], c->c_sk, cp, c->cfg.round, c->id, v))) goto out;
        xs[j] = v + 1;
    }
    xs[m] = c->id + 1;
    if ((rc = fed_shamir_split(c->b, c->cfg.threshold, xs, (int)m + 1, sb))) goto out;
    if ((rc = fed_shamir_split(c->s_sk, c->cfg.threshold, xs, (int)m + 1, ss))) goto out;
    c->self_b = sb[m];
    c->self_s = ss[m];
    sa_put_hdr(msg, SA_C_SHARE, c->id, c->cfg.round);
    sa_commit(msg + SA_HDR, c->b, c->cfg.round, c->id);
    sa_put32(msg + SA_HDR + 32, m);
    uint8_t *p = msg + SA_HDR + 36, pt[SA_PT_LEN], ad[AD_LEN];
    for (uint32_t j = 0; j < m; j++) {
        sa_put32(p, c->peer[j]);
        uint8_t *ct = p + 4;
        sa_put32(pt, c->id);
        sa_put32(pt + 4, c->peer[j]);
        for (int q = 0; q < FED_SHAMIR_CHUNKS; q++) {
            sa_put64(pt + 8 + 8 * q, sb[j].y[q]);
            sa_put64(pt + 8 + 8 * FED_SHAMIR_CHUNKS + 8 * q, ss[j].y[q]);
        }
        randombytes_buf(ct, SA_NONCE);
        share_ad(ad, c->cfg.round, c->id, c->peer[j]);
        crypto_aead_xchacha20poly1305_ietf_encrypt(ct + SA_NONCE, NULL, pt, sizeof pt, ad, sizeof ad, NULL, ct,
                                                   c->key[j]);
        p += 4 + SA_CT_LEN;
    }
    sodium_memzero(pt, sizeof pt);
    *out = msg;
    *out_len = len;
    msg = NULL;
    c->stage = 2;
    sodium_memzero(c->c_sk, 32); /* the share keys are derived; the secret is no longer needed */
out:
    free(xs);
    wipe_free(sb, (m + 1) * sizeof *sb);
    wipe_free(ss, (m + 1) * sizeof *ss);
    free(msg);
    return rc ? dead(c, rc) : 0;
}

#define CHUNK 16384 /* elements per pass over all mask streams: the accumulator stays in L2 */

int fed_secagg_client_masked_input(fed_secagg_client *c, const uint8_t *in, size_t in_len, const uint64_t *x,
                                   size_t L, uint8_t **out, size_t *out_len) {
    int rc = want_stage(c, 2, "masked_input");
    if (rc) return rc;
    if ((rc = sa_check_hdr(in, in_len, SA_S_SHARES, c->id, c->cfg.round, "secagg client: share relay")))
        return dead(c, rc);
    if (!x && L) return dead(c, fed_error(FED_EINVAL, "secagg client: no input"));
    const sa_ring *R = &c->ring;
    if (R->R)
        for (size_t i = 0; i < L; i++)
            if (x[i] >= R->R)
                return dead(c, fed_error(FED_ERANGE, "secagg client %u: input %zu = %llu is not below the ring size %llu",
                                         (unsigned)c->id, i, (unsigned long long)x[i], (unsigned long long)R->R));
    sa_rd r = {in, in_len, SA_HDR, 0};
    uint32_t m = sa_rd32(&r);
    if (r.bad || m > (uint32_t)c->m || in_len != SA_HDR + 4 + (size_t)m * (4 + SA_CT_LEN))
        return dead(c, fed_error(FED_EFORMAT, "secagg client %u: share relay of %zu bytes is malformed",
                                 (unsigned)c->id, in_len));
    if ((int)m + 1 < c->cfg.threshold)
        return dead(c, fed_error(FED_ESTATE, "secagg client %u: shares from %u peers, fewer than threshold %d - 1",
                                 (unsigned)c->id, (unsigned)m, c->cfg.threshold));
    uint32_t *partner = malloc((m + 1) * sizeof *partner), *compl = malloc((m + 1) * sizeof *compl);
    sa_stream *st = malloc((m + 1) * sizeof *st);
    void *acc = malloc((L ? L : 1) * (size_t)R->es);
    uint8_t *msg = NULL;
    uint32_t ncompl = 0;
    if (!partner || !compl || !st || !acc) {
        rc = fed_error(FED_ENOMEM, "secagg client: masked input of %zu elements", L);
        goto out;
    }
    uint8_t pt[SA_PT_LEN], ad[AD_LEN];
    int prev = -1;
    for (uint32_t j = 0; j < m; j++) {
        uint32_t v = sa_rd32(&r);
        const uint8_t *ct = sa_rdn(&r, SA_CT_LEN);
        int pi = peer_index(c, v);
        if (pi <= prev) {
            rc = fed_error(FED_EFORMAT, "secagg client %u: relayed share from client %u, not a new peer", (unsigned)c->id,
                           (unsigned)v);
            goto out;
        }
        prev = pi;
        partner[j] = v;
        share_ad(ad, c->cfg.round, v, c->id);
        int ok = crypto_aead_xchacha20poly1305_ietf_decrypt(pt, NULL, NULL, ct + SA_NONCE, SA_CT_LEN - SA_NONCE, ad,
                                                            sizeof ad, ct, c->key[pi]) == 0 &&
                 sa_get32(pt) == v && sa_get32(pt + 4) == c->id;
        if (ok) {
            c->rb[pi].x = c->rs[pi].x = c->id + 1;
            for (int q = 0; q < FED_SHAMIR_CHUNKS; q++) {
                c->rb[pi].y[q] = sa_get64(pt + 8 + 8 * q);
                c->rs[pi].y[q] = sa_get64(pt + 8 + 8 * FED_SHAMIR_CHUNKS + 8 * q);
            }
            c->got[pi] = 1;
        } else {
            c->got[pi] = 2; /* reported to the server; the sender still masks with us */
            compl[ncompl++] = v;
        }
    }
    sodium_memzero(pt, sizeof pt);
    /* streams: own self mask, then one pairwise mask per peer whose shares came */
    memcpy(st[0].seed, c->b, 32);
    st[0].sign = 1;
    for (uint32_t j = 0; j < m; j++) {
        int pi = peer_index(c, partner[j]);
        if ((rc = sa_pair_seed(st[j + 1].seed, c->s_sk, c->peer_s[pi], c->cfg.round, c->id, partner[j]))) goto out;
        st[j + 1].sign = sa_sign(c->id, partner[j]);
    }
    if (R->es == 4) {
        uint32_t *a = acc;
        for (size_t i = 0; i < L; i++) a[i] = (uint32_t)x[i];
    } else {
        memcpy(acc, x, L * 8);
    }
    if (R->kind == SA_KMOD) {
        sa_prg_apply(R, acc, 0, L, st, m + 1);
    } else {
        for (size_t off = 0; off < L; off += CHUNK) {
            size_t len = L - off < CHUNK ? L - off : CHUNK;
            sa_prg_apply(R, (uint8_t *)acc + off * R->es, off, len, st, m + 1);
        }
        sa_ring_reduce(R, acc, L);
    }
    size_t len = SA_HDR + 4 + (size_t)ncompl * 4 + 8 + sa_ring_wire_bytes(R, L);
    msg = malloc(len);
    if (!msg) {
        rc = fed_error(FED_ENOMEM, "secagg client: masked input message of %zu bytes", len);
        goto out;
    }
    sa_put_hdr(msg, SA_C_MASKED, c->id, c->cfg.round);
    sa_put32(msg + SA_HDR, ncompl);
    for (uint32_t j = 0; j < ncompl; j++) sa_put32(msg + SA_HDR + 4 + 4 * j, compl[j]);
    uint8_t *p = msg + SA_HDR + 4 + 4 * (size_t)ncompl;
    sa_put64(p, (uint64_t)L);
    p += 8;
    if (R->kind == SA_K32) {
        sa_pack32(p, acc, L, R->bits);
    } else if (R->ws == R->es) {
        memcpy(p, acc, L * (size_t)R->ws);
    } else { /* general R <= 2^32 kept in 64-bit accumulators */
        const uint64_t *a = acc;
        for (size_t i = 0; i < L; i++) sa_put32(p + 4 * i, (uint32_t)a[i]);
    }
    *out = msg;
    *out_len = len;
    c->stage = c->cfg.consistency ? CL_CHECK : 3;
    /* masks are applied: only the shares held for others are still needed */
    sodium_memzero(c->s_sk, 32);
    sodium_memzero(c->b, 32);
    sodium_memzero(c->key, (size_t)c->m * 32);
out:
    free(partner);
    free(compl);
    wipe_free(st, (m + 1) * sizeof *st);
    wipe_free(acc, (L ? L : 1) * (size_t)R->es);
    return rc ? dead(c, rc) : 0;
}

static int in_u3(const fed_secagg_client *c, uint32_t v) { return sa_find_u32(c->u3, (int)c->nu3, v) >= 0; }

int fed_secagg_client_consistency(fed_secagg_client *c, const uint8_t *in, size_t in_len, uint8_t **out,
                                  size_t *out_len) {
    if (!c || !out || !out_len) return fed_error(FED_EINVAL, "secagg client: NULL");
    if (!c->cfg.consistency)
        return fed_error(FED_ESTATE, "secagg client %u: no consistency check in this round", (unsigned)c->id);
    int rc = want_stage(c, CL_CHECK, "consistency");
    if (rc) return rc;
    if ((rc = sa_check_hdr(in, in_len, SA_S_CHECK, c->id, c->cfg.round, "secagg client: consistency check")))
        return dead(c, rc);
    sa_rd r = {in, in_len, SA_HDR, 0};
    uint32_t m = sa_rd32(&r);
    if (r.bad || m > (uint32_t)c->cfg.n || in_len != SA_HDR + 4 + (size_t)m * 4)
        return dead(c, fed_error(FED_EFORMAT, "secagg client %u: consistency check of %zu bytes is malformed",
                                 (unsigned)c->id, in_len));
    if ((int)m < c->cfg.threshold)
        return dead(c, fed_error(FED_ESTATE, "secagg client %u: U3 has %u clients, fewer than threshold %d",
                                 (unsigned)c->id, (unsigned)m, c->cfg.threshold));
    const uint8_t *ids = in + SA_HDR + 4;
    uint32_t *u3 = malloc(((size_t)m + 1) * sizeof *u3);
    if (!u3) return dead(c, fed_error(FED_ENOMEM, "secagg client: U3"));
    int self = 0;
    for (uint32_t i = 0; i < m; i++) {
        u3[i] = sa_get32(ids + 4 * (size_t)i);
        if (u3[i] >= (uint32_t)c->cfg.n || (i > 0 && u3[i] <= u3[i - 1])) {
            free(u3);
            return dead(c, fed_error(FED_EFORMAT, "secagg client %u: U3 is not an ascending list of clients",
                                     (unsigned)c->id));
        }
        self |= u3[i] == c->id;
    }
    if (!self) {
        free(u3);
        return dead(c, fed_error(FED_EFORMAT, "secagg client %u: U3 leaves out the client it is sent to",
                                 (unsigned)c->id));
    }
    size_t tl = 0;
    uint8_t *tbs = sa_u3_tbs(c->cfg.round, c->cfg.context, ids, m, &tl);
    uint8_t *msg = malloc(SA_HDR + SA_SIG);
    if (!tbs || !msg) {
        free(u3);
        free(tbs);
        free(msg);
        return dead(c, fed_error(FED_ENOMEM, "secagg client: consistency check"));
    }
    sa_put_hdr(msg, SA_C_CHECK, c->id, c->cfg.round);
    rc = fed_sign_detached(msg + SA_HDR, tbs, tl, c->sign_sk);
    sodium_memzero(c->sign_sk, sizeof c->sign_sk); /* signs nothing else this round */
    if (rc) {
        free(u3);
        free(tbs);
        free(msg);
        return dead(c, rc);
    }
    c->u3 = u3;
    c->nu3 = m;
    c->u3_tbs = tbs;
    c->u3_tbs_len = tl;
    *out = msg;
    *out_len = SA_HDR + SA_SIG;
    c->stage = 3;
    return 0;
}

/* The unmasking request's signatures (consistency check): at least t valid ones
 * on this client's U3, from members of U3 that are itself or its neighbours; any
 * other entry means the server is not consistent, and nothing is revealed. */
static int check_signatures(fed_secagg_client *c, sa_rd *r) {
    uint32_t g = sa_rd32(r);
    int k = sa_graph_degree(&c->g);
    if (r->bad || g > (uint32_t)k + 1 || r->len - r->off != (size_t)g * (4 + SA_SIG))
        return fed_error(FED_EFORMAT, "secagg client %u: signature list of the reveal request is malformed",
                         (unsigned)c->id);
    int64_t last = -1;
    for (uint32_t i = 0; i < g; i++) {
        uint32_t v = sa_rd32(r);
        const uint8_t *sig = sa_rdn(r, SA_SIG);
        if ((int64_t)v <= last || !in_u3(c, v) || (v != c->id && !sa_graph_is_nbr(&c->g, c->id, v)))
            return fed_error(FED_ESTATE, "secagg client %u: consistency check failed: a signature from client %u, "
                                         "not a new member of U3 in its neighbourhood", (unsigned)c->id, (unsigned)v);
        last = v;
        if (fed_sign_verify(sig, c->u3_tbs, c->u3_tbs_len, c->cfg.sign_pks[v]))
            return fed_error(FED_ESTATE, "secagg client %u: consistency check failed: client %u's signature is not "
                                         "on the U3 this client signed", (unsigned)c->id, (unsigned)v);
    }
    if ((int)g < c->cfg.threshold)
        return fed_error(FED_ESTATE, "secagg client %u: consistency check failed: %u signatures on U3, threshold %d",
                         (unsigned)c->id, (unsigned)g, c->cfg.threshold);
    return 0;
}

static void put_share(uint8_t *p, uint32_t owner, const fed_shamir_share *s) {
    sa_put32(p, owner);
    for (int q = 0; q < FED_SHAMIR_CHUNKS; q++) sa_put64(p + 4 + 8 * q, s->y[q]);
}

int fed_secagg_client_unmask(fed_secagg_client *c, const uint8_t *in, size_t in_len, uint8_t **out,
                             size_t *out_len) {
    int rc = want_stage(c, 3, "unmask");
    if (rc) return rc;
    if ((rc = sa_check_hdr(in, in_len, SA_S_REVEAL, c->id, c->cfg.round, "secagg client: reveal request")))
        return dead(c, rc);
    sa_rd r = {in, in_len, SA_HDR, 0};
    uint32_t nb = sa_rd32(&r);
    if (r.bad || nb > (uint32_t)c->m + 1 || in_len < SA_HDR + 8 + (size_t)nb * 4)
        return dead(c, fed_error(FED_EFORMAT, "secagg client %u: reveal request is malformed", (unsigned)c->id));
    const uint8_t *bl = sa_rdn(&r, (size_t)nb * 4);
    uint32_t ns = sa_rd32(&r);
    int cons = c->cfg.consistency != 0;
    if (r.bad || ns > (uint32_t)c->m || (cons ? in_len < SA_HDR + 8 + ((size_t)nb + ns) * 4
                                              : in_len != SA_HDR + 8 + ((size_t)nb + ns) * 4))
        return dead(c, fed_error(FED_EFORMAT, "secagg client %u: reveal request is malformed", (unsigned)c->id));
    const uint8_t *sl = sa_rdn(&r, (size_t)ns * 4);
    if (cons) {
        if ((rc = check_signatures(c, &r))) return dead(c, rc);
        /* self-mask shares only of U3, mask-key shares only outside it */
        for (uint32_t i = 0; i < nb; i++)
            if (!in_u3(c, sa_get32(bl + 4 * i)))
                return dead(c, fed_error(FED_ESTATE, "secagg client %u: asked for the self-mask share of client %u, "
                                                     "which is not in U3", (unsigned)c->id, (unsigned)sa_get32(bl + 4 * i)));
        for (uint32_t i = 0; i < ns; i++)
            if (in_u3(c, sa_get32(sl + 4 * i)))
                return dead(c, fed_error(FED_ESTATE, "secagg client %u: asked for the mask key share of client %u, "
                                                     "which is in U3", (unsigned)c->id, (unsigned)sa_get32(sl + 4 * i)));
    }
    /* both lists ascending, so one merge finds an id asked for twice */
    for (uint32_t i = 0, j = 0; i < nb && j < ns;) {
        uint32_t a = sa_get32(bl + 4 * i), b = sa_get32(sl + 4 * j);
        if (a == b)
            return dead(c, fed_error(FED_ESTATE, "secagg client %u: refusing to reveal both the self-mask and the mask "
                                                 "key shares of client %u", (unsigned)c->id, (unsigned)a));
        if (a < b) i++;
        else j++;
    }
    size_t len = SA_HDR + 8 + ((size_t)nb + ns) * SA_SHARE_WIRE;
    uint8_t *msg = malloc(len);
    if (!msg) return dead(c, fed_error(FED_ENOMEM, "secagg client: unmask message"));
    sa_put_hdr(msg, SA_C_UNMASK, c->id, c->cfg.round);
    sa_put32(msg + SA_HDR, nb);
    uint8_t *p = msg + SA_HDR + 4;
    int64_t last = -1;
    for (uint32_t i = 0; i < nb; i++, p += SA_SHARE_WIRE) {
        uint32_t v = sa_get32(bl + 4 * i);
        int pi = v == c->id ? -2 : peer_index(c, v);
        if ((int64_t)v <= last || pi == -1 || (pi >= 0 && c->got[pi] != 1)) {
            rc = fed_error(FED_EFORMAT, "secagg client %u: asked for a self-mask share of client %u it does not hold",
                           (unsigned)c->id, (unsigned)v);
            break;
        }
        last = v;
        put_share(p, v, pi == -2 ? &c->self_b : &c->rb[pi]);
    }
    sa_put32(p, ns);
    p += 4;
    last = -1;
    for (uint32_t i = 0; i < ns && !rc; i++, p += SA_SHARE_WIRE) {
        uint32_t v = sa_get32(sl + 4 * i);
        int pi = peer_index(c, v);
        if ((int64_t)v <= last || pi < 0 || c->got[pi] != 1) {
            rc = fed_error(FED_EFORMAT, "secagg client %u: asked for a mask key share of client %u it does not hold",
                           (unsigned)c->id, (unsigned)v);
            break;
        }
        last = v;
        put_share(p, v, &c->rs[pi]);
    }
    if (rc) {
        wipe_free(msg, len);
        return dead(c, rc);
    }
    *out = msg;
    *out_len = len;
    c->stage = 4;
    return 0;
}
