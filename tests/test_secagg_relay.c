/* Secure aggregation over the network without the network: the coordinator's
 * relay (src/net/secagg_relay.c) driven by client daemons' protocol code
 * (src/net/secagg_daemon.c) on threads, their requests handed straight to
 * fed_secagg_relay_request. The weighted mean of the survivors comes out; a
 * client that vanishes mid-protocol and one that sends a malformed message
 * are dropped; below the threshold the round fails; bad requests get 4xx.
 * privacy.mode distributed: the clients' noised shares give the noised mean, a
 * client refuses a noise multiplier below its floor, too few survivors after
 * the masked inputs fail the round before unmasking, and malformed setups are
 * refused by the client. privacy.mode distributed-dp-sgd: record sums rounded and
 * noised by the clients give the noised mean; a client whose records are larger than
 * the announced bound, or whose task does not match the announced mode, refuses; the
 * relay refuses clients that trained at different rates.
 * secure_aggregation.consistency_check: five stages, the
 * server's keys from the coordinator's key source and each client's from its own
 * pinned file; a client killed at the check stage leaves its input in the sum, a
 * client whose pinned key for a peer is wrong refuses before sharing anything,
 * too few signatures fail the round before unmasking, and a client without
 * pinned keys, or with a mapping that does not fit them, refuses the setup. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include <unistd.h>
#include "federate/crypto.h"
#include "federate/error.h"
#include "federate/fl.h"
#include "federate/net.h"
#include "federate/rng.h"
#include "federate/secagg.h"
#include "net/secagg_relay.h"

#define D 300

typedef struct cl {
    fed_secagg_relay *relay;
    int client, round;
    int64_t run;
    int die_stage, cut_stage;   /* -1: never */
    float delta[D];
    long weight;
    double min_noise;           /* --min-noise-multiplier */
    double record_unit;         /* distributed-dp-sgd: one record's bound lr C / B (0: not a record step) */
    const fed_secagg_daemon_keys *keys; /* --key and --peer-keys (NULL: none) */
    uint8_t *resp;
    size_t resp_len;
    int rc;
    char err[1024];             /* fed_last_error() is per thread */
} cl;

static int call(void *ctx, const char *method, const char *path, int64_t run, int round, const void *body, size_t len,
                double timeout_s, const uint8_t **resp, size_t *resp_len) {
    (void)timeout_s;
    cl *c = ctx;
    int post = strcmp(method, "POST") == 0;
    int stage = path[strlen(path) - 1] - '0';
    if (post && stage == c->die_stage) return fed_error(FED_EIO, "connection lost"); /* the client vanished */
    if (post && stage == c->cut_stage && len) len--;
    free(c->resp);
    c->resp = NULL;
    const char *ctype;
    char err[600];
    int st = fed_secagg_relay_request(c->relay, post, c->client, run, round, path, body, len, &c->resp, &c->resp_len,
                                      &ctype, err, sizeof err);
    *resp = c->resp;
    *resp_len = c->resp ? c->resp_len : 0;
    return st;
}

static void *client_main(void *p) {
    cl *c = p;
    c->rc = fed_secagg_daemon_round(call, c, c->client, c->run, c->round, c->delta, D, c->weight, 1, 20, c->min_noise,
                                    c->record_unit, c->keys, 1);
    if (c->rc) snprintf(c->err, sizeof c->err, "%s", fed_last_error());
    return NULL;
}

/* A coordinator that only ever answers stage 0 with a given setup. */
typedef struct fake {
    const char *setup;
    int posts;
} fake;

static int fake_call(void *ctx, const char *method, const char *path, int64_t run, int round, const void *body,
                     size_t len, double timeout_s, const uint8_t **resp, size_t *resp_len) {
    (void)path; (void)run; (void)round; (void)body; (void)len; (void)timeout_s;
    fake *f = ctx;
    if (!strcmp(method, "POST")) {
        f->posts++;
        *resp = NULL;
        *resp_len = 0;
        return 409;
    }
    *resp = (const uint8_t *)f->setup;
    *resp_len = strlen(f->setup);
    return 200;
}

typedef struct drv {
    fed_secagg_relay *relay;
    int round, k;
    fed_result *res;
    float *mean;
    fed_secure_agg_report rep;
    int rc;
    char err[1024];             /* fed_last_error() is per thread */
} drv;

