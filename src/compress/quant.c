/* Value coders of the update codecs: uniform quantization with stochastic
 * rounding (per vector or per block, min/max or absmax scaling), QSGD
 * (Alistarh et al. 2017, eq. 1-2, with buckets as in their experiments), the
 * 1-bit sign coder of EF-signSGD (Karimireddy et al. 2019, Alg. 1) and raw float32.
 * Stochastic rounding draws u(i) from a keyed counter hash so the hot loops
 * vectorize and the bytes depend only on (seed, round, client) and the input. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "compress_internal.h"
#include "federate/error.h"

/* Multiply-xorshift finalizer (MurmurHash3's fmix32): a bijection of uint32 with
 * full avalanche. Applied twice around a key, it turns the element index into a
 * uniform 24-bit fraction; because it is a bijection, over all indices every
 * fraction occurs equally often, so rounding up with probability frac(t) stays
 * unbiased to within 2^-24 of a step. */
static inline uint32_t fmix32(uint32_t x) {
    x ^= x >> 16;
    x *= 0x85ebca6bu;
    x ^= x >> 13;
    x *= 0xc2b2ae35u;
    x ^= x >> 16;
    return x;
}

static inline float unif(uint32_t i, uint32_t k0, uint32_t k1) {
    uint32_t h = fmix32(fmix32(i ^ k0) + k1);
    return (float)(int32_t)(h >> 8) * 0x1.0p-24f;
}

/* Indices beyond 2^32 change the second key, so every index has its own draw. */
static inline uint32_t seg_key(fc_keys k, size_t i) {
    return k.k1 + fmix32((uint32_t)((uint64_t)i >> 32) * 0x9E3779B9u);
}

/* End of the run that starts at i and stays inside one 2^32 segment and below lim. */
static inline size_t seg_end(size_t i, size_t lim) {
    uint64_t e = (((uint64_t)i >> 32) + 1) << 32;
    return e < (uint64_t)lim ? (size_t)e : lim;
}

#define LANES 8
#define CHUNK 4096 /* codes per pass of q4/q2 packing; a multiple of 4 */

int fc_all_finite(const float *x, size_t n) {
    /* |x| < 2^127: finite, and ranges (hi - lo) cannot overflow float. */
    uint32_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t b;
        memcpy(&b, &x[i], 4);
        bad |= (b & 0x7fffffffu) >= 0x7f000000u;
    }
    return !bad;
}

static void minmax(const float *restrict v, size_t n, float *lo_out, float *hi_out) {
    float lo[LANES], hi[LANES];
    for (int j = 0; j < LANES; j++) lo[j] = hi[j] = v[0];
    size_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) {
            float x = v[i + j];
            lo[j] = x < lo[j] ? x : lo[j];
            hi[j] = x > hi[j] ? x : hi[j];
        }
    float a = lo[0], b = hi[0];
    for (int j = 1; j < LANES; j++) {
        a = lo[j] < a ? lo[j] : a;
        b = hi[j] > b ? hi[j] : b;
    }
    for (; i < n; i++) {
        a = v[i] < a ? v[i] : a;
        b = v[i] > b ? v[i] : b;
    }
    *lo_out = a;
    *hi_out = b;
}

static float absmax(const float *restrict v, size_t n) {
    float m[LANES] = {0};
    size_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) {
            float x = fabsf(v[i + j]);
            m[j] = x > m[j] ? x : m[j];
        }
    float a = 0;
    for (int j = 0; j < LANES; j++) a = m[j] > a ? m[j] : a;
    for (; i < n; i++) a = fabsf(v[i]) > a ? fabsf(v[i]) : a;
    return a;
}

/* Sums in 8 double lanes, combined in a fixed order (bit-reproducible). */
static double sum_abs(const float *restrict v, size_t n) {
    double s[LANES] = {0};
    size_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) s[j] += fabs((double)v[i + j]);
    double t = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    for (; i < n; i++) t += fabs((double)v[i]);
    return t;
}

