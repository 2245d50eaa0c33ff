/* The coordinator: an HTTP/1.1 server (libmicrohttpd over GnuTLS) that is one
 * more fed_transport. broadcast() publishes the round's tasks and global model,
 * client daemons long-poll for them and upload signed results, collect() waits
 * for the results until the quorum or the deadline, and the shared round driver
 * does everything else exactly as in simulation. Also the management API
 * (/api/...) and Prometheus metrics (/metrics). Protocol: docs/protocol.md. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <malloc.h>
#include <math.h>
#include <gnutls/gnutls.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "federate/error.h"
#include "federate/net.h"
#include "federate/vec.h"
#include "requests.h"
#include "secagg_relay.h"

#define NONCE_RING 512
#define TS_WINDOW_S 300

enum { PH_WAITING = 0, PH_RUNNING, PH_FINISHED, PH_FAILED, PH_STOPPED };
static const char *const phase_names[] = {"waiting", "running", "finished", "failed", "stopped"};
enum { K_NONE = 0, K_FIT = 1, K_EVAL = 2 };
enum { SL_OPEN = 0, SL_DONE = 1, SL_CLOSED = 2, SL_CHECKING = 3 };

/* Rejection reasons, the label values of federate_requests_rejected_total. */
enum {
    R_UNSIGNED, R_BAD_SIGNATURE, R_UNKNOWN_CLIENT, R_REPLAY, R_STALE_TIMESTAMP, R_LATE, R_TOO_LARGE,
    R_MALFORMED_JSON, R_MALFORMED_BODY, R_BAD_TENSOR, R_NON_FINITE, R_NORM, R_WRONG_RUN, R_NOT_REGISTERED,
    R_NO_TASK, R_UNAUTHORIZED, R_NOT_FOUND, R_CLIENT_CERT, R_SECAGG, R_INTERNAL, R_NREASONS
};
static const char *const reason_names[R_NREASONS] = {
    "unsigned", "bad_signature", "unknown_client", "replay", "stale_timestamp", "late", "too_large",
    "malformed_json", "malformed_body", "bad_tensor", "non_finite", "norm", "wrong_run", "not_registered",
    "no_task", "unauthorized", "not_found", "client_certificate", "secagg", "internal"};

typedef struct client_rec {
    int registered;
    size_t train_n, test_n;
    double last_seen;
    uint8_t nonces[NONCE_RING][16];
    int nonce_pos, nonce_count;
    int slot;                 /* index of its task in the open phase, or -1 */
    int delivered_round;      /* last round whose fit result was accepted */
    int delivered_eval_round;
    int saw_finish;
    int64_t accepted, rejected;
} client_rec;

/* The global model of an open fit phase, kept for download compression: each
 * client's frame is encoded from it on that client's request, so it outlives
 * the phase while a download is being encoded (refs counted under co->mu). */
typedef struct model_snap {
    int refs;
    int round;
    float *p, *b, *c;     /* parameters, buffers (or NULL), SCAFFOLD's control (or NULL) */
} model_snap;

#define DOWN_LOCKS 32

/* Receive buffers of large bodies (uploads of megabytes) are kept and reused:
 * a fresh multi-megabyte malloc is a fresh mapping, and every upload then paid
 * a page fault and the kernel's zeroing per 4 KiB page (12% of a 100-client
 * cnn round). At most RX_POOL_MAX buffers and RX_POOL_BYTES are kept. */
#define RX_POOL_MIN ((size_t)256 * 1024)
#define RX_POOL_MAX 128
#define RX_POOL_BYTES ((size_t)1 << 30)
typedef struct rx_pool {
    pthread_mutex_t mu;
    char *buf[RX_POOL_MAX];
    size_t cap[RX_POOL_MAX];
    int n;
    size_t bytes;
} rx_pool;

typedef struct round_rec {
    fed_round_metrics m;
    fed_client_metrics *cm;
    int ncm;
} round_rec;

struct fed_coordinator {
    fed_config cfg;
    fed_server_opts so;
    struct MHD_Daemon *d;
    int port;
    char *cert_pem, *key_pem, *client_ca_pem;
    fed_store *store;
    /* a second connection to the store for the nonces of POST requests (HTTP
     * threads), so they never land inside the driver's transactions */
    fed_store *nonce_store;
    pthread_mutex_t nonce_mu;
    int64_t nonces_pruned;    /* Unix time of the last pruning */
    fed_allowlist *allow;
    char token[256];
    int has_token;
    fed_transport transport;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_cond_t done_cv;   /* only the collector waits for uploads: no wake-up of every long poll per upload */
    int nclients, nregistered, num_classes;
    int min_registered;       /* registrations that start round 1 (server.min_registered; all by default) */
    double wmax;              /* largest train_n among the clients eligible this round (secure aggregation's bound) */
    client_rec *clients;
    int32_t *labels;          /* nclients x num_classes */
    int phase, started;
    volatile int stop;
    int64_t run_id;
    /* the model and its bodies */
    fed_model *proto;
    size_t n, nb;
    int scaffold;
    void *body, *body_z;
    size_t body_len, body_z_len;
    /* one response per body, queued on every download (MHD counts its users);
     * it owns the body and frees it after the last download of the phase */
    struct MHD_Response *body_resp, *body_z_resp;
    int body_z_busy;          /* a download thread is compressing body (without mu); the phase waits for it */
    /* the open phase */
    int kind, round, k, need, ndone, open, nopen;
    int checking;             /* uploads being checked outside mu: the phase waits for them before it closes */
    int closing;              /* the phase is closing: no new upload is taken in */
    double deadline, phase_start;
    const fed_task *tasks;
    int *slot_state;
    float *deltas, *deltas_c, *bufs;
    fed_result *res;
    fed_eval_res *evres;
    int cap;
    /* history and counters */
    round_rec *rounds;
    int nrounds, rounds_cap;
    int64_t rounds_completed, accepted, rejected[R_NREASONS], rejected_updates[R_NREASONS];
    int64_t bytes_in, bytes_out;
    double dur_sum, dur_last;
    double final_accuracy;
    fed_secagg_relay *relay;  /* secure aggregation over the network (NULL when off) */
    fed_codec *codec;         /* the run's `compression`: uploads may be its codec frames (NULL when off) */
    /* download_compression: the codec, each client's reference copy (what it
     * decoded from its last frame) on disk as the simulator keeps its clients'
     * copies, a lock per group of clients for those files, and the open fit
     * phase's model */
    fed_codec *down_codec;
    fed_client_state *down_state;
    char down_dir[800];
    int64_t down_run;
    pthread_mutex_t down_mu[DOWN_LOCKS];
    model_snap *snap;
    rx_pool rx;
};

/* A buffer of at least need bytes (*cap set), from the pool when one fits. */
static char *rx_take(fed_coordinator *co, size_t need, size_t *cap) {
    rx_pool *p = &co->rx;
    pthread_mutex_lock(&p->mu);
    int best = -1;
    for (int i = 0; i < p->n; i++)
        if (p->cap[i] >= need && (best < 0 || p->cap[i] < p->cap[best])) best = i;
    if (best >= 0) {
        char *b = p->buf[best];
        *cap = p->cap[best];
        p->bytes -= p->cap[best];
        p->n--;
        p->buf[best] = p->buf[p->n];
        p->cap[best] = p->cap[p->n];
        pthread_mutex_unlock(&p->mu);
        return b;
    }
    pthread_mutex_unlock(&p->mu);
    char *b = malloc(need);
    *cap = b ? need : 0;
    return b;
}

static void rx_give(fed_coordinator *co, char *b, size_t cap) {
    if (!b) return;
    rx_pool *p = &co->rx;
    pthread_mutex_lock(&p->mu);
    if (cap >= RX_POOL_MIN && p->n < RX_POOL_MAX && p->bytes + cap <= RX_POOL_BYTES) {
        p->buf[p->n] = b;
        p->cap[p->n++] = cap;
        p->bytes += cap;
        b = NULL;
    }
    pthread_mutex_unlock(&p->mu);
    free(b);
}

static void snap_release(fed_coordinator *co, model_snap *s) {
    if (!s) return;
    pthread_mutex_lock(&co->mu);
    int left = --s->refs;
    pthread_mutex_unlock(&co->mu);
    if (left) return;
    free(s->p);
    free(s->b);
    free(s->c);
    free(s);
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void abs_deadline(struct timespec *ts, double secs) {
    clock_gettime(CLOCK_MONOTONIC, ts);
    double s = (double)ts->tv_sec + 1e-9 * (double)ts->tv_nsec + secs;
    ts->tv_sec = (time_t)s;
    ts->tv_nsec = (long)((s - (double)ts->tv_sec) * 1e9);
}

static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logf_(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "federate server: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

/* ---- HTTP helpers ------------------------------------------------------------ */

typedef struct conn {
    char *body;
    size_t len, cap;
    int too_big;
    /* the body's SHA-256, computed as it arrives (the signature covers it), so
     * it is hashed while its bytes are still in cache, not in another pass */
    fed_sha256_ctx sha;
    int hashing, hashed;
    uint8_t hash[FED_SHA256_BYTES];
    int pooled;               /* body is a receive buffer of co->rx */
} conn;

static enum MHD_Result send_buf(struct MHD_Connection *c, fed_coordinator *co, unsigned status, const char *ctype,
                                const void *data, size_t len, const char *encoding) {
    struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)data, MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", ctype);
    MHD_add_response_header(r, "X-Federate-Protocol", "1");
    if (encoding) MHD_add_response_header(r, "Content-Encoding", encoding);
    enum MHD_Result ok = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    pthread_mutex_lock(&co->mu);
    co->bytes_out += (int64_t)len;
    pthread_mutex_unlock(&co->mu);
    return ok;
}

static enum MHD_Result send_json(struct MHD_Connection *c, fed_coordinator *co, unsigned status, json_t *j) {
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!s) return MHD_NO;
    size_t len = strlen(s);
    s[len] = '\0';
    enum MHD_Result r = send_buf(c, co, status, "application/json", s, len, NULL);
    free(s);
    return r;
}

/* A rejection: counted by reason, answered with {"error": message, "reason": ...}. */
static enum MHD_Result reject(struct MHD_Connection *c, fed_coordinator *co, unsigned status, int reason, int is_update,
                              int client, const char *fmt, ...) __attribute__((format(printf, 7, 8)));
static enum MHD_Result reject(struct MHD_Connection *c, fed_coordinator *co, unsigned status, int reason, int is_update,
                              int client, const char *fmt, ...) {
    char msg[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&co->mu);
    co->rejected[reason]++;
    if (is_update) co->rejected_updates[reason]++;
    if (client >= 0 && client < co->nclients) co->clients[client].rejected++;
    pthread_mutex_unlock(&co->mu);
    if (is_update || reason != R_NOT_FOUND) logf_("rejected (%u %s): %s", status, reason_names[reason], msg);
    return send_json(c, co, status, json_pack("{s:s, s:s}", "error", msg, "reason", reason_names[reason]));
}

static const char *hdr(struct MHD_Connection *c, const char *name) {
    return MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
}

/* ---- authentication ---------------------------------------------------------- */

typedef struct auth {
    int client, round;
    int64_t run;
} auth;

/* Checks the signature headers of a client request. Returns 1 when the request
 * was answered (rejected), 0 when authenticated. */
