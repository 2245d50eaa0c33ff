/* Update codecs: every codec and chain decodes what it encoded — bit-exact for
 * the lossless stages, within one quantization step for the quantizers, the
 * documented shapes for sign / top-k / random-k — at awkward lengths, and the
 * download helper's delta frames. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "federate/compress.h"
#include "federate/error.h"
#include "federate/rng.h"

static void fill(float *x, size_t n, uint64_t seed) {
    fed_rng r;
    fed_rng_init(&r, seed, 0, 0, FED_RNG_USER);
    fed_rng_fill_normal(&r, x, n, 0.0f, 1e-3f);
    if (n > 3) x[n / 3] = 0.02f; /* an outlier, as updates have */
}

static void roundtrip(const char *spec, const float *x, size_t n, float *y, size_t *len_out) {
    fed_codec *c = NULL;
    CHECK_OK(fed_codec_new(&c, spec));
    fed_codec_ctx ctx = {7, 3, 11};
    uint8_t *buf = NULL;
    size_t len = 0;
    CHECK_OK(fed_codec_encode(c, &ctx, x, n, NULL, &buf, &len));
    CHECK(buf != NULL && len >= 16);
    for (size_t i = 0; i < n; i++) y[i] = NAN;
    CHECK_OK(fed_codec_decode(c, buf, len, y, n));
    CHECK_OK(fed_codec_decode(NULL, buf, len, y, n)); /* self-describing */
    if (len_out) *len_out = len;
    free(buf);
    fed_codec_free(c);
}

/* Bound for a uniform quantizer over blocks: one step of that block. */
static void check_quant(const float *x, const float *y, size_t n, int bits, size_t block, int absmax) {
    size_t bs = block ? block : n;
    for (size_t b0 = 0; b0 < n; b0 += bs) {
        size_t e = b0 + bs < n ? b0 + bs : n;
        float lo = x[b0], hi = x[b0], am = 0;
        for (size_t i = b0; i < e; i++) {
            lo = x[i] < lo ? x[i] : lo;
            hi = x[i] > hi ? x[i] : hi;
            am = fabsf(x[i]) > am ? fabsf(x[i]) : am;
        }
        double step = absmax ? am / ((1 << (bits - 1)) - 1) : ((double)hi - lo) / ((1 << bits) - 1);
        for (size_t i = b0; i < e; i++) {
            CHECK_NEAR(y[i], x[i], step * (1 + 1e-5) + 1e-12);
            if (!absmax) CHECK(y[i] >= lo - 1e-4 * step - 1e-6 * fabsf(lo) && y[i] <= hi + 1e-4 * step + 1e-6 * fabsf(hi));
        }
        if (absmax)
            for (size_t i = b0; i < e; i++)
                if (x[i] == 0) CHECK(y[i] == 0 || fabs(y[i]) <= step * 1.00001);
    }
}

