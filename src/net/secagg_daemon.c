/* The client daemon's side of secure aggregation over the network: after
 * training, the client fetches the round's public parameters, then for each of
 * the four stages (five with the consistency check) posts its message and
 * long-polls for the server's message opening the next one (Bonawitz et al., CCS
 * 2017). With the consistency check (the active-adversary variant) it signs its
 * keys and U3 with its own Ed25519 key and checks its peers' signatures with the
 * keys it pinned (--peer-keys), never with keys from the coordinator. Its update leaves it only
 * quantized and masked. With privacy.mode distributed it is clipped, rounded and
 * noised with a discrete Gaussian share from this client's own CSPRNG before masking
 * (Kairouz et al. 2021, src/secagg/ddp.c), so what the coordinator unmasks is already
 * private. Protocol: docs/protocol.md, "Secure aggregation"; trust: docs/privacy.md. */
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "federate/crypto.h"
#include "federate/dp.h"
#include "federate/error.h"
#include "federate/net.h"
#include "federate/secagg.h"
#include "secagg_relay.h"

static double mono_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static const char *resp_error(const uint8_t *p, size_t len) {
    static _Thread_local char msg[400];
    json_t *j = len ? json_loadb((const char *)p, len, 0, NULL) : NULL;
    const char *e = j ? json_string_value(json_object_get(j, "error")) : NULL;
    snprintf(msg, sizeof msg, "%s", e ? e : "(no message)");
    json_decref(j);
    return msg;
}

/* GET the server's message opening `stage`, long-polling up to wait_s in all.
 * Returns 200 with *resp, or an error code (FED_ESTATE: left out or closed). */
static int get_stage(fed_secagg_call_fn call, void *ctx, int64_t run, int round, int stage, int long_poll,
                     double wait_s, const uint8_t **resp, size_t *resp_len) {
    char path[80];
    snprintf(path, sizeof path, "/v1/secagg/%d/%d", round, stage);
    double until = mono_s() + wait_s;
    for (;;) {
        int st = call(ctx, "GET", path, run, round, NULL, 0, long_poll + 30.0, resp, resp_len);
        if (st < 0) return st;
        if (st == 200) return 0;
        if (st != 204) return fed_error(FED_ESTATE, "GET %s: HTTP %d: %s", path, st, resp_error(*resp, *resp_len));
        if (mono_s() >= until)
            return fed_error(FED_ESTATE, "GET %s: the stage did not open within %.0f s", path, wait_s);
    }
}

static int post_stage(fed_secagg_call_fn call, void *ctx, int64_t run, int round, int stage, const uint8_t *msg,
                      size_t len) {
    const char *die = getenv("FEDERATE_TEST_DIE_AT_SECAGG_STAGE");
    if (die && *die && atoi(die) == stage) {
        /* test hook: a client that vanishes mid-protocol, as kill -9 would make it */
        fprintf(stderr, "federate client: FEDERATE_TEST_DIE_AT_SECAGG_STAGE=%d: killing myself before stage %d\n",
                stage, stage);
        fflush(stderr);
        raise(SIGKILL);
    }
    const char *cut = getenv("FEDERATE_TEST_TRUNCATE_SECAGG_STAGE");
    if (cut && *cut && atoi(cut) == stage && len) len--; /* test hook: a malformed message */
    char path[80];
    snprintf(path, sizeof path, "/v1/secagg/%d/%d", round, stage);
    const uint8_t *resp = NULL;
    size_t rl = 0;
    int st = call(ctx, "POST", path, run, round, msg, len, 60.0, &resp, &rl);
    if (st < 0) return st;
    if (st != 200) return fed_error(FED_ESTATE, "POST %s: HTTP %d: %s", path, st, resp_error(resp, rl));
    return 0;
}

static int jint(json_t *j, const char *key, long lo, long hi, long *v) {
    json_t *x = json_object_get(j, key);
    if (!json_is_integer(x) || json_integer_value(x) < lo || json_integer_value(x) > hi)
        return fed_error(FED_EFORMAT, "secure aggregation setup: \"%s\" must be an integer in [%ld, %ld]", key, lo, hi);
    *v = (long)json_integer_value(x);
    return 0;
}

