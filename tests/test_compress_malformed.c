/* Update codecs: bytes from the network. Every truncation of a valid frame,
 * random byte changes (also inside the zstd layer, re-compressed), and crafted
 * headers (huge counts, decompression bombs, bad scales, index overflows) either
 * decode to finite values or return FED_EFORMAT with a message — never a crash,
 * an out-of-bounds read or an allocation beyond a small multiple of n. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>
#include "check.h"
#include "federate/compress.h"
#include "federate/error.h"
#include "federate/rng.h"

#define N 301

static const char *const specs[] = {"q8",           "q4:block=16",   "q2:absmax", "qsgd:levels=5:bucket=7",
                                    "sign",         "topk:0.05,q8",  "topk:0.5",  "randk:0.1,q4",
                                    "f32",          "q8,zstd",       "topk:0.02,sign,zstd", "qsgd,zstd:1"};
#define NSPECS (sizeof specs / sizeof *specs)

static float g_x[N];

static int try_decode(const uint8_t *buf, size_t len) {
    /* exact-size copies so any overread or overwrite is caught under ASan */
    uint8_t *b = malloc(len ? len : 1);
    float *out = malloc(N * sizeof *out);
    memcpy(b, buf, len);
    fed_clear_error();
    int rc = fed_codec_decode(NULL, b, len, out, N);
    if (rc == 0) {
        for (int i = 0; i < N; i++) CHECK(isfinite(out[i]));
    } else {
        CHECK_EQ_INT(rc, FED_EFORMAT);
        CHECK(fed_last_error()[0] != '\0');
    }
    free(b);
    free(out);
    return rc;
}

static void encode(const char *spec, uint8_t **buf, size_t *len) {
    fed_codec *c;
    CHECK_OK(fed_codec_new(&c, spec));
    fed_codec_ctx ctx = {1, 2, 3};
    CHECK_OK(fed_codec_encode(c, &ctx, g_x, N, NULL, buf, len));
    fed_codec_free(c);
}

static void truncations_and_flips(fed_rng *r) {
    for (size_t s = 0; s < NSPECS; s++) {
        uint8_t *buf;
        size_t len;
        encode(specs[s], &buf, &len);
        CHECK_EQ_INT(try_decode(buf, len), 0);
        for (size_t l = 0; l < len; l++) CHECK_EQ_INT(try_decode(buf, l), FED_EFORMAT);
        uint8_t *longer = malloc(len + 1);
        memcpy(longer, buf, len);
        longer[len] = 0;
        CHECK_EQ_INT(try_decode(longer, len + 1), FED_EFORMAT);
        free(longer);
        uint8_t *m = malloc(len);
        int ok = 0;
        for (int t = 0; t < 3000; t++) {
            memcpy(m, buf, len);
            int flips = 1 + (int)fed_rng_below(r, 4);
            for (int f = 0; f < flips; f++) {
                /* half of the changes hit the headers, where the checks are */
                size_t pos = fed_rng_below(r, 2) ? fed_rng_below(r, (uint32_t)(len < 120 ? len : 120))
                                                 : fed_rng_below(r, (uint32_t)len);
                m[pos] = fed_rng_below(r, 3) ? (uint8_t)fed_rng_u32(r) : (uint8_t)(m[pos] ^ (1u << fed_rng_below(r, 8)));
            }
            ok += try_decode(m, len) == 0;
        }
        (void)ok; /* payload changes often decode (to other finite values): that is fine */
        free(m);
        free(buf);
    }
}