static void check_all(size_t n) {
    float *x = malloc((n + 1) * sizeof *x), *y = malloc((n + 1) * sizeof *y), *z = malloc((n + 1) * sizeof *z);
    CHECK(x && y && z);
    fill(x, n, 1 + n);
    size_t len;
    /* lossless */
    const char *lossless[] = {"", "f32", "none", "zstd", "zstd:level=1", "f32,zstd:19"};
    for (size_t s = 0; s < sizeof lossless / sizeof *lossless; s++) {
        roundtrip(lossless[s], x, n, y, &len);
        CHECK(n == 0 || memcmp(x, y, n * sizeof *x) == 0);
    }
    /* quantizers, each with and without zstd (same bytes inside, so same values) */
    static const struct { const char *spec, *zspec; int bits, absmax; size_t block; } q[] = {
        {"q8", "q8,zstd", 8, 0, 0},
        {"q4", "q4,zstd", 4, 0, 0},
        {"q2", "q2,zstd", 2, 0, 0},
        {"q8:block=256", "q8:block=256,zstd", 8, 0, 256},
        {"q4:block=100", "q4:block=100,zstd:level=5", 4, 0, 100},
        {"q2:block=7", "q2,block=7,zstd", 2, 0, 7},
        {"q8:absmax", "q8:scale=absmax,zstd", 8, 1, 0},
        {"q4:scale=absmax:block=64", "q4:scale=absmax:block=64,zstd", 4, 1, 64},
        {"q2:absmax", "q2:absmax,zstd", 2, 1, 0},
    };
    for (size_t s = 0; s < sizeof q / sizeof *q; s++) {
        roundtrip(q[s].spec, x, n, y, &len);
        check_quant(x, y, n, q[s].bits, q[s].block, q[s].absmax);
        roundtrip(q[s].zspec, x, n, z, NULL);
        CHECK(n == 0 || memcmp(y, z, n * sizeof *y) == 0);
    }
    /* QSGD: |x - y| <= norm / s per bucket, signs kept */
    static const struct { const char *spec; uint32_t s; size_t bucket; } qs[] = {
        {"qsgd", 16, 512}, {"qsgd:levels=1", 1, 512}, {"qsgd:4,bucket=0", 4, 0}, {"qsgd:levels=255:bucket=33", 255, 33}};
    for (size_t s = 0; s < sizeof qs / sizeof *qs; s++) {
        roundtrip(qs[s].spec, x, n, y, &len);
        size_t bs = qs[s].bucket ? qs[s].bucket : n;
        for (size_t b0 = 0; b0 < n; b0 += bs) {
            size_t e = b0 + bs < n ? b0 + bs : n;
            double nn = 0;
            for (size_t i = b0; i < e; i++) nn += (double)x[i] * x[i];
            nn = sqrt(nn);
            for (size_t i = b0; i < e; i++) {
                CHECK_NEAR(y[i], x[i], nn / qs[s].s * (1 + 1e-5) + 1e-12);
                CHECK(y[i] == 0 || (y[i] < 0) == (x[i] < 0));
            }
        }
    }
    /* sign: +-mean|x| */
    roundtrip("sign", x, n, y, &len);
    double ma = 0;
    for (size_t i = 0; i < n; i++) ma += fabs(x[i]);
    ma = n ? ma / n : 0;
    for (size_t i = 0; i < n; i++) {
        CHECK_NEAR(fabs(y[i]), ma, 1e-6 * ma);
        CHECK((y[i] < 0) == (x[i] < 0));
    }
    CHECK(n == 0 || len == 16 + 32 + 4 + (n + 7) / 8);
    /* top-k keeps the k largest exactly (f32 values), zeros elsewhere */
    size_t k = n ? (size_t)ceil(0.05 * n) : 0;
    roundtrip("topk:0.05", x, n, y, &len);
    float *sorted = malloc((n + 1) * sizeof *sorted);
    for (size_t i = 0; i < n; i++) sorted[i] = fabsf(x[i]);
    for (size_t i = 1; i < n; i++) /* insertion sort, descending: small n only */
        for (size_t j = i; j > 0 && sorted[j] > sorted[j - 1]; j--) {
            float t = sorted[j];
            sorted[j] = sorted[j - 1];
            sorted[j - 1] = t;
        }
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        if (y[i] != 0) {
            kept++;
            CHECK(y[i] == x[i]);
            CHECK(fabsf(x[i]) >= sorted[k - 1]);
        } else {
            CHECK(x[i] == 0 || fabsf(x[i]) <= sorted[k - 1]);
        }
    }
    CHECK_EQ_INT(kept, k);
    /* top-k then 8-bit: the kept values within a step of their range */
    roundtrip("topk:0.05,q8,zstd", x, n, z, &len);
    for (size_t i = 0; i < n; i++) {
        if (y[i] != 0) CHECK_NEAR(z[i], y[i], 2 * 0.02 / 255 + 1e-9);
        else CHECK(z[i] == 0);
    }
    /* count form */
    roundtrip("topk:k=3", x, n, y, NULL);
    kept = 0;
    for (size_t i = 0; i < n; i++) kept += y[i] != 0;
    CHECK_EQ_INT(kept, n < 3 ? n : 3);
    /* random-k: k values, each x * n / k */
    roundtrip("randk:0.1", x, n, y, &len);
    k = n ? (size_t)ceil(0.1 * n) : 0;
    kept = 0;
    for (size_t i = 0; i < n; i++)
        if (y[i] != 0) {
            kept++;
            CHECK_NEAR(y[i], x[i] * ((double)n / k), 1e-6 * fabs(x[i]) * n / k);
        }
    CHECK_EQ_INT(kept, k);
    CHECK(n == 0 || len == 16 + 32 + 8 + 32 + 4 * k);
    roundtrip("randk:0.1,sign,zstd", x, n, y, NULL);
    roundtrip("randk:k=5,qsgd:levels=8", x, n, y, NULL);
    roundtrip("topk:0.2,q2:absmax", x, n, y, NULL);
    roundtrip("topk:0.2,sign", x, n, y, NULL);
    free(sorted);
    free(x);
    free(y);
    free(z);
}

