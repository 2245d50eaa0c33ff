/* safetensors round trips (F32/I64, scalars to 4-D, metadata, buffers and files)
 * and a battery of malformed inputs: every one must fail with FED_EFORMAT and a
 * message, never crash. Run under -fsanitize=address,undefined. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "federate/error.h"
#include "federate/safetensors.h"

static fed_st_tensor mk(const char *name, int dtype, int ndim, const int64_t *shape, const void *data) {
    fed_st_tensor t;
    memset(&t, 0, sizeof t);
    snprintf(t.name, sizeof t.name, "%s", name);
    t.dtype = dtype;
    t.ndim = ndim;
    t.numel = 1;
    for (int d = 0; d < ndim; d++) {
        t.shape[d] = shape[d];
        t.numel *= (size_t)shape[d];
    }
    t.data = data;
    return t;
}

static size_t esize(int dtype) { return dtype == FED_DTYPE_I64 ? 8 : 4; }

/* Test tensors: odd-sized F32 tensors before I64 ones so that, in the file, the
 * I64 data sits at offsets that are not 8-byte aligned. */
static float s_scalar = 3.5f;
static float s_vec[5] = {1, -2, 3.25f, 1e-30f, -0.0f};
static float s_4d[2 * 3 * 1 * 2];
static int64_t s_i64_scalar = 7;
static int64_t s_i64_vec[3] = {INT64_MIN, -1, INT64_MAX};
static float s_odd[3] = {9, 8, 7};

static int make_tensors(fed_st_tensor *t) {
    static const int64_t sh5[] = {5}, sh4d[] = {2, 3, 1, 2}, sh3[] = {3}, sh0[] = {0};
    for (int i = 0; i < 12; i++) s_4d[i] = (float)i * 0.5f - 2.0f;
    int n = 0;
    t[n++] = mk("scalar", FED_DTYPE_F32, 0, NULL, &s_scalar);
    t[n++] = mk("layer.vec", FED_DTYPE_F32, 1, sh5, s_vec);
    t[n++] = mk("conv1.weight", FED_DTYPE_F32, 4, sh4d, s_4d);
    t[n++] = mk("bn.num_batches_tracked", FED_DTYPE_I64, 0, NULL, &s_i64_scalar);
    t[n++] = mk("odd", FED_DTYPE_F32, 1, sh3, s_odd);
    t[n++] = mk("ints", FED_DTYPE_I64, 1, sh3, s_i64_vec);
    t[n++] = mk("empty", FED_DTYPE_F32, 1, sh0, NULL);
    return n;
}

static void check_same(const fed_st_file *f, const fed_st_tensor *t, int n) {
    CHECK_EQ_INT(fed_st_count(f), n);
    for (int i = 0; i < n; i++) {
        const fed_st_tensor *g = fed_st_get(f, i);
        CHECK(g != NULL);
        CHECK(strcmp(g->name, t[i].name) == 0); /* header order is preserved */
        CHECK(fed_st_find(f, t[i].name) == g);
        CHECK_EQ_INT(g->dtype, t[i].dtype);
        CHECK_EQ_INT(g->ndim, t[i].ndim);
        for (int d = 0; d < t[i].ndim; d++) CHECK_EQ_INT(g->shape[d], t[i].shape[d]);
        CHECK_EQ_INT(g->numel, t[i].numel);
        CHECK(g->data != NULL);
        CHECK((uintptr_t)g->data % 8 == 0);
        if (t[i].numel) CHECK(memcmp(g->data, t[i].data, t[i].numel * esize(t[i].dtype)) == 0);
    }
    CHECK(fed_st_get(f, n) == NULL);
    CHECK(fed_st_get(f, -1) == NULL);
    CHECK(fed_st_find(f, "nope") == NULL);
}

static void *g_valid;
static size_t g_valid_len;

