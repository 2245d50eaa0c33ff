/* RDP accountant: pinned numbers from dp_accounting's and TF Privacy's own tests and
 * tutorial, properties of the conversions, and rejection of bad inputs. */
#include "federate/error.h"
#include "federate/rdp.h"
#include "check.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* eps of `steps` subsampled-Gaussian steps over the given orders. */
static double dpsgd_eps(const double *orders, int n, double q, double sigma, long steps,
                        double delta, int conversion, double *best_order) {
    fed_rdp *a;
    double eps;
    CHECK_OK(fed_rdp_new(&a, orders, n));
    CHECK_OK(fed_rdp_compose_subsampled_gaussian(a, q, sigma, steps));
    CHECK_OK(fed_rdp_epsilon(a, delta, conversion, &eps, best_order));
    fed_rdp_free(a);
    return eps;
}

/* dp_accounting rdp/rdp_privacy_accountant_test.py, test_compute_rdp_poisson_sampled_gaussian. */
static void test_dp_accounting_rdp_values(void) {
    const double orders[] = {1.5, 2.5, 5, 50, 100, INFINITY};
    const double want[] = {6.70579741e-04, 1.08548710e-03, 2.18075656e-03,
                           2.38460375e-02, 1.67416308e+02, INFINITY};
    fed_rdp *a;
    const double *rdp, *ord;
    int n;
    CHECK_OK(fed_rdp_new(&a, orders, 6));
    CHECK_OK(fed_rdp_compose_subsampled_gaussian(a, 0.01, 2.5, 50));
    CHECK_OK(fed_rdp_orders(a, &ord, &rdp, &n));
    CHECK_EQ_INT(n, 6);
    for (int i = 0; i < 5; i++) {
        CHECK(ord[i] == orders[i]);
        CHECK_CLOSE(rdp[i], want[i], 1e-6, 0);
    }
    CHECK(isinf(rdp[5]) && rdp[5] > 0);
    /* One step is the composed value over 50 (the same per-order number, added 50 times). */
    double one;
    CHECK_OK(fed_rdp_subsampled_gaussian(0.01, 2.5, 5, &one));
    CHECK_CLOSE(50 * one, want[2], 1e-6, 0);
    fed_rdp_free(a);
}

/* TF Privacy tutorials/README.md: `compute_dp_sgd_privacy.py --N=60000 --batch_size=256
 * --noise_multiplier=1.1 --epochs=60 --delta=1e-5` gives eps = 3.01 (and the README's
 * table: sigma 1.3, 15 epochs -> 1.19; sigma 0.7, 45 epochs -> 7.10), computed with the
 * classic conversion over orders 1.1..10.9 step .1 and 12..63. */
static void test_tf_privacy_mnist_tutorial(void) {
    double orders[160];
    int n = 0;
    for (int x = 1; x < 100; x++) orders[n++] = 1 + x / 10.0;
    for (int x = 12; x < 64; x++) orders[n++] = x;
    const struct { double sigma, epochs, eps; } cases[] = {{1.1, 60, 3.01}, {1.3, 15, 1.19},
                                                          {0.7, 45, 7.10}};
    for (int c = 0; c < 3; c++) {
        /* compute_dp_sgd_privacy: steps = int(ceil(epochs * n / batch_size)) */
        long steps = (long)ceil(cases[c].epochs * 60000.0 / 256.0);
        double order;
        double eps = dpsgd_eps(orders, n, 256.0 / 60000.0, cases[c].sigma, steps, 1e-5,
                               FED_RDP_CONVERSION_CLASSIC, &order);
        printf("test_rdp: MNIST sigma=%.1f epochs=%.0f steps=%ld: eps=%.2f (%.10f, order %g)\n",
               cases[c].sigma, cases[c].epochs, steps, eps, eps, order);
        CHECK_NEAR(eps, cases[c].eps, 0.005);
    }
}

/* TF Privacy tensorflow_privacy/privacy/analysis/compute_dp_sgd_privacy_test.py,
 * test_compute_dp_sgd_privacy: dp_accounting's RdpAccountant with the improved conversion,
 * orders of compute_dp_sgd_privacy_lib.py. */