static int authenticate(struct MHD_Connection *c, fed_coordinator *co, const char *method, const char *url,
                        const conn *cn, int is_update, auth *a, enum MHD_Result *ret) {
    fed_req_headers h = {hdr(c, "X-Federate-Client"), hdr(c, "X-Federate-Timestamp"), hdr(c, "X-Federate-Nonce"),
                         hdr(c, "X-Federate-Signature"), hdr(c, "X-Federate-Run"), hdr(c, "X-Federate-Round")};
    fed_req_signed s;
    fed_req_signed_parse(&h, co->nclients, &s);
    switch (s.failed) {
    case FED_REQ_MISSING: *ret = reject(c, co, 401, R_UNSIGNED, is_update, -1, "%s", fed_last_error()); return 1;
    case FED_REQ_CLIENT: *ret = reject(c, co, 403, R_UNKNOWN_CLIENT, is_update, -1, "%s", fed_last_error()); return 1;
    case FED_REQ_RUN_ROUND: *ret = reject(c, co, 400, R_MALFORMED_BODY, is_update, s.client, "%s", fed_last_error()); return 1;
    default: break;
    }
    /* the allow-list before the remaining headers: an unenrolled client hears so
     * whatever else is wrong with its request */
    uint8_t pk[FED_SIGN_PUBLICKEYBYTES];
    if (fed_allowlist_get(co->allow, s.client, pk)) {
        *ret = reject(c, co, 403, R_UNKNOWN_CLIENT, is_update, s.client, "client %d is not enrolled (federate enroll)", s.client);
        return 1;
    }
    if (s.failed != FED_REQ_PASSED) {
        *ret = reject(c, co, 401, R_BAD_SIGNATURE, is_update, s.client, "%s", fed_last_error());
        return 1;
    }
    int id = s.client;
    int64_t ts = s.timestamp;
    char text[1024];
    int tl = cn && cn->hashed
                 ? fed_net_signed_text_hashed(text, sizeof text, method, url, s.run, s.round, id, ts, h.nonce, cn->hash)
                 : fed_net_signed_text(text, sizeof text, method, url, s.run, s.round, id, ts, h.nonce,
                                       cn ? cn->body : NULL, cn ? cn->len : 0);
    if (tl < 0 || fed_sign_verify(s.signature, text, (size_t)tl, pk)) {
        *ret = reject(c, co, 401, R_BAD_SIGNATURE, is_update, id, "bad signature for client %d", id);
        return 1;
    }
    int64_t now = (int64_t)time(NULL);
    if (ts < now - TS_WINDOW_S || ts > now + TS_WINDOW_S) {
        *ret = reject(c, co, 401, R_STALE_TIMESTAMP, is_update, id,
                      "timestamp %" PRId64 " is more than %d s from the server's clock (%" PRId64 ")", ts, TS_WINDOW_S, now);
        return 1;
    }
    pthread_mutex_lock(&co->mu);
    client_rec *cr = &co->clients[id];
    int seen = 0;
    for (int i = 0; i < cr->nonce_count && !seen; i++) seen = memcmp(cr->nonces[i], s.nonce, 16) == 0;
    if (!seen) {
        memcpy(cr->nonces[cr->nonce_pos], s.nonce, 16);
        cr->nonce_pos = (cr->nonce_pos + 1) % NONCE_RING;
        if (cr->nonce_count < NONCE_RING) cr->nonce_count++;
        cr->last_seen = now_s();
    }
    pthread_mutex_unlock(&co->mu);
    if (!seen && strcmp(method, "POST") == 0 && co->nonce_store) {
        /* requests that change something: their nonces are kept in the store for
         * the timestamp window, so a replay is refused after a restart too */
        pthread_mutex_lock(&co->nonce_mu);
        int src = fed_store_nonce_record(co->nonce_store, id, s.nonce, sizeof s.nonce, ts, &seen);
        if (!src && now - co->nonces_pruned > 60) {
            co->nonces_pruned = now;
            if (fed_store_nonce_forget(co->nonce_store, now - TS_WINDOW_S - 1)) logf_("%s", fed_last_error());
        }
        char msg[600] = "";
        if (src) snprintf(msg, sizeof msg, "%s", fed_last_error());
        pthread_mutex_unlock(&co->nonce_mu);
        if (src) {
            logf_("%s", msg);
            *ret = reject(c, co, 503, R_INTERNAL, is_update, id, "cannot record the request's nonce; try again");
            return 1;
        }
    }
    if (seen) {
        *ret = reject(c, co, 403, R_REPLAY, is_update, id, "replayed request: nonce %s was already used by client %d", h.nonce, id);
        return 1;
    }
    a->client = id;
    a->run = s.run;
    a->round = s.round;
    return 0;
}

/* ---- client endpoints ----------------------------------------------------------- */

static enum MHD_Result h_register(struct MHD_Connection *c, fed_coordinator *co, const auth *a, const conn *cn) {
    fed_req_register rq;
    int32_t *labels = malloc((size_t)(co->num_classes > 0 ? co->num_classes : 1) * sizeof *labels);
    if (!labels) return MHD_NO;
    if (fed_req_register_parse(cn->body, cn->len, co->num_classes, &rq, labels)) {
        free(labels);
        return reject(c, co, 400, R_MALFORMED_JSON, 0, a->client, "%s", fed_last_error());
    }
    pthread_mutex_lock(&co->mu);
    client_rec *cr = &co->clients[a->client];
    size_t ntr = (size_t)rq.train_examples, nte = (size_t)rq.test_examples;
    if (co->phase != PH_WAITING && cr->registered && (cr->train_n != ntr || cr->test_n != nte)) {
        pthread_mutex_unlock(&co->mu);
        free(labels);
        return reject(c, co, 409, R_MALFORMED_JSON, 0, a->client,
                      "register: client %d reported %zu/%zu examples before the run started and %zu/%zu now", a->client,
                      cr->train_n, cr->test_n, ntr, nte);
    }
    if (!cr->registered) co->nregistered++;
    cr->registered = 1;
    cr->train_n = ntr;
    cr->test_n = nte;
    if (rq.has_label_counts)
        memcpy(co->labels + (size_t)a->client * co->num_classes, labels, (size_t)co->num_classes * sizeof *labels);
    int64_t run = co->run_id;
    int phase = co->phase;
    pthread_cond_broadcast(&co->cv);
    pthread_mutex_unlock(&co->mu);
    free(labels);
    char *yaml = fed_config_to_yaml(&co->cfg);
    if (!yaml) return MHD_NO;
    json_t *r = json_pack("{s:i, s:I, s:s, s:i, s:s, s:i}", "protocol", FED_PROTOCOL_VERSION, "run_id", (json_int_t)run,
                          "phase", phase_names[phase], "num_clients", co->nclients, "config", yaml, "long_poll",
                          co->so.long_poll);
    free(yaml);
    return send_json(c, co, 200, r);
}

static json_t *task_json(fed_coordinator *co, int slot) {
    const fed_task *t = &co->tasks[slot];
    double left = co->deadline - now_s();
    json_t *j = json_pack("{s:s, s:I, s:i, s:i, s:i, s:i, s:f, s:I, s:f, s:b, s:b, s:f}", "kind",
                          co->kind == K_FIT ? "fit" : "evaluate", "run_id", (json_int_t)co->run_id, "round", co->round,
                          "client", t->client, "local_epochs", t->ins.local_epochs, "batch_size", t->ins.batch_size, "lr",
                          (double)t->ins.lr, "max_steps", (json_int_t)t->ins.max_steps, "prox_mu", (double)t->ins.prox_mu,
                          "scaffold", t->ins.scaffold, "want_loss_before", t->ins.want_loss_before, "deadline_s",
                          left > 0 ? left : 0.0);
    /* differential privacy instructions (floats sent as doubles: exact) */
    json_t *dp = json_pack("{s:f, s:f, s:f, s:f, s:b, s:b}", "dpsgd_clip", (double)t->ins.dpsgd_clip, "dpsgd_noise",
                           (double)t->ins.dpsgd_noise, "update_clip", (double)t->ins.update_clip, "local_noise",
                           (double)t->ins.local_noise, "secure_noise", t->ins.secure_noise, "dpsgd_sum",
                           t->ins.dpsgd_sum);
    if (j && dp) json_object_update(j, dp);
    json_decref(dp);
    return j;
}

static enum MHD_Result h_task(struct MHD_Connection *c, fed_coordinator *co, const auth *a) {
    pthread_mutex_lock(&co->mu);
    client_rec *cr = &co->clients[a->client];
    if (!cr->registered) {
        pthread_mutex_unlock(&co->mu);
        return reject(c, co, 409, R_NOT_REGISTERED, 0, a->client, "client %d has not registered with this coordinator (POST /v1/register)", a->client);
    }
    struct timespec until;
    abs_deadline(&until, co->so.long_poll);
    json_t *r = NULL;
    for (;;) {
        if (co->phase >= PH_FINISHED) {
            cr->saw_finish = 1;
            r = json_pack("{s:s, s:I, s:s}", "kind", "finish", "run_id", (json_int_t)co->run_id, "phase", phase_names[co->phase]);
            pthread_cond_broadcast(&co->cv);
            break;
        }
        if (co->open && cr->slot >= 0 && co->slot_state[cr->slot] == SL_OPEN) {
            r = task_json(co, cr->slot);
            break;
        }
        if (pthread_cond_timedwait(&co->cv, &co->mu, &until) == ETIMEDOUT) break;
    }
    cr->last_seen = now_s();
    pthread_mutex_unlock(&co->mu);
    if (!r) return send_buf(c, co, 204, "application/json", "", 0, NULL);
    return send_json(c, co, 200, r);
}

/* A response that owns body (malloc'd; freed by MHD after its last download), or
 * NULL with body freed. */
static struct MHD_Response *body_response(void *body, size_t len, int zstd) {
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return NULL;
    }
    MHD_add_response_header(r, "Content-Type", "application/octet-stream");
    MHD_add_response_header(r, "X-Federate-Protocol", "1");
    if (zstd) MHD_add_response_header(r, "Content-Encoding", "zstd");
    return r;
}

/* Drops the coordinator's reference to the phase's bodies (the responses own them). */
static void drop_bodies(fed_coordinator *co) {
    if (co->body_resp) MHD_destroy_response(co->body_resp);
    else free(co->body);
    if (co->body_z_resp) MHD_destroy_response(co->body_z_resp);
    else free(co->body_z);
    co->body_resp = co->body_z_resp = NULL;
    co->body = co->body_z = NULL;
}

/* The model as a codec frame for one client (download compression): a delta
 * against the client's copy when the hash it names is that of the reference
 * copy kept here for it (the copy the simulator's client would hold), else the
 * full model; the reference becomes what this frame decodes to. Encoded with
 * the simulator's stream address (seed, round, client), so both sides and the
 * simulator hold the same values. Called without co->mu; releases s. */
