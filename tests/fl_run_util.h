/* Helpers shared by the federated-run tests (test_fl_sim, test_fl_dp, test_fl_ddp,
 * test_fl_ddp_sgd): a run, optionally stopped after a round and resumed from its
 * checkpoint; the same into its own store under a test directory, returning the
 * stored per-round metrics; and a config that must be refused with a given code and
 * words in the message. Include after check.h. */
#ifndef FEDERATE_TESTS_FL_RUN_UTIL_H
#define FEDERATE_TESTS_FL_RUN_UTIL_H
#include <stdio.h>
#include <string.h>
#include "federate/federate.h"

typedef struct run_stopper { volatile int stop; int at; } run_stopper;

static inline void run_stop_at(void *ctx, const fed_config *cfg, const fed_round_report *r) {
    (void)cfg;
    run_stopper *s = ctx;
    if (r->m.round == s->at) s->stop = 1;
}

/* c run into the open store st; stop_after > 0: stopped after that round and resumed
 * from its checkpoint (the resumed run uses its stored config). */
static inline void run_resumable(fed_store *st, const fed_config *c, fed_run_result *r, int stop_after) {
    fed_run_opts o = {0};
    o.store = st;
    run_stopper sp = {0, stop_after};
    if (stop_after) { o.on_round = run_stop_at; o.ctx = &sp; o.stop = &sp.stop; }
    CHECK_OK(fed_run(c, &o, r));
    if (stop_after) {
        CHECK(r->stopped);
        CHECK_EQ_INT(r->rounds_done, stop_after);
        fed_run_result_free(r);
        fed_run_opts ro = {0};
        ro.store = st;
        ro.resume_run = r->run_id;
        fed_config dummy;
        fed_config_default(&dummy);
        CHECK_OK(fed_run(&dummy, &ro, r));
        CHECK(!r->stopped);
    }
}

/* The run of c in DIR/NAME.db (run_resumable). *nr rounds of metrics, to free(). */
static inline fed_round_metrics *run_in(const char *dir, const fed_config *c, const char *name, fed_run_result *r, int *nr,
                                        int stop_after) {
    char db[600];
    snprintf(db, sizeof db, "%s/%s.db", dir, name);
    fed_store *st;
    CHECK_OK(fed_store_open(&st, db));
    run_resumable(st, c, r, stop_after);
    fed_round_metrics *rm;
    CHECK_OK(fed_store_get_rounds(st, r->run_id, &rm, nr));
    fed_store_close(st);
    return rm;
}

/* c is refused (by validation or by the run) with code, and the message names words. */
static inline void run_refused(const fed_config *c, int code, const char *words) {
    fed_run_result rr;
    int rc = fed_config_validate(c);
    if (!rc) rc = fed_run(c, NULL, &rr), fed_run_result_free(&rr);
    printf("refused (%d): %s\n", rc, fed_last_error());
    CHECK_EQ_INT(rc, code);
    CHECK(strstr(fed_last_error(), words) != NULL);
}
#endif
