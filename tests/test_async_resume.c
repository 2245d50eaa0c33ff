/* FedBuff resumes bit-identically (src/fl/async_driver.c): a run stopped after
 * k server steps (the stop flag) and resumed, and a run whose process dies
 * between checkpoints (rolled back to the last one), end with the same global
 * model, per-step metrics and per-client records as an uninterrupted run. The
 * runs have stale in-flight clients at every checkpoint, failures, and Markov
 * availability. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "check.h"
#include "federate/federate.h"
#include "federate/safetensors.h"
#include "federate/sim.h"

static char dir[256];

enum { STEPS = 9 };

static void base(fed_config *c) {
    fed_config_default(c);
    snprintf(c->name, sizeof c->name, "buff-resume");
    snprintf(c->strategy, sizeof c->strategy, "fedbuff");
    c->num_clients = 40;
    c->num_rounds = STEPS;
    snprintf(c->model, sizeof c->model, "mlp");
    snprintf(c->hidden, sizeof c->hidden, "16");
    c->local_epochs = 1;
    c->batch_size = 20;
    c->learning_rate = 0.1;
    c->seed = 17;
    c->evaluation_every = 4;
    c->threads = 2;
    c->buffer_size = 3;
    c->concurrency = 7;        /* more than K: updates arrive stale */
    snprintf(c->device_profiles, sizeof c->device_profiles, "lognormal");
    c->failure_probability = 0.15;
    snprintf(c->availability_model, sizeof c->availability_model, "markov");
    c->availability_mean_on_s = 8;
    c->availability_mean_off_s = 4;
    snprintf(c->state_dir, sizeof c->state_dir, "%s/state", dir);
}

static fed_store *open_store(const char *name, int fresh) {
    char db[600];
    snprintf(db, sizeof db, "%s/%s", dir, name);
    if (fresh) unlink(db);
    fed_store *st;
    CHECK_OK(fed_store_open(&st, db));
    return st;
}

typedef struct stopper { volatile int stop; int at; int die; } stopper;

static void on_step(void *ctx, const fed_config *cfg, const fed_round_report *r) {
    (void)cfg;
    stopper *s = ctx;
    if (r->m.round == s->at) {
        if (s->die) _exit(0);   /* a crash: rows of this step are stored, its checkpoint is not */
        s->stop = 1;
    }
}

typedef struct outcome {
    void *model;
    size_t len;
    int round;
    fed_round_metrics rm[STEPS];
    int nclients[STEPS];
    fed_client_metrics *cm[STEPS];
    double sim, acc;
    int nbases;
} outcome;

static void collect(fed_store *st, int64_t run, const fed_run_result *res, outcome *o) {
    fed_round_metrics *rm;
    int nr;
    CHECK_OK(fed_store_get_rounds(st, run, &rm, &nr));
    CHECK_EQ_INT(nr, STEPS);
    memcpy(o->rm, rm, sizeof o->rm);
    free(rm);
    for (int r = 0; r < STEPS; r++) CHECK_OK(fed_store_get_clients(st, run, r + 1, &o->cm[r], &o->nclients[r]));
    void *state;
    size_t slen;
    CHECK_OK(fed_store_load_checkpoint(st, run, &o->round, &o->model, &o->len, &state, &slen));
    CHECK(slen > 0);   /* the fedbuff state */
    /* it keeps the base models in flight, fewer than the clients in flight */
    fed_st_file *f;
    CHECK_OK(fed_st_parse(state, slen, &f));
    const fed_st_tensor *bv = fed_st_find(f, "fedbuff.base_versions");
    CHECK(bv != NULL);
    o->nbases = (int)bv->numel;
    CHECK(o->nbases >= 1 && o->nbases < 6);
    fed_st_close(f);
    free(state);
    o->sim = res->sim_time_s;
    o->acc = res->final_accuracy;
    fed_run_info info;
    CHECK_OK(fed_store_get_run(st, run, &info));
    CHECK(!strcmp(info.status, "finished"));
    fed_run_info_free(&info);
}

