/* Pure-DP accounting: Laplace epsilon, basic and advanced composition on hand-computed
 * numbers, and the Laplace RDP curve against values computed with mpmath (quadrature of
 * the Renyi divergence) and its own numerical integral, composed in the RDP accountant. */
#include "federate/dp.h"
#include "federate/error.h"
#include "check.h"

#include <math.h>
#include <string.h>

static void test_laplace_epsilon(void) {
    double eps;
    CHECK_OK(fed_dp_laplace_epsilon(2.0, 0.5, &eps));
    CHECK(eps == 4.0);
    CHECK_EQ_INT(fed_dp_laplace_epsilon(0.0, 1.0, &eps), FED_EINVAL);
    CHECK(strstr(fed_last_error(), "sensitivity") != NULL);
    CHECK_EQ_INT(fed_dp_laplace_epsilon(1.0, 0.0, &eps), FED_EINVAL);
    CHECK(strstr(fed_last_error(), "scale") != NULL);
    CHECK_EQ_INT(fed_dp_laplace_epsilon(1.0, NAN, &eps), FED_EINVAL);
    CHECK_EQ_INT(fed_dp_laplace_epsilon(1.0, 1.0, NULL), FED_EINVAL);
}

static void test_composition(void) {
    fed_pure_dp a;
    double eps;
    int how;
    fed_pure_dp_init(&a);
    CHECK_OK(fed_pure_dp_epsilon(&a, 0.0, &eps, &how));
    CHECK(eps == 0 && how == FED_PURE_DP_BASIC);
    /* 100 x 0.1-DP: basic 10; advanced at delta 1e-5:
     * sqrt(2 ln(1e5) 100 0.01) + 100 0.1 (e^0.1 - 1) = 4.79852... + 1.05170918 */
    CHECK_OK(fed_pure_dp_add_laplace(&a, 1.0, 10.0, 100));
    CHECK_EQ_INT(a.count, 100);
    CHECK_OK(fed_pure_dp_epsilon(&a, 0.0, &eps, &how));
    CHECK_CLOSE(eps, 10.0, 1e-12, 0);
    CHECK_EQ_INT(how, FED_PURE_DP_BASIC);
    double want = sqrt(2 * log(1e5) * 100 * 0.01) + 100 * 0.1 * (exp(0.1) - 1);
    CHECK_NEAR(want, 5.85023, 1e-5);
    CHECK_OK(fed_pure_dp_epsilon(&a, 1e-5, &eps, &how));
    CHECK_CLOSE(eps, want, 1e-12, 0);
    CHECK_EQ_INT(how, FED_PURE_DP_ADVANCED);
    /* Few, large epsilons: basic wins even with delta. 3 x 1.0: advanced is
     * sqrt(6 ln 1e5) + 3 (e - 1) = 8.31 + 5.15 > 3. */
    fed_pure_dp b = {0};
    CHECK_OK(fed_pure_dp_add(&b, 1.0, 3));
    CHECK_OK(fed_pure_dp_epsilon(&b, 1e-5, &eps, &how));
    CHECK(eps == 3.0 && how == FED_PURE_DP_BASIC);
    /* Unequal epsilons add their squares: 0.1 x 50 + 0.2 x 25 */
    fed_pure_dp c = {0};
    CHECK_OK(fed_pure_dp_add(&c, 0.1, 50));
    CHECK_OK(fed_pure_dp_add(&c, 0.2, 25));
    CHECK_OK(fed_pure_dp_epsilon(&c, 1e-6, &eps, NULL));
    want = sqrt(2 * log(1e6) * (50 * 0.01 + 25 * 0.04)) + 50 * 0.1 * expm1(0.1) + 25 * 0.2 * expm1(0.2);
    CHECK_CLOSE(eps, fmin(10.0, want), 1e-12, 0);
    /* times == 0 adds nothing; huge eps does not produce NaN */
    CHECK_OK(fed_pure_dp_add(&c, 5.0, 0));
    CHECK_OK(fed_pure_dp_epsilon(&c, 1e-6, &eps, NULL));
    CHECK_CLOSE(eps, fmin(10.0, want), 1e-12, 0);
    CHECK_OK(fed_pure_dp_add(&c, 1000.0, 1));
    CHECK_OK(fed_pure_dp_epsilon(&c, 1e-6, &eps, &how));
    CHECK(eps == 1010.0 && how == FED_PURE_DP_BASIC);

    CHECK_EQ_INT(fed_pure_dp_add(&c, -1.0, 1), FED_EINVAL);
    CHECK_EQ_INT(fed_pure_dp_add(&c, INFINITY, 1), FED_EINVAL);
    CHECK_EQ_INT(fed_pure_dp_add(&c, 1.0, -1), FED_EINVAL);
    CHECK_EQ_INT(fed_pure_dp_add(NULL, 1.0, 1), FED_EINVAL);
    CHECK_EQ_INT(fed_pure_dp_epsilon(&c, 1.0, &eps, NULL), FED_EINVAL);
    CHECK(strstr(fed_last_error(), "delta") != NULL);
    CHECK_EQ_INT(fed_pure_dp_epsilon(&c, -0.1, &eps, NULL), FED_EINVAL);
    CHECK_EQ_INT(fed_pure_dp_add_laplace(&c, 1.0, -1.0, 1), FED_EINVAL);
    CHECK_EQ_INT(c.count, 76); /* rejected calls change nothing */
}

