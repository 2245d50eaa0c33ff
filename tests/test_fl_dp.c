/* Differential privacy in the federated simulation, end to end on MNIST at
 * small scale: the epsilon a run reports is the accountant's for what ran
 * (user level: rounds at q = m/N; record level: the largest over clients of
 * their own local steps at B / n_k), the budget stops the run before the round
 * that would exceed it, stop + resume gives the same model and epsilon, the
 * result does not depend on the thread count, and combinations that cannot be
 * accounted are refused with a message. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "check.h"
#include "federate/federate.h"
#include "fl_run_util.h"

static char dir[256];

static void base_config(fed_config *c, const char *mode) {
    fed_config_default(c);
    snprintf(c->name, sizeof c->name, "dp");
    c->num_clients = 40;
    c->clients_per_round = 8;
    c->num_rounds = 4;
    snprintf(c->model, sizeof c->model, "mlp");
    snprintf(c->hidden, sizeof c->hidden, "32");
    c->local_epochs = 1;
    c->batch_size = 50;
    c->learning_rate = 0.1;
    c->seed = 5;
    c->local_test_fraction = 0;
    snprintf(c->dp_mode, sizeof c->dp_mode, "%s", mode);
    c->dp_noise_multiplier = 1.2;
    snprintf(c->state_dir, sizeof c->state_dir, "%s/state", dir);
}

static void *run(const fed_config *cfg, const char *name, fed_run_result *res, size_t *len, int stop_after) {
    char db[300];
    snprintf(db, sizeof db, "%s/%s.db", dir, name);
    fed_store *st;
    CHECK_OK(fed_store_open(&st, db));
    run_resumable(st, cfg, res, stop_after);
    /* the store has epsilon per round, increasing */
    fed_round_metrics *rm;
    int n;
    CHECK_OK(fed_store_get_rounds(st, res->run_id, &rm, &n));
    CHECK_EQ_INT(n, res->rounds_done);
    int dp = strcmp(cfg->dp_mode, "none") != 0;
    for (int i = 0; i < n; i++) CHECK(dp ? !isnan(rm[i].epsilon) : isnan(rm[i].epsilon));
    for (int i = 1; dp && i < n; i++) CHECK(rm[i].epsilon >= rm[i - 1].epsilon);
    CHECK(!dp || n == 0 || rm[n - 1].epsilon == res->epsilon);
    free(rm);
    int round;
    void *model = NULL, *state;
    size_t slen;
    CHECK_OK(fed_store_load_checkpoint(st, res->run_id, &round, &model, len, &state, &slen));
    free(state);
    fed_store_close(st);
    return model;
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/federate-dp-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    fed_config c;
    fed_run_result r1, r2;
    size_t l1, l2;

    /* user level: epsilon of 4 rounds at q = 8/40, z = 1.2; adaptive clip moves */
    base_config(&c, "dp-fedavg");
    c.dp_adaptive = 1;
    c.dp_count_stddev = 1.0;
    c.dp_clip = 1.0;
    c.threads = 1;
    void *m1 = run(&c, "ua", &r1, &l1, 0);
    double want;
    CHECK_OK(fed_dp_epsilon(8.0 / 40, 1.2, 4, 1e-5, FED_RDP_CONVERSION_IMPROVED, NULL, 0, &want, NULL));
    CHECK_NEAR(r1.epsilon, want, 1e-12);
    printf("dp-fedavg accuracy %.3f\n", r1.final_accuracy);
    CHECK(r1.final_accuracy > 0.2);
    c.threads = 2;
    void *m2 = run(&c, "ub", &r2, &l2, 2);   /* 2 threads, stopped after round 2 and resumed */
    CHECK(l1 == l2 && memcmp(m1, m2, l1) == 0);
    CHECK(r1.epsilon == r2.epsilon);
    free(m1); free(m2);
    fed_run_result_free(&r1); fed_run_result_free(&r2);

    /* the budget: at most 2.2 allows fewer rounds than asked, and says so */
    base_config(&c, "dp-fedavg");
    c.num_rounds = 30;
    c.dp_target_epsilon = 2.2;
    m1 = run(&c, "budget", &r1, &l1, 0);
    CHECK(r1.budget_exhausted);
    CHECK(r1.rounds_done < 30 && r1.rounds_done > 0);
    CHECK(r1.epsilon <= 2.2);
    double next;
    CHECK_OK(fed_dp_epsilon(8.0 / 40, 1.2, r1.rounds_done + 1, 1e-5, FED_RDP_CONVERSION_IMPROVED, NULL, 0, &next, NULL));
    CHECK(next > 2.2);
    free(m1);
    fed_run_result_free(&r1);

    /* record level: the largest over clients of their own DP-SGD accounting */
    base_config(&c, "dp-sgd");
    c.threads = 1;
    m1 = run(&c, "ra", &r1, &l1, 0);
    {
        fed_federation fed;
        CHECK_OK(fed_federation_build(&c, &fed));
        fed_store *st;
        char db[300];
        snprintf(db, sizeof db, "%s/ra.db", dir);
        CHECK_OK(fed_store_open(&st, db));
        long *steps = calloc((size_t)c.num_clients, sizeof(long));
        for (int round = 1; round <= r1.rounds_done; round++) {
            fed_client_metrics *cm;
            int n;
            CHECK_OK(fed_store_get_clients(st, r1.run_id, round, &cm, &n));
            CHECK(n > 0);
            for (int i = 0; i < n; i++) if (!cm[i].dropped) steps[cm[i].client] += cm[i].steps;
            free(cm);
        }
        double worst = 0;
        for (int k = 0; k < c.num_clients; k++) {
            if (!steps[k]) continue;
            double e;
            CHECK_OK(fed_dp_epsilon(50.0 / (double)fed.part.train_n[k], 1.2, steps[k], 1e-5,
                                   FED_RDP_CONVERSION_IMPROVED, NULL, 0, &e, NULL));
            if (e > worst) worst = e;
        }
        CHECK(worst > 0);
        CHECK_NEAR(r1.epsilon, worst, 1e-12);
        free(steps);
        fed_store_close(st);
        fed_federation_free(&fed);
    }
    c.threads = 2;
    m2 = run(&c, "rb", &r2, &l2, 1);
    CHECK(l1 == l2 && memcmp(m1, m2, l1) == 0);
    CHECK(r1.epsilon == r2.epsilon);
    free(m1); free(m2);
    fed_run_result_free(&r1); fed_run_result_free(&r2);

    /* local DP: each participation at z / 2, no amplification; noise makes it differ from no DP */
    base_config(&c, "local");
    c.num_rounds = 2;
    m1 = run(&c, "local", &r1, &l1, 0);
    CHECK(r1.epsilon > 0);
    base_config(&c, "none");
    c.num_rounds = 2;
    m2 = run(&c, "plain", &r2, &l2, 0);
    CHECK(l1 == l2 && memcmp(m1, m2, l1) != 0);
    CHECK(r2.epsilon == 0);
    free(m1); free(m2);
    fed_run_result_free(&r1); fed_run_result_free(&r2);

    /* refused, with a reason */
    fed_run_result r;
    base_config(&c, "dp-fedavg");
    snprintf(c.strategy, sizeof c.strategy, "scaffold");
    CHECK(fed_run(&c, NULL, &r) == FED_EINVAL);
    CHECK(strstr(fed_last_error(), "scaffold") != NULL);
    fed_run_result_free(&r);
    base_config(&c, "dp-fedavg");
    snprintf(c.model, sizeof c.model, "cnn-bn");
    CHECK(fed_run(&c, NULL, &r) == FED_EUNSUPPORTED);
    CHECK(strstr(fed_last_error(), "BatchNorm") != NULL);
    fed_run_result_free(&r);
    base_config(&c, "local");
    c.dp_adaptive = 1;
    CHECK(fed_run(&c, NULL, &r) == FED_EINVAL);
    CHECK(strstr(fed_last_error(), "adaptive") != NULL);
    fed_run_result_free(&r);
    base_config(&c, "dp-sgd");
    snprintf(c.model, sizeof c.model, "cnn-bn");
    c.num_rounds = 1;
    CHECK(fed_run(&c, NULL, &r) == FED_EUNSUPPORTED);
    CHECK(strstr(fed_last_error(), "per-example") != NULL);
    fed_run_result_free(&r);

    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    TEST_PASS("fl_dp");
}
