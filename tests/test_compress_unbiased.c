/* Update codecs: stochastic rounding (q8/q4/q2, minmax and absmax, per block),
 * QSGD and random-k are unbiased — the mean of many decodes (rounds 0..R-1 of
 * fixed seeds, so the test is deterministic) is within 5 standard errors of the
 * input, while round-to-nearest would miss by a third of a step. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "federate/compress.h"
#include "federate/error.h"
#include "federate/rng.h"

#define N 64
#define R 4000

/* sd(i): bound on the standard deviation of one decode of coordinate i. */
static void check_mean(const char *spec, const float *x, const double *sd) {
    fed_codec *c;
    CHECK_OK(fed_codec_new(&c, spec));
    double mean[N] = {0};
    float y[N];
    for (int r = 0; r < R; r++) {
        fed_codec_ctx ctx = {42, (uint64_t)r, 3};
        uint8_t *buf;
        size_t len;
        CHECK_OK(fed_codec_encode(c, &ctx, x, N, NULL, &buf, &len));
        CHECK_OK(fed_codec_decode(c, buf, len, y, N));
        free(buf);
        for (int i = 0; i < N; i++) mean[i] += y[i];
    }
    for (int i = 0; i < N; i++) {
        mean[i] /= R;
        double tol = 5 * sd[i] / sqrt((double)R) + 1e-6 * fabs(x[i]) + 1e-9;
        if (!(fabs(mean[i] - x[i]) <= tol)) {
            fprintf(stderr, "%s: coordinate %d: mean %.9g vs %.9g (tol %.3g)\n", spec, i, mean[i], (double)x[i], tol);
            exit(1);
        }
    }
    fed_codec_free(c);
}

/* Values a third of the way between grid points of a quantizer on [-1, 1]. */
static void make_grid_values(float *x, int levels) {
    double step = 2.0 / levels;
    x[0] = -1.0f;
    x[1] = 1.0f;
    for (int i = 2; i < N; i++) x[i] = (float)(-1.0 + step * ((i * 7) % levels) + step * (i % 3 == 0 ? 0.33 : 0.71));
    for (int i = 2; i < N; i++)
        if (x[i] > 1.0f) x[i] = 0.999f;
}

static void uniform_quantizers(void) {
    float x[N];
    double sd[N];
    static const struct { const char *spec; int bits, absmax; } q[] = {
        {"q8", 8, 0}, {"q4", 4, 0}, {"q2", 2, 0}, {"q4:absmax", 4, 1}, {"q2:absmax", 2, 1}, {"q2:block=8", 2, 0}};
    for (size_t s = 0; s < sizeof q / sizeof *q; s++) {
        int levels = q[s].absmax ? 2 * ((1 << (q[s].bits - 1)) - 1) : (1 << q[s].bits) - 1;
        make_grid_values(x, levels);
        if (strstr(q[s].spec, "block=8"))
            for (int b = 0; b < N; b += 8) { /* every block spans [-1, 1] */
                x[b] = -1.0f;
                x[b + 1] = 1.0f;
            }
        for (int i = 0; i < N; i++) sd[i] = 0.5 * 2.0 / levels; /* Bernoulli: sd <= step / 2 */
        check_mean(q[s].spec, x, sd);
    }
}

static void qsgd(void) {
    float x[N];
    double sd[N];
    fed_rng r;
    fed_rng_init(&r, 5, 0, 0, FED_RNG_USER);
    fed_rng_fill_normal(&r, x, N, 0, 1);
    static const struct { const char *spec; int s, bucket; } q[] = {
        {"qsgd:levels=1:bucket=0", 1, N}, {"qsgd:levels=4:bucket=16", 4, 16}, {"qsgd:levels=16:bucket=0", 16, N}};
    for (size_t k = 0; k < sizeof q / sizeof *q; k++) {
        for (int b = 0; b < N; b += q[k].bucket) {
            double nn = 0;
            for (int i = b; i < b + q[k].bucket; i++) nn += (double)x[i] * x[i];
            for (int i = b; i < b + q[k].bucket; i++) sd[i] = 0.5 * sqrt(nn) / q[k].s;
        }
        check_mean(q[k].spec, x, sd);
    }
}

static void randk(void) {
    float x[N];
    double sd[N];
    fed_rng r;
    fed_rng_init(&r, 6, 0, 0, FED_RNG_USER);
    fed_rng_fill_normal(&r, x, N, 0, 1);
    /* k = 16 of 64: y_i = 4 x_i with probability 1/4, so sd = |x_i| sqrt(3) */
    for (int i = 0; i < N; i++) sd[i] = fabs(x[i]) * sqrt(3.0);
    check_mean("randk:k=16", x, sd);
    check_mean("randk:0.25,q8", x, sd); /* q8 adds a little variance; the k/n term dominates */
}

/* Within one long vector: the per-index draws are uniform, so the average
 * decode of equal inputs is the input. */
static void across_indices(void) {
    size_t n = 1 << 18;
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    const char *specs[] = {"q8", "q2", "q4:block=256", "q2:absmax"};
    for (size_t s = 0; s < sizeof specs / sizeof *specs; s++) {
        /* grid [-1, 1]; interior values 0.3 of the way between two grid points */
        int bits = specs[s][1] - '0';
        int absmax = strstr(specs[s], "absmax") != NULL;
        int levels = absmax ? 2 * ((1 << (bits - 1)) - 1) : (1 << bits) - 1;
        double step = 2.0 / levels;
        float v = (float)(-1.0 + step * (levels / 2) + 0.3 * step);
        for (size_t i = 0; i < n; i++) x[i] = v;
        for (size_t b = 0; b < n; b += 256) {
            x[b] = -1.0f;
            x[b + 1] = 1.0f;
        }
        fed_codec *c;
        CHECK_OK(fed_codec_new(&c, specs[s]));
        fed_codec_ctx ctx = {99, 1, 2};
        uint8_t *buf;
        size_t len;
        CHECK_OK(fed_codec_encode(c, &ctx, x, n, NULL, &buf, &len));
        CHECK_OK(fed_codec_decode(c, buf, len, y, n));
        double sum = 0;
        size_t cnt = 0;
        for (size_t i = 0; i < n; i++)
            if (i % 256 > 1) {
                sum += y[i];
                cnt++;
            }
        double tol = 5 * 0.5 * step / sqrt((double)cnt);
        CHECK_NEAR(sum / cnt, v, tol);
        free(buf);
        fed_codec_free(c);
    }
    free(x);
    free(y);
}

int main(void) {
    uniform_quantizers();
    qsgd();
    randk();
    across_indices();
    TEST_PASS("compress_unbiased");
}