static void same(const outcome *a, const outcome *b, const char *what) {
    CHECK_EQ_INT(a->round, STEPS);
    CHECK_EQ_INT(b->round, STEPS);
    if (!(a->len == b->len && memcmp(a->model, b->model, a->len) == 0)) {
        fprintf(stderr, "%s: the final models differ\n", what);
        CHECK(0);
    }
    CHECK(a->sim == b->sim);
    CHECK(a->acc == b->acc);
    for (int r = 0; r < STEPS; r++) {
        const fed_round_metrics *x = &a->rm[r], *y = &b->rm[r];
        CHECK_EQ_INT(x->selected, y->selected);
        CHECK_EQ_INT(x->finished, y->finished);
        CHECK_EQ_INT(x->dropped, y->dropped);
        CHECK_EQ_INT(x->bytes_up, y->bytes_up);
        CHECK(x->sim_time_s == y->sim_time_s);
        CHECK(x->train_loss_mean == y->train_loss_mean);
        CHECK((isnan(x->test_accuracy) && isnan(y->test_accuracy)) || x->test_accuracy == y->test_accuracy);
        CHECK_EQ_INT(a->nclients[r], b->nclients[r]);
        for (int i = 0; i < a->nclients[r]; i++) {
            CHECK_EQ_INT(a->cm[r][i].client, b->cm[r][i].client);
            CHECK_EQ_INT(a->cm[r][i].dropped, b->cm[r][i].dropped);
            CHECK_EQ_INT(a->cm[r][i].steps, b->cm[r][i].steps);
            CHECK(a->cm[r][i].train_loss == b->cm[r][i].train_loss || (a->cm[r][i].dropped && b->cm[r][i].dropped));
        }
    }
}

static void outcome_free(outcome *o) {
    free(o->model);
    for (int r = 0; r < STEPS; r++) free(o->cm[r]);
}