static void test_roundtrip(void) {
    fed_st_tensor t[8];
    int n = make_tensors(t);
    const char *meta[] = {"format", "pt", "federate_model", "cnn"};
    void *buf;
    size_t len;
    CHECK_OK(fed_st_serialize(t, n, meta, 2, &buf, &len));

    /* Layout: header length is a multiple of 8, padded with spaces, data contiguous. */
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | ((unsigned char *)buf)[i];
    CHECK(hl % 8 == 0);
    size_t data_bytes = 0;
    for (int i = 0; i < n; i++) data_bytes += t[i].numel * esize(t[i].dtype);
    CHECK_EQ_INT(len, 8 + hl + data_bytes);
    CHECK(((char *)buf)[8] == '{');
    CHECK(memmem((char *)buf + 8, hl, "\"__metadata__\"", 14) == (char *)buf + 9); /* first, as the reference */

    fed_st_file *f;
    CHECK_OK(fed_st_parse(buf, len, &f));
    check_same(f, t, n);
    CHECK(strcmp(fed_st_metadata(f, "format"), "pt") == 0);
    CHECK(strcmp(fed_st_metadata(f, "federate_model"), "cnn") == 0);
    CHECK(fed_st_metadata(f, "missing") == NULL);
    fed_st_close(f);

    /* An input whose data region starts at an odd address must still come back aligned. */
    unsigned char *shifted = malloc(len + 1);
    memcpy(shifted + 1, buf, len);
    CHECK_OK(fed_st_parse(shifted + 1, len, &f));
    check_same(f, t, n);
    fed_st_close(f);
    free(shifted);

    g_valid = buf;
    g_valid_len = len;

    /* Files, with no metadata this time. */
    char path[] = "/tmp/fed_st_test_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    CHECK_OK(fed_st_write(path, t, n, NULL, 0));
    CHECK_OK(fed_st_open(path, &f));
    check_same(f, t, n);
    CHECK(fed_st_metadata(f, "format") == NULL);
    fed_st_close(f);

    /* A corrupt file: the error comes back with the path in it. */
    FILE *fp = fopen(path, "wb");
    CHECK(fp);
    fwrite(buf, 1, len - 1, fp);
    fclose(fp);
    CHECK_EQ_INT(fed_st_open(path, &f), FED_EFORMAT);
    CHECK(f == NULL);
    CHECK(strstr(fed_last_error(), path) != NULL);
    remove(path);
    CHECK_EQ_INT(fed_st_open(path, &f), FED_EIO);
    CHECK(f == NULL);

    /* No tensors at all is a valid file. */
    void *eb;
    size_t el;
    CHECK_OK(fed_st_serialize(NULL, 0, NULL, 0, &eb, &el));
    CHECK_OK(fed_st_parse(eb, el, &f));
    CHECK_EQ_INT(fed_st_count(f), 0);
    fed_st_close(f);
    free(eb);
    fed_st_close(NULL);
}

/* The reference writer orders the JSON by name but the data by alignment, so
 * header order and data order differ; and it uses non-compact JSON. */
static void *build(const char *json, size_t data_len, size_t *len);

static void test_foreign_layout(void) {
    const char *json = "{ \"a\" : {\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]},\n"
                       "  \"b\" : {\"shape\":[1],\"data_offsets\":[0,8],\"dtype\":\"I64\"} }";
    size_t len;
    unsigned char *buf = build(json, 12, &len);
    int64_t bv = -42;
    float av = 1.5f;
    size_t hl = strlen(json);
    memcpy(buf + 8 + hl, &bv, 8);
    memcpy(buf + 8 + hl + 8, &av, 4);
    fed_st_file *f;
    CHECK_OK(fed_st_parse(buf, len, &f));
    CHECK(strcmp(fed_st_get(f, 0)->name, "a") == 0);
    CHECK(*(const float *)fed_st_find(f, "a")->data == 1.5f);
    CHECK(*(const int64_t *)fed_st_find(f, "b")->data == -42);
    fed_st_close(f);
    free(buf);
}

