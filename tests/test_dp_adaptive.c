/* Adaptive clipping (Andrew et al. 2021): the noise split and the geometric update on
 * tiny hand-computed numbers, and convergence of the clip to the target quantile of a
 * fixed distribution of update norms with noisy counts. */
#include "federate/dp.h"
#include "federate/error.h"
#include "check.h"

#include <math.h>
#include <string.h>

static void test_noise_split(void) {
    double zd;
    /* z = 1, sigma_b = 1: (1 - 1/4)^(-1/2) = 2/sqrt(3) */
    CHECK_OK(fed_adaptive_clip_noise_split(1.0, 1.0, &zd));
    CHECK_CLOSE(zd, 2.0 / sqrt(3.0), 1e-15, 0);
    /* z = 1.1, m = 100 -> sigma_b = 5: (1/1.21 - 1/100)^(-1/2) = 1.106716... */
    CHECK_OK(fed_adaptive_clip_noise_split(1.1, 5.0, &zd));
    CHECK_CLOSE(zd, 1.0 / sqrt(1.0 / 1.21 - 0.01), 1e-15, 0);
    CHECK_NEAR(zd, 1.1067160, 1e-6);
    /* no DP, no noise */
    CHECK_OK(fed_adaptive_clip_noise_split(0.0, 5.0, &zd));
    CHECK(zd == 0);
    /* the count would need more than the whole budget */
    CHECK_EQ_INT(fed_adaptive_clip_noise_split(2.0, 1.0, &zd), FED_ERANGE);
    CHECK(strstr(fed_last_error(), "sigma_b") != NULL);
    CHECK_EQ_INT(fed_adaptive_clip_noise_split(3.0, 1.0, &zd), FED_ERANGE);
    CHECK_EQ_INT(fed_adaptive_clip_noise_split(1.0, 0.0, &zd), FED_EINVAL);
    CHECK_EQ_INT(fed_adaptive_clip_noise_split(-1.0, 1.0, &zd), FED_EINVAL);
    CHECK_EQ_INT(fed_adaptive_clip_noise_split(NAN, 1.0, &zd), FED_EINVAL);
    CHECK_EQ_INT(fed_adaptive_clip_noise_split(1.0, 1.0, NULL), FED_EINVAL);
}

static void test_update_arithmetic(void) {
    fed_adaptive_clip ac;
    /* the paper's defaults, m = 10 clients: sigma_b = 0.5, so z must be < 1 */
    CHECK_EQ_INT(fed_adaptive_clip_init(&ac, FED_ADAPTIVE_CLIP_INITIAL, FED_ADAPTIVE_CLIP_QUANTILE,
                                        FED_ADAPTIVE_CLIP_LR, 10, 0, 1.0),
                 FED_ERANGE);
    CHECK_OK(fed_adaptive_clip_init(&ac, FED_ADAPTIVE_CLIP_INITIAL, FED_ADAPTIVE_CLIP_QUANTILE,
                                    FED_ADAPTIVE_CLIP_LR, 10, 0, 0.5));
    CHECK(ac.sigma_b == 0.5 && ac.clip == 0.1);
    CHECK_CLOSE(ac.z_delta, 1.0 / sqrt(4.0 - 1.0), 1e-15, 0);
    /* this round's noise uses this round's clip */
    CHECK_CLOSE(fed_adaptive_clip_sum_stddev(&ac), 0.1 / sqrt(3.0), 1e-15, 0);
    CHECK_EQ_INT(fed_adaptive_clip_bit(&ac, 0.1), 1); /* norm <= C counts as unclipped */
    CHECK_EQ_INT(fed_adaptive_clip_bit(&ac, 0.10001), 0);
    /* 7 of 10 under the clip, count noise +0.5: b = 0.75, C = 0.1 exp(-0.2 * 0.25) */
    CHECK_OK(fed_adaptive_clip_update_with(&ac, 7, 0.5));
    CHECK_CLOSE(ac.clip, 0.1 * exp(-0.05), 1e-15, 0);
    CHECK_NEAR(ac.clip, 0.0951229425, 1e-10);
    CHECK_CLOSE(fed_adaptive_clip_sum_stddev(&ac), 0.1 * exp(-0.05) / sqrt(3.0), 1e-15, 0);
    /* none under the clip, noise -1: b = -0.1, C grows by exp(0.2 * 0.6) */
    double c0 = ac.clip;
    CHECK_OK(fed_adaptive_clip_update_with(&ac, 0, -1.0));
    CHECK_CLOSE(ac.clip, c0 * exp(0.12), 1e-15, 0);
    /* exactly at the target: unchanged */
    c0 = ac.clip;
    CHECK_OK(fed_adaptive_clip_update_with(&ac, 5, 0));
    CHECK(ac.clip == c0);
    /* a wild noise draw cannot make the clip 0 or infinite */
    CHECK_OK(fed_adaptive_clip_update_with(&ac, 0, -1e6));
    CHECK(ac.clip == c0);
    CHECK_EQ_INT(fed_adaptive_clip_update_with(&ac, -1, 0), FED_EINVAL);
    CHECK_EQ_INT(fed_adaptive_clip_update_with(&ac, 1, NAN), FED_EINVAL);
    CHECK_EQ_INT(fed_adaptive_clip_update_with(NULL, 1, 0), FED_EINVAL);

    /* the drawing variant is update_with(sigma_b * the stream's next normal) */
    fed_adaptive_clip a1 = ac, a2 = ac;
    fed_dp_noise ns;
    double g;
    CHECK_OK(fed_dp_noise_init(&ns, FED_DP_NOISE_SEEDED, 3, 9, FED_DP_CLIENT_CLIP_COUNT));
    CHECK_OK(fed_adaptive_clip_update(&a1, 4, &ns));
    CHECK_OK(fed_dp_noise_init(&ns, FED_DP_NOISE_SEEDED, 3, 9, FED_DP_CLIENT_CLIP_COUNT));
    CHECK_OK(fed_dp_sample_normal(&ns, &g));
    CHECK_OK(fed_adaptive_clip_update_with(&a2, 4, a2.sigma_b * g));
    CHECK(a1.clip == a2.clip);
    CHECK_OK(fed_dp_noise_init(&ns, FED_DP_NOISE_SECURE, 0, 0, 0));
    CHECK_OK(fed_adaptive_clip_update(&a1, 4, &ns));
    CHECK(a1.clip > 0 && isfinite(a1.clip));

    CHECK_EQ_INT(fed_adaptive_clip_init(&ac, 0, 0.5, 0.2, 10, 0, 0), FED_EINVAL);
    CHECK(strstr(fed_last_error(), "clip") != NULL);
    CHECK_EQ_INT(fed_adaptive_clip_init(&ac, 0.1, 1.5, 0.2, 10, 0, 0), FED_EINVAL);
    CHECK(strstr(fed_last_error(), "quantile") != NULL);
    CHECK_EQ_INT(fed_adaptive_clip_init(&ac, 0.1, 0.5, -0.2, 10, 0, 0), FED_EINVAL);
    CHECK_EQ_INT(fed_adaptive_clip_init(&ac, 0.1, 0.5, 0.2, 0, 0, 0), FED_EINVAL);
    CHECK_EQ_INT(fed_adaptive_clip_init(NULL, 0.1, 0.5, 0.2, 10, 0, 0), FED_EINVAL);
}

