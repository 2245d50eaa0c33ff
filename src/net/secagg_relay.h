/* Secure aggregation over the network (internal to src/net): the coordinator's
 * relay that feeds the client daemons' stage messages to a fed_secagg_server,
 * and the client daemon's side of the four stages (five with
 * secure_aggregation.consistency_check). Endpoints and message flow:
 * docs/protocol.md, "Secure aggregation". */
#ifndef FEDERATE_NET_SECAGG_RELAY_H
#define FEDERATE_NET_SECAGG_RELAY_H
#include <stddef.h>
#include <stdint.h>
#include "federate/config.h"
#include "federate/fl.h"

/* ---- the coordinator's side -------------------------------------------------- */

typedef struct fed_secagg_relay fed_secagg_relay;
/* stage_timeout_s: how long a stage waits for the clients it expects; long_poll_s:
 * how long a GET is held open; *stop >= 2 aborts a round (the coordinator stops). */
int fed_secagg_relay_new(fed_secagg_relay **out, const fed_config *cfg, double stage_timeout_s, int long_poll_s,
                         volatile int *stop);
void fed_secagg_relay_free(fed_secagg_relay *r);
/* Where the relay finds client's enrolled Ed25519 public key (the coordinator's
 * allow-list): with secure_aggregation.consistency_check every participant's key
 * goes into the server's table by protocol id. 0, or an error code (with a
 * message) when the client has none. */
typedef int (*fed_secagg_key_fn)(void *ctx, int client, uint8_t pk[32]);
void fed_secagg_relay_set_keys(fed_secagg_relay *r, fed_secagg_key_fn fn, void *ctx);
/* The driver's call (the transport's secure_mean): runs the four stages (five with
 * the consistency check, which needs fed_secagg_relay_set_keys) among the
 * results with status FED_RESULT_OK and writes the survivors' weighted mean
 * (weights: num_examples, public bound weight_max) into mean (n floats).
 * Survivors' bytes_up become their protocol traffic; the others become
 * FED_RESULT_DROPPED. FED_ESTATE when fewer than the threshold survive.
 * privacy.mode distributed: the survivors' noised mean with equal weights;
 * FED_ESTATE, nothing unmasked, when fewer than fed_ddp_min_survivors are left
 * after the masked-input stage, and then every participant becomes
 * FED_RESULT_DROPPED (nothing released: the accountant charges nothing). */
int fed_secagg_relay_round(fed_secagg_relay *r, int64_t run, int round, double weight_max, fed_result *res, int k,
                           float *mean, size_t n, fed_secure_agg_report *rep);
/* One authenticated client request to /v1/secagg/ROUND/STAGE (GET: the server's
 * message opening STAGE, held open up to long_poll_s; POST: the client's STAGE
 * message). Returns the HTTP status: 200 with *out (malloc'd, *out_len bytes,
 * *ctype its type), 204 when nothing came within the long poll, or >= 400 with
 * err filled (*reason_secagg set when the protocol refused the message). */
int fed_secagg_relay_request(fed_secagg_relay *r, int is_post, int client, int64_t run, int hdr_round, const char *url,
                             const void *body, size_t len, uint8_t **out, size_t *out_len, const char **ctype,
                             char *err, size_t errsz);
/* Appends Prometheus lines for the relay's counters; returns the bytes written. */
size_t fed_secagg_relay_metrics(fed_secagg_relay *r, char *buf, size_t size);

/* ---- the client daemon's side ------------------------------------------------- */

/* A signed request through the daemon's own retrying HTTP client: returns the
 * HTTP status or a negative FED_E* code; *resp stays valid until the next call. */
typedef int (*fed_secagg_call_fn)(void *ctx, const char *method, const char *path, int64_t run, int round,
                                  const void *body, size_t len, double timeout_s, const uint8_t **resp,
                                  size_t *resp_len);
/* What a client brings to secure aggregation's consistency check. */
typedef struct fed_secagg_daemon_keys {
    const uint8_t *sign_sk;       /* its Ed25519 secret key (64 bytes: the one it signs requests with) */
    const struct fed_peer_keys *peers; /* --peer-keys: the pinned keys of the federation (NULL: none) */
    int require_consistency;      /* --require-consistency: refuse a round without the check */
} fed_secagg_daemon_keys;

/* Takes part in round's protocol with update delta (n floats) of weight
 * num_examples. When the setup announces the consistency check, the client
 * takes the peers' keys from keys->peers only (by the setup's protocol id ->
 * client id mapping) and refuses the round without them (keys NULL, no
 * peers, a participant missing from the file, or its own entry not its key). wait_s bounds the wait for the protocol to begin. When the
 * coordinator announces privacy.mode distributed, the update goes in clipped,
 * rounded and with this client's discrete Gaussian noise share (equal weights);
 * min_noise > 0 refuses a round announced with a lower noise multiplier, or
 * without distributed DP (0: trust the coordinator). record_unit > 0: delta is one
 * record-level DP-SGD step (privacy.mode distributed-dp-sgd) in which one record moves
 * it by at most record_unit; the client takes part only in a record-level round whose
 * announced bound covers that and whose max_records covers num_examples (0: it
 * refuses record-level rounds). 0 when this client's part is
 * done (or it was not included); an error when it dropped out or refused. */
int fed_secagg_daemon_round(fed_secagg_call_fn call, void *ctx, int client, int64_t run, int round, const float *delta,
                            size_t n, long num_examples, int long_poll_s, double wait_s, double min_noise,
                            double record_unit, const fed_secagg_daemon_keys *keys, int quiet);

#endif
