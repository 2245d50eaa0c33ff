/* federate bench compress: encode/decode throughput, ratio and error of an update
 * codec chain (include/federate/compress.h) on a vector shaped like a model
 * update: N(0, 0.001^2) values, by default as many as the cnn model has. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "args.h"
#include "common.h"
#include "federate/compress.h"

/* The lead adds this to cli/common.h; declared here until then. */
int cmd_bench_compress(int argc, char **argv);

int cmd_bench_compress(int argc, char **argv) {
    const char *spec = NULL;
    uint64_t length = 1663370;
    int repeat = 10;
    double std = 1e-3;
    uint64_t seed = 1;
    const arg_spec specs[] = {
        {"codec", ARG_STRING, &spec, "codec chain, e.g. topk:0.01,q8,zstd (required)", NO_RANGE, NULL},
        {"length", ARG_U64, &length, "floats per update (default 1663370, the cnn model)", NO_RANGE, NULL},
        {"repeat", ARG_INT, &repeat, "timed repetitions, best reported (default 10)", 1, 100000, NULL},
        {"std", ARG_FLOAT, &std, "standard deviation of the update's values (default 0.001)", NO_RANGE, NULL},
        {"seed", ARG_U64, &seed, "seed of the vector and of the codec's stream (default 1)", NO_RANGE, NULL},
        ARG_END,
    };
    int rc = args_parse("bench compress", "--codec SPEC [FLAGS]", specs, argc, argv, 3, NULL, 0, NULL);
    if (rc) return rc > 0 ? 0 : 2;
    if (!spec) {
        fprintf(stderr, "federate bench compress: --codec is required (e.g. --codec q8,zstd)\n");
        return 2;
    }
    uint64_t n64 = length;
    if (n64 < 1 || n64 > (1ull << 32)) {
        fprintf(stderr, "federate bench compress: --length must be in [1, 2^32]\n");
        return 2;
    }
    if (!(std > 0) || !isfinite(std)) {
        fprintf(stderr, "federate bench compress: --std must be a finite number > 0\n");
        return 2;
    }
    fed_codec *c = NULL;
    if ((rc = fed_codec_new(&c, spec))) {
        cli_fail("bench compress", "bad --codec", rc);
        return 2;
    }
    size_t n = (size_t)n64;
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    uint8_t *buf = NULL;
    size_t len = 0;
    int status = 1;
    if (!x || !y) {
        fprintf(stderr, "federate bench compress: out of memory\n");
        goto out;
    }
    fed_rng r;
    fed_rng_init(&r, seed, 0, 0, FED_RNG_USER);
    fed_rng_fill_normal(&r, x, n, 0.0f, (float)std);
    fed_codec_ctx ctx = {seed, 0, 0};
    double best_enc = 1e30, best_dec = 1e30;
    for (int k = 0; k < repeat + 1; k++) {
        free(buf);
        buf = NULL;
        ctx.round = (uint64_t)k;
        double t0 = cli_now();
        if ((rc = fed_codec_encode(c, &ctx, x, n, NULL, &buf, &len))) {
            cli_fail("bench compress", "encode", rc);
            goto out;
        }
        double t1 = cli_now();
        if ((rc = fed_codec_decode(c, buf, len, y, n))) {
            cli_fail("bench compress", "decode", rc);
            goto out;
        }
        double t2 = cli_now();
        if (k == 0) continue; /* warm-up: page faults, zstd tables */
        if (t1 - t0 < best_enc) best_enc = t1 - t0;
        if (t2 - t1 < best_dec) best_dec = t2 - t1;
    }
    double err = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)x[i] - (double)y[i]);
        if (d > err) err = d;
    }
    double gb = (double)n * sizeof(float) / 1e9;
    printf("codec: %s\n", spec);
    printf("canonical: %s\n", fed_codec_spec(c));
    printf("length: %zu\n", n);
    printf("encoded_bytes: %zu\n", len);
    printf("encode_gb_per_s: %.3f\n", gb / best_enc);
    printf("decode_gb_per_s: %.3f\n", gb / best_dec);
    printf("ratio: %.2f\n", (double)n * sizeof(float) / (double)len);
    printf("max_abs_error: %.6g\n", err);
    status = 0;
out:
    free(buf);
    free(x);
    free(y);
    fed_codec_free(c);
    return status;
}