static double sum_sq(const float *restrict v, size_t n) {
    double s[LANES] = {0};
    size_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) s[j] += (double)v[i + j] * (double)v[i + j];
    double t = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    for (; i < n; i++) t += (double)v[i] * (double)v[i];
    return t;
}

/* ---- uniform quantization ---------------------------------------------- */

/* q = floor(t + u), t = (x - lo) / step in [0, L]: E[q] = t, so E[lo + q step] = x. */
static void codes_minmax(const float *restrict v, size_t len, uint32_t base, uint32_t k0, uint32_t k1, float lo,
                         float inv, float L, uint8_t *restrict q) {
    for (size_t i = 0; i < len; i++) {
        float t = (v[i] - lo) * inv + unif(base + (uint32_t)i, k0, k1);
        t = t < L ? t : L;
        q[i] = (uint8_t)(int32_t)t;
    }
}

/* Symmetric: t = x / step + M in [0, 2M]; code M is an exact zero. */
static void codes_absmax(const float *restrict v, size_t len, uint32_t base, uint32_t k0, uint32_t k1, float inv,
                         float M, uint8_t *restrict q) {
    float top = 2 * M;
    for (size_t i = 0; i < len; i++) {
        float t = v[i] * inv + M + unif(base + (uint32_t)i, k0, k1);
        t = t > 0 ? t : 0;
        t = t < top ? t : top;
        q[i] = (uint8_t)(int32_t)t;
    }
}

static void deq_minmax(const uint8_t *restrict q, size_t len, float lo, float step, float *restrict out) {
    for (size_t i = 0; i < len; i++) out[i] = lo + (float)q[i] * step;
}

static void deq_absmax(const uint8_t *restrict q, size_t len, float M, float step, float *restrict out) {
    for (size_t i = 0; i < len; i++) out[i] = ((float)q[i] - M) * step;
}

static void pack(const uint8_t *restrict c, size_t len, int bits, uint8_t *restrict out) {
    if (bits == 4) {
        size_t i = 0;
        for (; i + 2 <= len; i += 2) out[i / 2] = (uint8_t)(c[i] | c[i + 1] << 4);
        if (i < len) out[i / 2] = c[i];
    } else {
        size_t i = 0;
        for (; i + 4 <= len; i += 4) out[i / 4] = (uint8_t)(c[i] | c[i + 1] << 2 | c[i + 2] << 4 | c[i + 3] << 6);
        if (i < len) {
            uint8_t b = 0;
            for (size_t k = 0; i + k < len; k++) b |= (uint8_t)(c[i + k] << (2 * k));
            out[i / 4] = b;
        }
    }
}

static void unpack(const uint8_t *restrict p, size_t len, int bits, uint8_t *restrict c) {
    if (bits == 4) {
        size_t i = 0;
        for (; i + 2 <= len; i += 2) {
            c[i] = p[i / 2] & 15;
            c[i + 1] = p[i / 2] >> 4;
        }
        if (i < len) c[i] = p[i / 2] & 15;
    } else {
        size_t i = 0;
        for (; i + 4 <= len; i += 4) {
            uint8_t b = p[i / 4];
            c[i] = b & 3;
            c[i + 1] = (b >> 2) & 3;
            c[i + 2] = (b >> 4) & 3;
            c[i + 3] = b >> 6;
        }
        for (size_t k = 0; i + k < len; k++) c[i + k] = (p[i / 4] >> (2 * k)) & 3;
    }
}

static size_t nblocks(size_t m, uint64_t block) {
    if (m == 0) return 0;
    return block ? (size_t)((m - 1) / block + 1) : 1;
}