static void test_tf_privacy_compute_dp_sgd_privacy(void) {
    double orders[80];
    const double low[] = {1.25, 1.5, 1.75, 2., 2.25, 2.5, 3., 3.5, 4., 4.5};
    int n = 0;
    for (int i = 0; i < 10; i++) orders[n++] = low[i];
    for (int x = 5; x < 64; x++) orders[n++] = x;
    orders[n++] = 128;
    orders[n++] = 256;
    orders[n++] = 512;
    const struct { double n, batch, sigma, epochs, delta, eps, order; } cases[] = {
        {60000, 150, 1.3, 15, 1e-5, 0.7242234026109595, 19.0},
        {100000, 100, 1.0, 30, 1e-7, 1.4154988495444842, 13.0},
        {100000000, 1024, 0.1, 10, 1e-7, 5907982.3113978775, 1.25},
    };
    for (int c = 0; c < 3; c++) {
        long steps = (long)ceil(cases[c].epochs * cases[c].n / cases[c].batch);
        double order;
        double eps = dpsgd_eps(orders, n, cases[c].batch / cases[c].n, cases[c].sigma, steps,
                               cases[c].delta, FED_RDP_CONVERSION_IMPROVED, &order);
        CHECK_CLOSE(eps, cases[c].eps, 1e-9, 0);
        CHECK(order == cases[c].order);
    }
}

/* dp_accounting rdp_privacy_accountant_test.py, test_compute_epsilon_delta_pure_dp:
 * a constant RDP curve (pure DP), eps computed by hand there. */
static void test_dp_accounting_pure_dp(void) {
    double orders[31], rdp[31];
    for (int i = 0; i < 31; i++) {
        orders[i] = 2 + i;
        rdp[i] = 1.1;
    }
    fed_rdp *a;
    double eps, delta, order;
    CHECK_OK(fed_rdp_new(&a, orders, 31));
    CHECK_OK(fed_rdp_add(a, rdp, 31));
    CHECK_OK(fed_rdp_epsilon(a, 1e-5, FED_RDP_CONVERSION_IMPROVED, &eps, &order));
    CHECK_NEAR(eps, 1.32783806176, 1e-10);
    CHECK(order == 32);
    CHECK_OK(fed_rdp_delta(a, 1.32783806176, &delta, &order));
    CHECK_CLOSE(delta, 1e-5, 1e-6, 0);
    CHECK(order == 32);
    fed_rdp_free(a);
}

/* dp_accounting rdp_privacy_accountant_test.py, test_compute_epsilon_delta_gaussian: the
 * plain Gaussian (q = 1) with sigma chosen to be exactly (1, 1e-6)-DP, orders 1.001..99.999. */
static void test_dp_accounting_gaussian(void) {
    enum { N = 98999 };
    static double orders[N];
    for (int i = 0; i < N; i++) orders[i] = 0.001 * (1001 + i);
    fed_rdp *a;
    double eps, delta;
    CHECK_OK(fed_rdp_new(&a, orders, N));
    CHECK_OK(fed_rdp_compose_subsampled_gaussian(a, 1.0, 4.530877117, 1));
    CHECK_OK(fed_rdp_epsilon(a, 1e-6, FED_RDP_CONVERSION_IMPROVED, &eps, NULL));
    CHECK_NEAR(eps, 1.0, 5e-8);
    CHECK_OK(fed_rdp_delta(a, 1.0, &delta, NULL));
    CHECK_CLOSE(delta, 1e-6, 1e-4, 0);
    fed_rdp_free(a);
}

/* dp_accounting test_zero_poisson_sample, test_epsilon_non_private_gaussian,
 * test_compute_rdp_gaussian. */
