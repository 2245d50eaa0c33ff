/* Secure aggregation rounds in process: for n in {3, 10, 100}, full and Harary
 * graphs, several rings, and 0/10/30% drop-outs at each stage, the unmasked sum
 * equals the plain sum of the included clients' inputs exactly (or, when too few
 * clients are left, the round fails cleanly with FED_ESTATE). */
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "federate/error.h"
#include "federate/rng.h"
#include "federate/secagg.h"

static uint64_t ring_mask(const fed_secagg_cfg *c) {
    if (c->modulus) return 0;
    return c->ring_bits == 64 ? ~0ULL : (1ULL << c->ring_bits) - 1;
}

typedef struct gen {
    uint64_t seed, mask, modulus;
} gen;

static int gen_input(void *ctx, int client, uint64_t *x, size_t L) {
    const gen *g = ctx;
    fed_rng r;
    fed_rng_init(&r, g->seed, 0, (uint64_t)client, FED_RNG_USER);
    for (size_t i = 0; i < L; i++) {
        uint64_t v = fed_rng_u64(&r);
        x[i] = g->modulus ? v % g->modulus : v & g->mask;
    }
    return 0;
}

/* runs a round and checks it; returns 1 when the round succeeded */
static int run(const fed_secagg_cfg *cfg, size_t L, const uint8_t *drop, uint64_t seed) {
    int n = cfg->n;
    gen g = {seed, ring_mask(cfg), cfg->modulus};
    uint64_t *sum = malloc(L * 8), *x = malloc(L * 8), *plain = calloc(L, 8);
    uint8_t *inc = calloc((size_t)n, 1);
    fed_secagg_stats st;
    int rc = fed_secagg_sim_run(cfg, L, gen_input, &g, drop, sum, inc, &st);
    int ok = rc == 0;
    if (rc) {
        if (rc != FED_ESTATE) fprintf(stderr, "round failed: %d %s\n", rc, fed_last_error());
        CHECK(rc == FED_ESTATE);
        CHECK(strstr(fed_last_error(), "round failed") != NULL || strstr(fed_last_error(), "threshold") != NULL);
    } else {
        int m = 0;
        for (int u = 0; u < n; u++) {
            /* exactly the clients that sent a masked input (drop stage >= 3) are in */
            int expect = !drop || drop[u] >= 3;
            CHECK_EQ_INT(inc[u], expect);
            if (!inc[u]) continue;
            m++;
            gen_input(&g, u, x, L);
            for (size_t i = 0; i < L; i++) {
                if (cfg->modulus) {
                    plain[i] += x[i];
                    if (plain[i] >= cfg->modulus) plain[i] -= cfg->modulus;
                } else {
                    plain[i] += x[i];
                }
            }
        }
        CHECK_EQ_INT(st.survivors, m);
        for (size_t i = 0; i < L; i++) CHECK(sum[i] == (cfg->modulus ? plain[i] : (plain[i] & g.mask)));
        CHECK(st.bytes_per_client > 0 && st.client_ms >= 0 && st.server_ms >= 0);
    }
    free(sum);
    free(x);
    free(plain);
    free(inc);
    return ok;
}

/* exactly round(frac * n) clients drop before `stage`, chosen from seed */
static void schedule(int n, double frac, int stage, uint64_t seed, uint8_t *drop) {
    uint32_t *perm = malloc((size_t)n * 4);
    for (int i = 0; i < n; i++) perm[i] = (uint32_t)i;
    fed_rng r;
    fed_rng_init(&r, seed, 0, 0, FED_RNG_USER);
    fed_rng_shuffle(&r, perm, (size_t)n);
    int nd = (int)(frac * n + 0.5);
    for (int i = 0; i < n; i++) drop[perm[i]] = i < nd ? (uint8_t)stage : 4;
    free(perm);
}