static void test_serialize_errors(void) {
    fed_st_tensor t[8];
    int n = make_tensors(t);
    void *buf = NULL;
    size_t len;
    fed_st_tensor dup[2] = {t[0], t[0]};
    CHECK_EQ_INT(fed_st_serialize(dup, 2, NULL, 0, &buf, &len), FED_EINVAL);
    CHECK(strstr(fed_last_error(), "scalar"));
    fed_st_tensor bad = t[1];
    bad.numel = 4;
    CHECK_EQ_INT(fed_st_serialize(&bad, 1, NULL, 0, &buf, &len), FED_EINVAL);
    bad = t[1];
    bad.dtype = 9;
    CHECK_EQ_INT(fed_st_serialize(&bad, 1, NULL, 0, &buf, &len), FED_EINVAL);
    bad = t[1];
    bad.ndim = 9;
    CHECK_EQ_INT(fed_st_serialize(&bad, 1, NULL, 0, &buf, &len), FED_EINVAL);
    bad = t[1];
    strcpy(bad.name, "__metadata__");
    CHECK_EQ_INT(fed_st_serialize(&bad, 1, NULL, 0, &buf, &len), FED_EINVAL);
    bad = t[1];
    bad.data = NULL;
    CHECK_EQ_INT(fed_st_serialize(&bad, 1, NULL, 0, &buf, &len), FED_EINVAL);
    bad = t[1];
    strcpy(bad.name, "bad\xff");
    CHECK_EQ_INT(fed_st_serialize(&bad, 1, NULL, 0, &buf, &len), FED_EINVAL);
    const char *meta[] = {"k", NULL};
    CHECK_EQ_INT(fed_st_serialize(t, n, meta, 1, &buf, &len), FED_EINVAL);
    CHECK(buf == NULL);
}

/* ---- malformed inputs ------------------------------------------------------- */

/* Header length + json + data_len zero bytes. */
static void *build(const char *json, size_t data_len, size_t *len) {
    size_t hl = strlen(json);
    *len = 8 + hl + data_len;
    unsigned char *b = calloc(1, *len);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, json, hl);
    return b;
}

/* Parses and expects FED_EFORMAT with a message containing `want`. */
static void expect_bad_buf(const void *buf, size_t len, const char *want, const char *label) {
    fed_st_file *f = (fed_st_file *)(uintptr_t)1;
    fed_clear_error();
    int rc = fed_st_parse(buf, len, &f);
    if (rc != FED_EFORMAT || f != NULL || fed_last_error()[0] == '\0' || (want && !strstr(fed_last_error(), want))) {
        fprintf(stderr, "case \"%s\": rc %d, message \"%s\", wanted FED_EFORMAT mentioning \"%s\"\n", label, rc,
                fed_last_error(), want ? want : "");
        exit(1);
    }
}

static void expect_bad(const char *json, size_t data_len, const char *want) {
    size_t len;
    void *b = build(json, data_len, &len);
    expect_bad_buf(b, len, want, json);
    free(b);
}

#define E(d, s, o) "{\"dtype\":\"" d "\",\"shape\":" s ",\"data_offsets\":" o "}"

