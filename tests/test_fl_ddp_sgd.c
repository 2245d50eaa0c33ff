/* Record-level DP-SGD under secure aggregation (privacy.mode distributed-dp-sgd).
 * The encoding: a client's input is a sum of clipped records, so it is not clipped as a
 * whole, is rounded without a norm condition, and is kept inside the ring; one record
 * added to it moves the rounded vector (same coins) by at most the sensitivity the
 * accountant uses, c + sqrt(d). A run on MNIST at small scale: every round's epsilon is
 * the largest client's, recomputed here from Zhu & Wang's subsampled bound on the
 * distributed discrete Gaussian over the releases each client was in; without noise the
 * securely summed step equals plain one-step DP-SGD up to the rounding; a resumed run
 * accounts the same; the budget stops it; and what it cannot account is refused. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "check.h"
#include "fl_run_util.h"
#include "federate/dp.h"
#include "federate/federate.h"
#include "federate/rng.h"
#include "federate/secagg.h"

enum { D = 2000, RECORDS = 50 };

static void encoding(void) {
    const double unit = 0.5;   /* one record's clipped contribution, in update units */
    const int bits = 12;
    const double c = 2048;
    fed_secagg_ddp p, u;
    CHECK_OK(fed_secagg_ddp_init_records(&p, unit, bits, 1.0, D, 5, RECORDS, FED_DP_NOISE_SEEDED, 9, 3));
    CHECK_OK(fed_secagg_ddp_init(&u, unit, bits, 1.0, D, 5, FED_DP_NOISE_SEEDED, 9, 3));
    CHECK_EQ_INT((int)p.records, RECORDS);
    CHECK_CLOSE(p.l2_bound2, (c + sqrt((double)D)) * (c + sqrt((double)D)), 1e-12, 0);
    CHECK(p.sigma2_num == u.sigma2_num);   /* the same noise as the user-level mechanism */
    int rb_rec, rb_user;
    CHECK_OK(fed_secagg_ddp_ring_bits(&p, 10, &rb_rec));
    CHECK_OK(fed_secagg_ddp_ring_bits(&u, 10, &rb_user));
    printf("ring bits: record level %d, user level %d\n", rb_rec, rb_user);
    CHECK(rb_rec >= rb_user + 5);   /* 50 records' worth per client: 2^5.6 more */
    CHECK_EQ_INT(fed_secagg_ddp_init_records(&p, unit, bits, 1.0, D, 5, 0, FED_DP_NOISE_SEEDED, 9, 3), FED_EINVAL);
    CHECK_OK(fed_secagg_ddp_init_records(&p, unit, bits, 1.0, D, 5, RECORDS, FED_DP_NOISE_SEEDED, 9, 3));

    /* x: 20 records of norm `unit` each, far beyond one clip: rounded, not clipped */
    float *x = calloc(D, sizeof(float)), *xg = malloc(D * sizeof(float)), *g = malloc(D * sizeof(float));
    int64_t *a = malloc(D * sizeof(int64_t)), *b = malloc(D * sizeof(int64_t));
    fed_rng r;
    fed_rng_init(&r, 11, 0, 0, FED_RNG_USER);
    for (int k = 0; k < 20; k++) {
        double n2 = 0;
        for (int i = 0; i < D; i++) g[i] = (float)fed_rng_normal(&r), n2 += (double)g[i] * g[i];
        for (int i = 0; i < D; i++) x[i] += (float)(unit / sqrt(n2)) * g[i];
    }
    CHECK_OK(fed_secagg_ddp_round(&p, 7, x, D, a));
    double far = 0;
    for (int i = 0; i < D; i++) {
        double v = (double)x[i] * p.scale;
        CHECK(fabs((double)a[i] - v) < 1.0);
        far += (double)a[i] * (double)a[i];
    }
    printf("20 records: rounded norm %.1f steps (one clip is %.0f)\n", sqrt(far), c);
    CHECK(sqrt(far) > 3 * c);

    /* the coupling: one more record of norm unit, the same coins (client 7, same
     * round): the rounded vectors differ by at most c + sqrt(d), each coordinate by
     * less than 1 from the record itself */
    for (int trial = 0; trial < 20; trial++) {
        double n2 = 0;
        for (int i = 0; i < D; i++) g[i] = (float)fed_rng_normal(&r), n2 += (double)g[i] * g[i];
        if (trial % 2) /* half the trials: a record along a few coordinates only */
            for (int i = 10; i < D; i++) n2 -= (double)g[i] * g[i], g[i] = 0;
        for (int i = 0; i < D; i++) g[i] = (float)((unit / sqrt(n2)) * 0.99999 * g[i]);
        for (int i = 0; i < D; i++) xg[i] = x[i] + g[i];
        CHECK_OK(fed_secagg_ddp_round(&p, 7, x, D, a));
        CHECK_OK(fed_secagg_ddp_round(&p, 7, xg, D, b));
        double d2 = 0;
        for (int i = 0; i < D; i++) {
            double dv = (double)(b[i] - a[i]);
            /* x[i] + g[i] was rounded to float: allow its error, a few ulps of x scaled */
            CHECK(fabs(dv - ((double)xg[i] - (double)x[i]) * p.scale) < 1.0 + 1e-9);
            d2 += dv * dv;
        }
        CHECK(d2 <= p.l2_bound2);
        if (trial < 2) printf("one record more: moved by %.2f steps, bound %.2f\n", sqrt(d2), sqrt(p.l2_bound2));
    }

    /* a faulty input cannot leave the ring: coordinates stop at max_records clips */
    for (int i = 0; i < D; i++) xg[i] = i % 2 ? 1e9f : -1e9f;
    CHECK_OK(fed_secagg_ddp_round(&p, 7, xg, D, a));
    for (int i = 0; i < D; i++) CHECK(a[i] == (i % 2 ? 1 : -1) * (int64_t)(RECORDS * c));

    /* unbiased: over many clients' coins the rounding averages to the scaled input */
    double bias = 0;
    const int reps = 400;
    for (int k = 0; k < reps; k++) {
        CHECK_OK(fed_secagg_ddp_round(&p, 1000 + (uint64_t)k, x, D, a));
        for (int i = 0; i < D; i++) bias += (double)a[i] - (double)x[i] * p.scale;
    }
    bias /= (double)reps * D;
    printf("mean rounding error %.5f steps\n", bias);
    CHECK(fabs(bias) < 0.005);   /* sd of the mean <= 0.5 / sqrt(800000) = 0.00056 */
    free(x); free(xg); free(g); free(a); free(b);
}

