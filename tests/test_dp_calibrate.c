/* Calibration: epsilon of DP-SGD against an independent computation (mpmath: exact
 * binomial sums at integer orders, quadrature of A_alpha at fractional ones), the
 * smallest noise multiplier for a target epsilon, and the accountant's speed. */
#include "federate/dp.h"
#include "federate/error.h"
#include "check.h"

#include <math.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Default orders (dp_accounting's), both conversions; the reference values come from a
 * 30-digit mpmath evaluation of Mironov, Talwar, Zhang 2019's A_alpha (integer orders:
 * binomial sum; fractional: quad of E_mu0[(1 - q + q mu1/mu0)^alpha]) with
 * eps = min_a steps RDP_a + log(1/delta)/(a-1) (classic) and
 * min_a steps RDP_a + log1p(-1/a) - log(delta a)/(a-1) (improved). */
static void test_independent_values(void) {
    const struct { double n, b, z, epochs, delta, classic, oc, improved, oi; } cases[] = {
        /* TF Privacy's MNIST tutorial: 3.01 with TF Privacy's orders and the classic conversion */
        {60000, 256, 1.1, 60, 1e-5, 3.00838104683, 8.8, 2.59665552868, 8.1},
        {100000, 1000, 2.0, 100, 1e-6, 2.98570797804, 10.6, 2.62914189859, 9.8},
        {1000, 10, 0.8, 5, 1e-3, 2.46319476196, 5.0, 1.82748188215, 4.8},
    };
    for (int c = 0; c < 3; c++) {
        long steps = (long)ceil(cases[c].epochs * cases[c].n / cases[c].b);
        double q = cases[c].b / cases[c].n, eps, order;
        CHECK_OK(fed_dp_epsilon(q, cases[c].z, steps, cases[c].delta, FED_RDP_CONVERSION_CLASSIC, NULL, 0,
                                &eps, &order));
        CHECK_CLOSE(eps, cases[c].classic, 1e-8, 0);
        CHECK(order == cases[c].oc);
        double eps_i;
        CHECK_OK(fed_dp_epsilon(q, cases[c].z, steps, cases[c].delta, FED_RDP_CONVERSION_IMPROVED, NULL,
                                0, &eps_i, &order));
        /* At fractional orders the accountant sums the series' terms in absolute value
         * (as dp_accounting does): an upper bound, equal to the exact value where the
         * signed terms are negligible (the first two cases) and 5e-5 above it here. */
        CHECK(eps_i >= cases[c].improved * (1 - 1e-10));
        CHECK_CLOSE(eps_i, cases[c].improved, c < 2 ? 1e-8 : 1e-4, 0);
        CHECK(order == cases[c].oi);
        CHECK(eps_i <= eps);
    }
    /* explicit orders are used as given */
    const double two = 2.0;
    double eps, r;
    CHECK_OK(fed_dp_epsilon(0.01, 1.0, 100, 1e-5, FED_RDP_CONVERSION_CLASSIC, &two, 1, &eps, NULL));
    CHECK_OK(fed_rdp_subsampled_gaussian(0.01, 1.0, 2.0, &r));
    CHECK_CLOSE(eps, 100 * r + log(1e5), 1e-12, 0);
    CHECK_EQ_INT(fed_dp_epsilon(0.01, 1.0, 100, 1e-5, 0, NULL, 0, NULL, NULL), FED_EINVAL);
    CHECK_EQ_INT(fed_dp_epsilon(1.5, 1.0, 100, 1e-5, 0, NULL, 0, &eps, NULL), FED_EINVAL);
    CHECK_EQ_INT(fed_dp_epsilon(0.01, 1.0, 100, 0.0, 0, NULL, 0, &eps, NULL), FED_EINVAL);
}

static double eps_of(double q, double z, long steps, double delta, int conv) {
    double e;
    CHECK_OK(fed_dp_epsilon(q, z, steps, delta, conv, NULL, 0, &e, NULL));
    return e;
}

