/* libFuzzer entry point for the update codecs (federate/compress.h), whose
 * decoder reads bytes uploaded by clients. The first input byte picks the
 * expected length and the codec the frame is checked against; the rest is the
 * frame. The same bytes, read as floats, also go through every encoder, whose
 * output must decode. Build (libzstd is linked uninstrumented, which is fine):
 *   clang -std=c17 -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Iinclude -Isrc \
 *     src/core/error.c src/core/rng.c src/compress/codec.c src/compress/quant.c \
 *     src/compress/sparse.c tests/fuzz/fuzz_codec.c -lzstd -lm -o fuzz_codec
 *   ./fuzz_codec -max_total_time=60 tests/fuzz/corpus/codec */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "federate/compress.h"
#include "federate/error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const size_t lengths[8] = {0, 1, 7, 8, 64, 301, 1000, 4099};
static const char *const specs[8] = {NULL, "q8,zstd", "topk:0.05,q8", "qsgd:levels=5:bucket=7",
                                     "sign,zstd", "randk:0.1,q4", "q2:absmax:block=16", "topk:0.5,zstd"};
static fed_codec *codecs[8];

static void check_decoded(const float *out, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(out[i])) __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    if (!codecs[1])
        for (int i = 1; i < 8; i++)
            if (fed_codec_new(&codecs[i], specs[i])) __builtin_trap();
    size_t n = lengths[data[0] & 7];
    const fed_codec *c = codecs[(data[0] >> 3) & 7];
    const uint8_t *frame = data + 1;
    size_t len = size - 1;
    float *out = malloc((n ? n : 1) * sizeof *out);
    float *prev = calloc(n ? n : 1, sizeof *prev);
    if (!out || !prev) __builtin_trap();

    fed_clear_error();
    int rc = fed_codec_decode(c, frame, len, out, n);
    if (rc == 0) check_decoded(out, n);
    else if (rc != FED_EFORMAT || fed_last_error()[0] == '\0') __builtin_trap();
    rc = fed_codec_decode_model(c, frame, len, prev, out, n);
    if (rc == 0) check_decoded(out, n);
    else if (rc != FED_EFORMAT && rc != FED_EINVAL) __builtin_trap();

    /* the bytes as a vector: every encoder either refuses it (non-finite) or
     * produces a frame that decodes, with a residual that stays finite */
    size_t m = len / 4;
    if (m > 0 && m <= 4096) {
        float *x = malloc(m * sizeof *x), *y = malloc(m * sizeof *y), *res = calloc(m, sizeof *res);
        if (!x || !y || !res) __builtin_trap();
        memcpy(x, frame, m * 4);
        for (int i = 1; i < 8; i++) {
            uint8_t *buf = NULL;
            size_t bl = 0;
            fed_codec_ctx ctx = {data[0], 1, 2};
            rc = fed_codec_encode(codecs[i], &ctx, x, m, res, &buf, &bl);
            if (rc == 0) {
                if (fed_codec_decode(codecs[i], buf, bl, y, m) != 0) __builtin_trap();
                check_decoded(y, m);
                memset(res, 0, m * sizeof *res);
            } else if (rc != FED_EINVAL || buf != NULL) {
                __builtin_trap();
            }
            free(buf);
        }
        free(x);
        free(y);
        free(res);
    }
    free(out);
    free(prev);
    return 0;
}