static int jnum(json_t *j, const char *key, double *v) {
    json_t *x = json_object_get(j, key);
    if (!json_is_number(x) || !isfinite(json_number_value(x)) || json_number_value(x) <= 0)
        return fed_error(FED_EFORMAT, "secure aggregation setup: \"%s\" must be a positive number", key);
    *v = json_number_value(x);
    return 0;
}

/* privacy.mode distributed or distributed-dp-sgd as the coordinator announces it
 * (absent "mode": plain secure aggregation). */
typedef struct ddp_setup {
    int on;
    double clip, z;               /* record level: clip is one record's bound lr C / B */
    long min_survivors, dim;
    long records;                 /* distributed-dp-sgd: max_records; 0: user level */
} ddp_setup;

static int parse_ddp(json_t *j, long n, ddp_setup *dd) {
    memset(dd, 0, sizeof *dd);
    json_t *mode = json_object_get(j, "mode");
    if (!mode) return 0;
    int records = json_is_string(mode) && !strcmp(json_string_value(mode), "distributed-dp-sgd");
    if (!json_is_string(mode) || (strcmp(json_string_value(mode), "distributed") && !records))
        return fed_error(FED_EFORMAT, "secure aggregation setup: \"mode\" must be \"distributed\" or "
                                      "\"distributed-dp-sgd\" (or absent for plain secure aggregation)");
    json_t *z = json_object_get(j, "noise_multiplier");
    if (!json_is_number(z) || !isfinite(json_number_value(z)) || json_number_value(z) < 0)
        return fed_error(FED_EFORMAT, "secure aggregation setup: \"noise_multiplier\" must be a number >= 0");
    dd->z = json_number_value(z);
    int rc;
    /* the noise is split among min_survivors shares: more of them than there are
     * participants would shrink each share below what any sum the coordinator can
     * release needs */
    if ((rc = jnum(j, "ddp_clip", &dd->clip)) || (rc = jint(j, "min_survivors", 1, n, &dd->min_survivors)) ||
        (rc = jint(j, "dim", 1, 1L << 40, &dd->dim)))
        return rc;
    if (records && (rc = jint(j, "max_records", 1, 1L << 40, &dd->records))) return rc;
    dd->on = 1;
    return 0;
}

typedef struct id_pos {
    int id;
    long pos;
} id_pos;

static int id_pos_cmp(const void *a, const void *b) {
    const id_pos *x = a, *y = b;
    if (x->id != y->id) return x->id < y->id ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* The consistency check as announced: "consistency": true and "clients", the client
 * id of each protocol id (n distinct ids). *clients stays NULL without the check. */
static int parse_consistency(json_t *j, long n, int **clients) {
    *clients = NULL;
    json_t *c = json_object_get(j, "consistency");
    if (!c || json_is_false(c)) return 0;
    if (!json_is_true(c)) return fed_error(FED_EFORMAT, "secure aggregation setup: \"consistency\" must be a boolean");
    json_t *a = json_object_get(j, "clients");
    if (!json_is_array(a) || (long)json_array_size(a) != n)
        return fed_error(FED_EFORMAT, "secure aggregation setup: the consistency check needs \"clients\", the client "
                                      "id of each of the %ld protocol ids", n);
    int *ids = malloc((size_t)n * sizeof *ids);
    if (!ids) return fed_error(FED_ENOMEM, "out of memory for %ld client ids", n);
    for (long u = 0; u < n; u++) {
        json_t *x = json_array_get(a, (size_t)u);
        if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) > (1 << 30)) {
            free(ids);
            return fed_error(FED_EFORMAT, "secure aggregation setup: \"clients\"[%ld] is not a client id", u);
        }
        ids[u] = (int)json_integer_value(x);
    }
    /* one client, one protocol id: the same key twice would count one signer twice.
     * Sorting (id, protocol id) pairs finds duplicates in O(n log n) (n up to 2^24
     * from the coordinator); the error names the same pair as a scan in order
     * would: the first protocol id whose client came before, and that earlier one. */
    id_pos *s = malloc((size_t)n * sizeof *s);
    if (!s) {
        free(ids);
        return fed_error(FED_ENOMEM, "out of memory for %ld client ids", n);
    }
    for (long u = 0; u < n; u++) s[u] = (id_pos){ids[u], u};
    qsort(s, (size_t)n, sizeof *s, id_pos_cmp);
    long dv = -1, du = -1;
    for (long i = 1; i < n; i++)
        if (s[i].id == s[i - 1].id && (i < 2 || s[i - 2].id != s[i].id) && (du < 0 || s[i].pos < du)) {
            dv = s[i - 1].pos; /* the group's first two: sorted by protocol id within an id */
            du = s[i].pos;
        }
    if (du >= 0) {
        int dup = ids[du];
        free(s);
        free(ids);
        return fed_error(FED_EFORMAT, "secure aggregation setup: client %d has two protocol ids (%ld and %ld)", dup, dv,
                         du);
    }
    free(s);
    *clients = ids;
    return 0;
}