int main(void) {
    fed_secagg_cfg cfg;
    uint8_t drop[100];
    int succeeded = 0, total = 0;

    /* n = 3: full graph, t = 2, a long vector */
    CHECK_OK(fed_secagg_cfg_default(&cfg, 3));
    cfg.threshold = 2;
    CHECK(run(&cfg, 100000, NULL, 1));
    for (int s = 0; s < 4; s++) {
        schedule(3, 0.3, s, 10 + s, drop); /* one client drops */
        succeeded += run(&cfg, 1000, drop, 2);
        total++;
    }
    CHECK(succeeded == total); /* two of three always suffice with t = 2 */

    /* n = 10: every stage, 10% and 30% */
    CHECK_OK(fed_secagg_cfg_default(&cfg, 10));
    cfg.threshold = 5;
    cfg.threads = 2;
    for (int s = 0; s < 4; s++)
        for (int f = 0; f < 3; f++) {
            double frac = f == 0 ? 0.0 : f == 1 ? 0.1 : 0.3;
            schedule(10, frac, s, (uint64_t)(100 + 10 * s + f), drop);
            CHECK(run(&cfg, 10000, drop, 3 + (uint64_t)s));
        }
    /* too many drop-outs: a clean failure at each stage */
    for (int s = 0; s < 4; s++) {
        schedule(10, 0.6, s, 7, drop);
        CHECK(!run(&cfg, 100, drop, 4));
    }

    /* n = 100, full graph, t = 51, 30% before sharing keys and before the masked
     * input (every stage is covered at n = 10 and with the Harary graph below) */
    CHECK_OK(fed_secagg_cfg_default(&cfg, 100));
    cfg.threads = 2;
    for (int s = 1; s < 3; s++) {
        schedule(100, 0.3, s, (uint64_t)(200 + s), drop);
        CHECK(run(&cfg, 2000, drop, 5));
    }
    /* n = 100, SecAgg+ (k, t) = (28, 6): a long vector, 30% at each stage, 10% before the masked input */
    CHECK_OK(fed_secagg_cfg_plus(&cfg, 0.05, 0.33, 0));
    CHECK_EQ_INT(cfg.degree, 28);
    CHECK(run(&cfg, 100000, NULL, 6));
    for (int s = 0; s < 4; s++) {
        schedule(100, 0.3, s, (uint64_t)(300 + s), drop);
        CHECK(run(&cfg, 3000, drop, 7));
    }
    schedule(100, 0.1, 2, 310, drop);
    CHECK(run(&cfg, 3000, drop, 7));

    /* other rings: small and 64-bit powers of two, a prime, a modulus above 2^32 */
    CHECK_OK(fed_secagg_cfg_default(&cfg, 10));
    cfg.threshold = 4;
    schedule(10, 0.3, 2, 9, drop);
    const int bits[] = {1, 17, 33, 64};
    for (int i = 0; i < 4; i++) {
        cfg.ring_bits = bits[i];
        CHECK(run(&cfg, 3001, drop, 8));
    }
    const uint64_t mods[] = {1000003, 0x100000007ULL};
    for (int i = 0; i < 2; i++) {
        cfg.modulus = mods[i];
        CHECK(run(&cfg, 3001, drop, 9));
    }
    cfg.modulus = 0;

    /* the same inputs and schedule give the same included set with 1 or 3 threads */
    cfg.ring_bits = 32;
    for (int th = 1; th <= 3; th += 2) {
        cfg.threads = th;
        CHECK(run(&cfg, 5000, drop, 10));
    }

    /* the array front end */
    uint64_t a[3][4] = {{1, 2, 3, 4}, {10, 20, 30, 40}, {100, 200, 300, 0xffffffffULL}}, out[4];
    const uint64_t *in[3] = {a[0], a[1], a[2]};
    CHECK_OK(fed_secagg_cfg_default(&cfg, 3));
    CHECK_OK(fed_secagg_sum(&cfg, in, 4, NULL, out, NULL, NULL));
    CHECK(out[0] == 111 && out[1] == 222 && out[2] == 333 && out[3] == 43);
    /* an input outside the ring makes that client give up, not the round */
    a[1][0] = 1ULL << 40;
    cfg.threshold = 2;
    uint8_t inc[3];
    CHECK_OK(fed_secagg_sum(&cfg, in, 4, NULL, out, inc, NULL));
    CHECK(inc[0] && !inc[1] && inc[2] && out[0] == 101);
    TEST_PASS("test_secagg_sum");
}
