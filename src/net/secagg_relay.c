/* The coordinator's side of secure aggregation over the network (Bonawitz et
 * al., CCS 2017; SecAgg+ on a Harary graph, Bell et al., CCS 2020): after the
 * fit phase, the clients whose results arrived run the four stages through the
 * coordinator, which relays their byte messages to one fed_secagg_server. A
 * stage closes when every client still in the round has answered or its
 * deadline passes; whoever did not answer has dropped out. The driver gets
 * only the survivors' weighted mean. With privacy.mode distributed the clients add
 * discrete Gaussian shares before masking (Kairouz et al. 2021, src/secagg/ddp.c):
 * the mechanism travels in the setup, and the relay refuses to ask for unmasking
 * shares once fewer clients than the noise is calibrated for are left, so an
 * under-noised sum is never unmasked. With secure_aggregation.consistency_check
 * (Bonawitz et al.'s active-adversary variant) a fifth stage runs before the
 * unmasking; the server checks the clients' signatures against the keys of the
 * allow-list (fed_secagg_relay_set_keys), while each client checks its peers'
 * against keys pinned out of band, never against anything the coordinator sends.
 * Protocol: docs/protocol.md. */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "federate/crypto.h"
#include "federate/error.h"
#include "federate/secagg.h"
#include "fl/ddp_config.h"
#include "secagg_relay.h"

enum { RS_IDLE = 0, RS_OPEN, RS_CLOSING, RS_DONE, RS_FAILED };

struct fed_secagg_relay {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    fed_config cfg;
    double stage_timeout;
    int long_poll;
    volatile int *stop;
    /* the round in progress (or the last one) */
    int64_t run;
    int round, state, stage, m;
    double deadline;
    int *pid_of;              /* client id -> protocol id this round, or -1 (num_clients entries) */
    int *client_of;           /* protocol id -> client id */
    uint8_t *alive, *answered;
    double *bytes;
    uint8_t **msg;            /* the server's message opening the current stage, per protocol id */
    size_t *msg_len;
    char *setup;              /* stage 0's JSON, with "id" filled per client */
    fed_secagg_cfg pc;
    fed_secagg_enc enc;
    int ddp;                  /* privacy.mode distributed or distributed-dp-sgd: noised shares, no weight
                                 coordinate (dp.records > 0: distributed-dp-sgd) */
    fed_secagg_ddp dp;        /* its mechanism (the noise source is the clients' business) */
    fed_secagg_server *srv;
    int nst;                  /* stages of a round: 4, 5 with the consistency check */
    fed_secagg_key_fn key_fn; /* the consistency check: enrolled keys */
    void *key_ctx;
    uint8_t (*sign_pks)[32];  /* the round's keys by protocol id (the server's table) */
    /* counters for /metrics */
    int64_t rounds_ok, rounds_failed, dropped, refused;
    int last_participants, last_survivors;
};

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void wait_until(fed_secagg_relay *r, double until) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double left = until - now_s();
    if (left > 0.5) left = 0.5; /* wake up now and then to look at *stop */
    if (left < 0.001) left = 0.001;
    double s = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec + left;
    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
    pthread_cond_timedwait(&r->cv, &r->mu, &ts);
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

int fed_secagg_relay_new(fed_secagg_relay **out, const fed_config *cfg, double stage_timeout_s, int long_poll_s,
                         volatile int *stop) {
    *out = NULL;
    if (cfg->sa_stage_dropout > 0)
        return fed_error(FED_EINVAL, "secure_aggregation.stage_dropout is a simulation setting; a deployment's clients "
                                     "drop out by themselves");
    fed_secagg_relay *r = calloc(1, sizeof *r);
    if (!r) return fed_error(FED_ENOMEM, "secure aggregation relay: out of memory");
    r->cfg = *cfg;
    r->stage_timeout = stage_timeout_s > 0 ? stage_timeout_s : 60;
    r->long_poll = long_poll_s > 0 ? long_poll_s : 20;
    r->stop = stop;
    r->round = -1;
    r->nst = cfg->sa_consistency ? 5 : 4;
    r->pid_of = malloc((size_t)(cfg->num_clients > 0 ? cfg->num_clients : 1) * sizeof *r->pid_of);
    if (!r->pid_of) {
        free(r);
        return fed_error(FED_ENOMEM, "secure aggregation relay: out of memory");
    }
    for (int i = 0; i < cfg->num_clients; i++) r->pid_of[i] = -1;
    pthread_mutex_init(&r->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cv, &ca);
    pthread_condattr_destroy(&ca);
    *out = r;
    return 0;
}

