/* The fast kernels' vectors: 16 floats (one AVX-512 register, or several narrower
 * ones through GCC's generic vectors, so the code builds for any target), loaded and
 * stored through memcpy (no alignment assumed). FUSE_MADD lets the compiler fuse
 * multiply-adds inside one function only; the rest of the build keeps -std=c17's
 * separate rounding. Macros, not functions: a vector passed or returned by value
 * changes the ABI where the build does not target AVX-512, which compilers warn about. */
#ifndef FEDERATE_NN_SIMD_H
#define FEDERATE_NN_SIMD_H
#include <string.h>

#if defined(__clang__)
#define FUSE_MADD /* clang has no optimize attribute; its default contracts within a statement */
#else
#define FUSE_MADD __attribute__((optimize("fp-contract=fast")))
#endif
typedef float v16 __attribute__((vector_size(64), aligned(4)));
#define LD16(v, p) memcpy(&(v), (p), sizeof(v))
#define ST16(p, v) memcpy((p), &(v), sizeof(v))
/* s += the 16 lanes of v, pairwise (8 + 4 + 2 + 1) */
#define HSUM16(s, v)                                        \
    do {                                                    \
        float h_[16];                                       \
        ST16(h_, v);                                        \
        for (int w_ = 8; w_ >= 1; w_ /= 2)                  \
            for (int q_ = 0; q_ < w_; q_++) h_[q_] += h_[q_ + w_]; \
        (s) += h_[0];                                       \
    } while (0)

#endif