static enum MHD_Result h_model_coded(struct MHD_Connection *c, fed_coordinator *co, const auth *a, model_snap *s, int slot,
                                     int scaf, int64_t run, const char *have) {
    uint8_t want[FED_SHA256_BYTES], got[FED_SHA256_BYTES];
    int has_base = strcmp(have, "none") != 0;
    if (has_base && (strlen(have) != 2 * FED_SHA256_BYTES || fed_hex_decode(want, sizeof want, have))) {
        snap_release(co, s);
        return reject(c, co, 400, R_MALFORMED_BODY, 0, a->client, "%s must be 'none' or the SHA-256 of the client's copy "
                      "(64 hex digits), not '%.80s'", FED_NET_MODEL_BASE_HEADER, have);
    }
    size_t n = co->n;
    float *ref = malloc(n * sizeof(float));
    uint8_t *frame = NULL;
    size_t flen = 0;
    void *body = NULL;
    size_t len = 0;
    int rc = ref ? 0 : fed_error(FED_ENOMEM, "out of memory");
    int found = 0, use = 0;
    char base_hex[2 * FED_SHA256_BYTES + 1] = "none";
    pthread_mutex_t *lk = &co->down_mu[a->client % DOWN_LOCKS];
    pthread_mutex_lock(lk);
    if (!rc && !co->down_state) rc = fed_error(FED_ESTATE, "no reference copies open");
    if (!rc && fed_client_state_find(co->down_state, a->client, s->round, ref, &found)) {
        logf_("round %d: client %d: %s; sending the full model", s->round, a->client, fed_last_error());
        found = 0;
    }
    if (!rc && found && has_base && !(rc = fed_sha256(got, ref, n * sizeof(float))))
        use = memcmp(got, want, sizeof got) == 0;
    if (!rc && found && !use)
        logf_("round %d: client %d %s; sending the full model", s->round, a->client,
              has_base ? "holds another copy of the model than the one it was sent last" : "holds no copy of the model");
    if (use) fed_hex_encode(base_hex, got, sizeof got);
    fed_codec_ctx cc = {co->cfg.seed, (uint64_t)s->round, (uint64_t)a->client};
    if (!rc) rc = fed_codec_encode_model(co->down_codec, &cc, s->p, use ? ref : NULL, n, NULL, &frame, &flen);
    if (!rc) rc = fed_codec_decode_model(co->down_codec, frame, flen, use ? ref : NULL, ref, n);
    if (!rc && fed_client_state_put(co->down_state, a->client, s->round, ref)) {
        /* a damaged file (a coordinator killed while writing it): start it again */
        char path[900];
        snprintf(path, sizeof path, "%s/client_%06d.state", co->down_dir, a->client);   /* fed_client_state's file */
        logf_("round %d: client %d: %s; starting its reference copies again", s->round, a->client, fed_last_error());
        unlink(path);
        rc = fed_client_state_put(co->down_state, a->client, s->round, ref);
    }
    pthread_mutex_unlock(lk);
    char rs[32], rid[32];
    snprintf(rs, sizeof rs, "%d", s->round);
    snprintf(rid, sizeof rid, "%" PRId64, run);
    const char *meta[] = {"format", "pt", "federate_model", fed_model_name(co->proto), "round", rs, "run_id", rid,
                          "download_compression", fed_codec_spec(co->down_codec), "base_sha256", base_hex};
    if (!rc) rc = fed_net_pack_model_coded(co->proto, frame, flen, s->b, scaf ? s->c : NULL, meta, 6, &body, &len);
    free(frame);
    free(ref);
    snap_release(co, s);
    if (rc) {
        char msg[600];
        snprintf(msg, sizeof msg, "%s", fed_last_error());
        free(body);
        return reject(c, co, 503, R_INTERNAL, 0, a->client, "cannot build the compressed model for client %d: %s", a->client, msg);
    }
    pthread_mutex_lock(&co->mu);
    if (co->kind == K_FIT && co->round == s->round && co->clients[a->client].slot == slot) co->res[slot].bytes_down += (int64_t)len;
    co->bytes_out += (int64_t)len;
    pthread_mutex_unlock(&co->mu);
    struct MHD_Response *r = body_response(body, len, 0);
    if (!r) return MHD_NO;
    enum MHD_Result ok = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result h_model(struct MHD_Connection *c, fed_coordinator *co, const auth *a) {
    const char *ae = hdr(c, "Accept-Encoding");
    int z = ae && strstr(ae, "zstd");
    const char *have = hdr(c, FED_NET_MODEL_BASE_HEADER);
    pthread_mutex_lock(&co->mu);
    client_rec *cr = &co->clients[a->client];
    if (!co->open || a->round != co->round || cr->slot < 0) {
        int round = co->round;
        pthread_mutex_unlock(&co->mu);
        return reject(c, co, 409, R_NO_TASK, 0, a->client, "client %d has no open task for round %d (the current round is %d)",
                      a->client, a->round, round);
    }
    if (have && co->kind == K_FIT && co->snap) {
        model_snap *s = co->snap;
        s->refs++;
        int slot = cr->slot, scaf = co->tasks[slot].ins.scaffold;
        int64_t run = co->run_id;
        pthread_mutex_unlock(&co->mu);
        return h_model_coded(c, co, a, s, slot, scaf, run, have);
    }
    if (z && !co->body_z && co->body_z_busy) {
        /* being compressed by another download: wait for it (the phase cannot change meanwhile) */
        while (co->body_z_busy) pthread_cond_wait(&co->cv, &co->mu);
        if (!co->open || a->round != co->round || cr->slot < 0) {
            int round = co->round;
            pthread_mutex_unlock(&co->mu);
            return reject(c, co, 409, R_NO_TASK, 0, a->client, "client %d has no open task for round %d (the current round is %d)",
                          a->client, a->round, round);
        }
    }
    if (z && !co->body_z) {
        /* compressed once per phase, by the first download that asks, without
         * the lock (tens of ms for megabytes); open_phase waits before it drops
         * the body, so body stays valid meanwhile */
        co->body_z_busy = 1;
        const void *src = co->body;
        size_t srclen = co->body_len;
        pthread_mutex_unlock(&co->mu);
        void *bz = NULL;
        size_t bzl = 0;
        struct MHD_Response *zr = NULL;
        if (!fed_net_zstd_compress(src, srclen, &bz, &bzl)) zr = body_response(bz, bzl, 1);   /* frees bz on failure */
        pthread_mutex_lock(&co->mu);
        co->body_z_busy = 0;
        pthread_cond_broadcast(&co->cv);
        if (zr) co->body_z = bz, co->body_z_len = bzl, co->body_z_resp = zr;
        z = zr != NULL;
        if (!co->open || a->round != co->round || cr->slot < 0) {
            int round = co->round;
            pthread_mutex_unlock(&co->mu);
            return reject(c, co, 409, R_NO_TASK, 0, a->client, "client %d has no open task for round %d (the current round is %d)",
                          a->client, a->round, round);
        }
    }
    size_t len = z ? co->body_z_len : co->body_len;
    if (co->kind == K_FIT) co->res[cr->slot].bytes_down += (int64_t)len;
    co->bytes_out += (int64_t)len;
    /* queued under the lock: open_phase may drop the coordinator's reference right after */
    struct MHD_Response *r = z ? co->body_z_resp : co->body_resp;
    enum MHD_Result ok = r ? MHD_queue_response(c, 200, r) : MHD_NO;
    pthread_mutex_unlock(&co->mu);
    return ok;
}

static int meta_num(const fed_st_file *f, const char *key, double *v, int allow_nan) {
    const char *s = fed_st_metadata(f, key);
    if (!s) return fed_error(FED_EFORMAT, "metadata \"%s\" is missing", key);
    if (allow_nan && strcmp(s, "nan") == 0) { *v = NAN; return 0; }
    char *end;
    errno = 0;
    *v = strtod(s, &end);
    if (!*s || *end || errno || !isfinite(*v)) return fed_error(FED_EFORMAT, "metadata \"%s\" = '%.40s' is not a finite number", key, s);
    return 0;
}

/* Round checks shared by both uploads; returns 1 when the request was answered. */
static int check_round(struct MHD_Connection *c, fed_coordinator *co, const auth *a, int kind, enum MHD_Result *ret) {
    client_rec *cr = &co->clients[a->client];
    int delivered = kind == K_FIT ? cr->delivered_round : cr->delivered_eval_round;
    if (a->run != co->run_id) {
        int64_t run = co->run_id;
        pthread_mutex_unlock(&co->mu);
        *ret = reject(c, co, 409, R_WRONG_RUN, 1, a->client, "upload for run %" PRId64 ", but the coordinator runs run %" PRId64, a->run, run);
        return 1;
    }
    if (a->round <= delivered) {
        pthread_mutex_unlock(&co->mu);
        *ret = reject(c, co, 403, R_REPLAY, 1, a->client, "replayed upload: client %d already delivered its %s result for round %d",
                      a->client, kind == K_FIT ? "fit" : "evaluate", a->round);
        return 1;
    }
    if (a->round < co->round || (a->round == co->round && (co->kind != kind || !co->open || cr->slot < 0 ||
                                                          co->slot_state[cr->slot] == SL_CLOSED))) {
        int round = co->round;
        pthread_mutex_unlock(&co->mu);
        *ret = reject(c, co, 409, R_LATE, 1, a->client, "late result: round %d (%s) is closed; the deadline passed or enough clients reported (current round %d)",
                      a->round, kind == K_FIT ? "fit" : "evaluate", round);
        return 1;
    }
    if (a->round > co->round || cr->slot < 0 || co->kind != kind) {
        int round = co->round;
        pthread_mutex_unlock(&co->mu);
        *ret = reject(c, co, 409, R_NO_TASK, 1, a->client, "client %d has no %s task for round %d (current round %d)", a->client,
                      kind == K_FIT ? "fit" : "evaluate", a->round, round);
        return 1;
    }
    return 0;
}

static void slot_done(fed_coordinator *co, int client, int slot) {
    co->slot_state[slot] = SL_DONE;
    co->ndone++;
    co->accepted++;
    co->clients[client].accepted++;
    pthread_cond_broadcast(&co->done_cv);
}

static enum MHD_Result h_result(struct MHD_Connection *c, fed_coordinator *co, const auth *a, const conn *cn) {
    /* the body first (outside the lock): decompress */
    void *plain = NULL;
    size_t plen = cn->len;
    const char *enc = hdr(c, "Content-Encoding");
    if (enc && strcmp(enc, "zstd") == 0) {
        if (fed_net_zstd_decompress(cn->body, cn->len, (size_t)co->so.max_body_bytes, &plain, &plen)) {
            char msg[600];
            snprintf(msg, sizeof msg, "%s", fed_last_error());
            return reject(c, co, strstr(msg, "limit") ? 413 : 400, strstr(msg, "limit") ? R_TOO_LARGE : R_MALFORMED_BODY, 1,
                          a->client, "upload: %s", msg);
        }
    } else if (enc && strcmp(enc, "identity") != 0) {
        return reject(c, co, 415, R_MALFORMED_BODY, 1, a->client, "upload: Content-Encoding '%.40s' is not supported (zstd or none)", enc);
    }
    const void *body = plain ? plain : cn->body;
    enum MHD_Result ret;
    pthread_mutex_lock(&co->mu);
    if (check_round(c, co, a, K_FIT, &ret)) { free(plain); return ret; }
    int slot = co->clients[a->client].slot;
    if (co->closing) {
        int round = co->round;
        pthread_mutex_unlock(&co->mu);
        free(plain);
        return reject(c, co, 409, R_LATE, 1, a->client, "late result: round %d (fit) is closing; the deadline passed or enough "
                      "clients reported (current round %d)", a->round, round);
    }
    if (co->slot_state[slot] == SL_CHECKING) {
        pthread_mutex_unlock(&co->mu);
        free(plain);
        return reject(c, co, 409, R_LATE, 1, a->client, "another upload of client %d for round %d is being checked", a->client, a->round);
    }
    /* The slot is this upload's while it is checked: unpacking, decoding and the
     * finiteness and norm checks run without the lock, so uploads are checked
     * on every core at once; the phase does not close (nor its buffers move)
     * while one is being checked. */
    co->slot_state[slot] = SL_CHECKING;
    co->checking++;
    fed_result *r = &co->res[slot];
    int scaf = co->tasks[slot].ins.scaffold, want_lb = co->tasks[slot].ins.want_loss_before;
    size_t train_n = co->clients[a->client].train_n;
    pthread_mutex_unlock(&co->mu);

    fed_st_file *f = NULL;
    int coded = 0;
    int rc = fed_net_unpack_update(co->proto, co->codec, body, plen, scaf, r->delta, co->nb ? r->buffers : NULL,
                                   scaf ? r->delta_c : NULL, &f, &coded);
    char msg[1100] = "";
    int reason = R_BAD_TENSOR;
    if (rc) {
        snprintf(msg, sizeof msg, "%s", fed_last_error());
        reason = rc == FED_ERANGE ? R_NON_FINITE : rc == FED_ESHAPE ? R_BAD_TENSOR : R_MALFORMED_BODY;
    }
    double ne = 0, steps = 0, lr = 0, lb = NAN, tl = 0, ta = 0, un = 0;
    if (!rc && ((rc = meta_num(f, "num_examples", &ne, 0)) || (rc = meta_num(f, "steps", &steps, 0)) ||
                (rc = meta_num(f, "lr", &lr, 0)) || (rc = meta_num(f, "loss_before", &lb, 1)) ||
                (rc = meta_num(f, "train_loss", &tl, 0)) || (rc = meta_num(f, "train_accuracy", &ta, 1)) ||
                (rc = meta_num(f, "update_norm", &un, 0)))) {
        snprintf(msg, sizeof msg, "%s", fed_last_error());
        reason = R_MALFORMED_BODY;
    }
    if (!rc && (size_t)ne != train_n) {
        rc = FED_EINVAL;
        snprintf(msg, sizeof msg, "metadata num_examples = %.0f, but client %d registered %zu training examples", ne,
                 a->client, train_n);
        reason = R_MALFORMED_BODY;
    }
    if (!rc && want_lb && isnan(lb)) {
        rc = FED_EINVAL;
        snprintf(msg, sizeof msg, "metadata loss_before is required by this round's task");
        reason = R_MALFORMED_BODY;
    }
    if (!rc && co->tasks[slot].ins.dpsgd_sum && (float)lr != co->tasks[slot].ins.lr) {
        /* distributed-dp-sgd: the secure round reads every input in units of the
         * task's lr C / B */
        rc = FED_EINVAL;
        snprintf(msg, sizeof msg, "metadata lr %g is not the task's %g (privacy.mode distributed-dp-sgd)", lr,
                 (double)co->tasks[slot].ins.lr);
        reason = R_MALFORMED_BODY;
    }
    double norm = rc ? 0 : fed_vec_norm2(r->delta, co->n);
    if (!rc && co->so.max_update_norm > 0 && !(norm <= co->so.max_update_norm)) {
        rc = FED_ERANGE;
        snprintf(msg, sizeof msg, "update norm %.6g exceeds max_update_norm %.6g", norm, co->so.max_update_norm);
        reason = R_NORM;
    }
    fed_st_close(f);
    free(plain);

    pthread_mutex_lock(&co->mu);
    co->checking--;
    if (rc) {
        /* refused: the client may still send a good one while the round is open */
        co->slot_state[slot] = co->open ? SL_OPEN : SL_CLOSED;
        if (!co->checking) pthread_cond_broadcast(&co->done_cv);
        pthread_mutex_unlock(&co->mu);
        return reject(c, co, reason == R_NORM ? 422 : 400, reason, 1, a->client, "upload from client %d, round %d: %s",
                      a->client, a->round, msg);
    }
    r->client = a->client;
    r->status = FED_RESULT_OK;
    r->num_examples = (long)ne;
    r->steps = (long)steps;
    r->lr = (float)lr;
    r->loss_before = lb;
    r->train_loss = tl;
    r->train_accuracy = ta;
    r->update_norm = un;
    r->bytes_up = (int64_t)cn->len;
    co->clients[a->client].delivered_round = a->round;
    slot_done(co, a->client, slot);
    if (!co->checking) pthread_cond_broadcast(&co->done_cv);
    int round = co->round;
    pthread_mutex_unlock(&co->mu);
    return send_json(c, co, 200, json_pack("{s:b, s:i, s:f}", "accepted", 1, "round", round, "update_norm", norm));
}

static enum MHD_Result h_evaluation(struct MHD_Connection *c, fed_coordinator *co, const auth *a, const conn *cn) {
    fed_req_evaluation ev;
    int prc = fed_req_evaluation_parse(cn->body, cn->len, &ev);
    if (prc)
        return reject(c, co, 400, prc == FED_ERANGE ? R_NON_FINITE : R_MALFORMED_JSON, 1, a->client, "%s", fed_last_error());
    double loss = ev.loss, acc = ev.accuracy;
    long n = (long)ev.num_examples;
    enum MHD_Result ret;
    pthread_mutex_lock(&co->mu);
    if (check_round(c, co, a, K_EVAL, &ret)) return ret;
    int slot = co->clients[a->client].slot;
    if ((size_t)n != co->clients[a->client].test_n) {
        size_t want = co->clients[a->client].test_n;
        pthread_mutex_unlock(&co->mu);
        return reject(c, co, 400, R_MALFORMED_JSON, 1, a->client, "evaluation: num_examples %ld, but client %d registered %zu test examples",
                      n, a->client, want);
    }
    co->evres[slot].client = a->client;
    co->evres[slot].num_examples = n;
    co->evres[slot].loss = loss;
    co->evres[slot].accuracy = acc;
    co->clients[a->client].delivered_eval_round = a->round;
    slot_done(co, a->client, slot);
    pthread_mutex_unlock(&co->mu);
    return send_json(c, co, 200, json_pack("{s:b}", "accepted", 1));
}

/* ---- management API and metrics ------------------------------------------------ */

static json_t *round_json(const round_rec *r, int with_clients) {
    const fed_round_metrics *m = &r->m;
#define NUM(x) (isnan(x) ? json_null() : json_real(x))
    json_t *j = json_pack("{s:i, s:o, s:o, s:o, s:o, s:o, s:i, s:i, s:i, s:I, s:I, s:f}", "round", m->round,
                          "test_accuracy", NUM(m->test_accuracy), "test_loss", NUM(m->test_loss), "train_loss_mean",
                          NUM(m->train_loss_mean), "train_loss_std", NUM(m->train_loss_std), "local_accuracy",
                          NUM(m->local_accuracy), "selected", m->selected, "finished", m->finished, "dropped",
                          m->dropped, "bytes_up", (json_int_t)m->bytes_up, "bytes_down", (json_int_t)m->bytes_down,
                          "wall_s", m->wall_s);
    if (with_clients) {
        json_t *a = json_array();
        for (int i = 0; i < r->ncm; i++) {
            const fed_client_metrics *c = &r->cm[i];
            json_array_append_new(a, json_pack("{s:i, s:b, s:I, s:I, s:o, s:o, s:I}", "client", c->client, "dropped",
                                               c->dropped, "num_examples", (json_int_t)c->num_examples, "steps",
                                               (json_int_t)c->steps, "train_loss", NUM(c->train_loss),
                                               "local_accuracy", NUM(c->local_accuracy), "bytes_up",
                                               (json_int_t)c->bytes_up));
        }
        json_object_set_new(j, "clients", a);
    }
#undef NUM
    return j;
}

static int connected(const fed_coordinator *co, const client_rec *cr) {
    return cr->registered && now_s() - cr->last_seen < 2.0 * co->so.long_poll + 5;
}

static enum MHD_Result h_api_get(struct MHD_Connection *c, fed_coordinator *co, const char *url) {
    json_t *j = NULL;
    pthread_mutex_lock(&co->mu);
    if (strcmp(url, "/api/status") == 0) {
        int nconn = 0;
        for (int i = 0; i < co->nclients; i++) nconn += connected(co, &co->clients[i]);
        j = json_pack("{s:i, s:s, s:I, s:i, s:i, s:i, s:i, s:i, s:s, s:b, s:i, s:i, s:I, s:o}", "protocol",
                      FED_PROTOCOL_VERSION, "phase", phase_names[co->phase], "run_id", (json_int_t)co->run_id, "round",
                      co->round, "num_rounds", co->cfg.num_rounds, "num_clients", co->nclients, "clients_registered",
                      co->nregistered, "clients_connected", nconn, "task", co->kind == K_FIT ? "fit" : co->kind == K_EVAL ? "evaluate" : "none",
                      "round_open", co->open, "results_in", co->ndone, "selected", co->k, "rounds_completed",
                      (json_int_t)co->rounds_completed, "final_accuracy",
                      isnan(co->final_accuracy) ? json_null() : json_real(co->final_accuracy));
    } else if (strcmp(url, "/api/clients") == 0) {
        j = json_array();
        for (int i = 0; i < co->nclients; i++) {
            const client_rec *cr = &co->clients[i];
            json_array_append_new(j, json_pack("{s:i, s:b, s:b, s:I, s:I, s:o, s:I, s:I, s:i}", "id", i, "registered",
                                               cr->registered, "connected", connected(co, cr), "train_examples",
                                               (json_int_t)cr->train_n, "test_examples", (json_int_t)cr->test_n,
                                               "last_seen_s", cr->registered ? json_real(now_s() - cr->last_seen) : json_null(),
                                               "accepted", (json_int_t)cr->accepted, "rejected", (json_int_t)cr->rejected,
                                               "last_round", cr->delivered_round));
        }
    } else if (strcmp(url, "/api/rounds") == 0) {
        j = json_array();
        for (int i = 0; i < co->nrounds; i++) json_array_append_new(j, round_json(&co->rounds[i], 0));
    } else if (strncmp(url, "/api/rounds/", 12) == 0) {
        int64_t r;
        if (fed_req_parse_i64(url + 12, &r) == 0)
            for (int i = 0; i < co->nrounds; i++)
                if (co->rounds[i].m.round == r) j = round_json(&co->rounds[i], 1);
        if (!j) {
            pthread_mutex_unlock(&co->mu);
            return reject(c, co, 404, R_NOT_FOUND, 0, -1, "no round '%.20s' recorded in this run", url + 12);
        }
    }
    pthread_mutex_unlock(&co->mu);
    if (!j) return reject(c, co, 404, R_NOT_FOUND, 0, -1, "no such endpoint: GET %.100s", url);
    return send_json(c, co, 200, j);
}

static enum MHD_Result h_metrics(struct MHD_Connection *c, fed_coordinator *co) {
    size_t cap = 8192, o = 0;
    char *s = malloc(cap);
    if (!s) return MHD_NO;
#define P(...) o += (size_t)snprintf(s + o, cap - o, __VA_ARGS__)
    pthread_mutex_lock(&co->mu);
    int nconn = 0;
    for (int i = 0; i < co->nclients; i++) nconn += connected(co, &co->clients[i]);
    P("# HELP federate_rounds_completed_total Federated rounds completed.\n# TYPE federate_rounds_completed_total counter\n");
    P("federate_rounds_completed_total %" PRId64 "\n", co->rounds_completed);
    P("# HELP federate_clients_connected Clients seen within two long-poll periods.\n# TYPE federate_clients_connected gauge\n");
    P("federate_clients_connected %d\n", nconn);
    P("# HELP federate_clients_registered Clients registered with this coordinator.\n# TYPE federate_clients_registered gauge\n");
    P("federate_clients_registered %d\n", co->nregistered);
    P("# HELP federate_updates_accepted_total Results (fit and evaluate) accepted.\n# TYPE federate_updates_accepted_total counter\n");
    P("federate_updates_accepted_total %" PRId64 "\n", co->accepted);
    P("# HELP federate_updates_rejected_total Uploaded results rejected, by reason.\n# TYPE federate_updates_rejected_total counter\n");
    for (int i = 0; i < R_NREASONS; i++) P("federate_updates_rejected_total{reason=\"%s\"} %" PRId64 "\n", reason_names[i], co->rejected_updates[i]);
    P("# HELP federate_requests_rejected_total Requests rejected, by reason.\n# TYPE federate_requests_rejected_total counter\n");
    for (int i = 0; i < R_NREASONS; i++) P("federate_requests_rejected_total{reason=\"%s\"} %" PRId64 "\n", reason_names[i], co->rejected[i]);
    P("# HELP federate_bytes_received_total Request body bytes received.\n# TYPE federate_bytes_received_total counter\n");
    P("federate_bytes_received_total %" PRId64 "\n", co->bytes_in);
    P("# HELP federate_bytes_sent_total Response body bytes sent.\n# TYPE federate_bytes_sent_total counter\n");
    P("federate_bytes_sent_total %" PRId64 "\n", co->bytes_out);
    P("# HELP federate_round_duration_seconds Wall time of rounds.\n# TYPE federate_round_duration_seconds summary\n");
    P("federate_round_duration_seconds_sum %.6f\nfederate_round_duration_seconds_count %" PRId64 "\n", co->dur_sum, co->rounds_completed);
    P("# HELP federate_last_round_duration_seconds Wall time of the last round.\n# TYPE federate_last_round_duration_seconds gauge\n");
    P("federate_last_round_duration_seconds %.6f\n", co->dur_last);
    P("# HELP federate_round Current round.\n# TYPE federate_round gauge\nfederate_round %d\n", co->round);
    pthread_mutex_unlock(&co->mu);
    if (co->relay && o < cap) o += fed_secagg_relay_metrics(co->relay, s + o, cap - o);
#undef P
    enum MHD_Result r = send_buf(c, co, 200, "text/plain; version=0.0.4", s, o < cap ? o : cap - 1, NULL);
    free(s);
    return r;
}

static enum MHD_Result h_api_post(struct MHD_Connection *c, fed_coordinator *co, const char *url, const conn *cn) {
    const char *au = hdr(c, "Authorization");
    if (!co->has_token)
        return reject(c, co, 403, R_UNAUTHORIZED, 0, -1, "the management API is read-only: no server.token_file configured");
    if (!au || strncmp(au, "Bearer ", 7) != 0)
        return reject(c, co, 401, R_UNAUTHORIZED, 0, -1, "%s needs 'Authorization: Bearer TOKEN'", url);
    const char *t = au + 7;
    size_t tl = strlen(co->token);
    if (strlen(t) != tl || fed_crypto_memcmp(t, co->token, tl) != 0)
        return reject(c, co, 401, R_UNAUTHORIZED, 0, -1, "%s: wrong bearer token", url);
    if (strcmp(url, "/api/stop") == 0) {
        pthread_mutex_lock(&co->mu);
        co->stop = 1;
        pthread_cond_broadcast(&co->cv);
        pthread_mutex_unlock(&co->mu);
        logf_("stop requested through the API");
        return send_json(c, co, 200, json_pack("{s:b}", "stopping", 1));
    }
    if (strcmp(url, "/api/start") == 0) {
        pthread_mutex_lock(&co->mu);
        co->started = 1;
        pthread_cond_broadcast(&co->cv);
        pthread_mutex_unlock(&co->mu);
        return send_json(c, co, 200, json_pack("{s:b}", "started", 1));
    }
    if (strcmp(url, "/api/enroll") == 0) {
        fed_req_enroll en;
        if (fed_req_enroll_parse(cn->body, cn->len, co->nclients, &en))
            return reject(c, co, 400, R_MALFORMED_JSON, 0, -1, "%s", fed_last_error());
        if (fed_allowlist_enroll(co->allow, en.client, en.public_key))
            return send_json(c, co, 500, json_pack("{s:s}", "error", fed_last_error()));
        return send_json(c, co, 200, json_pack("{s:i, s:b}", "client", en.client, "enrolled", 1));
    }
    return reject(c, co, 404, R_NOT_FOUND, 0, -1, "no such endpoint: POST %.100s", url);
}

/* Secure aggregation stage messages: relayed to src/net/secagg_relay.c. */
static enum MHD_Result h_secagg(struct MHD_Connection *c, fed_coordinator *co, const auth *a, const conn *cn, int is_post,
                                const char *url) {
    if (!co->relay)
        return reject(c, co, 404, R_NOT_FOUND, 0, a->client, "secure aggregation is off in this run (secure_aggregation.enabled)");
    uint8_t *out = NULL;
    size_t len = 0;
    const char *ctype = NULL;
    char err[600] = "";
    int st = fed_secagg_relay_request(co->relay, is_post, a->client, a->run, a->round, url, cn->body, cn->len, &out, &len,
                                      &ctype, err, sizeof err);
    if (st >= 400) {
        free(out);
        int reason = st == 404 ? R_NOT_FOUND : st == 400 ? R_SECAGG : R_LATE;
        return reject(c, co, (unsigned)st, reason, st == 400, a->client, "%s", err);
    }
    pthread_mutex_lock(&co->mu);
    co->clients[a->client].last_seen = now_s();
    pthread_mutex_unlock(&co->mu);
    enum MHD_Result r = send_buf(c, co, (unsigned)st, ctype ? ctype : "application/octet-stream", out ? (void *)out : "",
                                 st == 200 ? len : 0, NULL);
    free(out);
    return r;
}

/* ---- the request handler ---------------------------------------------------------- */

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                               const char *version, const char *upload_data, size_t *upload_size, void **con_cls) {
    (void)version;
    fed_coordinator *co = cls;
    conn *cn = *con_cls;
    if (!cn) {
        cn = calloc(1, sizeof *cn);
        if (!cn) return MHD_NO;
        *con_cls = cn;
        const char *cl = hdr(c, "Content-Length");
        int64_t l;
        if (cl && fed_req_parse_i64(cl, &l) == 0 && l > co->so.max_body_bytes) {
            /* answered before the body is read: MHD then closes the connection */
            cn->too_big = 1;
            int up = strcmp(method, "POST") == 0 && (strcmp(url, "/v1/result") == 0 || strcmp(url, "/v1/evaluation") == 0);
            return reject(c, co, 413, R_TOO_LARGE, up, -1, "request body of %" PRId64 " bytes exceeds max_body_bytes (%" PRId64 " bytes)",
                          l, co->so.max_body_bytes);
        }
        /* the declared size at once: no copies while the body grows; a large one
         * from the pool of receive buffers */
        if (cl && fed_req_parse_i64(cl, &l) == 0 && l > 0) {
            if ((size_t)l + 1 >= RX_POOL_MIN) cn->body = rx_take(co, (size_t)l + 1, &cn->cap), cn->pooled = cn->body != NULL;
            else if ((cn->body = malloc((size_t)l + 1))) cn->cap = (size_t)l + 1;
        }
        cn->hashing = fed_sha256_init(&cn->sha) == 0;
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (cn->too_big || cn->len + n > (size_t)co->so.max_body_bytes) {
            cn->too_big = 1;
            if (cn->pooled) rx_give(co, cn->body, cn->cap);
            else free(cn->body);
            cn->body = NULL;
            cn->pooled = 0;
            cn->len = cn->cap = 0;
            return MHD_YES;
        }
        if (cn->len + n + 1 > cn->cap) {
            size_t nc = cn->cap ? cn->cap : 65536;
            while (nc < cn->len + n + 1) nc *= 2;
            char *nb = cn->pooled ? NULL : realloc(cn->body, nc);
            if (cn->pooled && (nb = malloc(nc))) {
                /* a body longer than declared: off the pool */
                memcpy(nb, cn->body, cn->len);
                rx_give(co, cn->body, cn->cap);
                cn->pooled = 0;
            }
            if (!nb) return MHD_NO;
            cn->body = nb;
            cn->cap = nc;
        }
        memcpy(cn->body + cn->len, upload_data, n);
        if (cn->hashing && fed_sha256_update(&cn->sha, cn->body + cn->len, n)) {
            fed_sha256_abort(&cn->sha);
            cn->hashing = 0;   /* hashed in one pass at the end instead */
        }
        cn->len += n;
        cn->body[cn->len] = '\0';
        return MHD_YES;
    }
    if (cn->hashing) {
        cn->hashing = 0;
        cn->hashed = fed_sha256_final(&cn->sha, cn->hash) == 0;
    }
    pthread_mutex_lock(&co->mu);
    co->bytes_in += (int64_t)cn->len;
    pthread_mutex_unlock(&co->mu);
    int is_get = strcmp(method, "GET") == 0, is_post = strcmp(method, "POST") == 0;
    int is_upload = is_post && (strcmp(url, "/v1/result") == 0 || strcmp(url, "/v1/evaluation") == 0);
    if (cn->too_big)
        return reject(c, co, 413, R_TOO_LARGE, is_upload, -1, "request body exceeds max_body_bytes (%" PRId64 " bytes)",
                      co->so.max_body_bytes);
    if (is_get && strcmp(url, "/metrics") == 0) return h_metrics(c, co);
    if (is_get && strncmp(url, "/api/", 5) == 0) return h_api_get(c, co, url);
    if (is_post && strncmp(url, "/api/", 5) == 0) return h_api_post(c, co, url, cn);
    int ep = 0;
    if (is_post && strcmp(url, "/v1/register") == 0) ep = 1;
    else if (is_get && strcmp(url, "/v1/task") == 0) ep = 2;
    else if (is_get && strcmp(url, "/v1/model") == 0) ep = 3;
    else if (is_post && strcmp(url, "/v1/result") == 0) ep = 4;
    else if (is_post && strcmp(url, "/v1/evaluation") == 0) ep = 5;
    else if ((is_get || is_post) && strncmp(url, "/v1/secagg/", 11) == 0) ep = 6;
    if (!ep) return reject(c, co, 404, R_NOT_FOUND, 0, -1, "no such endpoint: %s %.100s (see docs/protocol.md)", method, url);
    auth a;
    enum MHD_Result ret;
    if (co->client_ca_pem) {
        /* mutual TLS: the client's certificate must chain to server.client_ca */
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_GNUTLS_SESSION);
        unsigned status = 0;
        if (!ci || !ci->tls_session || gnutls_certificate_verify_peers2((gnutls_session_t)ci->tls_session, &status) < 0 ||
            status != 0 || gnutls_certificate_get_peers((gnutls_session_t)ci->tls_session, &(unsigned){0}) == NULL)
            return reject(c, co, 403, R_CLIENT_CERT, ep >= 4, -1,
                          "a TLS client certificate signed by the federation's CA is required (server.client_ca)");
    }
    if (authenticate(c, co, method, url, cn, ep >= 4, &a, &ret)) return ret;
    switch (ep) {
    case 1: return h_register(c, co, &a, cn);
    case 2: return h_task(c, co, &a);
    case 3: return h_model(c, co, &a);
    case 4: return h_result(c, co, &a, cn);
    case 6: return h_secagg(c, co, &a, cn, is_post, url);
    default: return h_evaluation(c, co, &a, cn);
    }
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)c, (void)toe;
    fed_coordinator *co = cls;
    conn *cn = *con_cls;
    if (cn) {
        if (cn->hashing) fed_sha256_abort(&cn->sha);
        if (cn->pooled) rx_give(co, cn->body, cn->cap);
        else free(cn->body);
        free(cn);
    }
    *con_cls = NULL;
}