static int quant_encode(const fc_stage *s, fc_keys keys, const float *v, size_t m, uint8_t *p) {
    int bits = s->bits;
    size_t bs = s->block ? s->block : (m ? m : 1);
    size_t nb = nblocks(m, s->block);
    float L = (float)((1u << bits) - 1), M = (float)((1u << (bits - 1)) - 1);
    size_t sw = s->absmax ? 4 : 8;
    uint8_t *codes = p + nb * sw;
    for (size_t j = 0; j < nb; j++) {
        size_t b0 = j * bs, len = m - b0 < bs ? m - b0 : bs;
        if (s->absmax) {
            float step = absmax(v + b0, len) / M;
            fc_putf(p + j * 4, step >= FLT_MIN ? step : 0.0f);
        } else {
            float lo, hi;
            minmax(v + b0, len, &lo, &hi);
            float step = (float)(((double)hi - (double)lo) / L);
            fc_putf(p + j * 8, lo);
            fc_putf(p + j * 8 + 4, step >= FLT_MIN ? step : 0.0f);
        }
    }
    uint8_t tmp[CHUNK];
    for (size_t c0 = 0; c0 < m; c0 += CHUNK) {
        size_t c1 = m - c0 < CHUNK ? m : c0 + CHUNK;
        uint8_t *q = bits == 8 ? codes + c0 : tmp;
        for (size_t i = c0; i < c1;) {
            size_t j = i / bs;
            size_t e = (j + 1) * bs < c1 ? (j + 1) * bs : c1;
            e = seg_end(i, e);
            uint32_t k1 = seg_key(keys, i);
            if (s->absmax) {
                float step = fc_getf(p + j * 4);
                codes_absmax(v + i, e - i, (uint32_t)i, keys.k0, k1, step > 0 ? 1.0f / step : 0.0f, M, q + (i - c0));
            } else {
                float lo = fc_getf(p + j * 8), step = fc_getf(p + j * 8 + 4);
                codes_minmax(v + i, e - i, (uint32_t)i, keys.k0, k1, lo, step > 0 ? 1.0f / step : 0.0f, L,
                             q + (i - c0));
            }
            i = e;
        }
        if (bits != 8) pack(tmp, c1 - c0, bits, codes + c0 * (size_t)bits / 8);
    }
    return 0;
}

static int quant_decode(const fc_rec *r, float *out, size_t m) {
    int bits = r->a;
    if (bits != 8 && bits != 4 && bits != 2)
        return fed_error(FED_EFORMAT, "codec: quant record has %d bits (allowed 8, 4, 2)", bits);
    if (r->b > 1) return fed_error(FED_EFORMAT, "codec: quant record has scaling mode %u (allowed 0 minmax, 1 absmax)", r->b);
    if (r->aux != 0) return fed_error(FED_EFORMAT, "codec: quant record has a non-zero aux field");
    int abs_mode = r->b;
    size_t bs = r->c ? r->c : (m ? m : 1);
    size_t nb = nblocks(m, r->c);
    size_t sw = abs_mode ? 4 : 8;
    size_t code_bytes = m / 8 * (size_t)bits + ((m % 8) * (size_t)bits + 7) / 8;
    if (r->plen != nb * sw + code_bytes)
        return fed_error(FED_EFORMAT, "codec: quant payload is %llu bytes, expected %zu for %zu values",
                         (unsigned long long)r->plen, nb * sw + code_bytes, m);
    float L = (float)((1u << bits) - 1), M = (float)((1u << (bits - 1)) - 1);
    const uint8_t *p = r->payload, *codes = p + nb * sw;
    for (size_t j = 0; j < nb; j++) {
        float lo = abs_mode ? 0.0f : fc_getf(p + j * sw), step = fc_getf(p + j * sw + (abs_mode ? 0 : 4));
        float top = abs_mode ? M * step : lo + L * step;
        if (!isfinite(lo) || !(step >= 0) || !isfinite(step) || !isfinite(top))
            return fed_error(FED_EFORMAT, "codec: quant block %zu has a bad scale (lo %g, step %g)", j, lo, step);
    }
    if (bits != 8 && (m * (size_t)bits) % 8) {
        uint8_t last = codes[code_bytes - 1];
        if (last >> ((m * (size_t)bits) % 8))
            return fed_error(FED_EFORMAT, "codec: quant payload has non-zero padding bits");
    }
    uint8_t tmp[CHUNK];
    unsigned maxcode = 0;
    for (size_t c0 = 0; c0 < m; c0 += CHUNK) {
        size_t c1 = m - c0 < CHUNK ? m : c0 + CHUNK;
        const uint8_t *q = codes + c0;
        if (bits != 8) {
            unpack(codes + c0 * (size_t)bits / 8, c1 - c0, bits, tmp);
            q = tmp;
        }
        if (abs_mode) {
            uint8_t mx = 0;
            for (size_t i = 0; i < c1 - c0; i++) mx = q[i] > mx ? q[i] : mx;
            if (mx > maxcode) maxcode = mx;
        }
        for (size_t i = c0; i < c1;) {
            size_t j = i / bs;
            size_t e = (j + 1) * bs < c1 ? (j + 1) * bs : c1;
            if (abs_mode)
                deq_absmax(q + (i - c0), e - i, M, fc_getf(p + j * 4), out + i);
            else
                deq_minmax(q + (i - c0), e - i, fc_getf(p + j * 8), fc_getf(p + j * 8 + 4), out + i);
            i = e;
        }
    }
    if (abs_mode && maxcode > 2 * (unsigned)M)
        return fed_error(FED_EFORMAT, "codec: quant code %u out of range for absmax %d-bit (max %u)", maxcode, bits,
                         2 * (unsigned)M);
    return 0;
}

