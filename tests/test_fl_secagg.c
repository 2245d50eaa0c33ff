/* Secure aggregation in the simulated federation, on MNIST at small scale: the
 * model ends where plain FedAvg ends up to quantization error; clients that drop
 * out during the protocol are recorded as dropped and the round goes on; when
 * too few survive, rounds fail cleanly and leave the global model unchanged;
 * and combinations it cannot serve are refused. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "check.h"
#include "federate/federate.h"

static char dir[256];

static void base(fed_config *c, int secagg) {
    fed_config_default(c);
    c->num_clients = 30;
    c->clients_per_round = 6;
    c->num_rounds = 3;
    snprintf(c->model, sizeof c->model, "mlp");
    snprintf(c->hidden, sizeof c->hidden, "32");
    c->local_epochs = 1;
    c->batch_size = 20;
    c->learning_rate = 0.1;
    c->seed = 3;
    c->threads = 2;
    c->sa_enabled = secagg;
    c->sa_bits = 20;
}

static float *run(const fed_config *c, const char *name, fed_run_result *r, size_t *n, int *dropped) {
    char db[300];
    snprintf(db, sizeof db, "%s/%s.db", dir, name);
    fed_store *st;
    CHECK_OK(fed_store_open(&st, db));
    fed_run_opts o = {0};
    o.store = st;
    CHECK_OK(fed_run(c, &o, r));
    fed_round_metrics *rm;
    int nr;
    CHECK_OK(fed_store_get_rounds(st, r->run_id, &rm, &nr));
    *dropped = 0;
    for (int i = 0; i < nr; i++) *dropped += rm[i].dropped;
    free(rm);
    int round;
    void *model, *state;
    size_t mlen, slen;
    CHECK_OK(fed_store_load_checkpoint(st, r->run_id, &round, &model, &mlen, &state, &slen));
    free(state);
    fed_model *m;
    fed_model_opts mo;
    fed_model_opts_default(&mo);
    mo.hidden[0] = 32, mo.n_hidden = 1;
    CHECK_OK(fed_model_create(&m, "mlp", &mo));
    CHECK_OK(fed_model_load_buffer(m, model, mlen));
    *n = fed_model_num_params(m);
    float *p = malloc(*n * sizeof(float));
    memcpy(p, fed_model_params(m), *n * sizeof(float));
    fed_model_free(m);
    free(model);
    fed_store_close(st);
    return p;
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/federate-sa-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    fed_config c;
    fed_run_result r0, r1;
    size_t n0, n1;
    int d0, d1;

    /* one round: the difference is the quantization error of the mean alone,
     * a 20-bit grid over [-1, 1] (step 1.9e-6) with stochastic rounding */
    base(&c, 0);
    c.num_rounds = 1;
    float *plain = run(&c, "plain1", &r0, &n0, &d0);
    base(&c, 1);
    c.num_rounds = 1;
    float *secure = run(&c, "secure1", &r1, &n1, &d1);
    CHECK(n0 == n1);
    double maxdiff = 0;
    for (size_t i = 0; i < n0; i++) maxdiff = fmax(maxdiff, fabs(plain[i] - secure[i]));
    printf("one round: max |plain - secure| = %g\n", maxdiff);
    CHECK(maxdiff > 0 && maxdiff < 1e-5);
    /* the active-adversary variant (signed keys, consistency check) sums the same
     * inputs: the same model bit for bit */
    {
        fed_run_result r2;
        size_t n2;
        int d2;
        base(&c, 1);
        c.num_rounds = 1;
        c.sa_consistency = 1;
        float *checked = run(&c, "consistency1", &r2, &n2, &d2);
        CHECK(n2 == n1);
        CHECK(memcmp(checked, secure, n1 * sizeof *secure) == 0);
        CHECK_EQ_INT(d2, 0);
        free(checked);
        fed_run_result_free(&r2);
    }
    free(plain); free(secure);
    fed_run_result_free(&r0); fed_run_result_free(&r1);
    /* three rounds: the same accuracy */
    base(&c, 0);
    plain = run(&c, "plain", &r0, &n0, &d0);
    base(&c, 1);
    secure = run(&c, "secure", &r1, &n1, &d1);
    printf("accuracy %.4f plain vs %.4f secure\n", r0.final_accuracy, r1.final_accuracy);
    CHECK(fabs(r0.final_accuracy - r1.final_accuracy) <= 0.005);
    CHECK_EQ_INT(d0, 0);
    CHECK_EQ_INT(d1, 0);
    free(secure);
    fed_run_result_free(&r1);

    /* drop-outs during the protocol: recorded, and the round still aggregates */
    base(&c, 1);
    c.sa_stage_dropout = 0.08;
    secure = run(&c, "drops", &r1, &n1, &d1);
    CHECK(d1 > 0);
    CHECK(r1.final_accuracy > 0.7);
    free(secure);
    fed_run_result_free(&r1);

    /* nearly everybody drops: every round fails, the model stays at its initial value */
    base(&c, 1);
    c.sa_stage_dropout = 0.9;
    c.num_rounds = 2;
    secure = run(&c, "fail", &r1, &n1, &d1);
    fed_model *init;
    fed_model_opts mo;
    fed_model_opts_default(&mo);
    mo.hidden[0] = 32, mo.n_hidden = 1;
    CHECK_OK(fed_model_create(&init, "mlp", &mo));
    fed_model_init_params(init, c.seed);
    CHECK(memcmp(secure, fed_model_params(init), n1 * sizeof(float)) == 0);
    fed_model_free(init);
    free(secure);
    fed_run_result_free(&r1);

    /* refused with a reason */
    base(&c, 1);
    snprintf(c.strategy, sizeof c.strategy, "scaffold");
    CHECK(fed_config_validate(&c) == FED_EINVAL);
    CHECK(strstr(fed_last_error(), "scaffold") != NULL);
    base(&c, 1);
    snprintf(c.model, sizeof c.model, "cnn-bn");
    fed_run_result rr;
    CHECK(fed_run(&c, NULL, &rr) == FED_EUNSUPPORTED);
    fed_run_result_free(&rr);

    free(plain);
    fed_run_result_free(&r0);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    TEST_PASS("fl_secagg");
}
