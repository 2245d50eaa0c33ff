/* Bad input to the secure aggregation state machines: truncated and garbled
 * messages, wrong share counts, a bad ciphertext, unknown ids, duplicates and a
 * double reveal are refused, the offender leaves the round and the others'
 * sum is still recovered exactly; fewer than t clients fail the round cleanly;
 * random bytes never crash either side. */
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "federate/error.h"
#include "federate/rng.h"
#include "federate/secagg.h"

typedef void (*tamper_fn)(void *ctx, int stage, int u, uint8_t **msg, size_t *len);

typedef struct round_out {
    int server_rc[4][64];   /* server_receive result per stage and client */
    int client_rc[4][64];
    int extra_rc;           /* result of the extra (duplicate) message */
} round_out;

typedef struct tctx {
    fed_secagg_server *srv; /* for extra messages */
    int dup_client;
    round_out *out;
    fed_rng rng;
    int garbage_stage;
} tctx;

static int drive(const fed_secagg_cfg *cfg, size_t L, uint64_t *const *x, tamper_fn tf, tctx *tc, uint64_t *sum,
                 uint8_t *inc, uint8_t *offenders, round_out *ro) {
    int n = cfg->n, rc;
    fed_secagg_server *srv;
    fed_secagg_client *cl[64] = {0};
    int alive[64];
    memset(ro, 0, sizeof *ro);
    CHECK_OK(fed_secagg_server_new(&srv, cfg, L));
    if (tc) tc->srv = srv;
    for (int u = 0; u < n; u++) {
        CHECK_OK(fed_secagg_client_new(&cl[u], cfg, (uint32_t)u));
        alive[u] = 1;
    }
    for (int stage = 0; stage < 4; stage++) {
        CHECK_EQ_INT(fed_secagg_server_stage(srv), stage);
        for (int u = 0; u < n; u++) {
            if (!alive[u]) continue;
            uint8_t *in = NULL, *out = NULL;
            size_t in_len = 0, out_len = 0;
            if (stage > 0 && fed_secagg_server_message(srv, (uint32_t)u, &in, &in_len)) {
                alive[u] = 0;
                continue;
            }
            switch (stage) {
            case 0: rc = fed_secagg_client_advertise(cl[u], &out, &out_len); break;
            case 1: rc = fed_secagg_client_share_keys(cl[u], in, in_len, &out, &out_len); break;
            case 2: rc = fed_secagg_client_masked_input(cl[u], in, in_len, x[u], L, &out, &out_len); break;
            default: rc = fed_secagg_client_unmask(cl[u], in, in_len, &out, &out_len); break;
            }
            free(in);
            ro->client_rc[stage][u] = rc;
            if (rc) {
                alive[u] = 0;
                continue;
            }
            if (tf) tf(tc, stage, u, &out, &out_len);
            ro->server_rc[stage][u] = fed_secagg_server_receive(srv, (uint32_t)u, out, out_len);
            if (ro->server_rc[stage][u]) alive[u] = 0;
            if (tc && tc->dup_client == u && stage == 2)
                ro->extra_rc = fed_secagg_server_receive(srv, (uint32_t)u, out, out_len);
            free(out);
        }
        if ((rc = fed_secagg_server_finish_stage(srv))) break;
    }
    if (!rc) CHECK_OK(fed_secagg_server_result(srv, sum, inc));
    if (offenders) CHECK_OK(fed_secagg_server_offenders(srv, offenders));
    for (int u = 0; u < n; u++) fed_secagg_client_free(cl[u]);
    fed_secagg_server_free(srv);
    return rc;
}

/* ---- scenario: one offender of each kind in one round ---- */
static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }

static void tamper_many(void *ctx, int stage, int u, uint8_t **msg, size_t *len) {
    (void)ctx;
    if (stage == 0 && u == 3) *len -= 1;                    /* truncated */
    if (stage == 1 && u == 4) (*msg)[8] ^= 1;               /* wrong round in the header */
    if (stage == 1 && u == 5) {                             /* one share fewer than peers */
        uint32_t m;
        memcpy(&m, *msg + 16 + 32, 4);
        put32(*msg + 16 + 32, m - 1);
        *len -= 4 + 24 + 136 + 16;
    }
    if (stage == 1 && u == 6) (*msg)[16 + 36 + 4 + 30] ^= 0x80; /* first ciphertext garbled */
    if (stage == 3 && u == 9) { /* a wrong (in-field) value in its first self-mask share */
        uint64_t y;
        memcpy(&y, *msg + 16 + 4 + 4, 8);
        y = y ? y - 1 : 1;
        memcpy(*msg + 16 + 4 + 4, &y, 8);
    }
    if (stage == 3 && u == 7) {                             /* both shares of client 1 */
        size_t l = 16 + 4 + 68 + 4 + 68;
        uint8_t *m = calloc(1, l);
        memcpy(m, *msg, 16);
        put32(m + 16, 1);
        put32(m + 20, 1);
        put32(m + 16 + 4 + 68, 1);
        put32(m + 16 + 8 + 68, 1);
        free(*msg);
        *msg = m;
        *len = l;
    }
}

static void check_sum(int n, size_t L, uint64_t *const *x, const uint64_t *sum, const uint8_t *inc) {
    for (size_t i = 0; i < L; i++) {
        uint32_t s = 0;
        for (int u = 0; u < n; u++)
            if (inc[u]) s += (uint32_t)x[u][i];
        CHECK(sum[i] == s);
    }
}

static void many_offenders(uint64_t *const *x, size_t L) {
    fed_secagg_cfg cfg;
    CHECK_OK(fed_secagg_cfg_default(&cfg, 12));
    cfg.threshold = 5;
    tctx tc = {0};
    tc.dup_client = 8; /* sends its masked input twice */
    round_out ro;
    uint64_t *sum = malloc(L * 8);
    uint8_t inc[12], off[12];
    CHECK_OK(drive(&cfg, L, x, tamper_many, &tc, sum, inc, off, &ro));
    CHECK(ro.server_rc[0][3] == FED_EFORMAT);
    CHECK(ro.server_rc[1][4] == FED_EFORMAT);
    CHECK(ro.server_rc[1][5] == FED_EFORMAT);
    CHECK(ro.server_rc[1][6] == 0); /* the server cannot see inside; the recipient complains */
    CHECK(ro.server_rc[3][7] == FED_EFORMAT);
    CHECK(ro.server_rc[3][9] == 0); /* undetectable on arrival; the rebuild routes around it */
    CHECK(ro.extra_rc == FED_EFORMAT);
    const int out_of_sum[] = {3, 4, 5, 6, 8};
    for (int u = 0; u < 12; u++) {
        int excluded = 0;
        for (int i = 0; i < 5; i++) excluded |= out_of_sum[i] == u;
        CHECK_EQ_INT(inc[u], !excluded);
    }
    for (int i = 0; i < 5; i++) CHECK(off[out_of_sum[i]]);
    CHECK(off[7]); /* its masked input counts; its answer was refused */
    CHECK(!off[0] && !off[1]);
    check_sum(12, L, x, sum, inc);
    free(sum);
}