static void check_delta(void) {
    size_t n = 3001;
    float *cur = malloc(n * sizeof *cur), *prev = malloc(n * sizeof *prev), *out = malloc(n * sizeof *out);
    fill(prev, n, 5);
    for (size_t i = 0; i < n; i++) cur[i] = prev[i] + 1e-4f * (float)((int)(i % 7) - 3);
    fed_codec *c;
    CHECK_OK(fed_codec_new(&c, "zstd"));
    uint8_t *b1 = NULL, *b2 = NULL;
    size_t l1, l2;
    CHECK_OK(fed_codec_encode_model(c, NULL, cur, NULL, n, NULL, &b1, &l1));
    CHECK_OK(fed_codec_encode_model(c, NULL, cur, prev, n, NULL, &b2, &l2));
    CHECK_EQ_INT(fed_codec_frame_is_delta(b1, l1), 0);
    CHECK_EQ_INT(fed_codec_frame_is_delta(b2, l2), 1);
    CHECK(l2 < l1); /* the delta has few distinct values: it compresses */
    CHECK_OK(fed_codec_decode_model(c, b1, l1, NULL, out, n));
    CHECK(memcmp(out, cur, n * sizeof *out) == 0);
    CHECK_OK(fed_codec_decode(c, b1, l1, out, n)); /* a full frame is an ordinary frame */
    CHECK_EQ_INT(fed_codec_decode(c, b2, l2, out, n), FED_EFORMAT);
    CHECK_EQ_INT(fed_codec_decode_model(c, b2, l2, NULL, out, n), FED_EINVAL);
    memcpy(out, prev, n * sizeof *out);
    CHECK_OK(fed_codec_decode_model(c, b2, l2, out, out, n)); /* in place on the client's copy */
    for (size_t i = 0; i < n; i++) CHECK(out[i] == prev[i] + (cur[i] - prev[i]));
    free(b1);
    free(b2);
    fed_codec_free(c);
    /* lossy download: the delta against the client's copy carries what earlier
     * frames left out, so the copy's error stays within one step of the last delta */
    CHECK_OK(fed_codec_new(&c, "q4,zstd"));
    float *client = calloc(n, sizeof *client);
    for (int round = 0; round < 6; round++) {
        for (size_t i = 0; i < n; i++) cur[i] += 1e-4f * (float)((int)((i + round) % 5) - 2);
        float lo = 0, hi = 0;
        for (size_t i = 0; i < n; i++) {
            float d = cur[i] - (round ? client[i] : 0);
            lo = i == 0 || d < lo ? d : lo;
            hi = i == 0 || d > hi ? d : hi;
        }
        fed_codec_ctx ctx = {1, (uint64_t)round, 0};
        CHECK_OK(fed_codec_encode_model(c, &ctx, cur, round ? client : NULL, n, NULL, &b1, &l1));
        CHECK_OK(fed_codec_decode_model(c, b1, l1, client, client, n));
        free(b1);
        for (size_t i = 0; i < n; i++) CHECK_NEAR(client[i], cur[i], (hi - lo) / 15 * 1.001 + 1e-7);
        if (round == 5) CHECK(hi - lo < 1e-3); /* the error shrank from round 0's full-model step */
    }
    free(client);
    fed_codec_free(c);
    free(cur);
    free(prev);
    free(out);
}