/* The round's parameters from stage 0's JSON. */
static int parse_setup(const uint8_t *p, size_t len, int64_t run, int round, fed_secagg_cfg *pc, fed_secagg_enc *enc,
                       ddp_setup *dd, uint32_t *id, double *stage_timeout, int **clients) {
    *clients = NULL;
    json_error_t je;
    json_t *j = json_loadb((const char *)p, len, 0, &je);
    if (!j || !json_is_object(j)) {
        json_decref(j);
        return fed_error(FED_EFORMAT, "secure aggregation setup is not a JSON object");
    }
    long n = 0, deg = 0, t = 0, rb = 0, bits = 0, uid = 0, r = 0, rid = 0;
    double clip = 0, wmax = 0, st = 60;
    const char *seed = json_string_value(json_object_get(j, "graph_seed"));
    int rc;
    if ((rc = jint(j, "n", 2, 1 << 24, &n)) || (rc = jint(j, "degree", -1, 1 << 24, &deg)) ||
        (rc = jint(j, "threshold", 1, 1 << 24, &t)) || (rc = jint(j, "ring_bits", 1, 64, &rb)) ||
        (rc = jint(j, "bits", 1, 52, &bits)) || (rc = jint(j, "id", 0, n - 1, &uid)) ||
        (rc = jint(j, "round", 0, 1L << 30, &r)) || (rc = jint(j, "run_id", 0, 1L << 62, &rid)) ||
        (rc = jnum(j, "clip", &clip)) || (rc = jnum(j, "weight_max", &wmax)) || (rc = parse_ddp(j, n, dd)) ||
        (rc = parse_consistency(j, n, clients))) {
        json_decref(j);
        return rc;
    }
    jnum(j, "stage_timeout_s", &st);
    memset(pc, 0, sizeof *pc);
    if (!seed || strlen(seed) != 64 || fed_hex_decode(pc->graph_seed, 32, seed)) {
        json_decref(j);
        free(*clients);
        *clients = NULL;
        return fed_error(FED_EFORMAT, "secure aggregation setup: \"graph_seed\" must be 64 hex digits");
    }
    json_decref(j);
    if (r != round || rid != run) {
        free(*clients);
        *clients = NULL;
        return fed_error(FED_EFORMAT, "secure aggregation setup is for run %ld round %ld, not run %lld round %d", rid, r,
                         (long long)run, round);
    }
    pc->n = (int)n;
    pc->degree = (int)deg;
    pc->threshold = (int)t;
    pc->ring_bits = (int)rb;
    pc->modulus = 0;
    pc->round = (uint64_t)round;
    pc->threads = 1;
    /* the signatures' context from the run id this client already checked and the
     * graph seed every participant was sent: the coordinator cannot hand two
     * clients different contexts without their signatures failing to verify */
    if ((rc = fed_secagg_context(pc->context, (uint64_t)run, pc->graph_seed)) || (rc = fed_secagg_cfg_check(pc))) {
        free(*clients);
        *clients = NULL;
        return rc;
    }
    fed_secagg_enc_default(enc);
    enc->clip = clip;
    enc->bits = (int)bits;
    enc->ring_bits = (int)rb;
    enc->weight_max = wmax;
    enc->round = (uint64_t)round;
    /* stochastic rounding from secure randomness: nothing about it is the server's to know */
    fed_crypto_random(&enc->seed, sizeof enc->seed);
    *id = (uint32_t)uid;
    *stage_timeout = st;
    return 0;
}

