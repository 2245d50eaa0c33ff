/* Gaussian and Laplace mechanisms on flat float vectors, with noise from a seeded
 * counter-based stream (reproducible simulation) or from the OS CSPRNG (deployment),
 * and Laplace with Mironov's snapping ("On Significance of the Least Significant Bits
 * for Differential Privacy", CCS 2012), which defeats the attack on floating-point noise. */
#include "federate/dp.h"
#include "federate/crypto.h"
#include "federate/error.h"

#include <math.h>
#include <string.h>

/* Random words fetched from the CSPRNG per call: libsodium issues one getrandom() per
 * 256 bytes whatever we ask, but asking for big blocks keeps our per-call costs out of
 * the per-value loop. 16 KiB fits any thread's stack. */
#define SECURE_BLOCK 2048
/* Floats of seeded noise generated per block before they are added. */
#define SEEDED_BLOCK 4096

#define TWO_PI 6.283185307179586476925
#define TWO_POW_M53 0x1.0p-53

const char *fed_dp_noise_source_name(int source) {
    switch (source) {
    case FED_DP_NOISE_SEEDED: return "seeded";
    case FED_DP_NOISE_SECURE: return "secure";
    default: return NULL;
    }
}

int fed_dp_noise_source_from_name(const char *name, int *source) {
    if (!name || !source) return fed_error(FED_EINVAL, "dp: noise source name or output is NULL");
    if (strcmp(name, "seeded") == 0) *source = FED_DP_NOISE_SEEDED;
    else if (strcmp(name, "secure") == 0) *source = FED_DP_NOISE_SECURE;
    else return fed_error(FED_EINVAL, "dp: unknown noise source '%s' (expected seeded or secure)", name);
    return 0;
}

int fed_dp_noise_init(fed_dp_noise *ns, int source, uint64_t seed, uint64_t round, uint64_t client) {
    if (!ns) return fed_error(FED_EINVAL, "dp: noise stream is NULL");
    memset(ns, 0, sizeof *ns);
    ns->source = -1; /* unusable unless initialized below */
    if (source != FED_DP_NOISE_SEEDED && source != FED_DP_NOISE_SECURE)
        return fed_error(FED_EINVAL, "dp: unknown noise source %d", source);
    ns->source = source;
    if (source == FED_DP_NOISE_SEEDED) fed_rng_init(&ns->rng, seed, round, client, FED_RNG_NOISE);
    return 0;
}

static int check_stream(const fed_dp_noise *ns) {
    if (!ns) return fed_error(FED_EINVAL, "dp: noise stream is NULL");
    if (ns->source != FED_DP_NOISE_SEEDED && ns->source != FED_DP_NOISE_SECURE)
        return fed_error(FED_EINVAL, "dp: noise stream has unknown source %d (not initialized?)",
                         ns->source);
    return 0;
}

/* (0, 1] from the top 53 bits: never 0, so log() is finite. */
static inline double open0_unit(uint64_t v) { return (double)((v >> 11) + 1) * TWO_POW_M53; }
/* [0, 1). */
static inline double unit(uint64_t v) { return (double)(v >> 11) * TWO_POW_M53; }

/* Laplace(0, 1) from one 64-bit word: bit 0 is the sign, the top 53 bits an
 * exponential -log(U), U in (0, 1]. */
static inline double laplace_from_word(uint64_t v) {
    double e = -log(open0_unit(v));
    return (v & 1) ? -e : e;
}

int fed_dp_sample_normal(fed_dp_noise *ns, double *out) {
    int rc;
    if ((rc = check_stream(ns))) return rc;
    if (!out) return fed_error(FED_EINVAL, "dp: output is NULL");
    if (ns->source == FED_DP_NOISE_SEEDED) {
        *out = fed_rng_normal_d(&ns->rng);
        return 0;
    }
    uint64_t w[2];
    if ((rc = fed_crypto_random_fast(w, sizeof w))) return rc;
    *out = sqrt(-2.0 * log(open0_unit(w[0]))) * cos(TWO_PI * unit(w[1]));
    fed_crypto_wipe(w, sizeof w);
    return 0;
}

int fed_dp_sample_laplace(fed_dp_noise *ns, double *out) {
    int rc;
    if ((rc = check_stream(ns))) return rc;
    if (!out) return fed_error(FED_EINVAL, "dp: output is NULL");
    uint64_t w;
    if (ns->source == FED_DP_NOISE_SEEDED) w = fed_rng_u64(&ns->rng);
    else if ((rc = fed_crypto_random_fast(&w, sizeof w))) return rc;
    *out = laplace_from_word(w);
    fed_crypto_wipe(&w, sizeof w);
    return 0;
}

static int check_args(const fed_dp_noise *ns, const float *x, size_t n, double scale,
                      const char *what) {
    int rc;
    if ((rc = check_stream(ns))) return rc;
    if (!x && n) return fed_error(FED_EINVAL, "dp: %s: vector is NULL", what);
    if (!(scale >= 0.0) || !isfinite(scale))
        return fed_error(FED_EINVAL, "dp: %s: noise scale must be finite and >= 0 (got %g)", what,
                         scale);
    return 0;
}

/* Box-Muller in double precision over CSPRNG words, two normals per pair of words.
 * The largest |z| is sqrt(-2 log 2^-53) ~ 8.6: the tail beyond 8.6 sigma (probability
 * ~1e-17) is cut, which no finite sample can tell apart. */