/* ---- the transport ------------------------------------------------------------------ */

static int grow(fed_coordinator *co, int k) {
    if (k <= co->cap) return 0;
    free(co->deltas); free(co->deltas_c); free(co->bufs); free(co->res); free(co->evres); free(co->slot_state);
    co->deltas = malloc((size_t)k * co->n * sizeof(float));
    co->deltas_c = co->scaffold ? malloc((size_t)k * co->n * sizeof(float)) : NULL;
    co->bufs = co->nb ? malloc((size_t)k * co->nb * sizeof(float)) : NULL;
    co->res = calloc((size_t)k, sizeof *co->res);
    co->evres = calloc((size_t)k, sizeof *co->evres);
    co->slot_state = calloc((size_t)k, sizeof *co->slot_state);
    co->cap = k;
    if (!co->deltas || (co->scaffold && !co->deltas_c) || (co->nb && !co->bufs) || !co->res || !co->evres || !co->slot_state) {
        co->cap = 0;
        return fed_error(FED_ENOMEM, "coordinator: cannot hold %d updates", k);
    }
    return 0;
}

/* Opens a phase (fit or evaluate) for the given clients with a new model body. */
static int open_phase(fed_coordinator *co, int kind, int round, const int *clients, int k, const float *global,
                      const float *gbuf, const float *control) {
    void *body = NULL;
    size_t len = 0;
    char rs[32], rid[32];
    snprintf(rs, sizeof rs, "%d", round);
    snprintf(rid, sizeof rid, "%" PRId64, co->run_id);
    const char *meta[] = {"format", "pt", "federate_model", fed_model_name(co->proto), "round", rs, "run_id", rid};
    int rc = fed_net_pack(co->proto, global, gbuf, control, meta, 4, &body, &len);
    if (rc) return rc;
    model_snap *ns = NULL;
    if (kind == K_FIT && co->down_codec) {
        ns = calloc(1, sizeof *ns);
        if (ns) {
            ns->refs = 1;
            ns->round = round;
            ns->p = malloc(co->n * sizeof(float));
            ns->b = co->nb ? malloc(co->nb * sizeof(float)) : NULL;
            ns->c = control ? malloc(co->n * sizeof(float)) : NULL;
        }
        if (!ns || !ns->p || (co->nb && !ns->b) || (control && !ns->c)) {
            if (ns) free(ns->p), free(ns->b), free(ns->c);
            free(ns);
            free(body);
            return fed_error(FED_ENOMEM, "coordinator: cannot hold the model for download compression");
        }
        memcpy(ns->p, global, co->n * sizeof(float));
        if (co->nb) memcpy(ns->b, gbuf, co->nb * sizeof(float));
        if (control) memcpy(ns->c, control, co->n * sizeof(float));
    }
    pthread_mutex_lock(&co->mu);
    model_snap *old = co->snap;
    co->snap = ns;
    pthread_mutex_unlock(&co->mu);
    snap_release(co, old);
    pthread_mutex_lock(&co->mu);
    while (co->body_z_busy) pthread_cond_wait(&co->cv, &co->mu);   /* a download is compressing the old body */
    if ((rc = grow(co, k))) {
        pthread_mutex_unlock(&co->mu);
        free(body);
        return rc;
    }
    for (int i = 0; i < co->nclients; i++) co->clients[i].slot = -1;
    drop_bodies(co);
    co->body_resp = body_response(body, len, 0);
    if (!co->body_resp) {
        pthread_mutex_unlock(&co->mu);
        return fed_error(FED_ENOMEM, "coordinator: cannot hold the model body");
    }
    co->body = body;
    co->body_len = len;
    co->body_z = NULL;
    co->body_z_len = 0;
    co->kind = kind;
    co->round = round;
    co->k = k;
    co->ndone = 0;
    co->nopen = 0;
    for (int i = 0; i < k; i++) {
        /* selected but not registered (DP-FedAvg's sampling, simulated devices):
         * nobody can fetch the task, so it counts as missed at once */
        co->slot_state[i] = co->clients[clients[i]].registered ? SL_OPEN : SL_CLOSED;
        co->nopen += co->slot_state[i] == SL_OPEN;
        co->clients[clients[i]].slot = i;
        if (kind == K_FIT) {
            fed_result *r = &co->res[i];
            memset(r, 0, sizeof *r);
            r->client = clients[i];
            r->status = FED_RESULT_LATE;
            r->train_loss = NAN;
            r->delta = co->deltas + (size_t)i * co->n;
            r->delta_c = co->scaffold ? co->deltas_c + (size_t)i * co->n : NULL;
            r->buffers = co->nb ? co->bufs + (size_t)i * co->nb : NULL;
        } else {
            fed_eval_res *e = &co->evres[i];
            e->client = clients[i];
            e->num_examples = 0;
            e->loss = NAN;
            e->accuracy = NAN;
        }
    }
    co->phase_start = now_s();
    co->deadline = co->phase_start + co->so.round_timeout;
    co->open = 1;
    pthread_cond_broadcast(&co->cv);
    pthread_mutex_unlock(&co->mu);
    return 0;
}