/* ---- QSGD ----------------------------------------------------------------- */

static int qsgd_width(uint32_t s) {
    int w = 0;
    while ((1ull << w) < 2ull * s + 1) w++;
    return w;
}

/* code = s + sign(x) l, l = floor(s |x| / norm + u) in [0, s]: E[l] = s |x| / norm (eq. 1). */
static void qsgd_codes(const float *restrict v, size_t len, uint32_t base, uint32_t k0, uint32_t k1, float scale,
                       float fs, uint32_t S, uint32_t *restrict out) {
    for (size_t i = 0; i < len; i++) {
        float r = fabsf(v[i]) * scale + unif(base + (uint32_t)i, k0, k1);
        r = r < fs ? r : fs;
        int32_t l = (int32_t)r;
        out[i] = (uint32_t)((int32_t)S + (v[i] < 0 ? -l : l));
    }
}

static int qsgd_encode(const fc_stage *s, fc_keys keys, const float *v, size_t m, uint8_t *p) {
    uint32_t S = s->levels;
    int w = qsgd_width(S);
    size_t bs = s->bucket ? (size_t)s->bucket : (m ? m : 1);
    size_t nb = nblocks(m, s->bucket);
    uint8_t *codes = p + nb * 4;
    uint64_t acc = 0;
    int nacc = 0;
    size_t o = 0;
    float fs = (float)S;
    uint32_t tmp[CHUNK];
    for (size_t j = 0; j < nb; j++) {
        size_t b0 = j * bs, len = m - b0 < bs ? m - b0 : bs;
        float norm = (float)sqrt(sum_sq(v + b0, len));
        if (!isfinite(norm)) return fed_error(FED_EINVAL, "codec: qsgd bucket %zu has a norm beyond float range", j);
        if (norm < FLT_MIN) norm = 0; /* s / norm would overflow; the bucket is < 1e-38 anyway */
        fc_putf(p + j * 4, norm);
        float scale = norm > 0 ? fs / norm : 0.0f;
        for (size_t c0 = b0; c0 < b0 + len;) {
            size_t c1 = b0 + len - c0 < CHUNK ? b0 + len : c0 + CHUNK;
            c1 = seg_end(c0, c1);
            qsgd_codes(v + c0, c1 - c0, (uint32_t)c0, keys.k0, seg_key(keys, c0), scale, fs, S, tmp);
            for (size_t i = 0; i < c1 - c0; i++) {
                acc |= (uint64_t)tmp[i] << nacc;
                nacc += w;
                if (nacc >= 32) {
                    fc_put32(codes + o, (uint32_t)acc);
                    o += 4;
                    acc >>= 32;
                    nacc -= 32;
                }
            }
            c0 = c1;
        }
    }
    while (nacc > 0) {
        codes[o++] = (uint8_t)acc;
        acc >>= 8;
        nacc -= 8;
    }
    return 0;
}

