/* The coordinator's receive path and compressed downloads without a network:
 * the incremental SHA-256 equals the one-shot hash however the input is cut;
 * the signed text from a precomputed hash equals the one from the body; an
 * update body read in place (fed_net_unpack_update) accepts and refuses
 * exactly what the copying reader (fed_st_parse, via fed_net_unpack) does, on
 * many corrupted bodies, including misaligned ones; and a compressed download
 * (fed_net_pack_model_coded / fed_net_unpack_model) decodes full and delta
 * frames to what fed_codec_decode_model gives, refusing a delta against a copy
 * the client does not hold. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "federate/error.h"
#include "federate/net.h"
#include "federate/rng.h"

static fed_model *make(const char *name) {
    fed_model_opts o;
    fed_model_opts_default(&o);
    o.in_c = 1, o.in_h = 28, o.in_w = 28, o.num_classes = 10;
    o.hidden[0] = 8;
    o.n_hidden = 1;
    fed_model *m = NULL;
    CHECK_OK(fed_model_create(&m, name, &o));
    return m;
}

static void expect_err(int rc, int code, const char *needle) {
    if (rc != code || !strstr(fed_last_error(), needle)) {
        fprintf(stderr, "expected %d with '%s', got %d: %s\n", code, needle, rc, fed_last_error());
        exit(1);
    }
}

int main(void) {
    /* incremental SHA-256 */
    size_t big = 100003;
    unsigned char *msg = malloc(big);
    for (size_t i = 0; i < big; i++) msg[i] = (unsigned char)(i * 131 + 7);
    uint8_t one[FED_SHA256_BYTES], inc[FED_SHA256_BYTES];
    CHECK_OK(fed_sha256(one, msg, big));
    const size_t cuts[] = {1, 63, 64, 65, 4096, 32768, 100003};
    for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++) {
        fed_sha256_ctx h;
        CHECK_OK(fed_sha256_init(&h));
        for (size_t o = 0; o < big; o += cuts[c]) CHECK_OK(fed_sha256_update(&h, msg + o, big - o < cuts[c] ? big - o : cuts[c]));
        CHECK_OK(fed_sha256_final(&h, inc));
        CHECK(memcmp(one, inc, sizeof one) == 0);
    }
    fed_sha256_ctx e;
    CHECK_OK(fed_sha256_init(&e));
    CHECK_OK(fed_sha256_final(&e, inc));
    CHECK_OK(fed_sha256(one, "", 0));
    CHECK(memcmp(one, inc, sizeof one) == 0);
    CHECK_OK(fed_sha256_init(&e));
    fed_sha256_abort(&e);
    fed_sha256_abort(&e);   /* twice: a no-op */
    char t1[512], t2[512];
    CHECK_OK(fed_sha256(one, "abc", 3));
    int l1 = fed_net_signed_text(t1, sizeof t1, "POST", "/v1/result", 3, 7, 2, 1700000000, "00112233445566778899aabbccddeeff", "abc", 3);
    int l2 = fed_net_signed_text_hashed(t2, sizeof t2, "POST", "/v1/result", 3, 7, 2, 1700000000, "00112233445566778899aabbccddeeff", one);
    CHECK(l1 > 0 && l1 == l2 && strcmp(t1, t2) == 0);
    free(msg);

    /* in-place reading agrees with the copying reader, on good and corrupted bodies */
    fed_model *m = make("mlp");
    size_t n = fed_model_num_params(m);
    float *a = malloc(n * sizeof(float)), *b1 = malloc(n * sizeof(float)), *b2 = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) a[i] = sinf((float)i) * 0.01f;
    const char *meta[] = {"num_examples", "12", "steps", "3"};
    void *body = NULL;
    size_t len = 0;
    CHECK_OK(fed_net_pack(m, a, NULL, NULL, meta, 2, &body, &len));
    fed_st_file *f = NULL;
    int coded = -1;
    CHECK_OK(fed_net_unpack_update(m, NULL, body, len, 0, b1, NULL, NULL, &f, &coded));
    CHECK(coded == 0 && memcmp(a, b1, n * sizeof(float)) == 0);
    CHECK(f && strcmp(fed_st_metadata(f, "steps"), "3") == 0 && fed_st_metadata(f, "lr") == NULL);
    fed_st_close(f);
    /* misaligned: the same body one byte into a buffer */
    unsigned char *mis = malloc(len + 1);
    memcpy(mis + 1, body, len);
    CHECK_OK(fed_net_unpack_update(m, NULL, mis + 1, len, 0, b2, NULL, NULL, NULL, &coded));
    CHECK(memcmp(a, b2, n * sizeof(float)) == 0);
    free(mis);
    /* corruptions: in the header (every byte of it, flipped a few ways), the
     * length field, truncations, and a NaN in the data */
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | ((unsigned char *)body)[i];
    unsigned char *cp = malloc(len);
    int agree = 0, accepted = 0;
    fed_rng r;
    fed_rng_init(&r, 5, 0, 0, 0);
    for (int trial = 0; trial < 3000; trial++) {
        memcpy(cp, body, len);
        size_t cl = len;
        int kind = trial % 6;
        size_t pos = (size_t)(fed_rng_u64(&r) % (8 + hl));
        if (kind == 0) cp[pos] ^= (unsigned char)(1u << (fed_rng_u64(&r) % 8));
        else if (kind == 1) cp[pos] = "{}[]\",:0 9-e."[fed_rng_u64(&r) % 13];
        else if (kind == 2) cp[pos] = (unsigned char)fed_rng_u64(&r);
        else if (kind == 3) cl = (size_t)(fed_rng_u64(&r) % len);
        else if (kind == 4) cp[fed_rng_u64(&r) % 8] = (unsigned char)fed_rng_u64(&r);
        else {
            size_t k = (size_t)(fed_rng_u64(&r) % n);
            float bad = (trial / 6) % 2 ? NAN : INFINITY;
            memcpy(cp + 8 + hl + 4 * k, &bad, 4);
        }
        int rc1 = fed_net_unpack(m, cp, cl, 0, b1, NULL, NULL, NULL);
        int rc2 = fed_net_unpack_update(m, NULL, cp, cl, 0, b2, NULL, NULL, NULL, &coded);
        if ((rc1 == 0) != (rc2 == 0) || (rc1 && rc1 != rc2)) {
            fprintf(stderr, "trial %d (kind %d, byte %zu): copying reader %d, in place %d: %s\n", trial, kind, pos, rc1, rc2,
                    fed_last_error());
            return 1;
        }
        if (!rc1) {
            CHECK(memcmp(b1, b2, n * sizeof(float)) == 0);
            accepted++;
        }
        agree++;
    }
    printf("in place vs copying reader: %d corrupted bodies, same verdict on all (%d accepted)\n", agree, accepted);
    free(cp);
    free(body);

    /* compressed downloads */
    fed_codec *q8 = NULL;
    CHECK_OK(fed_codec_new(&q8, "q8,zstd"));
    float *cur = malloc(n * sizeof(float)), *prev = malloc(n * sizeof(float)), *want = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) prev[i] = cosf((float)i) * 0.1f, cur[i] = prev[i] + 0.001f * sinf((float)i * 3);
    fed_codec_ctx ctx = {5, 2, 1};
    for (int delta = 0; delta < 2; delta++) {
        uint8_t *frame = NULL;
        size_t flen = 0;
        CHECK_OK(fed_codec_encode_model(q8, &ctx, cur, delta ? prev : NULL, n, NULL, &frame, &flen));
        CHECK_OK(fed_codec_decode_model(q8, frame, flen, delta ? prev : NULL, want, n));
        uint8_t h[FED_SHA256_BYTES];
        char hex[2 * FED_SHA256_BYTES + 1];
        CHECK_OK(fed_sha256(h, prev, n * sizeof(float)));
        fed_hex_encode(hex, h, sizeof h);
        const char *dm[] = {"round", "2", "base_sha256", delta ? hex : "none"};
        CHECK_OK(fed_net_pack_model_coded(m, frame, flen, NULL, NULL, dm, 2, &body, &len));
        CHECK_OK(fed_net_unpack_model(m, q8, body, len, 0, prev, hex, b1, NULL, NULL, NULL, &coded));
        CHECK(coded == 1 && memcmp(b1, want, n * sizeof(float)) == 0);
        if (delta) {
            expect_err(fed_net_unpack_model(m, q8, body, len, 0, NULL, NULL, b1, NULL, NULL, NULL, &coded), FED_ESTATE,
                       "holds no copy");
            char other[sizeof hex];
            memcpy(other, hex, sizeof hex);
            other[0] = other[0] == 'a' ? 'b' : 'a';
            expect_err(fed_net_unpack_model(m, q8, body, len, 0, prev, other, b1, NULL, NULL, NULL, &coded), FED_ESTATE,
                       "but this client holds");
        } else {
            /* a full frame needs no copy */
            CHECK_OK(fed_net_unpack_model(m, q8, body, len, 0, NULL, NULL, b1, NULL, NULL, NULL, &coded));
            CHECK(memcmp(b1, want, n * sizeof(float)) == 0);
        }
        expect_err(fed_net_unpack_model(m, NULL, body, len, 0, prev, hex, b1, NULL, NULL, NULL, &coded), FED_ESHAPE,
                   "no download_compression");
        free(body);
        free(frame);
    }
    /* a plain model body still unpacks through the same call */
    CHECK_OK(fed_net_pack(m, cur, NULL, NULL, NULL, 0, &body, &len));
    CHECK_OK(fed_net_unpack_model(m, q8, body, len, 0, NULL, NULL, b1, NULL, NULL, NULL, &coded));
    CHECK(coded == 0 && memcmp(b1, cur, n * sizeof(float)) == 0);
    free(body);
    fed_codec_free(q8);
    free(cur); free(prev); free(want);
    free(a); free(b1); free(b2);
    fed_model_free(m);
    TEST_PASS("test_net_body");
}
