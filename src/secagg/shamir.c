/* Shamir secret sharing (Shamir 1979) of 32-byte secrets over GF(p), p = 2^61 - 1:
 * the secret is cut into eight 32-bit chunks, each the constant term of its own
 * random polynomial of degree t-1; shares are evaluations at x != 0 and any t of
 * them give the chunks back by Lagrange interpolation at 0. */
#include <stdlib.h>
#include <sodium.h>
#include "federate/error.h"
#include "secagg_internal.h"

#define P61 ((1ULL << 61) - 1)

static inline uint64_t fadd(uint64_t a, uint64_t b) {
    uint64_t s = a + b; /* < 2^62 */
    return s >= P61 ? s - P61 : s;
}
static inline uint64_t fsub(uint64_t a, uint64_t b) { return a >= b ? a - b : a + P61 - b; }
static inline uint64_t fmul(uint64_t a, uint64_t b) {
    unsigned __int128 m = (unsigned __int128)a * b;
    uint64_t lo = (uint64_t)m & P61, hi = (uint64_t)(m >> 61);
    return fadd(lo, hi);
}
static uint64_t fpow(uint64_t a, uint64_t e) {
    uint64_t r = 1;
    while (e) {
        if (e & 1) r = fmul(r, a);
        a = fmul(a, a);
        e >>= 1;
    }
    return r;
}
static inline uint64_t finv(uint64_t a) { return fpow(a, P61 - 2); }

static uint64_t rand_field(void) {
    for (;;) { /* rejection keeps the coefficient uniform */
        uint64_t v;
        randombytes_buf(&v, sizeof v);
        v &= P61;
        if (v < P61) return v;
    }
}

int fed_shamir_split(const uint8_t secret[32], int t, const uint32_t *xs, int m, fed_shamir_share *out) {
    if (!secret || !xs || !out || t < 1 || m < t)
        return fed_error(FED_EINVAL, "shamir split: need 1 <= t <= m (t %d, m %d)", t, m);
    if (sodium_init() < 0) return fed_error(FED_EINTERNAL, "shamir split: libsodium failed to initialize");
    for (int i = 0; i < m; i++) {
        if (xs[i] == 0) return fed_error(FED_EINVAL, "shamir split: share point %d is 0", i);
        out[i].x = xs[i];
    }
    uint64_t *coef = malloc((size_t)t * sizeof *coef);
    if (!coef) return fed_error(FED_ENOMEM, "shamir split: %d coefficients", t);
    for (int c = 0; c < FED_SHAMIR_CHUNKS; c++) {
        uint32_t chunk;
        memcpy(&chunk, secret + 4 * c, 4);
        coef[0] = chunk;
        for (int j = 1; j < t; j++) coef[j] = rand_field();
        for (int i = 0; i < m; i++) {
            uint64_t x = xs[i], y = coef[t - 1];
            for (int j = t - 2; j >= 0; j--) y = fadd(fmul(y, x), coef[j]);
            out[i].y[c] = y;
        }
    }
    sodium_memzero(coef, (size_t)t * sizeof *coef);
    free(coef);
    return 0;
}

/* lambda_i = prod_{j != i} x_j / (x_j - x_i), the Lagrange basis at 0, with one
 * field inversion for all t coefficients (Montgomery's batch trick). */
int sa_shamir_lagrange(const uint32_t *xs, int t, uint64_t *lam) {
    uint64_t *den = malloc((size_t)t * 2 * sizeof *den);
    if (!den) return fed_error(FED_ENOMEM, "shamir: %d coefficients", t);
    uint64_t *pre = den + t;
    for (int i = 0; i < t; i++) {
        uint64_t num = 1, d = 1, xi = xs[i];
        if (xi == 0) {
            free(den);
            return fed_error(FED_EFORMAT, "shamir combine: share point %d is 0", i);
        }
        for (int j = 0; j < t; j++) {
            if (j == i) continue;
            uint64_t xj = xs[j];
            if (xj == xi) {
                free(den);
                return fed_error(FED_EFORMAT, "shamir combine: two shares at point %u", (unsigned)xi);
            }
            num = fmul(num, xj);
            d = fmul(d, fsub(xj, xi));
        }
        lam[i] = num;
        den[i] = d;
    }
    uint64_t acc = 1;
    for (int i = 0; i < t; i++) {
        pre[i] = acc;
        acc = fmul(acc, den[i]);
    }
    uint64_t inv = finv(acc);
    for (int i = t - 1; i >= 0; i--) {
        lam[i] = fmul(lam[i], fmul(inv, pre[i]));
        inv = fmul(inv, den[i]);
    }
    free(den);
    return 0;
}

int sa_shamir_combine_lam(const fed_shamir_share *sh, int t, const uint64_t *lam, uint8_t secret[32]) {
    for (int c = 0; c < FED_SHAMIR_CHUNKS; c++) {
        uint64_t s = 0;
        for (int i = 0; i < t; i++) {
            if (sh[i].y[c] >= P61) {
                sodium_memzero(secret, 32);
                return fed_error(FED_EFORMAT, "shamir combine: share value out of the field");
            }
            s = fadd(s, fmul(lam[i], sh[i].y[c]));
        }
        if (s > 0xffffffffULL) {
            sodium_memzero(secret, 32);
            return fed_error(FED_EFORMAT, "shamir combine: shares are inconsistent");
        }
        uint32_t chunk = (uint32_t)s;
        memcpy(secret + 4 * c, &chunk, 4);
    }
    return 0;
}

int fed_shamir_combine(const fed_shamir_share *sh, int count, int t, uint8_t secret[32]) {
    if (!sh || !secret || t < 1) return fed_error(FED_EINVAL, "shamir combine: bad arguments (t %d)", t);
    if (count < t) return fed_error(FED_EINVAL, "shamir combine: %d shares, %d needed", count, t);
    uint64_t *lam = malloc((size_t)t * sizeof *lam);
    uint32_t *xs = malloc((size_t)t * sizeof *xs);
    int rc = 0;
    if (!lam || !xs) rc = fed_error(FED_ENOMEM, "shamir combine: %d coefficients", t);
    for (int i = 0; i < t && !rc; i++) xs[i] = sh[i].x;
    if (!rc) rc = sa_shamir_lagrange(xs, t, lam);
    if (!rc) rc = sa_shamir_combine_lam(sh, t, lam, secret);
    else sodium_memzero(secret, 32);
    free(lam);
    free(xs);
    return rc;
}
