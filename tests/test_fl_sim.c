/* The federated simulation end to end on real MNIST at small scale: it learns;
 * the global model is bit-identical whatever the number of threads, with client
 * data augmentation too; drop-outs
 * are drawn and recorded; and a run stopped after a round and resumed from its
 * checkpoint ends at exactly the model of an uninterrupted run. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "check.h"
#include "federate/federate.h"
#include "fl_run_util.h"

static char dir[256];

static void base_config(fed_config *c) {
    fed_config_default(c);
    snprintf(c->name, sizeof c->name, "test");
    c->num_clients = 30;
    c->clients_per_round = 4;
    c->num_rounds = 3;
    snprintf(c->model, sizeof c->model, "mlp");
    snprintf(c->hidden, sizeof c->hidden, "32");
    c->local_epochs = 1;
    c->batch_size = 20;
    c->learning_rate = 0.1;
    c->seed = 11;
    snprintf(c->state_dir, sizeof c->state_dir, "%s/state", dir);
}

/* Runs cfg into a fresh store; returns the final model's checkpoint bytes. */
static void *run_to_blob(const fed_config *cfg, const char *db, size_t *len, fed_run_result *res, int stop_after) {
    fed_store *st;
    CHECK_OK(fed_store_open(&st, db));
    run_resumable(st, cfg, res, stop_after);
    int round;
    void *model, *state;
    size_t slen;
    CHECK_OK(fed_store_load_checkpoint(st, res->run_id, &round, &model, len, &state, &slen));
    CHECK_EQ_INT(round, cfg->num_rounds);
    free(state);
    fed_store_close(st);
    return model;
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/federate-test-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    char db[300];
    fed_config c;
    fed_run_result r1, r2;
    size_t l1, l2;

    /* learns, and 1 vs 2 threads give the same bits (FedAvg) */
    base_config(&c);
    c.threads = 1;
    snprintf(db, sizeof db, "%s/a.db", dir);
    void *m1 = run_to_blob(&c, db, &l1, &r1, 0);
    printf("fedavg: final accuracy %.2f%%, bytes up %lld down %lld\n", 100 * r1.final_accuracy,
           (long long)r1.bytes_up, (long long)r1.bytes_down);
    CHECK(r1.final_accuracy > 0.80);
    CHECK(r1.bytes_up > 0 && r1.bytes_down >= r1.bytes_up);
    c.threads = 2;
    snprintf(db, sizeof db, "%s/b.db", dir);
    void *m2 = run_to_blob(&c, db, &l2, &r2, 0);
    CHECK(l1 == l2 && memcmp(m1, m2, l1) == 0);
    CHECK(r1.final_accuracy == r2.final_accuracy);
    free(m1); free(m2);
    fed_run_result_free(&r1); fed_run_result_free(&r2);

    /* with augmentation (shifts and rotations): still learns, 1 vs 2 threads still give
     * the same bits, and the model differs from the run without it */
    base_config(&c);
    c.augment_crop = 2;
    c.augment_rotate = 10;
    c.threads = 1;
    snprintf(db, sizeof db, "%s/aug1.db", dir);
    void *plain = NULL;
    size_t lp;
    {
        fed_config p0;
        base_config(&p0);
        p0.threads = 2;
        snprintf(db, sizeof db, "%s/aug0.db", dir);
        plain = run_to_blob(&p0, db, &lp, &r1, 0);
        fed_run_result_free(&r1);
    }
    snprintf(db, sizeof db, "%s/aug1.db", dir);
    m1 = run_to_blob(&c, db, &l1, &r1, 0);
    c.threads = 2;
    snprintf(db, sizeof db, "%s/aug2.db", dir);
    m2 = run_to_blob(&c, db, &l2, &r2, 0);
    printf("fedavg with shifts and rotations: final accuracy %.2f%%\n", 100 * r1.final_accuracy);
    CHECK(r1.final_accuracy > 0.75);
    CHECK(l1 == l2 && memcmp(m1, m2, l1) == 0);
    CHECK(lp == l1 && memcmp(plain, m1, l1) != 0);
    free(m1); free(m2); free(plain);
    fed_run_result_free(&r1); fed_run_result_free(&r2);

    /* stopped after round 2 and resumed == uninterrupted, for a stateful server
     * optimizer and for SCAFFOLD's client state */
    const char *strategies[] = {"fedadam", "scaffold"};
    for (int s = 0; s < 2; s++) {
        base_config(&c);
        c.threads = 2;
        c.num_rounds = 4;
        snprintf(c.strategy, sizeof c.strategy, "%s", strategies[s]);
        if (s == 0) { c.server_lr = 0.01; }
        snprintf(db, sizeof db, "%s/c%d.db", dir, s);
        m1 = run_to_blob(&c, db, &l1, &r1, 0);
        snprintf(db, sizeof db, "%s/d%d.db", dir, s);
        snprintf(c.state_dir, sizeof c.state_dir, "%s/state2", dir);
        m2 = run_to_blob(&c, db, &l2, &r2, 2);
        printf("%s: uninterrupted %.2f%%, resumed %.2f%%\n", strategies[s], 100 * r1.final_accuracy, 100 * r2.final_accuracy);
        CHECK(l1 == l2 && memcmp(m1, m2, l1) == 0);
        free(m1); free(m2);
        fed_run_result_free(&r1); fed_run_result_free(&r2);
    }

    /* drop-outs are drawn, recorded, and the round goes on without them */
    base_config(&c);
    c.dropout_probability = 0.5;
    c.clients_per_round = 10;
    c.num_rounds = 2;
    snprintf(db, sizeof db, "%s/e.db", dir);
    fed_store *st;
    CHECK_OK(fed_store_open(&st, db));
    fed_run_opts o = {0};
    o.store = st;
    CHECK_OK(fed_run(&c, &o, &r1));
    fed_round_metrics *rounds;
    int nr;
    CHECK_OK(fed_store_get_rounds(st, r1.run_id, &rounds, &nr));
    CHECK_EQ_INT(nr, 2);
    int dropped = 0;
    for (int i = 0; i < nr; i++) {
        CHECK_EQ_INT(rounds[i].finished + rounds[i].dropped, 10);
        dropped += rounds[i].dropped;
    }
    CHECK(dropped > 2 && dropped < 18);
    fed_client_metrics *cm;
    int ncm;
    CHECK_OK(fed_store_get_clients(st, r1.run_id, 1, &cm, &ncm));
    CHECK_EQ_INT(ncm, 10);
    int marked = 0;
    for (int i = 0; i < ncm; i++) marked += cm[i].dropped;
    CHECK_EQ_INT(marked, rounds[0].dropped);
    free(cm); free(rounds);
    fed_run_result_free(&r1);
    fed_store_close(st);

    /* capability profiles: with adapt_to_capability each client does
     * ceil(capability * E * batches) steps, so their step counts differ */
    base_config(&c);
    snprintf(c.capability, sizeof c.capability, "lognormal");
    c.capability_spread = 0.5;
    c.adapt_to_capability = 1;
    c.local_epochs = 2;
    c.clients_per_round = 8;
    c.num_rounds = 1;
    snprintf(c.client_selection, sizeof c.client_selection, "capability");
    snprintf(db, sizeof db, "%s/f.db", dir);
    CHECK_OK(fed_store_open(&st, db));
    o.store = st;
    CHECK_OK(fed_run(&c, &o, &r1));
    CHECK_OK(fed_store_get_clients(st, r1.run_id, 1, &cm, &ncm));
    CHECK_EQ_INT(ncm, 8);
    long lo = cm[0].steps, hi = cm[0].steps;
    for (int i = 0; i < ncm; i++) {
        long full = 2 * ((cm[i].num_examples + c.batch_size - 1) / c.batch_size);
        CHECK(cm[i].steps >= 1 && cm[i].steps <= 4 * full);
        if (cm[i].steps < lo) lo = cm[i].steps;
        if (cm[i].steps > hi) hi = cm[i].steps;
    }
    CHECK(hi > lo);
    free(cm);
    fed_run_result_free(&r1);
    fed_store_close(st);

    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    TEST_PASS("test_fl_sim");
}
