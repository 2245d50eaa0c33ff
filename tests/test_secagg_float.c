/* Floats through secure aggregation: the weighted mean of the surviving clients'
 * clipped updates comes back within the quantization error, stochastic rounding
 * is unbiased, and a ring too small for the sum is refused. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "federate/error.h"
#include "federate/rng.h"
#include "federate/secagg.h"

static void overflow_refused(void) {
    fed_secagg_enc e;
    fed_secagg_enc_default(&e);
    int b;
    CHECK_OK(fed_secagg_enc_ring_bits(&e, 100, &b));
    CHECK_EQ_INT(b, 16 + 7);
    CHECK_OK(fed_secagg_enc_ring_bits(&e, 128, &b));
    CHECK_EQ_INT(b, 23);
    CHECK_OK(fed_secagg_enc_ring_bits(&e, 129, &b));
    CHECK_EQ_INT(b, 24);
    e.ring_bits = 22; /* 100 (2^16 - 1) > 2^22 */
    CHECK(fed_secagg_enc_ring_bits(&e, 100, &b) == FED_ERANGE);
    CHECK(strstr(fed_last_error(), "overflow") != NULL);
    e.ring_bits = 23;
    CHECK_OK(fed_secagg_enc_ring_bits(&e, 100, &b));
    e.ring_bits = 16; /* 1 client of 16 bits fits 2^16 exactly (max 65535) */
    CHECK_OK(fed_secagg_enc_ring_bits(&e, 1, &b));
    CHECK(fed_secagg_enc_ring_bits(&e, 2, &b) == FED_ERANGE);
    e.ring_bits = 0;
    e.bits = 50;
    CHECK(fed_secagg_enc_ring_bits(&e, 1 << 20, &b) == FED_ERANGE);
    e.bits = 0;
    CHECK(fed_secagg_enc_ring_bits(&e, 10, &b) == FED_EINVAL);
    /* the round driver refuses it too */
    fed_secagg_enc_default(&e);
    e.ring_bits = 17;
    fed_secagg_cfg cfg;
    CHECK_OK(fed_secagg_cfg_default(&cfg, 4));
    float u[3] = {0}, mean[3];
    const float *ups[4] = {u, u, u, u};
    CHECK(fed_secagg_mean(&cfg, &e, 4, ups, NULL, 3, NULL, mean, NULL, NULL) == FED_ERANGE);
    /* weights outside [0, W] */
    fed_secagg_enc_default(&e);
    uint64_t out[4];
    CHECK(fed_secagg_encode(&e, 0, u, 3, 1.5, out) == FED_ERANGE);
    CHECK(fed_secagg_encode(&e, 0, u, 3, -0.1, out) == FED_ERANGE);
}

static void unbiased_rounding(void) {
    fed_secagg_enc e;
    fed_secagg_enc_default(&e);
    e.bits = 4; /* coarse: 15 steps over [-1, 1] */
    enum { D = 20000 };
    float *x = malloc(D * sizeof *x);
    uint64_t *q = malloc((D + 1) * 8);
    for (int i = 0; i < D; i++) x[i] = 0.3f;
    CHECK_OK(fed_secagg_encode(&e, 5, x, D, 1.0, q));
    double m = 0;
    for (int i = 0; i < D; i++) {
        CHECK(q[i] <= 15);
        m += (double)q[i] * 2.0 / 15 - 1;
    }
    CHECK_NEAR(m / D, 0.3, 0.005);
    /* same address, same numbers */
    uint64_t *q2 = malloc((D + 1) * 8);
    CHECK_OK(fed_secagg_encode(&e, 5, x, D, 1.0, q2));
    CHECK(memcmp(q, q2, (D + 1) * 8) == 0);
    free(x);
    free(q);
    free(q2);
}

static void weighted_mean(int k, size_t d, double drop_frac, int harary) {
    fed_secagg_enc e;
    fed_secagg_enc_default(&e);
    e.clip = 0.5;
    e.bits = 20;
    e.weight_max = 1000;
    e.seed = 11;
    fed_secagg_cfg cfg;
    CHECK_OK(fed_secagg_cfg_default(&cfg, k));
    cfg.threads = 2;
    if (harary) CHECK_OK(fed_secagg_cfg_plus(&cfg, 0.05, 0.3, 0));
    else cfg.threshold = k / 2 + 1;
    float **ups = malloc((size_t)k * sizeof *ups);
    double *w = malloc((size_t)k * sizeof *w);
    fed_rng r;
    fed_rng_init(&r, 5, 0, 0, FED_RNG_USER);
    for (int i = 0; i < k; i++) {
        ups[i] = malloc(d * sizeof **ups);
        fed_rng_fill_uniform(&r, ups[i], d, -0.7f, 0.7f); /* some get clipped */
        w[i] = 1 + fed_rng_below(&r, 1000);
    }
    uint8_t *drop = malloc((size_t)k), *inc = malloc((size_t)k);
    double p[4] = {0, drop_frac / 2, drop_frac / 2, 0};
    fed_secagg_drop_schedule(k, p, 3, 0, drop);
    float *mean = malloc(d * sizeof *mean);
    fed_secagg_stats st;
    CHECK_OK(fed_secagg_mean(&cfg, &e, k, (const float *const *)ups, w, d, drop, mean, inc, &st));
    double wsum = 0;
    int m = 0;
    for (int i = 0; i < k; i++) {
        CHECK_EQ_INT(inc[i], drop[i] >= 3);
        if (inc[i]) wsum += w[i], m++;
    }
    CHECK_EQ_INT(st.survivors, m);
    /* each client's coordinate is off by less than one step 2c/(2^q - 1), and the
     * weight coordinate likewise: bound the mean's error from both */
    double step = 2 * e.clip / ((1 << e.bits) - 1);
    double tol = (m * step + m * step * e.clip) * e.weight_max / wsum * 1.01 + 1e-6;
    for (size_t j = 0; j < d; j++) {
        double ref = 0;
        for (int i = 0; i < k; i++) {
            if (!inc[i]) continue;
            double v = ups[i][j];
            v = v < -e.clip ? -e.clip : v > e.clip ? e.clip : v;
            ref += w[i] * v;
        }
        ref /= wsum;
        CHECK_NEAR(mean[j], ref, tol);
    }
    for (int i = 0; i < k; i++) free(ups[i]);
    free(ups);
    free(w);
    free(drop);
    free(inc);
    free(mean);
}

int main(void) {
    overflow_refused();
    unbiased_rounding();
    weighted_mean(5, 1000, 0.0, 0);
    weighted_mean(20, 5000, 0.3, 0);
    weighted_mean(60, 3000, 0.3, 1);
    /* decode checks */
    fed_secagg_enc e;
    fed_secagg_enc_default(&e);
    uint64_t zero[3] = {0, 0, 0};
    float mean[2];
    CHECK(fed_secagg_decode_mean(&e, 2, zero, 2, mean, NULL) == FED_ERANGE);
    TEST_PASS("test_secagg_float");
}
