/* The distributed discrete Gaussian mechanism (Kairouz, Liu, Steinke, "The Distributed
 * Discrete Gaussian Mechanism for Federated Learning with Secure Aggregation", ICML
 * 2021) on the clients' float updates: clip to L2 norm C, scale, conditional stochastic
 * rounding (their Sec. 4, the norm bound of Thm. 1), a share of discrete Gaussian noise
 * (fed_secagg_add_dgauss) before masking, so the server only ever unmasks a noised sum.
 * The privacy of the sum is accounted by fed_rdp_compose_ddgauss (federate/dp.h). */
#include <math.h>
#include <stdlib.h>
#include "federate/crypto.h"
#include "federate/dp.h"
#include "federate/error.h"
#include "federate/rng.h"
#include "secagg_internal.h"

enum { DDP_ROUND_TRIES = 1000 };
#define DDP_SIGMA2_DEN (1u << 20)

int fed_secagg_ddp_init(fed_secagg_ddp *p, double clip, int bits, double noise_multiplier, size_t dim,
                        int min_survivors, int noise_source, uint64_t seed, uint64_t round) {
    if (!p) return fed_error(FED_EINVAL, "distributed DP: NULL");
    memset(p, 0, sizeof *p);
    if (!(clip > 0) || !isfinite(clip)) return fed_error(FED_EINVAL, "distributed DP: clip norm %g must be > 0", clip);
    if (bits < 2 || bits > 52)
        return fed_error(FED_ERANGE, "distributed DP: secure_aggregation.bits %d outside 2..52 (the clip norm is "
                                     "2^(bits-1) integer steps)", bits);
    if (!(noise_multiplier >= 0) || !isfinite(noise_multiplier))
        return fed_error(FED_EINVAL, "distributed DP: noise multiplier %g must be >= 0", noise_multiplier);
    if (dim < 1) return fed_error(FED_EINVAL, "distributed DP: empty update");
    if (min_survivors < 1) return fed_error(FED_EINVAL, "distributed DP: %d noise shares", min_survivors);
    p->clip = clip;
    p->bits = bits;
    double c = ldexp(1.0, bits - 1);
    p->scale = c / clip;
    p->beta = exp(-0.5);
    p->dim = dim;
    double sd = sqrt((double)dim);
    double plain = (c + sd) * (c + sd);
    double cond = c * c + (double)dim / 4 + sqrt(2 * log(1 / p->beta)) * (c + sd / 2);
    p->l2_bound2 = floor(plain < cond ? plain : cond); /* integers: the norm of a rounded vector */
    p->min_survivors = min_survivors;
    p->noise_source = noise_source;
    p->seed = seed;
    p->round = round;
    /* the sum of min_survivors shares has standard deviation z C (z 2^(bits-1) steps) */
    double s2 = noise_multiplier * noise_multiplier * c * c / (double)min_survivors;
    if (noise_multiplier > 0) {
        if (!(s2 >= 0.25))
            return fed_error(FED_ERANGE, "distributed DP: each of %d clients would add noise of variance %.3g "
                                         "integer steps, below the 1/4 the analysis needs (Kairouz et al. 2021); "
                                         "raise secure_aggregation.bits or privacy.noise_multiplier",
                             min_survivors, s2);
        if (!(s2 < 0x1p39))
            return fed_error(FED_ERANGE, "distributed DP: each client's noise variance %.3g integer steps is too "
                                         "large for the sampler (2^39 at most); lower secure_aggregation.bits", s2);
        p->sigma2_den = DDP_SIGMA2_DEN;
        p->sigma2_num = (uint64_t)llround(s2 * DDP_SIGMA2_DEN);
    }
    return 0;
}

int fed_secagg_ddp_init_records(fed_secagg_ddp *p, double clip, int bits, double noise_multiplier, size_t dim,
                                int min_survivors, long max_records, int noise_source, uint64_t seed,
                                uint64_t round) {
    int rc = fed_secagg_ddp_init(p, clip, bits, noise_multiplier, dim, min_survivors, noise_source, seed, round);
    if (rc) return rc;
    if (max_records < 1)
        return fed_error(FED_EINVAL, "distributed DP: record level needs at least one record per client (got %ld)",
                         max_records);
    if (!(ldexp((double)max_records, bits - 1) < 0x1p62))
        return fed_error(FED_ERANGE, "distributed DP: %ld records of 2^%d steps each do not fit a 64-bit ring; lower "
                                     "secure_aggregation.bits", max_records, bits - 1);
    p->records = max_records;
    double s = ldexp(1.0, bits - 1) + sqrt((double)dim);
    p->l2_bound2 = s * s;
    return 0;
}