/* Waits for `need` results or the deadline (extended while fewer than min_ok
 * arrived and retries remain), then closes the phase. Called with mu held. */
static void wait_phase(fed_coordinator *co, int need, int min_ok, int retries) {
    for (;;) {
        if (co->ndone >= need || co->stop == 2) break;
        double left = co->deadline - now_s();
        if (left <= 0) {
            if (co->ndone < min_ok && retries > 0) {
                retries--;
                logf_("round %d: %d of %d results by the deadline, fewer than min_clients %d; waiting another %.0f s",
                      co->round, co->ndone, co->k, min_ok, co->so.round_timeout);
                co->deadline = now_s() + co->so.round_timeout;
                continue;
            }
            break;
        }
        struct timespec until;
        abs_deadline(&until, left < 1.0 ? left : 1.0);
        pthread_cond_timedwait(&co->done_cv, &co->mu, &until);
    }
    /* uploads that arrived in time and are being checked are decided first:
     * their slots' buffers are the driver's once the phase closes */
    co->closing = 1;
    while (co->checking > 0) {
        struct timespec until;
        abs_deadline(&until, 1.0);
        pthread_cond_timedwait(&co->done_cv, &co->mu, &until);
    }
    co->open = 0;
    co->closing = 0;
    for (int i = 0; i < co->k; i++)
        if (co->slot_state[i] == SL_OPEN) co->slot_state[i] = SL_CLOSED;
    pthread_cond_broadcast(&co->cv);
}