/* Changes under the zstd layer: mutate the inner records, compress them again. */
static void inner_flips(fed_rng *r) {
    const char *inner[] = {"topk:0.05,q8", "q4:block=16", "randk:0.1,qsgd:levels=3", "topk:0.5,sign"};
    for (size_t s = 0; s < sizeof inner / sizeof *inner; s++) {
        uint8_t *buf;
        size_t len;
        encode(inner[s], &buf, &len);
        size_t blen = len - 16;
        uint8_t *body = malloc(blen);
        size_t cap = 16 + 32 + ZSTD_compressBound(blen);
        uint8_t *frame = malloc(cap);
        for (int t = 0; t < 1000; t++) {
            memcpy(body, buf + 16, blen);
            int flips = 1 + (int)fed_rng_below(r, 3);
            for (int f = 0; f < flips; f++) body[fed_rng_below(r, (uint32_t)(blen < 100 ? blen : 100))] = (uint8_t)fed_rng_u32(r);
            memcpy(frame, buf, 16);
            frame[5] = (uint8_t)(frame[5] + 1);
            size_t zl = ZSTD_compress(frame + 48, cap - 48, body, blen, 1);
            CHECK(!ZSTD_isError(zl));
            uint8_t rec[32] = {7, 1, 1, 0};
            uint64_t n = N, aux = blen, pl = zl;
            memcpy(rec + 8, &n, 8);
            memcpy(rec + 16, &aux, 8);
            memcpy(rec + 24, &pl, 8);
            memcpy(frame + 16, rec, 32);
            try_decode(frame, 48 + zl);
        }
        free(body);
        free(frame);
        free(buf);
    }
}

static void put_rec(uint8_t *p, uint8_t id, uint8_t a, uint8_t b, uint32_t c, uint64_t count, uint64_t aux,
                    uint64_t plen) {
    p[0] = id;
    p[1] = 1;
    p[2] = a;
    p[3] = b;
    memcpy(p + 4, &c, 4);
    memcpy(p + 8, &count, 8);
    memcpy(p + 16, &aux, 8);
    memcpy(p + 24, &plen, 8);
}

static void put_frame(uint8_t *p, int nst, uint64_t n) {
    memcpy(p, "FDC\1", 4);
    p[4] = 0;
    p[5] = (uint8_t)nst;
    p[6] = p[7] = 0;
    memcpy(p + 8, &n, 8);
}

static void expect_format(const uint8_t *buf, size_t len, const char *words) {
    CHECK_EQ_INT(try_decode(buf, len), FED_EFORMAT);
    if (!strstr(fed_last_error(), words)) {
        fprintf(stderr, "message '%s' lacks '%s'\n", fed_last_error(), words);
        exit(1);
    }
}