static int secure_gaussian(float *restrict x, size_t n, double stddev) {
    uint64_t w[SECURE_BLOCK];
    int rc = 0;
    for (size_t i = 0; i < n;) {
        size_t need = n - i; /* values left; each pair of words gives two */
        size_t nw = need >= SECURE_BLOCK ? SECURE_BLOCK : (need + 1) & ~(size_t)1;
        if ((rc = fed_crypto_random_fast(w, nw * sizeof *w))) break;
        for (size_t k = 0; k < nw && i < n; k += 2) {
            double r = stddev * sqrt(-2.0 * log(open0_unit(w[k])));
            double t = TWO_PI * unit(w[k + 1]);
            x[i] = (float)((double)x[i] + r * cos(t));
            if (++i < n) {
                x[i] = (float)((double)x[i] + r * sin(t));
                i++;
            }
        }
    }
    fed_crypto_wipe(w, sizeof w);
    return rc;
}

int fed_dp_gaussian(fed_dp_noise *ns, float *x, size_t n, double stddev) {
    int rc;
    if ((rc = check_args(ns, x, n, stddev, "gaussian"))) return rc;
    if (stddev == 0.0 || n == 0) return 0;
    if (ns->source == FED_DP_NOISE_SECURE) return secure_gaussian(x, n, stddev);
    /* Seeded: fed_rng_fill_normal's stream. Blocks of even length give the same numbers
     * as one call on the whole vector. */
    float buf[SEEDED_BLOCK];
    for (size_t i = 0; i < n; i += SEEDED_BLOCK) {
        size_t k = n - i < SEEDED_BLOCK ? n - i : SEEDED_BLOCK;
        fed_rng_fill_normal(&ns->rng, buf, k, 0.0f, (float)stddev);
        float *restrict xi = x + i;
        for (size_t j = 0; j < k; j++) xi[j] += buf[j];
    }
    return 0;
}

/* Fills w[0..k) with random words from the stream. */
static int words(fed_dp_noise *ns, uint64_t *w, size_t k) {
    if (ns->source == FED_DP_NOISE_SECURE) return fed_crypto_random_fast(w, k * sizeof *w);
    for (size_t j = 0; j < k; j++) w[j] = fed_rng_u64(&ns->rng);
    return 0;
}

int fed_dp_laplace(fed_dp_noise *ns, float *x, size_t n, double scale) {
    int rc;
    if ((rc = check_args(ns, x, n, scale, "laplace"))) return rc;
    if (scale == 0.0 || n == 0) return 0;
    /* Textbook inverse-CDF Laplace: fine for simulation. Against an adversary who sees
     * the exact float output, the set of reachable values leaks the input (Mironov
     * 2012); fed_dp_laplace_snapped closes that. Computing in double and rounding to
     * float makes the reachable set much denser, cheaply (a heuristic, not a proof). */
    uint64_t w[SECURE_BLOCK];
    for (size_t i = 0; i < n; i += SECURE_BLOCK) {
        size_t k = n - i < SECURE_BLOCK ? n - i : SECURE_BLOCK;
        if ((rc = words(ns, w, k))) break;
        float *restrict xi = x + i;
        for (size_t j = 0; j < k; j++) xi[j] = (float)((double)xi[j] + scale * laplace_from_word(w[j]));
    }
    fed_crypto_wipe(w, sizeof w);
    return rc;
}

/* ---- snapping ---- */

/* A uniform double in (0, 1) where each double is drawn with probability proportional to
 * the interval it rounds from (Mironov's U*): the exponent is geometric (one per leading
 * zero bit of a random stream), the 52 mantissa bits uniform. The naive (k + 1) 2^-53
 * reaches only 2^53 values, which is the weakness the attack exploits. */
static int snap_uniform(fed_dp_noise *ns, double *u) {
    uint64_t w[2];
    int rc, e = -1;
    for (;;) {
        if ((rc = words(ns, w, 1))) return rc;
        if (w[0]) break;
        e -= 64;
        if (e < -1074) { /* probability 2^-1024: cannot happen */
            e = -1074;
            w[0] = 1;
            break;
        }
    }
    e -= __builtin_clzll(w[0]);
    if ((rc = words(ns, w + 1, 1))) return rc;
    double m = 1.0 + (double)(w[1] >> 12) * 0x1.0p-52;
    *u = ldexp(m, e);
    if (*u >= 1.0) *u = nextafter(1.0, 0.0);
    fed_crypto_wipe(w, sizeof w);
    return 0;
}

int fed_dp_laplace_snapped(fed_dp_noise *ns, float *x, size_t n, double scale, double bound) {
    int rc;
    if ((rc = check_args(ns, x, n, scale, "laplace_snapped"))) return rc;
    if (!(scale > 0.0) || !(bound > scale) || !(bound < ldexp(scale, 46)))
        return fed_error(FED_EINVAL,
                         "dp: laplace_snapped: need 0 < scale < bound < 2^46 scale (scale %g, bound %g)",
                         scale, bound);
    /* Lambda: the smallest power of two >= scale; outputs lie on its grid. */
    int ex;
    double fr = frexp(scale, &ex); /* scale = fr 2^ex, fr in [0.5, 1) */
    double lambda = fr == 0.5 ? scale : ldexp(1.0, ex);
    for (size_t i = 0; i < n; i++) {
        double u, s;
        uint64_t sign;
        if ((rc = snap_uniform(ns, &u)) || (rc = words(ns, &sign, 1))) return rc;
        double v = fmin(fmax((double)x[i], -bound), bound);
        s = (sign & 1) ? -1.0 : 1.0;
        v += s * scale * -log(u);
        v = lambda * nearbyint(v / lambda); /* exact: division by a power of two */
        x[i] = (float)fmin(fmax(v, -bound), bound);
    }
    return 0;
}