/* ---- the client refuses to reveal both shares of one peer ---- */
static void client_refuses(uint64_t *const *x, size_t L) {
    fed_secagg_cfg cfg;
    CHECK_OK(fed_secagg_cfg_default(&cfg, 4));
    cfg.threshold = 2;
    fed_secagg_server *srv;
    fed_secagg_client *cl[4];
    CHECK_OK(fed_secagg_server_new(&srv, &cfg, L));
    uint8_t *in, *out;
    size_t il, ol;
    for (int u = 0; u < 4; u++) {
        CHECK_OK(fed_secagg_client_new(&cl[u], &cfg, (uint32_t)u));
        CHECK_OK(fed_secagg_client_advertise(cl[u], &out, &ol));
        CHECK_OK(fed_secagg_server_receive(srv, (uint32_t)u, out, ol));
        free(out);
    }
    CHECK_OK(fed_secagg_server_finish_stage(srv));
    for (int stage = 1; stage < 3; stage++) {
        for (int u = 0; u < 4; u++) {
            CHECK_OK(fed_secagg_server_message(srv, (uint32_t)u, &in, &il));
            if (stage == 1) CHECK_OK(fed_secagg_client_share_keys(cl[u], in, il, &out, &ol));
            else CHECK_OK(fed_secagg_client_masked_input(cl[u], in, il, x[u], L, &out, &ol));
            free(in);
            CHECK_OK(fed_secagg_server_receive(srv, (uint32_t)u, out, ol));
            free(out);
        }
        CHECK_OK(fed_secagg_server_finish_stage(srv));
    }
    /* a forged request: b-share and s-share of client 2 */
    uint8_t req[16 + 4 + 4 + 4 + 4];
    CHECK_OK(fed_secagg_server_message(srv, 0, &in, &il));
    memcpy(req, in, 16);
    free(in);
    put32(req + 16, 1);
    put32(req + 20, 2);
    put32(req + 24, 1);
    put32(req + 28, 2);
    CHECK(fed_secagg_client_unmask(cl[0], req, sizeof req, &out, &ol) == FED_ESTATE);
    CHECK(strstr(fed_last_error(), "both") != NULL);
    /* once refused the client is done */
    CHECK(fed_secagg_client_unmask(cl[0], req, sizeof req, &out, &ol) == FED_ESTATE);
    /* a request for a share it does not hold, and a truncated one */
    CHECK_OK(fed_secagg_server_message(srv, 1, &in, &il));
    memcpy(req, in, 16);
    put32(req + 16, 1);
    put32(req + 20, 77);
    put32(req + 24, 0);
    CHECK(fed_secagg_client_unmask(cl[1], req, 28, &out, &ol) != 0);
    CHECK(fed_secagg_client_unmask(cl[2], in, il - 1, &out, &ol) == FED_EFORMAT);
    free(in);
    /* the others still unmask: 0, 1 and 2 refused, 3 answers; t = 2 is not met */
    CHECK_OK(fed_secagg_server_message(srv, 3, &in, &il));
    CHECK_OK(fed_secagg_client_unmask(cl[3], in, il, &out, &ol));
    free(in);
    CHECK_OK(fed_secagg_server_receive(srv, 3, out, ol));
    CHECK(fed_secagg_server_receive(srv, 3, out, ol) == FED_EFORMAT); /* duplicate */
    free(out);
    /* unknown ids and calls out of turn */
    CHECK(fed_secagg_server_receive(srv, 99, req, sizeof req) == FED_EINVAL);
    CHECK(fed_secagg_server_message(srv, 99, &in, &il) == FED_EINVAL);
    CHECK(fed_secagg_client_advertise(cl[3], &out, &ol) == FED_ESTATE);
    int rc = fed_secagg_server_finish_stage(srv);
    CHECK(rc == FED_ESTATE);
    CHECK(strstr(fed_last_error(), "round failed") != NULL);
    CHECK(fed_secagg_server_stage(srv) == -1);
    uint64_t s[8];
    CHECK(fed_secagg_server_result(srv, s, NULL) == FED_ESTATE);
    CHECK(fed_secagg_server_receive(srv, 1, req, sizeof req) == FED_ESTATE);
    for (int u = 0; u < 4; u++) fed_secagg_client_free(cl[u]);
    fed_secagg_server_free(srv);
}

/* ---- fewer than t ---- */
static void drop_two(void *ctx, int stage, int u, uint8_t **msg, size_t *len) {
    (void)ctx;
    if (stage == 2 && u < 2) *len = 3; /* two masked inputs lost */
    (void)msg;
}

static void too_few(uint64_t *const *x, size_t L) {
    fed_secagg_cfg cfg;
    CHECK_OK(fed_secagg_cfg_default(&cfg, 6));
    cfg.threshold = 5;
    round_out ro;
    uint64_t *sum = malloc(L * 8);
    int rc = drive(&cfg, L, x, drop_two, NULL, sum, NULL, NULL, &ro);
    CHECK(rc == FED_ESTATE);
    CHECK(strstr(fed_last_error(), "4 masked inputs, threshold 5") != NULL);
    free(sum);
}

/* ---- packed masked input with a bit set in its last byte's padding ---- */
static void set_padding(void *ctx, int stage, int u, uint8_t **msg, size_t *len) {
    (void)ctx;
    if (stage == 2 && u == 2) (*msg)[*len - 1] |= 0x80; /* 999 x 20 bits leave 4 bits of padding */
    if (stage == 2 && u == 3) *len -= 1;                /* one byte short of the packed elements */
}