static int64_t find_unfinished(fed_coordinator *co);

static int tr_broadcast(fed_transport *t, const fed_task *tasks, int k, const float *global, const float *gbuf,
                        const float *control) {
    fed_coordinator *co = t->impl;
    if (co->run_id <= 0) {
        /* the driver has just recorded the run: the newest running run of this config */
        int64_t id = find_unfinished(co);
        pthread_mutex_lock(&co->mu);
        co->run_id = id;
        pthread_mutex_unlock(&co->mu);
        logf_("run %" PRId64 " started", id);
    }
    if (co->down_codec && co->down_run != co->run_id) {
        /* each client's reference copy, per run: next to the store unless state_dir says where */
        char dir[700], sub[800];
        if (co->cfg.state_dir[0]) snprintf(dir, sizeof dir, "%s", co->cfg.state_dir);
        else snprintf(dir, sizeof dir, "%s.state", co->so.store);
        if (mkdir(dir, 0700) && errno != EEXIST) return fed_error(FED_EIO, "cannot create %s: %s", dir, strerror(errno));
        snprintf(sub, sizeof sub, "%s/run_%" PRId64 "_download", dir, co->run_id);
        fed_client_state *st = NULL;
        int rc = fed_client_state_open(&st, sub, co->n, co->cfg.checkpoint_every + 1);
        if (rc) return rc;
        for (int i = 0; i < DOWN_LOCKS; i++) pthread_mutex_lock(&co->down_mu[i]);
        fed_client_state_close(co->down_state);
        co->down_state = st;
        snprintf(co->down_dir, sizeof co->down_dir, "%s", sub);
        co->down_run = co->run_id;
        for (int i = 0; i < DOWN_LOCKS; i++) pthread_mutex_unlock(&co->down_mu[i]);
    }
    int clients[k > 0 ? k : 1];
    for (int i = 0; i < k; i++) clients[i] = tasks[i].client;
    co->tasks = tasks;
    return open_phase(co, K_FIT, k ? tasks[0].round : 0, clients, k, global, gbuf, control);
}

static int tr_collect(fed_transport *t, fed_result *results, int k, double deadline_s) {
    (void)deadline_s;
    fed_coordinator *co = t->impl;
    if (k != co->k) return fed_error(FED_EINVAL, "collect for %d results after a broadcast of %d", k, co->k);
    pthread_mutex_lock(&co->mu);
    int need = (int)ceil((double)k / (1.0 + co->so.over_selection) - 1e-9);
    if (need < 1) need = 1;
    if (need > k) need = k;
    if (need > co->nopen) need = co->nopen;   /* none open: nothing to wait for */
    int min_ok = co->cfg.min_clients < need ? co->cfg.min_clients : need;
    wait_phase(co, need, min_ok, co->so.round_retries);
    int late = 0;
    for (int i = 0; i < k; i++) {
        results[i] = co->res[i];
        if (results[i].status != FED_RESULT_OK) {
            late++;
            snprintf(results[i].error, sizeof results[i].error, "no result by the round's deadline");
        }
    }
    int round = co->round, done = co->ndone;
    pthread_mutex_unlock(&co->mu);
    if (late) logf_("round %d: %d of %d selected clients reported; %d missed the round", round, done, k, late);
    return 0;
}

static int tr_evaluate(fed_transport *t, const int *clients, int k, const float *global, const float *gbuf,
                       fed_eval_res *out) {
    fed_coordinator *co = t->impl;
    int rc = open_phase(co, K_EVAL, co->round, clients, k, global, gbuf, NULL);
    if (rc) return rc;
    pthread_mutex_lock(&co->mu);
    wait_phase(co, k, 0, 0);
    for (int i = 0; i < k; i++) out[i] = co->evres[i];
    pthread_mutex_unlock(&co->mu);
    return 0;
}

