/* The Winograd passes' GEMMs (src/nn/wino_gemm.c) against double-precision sums:
 * full and partial 32-column panels, row counts that are and are not multiples of the
 * 8-row block, A read either way round (ars, acs), strided rows as conv_winograd.c
 * lays them out, a K beyond the zero-padded panel, and the accumulating A B^T with
 * partial panels in both dimensions. C outside the M x N window is never written. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "federate/rng.h"
#include "nn/nn_internal.h"

static fed_rng rng;

static float *randv(size_t n) {
    float *p = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = (float)(2.0 * fed_rng_uniform(&rng) - 1.0);
    return p;
}

/* C = A B with A(m, k) = a[m ars + k acs] */
static void check_ab(int M, int N, int K, int transposed) {
    size_t ars = transposed ? 1 : (size_t)K, acs = transposed ? (size_t)M : 1;
    size_t ldb = (size_t)N + 7, ldc = (size_t)N + 5;   /* rows apart, as the 36 interleaved GEMMs */
    float *a = randv((size_t)M * K), *b = randv((size_t)K * ldb), *c = randv((size_t)M * ldc);
    float *before = malloc((size_t)M * ldc * sizeof(float));
    memcpy(before, c, (size_t)M * ldc * sizeof(float));
    nn_gemm_ab(M, N, K, a, ars, acs, b, ldb, c, ldc);
    double worst = 0;
    for (int m = 0; m < M; m++) {
        for (int t = 0; t < N; t++) {
            double s = 0, mag = 0;
            for (int k = 0; k < K; k++) {
                double p = (double)a[m * ars + k * acs] * b[(size_t)k * ldb + t];
                s += p;
                mag += fabs(p);
            }
            worst = fmax(worst, fabs(s - c[(size_t)m * ldc + t]) / (mag + 1e-30));
        }
        for (size_t t = (size_t)N; t < ldc; t++) CHECK(c[m * ldc + t] == before[m * ldc + t]);
    }
    printf("ab  M %3d N %3d K %3d %s: worst error %.2g of the sum of |terms|\n", M, N, K,
           transposed ? "A^T" : "A  ", worst);
    CHECK(worst < 1e-5);
    free(a); free(b); free(c); free(before);
}

/* C += A B^T */
static void check_abt(int M, int N, int T) {
    size_t lda = (size_t)T + 3, ldb = (size_t)T + 9, ldc = (size_t)N + 2;
    float *a = randv((size_t)M * lda), *b = randv((size_t)N * ldb), *c = randv((size_t)M * ldc);
    float *c0 = malloc((size_t)M * ldc * sizeof(float));
    memcpy(c0, c, (size_t)M * ldc * sizeof(float));
    nn_gemm_abt_acc(M, N, T, a, lda, b, ldb, c, ldc);
    double worst = 0;
    for (int m = 0; m < M; m++) {
        for (int n = 0; n < N; n++) {
            double s = c0[(size_t)m * ldc + n], mag = fabs(s);
            for (int t = 0; t < T; t++) {
                double p = (double)a[(size_t)m * lda + t] * b[(size_t)n * ldb + t];
                s += p;
                mag += fabs(p);
            }
            worst = fmax(worst, fabs(s - c[(size_t)m * ldc + n]) / (mag + 1e-30));
        }
        for (size_t n = (size_t)N; n < ldc; n++) CHECK(c[m * ldc + n] == c0[m * ldc + n]);
    }
    printf("abt M %3d N %3d T %3d: worst error %.2g of the sum of |terms|\n", M, N, T, worst);
    CHECK(worst < 1e-5);
    free(a); free(b); free(c); free(c0);
}

int main(void) {
    fed_rng_init(&rng, 5, 0, 0, FED_RNG_USER);
    /* the cnn's conv2 (64 out, 32 in, 490 tiles a chunk of 10 examples) both ways */
    check_ab(64, 490, 32, 0);
    check_ab(32, 490, 64, 1);
    check_abt(64, 32, 490);
    /* partial blocks and panels everywhere */
    check_ab(13, 77, 9, 0);
    check_ab(5, 31, 3, 1);
    check_ab(8, 32, 1, 0);
    check_ab(1, 1, 1, 0);
    check_ab(9, 45, 300, 0);   /* a partial panel deeper than the zero-padded copy */
    check_abt(13, 45, 300);
    check_abt(3, 5, 7);
    check_abt(8, 33, 16);
    check_abt(64, 64, 129);
    TEST_PASS("nn_wino_gemm");
}