/* Builds this client's noise share mechanism from the announced parameters, after
 * checking them against what this client holds and accepts. */
static int ddp_mechanism(const ddp_setup *dd, const fed_secagg_cfg *pc, const fed_secagg_enc *enc, size_t n,
                         int round, double min_noise, double record_unit, long num_examples, fed_secagg_ddp *dp) {
    char why[512];
    if ((size_t)dd->dim != n)
        return fed_error(FED_ESHAPE, "secure aggregation setup: distributed DP for updates of %ld coordinates, this "
                                     "client's model has %zu", dd->dim, n);
    /* record level: this client's input is a sum of records, each moving it by at most
     * record_unit; the announced mechanism must be sized for that, or the noise would
     * protect a smaller record than this client's */
    if ((dd->records > 0) != (record_unit > 0))
        return fed_error(FED_EFORMAT, "secure aggregation setup: the coordinator announces %s distributed DP, and "
                                      "this client's task was %s; not taking part",
                         dd->records ? "record-level" : "user-level",
                         record_unit > 0 ? "a record-level DP-SGD step" : "not a record-level DP-SGD step");
    if (dd->records > 0 && !(dd->clip >= record_unit * (1 - 1e-12)))
        return fed_error(FED_ERANGE, "secure aggregation setup: the coordinator sizes the noise for records of "
                                     "norm %g, and one of this client's records moves its input by up to %g (its "
                                     "task's lr x clip / batch size); not taking part", dd->clip, record_unit);
    if (dd->records > 0 && num_examples > dd->records)
        return fed_error(FED_ERANGE, "secure aggregation setup: the ring holds %ld records per client, this client "
                                     "has %ld; not taking part", dd->records, num_examples);
    if (dd->z < min_noise)
        return fed_error(FED_ERANGE, "secure aggregation: the coordinator announces distributed DP with noise "
                                     "multiplier %g, below this client's --min-noise-multiplier %g; not taking part",
                         dd->z, min_noise);
    /* the rounding and the noise must be unpredictable to the coordinator: a secure
     * noise source, and a fresh seed for the rounding stream */
    uint64_t seed;
    fed_crypto_random(&seed, sizeof seed);
    int rc = dd->records > 0 ? fed_secagg_ddp_init_records(dp, dd->clip, enc->bits, dd->z, n, (int)dd->min_survivors,
                                                           dd->records, FED_DP_NOISE_SECURE, seed, (uint64_t)round)
                             : fed_secagg_ddp_init(dp, dd->clip, enc->bits, dd->z, n, (int)dd->min_survivors,
                                                   FED_DP_NOISE_SECURE, seed, (uint64_t)round);
    fed_crypto_wipe(&seed, sizeof seed);
    if (rc) {
        snprintf(why, sizeof why, "%s", fed_last_error());
        return fed_error(rc, "secure aggregation setup: the coordinator's distributed DP parameters do not work "
                             "here: %s", why);
    }
    /* a ring too small for the noised sum would wrap it: the round's mean is garbage */
    int need;
    if ((rc = fed_secagg_ddp_ring_bits(dp, pc->n, &need))) return rc;
    if (pc->ring_bits < need)
        return fed_error(FED_EFORMAT, "secure aggregation setup: ring_bits %d cannot hold %d clients' noised sum "
                                      "(%d needed)", pc->ring_bits, pc->n, need);
    return 0;
}

/* The consistency check's key table by protocol id, from this client's pinned keys
 * only: a participant the file does not know, or a mapping that does not put this
 * client at its own protocol id, makes it refuse the round (revealing nothing). */