/* Before each round's selection (driver thread): the registered clients are the
 * eligible ones, and a client that registered after the federation was built
 * gets its sizes and label counts filled in here, so the driver's view only
 * changes between rounds. */
static int tr_eligible(fed_transport *t, int round, fed_federation *fed, unsigned char *eligible, int *count) {
    (void)round;
    fed_coordinator *co = t->impl;
    int n = 0, C = co->num_classes;
    double wmax = 1;
    pthread_mutex_lock(&co->mu);
    for (int i = 0; i < co->nclients && i < fed->num_clients; i++) {
        const client_rec *cr = &co->clients[i];
        eligible[i] = (unsigned char)(cr->registered != 0);
        if (!cr->registered) continue;
        n++;
        fed->part.train_n[i] = cr->train_n;
        fed->part.test_n[i] = cr->test_n;
        if (fed->part.label_counts && fed->part.num_classes == C)
            memcpy(fed->part.label_counts + (size_t)i * C, co->labels + (size_t)i * C, (size_t)C * sizeof *co->labels);
        if ((double)cr->train_n > wmax) wmax = (double)cr->train_n;
    }
    for (int i = co->nclients; i < fed->num_clients; i++) eligible[i] = 0;
    co->wmax = wmax;
    pthread_mutex_unlock(&co->mu);
    *count = n;
    return 0;
}

/* The consistency check's server-side keys: the allow-list's (the keys this
 * coordinator already checks request signatures with). */
static int relay_key(void *ctx, int client, uint8_t pk[32]) {
    fed_coordinator *co = ctx;
    if (!co->allow) return fed_error(FED_ESTATE, "the allow-list is not open");
    return fed_allowlist_get(co->allow, client, pk);
}

static int tr_secure_mean(fed_transport *t, int round, fed_result *results, int k, float *mean, size_t n,
                          fed_secure_agg_report *rep) {
    fed_coordinator *co = t->impl;
    /* the public bound on weights: the largest client eligible this round (fixed
     * when the round began, so a client registering mid-round changes nothing) */
    pthread_mutex_lock(&co->mu);
    double wmax = co->wmax > 1 ? co->wmax : 1;
    int64_t run = co->run_id;
    pthread_mutex_unlock(&co->mu);
    return fed_secagg_relay_round(co->relay, run, round, wmax, results, k, mean, n, rep);
}

/* ---- lifecycle ------------------------------------------------------------------------ */

static int read_file(const char *path, char **out, size_t max) {
    FILE *f = fopen(path, "rb");
    if (!f) return fed_error(FED_EIO, "%s: %s", path, strerror(errno));
    char *b = malloc(max + 1);
    size_t n = b ? fread(b, 1, max, f) : 0;
    fclose(f);
    if (!b) return fed_error(FED_ENOMEM, "out of memory");
    b[n] = '\0';
    *out = b;
    return 0;
}


int fed_coordinator_start(fed_coordinator **out, const fed_config *cfg, const fed_server_opts *so) {
    int rc = fed_config_validate(cfg);
    if (rc) return rc;
    if (cfg->dropout_probability > 0)
        return fed_error(FED_EINVAL, "dropout_probability is a simulation setting; a deployment's clients drop out by themselves");
    /* Besides the receive buffers (rx_take), an upload's parsed copy and a
     * decompressed body are megabytes each, many per round: glibc would map
     * them fresh or hand their pages back when freed, and every upload paid a
     * page fault and the kernel's zeroing per page. Served from the heap and
     * not trimmed, they are reused with their pages in place; what stays
     * mapped is the peak of uploads being checked at once. */
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    fed_coordinator *co = calloc(1, sizeof *co);
    if (!co) return fed_error(FED_ENOMEM, "coordinator: out of memory");
    co->cfg = *cfg;
    co->so = *so;
    co->final_accuracy = NAN;
    pthread_mutex_init(&co->mu, NULL);
    pthread_mutex_init(&co->nonce_mu, NULL);
    for (int i = 0; i < DOWN_LOCKS; i++) pthread_mutex_init(&co->down_mu[i], NULL);
    pthread_mutex_init(&co->rx.mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&co->cv, &ca);
    pthread_cond_init(&co->done_cv, &ca);
    pthread_condattr_destroy(&ca);
    co->nclients = cfg->num_clients;
    co->num_classes = 10;   /* mnist, fashion-mnist and cifar10 all have ten */
    co->clients = calloc((size_t)co->nclients, sizeof *co->clients);
    co->labels = calloc((size_t)co->nclients * (size_t)co->num_classes, sizeof *co->labels);
    co->started = so->autostart;
    if (!co->clients || !co->labels) { rc = fed_error(FED_ENOMEM, "coordinator: out of memory"); goto fail; }
    for (int i = 0; i < co->nclients; i++) co->clients[i].slot = -1;
    co->transport.name = "coordinator";
    co->transport.impl = co;
    co->transport.broadcast = tr_broadcast;
    co->transport.collect = tr_collect;
    co->transport.evaluate = tr_evaluate;
    co->transport.eligible = tr_eligible;
    co->min_registered = so->min_registered > 0 ? so->min_registered : co->nclients;
    if (co->min_registered > co->nclients || co->min_registered < cfg->min_clients) {
        rc = fed_error(FED_EINVAL, "server.min_registered %d must be in [min_clients %d, num_clients %d] (0 = all clients)",
                       so->min_registered, cfg->min_clients, co->nclients);
        goto fail;
    }
    if (cfg->sa_enabled) {
        if ((rc = fed_secagg_relay_new(&co->relay, cfg, so->round_timeout, so->long_poll, &co->stop))) goto fail;
        fed_secagg_relay_set_keys(co->relay, relay_key, co);
        co->transport.secure_mean = tr_secure_mean;
    }
    if (cfg->compression[0] && (rc = fed_codec_new(&co->codec, cfg->compression))) goto fail;
    if (cfg->download_compression[0] && (rc = fed_codec_new(&co->down_codec, cfg->download_compression))) goto fail;
    if ((rc = fed_store_open(&co->store, so->store))) goto fail;
    if ((rc = fed_store_open(&co->nonce_store, so->store))) goto fail;
    if ((rc = fed_allowlist_open(&co->allow, so->allow_list))) goto fail;
    if (so->token_file[0]) {
        char *t = NULL;
        if ((rc = read_file(so->token_file, &t, sizeof co->token - 1))) goto fail;
        size_t l = strlen(t);
        while (l && (t[l - 1] == '\n' || t[l - 1] == '\r' || t[l - 1] == ' ')) t[--l] = '\0';
        if (l < 16) {
            free(t);
            rc = fed_error(FED_EINVAL, "server.token_file %s: the token must be at least 16 characters", so->token_file);
            goto fail;
        }
        memcpy(co->token, t, l + 1);
        fed_crypto_wipe(t, l);
        free(t);
        co->has_token = 1;
    }
    struct sockaddr_in6 a6;
    struct sockaddr_in a4;
    int is6 = 0, loop = 0;
    if ((rc = fed_net_parse_listen("server.listen", so->listen, &a6, &a4, &is6, &loop))) goto fail;
    /* poll(), not select(): a thousand clients hold a thousand sockets, past FD_SETSIZE;
     * the connection limit follows the descriptor limit (raised to the hard limit) */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL | MHD_USE_ERROR_LOG;
    struct rlimit nofile;
    unsigned conn_limit = 1000;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0) {
        if (nofile.rlim_cur < nofile.rlim_max) {
            nofile.rlim_cur = nofile.rlim_max;
            if (setrlimit(RLIMIT_NOFILE, &nofile)) getrlimit(RLIMIT_NOFILE, &nofile);
        }
        rlim_t l = nofile.rlim_cur > 65536 + 64 ? 65536 : nofile.rlim_cur > 128 ? nofile.rlim_cur - 64 : 64;
        conn_limit = (unsigned)l;
    }
    if (is6) flags |= MHD_USE_IPv6;
    if (so->insecure_plaintext) {
        if (!loop) {
            rc = fed_error(FED_EINVAL, "--insecure-plaintext serves only on loopback; server.listen is %s", so->listen);
            goto fail;
        }
    } else {
        if (!MHD_is_feature_supported(MHD_FEATURE_TLS)) {
            rc = fed_error(FED_EUNSUPPORTED, "libmicrohttpd was built without TLS");
            goto fail;
        }
        if ((rc = read_file(so->cert, &co->cert_pem, 1 << 20))) goto fail;
        if ((rc = read_file(so->key, &co->key_pem, 1 << 20))) goto fail;
        if (so->client_ca[0] && (rc = read_file(so->client_ca, &co->client_ca_pem, 1 << 20))) goto fail;
        flags |= MHD_USE_TLS;
    }
    if (so->insecure_plaintext)
        co->d = MHD_start_daemon(flags, 0, NULL, NULL, handler, co, MHD_OPTION_SOCK_ADDR,
                                 is6 ? (struct sockaddr *)&a6 : (struct sockaddr *)&a4, MHD_OPTION_NOTIFY_COMPLETED,
                                 completed, co, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)(so->long_poll + 120),
                                 MHD_OPTION_CONNECTION_LIMIT, conn_limit,
                                 MHD_OPTION_END);
    else if (co->client_ca_pem)
        co->d = MHD_start_daemon(flags, 0, NULL, NULL, handler, co, MHD_OPTION_SOCK_ADDR,
                                 is6 ? (struct sockaddr *)&a6 : (struct sockaddr *)&a4, MHD_OPTION_NOTIFY_COMPLETED,
                                 completed, co, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)(so->long_poll + 120),
                                 MHD_OPTION_CONNECTION_LIMIT, conn_limit,
                                 MHD_OPTION_HTTPS_MEM_KEY, co->key_pem, MHD_OPTION_HTTPS_MEM_CERT, co->cert_pem,
                                 MHD_OPTION_HTTPS_MEM_TRUST, co->client_ca_pem, MHD_OPTION_END);
    else
        co->d = MHD_start_daemon(flags, 0, NULL, NULL, handler, co, MHD_OPTION_SOCK_ADDR,
                                 is6 ? (struct sockaddr *)&a6 : (struct sockaddr *)&a4, MHD_OPTION_NOTIFY_COMPLETED,
                                 completed, co, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)(so->long_poll + 120),
                                 MHD_OPTION_CONNECTION_LIMIT, conn_limit,
                                 MHD_OPTION_HTTPS_MEM_KEY, co->key_pem, MHD_OPTION_HTTPS_MEM_CERT, co->cert_pem,
                                 MHD_OPTION_END);
    if (!co->d) {
        rc = fed_error(FED_EIO, "cannot serve on %s (address in use, or a bad certificate/key in %s / %s)", so->listen,
                       so->cert, so->key);
        goto fail;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(co->d, MHD_DAEMON_INFO_BIND_PORT);
    co->port = di ? di->port : 0;
    if (so->port_file[0]) {
        char tmp[600];
        snprintf(tmp, sizeof tmp, "%s.tmp", so->port_file);
        FILE *f = fopen(tmp, "w");
        if (f) {
            fprintf(f, "%d\n", co->port);
            fclose(f);
            rename(tmp, so->port_file);
        }
    }
    *out = co;
    return 0;
fail:
    fed_coordinator_free(co);
    return rc;
}

