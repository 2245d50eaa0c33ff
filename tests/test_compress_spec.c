/* Update codecs: the spec strings of the YAML config — what parses, its
 * canonical form (which parses back to itself), and errors that name the bad
 * token, list the allowed ones and suggest the near miss. */
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "federate/compress.h"
#include "federate/error.h"

static void ok(const char *spec, const char *canon) {
    fed_codec *c = NULL;
    CHECK_OK(fed_codec_new(&c, spec));
    if (strcmp(fed_codec_spec(c), canon)) {
        fprintf(stderr, "'%s' -> '%s', expected '%s'\n", spec, fed_codec_spec(c), canon);
        exit(1);
    }
    /* the canonical form is a fixed point */
    fed_codec *d = NULL;
    CHECK_OK(fed_codec_new(&d, fed_codec_spec(c)));
    CHECK(strcmp(fed_codec_spec(d), canon) == 0);
    fed_codec_free(c);
    fed_codec_free(d);
}

/* Fails with FED_EINVAL and a message containing each of the words. */
static void bad(const char *spec, const char *w1, const char *w2) {
    fed_codec *c = (fed_codec *)1;
    int rc = fed_codec_new(&c, spec);
    if (rc != FED_EINVAL || c != NULL || !strstr(fed_last_error(), w1) || (w2 && !strstr(fed_last_error(), w2))) {
        fprintf(stderr, "'%s': rc %d, message '%s' (wanted '%s'%s%s)\n", spec, rc, fed_last_error(), w1, w2 ? ", " : "",
                w2 ? w2 : "");
        exit(1);
    }
}

int main(void) {
    ok("", "f32");
    ok("f32", "f32");
    ok("none", "f32");
    ok("zstd", "zstd:level=3");
    ok("topk:0.01,q8,zstd", "topk:frac=0.01,q8:block=0:scale=minmax,zstd:level=3");
    ok("q8:block=256,zstd", "q8:block=256:scale=minmax,zstd:level=3");
    ok("sign,zstd", "sign,zstd:level=3");
    ok("qsgd:levels=16", "qsgd:levels=16:bucket=512");
    ok("qsgd:levels=4,bucket=0", "qsgd:levels=4:bucket=0");
    ok("qsgd:8", "qsgd:levels=8:bucket=512");
    ok(" q4 , zstd:level=9 ", "q4:block=0:scale=minmax,zstd:level=9");
    ok("q2:absmax", "q2:block=0:scale=absmax");
    ok("q8,scale=absmax,block=64", "q8:block=64:scale=absmax");
    ok("topk:1000", "topk:k=1000");
    ok("topk:k=7,f32", "topk:k=7");
    ok("topk:1%", "topk:frac=0.01");
    ok("topk:1e-3,sign", "topk:frac=0.001,sign");
    ok("randk:frac=0.25,q4:block=32", "randk:frac=0.25,q4:block=32:scale=minmax");
    ok("topk", "topk:frac=0.01");
    ok("zstd:-3", "zstd:level=-3");

    bad("q9,zstd", "unknown stage 'q9'", "did you mean 'q8'");
    bad("topk:0.01,q8,zsdt", "'zsdt'", "did you mean 'zstd'");
    bad("tokp:0.01", "allowed: topk, randk, q8, q4, q2, qsgd, sign", "did you mean 'topk'");
    bad("gzip", "unknown stage 'gzip'", NULL);
    bad("q8:blok=4", "unknown parameter 'blok' for q8 (allowed: block, scale)", "did you mean 'block'");
    bad("q8:block=-1", "block '-1'", NULL);
    bad("q8:block=12x", "block '12x'", NULL);
    bad("q8:absmx", "absmx", "did you mean 'absmax'");
    bad("q8:scale=max", "scale 'max'", "allowed: minmax, absmax");
    bad("zstd,q8", "out of order", "before zstd");
    bad("q8,topk:0.1", "out of order", "sparsifier must come first");
    bad("q8,q4", "only one value coder", NULL);
    bad("topk:0.1,randk:0.1", "only one sparsifier", NULL);
    bad("zstd,zstd", "zstd appears twice", NULL);
    bad("topk:0", "count '0'", NULL);
    bad("topk:1.5", "fraction '1.5'", "(0, 1]");
    bad("topk:-0.1", "fraction '-0.1'", NULL);
    bad("topk:ten", "'ten'", "(0, 1]");
    bad("topk:abc", "count 'abc'", NULL);
    bad("topk:kk=3", "unknown parameter 'kk'", "allowed: frac, k");
    bad("q8,,zstd", "empty stage", NULL);
    bad("q8:", "empty parameter", NULL);
    bad("qsgd:levels=0", "levels '0'", "[1, 32767]");
    bad("qsgd:levels=40000", "levels '40000'", NULL);
    bad("qsgd:bucket=x", "bucket 'x'", NULL);
    bad("sign:3", "sign takes no parameters", NULL);
    bad("f32:x=1", "f32 takes no parameters", NULL);
    bad("block=4", "a parameter before any stage", NULL);
    bad("zstd:level=99", "zstd level '99'", "[-7, 19]");
    bad("zstd:lvl=3", "unknown parameter 'lvl'", "did you mean 'level'");
    bad("q8=3", "write q8:KEY=VALUE", NULL);
    char longspec[300];
    memset(longspec, 'a', sizeof longspec - 1);
    longspec[sizeof longspec - 1] = '\0';
    bad(longspec, "too long", NULL);
    CHECK_EQ_INT(fed_codec_new(NULL, "q8"), FED_EINVAL);
    CHECK(strcmp(fed_codec_spec(NULL), "") == 0);
    TEST_PASS("compress_spec");
}
