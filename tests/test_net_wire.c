/* The deployment's building blocks without a network: update bodies (names,
 * shapes, dtypes and values checked, errors naming the tensor), the signed text,
 * key files, the allow-list, zstd with its size cap, and server.yaml. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "check.h"
#include "federate/error.h"
#include "federate/net.h"

static fed_model *mlp(int hidden) {
    fed_model_opts o;
    fed_model_opts_default(&o);
    o.in_c = 1, o.in_h = 28, o.in_w = 28, o.num_classes = 10;
    o.hidden[0] = hidden;
    o.n_hidden = 1;
    fed_model *m = NULL;
    CHECK_OK(fed_model_create(&m, "mlp", &o));
    return m;
}

static void expect_err(int rc, int code, const char *needle) {
    if (rc != code || !strstr(fed_last_error(), needle)) {
        fprintf(stderr, "expected %d with '%s', got %d: %s\n", code, needle, rc, fed_last_error());
        exit(1);
    }
}

int main(void) {
    char dir[] = "/tmp/test_net_wireXXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256];

    /* pack / unpack round trip, with and without control tensors */
    fed_model *m = mlp(8), *other = mlp(9);
    size_t n = fed_model_num_params(m);
    float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float)), *c = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) a[i] = (float)i * 0.001f - 1.0f, c[i] = -(float)i;
    const char *meta[] = {"num_examples", "12"};
    void *buf = NULL;
    size_t len = 0;
    CHECK_OK(fed_net_pack(m, a, NULL, NULL, meta, 1, &buf, &len));
    fed_st_file *f = NULL;
    CHECK_OK(fed_net_unpack(m, buf, len, 0, b, NULL, NULL, &f));
    CHECK(memcmp(a, b, n * sizeof(float)) == 0);
    CHECK(strcmp(fed_st_metadata(f, "num_examples"), "12") == 0);
    fed_st_close(f);
    /* control tensors required but absent */
    expect_err(fed_net_unpack(m, buf, len, 1, b, NULL, c, NULL), FED_ESHAPE, "control.fc1.weight' is missing");
    /* another architecture: the shape error names the tensor and both shapes */
    float *o = calloc(fed_model_num_params(other), sizeof(float));
    expect_err(fed_net_unpack(other, buf, len, 0, o, NULL, NULL, NULL), FED_ESHAPE, "'fc1.weight' has shape [8, 784], expected [9, 784]");
    free(buf);
    CHECK_OK(fed_net_pack(m, a, NULL, c, NULL, 0, &buf, &len));
    float *c2 = malloc(n * sizeof(float));
    CHECK_OK(fed_net_unpack(m, buf, len, 1, b, NULL, c2, NULL));
    CHECK(memcmp(c, c2, n * sizeof(float)) == 0);
    /* control tensors present but not expected: extra tensors are refused */
    expect_err(fed_net_unpack(m, buf, len, 0, b, NULL, NULL, NULL), FED_ESHAPE, "unexpected tensor 'control.");
    free(buf);
    /* NaN and Inf are refused with the tensor and element */
    a[5] = NAN;
    CHECK_OK(fed_net_pack(m, a, NULL, NULL, NULL, 0, &buf, &len));
    expect_err(fed_net_unpack(m, buf, len, 0, b, NULL, NULL, NULL), FED_ERANGE, "non-finite value (NaN) at element 5");
    free(buf);
    a[5] = INFINITY;
    CHECK_OK(fed_net_pack(m, a, NULL, NULL, NULL, 0, &buf, &len));
    expect_err(fed_net_unpack(m, buf, len, 0, b, NULL, NULL, NULL), FED_ERANGE, "(Inf)");
    /* truncated and garbage bodies are format errors, never crashes */
    CHECK(fed_net_unpack(m, buf, len / 2, 0, b, NULL, NULL, NULL) < 0);
    CHECK(fed_net_unpack(m, "garbage!", 8, 0, b, NULL, NULL, NULL) < 0);
    CHECK(fed_net_unpack(m, "", 0, 0, b, NULL, NULL, NULL) < 0);
    /* a wrong dtype: an I64 tensor where F32 is expected */
    {
        int64_t iv[8] = {0};
        fed_st_tensor t;
        memset(&t, 0, sizeof t);
        snprintf(t.name, sizeof t.name, "fc1.weight");
        t.dtype = FED_DTYPE_I64, t.ndim = 1, t.shape[0] = 8, t.numel = 8, t.data = iv;
        void *bb = NULL;
        size_t bl = 0;
        CHECK_OK(fed_st_serialize(&t, 1, NULL, 0, &bb, &bl));
        expect_err(fed_net_unpack(m, bb, bl, 0, b, NULL, NULL, NULL), FED_ESHAPE, "'fc1.weight' has dtype I64, expected F32");
        free(bb);
    }

    /* buffers (BatchNorm statistics, num_batches_tracked as I64 on the wire) round-trip too */
    {
        fed_model_opts mo;
        fed_model_opts_default(&mo);
        mo.in_c = 1, mo.in_h = 28, mo.in_w = 28, mo.num_classes = 10;
        fed_model *bn = NULL;
        CHECK_OK(fed_model_create(&bn, "cnn-bn", &mo));
        size_t np = fed_model_num_params(bn), nb = fed_model_num_buffers(bn);
        CHECK(nb > 0);
        float *pp = malloc(np * sizeof(float)), *bb = malloc(nb * sizeof(float));
        float *pp2 = malloc(np * sizeof(float)), *bb2 = malloc(nb * sizeof(float));
        for (size_t i = 0; i < np; i++) pp[i] = (float)(i % 17) * 0.25f;
        for (size_t i = 0; i < nb; i++) bb[i] = (float)(i % 5) + 3.0f;    /* integral: also valid as counts */
        void *bbuf = NULL;
        size_t blen = 0;
        CHECK_OK(fed_net_pack(bn, pp, bb, NULL, NULL, 0, &bbuf, &blen));
        CHECK_OK(fed_net_unpack(bn, bbuf, blen, 0, pp2, bb2, NULL, NULL));
        CHECK(memcmp(pp, pp2, np * sizeof(float)) == 0 && memcmp(bb, bb2, nb * sizeof(float)) == 0);
        free(bbuf);
        free(pp); free(bb); free(pp2); free(bb2);
        fed_model_free(bn);
    }

    /* zstd: round trip, and the size cap refuses a bomb before allocating */
    void *z = NULL, *p = NULL;
    size_t zl = 0, pl = 0;
    CHECK_OK(fed_net_zstd_compress(buf, len, &z, &zl));
    CHECK_OK(fed_net_zstd_decompress(z, zl, len, &p, &pl));
    CHECK(pl == len && memcmp(p, buf, len) == 0);
    free(p);
    expect_err(fed_net_zstd_decompress(z, zl, len - 1, &p, &pl), FED_ERANGE, "more than the limit");
    expect_err(fed_net_zstd_decompress("nonsense", 8, 1000, &p, &pl), FED_EFORMAT, "zstd");
    free(z);
    free(buf);

    /* the signed text: exact bytes (docs/protocol.md) */
    char text[512];
    int tl = fed_net_signed_text(text, sizeof text, "POST", "/v1/result", 3, 7, 2, 1700000000, "00112233445566778899aabbccddeeff", "abc", 3);
    CHECK(tl > 0);
    CHECK(strcmp(text, "federate-v1\nPOST\n/v1/result\n3\n7\n2\n1700000000\n00112233445566778899aabbccddeeff\n"
                       "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0);
    CHECK(fed_net_signed_text(text, 20, "POST", "/v1/result", 3, 7, 2, 1, "00", "", 0) < 0);

    /* key files */
    uint8_t pk[32], sk[64], pk2[32], sk2[64];
    CHECK_OK(fed_sign_keypair(pk, sk));
    snprintf(path, sizeof path, "%s/key", dir);
    CHECK_OK(fed_keyfile_write(path, sk));
    CHECK_OK(fed_keyfile_read(path, sk2, pk2));
    CHECK(memcmp(sk, sk2, 64) == 0 && memcmp(pk, pk2, 32) == 0);
    CHECK(access(path, R_OK) == 0);
    uint8_t pk3[32];
    CHECK_OK(fed_public_key_parse(path, pk3));          /* from the secret key file */
    CHECK(memcmp(pk3, pk, 32) == 0);
    char hex[65];
    fed_hex_encode(hex, pk, 32);
    CHECK_OK(fed_public_key_parse(hex, pk3));
    CHECK(memcmp(pk3, pk, 32) == 0);
    expect_err(fed_public_key_parse("abcd", pk3), FED_EFORMAT, "neither 64 hex digits");
    snprintf(path, sizeof path, "%s/notakey", dir);
    FILE *nf = fopen(path, "w");
    fputs("hello\n", nf);
    fclose(nf);
    CHECK(fed_keyfile_read(path, sk2, pk2) == FED_EFORMAT);
    CHECK(fed_public_key_parse(path, pk3) == FED_EFORMAT);

    /* the allow-list */
    fed_allowlist *al = NULL;
    snprintf(path, sizeof path, "%s/clients.db", dir);
    CHECK_OK(fed_allowlist_open(&al, path));
    CHECK_OK(fed_allowlist_enroll(al, 4, pk));
    CHECK_OK(fed_allowlist_get(al, 4, pk3));
    CHECK(memcmp(pk3, pk, 32) == 0);
    CHECK(fed_allowlist_get(al, 5, pk3) == FED_ENOTFOUND);
    CHECK_OK(fed_allowlist_enroll(al, 4, pk2));          /* re-enrolling replaces the key */
    CHECK_OK(fed_allowlist_get(al, 4, pk3));
    CHECK(memcmp(pk3, pk2, 32) == 0);
    CHECK(fed_allowlist_count(al) == 1);
    fed_allowlist_close(al);

    /* server.yaml: run keys plus the server: section; errors name the key and line */
    fed_config cfg;
    fed_server_opts so;
    snprintf(path, sizeof path, "%s/server.yaml", dir);
    FILE *y = fopen(path, "w");
    fputs("num_clients: 7\nmodel: mlp\nserver:\n  listen: 127.0.0.1:9000\n  round_timeout: 2.5\n  max_body_bytes: 4096\n"
          "  autostart: false\nnum_rounds: 3\n", y);
    fclose(y);
    fed_config_default(&cfg);
    fed_server_opts_default(&so);
    CHECK_OK(fed_server_config_load(path, &cfg, &so));
    CHECK(cfg.num_clients == 7 && cfg.num_rounds == 3 && strcmp(cfg.model, "mlp") == 0);
    CHECK(strcmp(so.listen, "127.0.0.1:9000") == 0 && so.round_timeout == 2.5 && so.max_body_bytes == 4096 && so.autostart == 0);
    y = fopen(path, "w");
    fputs("num_clients: 7\nserver:\n  round_timeot: 2\n", y);
    fclose(y);
    expect_err(fed_server_config_load(path, &cfg, &so), FED_EINVAL, "line 3: unknown key 'server.round_timeot'");
    y = fopen(path, "w");
    fputs("num_clients: seven\n", y);
    fclose(y);
    expect_err(fed_server_config_load(path, &cfg, &so), FED_EINVAL, "num_clients");
    y = fopen(path, "w");
    fputs("server:\n  long_poll: 0\n", y);
    fclose(y);
    expect_err(fed_server_config_load(path, &cfg, &so), FED_EINVAL, "server.long_poll");
    y = fopen(path, "w");
    fputs("server: [1, 2\n", y);
    fclose(y);
    CHECK(fed_server_config_load(path, &cfg, &so) < 0);

    free(a); free(b); free(c); free(c2); free(o);
    fed_model_free(m);
    fed_model_free(other);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    TEST_PASS("test_net_wire");
}