static void bad_padding(uint64_t *const *x) {
    enum { L = 999 };
    fed_secagg_cfg cfg;
    CHECK_OK(fed_secagg_cfg_default(&cfg, 8));
    cfg.threshold = 4;
    cfg.ring_bits = 20;
    uint64_t *xs[8];
    for (int u = 0; u < 8; u++) {
        xs[u] = malloc(L * 8);
        for (size_t i = 0; i < L; i++) xs[u][i] = x[u][i] & 0xfffff;
    }
    round_out ro;
    uint64_t sum[L];
    uint8_t inc[8], off[8];
    CHECK_OK(drive(&cfg, L, xs, set_padding, NULL, sum, inc, off, &ro));
    CHECK(ro.server_rc[2][2] == FED_EFORMAT);
    CHECK(ro.server_rc[2][3] == FED_EFORMAT);
    CHECK(!inc[2] && !inc[3] && off[2] && off[3]);
    for (size_t i = 0; i < L; i++) {
        uint32_t t = 0;
        for (int u = 0; u < 8; u++)
            if (inc[u]) t += (uint32_t)xs[u][i];
        CHECK(sum[i] == (t & 0xfffff));
    }
    for (int u = 0; u < 8; u++) free(xs[u]);
}

/* ---- random bytes and random corruption never crash ---- */
static void garbage(void *ctx, int stage, int u, uint8_t **msg, size_t *len) {
    tctx *tc = ctx;
    if (u % 3 != 1) return;
    uint32_t kind = fed_rng_below(&tc->rng, 4);
    if (kind == 0) { /* random bytes with a valid header */
        size_t l = 16 + fed_rng_below(&tc->rng, 300);
        uint8_t *m = malloc(l);
        memcpy(m, *msg, 16);
        for (size_t i = 16; i < l; i++) m[i] = (uint8_t)fed_rng_u32(&tc->rng);
        free(*msg);
        *msg = m;
        *len = l;
    } else if (kind == 1) { /* truncation anywhere */
        *len = fed_rng_below(&tc->rng, (uint32_t)*len);
    } else if (kind == 2 && stage != 2) { /* a bit flip in the framing (not in masked data) */
        size_t at = fed_rng_below(&tc->rng, (uint32_t)(*len < 64 ? *len : 64));
        (*msg)[at] ^= (uint8_t)(1u << fed_rng_below(&tc->rng, 8));
    } else { /* lengthen with junk */
        uint8_t *m = realloc(*msg, *len + 5);
        memset(m + *len, 0xAB, 5);
        *msg = m;
        *len += 5;
    }
}

static void fuzz(uint64_t *const *x, size_t L) {
    fed_secagg_cfg cfg;
    CHECK_OK(fed_secagg_cfg_default(&cfg, 12));
    cfg.threshold = 3;
    uint64_t *sum = malloc(L * 8);
    for (int trial = 0; trial < 25; trial++) {
        tctx tc = {0};
        tc.dup_client = -1;
        fed_rng_init(&tc.rng, 42, (uint64_t)trial, 0, FED_RNG_USER);
        round_out ro;
        uint8_t inc[12];
        int rc = drive(&cfg, L, x, garbage, &tc, sum, inc, NULL, &ro);
        CHECK(rc == 0 || rc == FED_ESTATE);
        /* a bit flip may land in a share value: then the rebuilt secret fails its
         * check and the round fails cleanly; a successful round is exact */
        if (rc == 0) check_sum(12, L, x, sum, inc);
    }
    /* raw garbage straight into fresh state machines */
    fed_rng r;
    fed_rng_init(&r, 7, 0, 0, FED_RNG_USER);
    for (int trial = 0; trial < 200; trial++) {
        fed_secagg_server *srv;
        fed_secagg_client *c;
        CHECK_OK(fed_secagg_server_new(&srv, &cfg, L));
        CHECK_OK(fed_secagg_client_new(&c, &cfg, 0));
        uint8_t buf[400];
        size_t l = fed_rng_below(&r, sizeof buf);
        for (size_t i = 0; i < l; i++) buf[i] = (uint8_t)fed_rng_u32(&r);
        if (l >= 16 && trial % 2) memcpy(buf, "FSA", 3);
        CHECK(fed_secagg_server_receive(srv, 0, buf, l) != 0);
        uint8_t *out;
        size_t ol;
        CHECK_OK(fed_secagg_client_advertise(c, &out, &ol));
        free(out);
        CHECK(fed_secagg_client_share_keys(c, buf, l, &out, &ol) != 0);
        fed_secagg_client_free(c);
        fed_secagg_server_free(srv);
    }
    free(sum);
}

