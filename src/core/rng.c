/* Philox4x32-10 counter-based generator (Salmon, Moraes, Dror, Shaw, SC'11).
 * Key = hash of the run seed; the counter's high words carry (round, client,
 * purpose) and its low word counts blocks, so each address is its own stream. */
#include "federate/rng.h"
#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

static inline void philox_round(uint32_t c[4], const uint32_t k[2]) {
    uint64_t p0 = (uint64_t)PHILOX_M0 * c[0];
    uint64_t p1 = (uint64_t)PHILOX_M1 * c[2];
    uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
    uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
    uint32_t n0 = hi1 ^ c[1] ^ k[0];
    uint32_t n2 = hi0 ^ c[3] ^ k[1];
    c[0] = n0; c[1] = lo1; c[2] = n2; c[3] = lo0;
}

static void philox10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t c[4] = {ctr[0], ctr[1], ctr[2], ctr[3]};
    uint32_t k[2] = {key[0], key[1]};
    for (int i = 0; i < 10; i++) {
        philox_round(c, k);
        k[0] += PHILOX_W0;
        k[1] += PHILOX_W1;
    }
    out[0] = c[0]; out[1] = c[1]; out[2] = c[2]; out[3] = c[3];
}

/* splitmix64: spreads structured inputs (0, 1, 2, ...) over the key space. */
static uint64_t mix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void fed_rng_init(fed_rng *r, uint64_t seed, uint64_t round, uint64_t client, uint32_t purpose) {
    uint64_t k = mix64(seed ^ mix64(purpose));
    uint64_t a = mix64(k ^ round);
    r->key[0] = (uint32_t)k;
    r->key[1] = (uint32_t)(k >> 32);
    r->ctr[0] = 0;
    r->ctr[1] = (uint32_t)(a ^ (a >> 32));
    r->ctr[2] = (uint32_t)client;
    r->ctr[3] = (uint32_t)(client >> 32) ^ (uint32_t)mix64(round + 0x51ed2701u);
    r->pos = 4;
    r->has_spare = 0;
    r->spare = 0.0f;
}

uint32_t fed_rng_u32(fed_rng *r) {
    if (r->pos >= 4) {
        philox10(r->ctr, r->key, r->buf);
        if (++r->ctr[0] == 0) ++r->ctr[1];
        r->pos = 0;
    }
    return r->buf[r->pos++];
}

/* Eight consecutive counters at once (independent multiply chains), the same
 * words as eight calls of philox10 on ctr, ctr+1, ..., ctr+7. GCC 12 does not
 * vectorize it: measured no faster than word by word here, kept because the
 * bulk interface is what fed_rng_fill_normal wants. */