/* Update norms log-normal: ||u|| = exp(mu + s N(0,1)), so the gamma-quantile is
 * exp(mu + s Phi^-1(gamma)). m clients per round, count noise sigma_b = m / 20. */
static void check_converges(double gamma, double phi_inv) {
    const double mu = 0.7, s = 0.5;
    const int m = 100, rounds = 600;
    fed_adaptive_clip ac;
    CHECK_OK(fed_adaptive_clip_init(&ac, FED_ADAPTIVE_CLIP_INITIAL, gamma, FED_ADAPTIVE_CLIP_LR, m, 0,
                                    1.0));
    fed_rng norms;
    fed_rng_init(&norms, 11, 0, 0, FED_RNG_USER);
    double tail = 0;
    int ntail = 0;
    for (int r = 0; r < rounds; r++) {
        int bits = 0;
        for (int i = 0; i < m; i++) bits += fed_adaptive_clip_bit(&ac, exp(mu + s * fed_rng_normal_d(&norms)));
        fed_dp_noise ns;
        CHECK_OK(fed_dp_noise_init(&ns, FED_DP_NOISE_SEEDED, 11, (uint64_t)r, FED_DP_CLIENT_CLIP_COUNT));
        CHECK_OK(fed_adaptive_clip_update(&ac, bits, &ns));
        if (r >= rounds / 2) {
            tail += log(ac.clip);
            ntail++;
        }
    }
    double want = exp(mu + s * phi_inv);
    double got = exp(tail / ntail); /* geometric mean of the second half */
    printf("test_dp_adaptive: gamma %.2f: clip %.4f (last %.4f), true quantile %.4f\n", gamma, got,
           ac.clip, want);
    /* from 0.1 the clip must travel a factor ~20 and then sit at the quantile: the
     * fraction of norms under it is within 0.03 of gamma */
    double frac = 0.5 * erfc(-(log(got) - mu) / (s * sqrt(2.0)));
    CHECK_NEAR(frac, gamma, 0.03);
    CHECK_CLOSE(ac.clip, want, 0.15, 0);
}

static void test_convergence(void) {
    check_converges(0.5, 0.0);
    check_converges(0.9, 1.2815515655446004);
    check_converges(0.2, -0.8416212335729143);
}

int main(void) {
    test_noise_split();
    test_update_arithmetic();
    test_convergence();
    TEST_PASS("test_dp_adaptive");
}