static void test_calibrate(void) {
    const double q = 256.0 / 60000.0, delta = 1e-5;
    const long steps = 14063;
    for (int conv = 0; conv < 2; conv++) {
        /* round trip: the epsilon of z = 1.1 calls for z = 1.1 */
        double target = eps_of(q, 1.1, steps, delta, conv), z;
        CHECK_OK(fed_dp_calibrate_noise(q, steps, delta, target, conv, NULL, 0, 1e-6, &z));
        CHECK_CLOSE(z, 1.1, 2e-6, 0);
        /* targets needing z above and below 1 (the bracket grows both ways) */
        const double targets[] = {0.5, 1.0, 3.0, 8.0, 50.0, 1000.0};
        for (int i = 0; i < 6; i++) {
            for (int t = 0; t < 2; t++) {
                double tol = t ? 1e-4 : 1e-6;
                CHECK_OK(fed_dp_calibrate_noise(q, steps, delta, targets[i], conv, NULL, 0, tol, &z));
                CHECK(eps_of(q, z, steps, delta, conv) <= targets[i]);      /* meets it */
                CHECK(eps_of(q, z * (1 - tol), steps, delta, conv) > targets[i]); /* smallest */
            }
        }
    }
    double z;
    /* rel_tol <= 0 is the default 1e-6 */
    CHECK_OK(fed_dp_calibrate_noise(0.01, 1000, 1e-5, 2.0, FED_RDP_CONVERSION_IMPROVED, NULL, 0, 0, &z));
    CHECK(eps_of(0.01, z * (1 - 1e-6), 1000, 1e-5, 0) > 2.0);
    /* q = 0 or no steps: no noise needed */
    CHECK_OK(fed_dp_calibrate_noise(0.0, 1000, 1e-5, 1.0, 0, NULL, 0, 0, &z));
    CHECK(z == 0);
    CHECK_OK(fed_dp_calibrate_noise(0.5, 0, 1e-5, 1.0, 0, NULL, 0, 0, &z));
    CHECK(z == 0);
    /* unreachable with z <= 1e6 */
    CHECK_EQ_INT(fed_dp_calibrate_noise(1.0, 100000, 1e-5, 1e-6, 0, NULL, 0, 0, &z), FED_ERANGE);
    CHECK(strstr(fed_last_error(), "epsilon") != NULL);
    CHECK_EQ_INT(fed_dp_calibrate_noise(0.01, 100, 1e-5, 0.0, 0, NULL, 0, 0, &z), FED_EINVAL);
    CHECK(strstr(fed_last_error(), "target") != NULL);
    CHECK_EQ_INT(fed_dp_calibrate_noise(0.01, 100, 1e-5, INFINITY, 0, NULL, 0, 0, &z), FED_EINVAL);
    CHECK_EQ_INT(fed_dp_calibrate_noise(0.01, 100, 1e-5, 1.0, 0, NULL, 0, 0.7, &z), FED_EINVAL);
    CHECK_EQ_INT(fed_dp_calibrate_noise(0.01, 100, 2.0, 1.0, 0, NULL, 0, 0, &z), FED_EINVAL);
    CHECK(strstr(fed_last_error(), "delta") != NULL);
    CHECK_EQ_INT(fed_dp_calibrate_noise(0.01, -1, 1e-5, 1.0, 0, NULL, 0, 0, &z), FED_EINVAL);
    CHECK_EQ_INT(fed_dp_calibrate_noise(0.01, 100, 1e-5, 1.0, 0, NULL, 0, 0, NULL), FED_EINVAL);
}

/* Epsilon of 10^4 composed steps over the default orders, for information only
 * (benchmarks are not tests: the 5 ms target is measured by `federate privacy
 * --timing`). Composition is one multiplication per order: one RDP curve. */
static void test_speed(void) {
    const double qs[] = {1e-4, 256.0 / 60000.0, 0.01, 0.1};
    const double zs[] = {0.5, 0.8, 1.1, 2.0, 5.0};
    double worst = 0, total = 0;
    int runs = 0;
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 5; j++) {
            double t0 = now(), e;
            CHECK_OK(fed_dp_epsilon(qs[i], zs[j], 10000, 1e-5, FED_RDP_CONVERSION_IMPROVED, NULL, 0, &e,
                                    NULL));
            double ms = (now() - t0) * 1e3;
            worst = fmax(worst, ms);
            total += ms;
            runs++;
        }
    printf("test_dp_calibrate: epsilon of 10^4 steps (156 default orders): mean %.3f ms, worst %.3f ms "
           "over %d (q, z)\n", total / runs, worst, runs);
    CHECK(isfinite(worst));
    double t0 = now(), z;
    CHECK_OK(fed_dp_calibrate_noise(256.0 / 60000.0, 14063, 1e-5, 3.0, 0, NULL, 0, 1e-6, &z));
    printf("test_dp_calibrate: calibrating z for eps 3 (MNIST tutorial): %.1f ms\n", (now() - t0) * 1e3);
}

int main(void) {
    test_independent_values();
    test_calibrate();
    test_speed();
    TEST_PASS("test_dp_calibrate");
}