int fed_secagg_ddp_ring_bits(const fed_secagg_ddp *p, int n, int *ring_bits) {
    if (!p || !ring_bits || n < 1) return fed_error(FED_EINVAL, "distributed DP ring: bad arguments (n %d)", n);
    /* P(|sum of noise| >= k sd) <= 2 exp(-k^2 / 2) per coordinate; the union over dim
     * coordinates stays below 2^-40 */
    double k = sqrt(2 * log(2 * (double)p->dim * 0x1p40));
    double sd = p->sigma2_num ? sqrt((double)n * (double)p->sigma2_num / (double)p->sigma2_den) : 0;
    double per = ldexp(1.0, p->bits - 1) * (double)(p->records > 0 ? p->records : 1);
    double bound = (double)n * per + k * sd; /* |signed sum| of a coordinate */
    for (int r = 2; r <= 64; r++)
        if (bound < ldexp(1.0, r - 1) * (1 - 1e-12)) {
            *ring_bits = r;
            return 0;
        }
    return fed_error(FED_ERANGE, "distributed DP: the noised sum of %d clients of %d bits can reach %.3g and "
                                 "overflow a 64-bit ring; lower secure_aggregation.bits", n, p->bits, bound);
}

int fed_secagg_ddp_round(const fed_secagg_ddp *p, uint64_t client, const float *x, size_t d, int64_t *out) {
    if (!p || (!x && d) || !out) return fed_error(FED_EINVAL, "distributed DP encode: NULL");
    if (d != p->dim) return fed_error(FED_EINVAL, "distributed DP encode: %zu coordinates, configured for %zu", d,
                                      p->dim);
    double n2 = 0;
    for (size_t i = 0; i < d; i++) {
        if (!isfinite(x[i]))
            return fed_error(FED_ERANGE, "distributed DP encode: coordinate %zu of client %llu is not finite", i,
                             (unsigned long long)client);
        n2 += (double)x[i] * (double)x[i];
    }
    double norm = sqrt(n2);
    double c = ldexp(1.0, p->bits - 1);
    fed_rng r;
    fed_rng_init(&r, p->seed, p->round, client, FED_RNG_QUANT);
    if (p->records > 0) {
        /* record level: no clip of the whole (each record was clipped), one rounding
         * with fresh coins (the coupling bound needs no condition); the clamp to what
         * max_records records can sum to only keeps a faulty input inside the ring */
        double lim = c * (double)p->records;
        for (size_t i = 0; i < d; i++) {
            double v = (double)x[i] * p->scale;
            v = v < -lim ? -lim : v > lim ? lim : v;
            double fl = floor(v);
            out[i] = (int64_t)fl + (fed_rng_uniform(&r) < v - fl);
        }
        return 0;
    }
    double f = p->scale * (norm > p->clip ? p->clip / norm : 1.0);
    unsigned __int128 bound = (unsigned __int128)p->l2_bound2;
    for (int t = 0; t <= DDP_ROUND_TRIES; t++) {
        unsigned __int128 q2 = 0;
        for (size_t i = 0; i < d; i++) {
            double v = (double)x[i] * f;
            v = v < -c ? -c : v > c ? c : v;
            double fl = floor(v);
            int64_t q = (int64_t)fl;
            if (t < DDP_ROUND_TRIES) {
                if (fed_rng_uniform(&r) < v - fl) q++;   /* unbiased */
            } else if (q < 0 && fl != v) {
                q++;                                     /* the last resort: toward zero */
            }
            out[i] = q;
            q2 += (unsigned __int128)((__int128)q * q);
        }
        if (q2 <= bound) return 0;
    }
    /* rounding toward zero can only exceed the bound through the float error of the
     * clip; a zero vector never does */
    memset(out, 0, d * sizeof *out);
    return 0;
}