static void test_dp_accounting_edges(void) {
    const double order = 3.14159;
    fed_rdp *a;
    double eps, delta, r;
    for (int s = 0; s < 2; s++) { /* q = 0 is private whatever the noise, even none */
        CHECK_OK(fed_rdp_new(&a, &order, 1));
        CHECK_OK(fed_rdp_compose_subsampled_gaussian(a, 0.0, s ? 1.0 : 0.0, 1));
        CHECK_OK(fed_rdp_epsilon(a, 1e-10, FED_RDP_CONVERSION_IMPROVED, &eps, NULL));
        CHECK(eps == 0);
        CHECK_OK(fed_rdp_delta(a, 1e-10, &delta, NULL));
        CHECK(delta == 0);
        fed_rdp_free(a);
    }
    CHECK_OK(fed_rdp_subsampled_gaussian(0.0, 1.0, INFINITY, &r));
    CHECK(r == 0);

    CHECK_OK(fed_rdp_new(&a, &order, 1));
    CHECK_OK(fed_rdp_compose_subsampled_gaussian(a, 1.0, 0.0, 1));
    CHECK_OK(fed_rdp_epsilon(a, 1e-1, FED_RDP_CONVERSION_IMPROVED, &eps, NULL));
    CHECK(isinf(eps) && eps > 0);
    CHECK_OK(fed_rdp_delta(a, 1.0, &delta, NULL));
    CHECK(delta == 1.0);
    fed_rdp_free(a);

    CHECK_OK(fed_rdp_subsampled_gaussian(1.0, 2.71828, order, &r));
    CHECK_CLOSE(r, order / (2 * 2.71828 * 2.71828), 1e-15, 0);
    CHECK_OK(fed_rdp_subsampled_gaussian(0.3, 0.0, 2.0, &r));
    CHECK(isinf(r));
    CHECK_OK(fed_rdp_subsampled_gaussian(0.3, 1.0, INFINITY, &r));
    CHECK(isinf(r));
}

static void test_default_orders(void) {
    fed_rdp *a;
    const double *o, *r;
    int n;
    CHECK_OK(fed_rdp_new(&a, NULL, 0));
    CHECK_OK(fed_rdp_orders(a, &o, &r, &n));
    CHECK_EQ_INT(n, FED_RDP_NUM_DEFAULT_ORDERS);
    CHECK(o[0] == 1.1 && o[98] == 1 + 99 / 10.0 && o[99] == 11 && o[151] == 63);
    CHECK(o[152] == 128 && o[155] == 1024);
    for (int i = 0; i < n; i++) CHECK(r[i] == 0);
    fed_rdp_free(a);
}