/* The enrolled keys, by client id (the coordinator's allow-list). */
static uint8_t enrolled_pk[8][32], enrolled_sk[8][64];
static int enrolled_key(void *ctx, int client, uint8_t pk[32]) {
    (void)ctx;
    if (client < 0 || client >= 8) return fed_error(FED_ENOTFOUND, "client %d is not enrolled", client);
    memcpy(pk, enrolled_pk[client], 32);
    return 0;
}

/* A peer-keys file with clients 0..n-1 (client `wrong`'s key replaced by another, -1: none). */
static fed_peer_keys *pinned(const char *dir, const char *name, int n, int wrong) {
    char path[512], hex[65];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) return NULL;
    fprintf(f, "# peer keys\n\n");
    for (int i = n - 1; i >= 0; i--) { /* any order */
        uint8_t pk[32], sk[64];
        memcpy(pk, enrolled_pk[i], 32);
        if (i == wrong) fed_sign_keypair(pk, sk);
        fed_hex_encode(hex, pk, 32);
        fprintf(f, "%d %s\n", i, hex);
    }
    fclose(f);
    fed_peer_keys *k = NULL;
    return fed_peer_keys_read(&k, path) ? NULL : k;
}

static int peer_file_rc(const char *dir, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/bad.txt", dir);
    FILE *f = fopen(path, "w");
    if (!f) return -100;
    fputs(text, f);
    fclose(f);
    fed_peer_keys *k = NULL;
    int rc = fed_peer_keys_read(&k, path);
    fed_peer_keys_free(k);
    return rc;
}

static void *driver_main(void *p) {
    drv *d = p;
    d->rc = fed_secagg_relay_round(d->relay, 7, d->round, 100, d->res, d->k, d->mean, D, &d->rep);
    if (d->rc) snprintf(d->err, sizeof d->err, "%s", fed_last_error());
    return NULL;
}