/* Frees the round's state; called with mu held (or at the end). */
static void clear_round(fed_secagg_relay *r) {
    for (int u = 0; r->msg && u < r->m; u++) free(r->msg[u]);
    free(r->msg);
    free(r->msg_len);
    free(r->client_of);
    free(r->alive);
    free(r->answered);
    free(r->bytes);
    free(r->setup);
    fed_secagg_server_free(r->srv); /* before the key table it reads */
    free(r->sign_pks);
    r->sign_pks = NULL;
    r->msg = NULL;
    r->msg_len = NULL;
    r->client_of = NULL;
    r->alive = r->answered = NULL;
    r->bytes = NULL;
    r->setup = NULL;
    r->srv = NULL;
    for (int i = 0; i < r->cfg.num_clients; i++) r->pid_of[i] = -1;
    r->m = 0;
}

void fed_secagg_relay_free(fed_secagg_relay *r) {
    if (!r) return;
    clear_round(r);
    free(r->pid_of);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r);
}

void fed_secagg_relay_set_keys(fed_secagg_relay *r, fed_secagg_key_fn fn, void *ctx) {
    pthread_mutex_lock(&r->mu);
    r->key_fn = fn;
    r->key_ctx = ctx;
    pthread_mutex_unlock(&r->mu);
}

static int stopping(const fed_secagg_relay *r) { return r->stop && *r->stop >= 2; }

/* The public parameters every participant needs, as JSON without "id". */
static char *setup_json(const fed_secagg_relay *r, double stage_timeout) {
    char seed[65];
    fed_hex_encode(seed, r->pc.graph_seed, 32);
    json_t *j = json_pack("{s:I, s:i, s:i, s:i, s:i, s:i, s:s, s:f, s:i, s:f, s:f}", "run_id", (json_int_t)r->run,
                          "round", r->round, "n", r->pc.n, "degree", r->pc.degree, "threshold", r->pc.threshold,
                          "ring_bits", r->pc.ring_bits, "graph_seed", seed, "clip", r->enc.clip, "bits", r->enc.bits,
                          "weight_max", r->enc.weight_max, "stage_timeout_s", stage_timeout);
    /* distributed DP: what each client needs to size its own noise share; it adds the
     * noise from its own secure randomness (docs/privacy.md) */
    if (j && r->ddp) {
        int records = r->dp.records > 0;
        json_t *d = json_pack("{s:s, s:f, s:f, s:i, s:I}", "mode", records ? "distributed-dp-sgd" : "distributed",
                              "ddp_clip", r->dp.clip, "noise_multiplier", r->cfg.dp_noise_multiplier,
                              "min_survivors", r->dp.min_survivors, "dim", (json_int_t)r->dp.dim);
        /* record level: ddp_clip is one record's bound lr C / B, and the ring holds
         * max_records of them per client */
        if (d && records && json_object_set_new(d, "max_records", json_integer(r->dp.records))) {
            json_decref(d);
            d = NULL;
        }
        if (!d || json_object_update(j, d)) {
            json_decref(j);
            j = NULL;
        }
        json_decref(d);
    }
    /* the consistency check: each client verifies its peers' signatures with keys it
     * pinned itself, found by these client ids (a protocol id's client is
     * clients[id]); the coordinator sends no key */
    if (j && r->pc.consistency) {
        json_t *ids = json_array();
        for (int u = 0; ids && u < r->m; u++)
            if (json_array_append_new(ids, json_integer(r->client_of[u]))) {
                json_decref(ids);
                ids = NULL;
            }
        if (!ids || json_object_set_new(j, "consistency", json_true()) || json_object_set_new(j, "clients", ids)) {
            json_decref(j);
            j = NULL;
        }
    }
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return s;
}