int fed_coordinator_port(const fed_coordinator *co) { return co ? co->port : 0; }

void fed_coordinator_request_stop(fed_coordinator *co) {
    if (co) co->stop = 1;   /* polled by the driver and the waits below */
}

typedef struct run_ctx {
    fed_coordinator *co;
    void (*on_round)(void *, const fed_config *, const fed_round_report *);
    void *ctx;
} run_ctx;

static int build_federation(void *vctx, const fed_config *cfg, fed_federation *fed) {
    fed_coordinator *co = vctx;
    size_t *tn = malloc((size_t)co->nclients * sizeof *tn), *te = malloc((size_t)co->nclients * sizeof *te);
    if (!tn || !te) { free(tn); free(te); return fed_error(FED_ENOMEM, "coordinator: out of memory"); }
    pthread_mutex_lock(&co->mu);
    for (int i = 0; i < co->nclients; i++) tn[i] = co->clients[i].train_n, te[i] = co->clients[i].test_n;
    int rc = fed_federation_build_sizes(cfg, co->nclients, tn, te, co->labels, fed);
    pthread_mutex_unlock(&co->mu);
    free(tn);
    free(te);
    if (rc) return rc;
    /* the model the bodies are packed for: the driver's own architecture */
    fed_model_free(co->proto);
    co->proto = NULL;
    if ((rc = fed_model_for_config(cfg, &fed->train, &co->proto))) return rc;
    co->n = fed_model_num_params(co->proto);
    co->nb = fed_model_num_buffers(co->proto);
    co->scaffold = strcmp(cfg->strategy, "scaffold") == 0;
    return 0;
}

static void on_round(void *vctx, const fed_config *cfg, const fed_round_report *r) {
    run_ctx *rc = vctx;
    fed_coordinator *co = rc->co;
    pthread_mutex_lock(&co->mu);
    if (co->nrounds == co->rounds_cap) {
        int nc = co->rounds_cap ? 2 * co->rounds_cap : 32;
        round_rec *nr = realloc(co->rounds, (size_t)nc * sizeof *nr);
        if (nr) co->rounds = nr, co->rounds_cap = nc;
    }
    if (co->nrounds < co->rounds_cap) {
        round_rec *rr = &co->rounds[co->nrounds];
        rr->m = r->m;
        rr->cm = malloc((size_t)(r->nclients > 0 ? r->nclients : 1) * sizeof *rr->cm);
        rr->ncm = rr->cm ? r->nclients : 0;
        if (rr->cm) memcpy(rr->cm, r->clients, (size_t)r->nclients * sizeof *rr->cm);
        co->nrounds++;
    }
    co->rounds_completed++;
    co->dur_sum += r->m.wall_s;
    co->dur_last = r->m.wall_s;
    if (!isnan(r->m.test_accuracy)) co->final_accuracy = r->m.test_accuracy;
    pthread_mutex_unlock(&co->mu);
    if (rc->on_round) rc->on_round(rc->ctx, cfg, r);
}

/* The unfinished run of this very config, if the coordinator was killed. */
static int64_t find_unfinished(fed_coordinator *co) {
    char *yaml = fed_config_to_yaml(&co->cfg);
    fed_run_info *runs = NULL;
    int n = 0;
    int64_t id = 0;
    if (yaml && fed_store_list_runs(co->store, &runs, &n) == 0) {
        for (int i = 0; i < n; i++)
            if ((strcmp(runs[i].status, "running") == 0 || strcmp(runs[i].status, "interrupted") == 0) &&
                runs[i].config_yaml && strcmp(runs[i].config_yaml, yaml) == 0 && runs[i].id > id)
                id = runs[i].id;
        for (int i = 0; i < n; i++) fed_run_info_free(&runs[i]);
        free(runs);
    }
    free(yaml);
    return id;
}

int fed_coordinator_run(fed_coordinator *co, void (*user_on_round)(void *, const fed_config *, const fed_round_report *),
                        void *ctx, fed_run_result *res) {
    memset(res, 0, sizeof *res);
    res->final_accuracy = NAN;
    /* server.min_registered clients (all by default) register first: the
     * federation's sizes come from them; later ones join from the next round on */
    pthread_mutex_lock(&co->mu);
    double until = now_s() + co->so.register_timeout;
    int last_report = -1;
    while ((co->nregistered < co->min_registered || !co->started) && !co->stop) {
        if (now_s() >= until) break;
        if (co->nregistered != last_report) {
            logf_("%d of %d clients registered (%d needed to start)%s", co->nregistered, co->nclients,
                  co->min_registered, co->started ? "" : " (waiting for POST /api/start)");
            last_report = co->nregistered;
        }
        struct timespec ts;
        abs_deadline(&ts, 0.5);
        pthread_cond_timedwait(&co->cv, &co->mu, &ts);
    }
    int ok = co->nregistered >= co->min_registered && co->started && !co->stop;
    int nreg = co->nregistered;
    char missing[300] = "";
    size_t o = 0;
    for (int i = 0; i < co->nclients && o < sizeof missing - 16; i++)
        if (!co->clients[i].registered) o += (size_t)snprintf(missing + o, sizeof missing - o, "%s%d", o ? ", " : "", i);
    pthread_mutex_unlock(&co->mu);
    if (!ok) {
        co->phase = PH_STOPPED;
        if (co->stop) return fed_error(FED_ESTATE, "stopped before training started");
        if (!co->started) return fed_error(FED_ESTATE, "not started within server.register_timeout (POST /api/start)");
        return fed_error(FED_ESTATE, "%d of %d clients registered within server.register_timeout (%.0f s), %d needed "
                                     "(server.min_registered); missing: %s", nreg, co->nclients, co->so.register_timeout,
                         co->min_registered, missing);
    }
    if (nreg < co->nclients) logf_("starting with %d of %d clients registered; the others join when they register", nreg, co->nclients);
    int64_t resume = find_unfinished(co);
    if (resume) {
        logf_("resuming run %" PRId64 " (same config, not finished)", resume);
        fed_round_metrics *past = NULL;
        int np = 0;
        if (fed_store_get_rounds(co->store, resume, &past, &np) == 0) {
            pthread_mutex_lock(&co->mu);
            for (int i = 0; i < np; i++) {
                if (co->nrounds == co->rounds_cap) {
                    int nc = co->rounds_cap ? 2 * co->rounds_cap : 32;
                    round_rec *nr = realloc(co->rounds, (size_t)nc * sizeof *nr);
                    if (!nr) break;
                    co->rounds = nr, co->rounds_cap = nc;
                }
                co->rounds[co->nrounds].m = past[i];
                co->rounds[co->nrounds].cm = NULL;
                co->rounds[co->nrounds].ncm = 0;
                co->nrounds++;
            }
            pthread_mutex_unlock(&co->mu);
            free(past);
        }
    }
    pthread_mutex_lock(&co->mu);
    co->phase = PH_RUNNING;
    /* run id known before the first broadcast: a new run gets the next id */
    pthread_mutex_unlock(&co->mu);
    run_ctx rctx = {co, user_on_round, ctx};
    fed_run_opts ro = {0};
    ro.store = co->store;
    ro.resume_run = resume;
    ro.transport = &co->transport;
    ro.on_round = on_round;
    ro.ctx = &rctx;
    ro.stop = &co->stop;
    ro.build_federation = build_federation;
    ro.federation_ctx = co;
    co->run_id = resume ? resume : -1;   /* set for real in the first broadcast below */
    int rc = fed_run(&co->cfg, &ro, res);
    pthread_mutex_lock(&co->mu);
    co->phase = rc ? PH_FAILED : res->stopped ? PH_STOPPED : PH_FINISHED;
    if (!rc) co->final_accuracy = res->final_accuracy;
    co->open = 0;
    pthread_cond_broadcast(&co->cv);
    pthread_mutex_unlock(&co->mu);
    if (!rc && co->so.model_out[0] && res->run_id > 0) {
        void *m = NULL, *s = NULL;
        size_t ml = 0, sl = 0;
        int round = 0;
        int wrc = fed_store_load_checkpoint(co->store, res->run_id, &round, &m, &ml, &s, &sl);
        if (!wrc) {
            FILE *f = fopen(co->so.model_out, "wb");
            if (!f || fwrite(m, 1, ml, f) != ml) logf_("cannot write server.model_out %s", co->so.model_out);
            if (f) fclose(f);
        }
        free(m);
        free(s);
    }
    /* tell the clients: wait (briefly) until each has seen the end */
    double end = now_s() + co->so.long_poll + 5;
    pthread_mutex_lock(&co->mu);
    for (;;) {
        int all = 1;
        for (int i = 0; i < co->nclients; i++) all &= co->clients[i].saw_finish || !connected(co, &co->clients[i]);
        if (all || now_s() >= end) break;
        struct timespec ts;
        abs_deadline(&ts, 0.2);
        pthread_cond_timedwait(&co->cv, &co->mu, &ts);
    }
    pthread_mutex_unlock(&co->mu);
    /* the last "finish" answers are queued, not necessarily sent: let them go out */
    struct timespec grace = {0, 500 * 1000 * 1000};
    nanosleep(&grace, NULL);
    return rc;
}

void fed_coordinator_free(fed_coordinator *co) {
    if (!co) return;
    if (co->d) {
        pthread_mutex_lock(&co->mu);
        co->phase = co->phase == PH_RUNNING ? PH_STOPPED : co->phase;
        co->stop = 2;
        pthread_cond_broadcast(&co->cv);
        pthread_mutex_unlock(&co->mu);
        MHD_stop_daemon(co->d);
    }
    fed_secagg_relay_free(co->relay);
    fed_codec_free(co->codec);
    fed_codec_free(co->down_codec);
    fed_client_state_close(co->down_state);
    if (co->snap) {
        model_snap *s = co->snap;
        co->snap = NULL;
        snap_release(co, s);
    }
    fed_store_close(co->store);
    fed_store_close(co->nonce_store);
    fed_allowlist_close(co->allow);
    fed_model_free(co->proto);
    if (co->key_pem) fed_crypto_wipe(co->key_pem, strlen(co->key_pem));
    free(co->key_pem);
    free(co->cert_pem);
    free(co->client_ca_pem);
    fed_crypto_wipe(co->token, sizeof co->token);
    free(co->clients);
    free(co->labels);
    drop_bodies(co);   /* the daemon is stopped: no download holds them */
    free(co->deltas); free(co->deltas_c); free(co->bufs); free(co->res); free(co->evres); free(co->slot_state);
    for (int i = 0; i < co->nrounds; i++) free(co->rounds[i].cm);
    free(co->rounds);
    pthread_mutex_destroy(&co->mu);
    pthread_mutex_destroy(&co->nonce_mu);
    for (int i = 0; i < DOWN_LOCKS; i++) pthread_mutex_destroy(&co->down_mu[i]);
    for (int i = 0; i < co->rx.n; i++) free(co->rx.buf[i]);
    pthread_mutex_destroy(&co->rx.mu);
    pthread_cond_destroy(&co->cv);
    pthread_cond_destroy(&co->done_cv);
    free(co);
}