/* Renyi divergence D_a(Lap(0,1) || Lap(t,1)) by Simpson's rule on the three pieces
 * where the integrand is a single exponential. */
static double lap_rdp_numeric(double a, double t) {
    const double cut[4] = {-60.0, 0.0, t, t + 60.0};
    double total = 0;
    for (int p = 0; p < 3; p++) {
        const int m = 20000; /* even */
        double h = (cut[p + 1] - cut[p]) / m, s = 0;
        for (int i = 0; i <= m; i++) {
            double x = cut[p] + i * h;
            double f = 0.5 * exp(-a * fabs(x) - (1 - a) * fabs(x - t));
            s += f * (i == 0 || i == m ? 1 : (i % 2 ? 4 : 2));
        }
        total += s * h / 3;
    }
    return log(total) / (a - 1);
}

static void test_laplace_rdp(void) {
    /* (order, sensitivity/scale, RDP) from mpmath at 40 digits: the closed form of
     * Mironov 2017 Prop. 6 and quad() of the divergence integral agree to all digits. */
    const struct { double a, t, want; } pin[] = {
        {2, 1, 0.61912362999859288},
        {1.5, 0.1, 0.007247485389328535},
        {32, 0.5, 0.47814842504542626},
        {1.1, 2, 1.2120188827857639},
    };
    for (int i = 0; i < 4; i++) {
        double r;
        CHECK_OK(fed_dp_laplace_rdp(3.0 * pin[i].t, 3.0, &pin[i].a, 1, &r));
        CHECK_CLOSE(r, pin[i].want, 1e-13, 1e-16);
    }
    const double orders[] = {1.1, 1.5, 2, 3.5, 8, 20, 64};
    const double ts[] = {0.05, 0.3, 1.0, 3.0};
    for (int j = 0; j < 4; j++) {
        double r[7];
        CHECK_OK(fed_dp_laplace_rdp(ts[j], 1.0, orders, 7, r));
        for (int i = 0; i < 7; i++) {
            CHECK_CLOSE(r[i], lap_rdp_numeric(orders[i], ts[j]), 1e-7, 1e-12);
            CHECK(r[i] <= ts[j]); /* never above the pure-DP bound, its limit at order inf */
            if (i) CHECK(r[i] >= r[i - 1]); /* nondecreasing in the order */
        }
    }
    double inf = INFINITY, r;
    CHECK_OK(fed_dp_laplace_rdp(1.0, 4.0, &inf, 1, &r));
    CHECK(r == 0.25);
    /* tiny t: RDP ~ a t^2 / 2, no negative values from cancellation */
    const double two = 2.0;
    CHECK_OK(fed_dp_laplace_rdp(1e-6, 1.0, &two, 1, &r));
    CHECK(r >= 0 && r < 2e-12);
    double bad = 1.0;
    CHECK_EQ_INT(fed_dp_laplace_rdp(1.0, 1.0, &bad, 1, &r), FED_EINVAL);
    CHECK(strstr(fed_last_error(), "order") != NULL);
    CHECK_EQ_INT(fed_dp_laplace_rdp(1.0, 1.0, orders, 0, &r), FED_EINVAL);
    CHECK_EQ_INT(fed_dp_laplace_rdp(-1.0, 1.0, orders, 1, &r), FED_EINVAL);
}

