/* Update compression: a chain of codecs that turns a flat float vector (a model
 * update) into bytes and back — quantization, QSGD, sign, top-k / random-k
 * sparsification with error feedback, and a lossless zstd frame on top.
 *
 * ---- Spec grammar (the `compression` string of the YAML config) -----------
 *
 *   spec   := "" | stage ("," stage)*
 *   stage  := name (":" param)*
 *   param  := key "=" value | value          (a bare value is the stage's main parameter)
 *
 * A comma-separated token of the form key=value whose key is not a codec name
 * continues the previous stage, so "qsgd:levels=16,bucket=512" and
 * "qsgd:levels=16:bucket=512" are the same chain. At most one stage of each
 * kind, in this order:
 *
 *   sparsifier (optional)
 *     topk:F | topk:K        the k largest |x| (F in (0,1] a fraction when the value
 *                            has a '.', 'e' or '%'; K >= 1 an integer count);
 *                            keys frac=, k=. Biased: use it with error feedback.
 *     randk:F | randk:K      k coordinates drawn uniformly without replacement
 *                            from the (seed, round, client, FED_RNG_QUANT) stream,
 *                            decoded values scaled by n/k (unbiased). The indices
 *                            are not sent: the frame carries a 64-bit key drawn
 *                            from that stream and the decoder redraws them from
 *                            it. Unbiased but not contractive: call it with
 *                            residual = NULL (error feedback with it can diverge).
 *   value coder (optional; raw little-endian float32 when absent)
 *     q8 | q4 | q2           uniform quantization to 8/4/2 bits, stochastic
 *                            rounding (unbiased). block=N: one scale per N values
 *                            (0, the default: one scale for the whole vector);
 *                            scale=minmax (default: 2^b levels from min to max) or
 *                            scale=absmax (2^b - 1 levels symmetric around an exact
 *                            0, step = max|x| / (2^(b-1) - 1)).
 *     qsgd                   QSGD (Alistarh et al. 2017, eq. 1-2): per bucket of
 *                            `bucket` values (default 512; 0 = whole vector) the
 *                            L2 norm, and each value as sign * norm * l / s with l
 *                            a stochastic rounding of s|x|/norm. levels=s (default
 *                            16, 1..32767; also qsgd:S). Codes (s + signed level)
 *                            packed in ceil(log2(2s+1)) bits.
 *     sign                   EF-signSGD (Karimireddy et al. 2019, Alg. 1): one bit
 *                            per value and scale = mean |x| of the (error-corrected)
 *                            vector. Biased: use it with error feedback.
 *     f32                    raw float32 (also "none"); the default.
 *   lossless wrapper (optional, last)
 *     zstd[:level=L]         zstd frame over everything before (level default 3,
 *                            -7 .. 19).
 *
 * Examples: "topk:0.01,q8,zstd", "q8:block=256,zstd", "sign,zstd", "qsgd:levels=16",
 * "zstd" (lossless), "" (raw float32).
 *
 * ---- Wire format (all integers little-endian, floats IEEE-754 binary32 LE) ----
 *
 *   frame  := "FDC" 0x01 | flags u8 (bit 0: delta against a previous copy) |
 *             nstages u8 | reserved u16 = 0 | n u64 (dense length)       16 bytes
 *             then the stage records in decoding order, nothing after them.
 *   record := id u8 | version u8 (= 1) | a u8 | b u8 | c u32 | count u64 |
 *             aux u64 | payload_len u64                                    32 bytes
 *             then payload_len bytes of payload.
 *
 *   id 7 zstd   a = level (int8), aux = decompressed length, payload = one zstd
 *               frame whose content is the remaining records. First if present.
 *   id 5 topk   a = index coding (0: LEB128 varints of the gaps idx[i]-idx[i-1]-1,
 *               first gap = idx[0]; 1: bitmap of count bits, LSB first), aux = k,
 *               count = n; payload = the indices (strictly increasing). The next
 *               record is the value coder's, with count = k.
 *   id 6 randk  a = 2 (indices redrawn from a key), aux = k, payload = key u64.
 *   id 1 f32    payload = count floats.
 *   id 2 quant  a = bits (8, 4, 2), b = 0 minmax / 1 absmax, c = block (0 = one
 *               block); payload = per block (lo f32, step f32) for minmax or
 *               (step f32) for absmax, then the codes packed LSB first,
 *               ceil(count * bits / 8) bytes. Value = lo + q * step (minmax) or
 *               (q - (2^(b-1) - 1)) * step (absmax, q <= 2^b - 2).
 *   id 3 qsgd   c = levels s, aux = bucket (0 = one bucket); payload = per bucket
 *               the norm f32, then codes q in [0, 2s] packed LSB first in
 *               w = ceil(log2(2s+1)) bits; value = norm * (q - s) / s.
 *   id 4 sign   payload = scale f32, then count bits LSB first (1 = negative);
 *               value = +-scale.
 *
 * Decoding checks every field against the expected n passed by the caller:
 * counts, lengths, code ranges, index order, finite scales, unused bits zero
 * and no trailing bytes. Anything else is FED_EFORMAT with the reason in
 * fed_last_error(); allocations are bounded by a small multiple of n.
 *
 * ---- Determinism and threads ----
 * The stochastic parts draw from the counter-based stream (ctx->seed, ctx->round,
 * ctx->client, FED_RNG_QUANT): its first two words key the rounding draws,
 * u(i) = (fmix32(fmix32(i ^ k0) + k1) >> 8) / 2^24 for value i (a keyed
 * bijection of the index, so the loops vectorize and every index has its own
 * uniform draw; k1 also mixes in i >> 32), and
 * its next 64 bits are random-k's key (indices = Floyd's sample from the stream
 * (key, 0, 0, FED_RNG_QUANT)). The same context and input give identical bytes
 * on any machine, compiler and thread count (zstd's own output may change
 * between libzstd versions; the decoded values do not). A codec is immutable
 * after fed_codec_new; concurrent encodes/decodes with one codec are safe
 * (scratch is per call). */
