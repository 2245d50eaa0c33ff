/* The coordinator's request parsers (src/net/requests.h) on their own: what
 * each body and header set is accepted as, and that each refusal carries the
 * code and message the coordinator answers with (tests/cli_deploy_curl.sh
 * greps some of them over HTTP); for the signature headers, that the first
 * failing check is the one reported, since the coordinator's status depends on
 * it. tests/fuzz/fuzz_requests.c feeds the same parsers arbitrary input. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "federate/error.h"
#include "net/requests.h"

static void expect_err(int rc, int code, const char *needle) {
    if (rc != code || !strstr(fed_last_error(), needle)) {
        fprintf(stderr, "expected %d with '%s', got %d: %s\n", code, needle, rc, fed_last_error());
        exit(1);
    }
}

static int reg(const char *body, fed_req_register *r, int32_t *labels) {
    return fed_req_register_parse(body, strlen(body), 3, r, labels);
}

static void check_register(void) {
    fed_req_register r;
    int32_t lab[3] = {-1, -1, -1};
    CHECK_OK(reg("{\"protocol\": 1, \"train_examples\": 600, \"test_examples\": 0, \"label_counts\": [1, 2, 3]}", &r, lab));
    CHECK(r.train_examples == 600 && r.test_examples == 0 && r.has_label_counts);
    CHECK(lab[0] == 1 && lab[1] == 2 && lab[2] == 3);
    /* a count that is not a non-negative int32 leaves the list out, the registration stands */
    CHECK_OK(reg("{\"protocol\": 1, \"train_examples\": 5, \"test_examples\": 2, \"label_counts\": [1, 2.5, 3]}", &r, lab));
    CHECK(!r.has_label_counts && r.train_examples == 5 && r.test_examples == 2);
    CHECK_OK(reg("{\"protocol\": 1, \"train_examples\": 5, \"test_examples\": 2, \"label_counts\": [1, -2, 3]}", &r, lab));
    CHECK(!r.has_label_counts);
    CHECK_OK(reg("{\"protocol\": 1, \"train_examples\": 2147483647, \"test_examples\": 2147483647}", &r, lab));
    CHECK(!r.has_label_counts);
    /* no body at all: read as empty, whatever length comes with it */
    expect_err(fed_req_register_parse(NULL, 7, 3, &r, lab), FED_EFORMAT, "register: body is not a JSON object (");
    expect_err(reg("{\"protocol\": 1, ", &r, lab), FED_EFORMAT, "register: body is not a JSON object (");
    expect_err(reg("[1, 2]", &r, lab), FED_EFORMAT, "register: body is not a JSON object ()");
    expect_err(reg("{\"train_examples\": 5, \"test_examples\": 2}", &r, lab), FED_EFORMAT, "\"protocol\" must be 1");
    expect_err(reg("{\"protocol\": 2, \"train_examples\": 5, \"test_examples\": 2}", &r, lab), FED_EFORMAT, "\"protocol\" must be 1");
    expect_err(reg("{\"protocol\": 1, \"train_examples\": 0, \"test_examples\": 2}", &r, lab), FED_EFORMAT,
               "register: \"train_examples\" must be a positive integer");
    expect_err(reg("{\"protocol\": 1, \"train_examples\": 2147483648, \"test_examples\": 2}", &r, lab), FED_EFORMAT,
               "\"train_examples\" must be a positive integer");
    expect_err(reg("{\"protocol\": 1, \"train_examples\": 5, \"test_examples\": -1}", &r, lab), FED_EFORMAT,
               "\"test_examples\" must be a non-negative integer");
    expect_err(reg("{\"protocol\": 1, \"train_examples\": 5, \"test_examples\": 1, \"label_counts\": [1, 2]}", &r, lab),
               FED_EFORMAT, "\"label_counts\" must list one count per class");
    expect_err(reg("{\"protocol\": 1, \"train_examples\": 5, \"test_examples\": 1, \"label_counts\": {}}", &r, lab),
               FED_EFORMAT, "\"label_counts\" must list one count per class");
}

static int eval(const char *body, fed_req_evaluation *e) { return fed_req_evaluation_parse(body, strlen(body), e); }

static void check_evaluation(void) {
    fed_req_evaluation e;
    CHECK_OK(eval("{\"loss\": 0.25, \"accuracy\": 1, \"num_examples\": 100}", &e));
    CHECK(e.loss == 0.25 && e.accuracy == 1 && e.num_examples == 100);
    const char *shape = "evaluation: body must be a JSON object with numbers \"loss\", \"accuracy\" and integer \"num_examples\"";
    expect_err(eval("{\"loss\": 0.25, \"accuracy\": 0.5, \"num_examples\": 1.0}", &e), FED_EFORMAT, shape);
    expect_err(eval("{\"loss\": \"0.25\", \"accuracy\": 0.5, \"num_examples\": 1}", &e), FED_EFORMAT, shape);
    expect_err(eval("[0.25, 0.5, 1]", &e), FED_EFORMAT, shape);
    expect_err(eval("", &e), FED_EFORMAT, shape);
    const char *range = "evaluation: loss must be finite and accuracy in [0, 1]";
    expect_err(eval("{\"loss\": 0.25, \"accuracy\": 1.5, \"num_examples\": 1}", &e), FED_ERANGE, range);
    expect_err(eval("{\"loss\": 0.25, \"accuracy\": -0.1, \"num_examples\": 1}", &e), FED_ERANGE, range);
    /* JSON has no NaN or infinity, and jansson refuses a number that overflows a double */
    expect_err(eval("{\"loss\": 1e999, \"accuracy\": 0.5, \"num_examples\": 1}", &e), FED_EFORMAT, "evaluation: body must");
}

