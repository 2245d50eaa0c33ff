/* The Winograd convolution's 36 small GEMMs per pass (conv_winograd.c), for the fast
 * kernels. BLAS packs both operands and, for beta = 0, first clears C on every call;
 * with K = 32 or 64 and a few hundred tiles that overhead is a third of the GEMM time,
 * and the operands already sit in cache in a usable layout. These kernels read them
 * in place, with simd.h's vectors. Contracts in nn_internal.h. */
#include <string.h>
#include "nn_internal.h"
#include "simd.h"

enum { MR = 8 };   /* rows of C per block: 8 x 2 vectors = 16 accumulators */

/* C[m][t0 .. t0 + 32) for m in [m0, m0 + mr), from a 32-column panel of B whose rows
 * are bp + k * bld, written or (accumulate) added to. Constant mr keeps the
 * accumulators in registers. */
static inline __attribute__((always_inline)) void block_ab(const float *a, size_t ars, size_t acs, int K,
                                                           const float *bp, size_t bld, float *cp, size_t cld,
                                                           const int mr, const int accumulate) {
    v16 acc[MR][2];
    for (int r = 0; r < mr; r++) {
        if (accumulate) {
            LD16(acc[r][0], cp + (size_t)r * cld);
            LD16(acc[r][1], cp + (size_t)r * cld + 16);
        } else {
            acc[r][0] = acc[r][1] = (v16){0};
        }
    }
    for (int k = 0; k < K; k++) {
        v16 b0, b1;
        LD16(b0, bp + (size_t)k * bld);
        LD16(b1, bp + (size_t)k * bld + 16);
        const float *ak = a + (size_t)k * acs;
        for (int r = 0; r < mr; r++) {
            float s = ak[(size_t)r * ars];
            acc[r][0] += s * b0;
            acc[r][1] += s * b1;
        }
    }
    for (int r = 0; r < mr; r++) {
        ST16(cp + (size_t)r * cld, acc[r][0]);
        ST16(cp + (size_t)r * cld + 16, acc[r][1]);
    }
}

enum { PANEL_K = 256 };   /* rows of the zero-padded copy of a partial panel */

FUSE_MADD void nn_gemm_ab(int M, int N, int K, const float *a, size_t ars, size_t acs, const float *b, size_t ldb,
                          float *c, size_t ldc) {
    float panel[PANEL_K * 32], out[MR * 32];
    for (int t0 = 0; t0 < N; t0 += 32) {
        int w = N - t0 < 32 ? N - t0 : 32;
        const float *bp = b + t0;
        size_t bld = ldb;
        if (w < 32) {
            if (K > PANEL_K) {   /* not a shape of the zoo's layers: plain loops */
                for (int m = 0; m < M; m++)
                    for (int t = t0; t < N; t++) {
                        float s = 0;
                        for (int k = 0; k < K; k++) s += a[(size_t)m * ars + (size_t)k * acs] * b[(size_t)k * ldb + t];
                        c[(size_t)m * ldc + t] = s;
                    }
                continue;
            }
            for (int k = 0; k < K; k++) {
                memcpy(panel + k * 32, b + (size_t)k * ldb + t0, (size_t)w * sizeof(float));
                memset(panel + k * 32 + w, 0, (size_t)(32 - w) * sizeof(float));
            }
            bp = panel;
            bld = 32;
        }
        int m = 0;
        for (; m < M; m += MR) {
            int mr = M - m < MR ? M - m : MR;
            float *cp = w < 32 ? out : c + (size_t)m * ldc + t0;
            size_t cld = w < 32 ? 32 : ldc;
            if (mr == MR) block_ab(a + (size_t)m * ars, ars, acs, K, bp, bld, cp, cld, MR, 0);
            else block_ab(a + (size_t)m * ars, ars, acs, K, bp, bld, cp, cld, mr, 0);
            if (w < 32)
                for (int r = 0; r < mr; r++)
                    memcpy(c + (size_t)(m + r) * ldc + t0, out + r * 32, (size_t)w * sizeof(float));
        }
    }
}

/* C[m][n] += sum_t A[m][t] B[n][t]: B is transposed, 128 t by 32 n at a time, into a
 * panel in L1, and the panel is then a B of nn_gemm_ab's kind with A(m, t) = a[m lda
 * + t], added into C. The sum over t runs in order, a chunk at a time. */
enum { TCH = 128 };

FUSE_MADD void nn_gemm_abt_acc(int M, int N, int T, const float *a, size_t lda, const float *b, size_t ldb, float *c,
                               size_t ldc) {
    float panel[TCH * 32], out[MR * 32];
    for (int n0 = 0; n0 < N; n0 += 32) {
        int w = N - n0 < 32 ? N - n0 : 32;
        for (int t0 = 0; t0 < T; t0 += TCH) {
            int tl = T - t0 < TCH ? T - t0 : TCH;
            for (int t = 0; t < tl; t++) {
                for (int j = 0; j < w; j++) panel[t * 32 + j] = b[(size_t)(n0 + j) * ldb + t0 + t];
                for (int j = w; j < 32; j++) panel[t * 32 + j] = 0.0f;
            }
            for (int m = 0; m < M; m += MR) {
                int mr = M - m < MR ? M - m : MR;
                const float *ap = a + (size_t)m * lda + t0;
                float *cp = c + (size_t)m * ldc + n0;
                if (w < 32) {   /* a partial panel: through a copy of C's columns */
                    for (int r = 0; r < mr; r++) {
                        memcpy(out + r * 32, cp + (size_t)r * ldc, (size_t)w * sizeof(float));
                        memset(out + r * 32 + w, 0, (size_t)(32 - w) * sizeof(float));
                    }
                    block_ab(ap, lda, 1, tl, panel, 32, out, 32, mr == MR ? MR : mr, 1);
                    for (int r = 0; r < mr; r++) memcpy(cp + (size_t)r * ldc, out + r * 32, (size_t)w * sizeof(float));
                } else if (mr == MR) {
                    block_ab(ap, lda, 1, tl, panel, 32, cp, ldc, MR, 1);
                } else {
                    block_ab(ap, lda, 1, tl, panel, 32, cp, ldc, mr, 1);
                }
            }
        }
    }
}
