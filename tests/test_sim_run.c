/* Simulated systems end to end on MNIST (small mlp): a round deadline makes
 * slow devices send partial work (fewer steps) and drops those with no time
 * for a step, and the round lasts at most the deadline; over-selection
 * aggregates the first clients_per_round to finish; FedBuff learns and is
 * bit-identical for 1 and 2 threads, with a simulated time per server step. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "check.h"
#include "federate/federate.h"
#include "federate/sim.h"

static char dir[256];

static void base(fed_config *c) {
    fed_config_default(c);
    snprintf(c->name, sizeof c->name, "sim");
    c->num_clients = 100;
    c->clients_per_round = 5;
    c->num_rounds = 3;
    snprintf(c->model, sizeof c->model, "mlp");
    snprintf(c->hidden, sizeof c->hidden, "16");
    c->local_epochs = 1;
    c->batch_size = 20;
    c->learning_rate = 0.1;
    c->seed = 3;
    c->evaluation_every = 100;
    c->threads = 2;
    snprintf(c->state_dir, sizeof c->state_dir, "%s/state", dir);
}

static fed_store *open_store(const char *name) {
    char db[600];
    snprintf(db, sizeof db, "%s/%s", dir, name);
    unlink(db);
    fed_store *st;
    CHECK_OK(fed_store_open(&st, db));
    return st;
}

static void test_deadline(void) {
    /* even clients: 1000 samples/s; odd: 50; client 7: 0.5 (no time for a step) */
    char path[400];
    snprintf(path, sizeof path, "%.300s/phones.csv", dir);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    fprintf(f, "client,speed,up,down,latency\n");
    for (int i = 0; i < 100; i++) fprintf(f, "%d,%g,1e7,1e7,0\n", i, i == 7 ? 0.5 : i % 2 ? 50.0 : 1000.0);
    fclose(f);
    fed_config c;
    base(&c);
    snprintf(c.device_profiles, sizeof c.device_profiles, "file");
    snprintf(c.device_profiles_file, sizeof c.device_profiles_file, "%s", path);
    c.round_deadline_s = 3.0;
    c.num_rounds = 6;
    c.clients_per_round = 10;
    fed_store *st = open_store("deadline.db");
    fed_run_opts o = {0};
    o.store = st;
    fed_run_result res;
    CHECK_OK(fed_run(&c, &o, &res));
    fed_round_metrics *rm;
    int nr;
    CHECK_OK(fed_store_get_rounds(st, res.run_id, &rm, &nr));
    CHECK_EQ_INT(nr, 6);
    int partial = 0, full = 0, seven = 0;
    double total = 0;
    for (int r = 0; r < nr; r++) {
        CHECK(rm[r].sim_time_s > 0 && rm[r].sim_time_s <= 3.0 + 1e-9);
        total += rm[r].sim_time_s;
        fed_client_metrics *cm;
        int n;
        CHECK_OK(fed_store_get_clients(st, res.run_id, r + 1, &cm, &n));
        for (int i = 0; i < n; i++) {
            long all = (cm[i].num_examples * 9 / 10 + 19) / 20;   /* ~ one epoch over the train split */
            if (cm[i].client == 7) { seven++; CHECK(cm[i].dropped); continue; }
            CHECK(!cm[i].dropped);
            if (cm[i].client % 2) {
                /* 50 samples/s x 3 s = 150 samples: 7 steps of 20 */
                CHECK_EQ_INT(cm[i].steps, 7);
                partial++;
            } else {
                CHECK(cm[i].steps >= all - 1);
                full++;
            }
        }
        free(cm);
    }
    CHECK(partial > 0 && full > 0);
    CHECK_NEAR(res.sim_time_s, total, 1e-9);
    (void)seven;
    free(rm);
    fed_run_result_free(&res);
    fed_store_close(st);
}

static void test_over_selection(void) {
    fed_config c;
    base(&c);
    snprintf(c.device_profiles, sizeof c.device_profiles, "lognormal");
    c.clients_per_round = 4;
    c.over_selection = 0.5;
    c.availability = 0.5;            /* online half of every 20 simulated seconds */
    c.availability_period_s = 20;
    c.num_rounds = 5;
    fed_store *st = open_store("over.db");
    fed_run_opts o = {0};
    o.store = st;
    fed_run_result res;
    CHECK_OK(fed_run(&c, &o, &res));
    fed_round_metrics *rm;
    int nr;
    CHECK_OK(fed_store_get_rounds(st, res.run_id, &rm, &nr));
    static fed_device dev[100];
    CHECK_OK(fed_device_profiles(&c, 100, dev));
    double start = 0;
    for (int r = 0; r < nr; r++) {
        CHECK_EQ_INT(rm[r].selected, 6);
        CHECK_EQ_INT(rm[r].finished, 4);
        CHECK_EQ_INT(rm[r].dropped, 2);
        CHECK(rm[r].sim_time_s > 0);
        /* only devices online at the round's start were selected */
        fed_client_metrics *cm;
        int n;
        CHECK_OK(fed_store_get_clients(st, res.run_id, r + 1, &cm, &n));
        CHECK_EQ_INT(n, 6);
        for (int i = 0; i < n; i++) CHECK(fed_device_online(&dev[cm[i].client], 20, start));
        free(cm);
        start += rm[r].sim_time_s;
    }
    free(rm);
    fed_run_result_free(&res);
    fed_store_close(st);
    /* without devices there is no simulated time */
    base(&c);
    c.num_rounds = 1;
    CHECK_OK(fed_run(&c, NULL, &res));
    CHECK(isnan(res.sim_time_s));
    fed_run_result_free(&res);
}

