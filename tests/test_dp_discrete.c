/* Discrete Gaussian (Canonne, Kamath, Steinke 2020): the sampled probabilities against
 * the exact pmf exp(-x^2 / (2 sigma^2)) / Z for integer and fractional sigma^2, moments
 * at large sigma, reproducibility of the seeded source, bad inputs, speed. */
#include "federate/dp.h"
#include "federate/error.h"
#include "check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Every probability P(x), |x| <= w, within 5 standard errors; mean and variance too. */
static void check_pmf(int source, uint64_t num, uint64_t den, int w) {
    enum { N = 200000 };
    static int64_t x[N];
    fed_dp_noise ns;
    CHECK_OK(fed_dp_noise_init(&ns, source, 5, 1, 2));
    CHECK_OK(fed_dp_discrete_gaussian(&ns, x, N, num, den));
    double s2 = (double)num / (double)den, z = 0, var = 0;
    for (int k = -200; k <= 200; k++) {
        z += exp(-k * k / (2 * s2));
        var += k * k * exp(-k * k / (2 * s2));
    }
    var /= z;
    double mean = 0, m2 = 0;
    int *count = calloc((size_t)(2 * w + 1), sizeof *count);
    CHECK(count != NULL);
    for (int i = 0; i < N; i++) {
        mean += (double)x[i];
        m2 += (double)x[i] * (double)x[i];
        if (llabs(x[i]) <= w) count[x[i] + w]++;
    }
    mean /= N;
    m2 /= N;
    for (int k = -w; k <= w; k++) {
        double p = exp(-k * k / (2 * s2)) / z;
        double se = sqrt(p * (1 - p) / N);
        if (!(fabs(count[k + w] / (double)N - p) <= 5 * se + 1e-9)) {
            fprintf(stderr, "sigma^2 %llu/%llu: P(%d) = %.5f, want %.5f\n", (unsigned long long)num,
                    (unsigned long long)den, k, count[k + w] / (double)N, p);
            CHECK(0);
        }
    }
    free(count);
    CHECK_NEAR(mean, 0.0, 5 * sqrt(var / N));
    CHECK_CLOSE(m2, var, 5 * sqrt(2.0 / N), 0);
}

static void test_distribution(void) {
    check_pmf(FED_DP_NOISE_SEEDED, 4, 1, 8);   /* sigma 2 */
    check_pmf(FED_DP_NOISE_SEEDED, 1, 4, 3);   /* sigma 1/2: P(0) ~ 0.79 */
    check_pmf(FED_DP_NOISE_SEEDED, 5, 2, 6);   /* sigma^2 = 2.5 */
    check_pmf(FED_DP_NOISE_SEEDED, 1000, 7, 30);
    check_pmf(FED_DP_NOISE_SECURE, 9, 1, 10);
}

static void test_large_sigma(void) {
    enum { N = 50000 };
    static int64_t x[N];
    fed_dp_noise ns;
    /* sigma = 2^18 with a fractional part: sigma^2 = (2^36 + 1) / 3 * 3 ... kept simple */
    const uint64_t num = ((uint64_t)1 << 36) * 3 + 1, den = 3;
    CHECK_OK(fed_dp_noise_init(&ns, FED_DP_NOISE_SEEDED, 1, 0, 0));
    CHECK_OK(fed_dp_discrete_gaussian(&ns, x, N, num, den));
    double s2 = (double)num / den, m = 0, v = 0, k4 = 0;
    for (int i = 0; i < N; i++) m += (double)x[i];
    m /= N;
    for (int i = 0; i < N; i++) {
        double d = (double)x[i] - m;
        v += d * d;
        k4 += d * d * d * d;
    }
    v /= N;
    k4 = k4 / N / (v * v);
    CHECK_NEAR(m / sqrt(s2), 0.0, 5 / sqrt((double)N));
    CHECK_CLOSE(v, s2, 5 * sqrt(2.0 / N), 0);
    CHECK_NEAR(k4, 3.0, 0.12); /* Gaussian, not Laplace (6) */
}

static void test_reproducible_and_errors(void) {
    int64_t a[1000], b[1000];
    fed_dp_noise ns;
    CHECK_OK(fed_dp_noise_init(&ns, FED_DP_NOISE_SEEDED, 9, 9, 9));
    CHECK_OK(fed_dp_discrete_gaussian(&ns, a, 1000, 100, 1));
    CHECK_OK(fed_dp_noise_init(&ns, FED_DP_NOISE_SEEDED, 9, 9, 9));
    CHECK_OK(fed_dp_discrete_gaussian(&ns, b, 1000, 100, 1));
    CHECK(memcmp(a, b, sizeof a) == 0);
    CHECK_OK(fed_dp_noise_init(&ns, FED_DP_NOISE_SEEDED, 9, 9, 10));
    CHECK_OK(fed_dp_discrete_gaussian(&ns, b, 1000, 100, 1));
    CHECK(memcmp(a, b, sizeof a) != 0);
    CHECK_EQ_INT(fed_dp_discrete_gaussian(&ns, a, 10, 0, 1), FED_EINVAL);
    CHECK(strstr(fed_last_error(), "sigma") != NULL);
    CHECK_EQ_INT(fed_dp_discrete_gaussian(&ns, a, 10, 1, 0), FED_EINVAL);
    CHECK_EQ_INT(fed_dp_discrete_gaussian(&ns, a, 10, (uint64_t)1 << 40, 1), FED_EINVAL);
    CHECK_EQ_INT(fed_dp_discrete_gaussian(&ns, a, 10, 1, ((uint64_t)1 << 20) + 1), FED_EINVAL);
    CHECK_EQ_INT(fed_dp_discrete_gaussian(&ns, NULL, 10, 1, 1), FED_EINVAL);
    CHECK_EQ_INT(fed_dp_discrete_gaussian(NULL, a, 10, 1, 1), FED_EINVAL);
    CHECK_OK(fed_dp_discrete_gaussian(&ns, NULL, 0, 1, 1));
    /* the largest allowed sigma works */
    CHECK_OK(fed_dp_discrete_gaussian(&ns, a, 100, ((uint64_t)1 << 60) - 1, (uint64_t)1 << 20));
}

static void test_timing(void) {
    const size_t n = 500000; /* a third of the 1.66M model: keeps the test short */
    int64_t *x = malloc(n * sizeof *x);
    CHECK(x != NULL);
    for (int src = 0; src < 2; src++) {
        fed_dp_noise ns;
        CHECK_OK(fed_dp_noise_init(&ns, src, 1, 2, 3));
        double t0 = now();
        CHECK_OK(fed_dp_discrete_gaussian(&ns, x, n, 10000, 1));
        printf("test_dp_discrete: %s discrete gaussian sigma 100 on %zu values: %.0f ms\n",
               fed_dp_noise_source_name(src), n, (now() - t0) * 1e3);
    }
    free(x);
}

int main(void) {
    test_distribution();
    test_large_sigma();
    test_reproducible_and_errors();
    test_timing();
    TEST_PASS("test_dp_discrete");
}
