/* Sparsifiers of the update codecs: top-k by magnitude (Stich et al. 2018, used
 * with error feedback), random-k drawn from a keyed stream (unbiased with the
 * n/k scaling), and the index codings (gap varints or a bitmap).
 * Top-k finds the k-th largest |x| by selection (expected O(n)), not a sort:
 * a sample bounds the threshold from below, the few candidates above it are
 * selected exactly, and the whole vector is used only if the sample missed. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "compress_internal.h"
#include "federate/error.h"
#include "federate/rng.h"

size_t fc_sparse_k(const fc_stage *s, size_t n) {
    if (n == 0) return 0;
    double k = s->frac > 0 ? ceil(s->frac * (double)n) : (double)s->count;
    if (k < 1) k = 1;
    if (k >= (double)n) return n;
    return (size_t)k;
}

/* |x| as an integer with the same order (finite x): exact and NaN-free compares. */
static inline uint32_t mag(float x) {
    uint32_t b;
    memcpy(&b, &x, 4);
    return b & 0x7fffffffu;
}

/* xorshift for pivots: deterministic, and no input is bad for it by construction. */
static inline uint64_t xs(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* The value of rank r (0-based, ascending) of a[0..n): quickselect with random
 * pivots and a three-way partition (runs of equal values, e.g. zeros, are cheap). */
static uint32_t select_rank(uint32_t *a, size_t n, size_t r) {
    size_t lo = 0, hi = n;
    uint64_t st = 0x9E3779B97F4A7C15ull ^ n;
    while (hi - lo > 1) {
        uint32_t p = a[lo + xs(&st) % (hi - lo)];
        size_t lt = lo, i = lo, gt = hi;
        while (i < gt) {
            uint32_t v = a[i];
            if (v < p) {
                a[i++] = a[lt];
                a[lt++] = v;
            } else if (v > p) {
                a[i] = a[--gt];
                a[gt] = v;
            } else {
                i++;
            }
        }
        if (r < lt) hi = lt;
        else if (r >= gt) lo = gt;
        else return p;
    }
    return a[lo];
}

/* T = the k-th largest magnitude. */
static int kth_largest(const float *e, size_t n, size_t k, uint32_t *out) {
    /* Sample 4096 magnitudes; a threshold a bit below the sample's k/n quantile
     * keeps, with overwhelming probability, more than k but few candidates. */
    if (n >= 65536 && k <= n / 8) {
        size_t ns = 4096;
        uint32_t *s = malloc(ns * sizeof *s);
        if (!s) return fed_error(FED_ENOMEM, "codec: out of memory for top-k");
        uint64_t st = 0xD1B54A32D192ED03ull ^ n;
        for (size_t i = 0; i < ns; i++) s[i] = mag(e[xs(&st) % n]);
        double q = (double)k / (double)n;
        /* expected sample count above the true threshold: ns q; go 4 sd + 8 further */
        double want = ns * q + 4 * sqrt(ns * q) + 8;
        size_t rank = want >= (double)ns ? 0 : ns - (size_t)want;
        uint32_t lb = select_rank(s, ns, rank);
        free(s);
        size_t c = 0;
        for (size_t i = 0; i < n; i++) c += mag(e[i]) >= lb;
        if (c >= k && c <= n / 4) {
            uint32_t *a = malloc(c * sizeof *a);
            if (!a) return fed_error(FED_ENOMEM, "codec: out of memory for top-k");
            size_t o = 0;
            for (size_t i = 0; i < n; i++) {
                uint32_t m = mag(e[i]);
                if (m >= lb) a[o++] = m;
            }
            *out = select_rank(a, c, c - k);
            free(a);
            return 0;
        }
    }
    uint32_t *a = malloc(n * sizeof *a);
    if (!a) return fed_error(FED_ENOMEM, "codec: out of memory for top-k");
    for (size_t i = 0; i < n; i++) a[i] = mag(e[i]);
    *out = select_rank(a, n, n - k);
    free(a);
    return 0;
}

int fc_topk_select(const float *e, size_t n, size_t k, size_t *idx) {
    if (k == 0) return 0;
    uint32_t t = 0;
    int rc = kth_largest(e, n, k, &t);
    if (rc) return rc;
    size_t above = 0;
    for (size_t i = 0; i < n; i++) above += mag(e[i]) > t;
    size_t ties = k - above, o = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t m = mag(e[i]);
        if (m > t || (m == t && ties > 0)) {
            if (m == t) ties--;
            idx[o++] = i;
        }
    }
    return o == k ? 0 : fed_error(FED_EINTERNAL, "codec: top-k selected %zu of %zu", o, k);
}