static void crafted(void) {
    static uint8_t b[4096];
    /* not a frame */
    expect_format((const uint8_t *)"hello world, not a frame", 24, "magic");
    /* n of the frame differs from the caller's */
    put_frame(b, 1, 1ull << 60);
    put_rec(b + 16, 1, 0, 0, 0, 1ull << 60, 0, 0);
    expect_format(b, 48, "expected 301");
    /* payload length beyond the buffer */
    put_frame(b, 1, N);
    put_rec(b + 16, 1, 0, 0, 0, N, 0, UINT64_MAX);
    expect_format(b, 48 + 4 * N, "truncated");
    /* f32 with a NaN */
    put_rec(b + 16, 1, 0, 0, 0, N, 0, 4 * N);
    memset(b + 48, 0, 4 * N);
    float nan = NAN;
    memcpy(b + 48 + 8, &nan, 4);
    expect_format(b, 48 + 4 * N, "not finite");
    /* quant with an infinite step */
    put_rec(b + 16, 2, 8, 0, 0, N, 0, 8 + N);
    float lo = 0, step = INFINITY;
    memcpy(b + 48, &lo, 4);
    memcpy(b + 52, &step, 4);
    expect_format(b, 48 + 8 + N, "bad scale");
    /* quant with 3 bits */
    put_rec(b + 16, 2, 3, 0, 0, N, 0, 8 + N);
    expect_format(b, 48 + 8 + N, "bits");
    /* absmax code out of range (255 > 254) */
    put_rec(b + 16, 2, 8, 1, 0, N, 0, 4 + N);
    step = 1;
    memcpy(b + 48, &step, 4);
    memset(b + 52, 0xff, N);
    expect_format(b, 48 + 4 + N, "out of range");
    /* top-k claiming k > n */
    put_frame(b, 2, N);
    put_rec(b + 16, 5, 0, 0, 0, N, N + 1, 0);
    put_rec(b + 48, 1, 0, 0, 0, N + 1, 0, 4 * (N + 1));
    expect_format(b, 80 + 4 * (N + 1), "k = 302");
    /* top-k: a gap varint that overflows 64 bits */
    put_rec(b + 16, 5, 0, 0, 0, N, 1, 11);
    memset(b + 48, 0xff, 10);
    b[58] = 0x01;
    put_rec(b + 59, 1, 0, 0, 0, 1, 0, 4);
    memset(b + 91, 0, 4);
    expect_format(b, 95, "overflows");
    /* top-k: an index beyond n */
    put_rec(b + 16, 5, 0, 0, 0, N, 1, 2);
    b[48] = 0xad; /* 301 = 0x12d: 0xad 0x02 */
    b[49] = 0x02;
    put_rec(b + 50, 1, 0, 0, 0, 1, 0, 4);
    memset(b + 82, 0, 4);
    expect_format(b, 86, "beyond");
    b[48] = 0xac; /* 300: valid */
    CHECK_EQ_INT(try_decode(b, 86), 0);
    /* top-k: decreasing is impossible with gaps, but a bitmap with too many bits is not */
    put_rec(b + 16, 5, 1, 0, 0, N, 2, (N + 7) / 8);
    memset(b + 48, 0, (N + 7) / 8);
    b[48] = 7;
    put_rec(b + 48 + (N + 7) / 8, 1, 0, 0, 0, 2, 0, 8);
    memset(b + 80 + (N + 7) / 8, 0, 8);
    expect_format(b, 88 + (N + 7) / 8, "more than 2");
    /* decompression bomb: 64 MB of zeros claimed for 301 values */
    size_t big = 64u << 20;
    uint8_t *zeros = calloc(big, 1);
    size_t zcap = ZSTD_compressBound(big);
    uint8_t *z = malloc(48 + zcap);
    size_t zl = ZSTD_compress(z + 48, zcap, zeros, big, 1);
    CHECK(!ZSTD_isError(zl));
    put_frame(z, 2, N);
    put_rec(z + 16, 7, 1, 0, 0, N, big, zl);
    expect_format(z, 48 + zl, "more than");
    /* ... and lying about its size: the zstd header says 64 MB */
    put_rec(z + 16, 7, 1, 0, 0, N, 1000, zl);
    expect_format(z, 48 + zl, "zstd frame header");
    free(zeros);
    free(z);
    /* zstd inside zstd */
    put_frame(b, 3, N);
    uint8_t inner[32];
    put_rec(inner, 7, 0, 0, 0, N, 0, 0);
    zl = ZSTD_compress(b + 48, sizeof b - 48, inner, 32, 1);
    put_rec(b + 16, 7, 0, 0, 0, N, 32, zl);
    CHECK_EQ_INT(try_decode(b, 48 + zl), FED_EFORMAT);
    /* a stage count that disagrees with the records */
    uint8_t *buf;
    size_t len;
    encode("q8", &buf, &len);
    buf[5] = 2;
    expect_format(buf, len, "stages");
    buf[5] = 1;
    buf[4] = 1; /* delta flag: not for fed_codec_decode */
    expect_format(buf, len, "delta");
    buf[4] = 0;
    buf[3] = 2;
    expect_format(buf, len, "version");
    free(buf);
}

int main(void) {
    fed_rng r;
    fed_rng_init(&r, 31337, 0, 0, FED_RNG_USER);
    fed_rng_fill_normal(&r, g_x, N, 0, 1e-3f);
    truncations_and_flips(&r);
    inner_flips(&r);
    crafted();
    TEST_PASS("compress_malformed");
}