static int qsgd_decode(const fc_rec *r, float *out, size_t m) {
    uint32_t S = r->c;
    if (S < 1 || S > FC_QSGD_MAX_LEVELS)
        return fed_error(FED_EFORMAT, "codec: qsgd record has %u levels (allowed 1..%u)", S, FC_QSGD_MAX_LEVELS);
    if (r->a || r->b) return fed_error(FED_EFORMAT, "codec: qsgd record has non-zero reserved fields");
    int w = qsgd_width(S);
    size_t bs = r->aux ? (size_t)r->aux : (m ? m : 1);
    if (r->aux > m && m > 0) bs = m;
    size_t nb = nblocks(m, r->aux);
    size_t code_bytes = (m / 8) * (size_t)w + ((m % 8) * (size_t)w + 7) / 8;
    if (r->plen != nb * 4 + code_bytes)
        return fed_error(FED_EFORMAT, "codec: qsgd payload is %llu bytes, expected %zu for %zu values",
                         (unsigned long long)r->plen, nb * 4 + code_bytes, m);
    const uint8_t *p = r->payload, *codes = p + nb * 4;
    for (size_t j = 0; j < nb; j++) {
        float norm = fc_getf(p + j * 4);
        if (!(norm >= 0) || !isfinite(norm))
            return fed_error(FED_EFORMAT, "codec: qsgd bucket %zu has a bad norm %g", j, norm);
    }
    uint64_t acc = 0;
    int nacc = 0;
    size_t o = 0;
    uint32_t mask = (1u << w) - 1;
    for (size_t j = 0; j < nb; j++) {
        size_t b0 = j * bs, len = m - b0 < bs ? m - b0 : bs;
        float unit = fc_getf(p + j * 4) / (float)S;
        for (size_t i = b0; i < b0 + len; i++) {
            while (nacc < w) {
                acc |= (uint64_t)codes[o++] << nacc;
                nacc += 8;
            }
            uint32_t code = (uint32_t)acc & mask;
            acc >>= w;
            nacc -= w;
            if (code > 2 * S)
                return fed_error(FED_EFORMAT, "codec: qsgd code %u at %zu out of range (max %u)", code, i, 2 * S);
            out[i] = (float)((int32_t)code - (int32_t)S) * unit;
        }
    }
    if (acc != 0) return fed_error(FED_EFORMAT, "codec: qsgd payload has non-zero padding bits");
    return 0;
}

/* ---- sign ---------------------------------------------------------------- */

static int sign_encode(const float *v, size_t m, uint8_t *p) {
    float scale = m ? (float)(sum_abs(v, m) / (double)m) : 0.0f;
    fc_putf(p, scale);
    uint8_t *bits = p + 4;
    size_t i = 0;
    for (; i + 8 <= m; i += 8) {
        uint8_t b = 0;
        for (int k = 0; k < 8; k++) b |= (uint8_t)((v[i + k] < 0) << k);
        bits[i / 8] = b;
    }
    if (i < m) {
        uint8_t b = 0;
        for (size_t k = 0; i + k < m; k++) b |= (uint8_t)((v[i + k] < 0) << k);
        bits[i / 8] = b;
    }
    return 0;
}