#define KEY "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

static int enroll(const char *body, fed_req_enroll *e) { return fed_req_enroll_parse(body, strlen(body), 4, e); }

static void check_enroll(void) {
    fed_req_enroll e;
    CHECK_OK(enroll("{\"client\": 3, \"public_key\": \"" KEY "\"}", &e));
    CHECK(e.client == 3 && e.public_key[0] == 0x00 && e.public_key[1] == 0x11 && e.public_key[31] == 0xff);
    const char *msg = "enroll: body must be {\"client\": ID in [0, 4), \"public_key\": 64 hex digits}";
    expect_err(enroll("{\"client\": 4, \"public_key\": \"" KEY "\"}", &e), FED_EFORMAT, msg);
    expect_err(enroll("{\"client\": -1, \"public_key\": \"" KEY "\"}", &e), FED_EFORMAT, msg);
    expect_err(enroll("{\"client\": \"1\", \"public_key\": \"" KEY "\"}", &e), FED_EFORMAT, msg);
    expect_err(enroll("{\"client\": 1, \"public_key\": \"" KEY "0\"}", &e), FED_EFORMAT, msg);
    expect_err(enroll("{\"client\": 1, \"public_key\": \"zz" KEY "\"}", &e), FED_EFORMAT, msg);
    expect_err(enroll("{\"client\": 1}", &e), FED_EFORMAT, msg);
    expect_err(enroll("not json", &e), FED_EFORMAT, msg);
}

#define NONCE "00112233445566778899aabbccddeeff"
#define SIG KEY KEY

static void expect_failed(fed_req_headers h, enum fed_req_failed failed, const char *needle) {
    fed_req_signed s;
    int rc = fed_req_signed_parse(&h, 4, &s);
    if (failed == FED_REQ_PASSED) CHECK_OK(rc);
    else expect_err(rc, FED_EFORMAT, needle);
    CHECK_EQ_INT(s.failed, failed);
}

static void check_signed(void) {
    fed_req_headers ok = {"2", "1764871200", NONCE, SIG, "99", "7"};
    fed_req_signed s;
    CHECK_OK(fed_req_signed_parse(&ok, 4, &s));
    CHECK(s.failed == FED_REQ_PASSED && s.client == 2 && s.timestamp == 1764871200 && s.run == 99 && s.round == 7);
    CHECK(s.nonce[0] == 0x00 && s.nonce[15] == 0xff && s.signature[1] == 0x11 && s.signature[63] == 0xff);
    fed_req_headers h = ok;
    h.run = h.round = NULL; /* optional: 0 */
    CHECK_OK(fed_req_signed_parse(&h, 4, &s));
    CHECK(s.run == 0 && s.round == 0);
    h = ok, h.nonce = NULL;
    expect_failed(h, FED_REQ_MISSING, "unsigned request: header X-Federate-Nonce is missing");
    h = ok, h.client = NULL, h.signature = NULL;
    expect_failed(h, FED_REQ_MISSING, "header X-Federate-Client is missing");
    h = ok, h.client = "4";
    expect_failed(h, FED_REQ_CLIENT, "unknown client '4' (ids are 0..3)");
    h = ok, h.client = "1x", h.nonce = "bad"; /* the first failing check is the one named */
    expect_failed(h, FED_REQ_CLIENT, "unknown client '1x'");
    h = ok, h.client = "";
    expect_failed(h, FED_REQ_CLIENT, "unknown client ''");
    h = ok, h.run = "12a";
    expect_failed(h, FED_REQ_RUN_ROUND, "X-Federate-Run must be an integer (got '12a')");
    h = ok, h.round = "x";
    expect_failed(h, FED_REQ_RUN_ROUND, "X-Federate-Round must be an integer in [0, 2^30] (got 'x')");
    /* an integer out of range is named as such, not as "not an integer" */
    h = ok, h.round = "-1";
    expect_failed(h, FED_REQ_RUN_ROUND, "X-Federate-Round must be an integer in [0, 2^30] (got '-1')");
    h = ok, h.round = "1073741825";
    expect_failed(h, FED_REQ_RUN_ROUND, "in [0, 2^30] (got '1073741825')");
    h = ok, h.round = "1073741824";
    expect_failed(h, FED_REQ_PASSED, "");
    h = ok, h.nonce = NONCE "00";
    expect_failed(h, FED_REQ_NONCE, "X-Federate-Nonce must be 32 hex digits");
    h = ok, h.nonce = "g0112233445566778899aabbccddeeff", h.timestamp = "x";
    expect_failed(h, FED_REQ_NONCE, "X-Federate-Nonce must be 32 hex digits");
    h = ok, h.signature = KEY;
    expect_failed(h, FED_REQ_SIGNATURE, "X-Federate-Signature must be 128 hex digits");
    h = ok, h.timestamp = "17648712OO";
    expect_failed(h, FED_REQ_TIMESTAMP, "X-Federate-Timestamp must be an integer (Unix seconds)");
    h = ok, h.timestamp = "99999999999999999999";
    expect_failed(h, FED_REQ_TIMESTAMP, "X-Federate-Timestamp must be an integer");
}

int main(void) {
    check_register();
    check_evaluation();
    check_enroll();
    check_signed();
    TEST_PASS("net_requests");
}
