/* Flat-vector kernels against naive double-precision loops, on lengths that hit
 * every tail of the unrolled and blocked loops (0, 1, 7, 1000003), plus the
 * clipping, finiteness and bitwise-determinism contracts the FL stages rely on. */
#include "check.h"
#include "federate/error.h"
#include "federate/rng.h"
#include "federate/vec.h"
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

static float *rand_vec(size_t n, uint64_t tag) {
    float *x = malloc((n ? n : 1) * sizeof *x);
    CHECK(x);
    fed_rng r;
    fed_rng_init(&r, 1234, tag, 0, FED_RNG_USER);
    fed_rng_fill_uniform(&r, x, n, -1.0f, 1.0f);
    return x;
}

static double nrm(const float *x, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return sqrt(s);
}

/* Each element of an elementwise kernel: float result vs double reference. */
static void check_elementwise(size_t n) {
    float *x = rand_vec(n, 1), *y = rand_vec(n, 2), *z = rand_vec(n, 3);
    float *ref = malloc((n ? n : 1) * sizeof *ref);
    CHECK(ref);

    fed_vec_copy(z, x, n);
    for (size_t i = 0; i < n; i++) CHECK(z[i] == x[i]);

    fed_vec_zero(z, n);
    for (size_t i = 0; i < n; i++) CHECK(z[i] == 0.0f);

    fed_vec_copy(z, x, n);
    fed_vec_scale(z, -2.5f, n);
    for (size_t i = 0; i < n; i++) CHECK_CLOSE(z[i], -2.5 * x[i], 1e-6, 1e-7);

    memcpy(ref, y, n * sizeof *y);
    fed_vec_copy(z, y, n);
    fed_vec_axpy(z, 0.75f, x, n);
    for (size_t i = 0; i < n; i++) CHECK_CLOSE(z[i], (double)ref[i] + 0.75 * x[i], 1e-6, 1e-6);

    fed_vec_copy(z, y, n);
    fed_vec_axpby(z, 0.5f, x, -1.25f, n);
    for (size_t i = 0; i < n; i++) CHECK_CLOSE(z[i], 0.5 * x[i] - 1.25 * y[i], 1e-6, 1e-6);

    fed_vec_sub(z, x, y, n);
    for (size_t i = 0; i < n; i++) CHECK_CLOSE(z[i], (double)x[i] - y[i], 1e-6, 1e-7);
    fed_vec_add(z, x, y, n);
    for (size_t i = 0; i < n; i++) CHECK_CLOSE(z[i], (double)x[i] + y[i], 1e-6, 1e-7);

    free(x); free(y); free(z); free(ref);
}

static void check_reductions(size_t n) {
    float *x = rand_vec(n, 4), *y = rand_vec(n, 5);
    double d = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        d += (double)x[i] * y[i];
        s += x[i];
    }
    /* Both sides sum exact float products in double: only double rounding differs. */
    CHECK_CLOSE(fed_vec_dot(x, y, n), d, 1e-12, 1e-9);
    CHECK_CLOSE(fed_vec_sum(x, n), s, 1e-12, 1e-9);
    CHECK_CLOSE(fed_vec_norm2(x, n), nrm(x, n), 1e-12, 1e-12);
    CHECK_CLOSE(fed_vec_dot(x, x, n), nrm(x, n) * nrm(x, n), 1e-12, 1e-12);
    if (n == 0) {
        CHECK(fed_vec_dot(x, y, 0) == 0.0 && fed_vec_sum(x, 0) == 0.0 && fed_vec_norm2(x, 0) == 0.0);
    }
    free(x); free(y);
}

/* out = sum_i w[i] xs[i] against a double reference, for k hitting every tail of
 * the eight-way unroll (0, 1, 3, 8, 13) and n across block boundaries. */
static void check_weighted_sum(size_t k, size_t n) {
    float **xs = malloc((k ? k : 1) * sizeof *xs);
    double *w = malloc((k ? k : 1) * sizeof *w);
    CHECK(xs && w);
    for (size_t i = 0; i < k; i++) {
        xs[i] = rand_vec(n, 100 + i);
        w[i] = (double)(i + 1) / (double)(k * (k + 1) / 2) * (i % 2 ? -1.0 : 1.0);
    }
    float *out = rand_vec(n, 99); /* garbage in out must be overwritten */
    float *out2 = rand_vec(n, 98);
    fed_vec_weighted_sum(out, (const float *const *)xs, w, k, n);
    for (size_t j = 0; j < n; j++) {
        double ref = 0, mag = 0;
        for (size_t i = 0; i < k; i++) {
            ref += w[i] * xs[i][j];
            mag += fabs(w[i] * xs[i][j]);
        }
        /* Float accumulation: error bounded by ~k ulps of the sum of magnitudes. */
        CHECK_NEAR(out[j], ref, (double)(k + 2) * 1.2e-7 * mag + 1e-30);
    }
    /* Same inputs, same bits: the order of additions is fixed. */
    fed_vec_weighted_sum(out2, (const float *const *)xs, w, k, n);
    CHECK(n == 0 || memcmp(out, out2, n * sizeof *out) == 0);
    /* Equals the naive float loop in index order, bit for bit (written as the
     * same expression as the kernel so FP contraction treats both alike). */
    for (size_t j = 0; j < n; j++) {
        float a = 0.0f;
        for (size_t i = 0; i < k; i++) a += (float)w[i] * xs[i][j];
        CHECK(a == out[j]);
    }
    for (size_t i = 0; i < k; i++) free(xs[i]);
    free(xs); free(w); free(out); free(out2);
}