static int sign_decode(const fc_rec *r, float *out, size_t m) {
    if (r->a || r->b || r->c || r->aux) return fed_error(FED_EFORMAT, "codec: sign record has non-zero reserved fields");
    if (r->plen != 4 + (m + 7) / 8)
        return fed_error(FED_EFORMAT, "codec: sign payload is %llu bytes, expected %zu for %zu values",
                         (unsigned long long)r->plen, 4 + (m + 7) / 8, m);
    float scale = fc_getf(r->payload);
    if (!(scale >= 0) || !isfinite(scale)) return fed_error(FED_EFORMAT, "codec: sign scale %g is not a finite value >= 0", scale);
    const uint8_t *bits = r->payload + 4;
    if (m % 8 && (bits[m / 8] >> (m % 8))) return fed_error(FED_EFORMAT, "codec: sign payload has non-zero padding bits");
    /* the bit is the float's sign bit: out = scale with sign (branch-free, vectorizes) */
    uint32_t sb;
    memcpy(&sb, &scale, 4);
    size_t i = 0;
    for (; i + 8 <= m; i += 8) {
        uint32_t byte = bits[i / 8];
        for (int k = 0; k < 8; k++) {
            uint32_t w = sb | (((byte >> k) & 1u) << 31);
            memcpy(&out[i + k], &w, 4);
        }
    }
    for (; i < m; i++) out[i] = (bits[i / 8] >> (i % 8)) & 1 ? -scale : scale;
    return 0;
}

/* ---- dispatch ------------------------------------------------------------ */

size_t fc_value_payload_size(const fc_stage *s, size_t m) {
    if (m > SIZE_MAX / 16) return SIZE_MAX;
    switch (s->id) {
    case FC_QUANT: return nblocks(m, s->block) * (s->absmax ? 4 : 8) + (m * (size_t)s->bits + 7) / 8;
    case FC_QSGD: return nblocks(m, s->bucket) * 4 + (m * (size_t)qsgd_width(s->levels) + 7) / 8;
    case FC_SIGN: return 4 + (m + 7) / 8;
    default: return m * 4;
    }
}

void fc_value_fields(const fc_stage *s, uint8_t *a, uint8_t *b, uint32_t *c, uint64_t *aux) {
    *a = *b = 0;
    *c = 0;
    *aux = 0;
    if (s->id == FC_QUANT) {
        *a = (uint8_t)s->bits;
        *b = (uint8_t)s->absmax;
        *c = s->block;
    } else if (s->id == FC_QSGD) {
        *c = s->levels;
        *aux = s->bucket;
    }
}

int fc_value_encode(const fc_stage *s, fc_keys keys, const float *v, size_t m, uint8_t *payload) {
    switch (s->id) {
    case FC_QUANT: return quant_encode(s, keys, v, m, payload);
    case FC_QSGD: return qsgd_encode(s, keys, v, m, payload);
    case FC_SIGN: return sign_encode(v, m, payload);
    default:
        if (m) memcpy(payload, v, m * 4);
        return 0;
    }
}

int fc_value_decode(const fc_rec *r, float *out, size_t m) {
    if (r->count != m)
        return fed_error(FED_EFORMAT, "codec: value record holds %llu values, expected %zu", (unsigned long long)r->count, m);
    switch (r->id) {
    case FC_QUANT: return quant_decode(r, out, m);
    case FC_QSGD: return qsgd_decode(r, out, m);
    case FC_SIGN: return sign_decode(r, out, m);
    case FC_F32:
        if (r->a || r->b || r->c || r->aux) return fed_error(FED_EFORMAT, "codec: f32 record has non-zero reserved fields");
        if (r->plen != (uint64_t)m * 4)
            return fed_error(FED_EFORMAT, "codec: f32 payload is %llu bytes, expected %zu", (unsigned long long)r->plen,
                             m * 4);
        if (m) memcpy(out, r->payload, m * 4);
        for (size_t i = 0; i < m; i++)
            if (!isfinite(out[i])) return fed_error(FED_EFORMAT, "codec: f32 value %zu is not finite", i);
        return 0;
    default:
        return fed_error(FED_EFORMAT, "codec: record id %u is not a value coder (expected f32, quant, qsgd or sign)", r->id);
    }
}