int fed_secagg_relay_round(fed_secagg_relay *r, int64_t run, int round, double weight_max, fed_result *res, int k,
                           float *mean, size_t n, fed_secure_agg_report *rep) {
    memset(rep, 0, sizeof *rep);
    const fed_config *c = &r->cfg;
    int rc = 0, m = 0;
    uint64_t *sum = NULL;
    uint8_t *inc = NULL;
    double t_start = now_s();
    pthread_mutex_lock(&r->mu);
    clear_round(r);
    r->run = run;
    r->round = round;
    r->state = RS_OPEN;
    r->stage = 0;
    r->ddp = fed_ddp_enabled(c) || fed_ddp_record_level(c);
    for (int i = 0; i < k; i++)
        if (res[i].status == FED_RESULT_OK && res[i].client >= 0 && res[i].client < c->num_clients) m++;
    rep->participants = m;
    if (m < 2) {
        rc = fed_error(FED_ESTATE, "secure aggregation needs at least 2 clients, round %d has %d", round, m);
        goto fail;
    }
    r->client_of = malloc((size_t)m * sizeof *r->client_of);
    r->alive = calloc((size_t)m, 1);
    r->answered = calloc((size_t)m, 1);
    r->bytes = calloc((size_t)m, sizeof *r->bytes);
    r->msg = calloc((size_t)m, sizeof *r->msg);
    r->msg_len = calloc((size_t)m, sizeof *r->msg_len);
    int *who = r->client_of;
    sum = malloc((n + 1) * sizeof *sum); /* plain: n coordinates and the weight; distributed: n */
    inc = calloc((size_t)m, 1);
    if (!r->client_of || !r->alive || !r->answered || !r->bytes || !r->msg || !r->msg_len || !sum || !inc) {
        rc = fed_error(FED_ENOMEM, "secure aggregation: out of memory for %d clients", m);
        goto fail;
    }
    r->m = m;
    for (int i = 0, u = 0; i < k; i++)
        if (res[i].status == FED_RESULT_OK && res[i].client >= 0 && res[i].client < c->num_clients) {
            who[u] = res[i].client;
            r->pid_of[res[i].client] = u;
            r->alive[u] = 1;
            u++;
        }
    if ((rc = fed_secagg_cfg_default(&r->pc, m))) goto fail;
    if (!strcmp(c->sa_graph, "harary") && (rc = fed_secagg_cfg_plus(&r->pc, c->sa_adversarial, c->sa_dropout, c->sa_consistency)))
        goto fail;
    r->pc.round = (uint64_t)round;
    r->pc.threads = c->threads > 0 ? c->threads : 1;
    fed_crypto_random(r->pc.graph_seed, sizeof r->pc.graph_seed); /* a deployment: unpredictable */
    /* what the consistency check's signatures bind besides the round: the run id and
     * the graph seed, both in the setup JSON, so each client derives the same bytes
     * itself (docs/protocol.md) and a signature from another run does not verify */
    if ((rc = fed_secagg_context(r->pc.context, (uint64_t)r->run, r->pc.graph_seed))) goto fail;
    fed_secagg_enc_default(&r->enc);
    r->enc.clip = c->sa_clip;
    r->enc.bits = c->sa_bits;
    r->enc.weight_max = weight_max > 0 ? weight_max : 1;
    r->enc.round = (uint64_t)round;
    if (r->ddp) {
        /* the mechanism as the simulation's secure round builds it (ddp_config.h); the
         * accountant (privacy.c) charges exactly this one */
        /* distributed-dp-sgd: the unit lr C / B (the coordinator checked each upload's
         * lr against its task) */
        if ((rc = fed_ddp_round_params(c, n, round, res, k, (long)r->enc.weight_max, &r->dp))) goto fail;
        if (m < r->dp.min_survivors) {
            rc = fed_error(FED_ESTATE, "distributed DP: round %d has %d clients for secure aggregation, fewer than "
                                       "the %d whose noise shares the privacy guarantee needs; the protocol does not "
                                       "start", round, m, r->dp.min_survivors);
            goto fail;
        }
        if ((rc = fed_secagg_ddp_ring_bits(&r->dp, m, &r->pc.ring_bits))) goto fail;
    } else if ((rc = fed_secagg_enc_ring_bits(&r->enc, m, &r->pc.ring_bits))) {
        goto fail;
    }
    r->pc.modulus = 0;
    if (c->sa_consistency) {
        /* the server's keys are the allow-list's; the clients check with their own copies */
        if (!r->key_fn) {
            rc = fed_error(FED_EINVAL, "secure aggregation: the consistency check needs the enrolled keys, and the "
                                       "relay has no key source");
            goto fail;
        }
        if (!(r->sign_pks = malloc((size_t)m * sizeof *r->sign_pks))) {
            rc = fed_error(FED_ENOMEM, "secure aggregation: out of memory for %d keys", m);
            goto fail;
        }
        for (int u = 0; u < m; u++)
            if ((rc = r->key_fn(r->key_ctx, who[u], r->sign_pks[u]))) {
                char why[400];
                snprintf(why, sizeof why, "%s", fed_last_error());
                rc = fed_error(rc, "secure aggregation's consistency check: no enrolled public key for client %d: %s",
                               who[u], why);
                goto fail;
            }
        r->pc.consistency = 1;
        r->pc.sign_pks = (const uint8_t (*)[32])r->sign_pks;
    }
    if ((rc = fed_secagg_server_new(&r->srv, &r->pc, r->ddp ? n : n + 1))) goto fail;
    if (!(r->setup = setup_json(r, r->stage_timeout))) {
        rc = fed_error(FED_ENOMEM, "secure aggregation: out of memory");
        goto fail;
    }
    logf_("round %d: secure aggregation among %d clients (t = %d, %d neighbours each)%s%s", round, m, r->pc.threshold,
          r->pc.degree <= 0 || r->pc.degree >= m - 1 ? m - 1 : r->pc.degree,
          r->ddp ? ", distributed DP noise from each client" : "",
          r->pc.consistency ? ", with the consistency check" : "");
    for (int s = 0; s < r->nst; s++) {
        r->stage = s;
        r->state = RS_OPEN;
        memset(r->answered, 0, (size_t)m);
        r->deadline = now_s() + r->stage_timeout;
        pthread_cond_broadcast(&r->cv);
        for (;;) {
            int all = 1;
            for (int u = 0; u < m && all; u++) all = !r->alive[u] || r->answered[u];
            if (all || now_s() >= r->deadline || stopping(r)) break;
            wait_until(r, r->deadline);
        }
        if (stopping(r)) {
            rc = fed_error(FED_ESTATE, "round %d: the coordinator is stopping", round);
            goto fail;
        }
        r->state = RS_CLOSING;
        for (int u = 0; u < m; u++)
            if (r->alive[u] && !r->answered[u]) {
                r->alive[u] = 0;
                r->dropped++;
                logf_("round %d: secure aggregation: client %d dropped out at stage %d (no message by the stage deadline)",
                      round, who[u], s);
            }
        /* closing a stage can take a while (the last one unmasks): requests meanwhile get "closed" */
        pthread_mutex_unlock(&r->mu);
        rc = fed_secagg_server_finish_stage(r->srv);
        pthread_mutex_lock(&r->mu);
        if (rc) goto fail;
        if (s == r->nst - 1) break;
        for (int u = 0; u < m; u++) {
            free(r->msg[u]);
            r->msg[u] = NULL;
            r->msg_len[u] = 0;
            if (!r->alive[u]) continue;
            if (fed_secagg_server_message(r->srv, (uint32_t)u, &r->msg[u], &r->msg_len[u])) {
                r->alive[u] = 0; /* the server has left it out */
                r->msg[u] = NULL;
                r->msg_len[u] = 0;
            }
        }
        if (s == 2 && r->ddp) {
            /* the masked inputs in the sum are those of the clients still here: with
             * fewer noise shares than the calibration assumes, the unmasked sum would
             * be under-noised, so it is never unmasked (the next stage is not opened;
             * with the consistency check the masked inputs of U3 are in the sum whether
             * or not their owners sign, so this count is the one that matters) */
            int left = 0;
            for (int u = 0; u < m; u++) left += r->alive[u];
            if (left < r->dp.min_survivors) {
                rc = fed_error(FED_ESTATE, "distributed DP: %d of %d clients survived secure aggregation's masked-input "
                                           "stage, fewer than the %d whose noise shares the privacy guarantee needs; "
                                           "the sum is not unmasked", left, m, r->dp.min_survivors);
                goto fail;
            }
        }
    }
    if ((rc = fed_secagg_server_result(r->srv, sum, inc))) goto fail;
    int surv = 0;
    for (int u = 0; u < m; u++) surv += inc[u];
    if (r->ddp) {
        /* equal weights, as DP-FedAvg: a client's influence is bounded by the clip alone */
        if (surv < r->dp.min_survivors) { /* the stage-2 check stops this first; no path releases it */
            rc = fed_error(FED_ESTATE, "distributed DP: %d of %d clients in the sum, fewer than the %d the noise is "
                                       "calibrated for; the mean is not released", surv, m, r->dp.min_survivors);
            goto fail;
        }
        rc = fed_secagg_ddp_decode_mean(&r->dp, surv, sum, n, r->pc.ring_bits, mean);
    } else {
        rc = fed_secagg_decode_mean(&r->enc, surv, sum, n, mean, NULL);
    }
    if (rc) goto fail;
    rep->survivors = surv;
    rep->degree = r->pc.degree <= 0 || r->pc.degree >= m - 1 ? m - 1 : r->pc.degree;
    rep->threshold = r->pc.threshold;
    rep->server_ms = 1e3 * (now_s() - t_start);
    double bsum = 0;
    for (int u = 0; u < m; u++) {
        fed_result *rr = NULL;
        for (int i = 0; i < k && !rr; i++)
            if (res[i].client == who[u] && res[i].status == FED_RESULT_OK) rr = &res[i];
        if (!rr) continue;
        if (inc[u]) {
            rr->bytes_up = (int64_t)llround(r->bytes[u]); /* the plain update never left the client */
            bsum += r->bytes[u];
        } else {
            rr->status = FED_RESULT_DROPPED;
            snprintf(rr->error, sizeof rr->error, "dropped out during secure aggregation");
        }
    }
    rep->bytes_per_client = surv ? bsum / surv : 0;
    r->state = RS_DONE;
    r->rounds_ok++;
    r->last_participants = m;
    r->last_survivors = surv;
    logf_("round %d: secure aggregation done: %d of %d clients in the sum", round, surv, m);
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    free(sum);
    free(inc);
    return 0;
fail:
    r->state = RS_FAILED;
    r->rounds_failed++;
    r->last_participants = m;
    r->last_survivors = 0;
    if (r->srv && r->m) {
        rep->threshold = r->pc.threshold;
        for (int u = 0; u < r->m; u++)
            if (!r->alive[u])
                for (int i = 0; i < k; i++)
                    if (res[i].client == r->client_of[u] && res[i].status == FED_RESULT_OK) {
                        res[i].status = FED_RESULT_DROPPED;
                        snprintf(res[i].error, sizeof res[i].error, "dropped out during secure aggregation");
                    }
    }
    if (r->ddp) {
        /* nothing was released: no client's update is in the model, and the accountant
         * (which counts the clients still OK) records no release, as in the simulation */
        for (int i = 0; i < k; i++)
            if (res[i].status == FED_RESULT_OK && res[i].client >= 0 && res[i].client < c->num_clients) {
                res[i].status = FED_RESULT_DROPPED;
                snprintf(res[i].error, sizeof res[i].error, "secure aggregation round failed");
            }
    }
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    free(sum);
    free(inc);
    return rc;
}

