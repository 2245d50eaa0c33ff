/* The coordinator's request parsers: JSON bodies and signature headers into
 * caller-owned structs, with the messages the coordinator answers with. No
 * coordinator state here, so the fuzzer (tests/fuzz/fuzz_requests.c) drives
 * the same code the handlers run. */
#include "requests.h"
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "federate/error.h"
#include "federate/net.h"

int fed_req_parse_i64(const char *s, int64_t *v) {
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (*end || errno) return -1;
    *v = x;
    return 0;
}

/* A body may be absent (no upload at all): read as empty, never dereferenced. */
static json_t *load(const void *body, size_t len, json_error_t *err) {
    return json_loadb(body ? body : "", body ? len : 0, 0, err);
}

static int int_in(const json_t *v, json_int_t lo, json_int_t hi) {
    return json_is_integer(v) && json_integer_value(v) >= lo && json_integer_value(v) <= hi;
}

int fed_req_register_parse(const void *body, size_t len, int num_classes, fed_req_register *out,
                           int32_t *label_counts) {
    memset(out, 0, sizeof *out);
    json_error_t err;
    json_t *j = load(body, len, &err);
    if (!j || !json_is_object(j)) {
        json_decref(j);
        return fed_error(FED_EFORMAT, "register: body is not a JSON object (%s)", j ? "" : err.text);
    }
    json_t *tn = json_object_get(j, "train_examples"), *te = json_object_get(j, "test_examples");
    json_t *lc = json_object_get(j, "label_counts"), *pv = json_object_get(j, "protocol");
    const char *bad = NULL;
    if (!json_is_integer(pv) || json_integer_value(pv) != FED_PROTOCOL_VERSION) bad = "\"protocol\" must be 1";
    else if (!int_in(tn, 1, INT32_MAX)) bad = "\"train_examples\" must be a positive integer";
    else if (!int_in(te, 0, INT32_MAX)) bad = "\"test_examples\" must be a non-negative integer";
    else if (lc && (!json_is_array(lc) || num_classes < 0 || json_array_size(lc) != (size_t)num_classes))
        bad = "\"label_counts\" must list one count per class";
    if (bad) {
        json_decref(j);
        return fed_error(FED_EFORMAT, "register: %s", bad);
    }
    out->train_examples = json_integer_value(tn);
    out->test_examples = json_integer_value(te);
    int ok = lc != NULL;
    for (int i = 0; ok && i < num_classes; i++) ok = int_in(json_array_get(lc, (size_t)i), 0, INT32_MAX);
    for (int i = 0; ok && i < num_classes; i++) label_counts[i] = (int32_t)json_integer_value(json_array_get(lc, (size_t)i));
    out->has_label_counts = ok;
    json_decref(j);
    return 0;
}

int fed_req_evaluation_parse(const void *body, size_t len, fed_req_evaluation *out) {
    memset(out, 0, sizeof *out);
    json_error_t err;
    json_t *j = load(body, len, &err);
    json_t *lo = json_object_get(j, "loss"), *ac = json_object_get(j, "accuracy"), *ne = json_object_get(j, "num_examples");
    if (!j || !json_is_number(lo) || !json_is_number(ac) || !json_is_integer(ne)) {
        json_decref(j);
        return fed_error(FED_EFORMAT, "evaluation: body must be a JSON object with numbers \"loss\", \"accuracy\" and "
                                      "integer \"num_examples\"");
    }
    out->loss = json_number_value(lo);
    out->accuracy = json_number_value(ac);
    out->num_examples = json_integer_value(ne);
    json_decref(j);
    if (!isfinite(out->loss) || !(out->accuracy >= 0 && out->accuracy <= 1))
        return fed_error(FED_ERANGE, "evaluation: loss must be finite and accuracy in [0, 1]");
    return 0;
}

int fed_req_enroll_parse(const void *body, size_t len, int nclients, fed_req_enroll *out) {
    memset(out, 0, sizeof *out);
    json_error_t err;
    json_t *j = load(body, len, &err);
    json_t *id = json_object_get(j, "client");
    const char *hex = json_string_value(json_object_get(j, "public_key"));
    int ok = int_in(id, 0, (json_int_t)nclients - 1) && hex && strlen(hex) == 2 * FED_SIGN_PUBLICKEYBYTES &&
             fed_hex_decode(out->public_key, sizeof out->public_key, hex) == 0;
    if (ok) out->client = (int)json_integer_value(id);
    json_decref(j);
    if (!ok)
        return fed_error(FED_EFORMAT, "enroll: body must be {\"client\": ID in [0, %d), \"public_key\": 64 hex digits}",
                         nclients);
    return 0;
}

int fed_req_signed_parse(const fed_req_headers *h, int nclients, fed_req_signed *out) {
    memset(out, 0, sizeof *out);
    const char *names[] = {"X-Federate-Client", "X-Federate-Timestamp", "X-Federate-Nonce", "X-Federate-Signature"};
    const char *v[] = {h->client, h->timestamp, h->nonce, h->signature};
    for (int i = 0; i < 4; i++)
        if (!v[i]) {
            out->failed = FED_REQ_MISSING;
            return fed_error(FED_EFORMAT, "unsigned request: header %s is missing", names[i]);
        }
    int64_t id, round = 0;
    if (fed_req_parse_i64(h->client, &id) || id < 0 || id >= nclients) {
        out->failed = FED_REQ_CLIENT;
        return fed_error(FED_EFORMAT, "unknown client '%.40s' (ids are 0..%d)", h->client, nclients - 1);
    }
    out->client = (int)id;
    if (h->run && fed_req_parse_i64(h->run, &out->run)) {
        out->failed = FED_REQ_RUN_ROUND;
        return fed_error(FED_EFORMAT, "X-Federate-Run must be an integer (got '%.40s')", h->run);
    }
    if (h->round && (fed_req_parse_i64(h->round, &round) || round < 0 || round > 1 << 30)) {
        out->failed = FED_REQ_RUN_ROUND;
        return fed_error(FED_EFORMAT, "X-Federate-Round must be an integer in [0, 2^30] (got '%.40s')", h->round);
    }
    out->round = (int)round;
    if (strlen(h->nonce) != 2 * sizeof out->nonce || fed_hex_decode(out->nonce, sizeof out->nonce, h->nonce)) {
        out->failed = FED_REQ_NONCE;
        return fed_error(FED_EFORMAT, "X-Federate-Nonce must be 32 hex digits");
    }
    if (strlen(h->signature) != 2 * FED_SIGN_BYTES || fed_hex_decode(out->signature, sizeof out->signature, h->signature)) {
        out->failed = FED_REQ_SIGNATURE;
        return fed_error(FED_EFORMAT, "X-Federate-Signature must be 128 hex digits");
    }
    if (fed_req_parse_i64(h->timestamp, &out->timestamp)) {
        out->failed = FED_REQ_TIMESTAMP;
        return fed_error(FED_EFORMAT, "X-Federate-Timestamp must be an integer (Unix seconds)");
    }
    return 0;
}