#ifndef FEDERATE_COMPRESS_H
#define FEDERATE_COMPRESS_H
#include <stddef.h>
#include <stdint.h>

typedef struct fed_codec fed_codec;

/* Who encodes and when: the address of the random stream. NULL means all zero. */
typedef struct fed_codec_ctx {
    uint64_t seed;
    uint64_t round;
    uint64_t client;
} fed_codec_ctx;

/* Parses a spec (grammar above). On error *out = NULL and the message names the
 * bad token and lists the allowed ones. */
int fed_codec_new(fed_codec **out, const char *spec);
void fed_codec_free(fed_codec *c);
/* Canonical spec with every parameter spelled out (parses back to the same
 * codec); recorded in the store next to a run. */
const char *fed_codec_spec(const fed_codec *c);
/* 1 when decode(encode(x)) == x bit for bit (only f32 and zstd stages). */
int fed_codec_is_lossless(const fed_codec *c);

/* Encodes x[0..n). *buf is malloc'd (free() it) and *len set.
 * residual: NULL, or n floats of error-feedback state kept by the caller between
 * rounds (zeros at first): the codec encodes e = x + residual and leaves
 * residual = e - decode(encoded), i.e. what was not sent (Stich et al. 2018;
 * Karimireddy et al. 2019). Error feedback needs a contractive chain: topk,
 * sign, q8/q4/q2, qsgd with levels^2 >= bucket; with randk (or a coarser qsgd)
 * the residual can grow without bound, so pass NULL there. The residual is the
 * caller's to keep per client (e.g. in fed_client_state).
 * Values must be finite with |x| < 2^127, else FED_EINVAL (before anything is
 * written to residual). */
int fed_codec_encode(const fed_codec *c, const fed_codec_ctx *ctx, const float *x, size_t n, float *residual,
                     uint8_t **buf, size_t *len);
/* Decodes a frame of exactly n values into out. c may be NULL (any chain is
 * accepted, the frame describes itself); otherwise the frame's stages must be
 * the codec's. A delta frame (see below) is FED_EFORMAT here. */
int fed_codec_decode(const fed_codec *c, const uint8_t *buf, size_t len, float *out, size_t n);

/* Download compression of the global model: encodes current - previous (a delta
 * frame) when previous is not NULL, else current itself. previous must be the
 * copy the client holds — for a lossy chain, what it decoded last time, not the
 * exact old model — so the two sides never drift apart: each delta then also
 * carries what earlier frames left out, so pass residual = NULL here (a
 * residual on top would count that error twice). */
int fed_codec_encode_model(const fed_codec *c, const fed_codec_ctx *ctx, const float *current, const float *previous,
                           size_t n, float *residual, uint8_t **buf, size_t *len);
/* Client side: out = previous + delta for a delta frame (previous required),
 * or the model itself for a full frame (previous ignored). out may alias previous. */
int fed_codec_decode_model(const fed_codec *c, const uint8_t *buf, size_t len, const float *previous, float *out,
                           size_t n);
/* 1 if the frame header says delta, 0 if not, FED_EFORMAT if it is no frame. */
int fed_codec_frame_is_delta(const uint8_t *buf, size_t len);

#endif