int fed_secagg_ddp_encode(const fed_secagg_ddp *p, uint64_t client, const float *x, size_t d, int ring_bits,
                          uint64_t *out) {
    if (ring_bits < 2 || ring_bits > 64) return fed_error(FED_EINVAL, "distributed DP encode: ring_bits %d", ring_bits);
    int rc = fed_secagg_ddp_round(p, client, x, d, (int64_t *)out);
    if (rc) return rc;
    uint64_t mask = ring_bits == 64 ? ~0ULL : (1ULL << ring_bits) - 1;
    if (!p->sigma2_num) {
        for (size_t i = 0; i < d; i++) out[i] &= mask;
        return 0;
    }
    fed_dp_noise ns;
    if ((rc = fed_dp_noise_init(&ns, p->noise_source, p->seed, p->round, client))) return rc;
    rc = fed_secagg_add_dgauss(&ns, out, d, ring_bits, p->sigma2_num, p->sigma2_den);
    fed_crypto_wipe(&ns, sizeof ns);
    if (rc) fed_crypto_wipe(out, d * sizeof *out);
    return rc;
}

int fed_secagg_ddp_decode_mean(const fed_secagg_ddp *p, int m, const uint64_t *sum, size_t d, int ring_bits,
                               float *mean) {
    if (!p || !sum || (!mean && d) || m < 1 || ring_bits < 2 || ring_bits > 64)
        return fed_error(FED_EINVAL, "distributed DP decode: bad arguments (m %d, ring_bits %d)", m, ring_bits);
    uint64_t mask = ring_bits == 64 ? ~0ULL : (1ULL << ring_bits) - 1, half = 1ULL << (ring_bits - 1);
    double inv = 1.0 / (p->scale * m);
    for (size_t i = 0; i < d; i++) {
        uint64_t v = sum[i] & mask;
        /* the sum read as signed: the ring leaves room for it (fed_secagg_ddp_ring_bits) */
        int64_t s = v >= half ? -(int64_t)((mask - v) + 1) : (int64_t)v;
        mean[i] = (float)((double)s * inv);
    }
    return 0;
}

typedef struct ddp_ctx {
    const fed_secagg_ddp *p;
    const float *const *x;
    const uint64_t *clients;
    size_t d;
    int ring_bits;
} ddp_ctx;

static int ddp_input(void *ctx, int u, uint64_t *out, size_t L) {
    const ddp_ctx *c = ctx;
    (void)L;
    return fed_secagg_ddp_encode(c->p, c->clients ? c->clients[u] : (uint64_t)u, c->x[u], c->d, c->ring_bits, out);
}

int fed_secagg_ddp_mean(const fed_secagg_cfg *cfg, const fed_secagg_ddp *p, int k, const float *const *updates,
                        const uint64_t *clients, size_t d, const uint8_t *drop_at, float *mean, uint8_t *included,
                        fed_secagg_stats *stats) {
    if (!cfg || !p || !updates || (!mean && d)) return fed_error(FED_EINVAL, "distributed DP mean: NULL");
    if (cfg->n != k)
        return fed_error(FED_EINVAL, "distributed DP mean: configuration for %d clients, %d updates", cfg->n, k);
    for (int i = 0; i < k; i++)
        if (!updates[i]) return fed_error(FED_EINVAL, "distributed DP mean: no update for client %d", i);
    if (k < p->min_survivors)
        return fed_error(FED_ESTATE, "distributed DP: %d clients took part, fewer than the %d whose noise shares "
                                     "the privacy guarantee needs", k, p->min_survivors);
    fed_secagg_cfg c = *cfg;
    int rc = fed_secagg_ddp_ring_bits(p, k, &c.ring_bits);
    if (rc) return rc;
    c.modulus = 0;
    uint64_t *sum = malloc((d ? d : 1) * sizeof *sum);
    uint8_t *inc = calloc((size_t)k, 1);
    if (!sum || !inc) {
        free(sum);
        free(inc);
        return fed_error(FED_ENOMEM, "distributed DP mean: %zu coordinates", d);
    }
    ddp_ctx dc = {p, updates, clients, d, c.ring_bits};
    rc = fed_secagg_sim_run(&c, d, ddp_input, &dc, drop_at, sum, inc, stats);
    if (!rc) {
        int m = 0;
        for (int i = 0; i < k; i++) m += inc[i];
        if (included) memcpy(included, inc, (size_t)k);
        /* the server knows the survivors before it asks for unmasking shares, and
         * refuses to unmask a sum with too little noise in it */
        if (m < p->min_survivors)
            rc = fed_error(FED_ESTATE, "distributed DP: %d of %d clients survived secure aggregation, fewer than "
                                       "the %d whose noise shares the privacy guarantee needs; the sum is not "
                                       "released", m, k, p->min_survivors);
        else
            rc = fed_secagg_ddp_decode_mean(p, m, sum, d, c.ring_bits, mean);
    }
    free(sum);
    free(inc);
    return rc;
}