static uint64_t below64(fed_rng *r, uint64_t n) {
    if (n <= UINT32_MAX) return fed_rng_below(r, (uint32_t)n);
    uint64_t lim = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = fed_rng_u64(r);
    while (x >= lim);
    return x % n;
}

int fc_randk_draw(uint64_t key, size_t n, size_t k, size_t *idx) {
    if (k == 0) return 0;
    size_t words = (n + 63) / 64;
    uint64_t *bm = calloc(words, sizeof *bm);
    if (!bm) return fed_error(FED_ENOMEM, "codec: out of memory for random-k");
    fed_rng r;
    fed_rng_init(&r, key, 0, 0, FED_RNG_QUANT);
    /* Floyd's sampling: k draws give a uniform k-subset. */
    for (size_t j = n - k; j < n; j++) {
        size_t t = (size_t)below64(&r, (uint64_t)j + 1);
        if ((bm[t >> 6] >> (t & 63)) & 1) t = j;
        bm[t >> 6] |= 1ull << (t & 63);
    }
    size_t o = 0;
    for (size_t w = 0; w < words; w++)
        for (uint64_t b = bm[w]; b; b &= b - 1) idx[o++] = w * 64 + (size_t)__builtin_ctzll(b);
    free(bm);
    return o == k ? 0 : fed_error(FED_EINTERNAL, "codec: random-k drew %zu of %zu", o, k);
}

static size_t varint_len(uint64_t v) {
    size_t l = 1;
    while (v >= 0x80) {
        v >>= 7;
        l++;
    }
    return l;
}

size_t fc_idx_varint_size(const size_t *idx, size_t k) {
    size_t s = 0;
    for (size_t i = 0; i < k; i++) s += varint_len(i ? idx[i] - idx[i - 1] - 1 : idx[0]);
    return s;
}

void fc_idx_varint_write(const size_t *idx, size_t k, uint8_t *p) {
    for (size_t i = 0; i < k; i++) {
        uint64_t g = i ? idx[i] - idx[i - 1] - 1 : idx[0];
        while (g >= 0x80) {
            *p++ = (uint8_t)(g | 0x80);
            g >>= 7;
        }
        *p++ = (uint8_t)g;
    }
}

void fc_idx_bitmap_write(const size_t *idx, size_t k, size_t n, uint8_t *p) {
    memset(p, 0, (n + 7) / 8);
    for (size_t i = 0; i < k; i++) p[idx[i] / 8] |= (uint8_t)(1u << (idx[i] % 8));
}

int fc_idx_read(int coding, const uint8_t *p, size_t plen, size_t n, size_t k, size_t *idx) {
    if (coding == FC_IDX_VARINT) {
        size_t pos = 0;
        for (size_t i = 0; i < k; i++) {
            uint64_t g = 0;
            int shift = 0;
            for (;;) {
                if (pos >= plen) return fed_error(FED_EFORMAT, "codec: index %zu of %zu runs past the index bytes", i, k);
                uint8_t b = p[pos++];
                if (shift == 63 && (b & 0x7e)) return fed_error(FED_EFORMAT, "codec: index gap %zu overflows 64 bits", i);
                g |= (uint64_t)(b & 0x7f) << shift;
                if (!(b & 0x80)) break;
                shift += 7;
                if (shift > 63) return fed_error(FED_EFORMAT, "codec: index gap %zu overflows 64 bits", i);
            }
            size_t start = i ? idx[i - 1] + 1 : 0;
            if (g >= (uint64_t)(n - start))
                return fed_error(FED_EFORMAT, "codec: index %zu is beyond the vector length %zu", i, n);
            idx[i] = start + (size_t)g;
        }
        if (pos != plen) return fed_error(FED_EFORMAT, "codec: %zu bytes left after %zu indices", plen - pos, k);
        return 0;
    }
    if (coding == FC_IDX_BITMAP) {
        if (plen != (n + 7) / 8)
            return fed_error(FED_EFORMAT, "codec: index bitmap is %zu bytes, expected %zu for %zu values", plen,
                             (n + 7) / 8, n);
        if (n % 8 && (p[n / 8] >> (n % 8))) return fed_error(FED_EFORMAT, "codec: index bitmap has bits beyond the vector");
        size_t o = 0;
        for (size_t i = 0; i < plen; i++)
            for (unsigned b = p[i]; b; b &= b - 1) {
                if (o == k) return fed_error(FED_EFORMAT, "codec: index bitmap has more than %zu bits set", k);
                idx[o++] = i * 8 + (size_t)__builtin_ctz(b);
            }
        if (o != k) return fed_error(FED_EFORMAT, "codec: index bitmap has %zu bits set, expected %zu", o, k);
        return 0;
    }
    return fed_error(FED_EFORMAT, "codec: unknown index coding %d (allowed 0 varint, 1 bitmap)", coding);
}