static void check_mismatch_and_args(void) {
    float x[64], y[64];
    fill(x, 64, 9);
    fed_codec *a, *b;
    CHECK_OK(fed_codec_new(&a, "q8,zstd"));
    CHECK_OK(fed_codec_new(&b, "q4,zstd"));
    uint8_t *buf;
    size_t len;
    CHECK_OK(fed_codec_encode(a, NULL, x, 64, NULL, &buf, &len));
    CHECK_EQ_INT(fed_codec_decode(b, buf, len, y, 64), FED_EFORMAT);
    CHECK(strstr(fed_last_error(), "q8") != NULL);
    CHECK_EQ_INT(fed_codec_decode(a, buf, len, y, 63), FED_EFORMAT); /* wrong n */
    CHECK(strstr(fed_last_error(), "expected 63") != NULL);
    free(buf);
    x[5] = NAN;
    CHECK_EQ_INT(fed_codec_encode(a, NULL, x, 64, NULL, &buf, &len), FED_EINVAL);
    CHECK(buf == NULL && strstr(fed_last_error(), "value 5") != NULL);
    x[5] = INFINITY;
    CHECK_EQ_INT(fed_codec_encode(a, NULL, x, 64, NULL, &buf, &len), FED_EINVAL);
    x[5] = 0;
    /* constant and all-zero vectors */
    for (int i = 0; i < 64; i++) x[i] = 0.25f;
    const char *specs[] = {"q8", "q2:absmax", "qsgd", "sign", "topk:0.1,q4", "randk:0.5,q8"};
    for (size_t s = 0; s < sizeof specs / sizeof *specs; s++) {
        fed_codec *c;
        CHECK_OK(fed_codec_new(&c, specs[s]));
        for (int zero = 0; zero < 2; zero++) {
            if (zero) memset(x, 0, sizeof x);
            CHECK_OK(fed_codec_encode(c, NULL, x, 64, NULL, &buf, &len));
            CHECK_OK(fed_codec_decode(c, buf, len, y, 64));
            for (int i = 0; i < 64; i++) CHECK(isfinite(y[i]));
            if (zero)
                for (int i = 0; i < 64; i++) CHECK(y[i] == 0);
            else if (s < 4)
                for (int i = 0; i < 64; i++) CHECK_NEAR(y[i], 0.25, s == 1 ? 0.25 : 1e-6);
            free(buf);
        }
        for (int i = 0; i < 64; i++) x[i] = 0.25f;
        fed_codec_free(c);
    }
    CHECK(fed_codec_is_lossless(a) == 0);
    fed_codec_free(a);
    fed_codec_free(b);
    CHECK_OK(fed_codec_new(&a, "zstd"));
    CHECK(fed_codec_is_lossless(a) == 1);
    fed_codec_free(a);
    fed_codec_free(NULL);
}

int main(void) {
    size_t lens[] = {0, 1, 2, 7, 8, 9, 255, 256, 257, 4095, 4097, 10007};
    for (size_t i = 0; i < sizeof lens / sizeof *lens; i++) check_all(lens[i]);
    check_delta();
    check_mismatch_and_args();
    TEST_PASS("compress_roundtrip");
}