static void test_properties(void) {
    const double q = 0.01, delta = 1e-5;
    double prev = 0, eps_i, eps_c;
    /* More steps never cost less privacy. */
    for (long steps = 1; steps <= 10000; steps *= 10) {
        eps_i = dpsgd_eps(NULL, 0, q, 1.0, steps, delta, FED_RDP_CONVERSION_IMPROVED, NULL);
        CHECK(eps_i > prev);
        prev = eps_i;
    }
    /* More noise never costs more; the improved conversion never loses to the classic. */
    prev = INFINITY;
    for (double sigma = 0.5; sigma <= 8; sigma *= 1.5) {
        eps_i = dpsgd_eps(NULL, 0, q, sigma, 1000, delta, FED_RDP_CONVERSION_IMPROVED, NULL);
        eps_c = dpsgd_eps(NULL, 0, q, sigma, 1000, delta, FED_RDP_CONVERSION_CLASSIC, NULL);
        CHECK(eps_i < prev);
        CHECK(eps_i <= eps_c);
        prev = eps_i;
    }

    /* Composing two mechanisms in one accountant = the sum of their RDP curves. */
    fed_rdp *ab, *a1, *b1;
    const double *rab, *ra, *rb;
    int n;
    CHECK_OK(fed_rdp_new(&ab, NULL, 0));
    CHECK_OK(fed_rdp_new(&a1, NULL, 0));
    CHECK_OK(fed_rdp_new(&b1, NULL, 0));
    CHECK_OK(fed_rdp_compose_subsampled_gaussian(ab, 1e-4, 0.4, 40000));
    CHECK_OK(fed_rdp_compose_subsampled_gaussian(ab, 0.1, 2.0, 100));
    CHECK_OK(fed_rdp_compose_subsampled_gaussian(a1, 1e-4, 0.4, 40000));
    CHECK_OK(fed_rdp_compose_subsampled_gaussian(b1, 0.1, 2.0, 100));
    CHECK_OK(fed_rdp_orders(ab, NULL, &rab, &n));
    CHECK_OK(fed_rdp_orders(a1, NULL, &ra, NULL));
    CHECK_OK(fed_rdp_orders(b1, NULL, &rb, NULL));
    for (int i = 0; i < n; i++) CHECK_CLOSE(rab[i], ra[i] + rb[i], 1e-15, 0);
    /* ... and fed_rdp_add of one curve onto the other gives the same accountant. */
    CHECK_OK(fed_rdp_add(a1, rb, n));
    for (int i = 0; i < n; i++) CHECK_CLOSE(ra[i], rab[i], 1e-15, 0);
    double e1, e2;
    CHECK_OK(fed_rdp_epsilon(ab, delta, FED_RDP_CONVERSION_IMPROVED, &e1, NULL));
    CHECK_OK(fed_rdp_epsilon(a1, delta, FED_RDP_CONVERSION_IMPROVED, &e2, NULL));
    CHECK_CLOSE(e1, e2, 1e-12, 0);
    /* steps = 0 changes nothing, even where one step is unbounded (no 0 * inf). */
    CHECK_OK(fed_rdp_compose_subsampled_gaussian(b1, 0.5, 0.0, 0));
    for (int i = 0; i < n; i++) CHECK(!isnan(rb[i]) && isfinite(rb[i]));
    fed_rdp_free(ab);
    fed_rdp_free(a1);
    fed_rdp_free(b1);

    /* delta(eps(delta)) = delta, after dp_accounting's test_epsilon_delta_consistency. */
    double orders[48];
    for (int i = 0; i < 48; i++) orders[i] = 2 + i;
    const double qs[] = {0, 0.01, 0.1, 0.8, 1.0};
    const double sigmas[] = {0.0, 0.1, 1.0, 10.0, 100.0};
    const double deltas[] = {.99, .9, .1, .01, 1e-3, 1e-5, 1e-9, 1e-12};
    for (int iq = 0; iq < 5; iq++)
        for (int is = 0; is < 5; is++) {
            fed_rdp *a;
            CHECK_OK(fed_rdp_new(&a, orders, 48));
            CHECK_OK(fed_rdp_compose_subsampled_gaussian(a, qs[iq], sigmas[is], 1));
            for (int id = 0; id < 8; id++) {
                double eps, d2;
                CHECK_OK(fed_rdp_epsilon(a, deltas[id], FED_RDP_CONVERSION_IMPROVED, &eps, NULL));
                if (isinf(eps)) {
                    CHECK(qs[iq] > 0 && sigmas[is] == 0);
                    continue; /* fed_rdp_delta takes finite eps only */
                }
                CHECK_OK(fed_rdp_delta(a, eps, &d2, NULL));
                if (eps == 0) CHECK(d2 <= deltas[id]);
                else CHECK_CLOSE(d2, deltas[id], 1e-6, 0);
            }
            fed_rdp_free(a);
        }
}