int main(void) {
    fed_config cfg;
    fed_config_default(&cfg);
    cfg.num_clients = 6;
    cfg.sa_enabled = 1;
    cfg.sa_clip = 1.0;
    cfg.sa_bits = 16;
    cfg.threads = 1;
    volatile int stop = 0;
    fed_secagg_relay *relay = NULL;
    cfg.sa_stage_dropout = 0.1;
    CHECK(fed_secagg_relay_new(&relay, &cfg, 1.0, 1, &stop) == FED_EINVAL); /* a simulation setting */
    cfg.sa_stage_dropout = 0;
    CHECK_OK(fed_secagg_relay_new(&relay, &cfg, 1.0, 1, &stop));

    /* round 1: clients 0..5 trained; 4 failed (no part in the protocol), 3 sends a
     * truncated advertisement, 5 vanishes before its masked input */
    cl c[6];
    fed_result res[6];
    float mean[D];
    fed_rng r;
    fed_rng_init(&r, 1, 1, 0, FED_RNG_USER);
    memset(c, 0, sizeof c);
    memset(res, 0, sizeof res);
    for (int i = 0; i < 6; i++) {
        c[i] = (cl){.relay = relay, .client = i, .round = 1, .run = 7, .die_stage = -1, .cut_stage = -1,
                    .weight = 10 + 15 * i};
        for (int j = 0; j < D; j++) c[i].delta[j] = (float)(fed_rng_uniform(&r) - 0.5);
        res[i].client = i;
        res[i].status = i == 4 ? FED_RESULT_FAILED : FED_RESULT_OK;
        res[i].num_examples = c[i].weight;
        res[i].delta = c[i].delta; /* never read by the relay: the updates come masked */
    }
    c[3].cut_stage = 0;
    c[5].die_stage = 2;
    drv dv = {relay, 1, 6, res, mean, {0}, 0, {0}};
    pthread_t th[6], dt;
    pthread_create(&dt, NULL, driver_main, &dv);
    for (int i = 0; i < 6; i++)
        if (i != 4) pthread_create(&th[i], NULL, client_main, &c[i]);
    for (int i = 0; i < 6; i++)
        if (i != 4) pthread_join(th[i], NULL);
    pthread_join(dt, NULL);
    CHECK_OK(dv.rc);
    for (int i = 0; i < 3; i++) CHECK_OK(c[i].rc);
    CHECK(c[3].rc != 0 && c[5].rc != 0);
    CHECK(dv.rep.participants == 5 && dv.rep.survivors == 3);
    CHECK(res[0].status == FED_RESULT_OK && res[1].status == FED_RESULT_OK && res[2].status == FED_RESULT_OK);
    CHECK(res[3].status == FED_RESULT_DROPPED && res[5].status == FED_RESULT_DROPPED);
    CHECK(res[4].status == FED_RESULT_FAILED);
    CHECK(res[0].bytes_up > D); /* the protocol's traffic */
    double wsum = (double)(c[0].weight + c[1].weight + c[2].weight), maxerr = 0;
    for (int j = 0; j < D; j++) {
        double want = 0;
        for (int i = 0; i < 3; i++) want += (double)c[i].weight * c[i].delta[j] / wsum;
        double e = fabs(want - (double)mean[j]);
        if (e > maxerr) maxerr = e;
    }
    CHECK(maxerr < 1e-3); /* 16-bit quantization of the weighted updates */

    /* requests that do not fit */
    uint8_t *out = NULL;
    size_t ol;
    const char *ct;
    char err[600];
    CHECK(fed_secagg_relay_request(relay, 0, 0, 7, 1, "/v1/secagg/1/x", NULL, 0, &out, &ol, &ct, err, sizeof err) == 404);
    /* no fifth stage without the consistency check */
    CHECK(fed_secagg_relay_request(relay, 0, 0, 7, 1, "/v1/secagg/1/4", NULL, 0, &out, &ol, &ct, err, sizeof err) == 404);
    CHECK(strstr(err, "STAGE 0..3"));
    CHECK(fed_secagg_relay_request(relay, 0, 0, 7, 2, "/v1/secagg/1/1", NULL, 0, &out, &ol, &ct, err, sizeof err) == 400);
    CHECK(fed_secagg_relay_request(relay, 1, 0, 7, 1, "/v1/secagg/1/3", "x", 1, &out, &ol, &ct, err, sizeof err) == 409);
    CHECK(fed_secagg_relay_request(relay, 1, 0, 7, 0, "/v1/secagg/0/0", "x", 1, &out, &ol, &ct, err, sizeof err) == 409);
    CHECK(out == NULL);
    char met[4096];
    CHECK(fed_secagg_relay_metrics(relay, met, sizeof met) > 0);
    CHECK(strstr(met, "federate_secagg_dropped_total 1\n") && strstr(met, "federate_secagg_refused_total 1\n"));

    /* round 2: 3 clients (t = 2), two vanish: fewer than t, the round fails */
    for (int i = 0; i < 3; i++) {
        c[i].round = 2;
        c[i].die_stage = i ? 1 : -1;
        c[i].cut_stage = -1;
        res[i].status = FED_RESULT_OK;
    }
    drv d2 = {relay, 2, 3, res, mean, {0}, 0, {0}};
    pthread_create(&dt, NULL, driver_main, &d2);
    for (int i = 0; i < 3; i++) pthread_create(&th[i], NULL, client_main, &c[i]);
    for (int i = 0; i < 3; i++) pthread_join(th[i], NULL);
    pthread_join(dt, NULL);
    CHECK(d2.rc == FED_ESTATE);
    CHECK(c[0].rc != 0);
    CHECK(res[1].status == FED_RESULT_DROPPED && res[2].status == FED_RESULT_DROPPED);

    /* one participant: refused before the protocol starts */
    res[0].status = FED_RESULT_OK;
    res[1].status = res[2].status = FED_RESULT_FAILED;
    drv d3 = {relay, 3, 3, res, mean, {0}, 0, {0}};
    driver_main(&d3);
    CHECK(d3.rc == FED_ESTATE);
    CHECK(fed_secagg_relay_request(relay, 0, 0, 7, 3, "/v1/secagg/3/0", NULL, 0, &out, &ol, &ct, err, sizeof err) == 409);
    for (int i = 0; i < 6; i++) free(c[i].resp);
    fed_secagg_relay_free(relay);
    fed_secagg_relay_free(NULL);

    /* privacy.mode distributed: 6 per round, dropout 0.3, so the noise is split
     * among 5 shares (fed_ddp_min_survivors); clip 10 leaves the updates unclipped */
    fed_config dc = cfg;
    snprintf(dc.dp_mode, sizeof dc.dp_mode, "distributed");
    dc.clients_per_round = 6;
    dc.sa_dropout = 0.3;
    dc.dp_clip = 10;
    dc.dp_noise_multiplier = 0.01;
    CHECK_OK(fed_secagg_relay_new(&relay, &dc, 1.0, 1, &stop));
    /* round 4: client 5 asks for more noise than announced and stays out; the other 5
     * are enough */
    for (int i = 0; i < 6; i++) {
        c[i] = (cl){.relay = relay, .client = i, .round = 4, .run = 7, .die_stage = -1, .cut_stage = -1,
                    .weight = 10 + 15 * i, .delta = {0}};
        for (int j = 0; j < D; j++) c[i].delta[j] = (float)(fed_rng_uniform(&r) - 0.5);
        res[i] = (fed_result){.client = i, .status = FED_RESULT_OK, .num_examples = c[i].weight, .delta = c[i].delta};
    }
    c[5].min_noise = 0.5;
    c[0].min_noise = 0.01; /* met exactly */
    drv d4 = {relay, 4, 6, res, mean, {0}, 0, {0}};
    pthread_create(&dt, NULL, driver_main, &d4);
    for (int i = 0; i < 6; i++) pthread_create(&th[i], NULL, client_main, &c[i]);
    for (int i = 0; i < 6; i++) pthread_join(th[i], NULL);
    pthread_join(dt, NULL);
    CHECK_OK(d4.rc);
    for (int i = 0; i < 5; i++) CHECK_OK(c[i].rc);
    CHECK(c[5].rc == FED_ERANGE);
    CHECK(d4.rep.participants == 6 && d4.rep.survivors == 5);
    for (int i = 0; i < 5; i++) CHECK(res[i].status == FED_RESULT_OK);
    CHECK(res[5].status == FED_RESULT_DROPPED);
    /* equal weights; the noise on the mean has standard deviation z C sqrt(5 / 5) / 5 */
    double se = 0;
    for (int j = 0; j < D; j++) {
        double want = 0;
        for (int i = 0; i < 5; i++) want += c[i].delta[j] / 5.0;
        se += (want - (double)mean[j]) * (want - (double)mean[j]);
    }
    double rms = sqrt(se / D), sd = 0.01 * 10 / 5;
    CHECK(rms > 0.7 * sd && rms < 1.3 * sd);

    /* round 5: two of six vanish before their masked inputs: 4 < 5 shares, so the
     * relay does not open the unmasking stage and nobody counts as released */
    for (int i = 0; i < 6; i++) {
        c[i].round = 5;
        c[i].min_noise = 0;
        c[i].die_stage = i >= 4 ? 2 : -1;
        res[i].status = FED_RESULT_OK;
    }
    drv d5 = {relay, 5, 6, res, mean, {0}, 0, {0}};
    pthread_create(&dt, NULL, driver_main, &d5);
    for (int i = 0; i < 6; i++) pthread_create(&th[i], NULL, client_main, &c[i]);
    for (int i = 0; i < 6; i++) pthread_join(th[i], NULL);
    pthread_join(dt, NULL);
    CHECK(d5.rc == FED_ESTATE);
    CHECK(strstr(d5.err, "not unmasked"));
    for (int i = 0; i < 6; i++) CHECK(c[i].rc != 0 && res[i].status == FED_RESULT_DROPPED);
    CHECK(fed_secagg_relay_request(relay, 0, 0, 7, 5, "/v1/secagg/5/3", NULL, 0, &out, &ol, &ct, err, sizeof err) == 409);
    CHECK(strstr(err, "failed"));

    /* round 6: four finished training, fewer than the 5 shares: not even started */
    for (int i = 0; i < 6; i++) res[i].status = i < 4 ? FED_RESULT_OK : FED_RESULT_FAILED;
    drv d6 = {relay, 6, 6, res, mean, {0}, 0, {0}};
    driver_main(&d6);
    CHECK(d6.rc == FED_ESTATE && strstr(fed_last_error(), "does not start"));
    for (int i = 0; i < 4; i++) CHECK(res[i].status == FED_RESULT_DROPPED);
    for (int i = 0; i < 6; i++) free(c[i].resp);
    fed_secagg_relay_free(relay);

    /* privacy.mode distributed-dp-sgd: batch 4, clip 1, lr 0.5, so one record moves an
     * input by 0.125; each input is 3 records of that norm, far beyond one clip as a
     * whole. The noise (z 0.01) is split among 5 shares again */
    fed_config rc7 = dc;
    snprintf(rc7.dp_mode, sizeof rc7.dp_mode, "distributed-dp-sgd");
    rc7.batch_size = 4;
    rc7.dp_clip = 1;
    CHECK_OK(fed_secagg_relay_new(&relay, &rc7, 1.0, 1, &stop));
    for (int i = 0; i < 6; i++) {
        c[i] = (cl){.relay = relay, .client = i, .round = 7, .run = 7, .die_stage = -1, .cut_stage = -1,
                    .weight = 30, .record_unit = 0.125, .delta = {0}};
        for (int rec = 0; rec < 3; rec++) {
            double g[D], n2 = 0;
            for (int j = 0; j < D; j++) g[j] = fed_rng_normal(&r), n2 += g[j] * g[j];
            for (int j = 0; j < D; j++) c[i].delta[j] += (float)(0.125 * g[j] / sqrt(n2));
        }
        res[i] = (fed_result){.client = i, .status = FED_RESULT_OK, .num_examples = 30, .lr = 0.5f,
                              .delta = c[i].delta};
    }
    c[5].record_unit = 0.2;   /* its records are larger than the announced bound: it stays out */
    drv d7 = {relay, 7, 6, res, mean, {0}, 0, {0}};
    pthread_create(&dt, NULL, driver_main, &d7);
    for (int i = 0; i < 6; i++) pthread_create(&th[i], NULL, client_main, &c[i]);
    for (int i = 0; i < 6; i++) pthread_join(th[i], NULL);
    pthread_join(dt, NULL);
    CHECK_OK(d7.rc);
    for (int i = 0; i < 5; i++) CHECK_OK(c[i].rc);
    CHECK(c[5].rc == FED_ERANGE && strstr(c[5].err, "records of norm 0.125"));
    CHECK(d7.rep.survivors == 5);
    se = 0;
    double whole = 0;
    for (int j = 0; j < D; j++) {
        double want = 0;
        for (int i = 0; i < 5; i++) want += c[i].delta[j] / 5.0;
        se += (want - (double)mean[j]) * (want - (double)mean[j]);
        whole += (double)c[0].delta[j] * c[0].delta[j];
    }
    rms = sqrt(se / D);
    sd = 0.01 * 0.125 / 5;   /* z times one record's bound, over 5 */
    printf("record level: input norm %.3f (3 records of 0.125), noise rms %.3g (sd %.3g)\n", sqrt(whole), rms, sd);
    CHECK(sqrt(whole) > 0.2);   /* not clipped to one record */
    CHECK(rms > 0.7 * sd && rms < 1.3 * sd);
    /* round 8: one client trained at another rate; the relay refuses the round */
    for (int i = 0; i < 6; i++) res[i].status = FED_RESULT_OK;
    res[2].lr = 0.25f;
    drv d8 = {relay, 8, 6, res, mean, {0}, 0, {0}};
    driver_main(&d8);
    CHECK(d8.rc == FED_EINVAL && strstr(d8.err, "learning rates"));
    for (int i = 0; i < 6; i++) free(c[i].resp);
    fed_secagg_relay_free(relay);

    /* a coordinator announcing something malformed or unacceptable: the client says what */
    const char *base = "{\"run_id\":7,\"round\":1,\"n\":3,\"degree\":-1,\"threshold\":2,\"ring_bits\":40,\"graph_seed\":"
                       "\"0000000000000000000000000000000000000000000000000000000000000000\",\"clip\":1,\"bits\":16,"
                       "\"weight_max\":100,\"stage_timeout_s\":1,\"id\":0";
    struct { const char *extra; double floor; int want; const char *says; } bad[] = {
        {",\"mode\":\"central\"}", 0, FED_EFORMAT, "\"mode\""},
        {",\"mode\":\"distributed\",\"ddp_clip\":1,\"noise_multiplier\":-1,\"min_survivors\":2,\"dim\":300}", 0,
         FED_EFORMAT, "noise_multiplier"},
        {",\"mode\":\"distributed\",\"ddp_clip\":1,\"noise_multiplier\":1,\"min_survivors\":4,\"dim\":300}", 0,
         FED_EFORMAT, "min_survivors"},
        {",\"mode\":\"distributed\",\"ddp_clip\":0,\"noise_multiplier\":1,\"min_survivors\":2,\"dim\":300}", 0,
         FED_EFORMAT, "ddp_clip"},
        {",\"mode\":\"distributed\",\"ddp_clip\":1,\"noise_multiplier\":1,\"min_survivors\":2,\"dim\":299}", 0,
         FED_ESHAPE, "299 coordinates"},
        {",\"mode\":\"distributed\",\"ddp_clip\":1,\"noise_multiplier\":1,\"min_survivors\":2}", 0, FED_EFORMAT,
         "\"dim\""},
        {",\"mode\":\"distributed\",\"ddp_clip\":1,\"noise_multiplier\":1,\"min_survivors\":2,\"dim\":300}", 2,
         FED_ERANGE, "--min-noise-multiplier 2"},
        {",\"mode\":\"distributed\",\"ddp_clip\":1,\"noise_multiplier\":1e-6,\"min_survivors\":2,\"dim\":300}", 0,
         FED_ERANGE, "1/4"},
        {"}", 1, FED_ERANGE, "without distributed DP"},
    };
    for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
        char js[1024];
        snprintf(js, sizeof js, "%s%s", base, bad[b].extra);
        fake f = {js, 0};
        int rc = fed_secagg_daemon_round(fake_call, &f, 0, 7, 1, c[0].delta, D, 10, 1, 5, bad[b].floor, 0, NULL, 1);
        if (rc != bad[b].want || !strstr(fed_last_error(), bad[b].says))
            fprintf(stderr, "setup %zu: %d %s\n", b, rc, fed_last_error());
        CHECK(rc == bad[b].want && strstr(fed_last_error(), bad[b].says));
        CHECK(f.posts == 0); /* refused before its first message */
    }

    /* record level: the announced mode must match the client's task, and its bounds
     * must cover the client's records */
    struct { const char *extra; double unit; long examples; int want; const char *says; } rbad[] = {
        {",\"mode\":\"distributed-dp-sgd\",\"ddp_clip\":1,\"noise_multiplier\":1,\"min_survivors\":2,\"dim\":300,"
         "\"max_records\":50}", 0, 10, FED_EFORMAT, "not a record-level DP-SGD step"},
        {",\"mode\":\"distributed\",\"ddp_clip\":1,\"noise_multiplier\":1,\"min_survivors\":2,\"dim\":300}", 0.1, 10,
         FED_EFORMAT, "user-level"},
        {"}", 0.1, 10, FED_EFORMAT, "without distributed DP"},
        {",\"mode\":\"distributed-dp-sgd\",\"ddp_clip\":1,\"noise_multiplier\":1,\"min_survivors\":2,\"dim\":300}",
         0.1, 10, FED_EFORMAT, "max_records"},
        {",\"mode\":\"distributed-dp-sgd\",\"ddp_clip\":0.05,\"noise_multiplier\":1,\"min_survivors\":2,\"dim\":300,"
         "\"max_records\":50}", 0.1, 10, FED_ERANGE, "records of norm 0.05"},
        {",\"mode\":\"distributed-dp-sgd\",\"ddp_clip\":1,\"noise_multiplier\":1,\"min_survivors\":2,\"dim\":300,"
         "\"max_records\":5}", 0.1, 10, FED_ERANGE, "ring holds 5 records"},
    };
    for (size_t b = 0; b < sizeof rbad / sizeof rbad[0]; b++) {
        char js[1024];
        snprintf(js, sizeof js, "%s%s", base, rbad[b].extra);
        fake f = {js, 0};
        int rc = fed_secagg_daemon_round(fake_call, &f, 0, 7, 1, c[0].delta, D, rbad[b].examples, 1, 5, 0, rbad[b].unit,
                                         NULL, 1);
        if (rc != rbad[b].want || !strstr(fed_last_error(), rbad[b].says))
            fprintf(stderr, "record setup %zu: %d %s\n", b, rc, fed_last_error());
        CHECK(rc == rbad[b].want && strstr(fed_last_error(), rbad[b].says));
        CHECK(f.posts == 0);
    }

    /* ---- the consistency check ---- */
    char dir[] = "/tmp/test_secagg_relay_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    for (int i = 0; i < 8; i++) CHECK_OK(fed_sign_keypair(enrolled_pk[i], enrolled_sk[i]));
    fed_peer_keys *good = pinned(dir, "good.txt", 8, -1), *bad0 = pinned(dir, "bad0.txt", 8, 0),
                  *few = pinned(dir, "few.txt", 2, -1);
    CHECK(good && bad0 && few);
    CHECK(fed_peer_keys_count(good) == 8);
    uint8_t pk0[32];
    CHECK_OK(fed_peer_keys_get(good, 0, pk0));
    CHECK(!memcmp(pk0, enrolled_pk[0], 32));
    CHECK(fed_peer_keys_get(few, 5, pk0) == FED_ENOTFOUND);
    {
        char h[65], text[300];
        fed_hex_encode(h, enrolled_pk[0], 32);
        snprintf(text, sizeof text, "0 %s\n1 %s\n0 %s\n", h, h, h);
        CHECK(peer_file_rc(dir, text) == FED_EFORMAT && strstr(fed_last_error(), "line 3: client 0 appears twice"));
        CHECK(peer_file_rc(dir, "# nothing\n\n") == FED_EFORMAT && strstr(fed_last_error(), "no keys"));
        CHECK(peer_file_rc(dir, "x 00\n") == FED_EFORMAT && strstr(fed_last_error(), "line 1"));
        CHECK(peer_file_rc(dir, "3 abcd\n") == FED_EFORMAT && strstr(fed_last_error(), "64 hex digits"));
    }
    fed_config cc = cfg;
    cc.sa_consistency = 1;
    cc.num_clients = 8;
    CHECK_OK(fed_secagg_relay_new(&relay, &cc, 1.0, 1, &stop));
    /* without a key source the round does not start */
    for (int i = 0; i < 6; i++) res[i] = (fed_result){.client = i, .status = FED_RESULT_OK, .num_examples = 10};
    drv d10 = {relay, 10, 6, res, mean, {0}, 0, {0}};
    driver_main(&d10);
    CHECK(d10.rc == FED_EINVAL && strstr(d10.err, "key source"));
    fed_secagg_relay_set_keys(relay, enrolled_key, NULL);
    /* round 11: six clients (t = 4); client 4's pinned key for client 0 is wrong, so it
     * refuses the key list (before sharing anything) and drops; client 5 dies before
     * its signature on U3: its masked input stays in the sum, unmasked with the others'
     * shares. Five inputs in the sum, four signatures. */
    fed_secagg_daemon_keys kk[6];
    for (int i = 0; i < 6; i++) {
        kk[i] = (fed_secagg_daemon_keys){enrolled_sk[i], i == 4 ? bad0 : good, 1};
        c[i] = (cl){.relay = relay, .client = i, .round = 11, .run = 7, .die_stage = -1, .cut_stage = -1,
                    .weight = 10 + 15 * i, .delta = {0}, .keys = &kk[i]};
        for (int j = 0; j < D; j++) c[i].delta[j] = (float)(fed_rng_uniform(&r) - 0.5);
        res[i] = (fed_result){.client = i, .status = FED_RESULT_OK, .num_examples = c[i].weight, .delta = c[i].delta};
    }
    c[5].die_stage = 3;
    drv d11 = {relay, 11, 6, res, mean, {0}, 0, {0}};
    pthread_create(&dt, NULL, driver_main, &d11);
    for (int i = 0; i < 6; i++) pthread_create(&th[i], NULL, client_main, &c[i]);
    for (int i = 0; i < 6; i++) pthread_join(th[i], NULL);
    pthread_join(dt, NULL);
    if (d11.rc) fprintf(stderr, "round 11: %s\n", d11.err);
    CHECK_OK(d11.rc);
    for (int i = 0; i < 4; i++) CHECK_OK(c[i].rc);
    CHECK(c[4].rc == FED_EFORMAT && c[5].rc != 0);
    CHECK(strstr(c[4].err, "not sharing anything") && strstr(c[4].err, "not signed by it"));
    CHECK(d11.rep.participants == 6 && d11.rep.survivors == 5);
    CHECK(res[4].status == FED_RESULT_DROPPED);
    for (int i = 0; i < 6; i++) CHECK(i == 4 || res[i].status == FED_RESULT_OK);
    wsum = 0;
    maxerr = 0;
    for (int i = 0; i < 6; i++) wsum += i == 4 ? 0 : (double)c[i].weight;
    for (int j = 0; j < D; j++) {
        double want = 0;
        for (int i = 0; i < 6; i++)
            if (i != 4) want += (double)c[i].weight * c[i].delta[j] / wsum;
        double e = fabs(want - (double)mean[j]);
        if (e > maxerr) maxerr = e;
    }
    CHECK(maxerr < 1e-3);
    CHECK(fed_secagg_relay_request(relay, 0, 0, 7, 11, "/v1/secagg/11/5", NULL, 0, &out, &ol, &ct, err, sizeof err) ==
          404);
    CHECK(strstr(err, "STAGE 0..4"));
    /* round 12: three clients (t = 2); client 2 refuses the key list, client 1 dies
     * before signing: one signature on U3, and nothing is unmasked */
    for (int i = 0; i < 3; i++) {
        kk[i].peers = i == 2 ? bad0 : good;
        c[i].round = 12;
        c[i].die_stage = i == 1 ? 3 : -1;
        res[i].status = FED_RESULT_OK;
    }
    drv d12 = {relay, 12, 3, res, mean, {0}, 0, {0}};
    pthread_create(&dt, NULL, driver_main, &d12);
    for (int i = 0; i < 3; i++) pthread_create(&th[i], NULL, client_main, &c[i]);
    for (int i = 0; i < 3; i++) pthread_join(th[i], NULL);
    pthread_join(dt, NULL);
    CHECK(d12.rc == FED_ESTATE && strstr(d12.err, "signed U3"));
    for (int i = 0; i < 3; i++) CHECK(c[i].rc != 0);
    for (int i = 0; i < 6; i++) free(c[i].resp);
    fed_secagg_relay_free(relay);

    /* setups with the check that a client refuses before its first message */
    const char *cbase = "{\"run_id\":7,\"round\":1,\"n\":3,\"degree\":-1,\"threshold\":2,\"ring_bits\":40,"
                        "\"graph_seed\":\"0000000000000000000000000000000000000000000000000000000000000000\","
                        "\"clip\":1,\"bits\":16,\"weight_max\":100,\"stage_timeout_s\":1,\"id\":0";
    fed_secagg_daemon_keys k0 = {enrolled_sk[0], good, 0}, knone = {enrolled_sk[0], NULL, 0},
                           kreq = {enrolled_sk[0], good, 1}, kfew = {enrolled_sk[0], few, 0};
    struct { const char *extra; const fed_secagg_daemon_keys *keys; int want; const char *says; } cbad[] = {
        {",\"consistency\":true,\"clients\":[0,1,2]}", NULL, FED_ESTATE, "no --peer-keys"},
        {",\"consistency\":true,\"clients\":[0,1,2]}", &knone, FED_ESTATE, "no --peer-keys"},
        {",\"consistency\":true,\"clients\":[0,1,2]}", &kfew, FED_ENOTFOUND, "client 2, which has no key"},
        {",\"consistency\":true}", &k0, FED_EFORMAT, "\"clients\""},
        {",\"consistency\":true,\"clients\":[0,1]}", &k0, FED_EFORMAT, "\"clients\""},
        {",\"consistency\":true,\"clients\":[0,1,1]}", &k0, FED_EFORMAT, "two protocol ids"},
        {",\"consistency\":true,\"clients\":[2,0,2]}", &k0, FED_EFORMAT, "client 2 has two protocol ids (0 and 2)"},
        {",\"consistency\":true,\"clients\":[3,1,2]}", &k0, FED_EFORMAT, "not this client"},
        {",\"consistency\":1,\"clients\":[0,1,2]}", &k0, FED_EFORMAT, "\"consistency\""},
        /* a threshold of half the holders or less would leave the check without effect */
        {",\"threshold\":1,\"consistency\":true,\"clients\":[0,1,2]}", &k0, FED_EFORMAT, "cannot protect"},
        {"}", &kreq, FED_ESTATE, "--require-consistency"},
    };
    for (size_t b = 0; b < sizeof cbad / sizeof cbad[0]; b++) {
        char js[1024];
        snprintf(js, sizeof js, "%s%s", cbase, cbad[b].extra);
        fake f = {js, 0};
        int rc = fed_secagg_daemon_round(fake_call, &f, 0, 7, 1, c[0].delta, D, 10, 1, 5, 0, 0, cbad[b].keys, 1);
        if (rc != cbad[b].want || !strstr(fed_last_error(), cbad[b].says))
            fprintf(stderr, "consistency setup %zu: %d %s\n", b, rc, fed_last_error());
        CHECK(rc == cbad[b].want && strstr(fed_last_error(), cbad[b].says));
        CHECK(f.posts == 0);
    }
    fed_peer_keys_free(good);
    fed_peer_keys_free(bad0);
    fed_peer_keys_free(few);
    const char *files[] = {"good.txt", "bad0.txt", "few.txt", "bad.txt"};
    for (int i = 0; i < 4; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
    TEST_PASS("secagg_relay");
}