static int pinned_table(const fed_secagg_daemon_keys *keys, int client, uint32_t id, const int *clients, int n,
                        uint8_t (**out)[32]) {
    *out = NULL;
    if (!keys || !keys->peers || !keys->sign_sk)
        return fed_error(FED_ESTATE, "secure aggregation: the coordinator runs the consistency check, and this client "
                                     "has no --peer-keys: the check means nothing if the coordinator supplies the "
                                     "keys; not taking part (start it with --peer-keys FILE from the federation's "
                                     "operator)");
    if (clients[id] != client)
        return fed_error(FED_EFORMAT, "secure aggregation setup: protocol id %u is client %d, not this client (%d); "
                                      "not taking part", (unsigned)id, clients[id], client);
    uint8_t (*t)[32] = malloc((size_t)n * sizeof *t);
    if (!t) return fed_error(FED_ENOMEM, "out of memory for %d keys", n);
    for (int u = 0; u < n; u++)
        if (fed_peer_keys_get(keys->peers, clients[u], t[u])) {
            free(t);
            return fed_error(FED_ENOTFOUND, "secure aggregation: protocol id %d is client %d, which has no key in "
                                            "--peer-keys %s; not taking part in a consistency check with a client "
                                            "whose key this client does not know", u, clients[u],
                             fed_peer_keys_path(keys->peers));
        }
    *out = t;
    return 0;
}