/* "/v1/secagg/ROUND/STAGE" */
static int parse_url(const char *url, int max_stage, int *round, int *stage) {
    const char *p = url + strlen("/v1/secagg/");
    char *end;
    errno = 0;
    long a = strtol(p, &end, 10);
    if (end == p || *end != '/' || errno || a < 0 || a > 1 << 30) return -1;
    p = end + 1;
    long b = strtol(p, &end, 10);
    if (end == p || *end || errno || b < 0 || b > max_stage) return -1;
    *round = (int)a;
    *stage = (int)b;
    return 0;
}

#define FAIL(status, ...) (snprintf(err, errsz, __VA_ARGS__), (status))

int fed_secagg_relay_request(fed_secagg_relay *r, int is_post, int client, int64_t run, int hdr_round, const char *url,
                             const void *body, size_t len, uint8_t **out, size_t *out_len, const char **ctype,
                             char *err, size_t errsz) {
    *out = NULL;
    *out_len = 0;
    *ctype = "application/octet-stream";
    int round, stage;
    if (parse_url(url, r->nst - 1, &round, &stage)) /* nst is fixed at creation: no lock */
        return FAIL(404, "no such endpoint: %.100s (/v1/secagg/ROUND/STAGE with STAGE 0..%d)", url, r->nst - 1);
    if (round != hdr_round)
        return FAIL(400, "%.100s: X-Federate-Round is %d, the path says round %d", url, hdr_round, round);
    pthread_mutex_lock(&r->mu);
    int status = 0;
    if (!is_post) {
        /* long poll until this round's stage opens */
        double until = now_s() + r->long_poll;
        while (!stopping(r) && now_s() < until &&
               (r->round < round || (r->round == round && (r->state == RS_OPEN || r->state == RS_CLOSING) && r->stage < stage) ||
                (r->round == round && r->state == RS_CLOSING && r->stage == stage)))
            wait_until(r, until);
    }
    if (run != r->run && r->round >= 0 && r->round == round) {
        status = FAIL(409, "secure aggregation for run %" PRId64 ", but the coordinator runs run %" PRId64, run, r->run);
        goto out;
    }
    if (r->round < round || (r->round == round && r->state == RS_IDLE)) {
        if (is_post) status = FAIL(409, "secure aggregation of round %d has not started", round);
        else status = 204;
        goto out;
    }
    if (r->round > round) {
        status = FAIL(409, "secure aggregation of round %d is over (current round %d)", round, r->round);
        goto out;
    }
    if (r->state == RS_FAILED) {
        status = FAIL(409, "secure aggregation of round %d failed", round);
        goto out;
    }
    int pid = r->pid_of[client];
    if (pid < 0) {
        status = FAIL(409, "client %d is not taking part in round %d's secure aggregation", client, round);
        goto out;
    }
    if (!r->alive[pid]) {
        status = FAIL(410, "client %d has dropped out of round %d's secure aggregation", client, round);
        goto out;
    }
    if (r->state == RS_DONE || r->stage > stage || (r->state == RS_CLOSING && r->stage == stage)) {
        status = FAIL(409, "stage %d of round %d's secure aggregation is closed", stage, round);
        goto out;
    }
    if (r->stage < stage) {
        if (is_post) status = FAIL(409, "stage %d of round %d is not open yet (stage %d is)", stage, round, r->stage);
        else status = 204;
        goto out;
    }
    /* r->stage == stage, open */
    if (!is_post) {
        if (stage == 0) {
            json_error_t je;
            json_t *j = json_loads(r->setup, 0, &je);
            if (j) json_object_set_new(j, "id", json_integer(pid));
            char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
            json_decref(j);
            if (!s) {
                status = FAIL(500, "out of memory");
                goto out;
            }
            *out = (uint8_t *)s;
            *out_len = strlen(s);
            *ctype = "application/json";
        } else {
            *out = malloc(r->msg_len[pid] ? r->msg_len[pid] : 1);
            if (!*out) {
                status = FAIL(500, "out of memory");
                goto out;
            }
            if (r->msg_len[pid]) memcpy(*out, r->msg[pid], r->msg_len[pid]);
            *out_len = r->msg_len[pid];
        }
        r->bytes[pid] += (double)*out_len;
        status = 200;
        goto out;
    }
    if (r->answered[pid]) {
        status = FAIL(409, "client %d already sent its stage %d message of round %d", client, stage, round);
        goto out;
    }
    int rc = fed_secagg_server_receive(r->srv, (uint32_t)pid, body, len);
    if (rc) {
        /* the state machine has dropped the sender from the round */
        r->alive[pid] = 0;
        r->refused++;
        status = FAIL(400, "secure aggregation, round %d stage %d: message from client %d refused, client dropped: %s",
                      round, stage, client, fed_last_error());
        pthread_cond_broadcast(&r->cv);
        goto out;
    }
    r->answered[pid] = 1;
    r->bytes[pid] += (double)len;
    pthread_cond_broadcast(&r->cv);
    const char *ok = "{\"accepted\":true}";
    *out = (uint8_t *)strdup(ok);
    *out_len = *out ? strlen(ok) : 0;
    *ctype = "application/json";
    status = 200;
out:
    pthread_mutex_unlock(&r->mu);
    return status;
}