/* random bodies behind valid headers at the client's stage 2 and 3 inputs */
static void fuzz_client(uint64_t *const *x, size_t L) {
    fed_secagg_cfg cfg;
    CHECK_OK(fed_secagg_cfg_default(&cfg, 3));
    cfg.threshold = 2;
    fed_rng r;
    fed_rng_init(&r, 8, 0, 0, FED_RNG_USER);
    for (int trial = 0; trial < 120; trial++) {
        fed_secagg_server *srv;
        fed_secagg_client *cl[3];
        uint8_t *in, *out;
        size_t il, ol;
        int target = 2 + trial % 2; /* the stage whose input is garbled */
        CHECK_OK(fed_secagg_server_new(&srv, &cfg, L));
        for (int u = 0; u < 3; u++) {
            CHECK_OK(fed_secagg_client_new(&cl[u], &cfg, (uint32_t)u));
            CHECK_OK(fed_secagg_client_advertise(cl[u], &out, &ol));
            CHECK_OK(fed_secagg_server_receive(srv, (uint32_t)u, out, ol));
            free(out);
        }
        CHECK_OK(fed_secagg_server_finish_stage(srv));
        for (int stage = 1; stage <= target; stage++) {
            for (int u = 0; u < 3; u++) {
                CHECK_OK(fed_secagg_server_message(srv, (uint32_t)u, &in, &il));
                if (stage == target && u == 0) {
                    /* keep the header, replace or cut the body */
                    size_t nl = 16 + fed_rng_below(&r, 2 * (uint32_t)il);
                    uint8_t *g = malloc(nl);
                    memcpy(g, in, 16);
                    for (size_t i = 16; i < nl; i++)
                        g[i] = (trial % 4 < 2 && i < il) ? in[i] ^ (uint8_t)(fed_rng_below(&r, 8) == 0) : (uint8_t)fed_rng_u32(&r);
                    int rc = stage == 2 ? fed_secagg_client_masked_input(cl[0], g, nl, x[0], L, &out, &ol)
                                        : fed_secagg_client_unmask(cl[0], g, nl, &out, &ol);
                    if (rc == 0) free(out); /* a harmless change can still be a valid message */
                    free(g);
                    free(in);
                    continue;
                }
                int rc = stage == 1   ? fed_secagg_client_share_keys(cl[u], in, il, &out, &ol)
                         : stage == 2 ? fed_secagg_client_masked_input(cl[u], in, il, x[u], L, &out, &ol)
                                      : fed_secagg_client_unmask(cl[u], in, il, &out, &ol);
                CHECK_OK(rc);
                free(in);
                if (stage < target) CHECK_OK(fed_secagg_server_receive(srv, (uint32_t)u, out, ol));
                free(out);
            }
            if (stage < target) CHECK_OK(fed_secagg_server_finish_stage(srv));
        }
        for (int u = 0; u < 3; u++) fed_secagg_client_free(cl[u]);
        fed_secagg_server_free(srv);
    }
}

int main(void) {
    enum { N = 12 };
    size_t L = 1000;
    uint64_t *x[N];
    fed_rng r;
    fed_rng_init(&r, 3, 0, 0, FED_RNG_USER);
    for (int u = 0; u < N; u++) {
        x[u] = malloc(L * 8);
        for (size_t i = 0; i < L; i++) x[u][i] = fed_rng_u32(&r);
    }
    many_offenders(x, L);
    client_refuses(x, L);
    too_few(x, L);
    bad_padding(x);
    fuzz(x, L);
    fuzz_client(x, L);
    for (int u = 0; u < N; u++) free(x[u]);
    TEST_PASS("test_secagg_bad");
}