/* Laplace noise composes with Gaussian noise in the RDP accountant. */
static void test_rdp_composition(void) {
    fed_rdp *mix, *g;
    CHECK_OK(fed_rdp_new(&mix, NULL, 0));
    CHECK_OK(fed_rdp_new(&g, NULL, 0));
    CHECK_OK(fed_rdp_compose_subsampled_gaussian(mix, 0.01, 1.1, 1000));
    CHECK_OK(fed_rdp_compose_subsampled_gaussian(g, 0.01, 1.1, 1000));
    CHECK_OK(fed_rdp_compose_laplace(mix, 1.0, 50.0, 10));
    const double *orders, *rm, *rg;
    int n;
    CHECK_OK(fed_rdp_orders(mix, &orders, &rm, &n));
    CHECK_OK(fed_rdp_orders(g, NULL, &rg, NULL));
    for (int i = 0; i < n; i++) {
        double one;
        CHECK_OK(fed_dp_laplace_rdp(1.0, 50.0, &orders[i], 1, &one));
        CHECK_CLOSE(rm[i], rg[i] + 10 * one, 1e-13, 0);
    }
    double e_mix, e_g;
    CHECK_OK(fed_rdp_epsilon(mix, 1e-5, FED_RDP_CONVERSION_IMPROVED, &e_mix, NULL));
    CHECK_OK(fed_rdp_epsilon(g, 1e-5, FED_RDP_CONVERSION_IMPROVED, &e_g, NULL));
    CHECK(e_mix > e_g);
    /* 10 x 0.02-DP adds at most 0.2 (basic composition of the Laplace part) */
    CHECK(e_mix <= e_g + 0.2 + 1e-12);
    CHECK_OK(fed_rdp_compose_laplace(mix, 1.0, 50.0, 0));
    CHECK_EQ_INT(fed_rdp_compose_laplace(mix, 1.0, 50.0, -1), FED_EINVAL);
    CHECK_EQ_INT(fed_rdp_compose_laplace(NULL, 1.0, 50.0, 1), FED_EINVAL);
    fed_rdp_free(mix);
    fed_rdp_free(g);

    /* Many small Laplace steps: RDP accounting beats basic composition, and advanced
     * composition too. 1000 x 0.01-DP at delta 1e-5. */
    fed_rdp *l;
    fed_pure_dp p = {0};
    double e_rdp, e_basic, e_adv;
    CHECK_OK(fed_rdp_new(&l, NULL, 0));
    CHECK_OK(fed_rdp_compose_laplace(l, 1.0, 100.0, 1000));
    CHECK_OK(fed_rdp_epsilon(l, 1e-5, FED_RDP_CONVERSION_IMPROVED, &e_rdp, NULL));
    CHECK_OK(fed_pure_dp_add_laplace(&p, 1.0, 100.0, 1000));
    CHECK_OK(fed_pure_dp_epsilon(&p, 0.0, &e_basic, NULL));
    CHECK_OK(fed_pure_dp_epsilon(&p, 1e-5, &e_adv, NULL));
    printf("test_dp_pure: 1000 x Laplace(eps 0.01), delta 1e-5: basic %.4f, advanced %.4f, RDP %.4f\n",
           e_basic, e_adv, e_rdp);
    CHECK(e_rdp < e_adv && e_adv < e_basic);
    fed_rdp_free(l);
}

int main(void) {
    test_laplace_epsilon();
    test_composition();
    test_laplace_rdp();
    test_rdp_composition();
    TEST_PASS("test_dp_pure");
}