size_t fed_secagg_relay_metrics(fed_secagg_relay *r, char *buf, size_t size) {
    if (!r || !size) return 0;
    pthread_mutex_lock(&r->mu);
    int o = snprintf(buf, size,
                     "# HELP federate_secagg_rounds_total Secure aggregation rounds, by result.\n"
                     "# TYPE federate_secagg_rounds_total counter\n"
                     "federate_secagg_rounds_total{result=\"ok\"} %" PRId64 "\n"
                     "federate_secagg_rounds_total{result=\"failed\"} %" PRId64 "\n"
                     "# HELP federate_secagg_dropped_total Clients that dropped out during secure aggregation (no message by a stage deadline).\n"
                     "# TYPE federate_secagg_dropped_total counter\n"
                     "federate_secagg_dropped_total %" PRId64 "\n"
                     "# HELP federate_secagg_refused_total Secure aggregation messages refused as malformed or inconsistent (sender dropped).\n"
                     "# TYPE federate_secagg_refused_total counter\n"
                     "federate_secagg_refused_total %" PRId64 "\n"
                     "# HELP federate_secagg_last_participants Clients that began the last secure aggregation.\n"
                     "# TYPE federate_secagg_last_participants gauge\n"
                     "federate_secagg_last_participants %d\n"
                     "# HELP federate_secagg_last_survivors Clients whose inputs are in the last secure sum.\n"
                     "# TYPE federate_secagg_last_survivors gauge\n"
                     "federate_secagg_last_survivors %d\n",
                     r->rounds_ok, r->rounds_failed, r->dropped, r->refused, r->last_participants, r->last_survivors);
    pthread_mutex_unlock(&r->mu);
    if (o < 0) return 0;
    return (size_t)o < size ? (size_t)o : size - 1;
}