typedef struct stopper { volatile int stop; int at; } stopper;
static void stop_at(void *ctx, const fed_config *cfg, const fed_round_report *r) {
    (void)cfg;
    stopper *s = ctx;
    if (r->m.round == s->at) s->stop = 1;
}

/* Oort's memory (losses, durations) and the virtual clock are checkpointed: a
 * run stopped after round 2 and resumed ends at the uninterrupted run's model
 * and simulated time. */
static void *oort_run(int stop_after, size_t *len, double *sim) {
    fed_config c;
    base(&c);
    snprintf(c.device_profiles, sizeof c.device_profiles, "lognormal");
    snprintf(c.client_selection, sizeof c.client_selection, "oort");
    c.oort_epsilon = 0.5;
    c.num_rounds = 5;
    fed_store *st = open_store(stop_after ? "oort_b.db" : "oort_a.db");
    fed_run_opts o = {0};
    o.store = st;
    stopper sp = {0, stop_after};
    if (stop_after) { o.on_round = stop_at; o.ctx = &sp; o.stop = &sp.stop; }
    fed_run_result res;
    CHECK_OK(fed_run(&c, &o, &res));
    if (stop_after) {
        CHECK(res.stopped);
        fed_run_result_free(&res);
        fed_run_opts r = {0};
        r.store = st;
        r.resume_run = res.run_id;
        CHECK_OK(fed_run(&c, &r, &res));
    }
    fed_round_metrics *rm;
    int nr;
    CHECK_OK(fed_store_get_rounds(st, res.run_id, &rm, &nr));
    CHECK_EQ_INT(nr, 5);
    *sim = 0;
    for (int i = 0; i < nr; i++) *sim += rm[i].sim_time_s;
    free(rm);
    int round;
    void *model, *state;
    size_t slen;
    CHECK_OK(fed_store_load_checkpoint(st, res.run_id, &round, &model, len, &state, &slen));
    free(state);
    fed_run_result_free(&res);
    fed_store_close(st);
    return model;
}

static void test_oort_resume(void) {
    size_t la, lb;
    double sa, sb;
    void *a = oort_run(0, &la, &sa), *b = oort_run(2, &lb, &sb);
    CHECK(la == lb && memcmp(a, b, la) == 0);
    CHECK(sa == sb);
    free(a);
    free(b);
}

static void *fedbuff_run(int threads, fed_run_result *res, double *acc0, size_t *len) {
    fed_config c;
    base(&c);
    snprintf(c.strategy, sizeof c.strategy, "fedbuff");
    snprintf(c.device_profiles, sizeof c.device_profiles, "lognormal");
    c.num_clients = 60;
    c.hidden[0] = '3', c.hidden[1] = '2', c.hidden[2] = 0;
    c.buffer_size = 3;
    c.concurrency = 6;
    c.num_rounds = 12;
    c.evaluation_every = 1;
    c.threads = threads;
    fed_store *st = open_store(threads == 1 ? "buff1.db" : "buff2.db");
    fed_run_opts o = {0};
    o.store = st;
    CHECK_OK(fed_run(&c, &o, res));
    CHECK_EQ_INT(res->rounds_done, 12);
    fed_round_metrics *rm;
    int nr;
    CHECK_OK(fed_store_get_rounds(st, res->run_id, &rm, &nr));
    CHECK_EQ_INT(nr, 12);
    double total = 0;
    for (int r = 0; r < nr; r++) {
        CHECK_EQ_INT(rm[r].finished, 3);
        CHECK(rm[r].sim_time_s >= 0);
        total += rm[r].sim_time_s;
    }
    CHECK(total > 0);
    CHECK_NEAR(res->sim_time_s, total, 1e-6 * total);
    *acc0 = rm[0].test_accuracy;
    free(rm);
    int round;
    void *model, *state;
    size_t mlen, slen;
    CHECK_OK(fed_store_load_checkpoint(st, res->run_id, &round, &model, &mlen, &state, &slen));
    CHECK_EQ_INT(round, 12);
    free(state);
    fed_store_close(st);
    *len = mlen;
    return model;
}

static void test_fedbuff(void) {
    fed_run_result a, b;
    double a0, b0;
    size_t la, lb;
    void *ma = fedbuff_run(1, &a, &a0, &la);
    void *mb = fedbuff_run(2, &b, &b0, &lb);
    printf("fedbuff: accuracy after step 1 %.4f, after 12 %.4f, simulated %.1f s\n", a0, a.final_accuracy,
           a.sim_time_s);
    CHECK(a.final_accuracy > 0.75);
    CHECK(a.final_accuracy > a0);
    /* (the test loss is summed across evaluation threads, so only the model is compared bit for bit) */
    CHECK(a.final_accuracy == b.final_accuracy);
    CHECK(a.sim_time_s == b.sim_time_s);
    CHECK(ma && mb && la == lb && memcmp(ma, mb, la) == 0);   /* the final global model, bit for bit */
    free(ma);
    free(mb);
    fed_run_result_free(&a);
    fed_run_result_free(&b);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/federate_test_sim_run_%d", (int)getpid());
    CHECK(mkdir(dir, 0755) == 0 || access(dir, W_OK) == 0);
    test_deadline();
    test_over_selection();
    test_oort_resume();
    test_fedbuff();
    TEST_PASS("test_sim_run");
}