/* A client with fewer records than the batch size: its gradient-only step still
 * divides by B, so one record moves it by at most C / B (the unit the secure round
 * scales by), not C / n_k. */
static void small_client(void) {
    fed_model *m;
    fed_model_opts mo;
    fed_model_opts_default(&mo);
    mo.hidden[0] = 16, mo.n_hidden = 1;
    CHECK_OK(fed_model_create(&m, "mlp", &mo));
    enum { NREC = 3 };
    fed_dataset d = {.n = NREC, .c = 1, .h = 28, .w = 28, .num_classes = 10};
    d.x = malloc((size_t)NREC * 784 * sizeof(float));
    d.y = malloc(NREC * sizeof(int32_t));
    fed_rng r;
    fed_rng_init(&r, 2, 0, 0, FED_RNG_USER);
    for (int i = 0; i < NREC * 784; i++) d.x[i] = (float)fed_rng_uniform(&r);
    for (int i = 0; i < NREC; i++) d.y[i] = i;
    fed_optim_cfg oc;
    fed_optim_cfg_default(&oc, FED_OPTIM_SGD);
    fed_optim *opt;
    size_t np = fed_model_num_params(m);
    CHECK_OK(fed_optim_new(&opt, &oc, np));
    fed_train_opts o;
    fed_train_opts_default(&o);
    o.batch_size = 20;
    o.max_steps = 1;
    o.lr = 0.1f;
    o.dp_clip = 1.0f;
    o.dp_grad_only = 1;
    float *before = malloc(np * sizeof(float));
    memcpy(before, fed_model_params(m), np * sizeof(float));
    fed_train_stats st;
    CHECK_OK(fed_train(m, opt, &d, NULL, 0, &o, &st));
    CHECK_EQ_INT((int)st.steps, 1);
    CHECK_EQ_INT((int)st.examples, NREC);   /* q = 1: every record is in */
    CHECK(memcmp(before, fed_model_params(m), np * sizeof(float)) == 0);   /* parameters left alone */
    double n2 = 0;
    const float *g = fed_model_grads(m);
    for (size_t i = 0; i < np; i++) n2 += (double)g[i] * g[i];
    printf("3 records, batch 20: gradient norm %.4f (at most 3 x 1 / 20 = 0.15)\n", sqrt(n2));
    CHECK(sqrt(n2) <= NREC * 1.0 / 20 * (1 + 1e-5));
    CHECK(sqrt(n2) > 0.05);   /* the records did contribute */
    free(before);
    fed_optim_free(opt);
    fed_model_free(m);
    free(d.x);
    free(d.y);
}