static void resume(fed_store *st, int64_t run, fed_run_result *res) {
    fed_config c;
    base(&c);   /* fed_run reads the run's own config from the store */
    fed_run_opts r = {0};
    r.store = st;
    r.resume_run = run;
    CHECK_OK(fed_run(&c, &r, res));
    CHECK_EQ_INT(res->run_id, run);
    CHECK_EQ_INT(res->rounds_done, STEPS);
    CHECK(!res->stopped);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/federate_test_async_resume_%d", (int)getpid());
    CHECK(mkdir(dir, 0755) == 0 || access(dir, W_OK) == 0);
    fed_config c;

    /* 1. a crash: checkpoints every 3 steps, the process dies in step 5's
     * report (rows of steps 4-5 stored, the last checkpoint is step 3).
     * Forked first, while this process has no threads. */
    base(&c);
    c.checkpoint_every = 3;
    fed_store *st = open_store("crash.db", 1);
    fed_store_close(st);   /* no SQLite connection crosses fork() */
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        fed_store *cs;
        char db[600];
        snprintf(db, sizeof db, "%s/crash.db", dir);
        if (fed_store_open(&cs, db)) _exit(2);
        stopper sp = {0, 5, 1};
        fed_run_opts o = {0};
        o.store = cs;
        o.on_round = on_step;
        o.ctx = &sp;
        fed_run_result res;
        fed_run(&c, &o, &res);
        _exit(3);   /* never reached: the run dies at step 5 */
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    st = open_store("crash.db", 0);
    fed_run_info *runs;
    int nruns;
    CHECK_OK(fed_store_list_runs(st, &runs, &nruns));
    CHECK_EQ_INT(nruns, 1);
    int64_t crashed = runs[0].id;
    CHECK(!strcmp(runs[0].status, "running"));
    fed_run_info_free(&runs[0]);
    free(runs);
    int ck_round;
    void *m, *s;
    size_t ml, sl;
    CHECK_OK(fed_store_load_checkpoint(st, crashed, &ck_round, &m, &ml, &s, &sl));
    CHECK_EQ_INT(ck_round, 3);
    free(m);
    free(s);
    fed_run_result res;
    resume(st, crashed, &res);
    outcome crash = {0};
    collect(st, crashed, &res, &crash);
    fed_run_result_free(&res);
    fed_store_close(st);

    /* 2. uninterrupted */
    base(&c);
    st = open_store("full.db", 1);
    fed_run_opts o = {0};
    o.store = st;
    CHECK_OK(fed_run(&c, &o, &res));
    CHECK_EQ_INT(res.rounds_done, STEPS);
    outcome full = {0};
    collect(st, res.run_id, &res, &full);
    double full_sim = res.sim_time_s;
    fed_run_result_free(&res);
    fed_store_close(st);
    int stale = 0;
    for (int r = 0; r < STEPS; r++) stale += full.rm[r].dropped;
    printf("fedbuff %d steps: accuracy %.4f, simulated %.1f s, %d failed arrivals; the last checkpoint keeps %d base "
           "models for 6 clients in flight\n", STEPS, full.acc, full_sim, stale, full.nbases);

    /* 3. stopped after k = 4 steps (checkpoint_every 1), then resumed */
    base(&c);
    st = open_store("stop.db", 1);
    stopper sp = {0, 4, 0};
    fed_run_opts so = {0};
    so.store = st;
    so.on_round = on_step;
    so.ctx = &sp;
    so.stop = &sp.stop;
    CHECK_OK(fed_run(&c, &so, &res));
    CHECK(res.stopped);
    CHECK_EQ_INT(res.rounds_done, 4);
    int64_t stopped = res.run_id;
    fed_run_result_free(&res);
    resume(st, stopped, &res);
    outcome stop = {0};
    collect(st, stopped, &res, &stop);
    fed_run_result_free(&res);
    /* resuming a finished run changes nothing */
    resume(st, stopped, &res);
    fed_run_result_free(&res);
    outcome again = {0};
    CHECK_OK(fed_run(&c, &(fed_run_opts){.store = st, .resume_run = stopped}, &res));
    collect(st, stopped, &res, &again);
    fed_run_result_free(&res);
    fed_store_close(st);

    same(&full, &stop, "stopped after 4 and resumed");
    same(&full, &crash, "crashed in step 5, resumed from step 3");
    same(&full, &again, "resumed when finished");

    /* 4. a checkpoint without fedbuff state cannot be resumed: a clear error */
    base(&c);
    st = open_store("old.db", 1);
    CHECK_OK(fed_run(&c, &(fed_run_opts){.store = st, .stop = &(volatile int){1}}, &res));
    int64_t old = res.run_id;
    fed_run_result_free(&res);
    CHECK_OK(fed_store_load_checkpoint(st, old, &ck_round, &m, &ml, &s, &sl));
    CHECK_OK(fed_store_save_checkpoint(st, old, ck_round, m, ml, "", 0));
    free(s);
    CHECK_EQ_INT(fed_run(&c, &(fed_run_opts){.store = st, .resume_run = old}, &res), FED_EFORMAT);
    CHECK(strstr(fed_last_error(), "no fedbuff state") != NULL);
    fed_run_result_free(&res);
    /* a corrupt state blob: an error, never a crash */
    CHECK_OK(fed_store_save_checkpoint(st, old, ck_round, m, ml, "garbage!", 8));
    CHECK(fed_run(&c, &(fed_run_opts){.store = st, .resume_run = old}, &res) != 0);
    fed_run_result_free(&res);
    free(m);
    fed_store_close(st);

    outcome_free(&full);
    outcome_free(&stop);
    outcome_free(&crash);
    outcome_free(&again);
    TEST_PASS("test_async_resume");
}
