/* Exact discrete Gaussian sampling with integer arithmetic only: Canonne, Kamath,
 * Steinke, "The Discrete Gaussian for Differential Privacy", NeurIPS 2020, Alg. 1
 * (Bernoulli(exp(-gamma)) for rational gamma), Alg. 2 (discrete Laplace) and Alg. 3
 * (discrete Gaussian by rejection from the discrete Laplace). No floating point touches
 * a random value, so no floating-point attack applies. */
#include "federate/dp.h"
#include "federate/crypto.h"
#include "federate/error.h"

#include <string.h>

typedef unsigned __int128 u128;

#define WORDS 256
#define MAX_SIGMA2 ((uint64_t)1 << 40)
#define MAX_DEN ((uint64_t)1 << 20)

/* Random bits from the noise stream, taken as few at a time as each draw needs (most
 * draws need 1 to 10 bits); CSPRNG words are fetched 2 KiB at a time. */
typedef struct bits {
    fed_dp_noise *ns;
    uint64_t buf[WORDS];
    int pos, rc;
    uint64_t cur; /* unused bits, low first */
    int avail;
} bits;

static uint64_t word(bits *b) {
    if (b->ns->source == FED_DP_NOISE_SEEDED) return fed_rng_u64(&b->ns->rng);
    if (b->pos >= WORDS) {
        int rc = fed_crypto_random(b->buf, sizeof b->buf);
        if (rc && !b->rc) b->rc = rc; /* reported after the loop; values are discarded */
        b->pos = 0;
    }
    return b->buf[b->pos++];
}

/* len in [1, 64] fresh random bits; leftover bits of a word too few for a request are
 * dropped (they are independent of everything else, so nothing is biased). */
static uint64_t take(bits *b, int len) {
    if (b->avail < len) {
        b->cur = word(b);
        b->avail = 64;
    }
    uint64_t x = len == 64 ? b->cur : b->cur & (((uint64_t)1 << len) - 1);
    b->cur = len == 64 ? 0 : b->cur >> len;
    b->avail -= len;
    return x;
}

static int bitlen128(u128 x) {
    uint64_t hi = (uint64_t)(x >> 64), lo = (uint64_t)x;
    return hi ? 128 - __builtin_clzll(hi) : (lo ? 64 - __builtin_clzll(lo) : 0);
}

/* Uniform in [0, d), d >= 1, by rejection of masked random bits (no bias). */
static u128 uniform_below(bits *b, u128 d) {
    int len = bitlen128(d - 1);
    if (len == 0) return 0;
    for (;;) {
        u128 x = take(b, len > 64 ? 64 : len); /* separate statements: a fixed order */
        if (len > 64) x = x << (len - 64) | take(b, len - 64);
        if (x < d) return x;
    }
}

/* Bernoulli(n / d), 0 <= n <= d, d >= 1. */
static int bern(bits *b, u128 n, u128 d) { return uniform_below(b, d) < n; }

/* Bernoulli(exp(-n/d)) for n/d in [0, 1] (Alg. 1, first case): K counts until a
 * Bernoulli(gamma / K) fails; the answer is whether K ends odd. Bernoulli(gamma / K) is
 * drawn as Bernoulli(gamma) and Bernoulli(1 / K), so d K cannot overflow. */
static int bern_exp_le1(bits *b, u128 n, u128 d) {
    uint64_t k = 1;
    while (bern(b, n, d) && bern(b, 1, k)) k++;
    return (int)(k & 1);
}

/* Bernoulli(exp(-n/d)), any n/d >= 0 (Alg. 1, second case). */
static int bern_exp(bits *b, u128 n, u128 d) {
    u128 whole, frac;
    if (!(n >> 64) && !(d >> 64)) { /* 64-bit division where it suffices: 10x cheaper */
        whole = (uint64_t)n / (uint64_t)d;
        frac = (uint64_t)n % (uint64_t)d;
    } else {
        whole = n / d;
        frac = n % d;
    }
    for (; whole > 0; whole--)
        if (!bern_exp_le1(b, 1, 1)) return 0;
    return bern_exp_le1(b, frac, d);
}

/* Discrete Laplace with scale t >= 1: P(y) proportional to exp(-|y| / t) (Alg. 2, s = 1). */
static int64_t discrete_laplace(bits *b, uint64_t t) {
    for (;;) {
        uint64_t u = (uint64_t)uniform_below(b, t);
        if (!bern_exp(b, u, t)) continue;
        uint64_t v = 0;
        while (bern_exp_le1(b, 1, 1)) v++;
        uint64_t x = u + t * v; /* v is geometric: never near overflow */
        int neg = (int)take(b, 1);
        if (neg && x == 0) continue;
        return neg ? -(int64_t)x : (int64_t)x;
    }
}

static uint64_t isqrt64(uint64_t x) {
    uint64_t r = 0;
    for (int s = 31; s >= 0; s--) {
        uint64_t c = r | ((uint64_t)1 << s);
        if (c * c <= x) r = c;
    }
    return r;
}

/* One draw of N_Z(0, p / r) (Alg. 3): t = floor(sigma) + 1, Y ~ DLap(t), accepted with
 * probability exp(-(|Y| - sigma^2/t)^2 / (2 sigma^2)) = exp(-(|Y| t r - p)^2 / (2 p r t^2)). */
static int64_t discrete_gaussian(bits *b, uint64_t p, uint64_t r, uint64_t t) {
    u128 den = (u128)2 * p * r * t * t; /* < 2^122 under the limits */
    for (;;) {
        int64_t y = discrete_laplace(b, t);
        u128 ay = (u128)(y < 0 ? -(uint64_t)y : (uint64_t)y) * t * r;
        u128 diff = ay >= p ? ay - p : p - ay;
        /* diff >= 2^64 means gamma >= 2^128 / den > 64: acceptance below e^-64. Rejecting
         * such candidates outright moves the output distribution by about 2^-90. */
        if (diff >> 64) continue;
        if (bern_exp(b, diff * diff, den)) return y;
    }
}

int fed_dp_discrete_gaussian(fed_dp_noise *ns, int64_t *out, size_t n, uint64_t sigma2_num,
                             uint64_t sigma2_den) {
    if (!ns || (ns->source != FED_DP_NOISE_SEEDED && ns->source != FED_DP_NOISE_SECURE))
        return fed_error(FED_EINVAL, "dp: discrete gaussian: noise stream is NULL or not initialized");
    if (!out && n) return fed_error(FED_EINVAL, "dp: discrete gaussian: output is NULL");
    if (sigma2_num == 0 || sigma2_den == 0 || sigma2_den > MAX_DEN || sigma2_num / sigma2_den >= MAX_SIGMA2)
        return fed_error(FED_EINVAL,
                         "dp: discrete gaussian: sigma^2 = %llu/%llu must be > 0, < 2^40, with denominator "
                         "<= 2^20",
                         (unsigned long long)sigma2_num, (unsigned long long)sigma2_den);
    uint64_t t = isqrt64(sigma2_num / sigma2_den) + 1;
    bits local, *b = &local;
    b->ns = ns;
    b->pos = WORDS;
    b->rc = 0;
    b->cur = 0;
    b->avail = 0;
    for (size_t i = 0; i < n; i++) out[i] = discrete_gaussian(b, sigma2_num, sigma2_den, t);
    int rc = b->rc;
    fed_crypto_wipe(b, sizeof *b);
    if (rc) {
        memset(out, 0, n * sizeof *out);
        return rc;
    }
    return 0;
}