int fed_secagg_daemon_round(fed_secagg_call_fn call, void *ctx, int client, int64_t run, int round, const float *delta,
                            size_t n, long num_examples, int long_poll_s, double wait_s, double min_noise,
                            double record_unit, const fed_secagg_daemon_keys *keys, int quiet) {
    const uint8_t *resp = NULL;
    size_t rl = 0;
    fed_secagg_client *sc = NULL;
    uint64_t *x = NULL;
    uint8_t *msg = NULL, *in = NULL;
    size_t ml = 0;
    int *clients = NULL;          /* consistency check: client id by protocol id */
    uint8_t (*pks)[32] = NULL;    /* and the pinned keys by protocol id */
    int rc = get_stage(call, ctx, run, round, 0, long_poll_s, wait_s, &resp, &rl);
    if (rc) return rc;
    fed_secagg_cfg pc;
    fed_secagg_enc enc;
    fed_secagg_ddp dp;
    ddp_setup dd;
    uint32_t id = 0;
    double stage_timeout = 60;
    memset(&dp, 0, sizeof dp);
    if ((rc = parse_setup(resp, rl, run, round, &pc, &enc, &dd, &id, &stage_timeout, &clients))) return rc;
    if (clients) {
        /* two U3 views cannot both collect t signatures from honest signers only when
         * t is more than half of the holders; a lower threshold (the coordinator's to
         * choose) would leave the check without effect (docs/protocol.md) */
        int holders = (pc.degree <= 0 || pc.degree >= pc.n - 1 ? pc.n - 1 : pc.degree) + 1;
        if (2 * pc.threshold <= holders) {
            rc = fed_error(FED_EFORMAT, "secure aggregation setup: threshold %d is not more than half of the %d share "
                                        "holders (neighbours and this client); the consistency check cannot protect "
                                        "with it; not taking part", pc.threshold, holders);
            goto out;
        }
        if ((rc = pinned_table(keys, client, id, clients, pc.n, &pks))) goto out;
        pc.consistency = 1;
        pc.sign_pks = (const uint8_t (*)[32])pks;
    } else if (keys && keys->require_consistency) {
        rc = fed_error(FED_ESTATE, "secure aggregation: the coordinator runs it without the consistency check, and "
                                   "this client's --require-consistency insists on it; not taking part");
        goto out;
    }
    if (dd.on) {
        if ((rc = ddp_mechanism(&dd, &pc, &enc, n, round, min_noise, record_unit, num_examples, &dp))) goto out;
    } else if (record_unit > 0) {
        /* a record-level step carries no noise of its own: the protocol must add it */
        rc = fed_error(FED_EFORMAT, "secure aggregation: the coordinator runs it without distributed DP, and this "
                                    "client's task was a record-level DP-SGD step without noise; not taking part");
        goto out;
    } else if (min_noise > 0) {
        /* this client's floor holds for every round: plain secure aggregation adds no noise */
        rc = fed_error(FED_ERANGE, "secure aggregation: the coordinator runs it without distributed DP, and this "
                                   "client's --min-noise-multiplier %g asks for noise; not taking part", min_noise);
        goto out;
    } else if ((double)num_examples > enc.weight_max) {
        /* the weight travels in the masked vector only in the plain protocol */
        rc = fed_error(FED_EINVAL, "secure aggregation: %ld examples exceed the round's weight bound %.0f", num_examples,
                       enc.weight_max);
        goto out;
    }
    size_t L = dd.on ? n : n + 1;  /* distributed DP: equal weights, no weight coordinate */
    double stage_wait = stage_timeout + 2.0 * long_poll_s + 30;
    int nst = fed_secagg_stage_count(&pc);
    if ((rc = fed_secagg_client_new(&sc, &pc, id))) goto out;
    if (pc.consistency && (rc = fed_secagg_client_set_signing_key(sc, keys->sign_sk))) {
        rc = fed_error(rc, "secure aggregation: this client's key (--key) is not the one --peer-keys %s pins for "
                           "client %d; not taking part", fed_peer_keys_path(keys->peers), client);
        goto out;
    }
    if ((rc = fed_secagg_client_advertise(sc, &msg, &ml))) goto out;
    for (int s = 0;; s++) {
        rc = post_stage(call, ctx, run, round, s, msg, ml);
        free(msg);
        msg = NULL;
        if (rc || s == nst - 1) break;
        /* the server's message opening stage s + 1 */
        if ((rc = get_stage(call, ctx, run, round, s + 1, long_poll_s, stage_wait, &resp, &rl))) break;
        free(in);
        if (!(in = malloc(rl ? rl : 1))) {
            rc = fed_error(FED_ENOMEM, "out of memory");
            break;
        }
        memcpy(in, resp, rl);
        if (s + 1 == 1) {
            rc = fed_secagg_client_share_keys(sc, in, rl, &msg, &ml);
            if (rc && pc.consistency) {
                /* the state machine names protocol ids; "clients" in the setup maps them */
                char why[512];
                snprintf(why, sizeof why, "%s", fed_last_error());
                rc = fed_error(rc, "the key list does not check out against --peer-keys %s; not sharing anything "
                                   "(protocol ids, mapped to client ids by the setup's \"clients\"): %s",
                               fed_peer_keys_path(keys->peers), why);
            }
        } else if (s + 1 == 2) {
            if (!(x = malloc(L * sizeof *x))) {
                rc = fed_error(FED_ENOMEM, "out of memory for %zu coordinates", n);
                break;
            }
            /* the client's id names its rounding and noise streams; both are seeded
             * from this client's own randomness */
            if (dd.on) rc = fed_secagg_ddp_encode(&dp, (uint64_t)client, delta, n, pc.ring_bits, x);
            else rc = fed_secagg_encode(&enc, (int)id, delta, n, (double)num_examples, x);
            if (!rc) rc = fed_secagg_client_masked_input(sc, in, rl, x, L, &msg, &ml);
            fed_crypto_wipe(x, L * sizeof *x);
        } else if (fed_secagg_stage_is_consistency(&pc, s + 1))
            rc = fed_secagg_client_consistency(sc, in, rl, &msg, &ml);
        else
            rc = fed_secagg_client_unmask(sc, in, rl, &msg, &ml);
        if (rc) break;
    }
    if (!rc && !quiet) {
        if (dd.on)
            fprintf(stderr, "federate client %d: round %d: secure aggregation done (protocol id %u of %d), with a "
                            "%sdistributed DP noise share (noise multiplier %g over %ld shares)%s\n",
                    client, round, id, pc.n, dd.records ? "record-level " : "", dd.z, dd.min_survivors,
                    pc.consistency ? ", consistency check passed" : "");
        else
            fprintf(stderr, "federate client %d: round %d: secure aggregation done (protocol id %u of %d)%s\n", client,
                    round, id, pc.n, pc.consistency ? ", consistency check passed" : "");
    }
out:
    /* the seeds of this client's stochastic rounding: the coordinator must not replay it */
    fed_crypto_wipe(&dp, sizeof dp);
    fed_crypto_wipe(&enc, sizeof enc);
    free(msg);
    free(in);
    free(x);
    fed_secagg_client_free(sc); /* before the key table it reads */
    free(pks);
    free(clients);
    return rc;
}
