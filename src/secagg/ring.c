/* Floats to the ring Z_R and back. Each coordinate is clipped to [-c, c], scaled
 * to [0, 2^q - 1] and stochastically rounded (unbiased), so the sum of n inputs
 * stays below n (2^q - 1) < R = 2^(q + ceil(log2 n)) and never wraps. A weighted
 * mean is a sum of (w/W) x plus one extra coordinate carrying w/W, divided at the
 * end (the server learns only the two sums). */
#include <math.h>
#include <stdlib.h>
#include "federate/error.h"
#include "federate/rng.h"
#include "secagg_internal.h"

void fed_secagg_enc_default(fed_secagg_enc *e) {
    memset(e, 0, sizeof *e);
    e->clip = 1.0;
    e->bits = 16;
    e->ring_bits = 0;
    e->weight_max = 1.0;
}

static int check_enc(const fed_secagg_enc *e) {
    if (!e) return fed_error(FED_EINVAL, "secagg encoding: NULL");
    if (!(e->clip > 0) || !isfinite(e->clip)) return fed_error(FED_EINVAL, "secagg encoding: clip %g must be > 0", e->clip);
    if (e->bits < 1 || e->bits > 52) return fed_error(FED_EINVAL, "secagg encoding: bits %d outside 1..52", e->bits);
    if (!(e->weight_max > 0) || !isfinite(e->weight_max))
        return fed_error(FED_EINVAL, "secagg encoding: weight_max %g must be > 0", e->weight_max);
    return 0;
}

int fed_secagg_enc_ring_bits(const fed_secagg_enc *e, int n, int *ring_bits) {
    int rc = check_enc(e);
    if (rc) return rc;
    if (n < 1) return fed_error(FED_EINVAL, "secagg encoding: %d clients", n);
    int lg = 0;
    while ((1LL << lg) < n) lg++;
    int need = e->bits + lg; /* n (2^q - 1) < 2^(q + ceil(log2 n)) */
    if (e->ring_bits == 0) {
        if (need > 64)
            return fed_error(FED_ERANGE, "secagg encoding: %d clients of %d bits need a %d-bit ring (64 at most)", n,
                             e->bits, need);
        *ring_bits = need;
        return 0;
    }
    if (e->ring_bits < 1 || e->ring_bits > 64)
        return fed_error(FED_ERANGE, "secagg encoding: ring_bits %d outside 1..64", e->ring_bits);
    /* exact test: the largest possible sum n (2^q - 1) must be below 2^ring_bits */
    unsigned __int128 maxsum = (unsigned __int128)n * ((1ULL << e->bits) - 1);
    if (maxsum >> e->ring_bits)
        return fed_error(FED_ERANGE, "secagg encoding: the sum of %d inputs of %d bits can reach %.0f and overflow a "
                                     "ring of 2^%d; use ring_bits >= %d or fewer bits", n, e->bits, (double)maxsum,
                         e->ring_bits, need);
    *ring_bits = e->ring_bits;
    return 0;
}

static inline uint64_t sround(fed_rng *r, double v, uint64_t top) {
    double f = floor(v);
    uint64_t q = (uint64_t)f;
    if (fed_rng_uniform(r) < v - f) q++;
    return q > top ? top : q;
}

int fed_secagg_encode(const fed_secagg_enc *e, int client, const float *x, size_t d, double weight, uint64_t *out) {
    int rc = check_enc(e);
    if (rc) return rc;
    if ((!x && d) || !out || client < 0) return fed_error(FED_EINVAL, "secagg encode: NULL");
    if (!(weight >= 0 && weight <= e->weight_max))
        return fed_error(FED_ERANGE, "secagg encode: weight %g of client %d outside [0, %g]", weight, client,
                         e->weight_max);
    fed_rng r;
    fed_rng_init(&r, e->seed, e->round, (uint64_t)client, FED_RNG_QUANT);
    double top = (double)((1ULL << e->bits) - 1), c = e->clip, w = weight / e->weight_max;
    double scale = top / (2 * c);
    for (size_t i = 0; i < d; i++) {
        double v = x[i];
        if (!(v == v)) return fed_error(FED_ERANGE, "secagg encode: coordinate %zu of client %d is NaN", i, client);
        v = v < -c ? -c : v > c ? c : v;
        out[i] = sround(&r, (w * v + c) * scale, (uint64_t)top);
    }
    out[d] = sround(&r, w * top, (uint64_t)top);
    return 0;
}

int fed_secagg_decode_mean(const fed_secagg_enc *e, int m, const uint64_t *sum, size_t d, float *mean,
                           double *weight_sum) {
    int rc = check_enc(e);
    if (rc) return rc;
    if (!sum || (!mean && d) || m < 1) return fed_error(FED_EINVAL, "secagg decode: bad arguments (m %d)", m);
    double top = (double)((1ULL << e->bits) - 1), c = e->clip;
    double ws = (double)sum[d] / top; /* sum of w/W */
    if (weight_sum) *weight_sum = ws * e->weight_max;
    if (!(ws > 0)) return fed_error(FED_ERANGE, "secagg decode: the weights of the %d clients sum to 0", m);
    for (size_t i = 0; i < d; i++) {
        double z = (double)sum[i] * (2 * c / top) - m * c; /* sum of (w/W) x */
        mean[i] = (float)(z / ws);
    }
    return 0;
}

typedef struct enc_ctx {
    const fed_secagg_enc *e;
    const float *const *x;
    const double *w;
    size_t d;
} enc_ctx;

static int enc_input(void *ctx, int client, uint64_t *out, size_t L) {
    const enc_ctx *c = ctx;
    (void)L;
    return fed_secagg_encode(c->e, client, c->x[client], c->d, c->w ? c->w[client] : c->e->weight_max, out);
}

int fed_secagg_mean(const fed_secagg_cfg *cfg, const fed_secagg_enc *enc, int k, const float *const *updates,
                    const double *weights, size_t d, const uint8_t *drop_at, float *mean, uint8_t *included,
                    fed_secagg_stats *stats) {
    if (!cfg || !enc || !updates || (!mean && d)) return fed_error(FED_EINVAL, "secagg mean: NULL");
    if (cfg->n != k) return fed_error(FED_EINVAL, "secagg mean: configuration for %d clients, %d updates", cfg->n, k);
    for (int i = 0; i < k; i++)
        if (!updates[i]) return fed_error(FED_EINVAL, "secagg mean: no update for client %d", i);
    fed_secagg_cfg c = *cfg;
    int rc = fed_secagg_enc_ring_bits(enc, k, &c.ring_bits);
    if (rc) return rc;
    c.modulus = 0;
    uint64_t *sum = malloc((d + 1) * sizeof *sum);
    uint8_t *inc = calloc((size_t)k, 1);
    if (!sum || !inc) {
        free(sum);
        free(inc);
        return fed_error(FED_ENOMEM, "secagg mean: %zu coordinates", d);
    }
    enc_ctx ec = {enc, updates, weights, d};
    rc = fed_secagg_sim_run(&c, d + 1, enc_input, &ec, drop_at, sum, inc, stats);
    if (!rc) {
        int m = 0;
        for (int i = 0; i < k; i++) m += inc[i];
        rc = fed_secagg_decode_mean(enc, m, sum, d, mean, NULL);
        if (included) memcpy(included, inc, (size_t)k);
    }
    free(sum);
    free(inc);
    return rc;
}
