/* Distributed DP under secure aggregation: discrete Gaussian noise added to
 * quantized inputs before masking is summed exactly by the protocol (the secure
 * sum is the sum of the noisy inputs, negative noise wrapping mod R), and the
 * noise variances add up across clients. */
#include <math.h>
#include <stdlib.h>
#include "check.h"
#include "federate/dp.h"
#include "federate/error.h"
#include "federate/secagg.h"

int main(void) {
    enum { N = 5, L = 2000 };
    const uint64_t base = 1000;
    uint64_t *x[N], *sum = malloc(L * 8);
    for (int u = 0; u < N; u++) {
        fed_dp_noise ns;
        CHECK_OK(fed_dp_noise_init(&ns, FED_DP_NOISE_SEEDED, 9, 0, (uint64_t)u));
        x[u] = malloc(L * 8);
        for (int i = 0; i < L; i++) x[u][i] = base + (uint64_t)(i % 3);
        CHECK_OK(fed_secagg_add_dgauss(&ns, x[u], L, 24, 25, 4)); /* sigma^2 = 6.25 */
    }
    fed_dp_noise ns;
    CHECK_OK(fed_dp_noise_init(&ns, FED_DP_NOISE_SEEDED, 9, 0, 0));
    CHECK(fed_secagg_add_dgauss(&ns, x[0], L, 0, 25, 4) == FED_EINVAL);
    CHECK(fed_secagg_add_dgauss(NULL, x[0], L, 24, 25, 4) == FED_EINVAL);
    /* a small value wraps below 0 and comes back */
    uint64_t small[64] = {0};
    CHECK_OK(fed_secagg_add_dgauss(&ns, small, 64, 24, 400, 1));
    int wrapped = 0;
    for (int i = 0; i < 64; i++) wrapped |= small[i] > (1u << 23);
    CHECK(wrapped);

    fed_secagg_cfg cfg;
    CHECK_OK(fed_secagg_cfg_default(&cfg, N));
    cfg.ring_bits = 24;
    CHECK_OK(fed_secagg_sum(&cfg, (const uint64_t *const *)x, L, NULL, sum, NULL, NULL));
    double m2 = 0;
    for (int i = 0; i < L; i++) {
        uint64_t p = 0;
        for (int u = 0; u < N; u++) p += x[u][i];
        CHECK(sum[i] == (p & 0xffffff));
        double e = (double)sum[i] - N * (double)(base + (uint64_t)(i % 3));
        m2 += e * e;
    }
    /* sum of N independent N_Z(0, 6.25): variance about 31.25 (+-10% at 2000 draws) */
    CHECK_NEAR(m2 / L, N * 6.25, N * 6.25 * 0.15);
    for (int u = 0; u < N; u++) free(x[u]);
    free(sum);
    TEST_PASS("test_secagg_dp");
}
