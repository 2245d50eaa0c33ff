/* The coordinator's request parsers (internal to src/net): the small JSON bodies
 * of /v1/register, /v1/evaluation and /api/enroll, and the signature headers of
 * a client request. Pure functions of their input, kept out of the HTTP handlers
 * so that tests/fuzz/fuzz_requests.c can feed them anything. Each fills a
 * caller-owned struct and returns 0, or a FED_E* code with fed_last_error()
 * holding the message the coordinator sends back; none aborts on any input.
 * docs/protocol.md describes the bodies and headers. */
#ifndef FEDERATE_NET_REQUESTS_H
#define FEDERATE_NET_REQUESTS_H
#include <stddef.h>
#include <stdint.h>
#include "federate/crypto.h"

/* A decimal integer as strtoll reads it, with nothing after it; -1 otherwise
 * (NULL or empty included). No error message: callers word their own. */
int fed_req_parse_i64(const char *s, int64_t *v);

/* POST /v1/register: {"protocol": 1, "train_examples": N >= 1, "test_examples":
 * N >= 0, "label_counts": [one count per class]?}. label_counts (num_classes
 * entries, caller's) is filled and has_label_counts set only when every count
 * is an integer in [0, INT32_MAX]; a list of the right length with another
 * count in it is left out rather than refused (the counts only steer
 * client_selection: stratified). FED_EFORMAT otherwise. */
typedef struct fed_req_register {
    int64_t train_examples, test_examples; /* within [1 | 0, INT32_MAX] */
    int has_label_counts;
} fed_req_register;
int fed_req_register_parse(const void *body, size_t len, int num_classes, fed_req_register *out,
                           int32_t *label_counts);

/* POST /v1/evaluation: {"loss": number, "accuracy": number, "num_examples":
 * integer}. FED_EFORMAT when a field is missing or of the wrong type,
 * FED_ERANGE when loss is not finite or accuracy is outside [0, 1]. */
typedef struct fed_req_evaluation {
    double loss, accuracy;
    int64_t num_examples; /* as sent: the caller compares it with the registration */
} fed_req_evaluation;
int fed_req_evaluation_parse(const void *body, size_t len, fed_req_evaluation *out);

/* POST /api/enroll: {"client": ID in [0, nclients), "public_key": 64 hex digits}.
 * FED_EFORMAT otherwise. */
typedef struct fed_req_enroll {
    int client;
    uint8_t public_key[FED_SIGN_PUBLICKEYBYTES];
} fed_req_enroll;
int fed_req_enroll_parse(const void *body, size_t len, int nclients, fed_req_enroll *out);

/* The signature headers of a client request (docs/protocol.md, "Signatures"):
 * X-Federate-Client, -Timestamp, -Nonce, -Signature (required) and -Run, -Round
 * (optional, 0 when absent); NULL for a header that is not there. */
typedef struct fed_req_headers {
    const char *client, *timestamp, *nonce, *signature, *run, *round;
} fed_req_headers;

/* Which check failed, in the order they are made. The coordinator looks the
 * client up in its allow-list between FED_REQ_RUN_ROUND and FED_REQ_NONCE, so it
 * answers the first three before the lookup and the others after it. */
enum fed_req_failed {
    FED_REQ_PASSED = 0,
    FED_REQ_MISSING,   /* a required header is absent (401) */
    FED_REQ_CLIENT,    /* the client id is not an integer in [0, nclients) (403) */
    FED_REQ_RUN_ROUND, /* X-Federate-Run / -Round not integers, round outside [0, 2^30] (400) */
    FED_REQ_NONCE,     /* not 32 hex digits (401) */
    FED_REQ_SIGNATURE, /* not 128 hex digits (401) */
    FED_REQ_TIMESTAMP, /* not an integer (401) */
};

typedef struct fed_req_signed {
    enum fed_req_failed failed;
    int client;  /* valid once failed is past FED_REQ_CLIENT */
    int round;
    int64_t run, timestamp;
    uint8_t nonce[16], signature[FED_SIGN_BYTES];
} fed_req_signed;
/* Parses and range-checks the headers; verifying the signature, the timestamp's
 * window and the nonce's freshness is the caller's. FED_EFORMAT with out->failed
 * naming the first check that failed. */
int fed_req_signed_parse(const fed_req_headers *h, int nclients, fed_req_signed *out);

#endif
