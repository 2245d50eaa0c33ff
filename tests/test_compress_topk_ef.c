/* Update codecs: top-k keeps exactly the k largest magnitudes (checked against a
 * sort, with ties, zeros, the sampled and the plain selection paths), the index
 * coding picks the smaller of varints and a bitmap, and error feedback loses
 * nothing: over many rounds, sum of decoded updates + residual = sum of inputs. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "federate/compress.h"
#include "federate/error.h"
#include "federate/rng.h"

static const float *g_x;

/* descending |x|, then ascending index: the codec's tie rule */
static int by_mag(const void *a, const void *b) {
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    float u = fabsf(g_x[i]), v = fabsf(g_x[j]);
    if (u != v) return u > v ? -1 : 1;
    return (i > j) - (i < j);
}

static void check_topk(const float *x, size_t n, const char *spec, size_t k) {
    size_t *ord = malloc(n * sizeof *ord);
    float *y = malloc(n * sizeof *y);
    char *want = calloc(n, 1);
    for (size_t i = 0; i < n; i++) ord[i] = i;
    g_x = x;
    qsort(ord, n, sizeof *ord, by_mag);
    for (size_t i = 0; i < k; i++) want[ord[i]] = 1;
    fed_codec *c;
    CHECK_OK(fed_codec_new(&c, spec));
    uint8_t *buf;
    size_t len;
    CHECK_OK(fed_codec_encode(c, NULL, x, n, NULL, &buf, &len));
    CHECK_OK(fed_codec_decode(c, buf, len, y, n));
    /* exactly the reference set: a kept zero decodes to 0 too, so compare values */
    for (size_t i = 0; i < n; i++) {
        if (want[i]) CHECK(y[i] == x[i]);
        else CHECK(y[i] == 0);
    }
    /* index bytes: the smaller of gap varints and a bitmap */
    size_t vl = 0;
    size_t prev = 0;
    int first = 1;
    for (size_t i = 0; i < n; i++)
        if (want[i]) {
            uint64_t g = first ? i : i - prev - 1;
            first = 0;
            prev = i;
            do {
                vl++;
                g >>= 7;
            } while (g);
        }
    size_t bl = (n + 7) / 8, il = vl <= bl ? vl : bl;
    CHECK_EQ_INT(len, 16 + 32 + il + 32 + 4 * k);
    free(buf);
    fed_codec_free(c);
    free(ord);
    free(y);
    free(want);
}

static void selection(void) {
    size_t n = 200003;
    float *x = malloc(n * sizeof *x);
    fed_rng r;
    fed_rng_init(&r, 1, 0, 0, FED_RNG_USER);
    fed_rng_fill_normal(&r, x, n, 0, 1e-3f);
    check_topk(x, n, "topk:0.01", 2001);      /* sampled threshold path, varint indices */
    check_topk(x, n, "topk:k=1", 1);
    check_topk(x, n, "topk:0.3", 60001);      /* plain quickselect, bitmap indices */
    check_topk(x, n, "topk:k=200003", n);     /* everything */
    /* heavy ties and zeros: 5 distinct magnitudes, signs mixed */
    for (size_t i = 0; i < n; i++) x[i] = (float)((int)(fed_rng_below(&r, 5)) - 2) * 0.5f;
    check_topk(x, n, "topk:0.01", 2001);
    check_topk(x, n, "topk:0.5", 100002);
    for (size_t i = 0; i < n; i++) x[i] = 0;
    check_topk(x, n, "topk:0.01", 2001);
    x[17] = -3;
    x[n - 1] = 2;
    check_topk(x, n, "topk:k=2", 2);
    /* small vectors */
    float s[5] = {0.1f, -0.5f, 0.3f, -0.3f, 0.0f};
    check_topk(s, 5, "topk:k=2", 2);
    check_topk(s, 5, "topk:k=3", 3); /* |0.3| tie: the lower index wins */
    free(x);
}

/* sum_t decode_t + residual_T == sum_t x_t, in double, to float tolerance */
static void error_feedback(const char *spec, size_t n, int rounds) {
    fed_codec *c;
    CHECK_OK(fed_codec_new(&c, spec));
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y), *res = calloc(n, sizeof *res);
    double *sx = calloc(n, sizeof *sx), *sy = calloc(n, sizeof *sy);
    fed_rng r;
    fed_rng_init(&r, 2, 0, 0, FED_RNG_USER);
    double scale = 0;
    for (int t = 0; t < rounds; t++) {
        fed_rng_fill_normal(&r, x, n, 1e-4f, 1e-3f);
        for (size_t i = 0; i < n; i++) sx[i] += x[i];
        fed_codec_ctx ctx = {3, (uint64_t)t, 1};
        uint8_t *buf;
        size_t len;
        CHECK_OK(fed_codec_encode(c, &ctx, x, n, res, &buf, &len));
        CHECK_OK(fed_codec_decode(c, buf, len, y, n));
        free(buf);
        for (size_t i = 0; i < n; i++) sy[i] += y[i];
        scale += 1e-3;
    }
    double worst = 0, rmax = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(sy[i] + res[i] - sx[i]);
        worst = d > worst ? d : worst;
        rmax = fabs(res[i]) > rmax ? fabs(res[i]) : rmax;
    }
    /* float rounding of e = x + r and r = e - y each round */
    if (!(worst <= 1e-6 * rounds * (rmax + scale) + 1e-9)) {
        fprintf(stderr, "%s: sum(decoded) + residual - sum(x) = %g\n", spec, worst);
        exit(1);
    }
    /* the residual stays bounded (the compressor is contractive): it does not
     * grow like the sum of what is held back */
    if (!(rmax < 0.5)) { fprintf(stderr, "%s: residual grew to %g\n", spec, rmax); exit(1); }
    fed_codec_free(c);
    free(x);
    free(y);
    free(res);
    free(sx);
    free(sy);
}

/* Top-k with error feedback sends every coordinate eventually: what is held
 * back grows until it is among the largest. */
static void ef_reaches_all(void) {
    size_t n = 1000;
    fed_codec *c;
    CHECK_OK(fed_codec_new(&c, "topk:0.05"));
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y), *res = calloc(n, sizeof *res);
    char *seen = calloc(n, 1);
    for (size_t i = 0; i < n; i++) x[i] = 1e-3f * (float)(1 + i % 10);
    for (int t = 0; t < 400; t++) {
        uint8_t *buf;
        size_t len;
        CHECK_OK(fed_codec_encode(c, NULL, x, n, res, &buf, &len));
        CHECK_OK(fed_codec_decode(c, buf, len, y, n));
        free(buf);
        for (size_t i = 0; i < n; i++) seen[i] |= y[i] != 0;
    }
    for (size_t i = 0; i < n; i++) CHECK(seen[i]);
    free(x);
    free(y);
    free(res);
    free(seen);
    fed_codec_free(c);
}

int main(void) {
    selection();
    error_feedback("topk:0.01", 5000, 100);
    error_feedback("topk:0.01,q8", 5000, 100);
    error_feedback("topk:k=10,sign,zstd", 5000, 100);
    error_feedback("sign", 5000, 100);
    error_feedback("sign,zstd", 4099, 50);
    error_feedback("q2", 5000, 100);
    error_feedback("qsgd:levels=16:bucket=64", 5000, 100); /* contractive: levels^2 >= bucket */
    error_feedback("q8:block=64,zstd", 5000, 50);
    error_feedback("zstd", 1000, 10);
    ef_reaches_all();
    TEST_PASS("compress_topk_ef");
}
