/* libFuzzer entry point for the coordinator's request parsers (src/net/requests.h):
 * the first byte picks one, the rest is its input.
 *   0  a POST /v1/register body       2  a POST /api/enroll body
 *   1  a POST /v1/evaluation body     3  the signature headers, one per line:
 *      client, timestamp, nonce, signature, run, round (a line not there is a
 *      header not sent)
 * Whatever a parser accepts must be in the ranges the handlers rely on, and a
 * refusal must say why. Built and run by tests/fuzz/run.sh; seeds in
 * tests/fuzz/corpus/requests. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "federate/error.h"
#include "net/requests.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NUM_CLASSES 10
#define NCLIENTS 8

static void refused(int rc) {
    if (rc >= 0 || !fed_last_error()[0]) __builtin_trap();
}

static void headers(const uint8_t *p, size_t len) {
    /* split a NUL-terminated copy on newlines: headers are C strings to the parser */
    char *buf = malloc(len + 1);
    if (!buf) __builtin_trap();
    memcpy(buf, p, len);
    buf[len] = '\0';
    const char *f[6] = {0};
    char *s = buf;
    for (int i = 0; i < 6 && s; i++) {
        f[i] = s;
        s = strchr(s, '\n');
        if (s) *s++ = '\0';
    }
    fed_req_headers h = {f[0], f[1], f[2], f[3], f[4], f[5]};
    fed_req_signed out;
    int rc = fed_req_signed_parse(&h, NCLIENTS, &out);
    if (rc) {
        refused(rc);
        if (out.failed == FED_REQ_PASSED) __builtin_trap();
    } else if (out.failed != FED_REQ_PASSED || out.client < 0 || out.client >= NCLIENTS || out.round < 0 ||
               out.round > 1 << 30) {
        __builtin_trap();
    }
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!size) return 0;
    const uint8_t *body = data + 1;
    size_t len = size - 1;
    fed_clear_error();
    int rc;
    switch (data[0] % 4) {
    case 0: {
        fed_req_register r;
        int32_t labels[NUM_CLASSES];
        if ((rc = fed_req_register_parse(body, len, NUM_CLASSES, &r, labels))) refused(rc);
        else {
            if (r.train_examples < 1 || r.train_examples > INT32_MAX || r.test_examples < 0 || r.test_examples > INT32_MAX)
                __builtin_trap();
            for (int i = 0; r.has_label_counts && i < NUM_CLASSES; i++)
                if (labels[i] < 0) __builtin_trap();
        }
        break;
    }
    case 1: {
        fed_req_evaluation e;
        if ((rc = fed_req_evaluation_parse(body, len, &e))) refused(rc);
        else if (!isfinite(e.loss) || !(e.accuracy >= 0 && e.accuracy <= 1)) __builtin_trap();
        break;
    }
    case 2: {
        fed_req_enroll e;
        if ((rc = fed_req_enroll_parse(body, len, NCLIENTS, &e))) refused(rc);
        else if (e.client < 0 || e.client >= NCLIENTS) __builtin_trap();
        break;
    }
    default: headers(body, len); break;
    }
    return 0;
}