static void test_malformed(void) {
    /* Sanity: the helper builds valid files. */
    {
        size_t len;
        void *b = build("{\"w\":" E("F32", "[2]", "[0,8]") "}", 8, &len);
        fed_st_file *f;
        CHECK_OK(fed_st_parse(b, len, &f));
        fed_st_close(f);
        free(b);
    }
    /* Framing. */
    expect_bad_buf("", 0, "shorter", "empty");
    expect_bad_buf("\x02\0\0\0\0\0\0", 7, "shorter", "7 bytes");
    {
        unsigned char b[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '{', '}'};
        expect_bad_buf(b, sizeof b, "limit", "length 2^64-1");
        uint64_t big = 100000001;
        for (int i = 0; i < 8; i++) b[i] = (unsigned char)(big >> (8 * i));
        expect_bad_buf(b, sizeof b, "limit", "length over cap");
        b[0] = 9;
        memset(b + 1, 0, 7);
        expect_bad_buf(b, sizeof b, "past the end", "length past end");
        b[0] = 0;
        expect_bad_buf(b, sizeof b, "JSON", "length 0");
    }
    /* JSON. */
    expect_bad("{\"w\":", 0, "JSON");
    expect_bad("{\"w\":{}}}", 0, "JSON");
    expect_bad("[1,2]", 0, "not a JSON object");
    expect_bad("\"str\"", 0, "JSON");
    expect_bad("{\"a\\u0000b\":1}", 0, NULL);
    expect_bad("{\"w\":" E("F32", "[1]", "[0,4]") ",\"w\":" E("F32", "[1]", "[4,8]") "}", 8, "w");
    expect_bad("{\"__metadata__\":{},\"__metadata__\":{}}", 0, "__metadata__");
    /* Entries. */
    expect_bad("{\"w\":[1]}", 0, "\"w\": entry is not an object");
    expect_bad("{\"w\":3}", 0, "\"w\": entry is not an object");
    expect_bad("{\"w\":" E("F16", "[1]", "[0,2]") "}", 2, "\"w\": unsupported dtype");
    expect_bad("{\"w\":" E("f32", "[1]", "[0,4]") "}", 4, "unsupported dtype");
    expect_bad("{\"w\":{\"dtype\":3,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "\"w\": dtype");
    expect_bad("{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "\"w\": dtype");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "\"w\": shape");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "\"w\": data_offsets");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4, "unknown field");
    expect_bad("{\"w\":" E("F32", "[-1]", "[0,4]") "}", 4, "\"w\": shape[0]");
    expect_bad("{\"w\":" E("F32", "[1.0]", "[0,4]") "}", 4, "\"w\": shape[0]");
    expect_bad("{\"w\":" E("F32", "[\"1\"]", "[0,4]") "}", 4, "\"w\": shape[0]");
    expect_bad("{\"w\":" E("F32", "[1,null]", "[0,4]") "}", 4, "\"w\": shape[1]");
    expect_bad("{\"w\":" E("F32", "4", "[0,4]") "}", 4, "\"w\": shape");
    expect_bad("{\"w\":" E("F32", "[1,1,1,1,1,1,1,1,1]", "[0,4]") "}", 4, "9 dimensions");
    expect_bad("{\"w\":" E("F32", "[4294967296,4294967296,16]", "[0,4]") "}", 4, "overflows");
    expect_bad("{\"w\":" E("F32", "[4611686018427387904]", "[0,4]") "}", 4, "\"w\": byte size overflows");
    expect_bad("{\"w\":" E("F32", "[99999999999999999999]", "[0,4]") "}", 4, "JSON");
    expect_bad("{\"w\":" E("F32", "[1]", "[4,0]") "}", 4, "\"w\": data_offsets end 0 < begin 4");
    expect_bad("{\"w\":" E("F32", "[1]", "[0]") "}", 4, "\"w\": data_offsets");
    expect_bad("{\"w\":" E("F32", "[1]", "[0,4,8]") "}", 4, "\"w\": data_offsets");
    expect_bad("{\"w\":" E("F32", "[1]", "[-4,0]") "}", 4, "\"w\": data_offsets");
    expect_bad("{\"w\":" E("F32", "[1]", "[0,4.0]") "}", 4, "\"w\": data_offsets");
    expect_bad("{\"w\":" E("F32", "[1]", "{}") "}", 4, "\"w\": data_offsets");
    expect_bad("{\"w\":" E("F32", "[2]", "[0,4]") "}", 4, "\"w\": 4 data bytes but shape and dtype need 8");
    expect_bad("{\"w\":" E("I64", "[1]", "[0,4]") "}", 4, "need 8");
    expect_bad("{\"w\":" E("F32", "[1]", "[0,4]") "}", 0, "\"w\": data ends at 4, past the 0-byte");
    expect_bad("{\"w\":" E("F32", "[1]", "[9223372036854775800,9223372036854775804]") "}", 4, "\"w\"");
    /* Coverage: overlap, holes, trailing bytes. */
    expect_bad("{\"a\":" E("F32", "[2]", "[0,8]") ",\"b\":" E("F32", "[1]", "[4,8]") "}", 8, "overlaps");
    expect_bad("{\"a\":" E("F32", "[2]", "[0,8]") ",\"b\":" E("F32", "[2]", "[0,8]") "}", 8, "overlaps");
    expect_bad("{\"a\":" E("F32", "[1]", "[4,8]") "}", 8, "\"a\": data begins at 4, leaving a hole at 0");
    expect_bad("{\"a\":" E("F32", "[1]", "[0,4]") ",\"b\":" E("F32", "[1]", "[8,12]") "}", 12, "\"b\"");
    expect_bad("{\"a\":" E("F32", "[1]", "[0,4]") "}", 8, "data region is 8 bytes but tensors cover 4");
    expect_bad("{}", 1, "data region");
    /* Names and metadata. */
    {
        char json[512], name[200];
        memset(name, 'n', 128);
        name[128] = '\0';
        snprintf(json, sizeof json, "{\"%s\":" E("F32", "[1]", "[0,4]") "}", name);
        expect_bad(json, 4, "longer than 127");
    }
    expect_bad("{\"\":" E("F32", "[1]", "[0,4]") "}", 4, "empty tensor name");
    expect_bad("{\"__metadata__\":[]}", 0, "__metadata__");
    expect_bad("{\"__metadata__\":{\"k\":1}}", 0, "metadata \"k\" is not a string");
    expect_bad("{\"__metadata__\":{\"k\":{\"a\":\"b\"}}}", 0, "\"k\"");
    /* Deep nesting is bounded by jansson's depth limit, not our stack. */
    {
        size_t depth = 100000;
        char *json = malloc(2 * depth + 16);
        strcpy(json, "{\"w\":");
        size_t p = strlen(json);
        for (size_t i = 0; i < depth; i++) json[p++] = '[';
        for (size_t i = 0; i < depth; i++) json[p++] = ']';
        json[p++] = '}';
        json[p] = '\0';
        expect_bad(json, 0, NULL);
        free(json);
    }
}

