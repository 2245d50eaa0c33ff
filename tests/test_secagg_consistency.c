/* The active-adversary variant of secure aggregation (Bonawitz et al. CCS 2017,
 * the ConsistencyCheck round and signed key advertisements): honest rounds give
 * the exact sum with drop-outs at every stage, the consistency check included,
 * down to t survivors (fewer fail cleanly); a server that shows two groups of
 * clients two different U3 sets gets no share out of the group that cannot
 * gather t signatures on its set; forged, missing and misplaced signatures are
 * refused, at stage 0 as at the check, and so are advertisements signed under
 * another run's context; the signed bytes and message sizes are as
 * documented (RFC 8032 for the signature itself). With the option off nothing
 * changes: the other secagg tests pin that. */
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "federate/crypto.h"
#include "federate/error.h"
#include "federate/rng.h"
#include "federate/secagg.h"

enum { MAXN = 24, STAGES = 5, HDR = 16 };

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }

static void unhex(uint8_t *out, const char *hex) {
    for (size_t i = 0; hex[2 * i]; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
}

/* ---- keys: the PKI of the tests ---- */
typedef struct pki {
    uint8_t pk[MAXN][32];
    uint8_t sk[MAXN][64];
} pki;

static void pki_make(pki *k, int n) {
    for (int u = 0; u < n; u++) CHECK_OK(fed_sign_keypair(k->pk[u], k->sk[u]));
}

static void cfg_make(fed_secagg_cfg *cfg, int n, int t, int degree, const pki *k) {
    CHECK_OK(fed_secagg_cfg_default(cfg, n));
    cfg->threshold = t;
    cfg->degree = degree;
    cfg->round = 7;
    cfg->consistency = 1;
    cfg->sign_pks = (const uint8_t (*)[32])k->pk;
    for (int i = 0; i < 32; i++) cfg->context[i] = (uint8_t)(0xc0 + i); /* the run's context */
}

/* the context cfg_make sets, as the signed strings carry it */
static void ctx_bytes(uint8_t out[32]) {
    for (int i = 0; i < 32; i++) out[i] = (uint8_t)(0xc0 + i);
}

/* ---- a round driven by hand, with a hook on every message ---- */
/* dir 0: the server's message to u (*msg NULL when the server has none for u: the
 * hook may make one up); dir 1: u's answer. The hook may replace *msg (malloc'd). */
typedef void (*hook_fn)(void *ctx, int stage, int dir, int u, uint8_t **msg, size_t *len);

typedef struct run {
    int client_rc[STAGES][MAXN];
    int server_rc[STAGES][MAXN];
    int sent[STAGES][MAXN];   /* the client produced a message */
    int finish_rc;            /* first failing finish_stage, or 0 */
    int failed_stage;
    uint64_t sum[64];
    uint8_t inc[MAXN], off[MAXN];
} run;

static void drive(const fed_secagg_cfg *cfg, const pki *k, size_t L, uint64_t (*x)[64], hook_fn hook, void *ctx,
                  run *ro) {
    int n = cfg->n;
    CHECK(n <= MAXN && L <= 64);
    memset(ro, 0, sizeof *ro);
    ro->failed_stage = -1;
    fed_secagg_server *srv;
    fed_secagg_client *cl[MAXN];
    int alive[MAXN];
    CHECK_OK(fed_secagg_server_new(&srv, cfg, L));
    CHECK_EQ_INT(fed_secagg_stage_count(cfg), 5);
    for (int u = 0; u < n; u++) {
        CHECK_OK(fed_secagg_client_new(&cl[u], cfg, (uint32_t)u));
        CHECK_OK(fed_secagg_client_set_signing_key(cl[u], k->sk[u]));
        alive[u] = 1;
    }
    for (int stage = 0; stage < STAGES; stage++) {
        CHECK_EQ_INT(fed_secagg_server_stage(srv), stage);
        CHECK_EQ_INT(fed_secagg_stage_is_consistency(cfg, stage), stage == 3);
        for (int u = 0; u < n; u++) {
            if (!alive[u]) continue;
            uint8_t *in = NULL, *out = NULL;
            size_t il = 0, ol = 0;
            if (stage > 0 && fed_secagg_server_message(srv, (uint32_t)u, &in, &il)) in = NULL;
            if (stage > 0 && hook) hook(ctx, stage, 0, u, &in, &il);
            if (stage > 0 && !in) {
                alive[u] = 0;
                continue;
            }
            int rc;
            switch (stage) {
            case 0: rc = fed_secagg_client_advertise(cl[u], &out, &ol); break;
            case 1: rc = fed_secagg_client_share_keys(cl[u], in, il, &out, &ol); break;
            case 2: rc = fed_secagg_client_masked_input(cl[u], in, il, x[u], L, &out, &ol); break;
            case 3: rc = fed_secagg_client_consistency(cl[u], in, il, &out, &ol); break;
            default: rc = fed_secagg_client_unmask(cl[u], in, il, &out, &ol); break;
            }
            free(in);
            ro->client_rc[stage][u] = rc;
            if (rc) {
                CHECK(out == NULL); /* a client that refuses says nothing */
                alive[u] = 0;
                continue;
            }
            ro->sent[stage][u] = 1;
            if (hook) hook(ctx, stage, 1, u, &out, &ol);
            if (out) ro->server_rc[stage][u] = fed_secagg_server_receive(srv, (uint32_t)u, out, ol);
            else alive[u] = 0; /* the hook dropped it */
            free(out);
        }
        int rc = fed_secagg_server_finish_stage(srv);
        if (rc) {
            ro->finish_rc = rc;
            ro->failed_stage = stage;
            CHECK_EQ_INT(fed_secagg_server_stage(srv), -1);
            break;
        }
    }
    if (!ro->finish_rc) {
        CHECK_EQ_INT(fed_secagg_server_stage(srv), 5);
        CHECK_OK(fed_secagg_server_result(srv, ro->sum, ro->inc));
    }
    CHECK_OK(fed_secagg_server_offenders(srv, ro->off));
    for (int u = 0; u < n; u++) fed_secagg_client_free(cl[u]);
    fed_secagg_server_free(srv);
}

static void check_sum(int n, size_t L, uint64_t (*x)[64], const uint64_t *sum, const uint8_t *inc) {
    for (size_t i = 0; i < L; i++) {
        uint32_t s = 0;
        for (int u = 0; u < n; u++)
            if (inc[u]) s += (uint32_t)x[u][i];
        CHECK(sum[i] == s);
    }
}

static uint64_t X[MAXN][64];

/* ---- RFC 8032 test 1 through the signing call the protocol uses ---- */
static void ed25519_kat(void) {
    uint8_t sk[64], pk[32], sig[64], want[64];
    unhex(sk, "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
    unhex(sk + 32, "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
    unhex(want, "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46b"
                "d25bf5f0595bbe24655141438e7a100b");
    CHECK_OK(fed_sign_sk_to_pk(pk, sk));
    CHECK(memcmp(pk, sk + 32, 32) == 0);
    CHECK_OK(fed_sign_detached(sig, "", 0, sk));
    CHECK(memcmp(sig, want, 64) == 0);
}

/* ---- API contract ---- */
static void contract(void) {
    static pki k;
    pki_make(&k, 4);
    fed_secagg_cfg cfg;
    cfg_make(&cfg, 4, 3, 0, &k);
    fed_secagg_cfg bad = cfg;
    bad.sign_pks = NULL;
    CHECK_EQ_INT(fed_secagg_cfg_check(&bad), FED_EINVAL);
    fed_secagg_client *c;
    uint8_t *out = NULL;
    size_t ol;
    CHECK_OK(fed_secagg_client_new(&c, &cfg, 1));
    CHECK_EQ_INT(fed_secagg_client_advertise(c, &out, &ol), FED_ESTATE); /* no key yet */
    CHECK(out == NULL);
    CHECK_EQ_INT(fed_secagg_client_set_signing_key(c, k.sk[2]), FED_EINVAL); /* not its key */
    CHECK_OK(fed_secagg_client_set_signing_key(c, k.sk[1]));
    CHECK_EQ_INT(fed_secagg_client_consistency(c, NULL, 0, &out, &ol), FED_ESTATE); /* out of turn */
    CHECK_OK(fed_secagg_client_advertise(c, &out, &ol));
    /* C_ADV: header, c_pk, s_pk, then the signature over "FSAa" round context id
     * c_pk s_pk */
    CHECK_EQ_INT(ol, HDR + 64 + 64);
    uint8_t tbs[112];
    memcpy(tbs, "FSAa", 4);
    put64(tbs + 4, 7);
    ctx_bytes(tbs + 12);
    put32(tbs + 44, 1);
    memcpy(tbs + 48, out + HDR, 64);
    CHECK_OK(fed_sign_verify(out + HDR + 64, tbs, sizeof tbs, k.pk[1]));
    CHECK(fed_sign_verify(out + HDR + 64, tbs, sizeof tbs, k.pk[0]) != 0);
    tbs[12] ^= 1; /* the same bytes under another context */
    CHECK(fed_sign_verify(out + HDR + 64, tbs, sizeof tbs, k.pk[1]) != 0);
    free(out);
    fed_secagg_client_free(c);
    /* without the option the key is refused and the advertisement keeps its size */
    fed_secagg_cfg off = cfg;
    off.consistency = 0;
    CHECK_EQ_INT(fed_secagg_stage_count(&off), 4);
    CHECK_EQ_INT(fed_secagg_stage_is_consistency(&off, 3), 0);
    CHECK_OK(fed_secagg_client_new(&c, &off, 1));
    CHECK_EQ_INT(fed_secagg_client_set_signing_key(c, k.sk[1]), FED_EINVAL);
    CHECK_OK(fed_secagg_client_advertise(c, &out, &ol));
    CHECK_EQ_INT(ol, HDR + 64);
    free(out);
    fed_secagg_client_free(c);
    /* the driver's refusal of a missing input function frees (and wipes) the
     * signing keys it generated (a leak under valgrind / ASan before) */
    fed_secagg_cfg sim = cfg;
    sim.sign_pks = NULL;
    uint64_t sum[4];
    CHECK_EQ_INT(fed_secagg_sim_run(&sim, 4, NULL, NULL, NULL, sum, NULL, NULL), FED_EINVAL);
}

/* ---- honest rounds through the in-process driver ---- */
static int arr_sum(const fed_secagg_cfg *cfg, size_t L, const uint8_t *drop, uint64_t *sum, uint8_t *inc,
                   fed_secagg_stats *st) {
    const uint64_t *in[MAXN];
    for (int u = 0; u < cfg->n; u++) in[u] = X[u];
    return fed_secagg_sum(cfg, in, L, drop, sum, inc, st);
}

static void honest_sim(void) {
    size_t L = 40;
    uint64_t sum[64];
    uint8_t inc[MAXN];
    fed_secagg_stats st;
    fed_secagg_cfg cfg;
    CHECK_OK(fed_secagg_cfg_default(&cfg, 12));
    cfg.threshold = 6;
    cfg.consistency = 1; /* the driver makes the keys: sign_pks may stay NULL */
    cfg.threads = 2;
    CHECK_OK(arr_sum(&cfg, L, NULL, sum, inc, &st));
    for (int u = 0; u < 12; u++) CHECK(inc[u]);
    check_sum(12, L, X, sum, inc);
    CHECK_EQ_INT(st.survivors, 12);
    CHECK_EQ_INT(st.finished, 12);
    CHECK(st.client_check_ms > 0 && st.server_check_ms > 0);

    /* one drop-out before each message: advertise, share keys, masked input,
     * consistency signature, unmasking answer */
    uint8_t drop[MAXN];
    memset(drop, 4, sizeof drop);
    drop[0] = 0;
    drop[3] = 1;
    drop[5] = 2;
    drop[7] = FED_SECAGG_DROP_CHECK;
    drop[9] = 3;
    CHECK_OK(arr_sum(&cfg, L, drop, sum, inc, &st));
    for (int u = 0; u < 12; u++) CHECK_EQ_INT(inc[u], u != 0 && u != 3 && u != 5); /* 7 and 9 masked: in U3 */
    check_sum(12, L, X, sum, inc);
    CHECK_EQ_INT(st.finished, 7);

    /* SecAgg+ neighbourhoods, drop-outs at the check */
    fed_secagg_cfg h;
    CHECK_OK(fed_secagg_cfg_default(&h, 20));
    h.degree = 10;
    h.threshold = 6;
    h.consistency = 1;
    memset(drop, 4, sizeof drop);
    drop[1] = FED_SECAGG_DROP_CHECK;
    drop[2] = FED_SECAGG_DROP_CHECK;
    drop[4] = 2;
    drop[11] = 3;
    CHECK_OK(arr_sum(&h, L, drop, sum, inc, &st));
    for (int u = 0; u < 20; u++) CHECK_EQ_INT(inc[u], u != 4);
    check_sum(20, L, X, sum, inc);

    /* exactly t answer the unmasking request: U3 = 7, 6 sign, 5 = t answer */
    fed_secagg_cfg e;
    CHECK_OK(fed_secagg_cfg_default(&e, 8));
    e.threshold = 5;
    e.consistency = 1;
    memset(drop, 4, sizeof drop);
    drop[0] = 0;
    drop[1] = FED_SECAGG_DROP_CHECK;
    drop[2] = 3;
    CHECK_OK(arr_sum(&e, L, drop, sum, inc, &st));
    for (int u = 0; u < 8; u++) CHECK_EQ_INT(inc[u], u != 0);
    check_sum(8, L, X, sum, inc);
    CHECK_EQ_INT(st.finished, 5);
    /* one answer short: the round fails cleanly */
    drop[3] = 3;
    CHECK_EQ_INT(arr_sum(&e, L, drop, sum, inc, &st), FED_ESTATE);
    CHECK(strstr(fed_last_error(), "answered") != NULL);
    /* t - 1 signatures on U3: the round fails at the check */
    drop[3] = FED_SECAGG_DROP_CHECK;
    drop[4] = FED_SECAGG_DROP_CHECK;
    CHECK_EQ_INT(arr_sum(&e, L, drop, sum, inc, &st), FED_ESTATE);
    CHECK(strstr(fed_last_error(), "signed U3") != NULL);

    /* without the check, FED_SECAGG_DROP_CHECK is a drop-out before the unmasking
     * answer, as 3 */
    e.consistency = 0;
    memset(drop, 4, sizeof drop);
    drop[1] = FED_SECAGG_DROP_CHECK;
    CHECK_OK(arr_sum(&e, L, drop, sum, inc, &st));
    for (int u = 0; u < 8; u++) CHECK(inc[u]);
    CHECK_EQ_INT(st.finished, 7);
}

/* ---- the hand-driven honest round: message sizes and signed bytes ---- */
typedef struct kat_ctx {
    const pki *k;
    int n;
} kat_ctx;

static void kat_hook(void *p, int stage, int dir, int u, uint8_t **msg, size_t *len) {
    kat_ctx *c = p;
    if (stage == 1 && dir == 0) CHECK_EQ_INT(*len, HDR + 4 + (size_t)(c->n - 1) * (4 + 64 + 64));
    if (stage == 3 && dir == 0) {
        /* S_CHECK: U3 = everyone, ascending */
        CHECK_EQ_INT(*len, HDR + 4 + 4 * (size_t)c->n);
        CHECK_EQ_INT((*msg)[3], 0x13);
        CHECK_EQ_INT(get32(*msg + HDR), c->n);
        for (int v = 0; v < c->n; v++) CHECK_EQ_INT(get32(*msg + HDR + 4 + 4 * v), v);
    }
    if (stage == 3 && dir == 1) {
        /* C_CHECK: the signature over "FSAu" round context |U3| U3 */
        CHECK_EQ_INT(*len, HDR + 64);
        CHECK_EQ_INT((*msg)[3], 4);
        uint8_t tbs[48 + 4 * MAXN];
        memcpy(tbs, "FSAu", 4);
        put64(tbs + 4, 7);
        ctx_bytes(tbs + 12);
        put32(tbs + 44, (uint32_t)c->n);
        for (int v = 0; v < c->n; v++) put32(tbs + 48 + 4 * v, (uint32_t)v);
        CHECK_OK(fed_sign_verify(*msg + HDR, tbs, 48 + 4 * (size_t)c->n, c->k->pk[u]));
        tbs[43] ^= 0x80; /* another run's context */
        CHECK(fed_sign_verify(*msg + HDR, tbs, 48 + 4 * (size_t)c->n, c->k->pk[u]) != 0);
    }
    if (stage == 4 && dir == 0) {
        /* S_REVEAL: n self-mask ids, no mask keys, then n signatures */
        CHECK_EQ_INT(*len, HDR + 8 + 4 * (size_t)c->n + 4 + (size_t)c->n * 68);
        CHECK_EQ_INT(get32(*msg + HDR + 8 + 4 * c->n), c->n);
    }
}

static void honest_manual(void) {
    static pki k;
    pki_make(&k, 6);
    fed_secagg_cfg cfg;
    cfg_make(&cfg, 6, 4, 0, &k);
    kat_ctx kc = {&k, 6};
    static run ro;
    drive(&cfg, &k, 30, X, kat_hook, &kc, &ro);
    CHECK_OK(ro.finish_rc);
    for (int u = 0; u < 6; u++) CHECK(ro.inc[u] && !ro.off[u]);
    check_sum(6, 30, X, ro.sum, ro.inc);
}

/* ---- stage 0: signatures on the advertised keys ---- */
static void adv_hook(void *p, int stage, int dir, int u, uint8_t **msg, size_t *len) {
    (void)p;
    if (stage == 0 && dir == 1 && u == 2) (*msg)[*len - 1] ^= 1; /* forged signature */
    if (stage == 0 && dir == 1 && u == 3) *len -= 64;            /* no signature */
    if (stage == 0 && dir == 1 && u == 4) (*msg)[HDR + 5] ^= 1;  /* keys changed under the signature */
    if (stage == 1 && dir == 0 && u == 0) {
        /* the server substitutes peer 1's share key in client 0's key list */
        CHECK_EQ_INT(get32(*msg + HDR + 4), 1);
        (*msg)[HDR + 4 + 4 + 7] ^= 0x40;
    }
}

static void stage0(void) {
    static pki k;
    pki_make(&k, 9);
    fed_secagg_cfg cfg;
    cfg_make(&cfg, 9, 4, 0, &k);
    static run ro;
    drive(&cfg, &k, 20, X, adv_hook, NULL, &ro);
    CHECK_OK(ro.finish_rc);
    for (int u = 2; u <= 4; u++) {
        CHECK_EQ_INT(ro.server_rc[0][u], FED_EFORMAT);
        CHECK(ro.off[u]);
    }
    CHECK_EQ_INT(ro.client_rc[1][0], FED_EFORMAT); /* client 0 stops: the keys are not peer 1's */
    for (int u = 0; u < 9; u++) CHECK_EQ_INT(ro.inc[u], u > 4 || u == 1);
    check_sum(9, 20, X, ro.sum, ro.inc);
}

/* ---- the run's context: derivation, and a replay from another run ---- */
static void context(void) {
    /* SHA-256("federate-secagg-context" || run, 8 bytes little-endian || graph_seed) */
    uint8_t seed[32], got[32], want[32], buf[23 + 8 + 32];
    for (int i = 0; i < 32; i++) seed[i] = (uint8_t)(3 * i + 1);
    memcpy(buf, "federate-secagg-context", 23);
    uint64_t run_id = 0x0102030405060708ull;
    for (int i = 0; i < 8; i++) buf[23 + i] = (uint8_t)(run_id >> (8 * i));
    memcpy(buf + 31, seed, 32);
    CHECK_OK(fed_sha256(want, buf, sizeof buf));
    CHECK_OK(fed_secagg_context(got, run_id, seed));
    CHECK(memcmp(got, want, 32) == 0);
    CHECK_OK(fed_secagg_context(want, run_id + 1, seed)); /* another run */
    CHECK(memcmp(got, want, 32) != 0);
    seed[31] ^= 1; /* another graph seed */
    CHECK_OK(fed_secagg_context(want, run_id, seed));
    CHECK(memcmp(got, want, 32) != 0);
    fed_secagg_cfg d;
    CHECK_OK(fed_secagg_cfg_default(&d, 4));
    for (int i = 0; i < 32; i++) CHECK_EQ_INT(d.context[i], 0);

    /* a client's advertisement signed in run A (same round number, same keys) is
     * refused by run B's server, and taken by run A's */
    static pki k;
    pki_make(&k, 4);
    fed_secagg_cfg a, b;
    cfg_make(&a, 4, 3, 0, &k);
    b = a;
    CHECK_OK(fed_secagg_context(a.context, 1, a.graph_seed));
    CHECK_OK(fed_secagg_context(b.context, 2, b.graph_seed));
    fed_secagg_client *c;
    uint8_t *out = NULL;
    size_t ol;
    CHECK_OK(fed_secagg_client_new(&c, &a, 2));
    CHECK_OK(fed_secagg_client_set_signing_key(c, k.sk[2]));
    CHECK_OK(fed_secagg_client_advertise(c, &out, &ol));
    fed_secagg_server *sb, *sa;
    uint8_t off[4];
    CHECK_OK(fed_secagg_server_new(&sb, &b, 8));
    CHECK_EQ_INT(fed_secagg_server_receive(sb, 2, out, ol), FED_EFORMAT);
    CHECK_OK(fed_secagg_server_offenders(sb, off));
    CHECK(off[2]);
    fed_secagg_server_free(sb);
    CHECK_OK(fed_secagg_server_new(&sa, &a, 8));
    CHECK_OK(fed_secagg_server_receive(sa, 2, out, ol));
    fed_secagg_server_free(sa);
    free(out);
    fed_secagg_client_free(c);

    /* a whole round where one client was given another context: its advertisement
     * is refused, the others go on without it */
    fed_secagg_cfg cfg;
    cfg_make(&cfg, 6, 4, 0, &k);
    static pki k6;
    pki_make(&k6, 6);
    cfg.sign_pks = (const uint8_t (*)[32])k6.pk;
    fed_secagg_cfg other = cfg;
    other.context[0] ^= 1;
    fed_secagg_server *srv;
    CHECK_OK(fed_secagg_server_new(&srv, &cfg, 8));
    for (int u = 0; u < 6; u++) {
        CHECK_OK(fed_secagg_client_new(&c, u == 5 ? &other : &cfg, (uint32_t)u));
        CHECK_OK(fed_secagg_client_set_signing_key(c, k6.sk[u]));
        CHECK_OK(fed_secagg_client_advertise(c, &out, &ol));
        CHECK_EQ_INT(fed_secagg_server_receive(srv, (uint32_t)u, out, ol), u == 5 ? FED_EFORMAT : 0);
        free(out);
        fed_secagg_client_free(c);
    }
    uint8_t off6[6];
    CHECK_OK(fed_secagg_server_offenders(srv, off6));
    for (int u = 0; u < 6; u++) CHECK_EQ_INT(off6[u], u == 5);
    fed_secagg_server_free(srv);
}

/* ---- the check: forged and missing signatures, a bad U3 ---- */
static void check_hook(void *p, int stage, int dir, int u, uint8_t **msg, size_t *len) {
    (void)p;
    if (stage == 3 && dir == 1 && u == 1) (*msg)[HDR + 10] ^= 1; /* forged */
    if (stage == 3 && dir == 1 && u == 2) *len = HDR;           /* signature missing */
    if (stage == 3 && dir == 0 && u == 3) {
        /* a U3 of t - 1 = 3 clients: client 3 will not sign it */
        put32(*msg + HDR, 3);
        put32(*msg + HDR + 4 + 4 * 2, 3);
        *len = HDR + 4 + 12;
    }
    if (stage == 3 && dir == 0 && u == 5) {
        /* a U3 leaving out client 5 itself */
        uint32_t m = get32(*msg + HDR);
        for (uint32_t i = 5; i + 1 < m; i++) put32(*msg + HDR + 4 + 4 * i, get32(*msg + HDR + 8 + 4 * i));
        put32(*msg + HDR, m - 1);
        *len -= 4;
    }
    if (stage == 4 && dir == 0 && u == 6) {
        /* the unmasking request without its signatures */
        uint32_t nb = get32(*msg + HDR), ns = get32(*msg + HDR + 4 + 4 * nb);
        size_t at = HDR + 8 + 4 * ((size_t)nb + ns);
        put32(*msg + at, 0);
        *len = at + 4;
    }
    if (stage == 4 && dir == 0 && u == 7) {
        /* a signature moved to another signer's slot */
        uint32_t nb = get32(*msg + HDR), ns = get32(*msg + HDR + 4 + 4 * nb);
        uint8_t *sg = *msg + HDR + 8 + 4 * ((size_t)nb + ns) + 4;
        memcpy(sg + 4, sg + 68 + 4, 64);
    }
}

static void check_stage(void) {
    static pki k;
    pki_make(&k, 10);
    fed_secagg_cfg cfg;
    cfg_make(&cfg, 10, 4, 0, &k);
    static run ro;
    drive(&cfg, &k, 20, X, check_hook, NULL, &ro);
    CHECK_OK(ro.finish_rc);
    CHECK_EQ_INT(ro.server_rc[3][1], FED_EFORMAT);
    CHECK_EQ_INT(ro.server_rc[3][2], FED_EFORMAT);
    CHECK_EQ_INT(ro.client_rc[3][3], FED_ESTATE);
    CHECK_EQ_INT(ro.client_rc[3][5], FED_EFORMAT);
    CHECK_EQ_INT(ro.client_rc[4][6], FED_ESTATE);
    CHECK_EQ_INT(ro.client_rc[4][7], FED_ESTATE);
    CHECK(!ro.sent[4][1] && !ro.sent[4][2] && !ro.sent[4][6] && !ro.sent[4][7]);
    CHECK(ro.off[1] && ro.off[2]);
    /* every masked input counts: U3 was fixed before the check */
    for (int u = 0; u < 10; u++) CHECK(ro.inc[u]);
    check_sum(10, 20, X, ro.sum, ro.inc);
}

/* ---- a server that shows two groups two different U3 sets ----
 * n = 8, t = 4. Group A = {0..4} gets the true U3 (everyone); group B = {5,6,7}
 * is told that client 0 dropped out and is asked for client 0's mask key share
 * (A is asked for its self-mask share): with both the server would learn client
 * 0's input. B's signatures are on another set, and only 3 < t signed it. */
typedef struct split_ctx {
    uint8_t sig[8][64];  /* what each client signed */
    int have[8];
    uint32_t u3b[8];
} split_ctx;

static void split_hook(void *p, int stage, int dir, int u, uint8_t **msg, size_t *len) {
    split_ctx *c = p;
    int inB = u >= 5;
    if (stage == 3 && dir == 0 && inB) {
        uint32_t m = get32(*msg + HDR);
        CHECK_EQ_INT(m, 8);
        for (uint32_t i = 0; i + 1 < m; i++) put32(*msg + HDR + 4 + 4 * i, i + 1);
        put32(*msg + HDR, m - 1);
        *len -= 4;
    }
    if (stage == 3 && dir == 1) {
        memcpy(c->sig[u], *msg + HDR, 64);
        c->have[u] = 1;
    }
    if (stage == 4 && dir == 0 && u == 4) {
        /* an A client asked for the mask key of client 1, a member of U3 */
        uint32_t nb = get32(*msg + HDR), ns = get32(*msg + HDR + 4 + 4 * nb);
        CHECK_EQ_INT(nb, 8);
        CHECK_EQ_INT(ns, 0);
        size_t sigs = HDR + 8 + 4 * (size_t)nb, sl = *len - sigs;
        uint8_t *m2 = malloc(*len);
        memcpy(m2, *msg, HDR);
        put32(m2 + HDR, nb - 1);
        for (uint32_t i = 0, j = 0; i < nb; i++)
            if (i != 1) put32(m2 + HDR + 4 + 4 * j++, get32(*msg + HDR + 4 + 4 * i));
        put32(m2 + HDR + 4 + 4 * (nb - 1), 1);
        put32(m2 + HDR + 8 + 4 * (nb - 1), 1);
        memcpy(m2 + HDR + 12 + 4 * (nb - 1), *msg + sigs, sl);
        free(*msg);
        *msg = m2;
        *len = HDR + 12 + 4 * (nb - 1) + sl;
    }
    if (stage == 4 && dir == 0 && inB) {
        /* the honest server has refused B's signatures; the malicious one writes
         * B's request by hand: self-mask shares of 1..7, the mask key of 0 */
        CHECK(*msg == NULL);
        int signers[8], g = 0;
        if (u == 5) { /* only the three signatures on U3_B */
            signers[g++] = 5; signers[g++] = 6; signers[g++] = 7;
        } else if (u == 6) { /* plus client 1's, on the other U3: t entries */
            signers[g++] = 1; signers[g++] = 5; signers[g++] = 6; signers[g++] = 7;
        } else { /* all eight */
            for (int v = 0; v < 8; v++) signers[g++] = v;
        }
        size_t l = HDR + 4 + 7 * 4 + 4 + 4 + 4 + (size_t)g * 68;
        uint8_t *m = malloc(l), *q = m + HDR;
        m[0] = 'F'; m[1] = 'S'; m[2] = 'A'; m[3] = 0x12;
        put32(m + 4, (uint32_t)u);
        put64(m + 8, 7);
        put32(q, 7);
        for (int v = 1; v < 8; v++) put32(q + 4 * v, (uint32_t)v);
        q += 4 + 28;
        put32(q, 1);
        put32(q + 4, 0);
        q += 8;
        put32(q, (uint32_t)g);
        q += 4;
        for (int i = 0; i < g; i++, q += 68) {
            CHECK(c->have[signers[i]]);
            put32(q, (uint32_t)signers[i]);
            memcpy(q + 4, c->sig[signers[i]], 64);
        }
        CHECK(q == m + l);
        *msg = m;
        *len = l;
    }
}

static void split_view(void) {
    static pki k;
    pki_make(&k, 8);
    fed_secagg_cfg cfg;
    cfg_make(&cfg, 8, 4, 0, &k);
    split_ctx sc;
    memset(&sc, 0, sizeof sc);
    static run ro;
    drive(&cfg, &k, 25, X, split_hook, &sc, &ro);
    /* B signed a U3 the server did not send everyone: the honest server's check refuses them */
    for (int u = 5; u < 8; u++) {
        CHECK_OK(ro.client_rc[3][u]);
        CHECK_EQ_INT(ro.server_rc[3][u], FED_EFORMAT);
    }
    /* no B client reveals anything */
    for (int u = 5; u < 8; u++) {
        CHECK_EQ_INT(ro.client_rc[4][u], FED_ESTATE);
        CHECK(!ro.sent[4][u]);
    }
    /* the A client asked for a mask key inside U3 refuses too */
    CHECK_EQ_INT(ro.client_rc[4][4], FED_ESTATE);
    CHECK(!ro.sent[4][4]);
    /* A = {0..3} agree on U3 with 4 = t signatures and unmask */
    for (int u = 0; u < 4; u++) CHECK(ro.sent[4][u] && ro.server_rc[4][u] == 0);
    CHECK_OK(ro.finish_rc);
    for (int u = 0; u < 8; u++) CHECK(ro.inc[u]);
    check_sum(8, 25, X, ro.sum, ro.inc);
}

/* ---- garbled check-stage and reveal messages: refused, never a crash or a wrong sum ---- */
typedef struct garble_ctx {
    fed_rng r;
} garble_ctx;

static void garble_hook(void *p, int stage, int dir, int u, uint8_t **msg, size_t *len) {
    garble_ctx *g = p;
    if (stage < 3 || !*msg) return;
    int what = (int)fed_rng_below(&g->r, 4);
    if ((u + stage + dir) % 3 != 0 || what == 0) return;
    if (what == 1) *len = (size_t)fed_rng_below(&g->r, (uint32_t)*len + 1); /* truncated */
    else if (what == 2 && *len) (*msg)[fed_rng_below(&g->r, (uint32_t)*len)] ^= (uint8_t)(1 + fed_rng_below(&g->r, 255));
    else { /* random bytes behind a valid header */
        size_t l = HDR + (size_t)fed_rng_below(&g->r, 200);
        uint8_t *m = malloc(l);
        memcpy(m, *msg, *len < HDR ? *len : HDR);
        for (size_t i = HDR; i < l; i++) m[i] = (uint8_t)fed_rng_u32(&g->r);
        if (l >= HDR + 4 && fed_rng_below(&g->r, 2)) put32(m + HDR, (uint32_t)fed_rng_below(&g->r, 12));
        free(*msg);
        *msg = m;
        *len = l;
    }
}

static void garbled(void) {
    static pki k;
    pki_make(&k, 10);
    fed_secagg_cfg cfg;
    cfg_make(&cfg, 10, 4, 0, &k);
    static run ro;
    int ok = 0;
    for (int it = 0; it < 24; it++) {
        garble_ctx g;
        fed_rng_init(&g.r, 99, (uint64_t)it, 0, FED_RNG_USER);
        cfg.degree = it % 2 ? 6 : 0;
        drive(&cfg, &k, 16, X, garble_hook, &g, &ro);
        if (ro.finish_rc) {
            CHECK_EQ_INT(ro.finish_rc, FED_ESTATE);
            continue;
        }
        ok++;
        check_sum(10, 16, X, ro.sum, ro.inc);
    }
    CHECK(ok > 0);
}

int main(void) {
    fed_rng r;
    fed_rng_init(&r, 11, 0, 0, FED_RNG_USER);
    for (int u = 0; u < MAXN; u++)
        for (int i = 0; i < 64; i++) X[u][i] = fed_rng_u32(&r);
    ed25519_kat();
    contract();
    honest_sim();
    honest_manual();
    stage0();
    context();
    check_stage();
    split_view();
    garbled();
    TEST_PASS("test_secagg_consistency");
}