static void philox10_x8(const uint32_t ctr[4], const uint32_t key[2], uint32_t *restrict out) {
    uint32_t c0[8], c1[8], c2[8], c3[8];
    uint64_t base = ((uint64_t)ctr[1] << 32) | ctr[0];
    for (int j = 0; j < 8; j++) {
        uint64_t v = base + (uint64_t)j;
        c0[j] = (uint32_t)v, c1[j] = (uint32_t)(v >> 32), c2[j] = ctr[2], c3[j] = ctr[3];
    }
    uint32_t k0 = key[0], k1 = key[1];
    for (int i = 0; i < 10; i++) {
        for (int j = 0; j < 8; j++) {
            uint64_t p0 = (uint64_t)PHILOX_M0 * c0[j];
            uint64_t p1 = (uint64_t)PHILOX_M1 * c2[j];
            uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1[j] ^ k0;
            uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3[j] ^ k1;
            c0[j] = n0, c1[j] = (uint32_t)p1, c2[j] = n2, c3[j] = (uint32_t)p0;
        }
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    for (int j = 0; j < 8; j++) {
        out[4 * j] = c0[j], out[4 * j + 1] = c1[j], out[4 * j + 2] = c2[j], out[4 * j + 3] = c3[j];
    }
}

void fed_rng_fill_u32(fed_rng *r, uint32_t *out, size_t n) {
    size_t i = 0;
    while (i < n && r->pos < 4) out[i++] = r->buf[r->pos++];
    for (; i + 32 <= n; i += 32) {
        philox10_x8(r->ctr, r->key, out + i);
        uint64_t v = (((uint64_t)r->ctr[1] << 32) | r->ctr[0]) + 8;
        r->ctr[0] = (uint32_t)v, r->ctr[1] = (uint32_t)(v >> 32);
    }
    for (; i < n; i++) out[i] = fed_rng_u32(r);
}

uint64_t fed_rng_u64(fed_rng *r) {
    uint64_t hi = fed_rng_u32(r);
    return (hi << 32) | fed_rng_u32(r);
}

double fed_rng_uniform(fed_rng *r) { return (double)(fed_rng_u64(r) >> 11) * 0x1.0p-53; }

float fed_rng_uniformf(fed_rng *r) { return (float)(fed_rng_u32(r) >> 8) * 0x1.0p-24f; }

uint32_t fed_rng_below(fed_rng *r, uint32_t n) {
    /* Lemire's multiply-shift with rejection: unbiased. */
    uint64_t m = (uint64_t)fed_rng_u32(r) * n;
    uint32_t low = (uint32_t)m;
    if (low < n) {
        uint32_t t = (uint32_t)(-n) % n;
        while (low < t) {
            m = (uint64_t)fed_rng_u32(r) * n;
            low = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}

double fed_rng_normal_d(fed_rng *r) {
    /* Box-Muller on (0,1]; one value per call keeps streams simple to reason about. */
    double u1 = 1.0 - fed_rng_uniform(r);
    double u2 = fed_rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

float fed_rng_normal(fed_rng *r) {
    if (r->has_spare) {
        r->has_spare = 0;
        return r->spare;
    }
    double u1 = 1.0 - fed_rng_uniform(r);
    double u2 = fed_rng_uniform(r);
    double rad = sqrt(-2.0 * log(u1));
    r->spare = (float)(rad * sin(6.283185307179586 * u2));
    r->has_spare = 1;
    return (float)(rad * cos(6.283185307179586 * u2));
}

double fed_rng_gamma(fed_rng *r, double shape) {
    /* A NaN shape never satisfies the acceptance test (infinite loop) and a
     * negative one recurses until the stack overflows: answer NaN instead.
     * Gamma(0) is the point mass at 0. */
    if (!(shape > 0.0)) return shape == 0.0 ? 0.0 : NAN;
    if (shape < 1.0) {
        /* Boost: Gamma(a) = Gamma(a+1) * U^(1/a). */
        double u = 1.0 - fed_rng_uniform(r);
        return fed_rng_gamma(r, shape + 1.0) * pow(u, 1.0 / shape);
    }
    double d = shape - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x, v;
        do {
            x = fed_rng_normal_d(r);
            v = 1.0 + c * x;
        } while (v <= 0.0);
        v = v * v * v;
        double u = 1.0 - fed_rng_uniform(r);
        if (u < 1.0 - 0.0331 * x * x * x * x) return d * v;
        if (log(u) < 0.5 * x * x + d * (1.0 - v + log(v))) return d * v;
    }
}

void fed_rng_shuffle(fed_rng *r, uint32_t *idx, size_t n) {
    for (size_t i = n; i > 1; i--) {
        uint32_t j = fed_rng_below(r, (uint32_t)i);
        uint32_t t = idx[i - 1];
        idx[i - 1] = idx[j];
        idx[j] = t;
    }
}

/* Box-Muller in single precision on 24-bit uniforms, a pair per two words:
 * about 5x faster than the double-precision fed_rng_normal, which matters for
 * DP noise on every coordinate of a model every step. u1 in (0, 1] keeps the
 * logarithm finite; the largest |value| is sqrt(2 ln 2^24) = 5.77. */
void fed_rng_fill_normal(fed_rng *r, float *x, size_t n, float mean, float std) {
    size_t i = 0;
    if (r->has_spare && n) {
        r->has_spare = 0;
        x[i++] = mean + std * r->spare;
    }
    uint32_t w[256];
    while (i + 1 < n) {
        size_t pairs = (n - i) / 2 < 128 ? (n - i) / 2 : 128;
        fed_rng_fill_u32(r, w, 2 * pairs);
        for (size_t p = 0; p < pairs; p++, i += 2) {
            float u1 = (float)((w[2 * p] >> 8) + 1) * 0x1.0p-24f;
            float u2 = (float)(w[2 * p + 1] >> 8) * 0x1.0p-24f;
            float rad = sqrtf(-2.0f * logf(u1)), sn, cs;
            sincosf(6.28318530718f * u2, &sn, &cs);
            x[i] = mean + std * rad * cs;
            x[i + 1] = mean + std * rad * sn;
        }
    }
    if (i < n) x[i] = mean + std * fed_rng_normal(r);
}

void fed_rng_fill_uniform(fed_rng *r, float *x, size_t n, float lo, float hi) {
    for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * fed_rng_uniformf(r);
}