/* Every truncation of a valid file fails cleanly (the length field then points
 * past the end or the data region comes up short). */
static void test_prefixes(void) {
    for (size_t n = 0; n < g_valid_len; n++) {
        unsigned char *b = malloc(n ? n : 1); /* exact size so ASan sees overreads */
        memcpy(b, g_valid, n);
        char label[64];
        snprintf(label, sizeof label, "prefix %zu of %zu", n, g_valid_len);
        expect_bad_buf(b, n, NULL, label);
        free(b);
    }
}

/* Flipping header bytes must give FED_EFORMAT or a file that is still
 * self-consistent: never a crash or an overread. */
static void check_consistent(const fed_st_file *f) {
    for (int i = 0; i < fed_st_count(f); i++) {
        const fed_st_tensor *t = fed_st_get(f, i);
        CHECK(t->ndim >= 0 && t->ndim <= 8);
        size_t numel = 1;
        for (int d = 0; d < t->ndim; d++) numel *= (size_t)t->shape[d];
        CHECK_EQ_INT(numel, t->numel);
        volatile unsigned char sink = 0;
        const unsigned char *p = t->data;
        for (size_t k = 0; k < t->numel * esize(t->dtype); k++) sink ^= p[k];
        (void)sink;
    }
}

static void test_flips(void) {
    static const unsigned char xors[] = {0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xff};
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | ((unsigned char *)g_valid)[i];
    unsigned char *b = malloc(g_valid_len);
    int ok = 0, bad = 0;
    for (size_t pos = 0; pos < 8 + hl; pos++) {
        for (size_t x = 0; x < sizeof xors; x++) {
            memcpy(b, g_valid, g_valid_len);
            b[pos] ^= xors[x];
            fed_st_file *f;
            fed_clear_error();
            int rc = fed_st_parse(b, g_valid_len, &f);
            if (rc == 0) {
                check_consistent(f);
                fed_st_close(f);
                ok++;
            } else {
                if (rc != FED_EFORMAT || !fed_last_error()[0]) {
                    fprintf(stderr, "flip at %zu ^ 0x%02x: rc %d \"%s\"\n", pos, xors[x], rc, fed_last_error());
                    exit(1);
                }
                bad++;
            }
        }
    }
    /* Data-region flips never matter to the parser. */
    printf("header flips: %d accepted (names, metadata, spaces), %d rejected\n", ok, bad);
    CHECK(bad > ok);
    free(b);
}

/* Random multi-byte mutations of the whole file, from a fixed LCG stream. */
static void test_random_mutations(void) {
    uint64_t s = 12345;
    unsigned char *b = malloc(g_valid_len);
    for (int iter = 0; iter < 20000; iter++) {
        memcpy(b, g_valid, g_valid_len);
        int k = 1 + iter % 4;
        for (int j = 0; j < k; j++) {
            s = s * 6364136223846793005ULL + 1442695040888963407ULL;
            size_t pos = (size_t)(s >> 33) % g_valid_len;
            b[pos] = (unsigned char)(s >> 20);
        }
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        size_t len = (iter % 3 == 0) ? (size_t)(s >> 33) % (g_valid_len + 1) : g_valid_len;
        fed_st_file *f;
        int rc = fed_st_parse(b, len, &f);
        if (rc == 0) {
            check_consistent(f);
            fed_st_close(f);
        } else {
            CHECK_EQ_INT(rc, FED_EFORMAT);
        }
    }
    free(b);
}

int main(void) {
    test_roundtrip();
    test_foreign_layout();
    test_serialize_errors();
    test_malformed();
    test_prefixes();
    test_flips();
    test_random_mutations();
    free(g_valid);
    TEST_PASS("test_safetensors");
}