static char dir[256];

static void base(fed_config *c) {
    fed_config_default(c);
    c->num_clients = 10;
    c->clients_per_round = 10;
    c->num_rounds = 4;
    snprintf(c->model, sizeof c->model, "mlp");
    snprintf(c->hidden, sizeof c->hidden, "32");
    c->local_epochs = 1;
    c->batch_size = 20;
    c->learning_rate = 0.5;
    c->seed = 3;
    c->threads = 2;
    c->sa_enabled = 1;
    c->sa_bits = 16;
    c->sa_dropout = 0.1;   /* the noise is sized for 9 of the 10 */
    snprintf(c->strategy, sizeof c->strategy, "fedavgm");
    snprintf(c->dp_mode, sizeof c->dp_mode, "distributed-dp-sgd");
    c->dp_clip = 1.0;
    c->dp_noise_multiplier = 1.0;
}

static fed_round_metrics *run_stop(const fed_config *c, const char *name, fed_run_result *r, int *nr,
                                   int stop_after) {
    return run_in(dir, c, name, r, nr, stop_after);
}

static void runs(void) {
    snprintf(dir, sizeof dir, "/tmp/federate-ddpsgd-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    fed_config c;
    base(&c);
    CHECK_OK(fed_config_validate(&c));
    fed_federation fed;
    CHECK_OK(fed_federation_build(&c, &fed));
    fed_model *m;
    fed_model_opts mo;
    fed_model_opts_default(&mo);
    mo.hidden[0] = 32, mo.n_hidden = 1;
    CHECK_OK(fed_model_create(&m, "mlp", &mo));
    size_t dim = fed_model_num_params(m);
    fed_model_free(m);

    fed_run_result r;
    int nr;
    fed_round_metrics *rm = run_stop(&c, "ddpsgd", &r, &nr, 0);
    CHECK_EQ_INT(nr, 4);
    /* the accountant's figure, recomputed: each client sampled at 20 / n_k, every
     * round a release of 10 shares each sized for 9, one record's sensitivity 2^15 +
     * sqrt(d) integer steps */
    double l2 = 32768 + sqrt((double)dim), s2 = 1.0 * 32768.0 * 32768.0 / 9;
    fed_rdp *acc[10];
    for (int k = 0; k < 10; k++) CHECK_OK(fed_rdp_new(&acc[k], NULL, 0));
    double prev = 0;
    for (int i = 0; i < nr; i++) {
        CHECK_EQ_INT(rm[i].finished, 10);
        double worst = 0;
        for (int k = 0; k < 10; k++) {
            double q = 20.0 / (double)fed.part.train_n[k], eps;
            CHECK_OK(fed_rdp_compose_subsampled_ddgauss(acc[k], q, l2, s2, 10, (double)dim, 1));
            CHECK_OK(fed_rdp_epsilon(acc[k], c.dp_delta, FED_RDP_CONVERSION_IMPROVED, &eps, NULL));
            if (eps > worst) worst = eps;
        }
        printf("round %d: epsilon %.6f (stored %.6f), accuracy %.4f\n", rm[i].round, worst, rm[i].epsilon,
               rm[i].test_accuracy);
        CHECK_CLOSE(rm[i].epsilon, worst, 1e-9, 0);
        CHECK(rm[i].epsilon > prev);
        prev = rm[i].epsilon;
    }
    CHECK_CLOSE(r.epsilon, prev, 1e-12, 0);
    CHECK(isfinite(r.final_accuracy) && r.final_accuracy > 0.3);   /* it learns (random: 0.1) */
    for (int k = 0; k < 10; k++) fed_rdp_free(acc[k]);
    fed_federation_free(&fed);
    fed_round_metrics *first = rm;
    double eps1 = rm[0].epsilon;
    fed_run_result_free(&r);

    /* sized for 10 shares, as many as survive: the same releases as above */
    double eps3;
    {
        fed_config c10 = c;
        c10.sa_dropout = 0;
        fed_run_result r10;
        int n10;
        fed_round_metrics *rm10 = run_stop(&c10, "ddpsgd-10", &r10, &n10, 0);
        CHECK_EQ_INT(n10, 4);
        eps3 = rm10[2].epsilon;
        CHECK(eps3 > rm[2].epsilon);   /* each share smaller: less noise in the sum of 10 */
        free(rm10);
        fed_run_result_free(&r10);
    }

    /* stopped after round 2 and resumed: every client's curve comes back from the
     * checkpoint, so every round's epsilon and the final accuracy are the same */
    fed_run_result r2;
    int nr2;
    fed_round_metrics *rm2 = run_stop(&c, "ddpsgd-resumed", &r2, &nr2, 2);
    CHECK_EQ_INT(nr2, nr);
    for (int i = 0; i < nr; i++) CHECK(rm2[i].epsilon == first[i].epsilon);
    CHECK(rm2[nr - 1].test_accuracy == first[nr - 1].test_accuracy);
    free(rm2);
    fed_run_result_free(&r2);
    free(first);

    /* the budget: before a round the accountant assumes the fewest shares the server
     * may unmask (9; the first release alone would then cost more than 3 rounds of
     * 10 did). Sized for all 10, a target just below round 3's figure stops after
     * round 2 */
    base(&c);
    c.dp_target_epsilon = eps1 * 1.0001;
    rm = run_stop(&c, "budget-first", &r, &nr, 0);
    CHECK_EQ_INT(nr, 0);
    CHECK(r.budget_exhausted);
    free(rm);
    fed_run_result_free(&r);
    base(&c);
    c.sa_dropout = 0;
    c.dp_target_epsilon = eps3 * 0.9999;
    rm = run_stop(&c, "budget", &r, &nr, 0);
    CHECK_EQ_INT(nr, 2);
    CHECK(r.budget_exhausted);
    free(rm);
    fed_run_result_free(&r);

    /* without noise the secure sum is one step of plain DP-SGD on all clients'
     * samples: the same final accuracy as dp-sgd with one local step, no noise, and
     * the server's mean of the clients' steps (equal sizes: FedAvg's weights are equal) */
    base(&c);
    c.dp_noise_multiplier = 0;
    c.sa_bits = 24;
    c.num_rounds = 3;
    rm = run_stop(&c, "noiseless", &r, &nr, 0);
    double acc_secure = r.final_accuracy;
    free(rm);
    fed_run_result_free(&r);
    base(&c);
    c.dp_noise_multiplier = 0;
    c.num_rounds = 3;
    c.sa_enabled = 0;
    c.local_steps = 1;
    snprintf(c.dp_mode, sizeof c.dp_mode, "dp-sgd");
    rm = run_stop(&c, "plain", &r, &nr, 0);
    printf("no noise: secure sum %.4f, plain DP-SGD step %.4f\n", acc_secure, r.final_accuracy);
    CHECK(fabs(acc_secure - r.final_accuracy) <= 0.002);   /* 24-bit rounding: at most a few test examples */
    free(rm);
    fed_run_result_free(&r);

    /* 6 of 10 clients a round, some dropping out during secure aggregation: each
     * client is charged only for the rounds that released its input, with as many
     * shares as survived (the noise is sized for 5; a round left with fewer releases
     * nothing and charges nobody) */
    base(&c);
    c.num_clients = 10;
    c.clients_per_round = 6;
    c.sa_dropout = 0.2;      /* noise sized for 5 */
    c.sa_stage_dropout = 0.02;
    c.num_rounds = 8;
    char db[300];
    snprintf(db, sizeof db, "%s/partial.db", dir);
    fed_store *st;
    CHECK_OK(fed_store_open(&st, db));
    fed_run_opts po = {0};
    po.store = st;
    CHECK_OK(fed_run(&c, &po, &r));
    CHECK_OK(fed_store_get_rounds(st, r.run_id, &rm, &nr));
    CHECK_EQ_INT(nr, 8);
    CHECK_OK(fed_federation_build(&c, &fed));
    s2 = 1.0 * 32768.0 * 32768.0 / 5;
    for (int k = 0; k < 10; k++) CHECK_OK(fed_rdp_new(&acc[k], NULL, 0));
    int charged_rounds = 0, partial = 0;
    double worst = 0;
    for (int i = 0; i < nr; i++) {
        fed_client_metrics *cm;
        int ncm;
        CHECK_OK(fed_store_get_clients(st, r.run_id, rm[i].round, &cm, &ncm));
        CHECK_EQ_INT(ncm, 6);
        int m = 0;
        for (int j = 0; j < ncm; j++) m += !cm[j].dropped;
        CHECK_EQ_INT(m, rm[i].finished);
        partial += m > 0 && m < 6;
        charged_rounds += m > 0;
        for (int j = 0; j < ncm && m > 0; j++) {
            if (cm[j].dropped) continue;
            int k = cm[j].client;
            double e;
            CHECK_OK(fed_rdp_compose_subsampled_ddgauss(acc[k], 20.0 / (double)fed.part.train_n[k], l2, s2, m,
                                                        (double)dim, 1));
            CHECK_OK(fed_rdp_epsilon(acc[k], c.dp_delta, FED_RDP_CONVERSION_IMPROVED, &e, NULL));
            if (e > worst) worst = e;
        }
        printf("partial round %d: %d of 6 released, epsilon %.6f (stored %.6f)\n", rm[i].round, m, worst,
               rm[i].epsilon);
        CHECK_CLOSE(rm[i].epsilon, worst, 1e-9, 0);
        free(cm);
    }
    CHECK(charged_rounds > 0 && partial > 0);   /* the drop-outs happened and were charged right */
    for (int k = 0; k < 10; k++) fed_rdp_free(acc[k]);
    fed_federation_free(&fed);
    free(rm);
    fed_run_result_free(&r);
    fed_store_close(st);

    /* refused configurations, each with its reason */
    base(&c);
    snprintf(c.compression, sizeof c.compression, "topk:0.1");
    run_refused(&c, FED_EINVAL, "compression");
    base(&c);
    c.sa_enabled = 0;
    run_refused(&c, FED_EINVAL, "secure_aggregation.enabled");
    base(&c);
    snprintf(c.strategy, sizeof c.strategy, "fedprox");
    run_refused(&c, FED_EINVAL, "fedprox");
    base(&c);
    snprintf(c.strategy, sizeof c.strategy, "scaffold");
    run_refused(&c, FED_EINVAL, "scaffold");
    base(&c);
    snprintf(c.capability, sizeof c.capability, "uniform");
    c.adapt_to_capability = 1;
    run_refused(&c, FED_EINVAL, "adapt_to_capability");
    base(&c);
    snprintf(c.model, sizeof c.model, "cnn-bn");
    run_refused(&c, FED_EUNSUPPORTED, "BatchNorm");
    base(&c);
    c.sa_bits = 52;   /* 10 clients of 3000 records of 52 bits overflow 64 */
    c.dp_noise_multiplier = 0;
    run_refused(&c, FED_ERANGE, "64-bit ring");

    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

int main(void) {
    encoding();
    small_client();
    runs();
    TEST_PASS("fl_ddp_sgd");
}