static void test_bad_inputs(void) {
    fed_rdp *a;
    double r, e;
    const double bad_orders[] = {2.0, 1.0};
    const double nan_order[] = {NAN};
    CHECK_EQ_INT(fed_rdp_new(&a, bad_orders, 2), FED_EINVAL);
    CHECK(a == NULL);
    CHECK_EQ_INT(fed_rdp_new(&a, nan_order, 1), FED_EINVAL);
    CHECK_EQ_INT(fed_rdp_new(&a, bad_orders, 0), FED_EINVAL);
    CHECK_EQ_INT(fed_rdp_new(NULL, NULL, 0), FED_EINVAL);

    CHECK_EQ_INT(fed_rdp_subsampled_gaussian(-0.1, 1, 2, &r), FED_EINVAL);
    CHECK(strstr(fed_last_error(), "q") != NULL);
    CHECK_EQ_INT(fed_rdp_subsampled_gaussian(1.1, 1, 2, &r), FED_EINVAL);
    CHECK_EQ_INT(fed_rdp_subsampled_gaussian(NAN, 1, 2, &r), FED_EINVAL);
    CHECK_EQ_INT(fed_rdp_subsampled_gaussian(0.1, -1, 2, &r), FED_EINVAL);
    CHECK(strstr(fed_last_error(), "sigma") != NULL);
    CHECK_EQ_INT(fed_rdp_subsampled_gaussian(0.1, 1, 1.0, &r), FED_EINVAL);
    CHECK(strstr(fed_last_error(), "order") != NULL);
    CHECK_EQ_INT(fed_rdp_subsampled_gaussian(0.1, 1, 0.5, &r), FED_EINVAL);
    CHECK_EQ_INT(fed_rdp_subsampled_gaussian(0.1, 1, 2, NULL), FED_EINVAL);

    CHECK_OK(fed_rdp_new(&a, NULL, 0));
    CHECK_EQ_INT(fed_rdp_compose_subsampled_gaussian(a, 0.1, 1, -1), FED_EINVAL);
    CHECK(strstr(fed_last_error(), "steps") != NULL);
    CHECK_EQ_INT(fed_rdp_compose_subsampled_gaussian(a, 2, 1, 1), FED_EINVAL);
    CHECK_EQ_INT(fed_rdp_compose_subsampled_gaussian(a, 0.1, -2, 1), FED_EINVAL);
    CHECK_EQ_INT(fed_rdp_compose_subsampled_gaussian(NULL, 0.1, 1, 1), FED_EINVAL);
    CHECK_EQ_INT(fed_rdp_epsilon(a, 0.0, FED_RDP_CONVERSION_IMPROVED, &e, NULL), FED_EINVAL);
    CHECK(strstr(fed_last_error(), "delta") != NULL);
    CHECK_EQ_INT(fed_rdp_epsilon(a, 1.0, FED_RDP_CONVERSION_IMPROVED, &e, NULL), FED_EINVAL);
    CHECK_EQ_INT(fed_rdp_epsilon(a, -1e-5, FED_RDP_CONVERSION_CLASSIC, &e, NULL), FED_EINVAL);
    CHECK_EQ_INT(fed_rdp_epsilon(a, 1e-5, 7, &e, NULL), FED_EINVAL);
    CHECK_EQ_INT(fed_rdp_epsilon(a, 1e-5, FED_RDP_CONVERSION_IMPROVED, NULL, NULL), FED_EINVAL);
    CHECK_EQ_INT(fed_rdp_delta(a, -1.0, &e, NULL), FED_EINVAL);
    CHECK(strstr(fed_last_error(), "eps") != NULL);
    CHECK_EQ_INT(fed_rdp_delta(a, NAN, &e, NULL), FED_EINVAL);
    double neg[FED_RDP_NUM_DEFAULT_ORDERS] = {0};
    neg[3] = -1;
    CHECK_EQ_INT(fed_rdp_add(a, neg, FED_RDP_NUM_DEFAULT_ORDERS), FED_EINVAL);
    CHECK_EQ_INT(fed_rdp_add(a, neg, 3), FED_EINVAL);
    /* A rejected call leaves the accountant as it was. */
    const double *rdp;
    int n;
    CHECK_OK(fed_rdp_orders(a, NULL, &rdp, &n));
    for (int i = 0; i < n; i++) CHECK(rdp[i] == 0);
    fed_rdp_free(a);
    fed_rdp_free(NULL);
}

int main(void) {
    test_dp_accounting_rdp_values();
    test_tf_privacy_mnist_tutorial();
    test_tf_privacy_compute_dp_sgd_privacy();
    test_dp_accounting_pure_dp();
    test_dp_accounting_gaussian();
    test_dp_accounting_edges();
    test_default_orders();
    test_properties();
    test_bad_inputs();
    TEST_PASS("test_rdp");
}