static void check_clip(void) {
    size_t n = 1000003;
    float *x = rand_vec(n, 7), *orig = rand_vec(n, 7);
    double before = nrm(x, n);
    CHECK(before > 10.0);

    /* Above the bound: returns the old norm, ends at (not above) the bound, keeps direction. */
    double r = fed_vec_clip_norm(x, n, 3.0);
    CHECK_CLOSE(r, before, 1e-12, 0);
    double after = nrm(x, n);
    CHECK_CLOSE(after, 3.0, 1e-6, 0);
    CHECK(after <= 3.0 * (1 + 1e-6));
    for (size_t i = 0; i < n; i += 9973) CHECK_CLOSE(x[i], orig[i] * (3.0 / before), 1e-6, 1e-12);

    /* At or below the bound: untouched, bit for bit. */
    memcpy(x, orig, n * sizeof *x);
    r = fed_vec_clip_norm(x, n, before * 2);
    CHECK_CLOSE(r, before, 1e-12, 0);
    CHECK(memcmp(x, orig, n * sizeof *x) == 0);
    r = fed_vec_clip_norm(x, n, INFINITY);
    CHECK(memcmp(x, orig, n * sizeof *x) == 0);

    /* Bound 0 (or a nonsense negative bound) zeroes; it never flips the sign. */
    r = fed_vec_clip_norm(x, n, 0.0);
    CHECK_CLOSE(r, before, 1e-12, 0);
    CHECK(nrm(x, n) == 0.0);
    memcpy(x, orig, n * sizeof *x);
    fed_vec_clip_norm(x, n, -1.0);
    for (size_t i = 0; i < n; i++) CHECK(x[i] == 0.0f);

    /* Zero vector and empty vector: norm 0, nothing to do. */
    fed_vec_zero(x, 5);
    CHECK(fed_vec_clip_norm(x, 5, 1.0) == 0.0);
    CHECK(fed_vec_clip_norm(x, 0, 1.0) == 0.0);

    /* Tiny exact case: (3,4) has norm 5; clip to 1 gives (0.6, 0.8). */
    float v[2] = {3.0f, 4.0f};
    CHECK(fed_vec_clip_norm(v, 2, 1.0) == 5.0);
    CHECK_NEAR(v[0], 0.6, 1e-7);
    CHECK_NEAR(v[1], 0.8, 1e-7);
    CHECK(nrm(v, 2) <= 1.0 + 1e-7);
    free(x); free(orig);
}

static void check_finite(void) {
    size_t n = 1000003;
    float *x = rand_vec(n, 8);
    CHECK(fed_vec_all_finite(x, n));
    CHECK(fed_vec_all_finite(x, 0));
    float bad[] = {NAN, -NAN, INFINITY, -INFINITY};
    size_t where[] = {0, 1, 1023, 1024, 4097, n - 1};
    for (size_t b = 0; b < sizeof bad / sizeof *bad; b++)
        for (size_t k = 0; k < sizeof where / sizeof *where; k++) {
            float keep = x[where[k]];
            x[where[k]] = bad[b];
            CHECK(!fed_vec_all_finite(x, n));
            CHECK(fed_vec_all_finite(x, where[k])); /* stops before the bad one */
            x[where[k]] = keep;
        }
    /* Extremes that are still finite. */
    float edge[] = {FLT_MAX, -FLT_MAX, FLT_MIN, 1e-45f, -0.0f, 0.0f};
    CHECK(fed_vec_all_finite(edge, sizeof edge / sizeof *edge));
    /* A NaN with payload bits and a NaN in the tail after the last full block. */
    uint32_t qnan = 0x7fc12345u;
    memcpy(&x[n - 3], &qnan, sizeof qnan);
    CHECK(!fed_vec_all_finite(x, n));
    free(x);
}

/* Reductions give the same bits twice, and the result does not depend on where
 * the data sits (alignment) beyond which elements it holds. */
static void check_determinism(void) {
    size_t n = 1000003;
    float *x = rand_vec(n + 1, 9), *y = rand_vec(n, 10);
    double a = fed_vec_dot(x, y, n), b = fed_vec_dot(x, y, n);
    CHECK(memcmp(&a, &b, sizeof a) == 0);
    a = fed_vec_norm2(x, n); b = fed_vec_norm2(x, n);
    CHECK(memcmp(&a, &b, sizeof a) == 0);
    a = fed_vec_sum(x, n); b = fed_vec_sum(x, n);
    CHECK(memcmp(&a, &b, sizeof a) == 0);
    float *shifted = malloc((n + 1) * sizeof *shifted);
    CHECK(shifted);
    memcpy(shifted + 1, x, n * sizeof *x); /* misaligned copy of the same data */
    a = fed_vec_sum(x, n); b = fed_vec_sum(shifted + 1, n);
    CHECK(memcmp(&a, &b, sizeof a) == 0);
    free(x); free(y); free(shifted);
}

int main(void) {
    size_t lens[] = {0, 1, 7, 8, 9, 4095, 4096, 4097, 1000003};
    for (size_t i = 0; i < sizeof lens / sizeof *lens; i++) {
        check_elementwise(lens[i]);
        check_reductions(lens[i]);
    }
    size_t ks[] = {0, 1, 3, 8, 13};
    size_t ns[] = {0, 1, 7, 4097, 10007};
    for (size_t a = 0; a < sizeof ks / sizeof *ks; a++)
        for (size_t b = 0; b < sizeof ns / sizeof *ns; b++) check_weighted_sum(ks[a], ns[b]);
    check_weighted_sum(9, 1000003);
    check_clip();
    check_finite();
    check_determinism();
    TEST_PASS("test_vec");
}
