/* Availability models of the simulated devices (src/sim/clock.c): trace files
 * (merging, the cyclic period, absent clients, malformed lines named by
 * file:line), the two-state Markov chain (long-run online fraction, mean
 * sojourn, answers independent of query order and of its cache window), the
 * config keys' errors, and runs in which offline devices are never picked. */
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

static const char *write_file(const char *name, const char *text) {
    static char path[8][400];
    static int k;
    char *p = path[k++ % 8];
    snprintf(p, 400, "%.300s/%s", dir, name);
    FILE *f = fopen(p, "w");
    CHECK(f != NULL);
    fputs(text, f);
    fclose(f);
    return p;
}

static void sim_cfg(fed_config *c, const char *model) {
    fed_config_default(c);
    snprintf(c->device_profiles, sizeof c->device_profiles, "lognormal");
    snprintf(c->availability_model, sizeof c->availability_model, "%s", model);
    c->seed = 11;
}

static fed_sysim *trace_sim(const char *path, int n) {
    fed_config c;
    sim_cfg(&c, "trace");
    snprintf(c.availability_trace, sizeof c.availability_trace, "%s", path);
    CHECK_OK(fed_config_validate(&c));
    fed_sysim *s;
    CHECK_OK(fed_sysim_new(&s, &c, NULL, n, 1000));
    return s;
}

static void test_trace(void) {
    const char *p = write_file("good.csv",
                               "# a day in 100 s\n"
                               "client,start_s,end_s\n"
                               "0,15,30\n"
                               "0, 10 ,20\r\n"        /* overlaps: [10, 30) */
                               "\n"
                               "0,30,35\n"            /* touches: [10, 35) */
                               "1,50,60\n"
                               "1,0,5\n"
                               "2,0,100\n"            /* the whole cycle; the period is 100 */
                               "4,90,100\n"
                               "4,0,5\n");            /* on across the wrap */
    fed_sysim *s = trace_sim(p, 6);
    /* client 0: [10, 35) of every 100 s */
    CHECK(!fed_sysim_online(s, 0, 0));
    CHECK(!fed_sysim_online(s, 0, 9.99));
    CHECK(fed_sysim_online(s, 0, 10));
    CHECK(fed_sysim_online(s, 0, 29.5));
    CHECK(fed_sysim_online(s, 0, 34.9));
    CHECK(!fed_sysim_online(s, 0, 35));
    CHECK(fed_sysim_online(s, 0, 212));
    CHECK_NEAR(fed_sysim_next_online(s, 0, 0), 10, 1e-9);
    CHECK_NEAR(fed_sysim_next_online(s, 0, 35), 110, 1e-9);
    CHECK(fed_sysim_online(s, 0, fed_sysim_next_online(s, 0, 35)));
    CHECK_NEAR(fed_sysim_next_online(s, 0, 12), 12, 0);
    CHECK_NEAR(fed_sysim_next_offline(s, 0, 12), 35, 1e-9);
    CHECK_NEAR(fed_sysim_next_offline(s, 0, 40), 40, 0);
    CHECK_NEAR(fed_sysim_next_online(s, 0, 1e6 + 36), 1e6 + 110, 1e-6);
    /* client 1: [0, 5) and [50, 60) */
    CHECK(fed_sysim_online(s, 1, 0));
    CHECK(!fed_sysim_online(s, 1, 5));
    CHECK_NEAR(fed_sysim_next_online(s, 1, 5), 50, 1e-9);
    CHECK_NEAR(fed_sysim_next_online(s, 1, 60), 100, 1e-9);
    CHECK(fed_sysim_online(s, 1, 100));
    CHECK_NEAR(fed_sysim_next_offline(s, 1, 1), 5, 1e-9);
    /* client 2: online all the time; 3: no row, always online */
    for (double t = 0; t < 500; t += 7.3) {
        CHECK(fed_sysim_online(s, 2, t));
        CHECK(fed_sysim_online(s, 3, t));
    }
    CHECK(isinf(fed_sysim_next_offline(s, 2, 42)));
    CHECK(isinf(fed_sysim_next_offline(s, 3, 42)));
    /* client 4: [90, 100) + [0, 5) is one stretch across the wrap */
    CHECK(fed_sysim_online(s, 4, 95));
    CHECK(fed_sysim_online(s, 4, 101));
    CHECK_NEAR(fed_sysim_next_offline(s, 4, 95), 105, 1e-9);
    CHECK_NEAR(fed_sysim_next_online(s, 4, 10), 90, 1e-9);
    fed_sysim_free(s);

    /* malformed files: the file, the line and what is wrong; never an abort */
    struct { const char *text, *want; int code; } bad[] = {
        {"0,10\n", "bad.csv:1: 2 columns, need 3 (client,start_s,end_s)", FED_EFORMAT},
        {"client,start_s,end_s\n0,1,2\n0,10,5\n", "bad.csv:3: end_s 5 is not after start_s 10", FED_EINVAL},
        {"0,7,7\n", "bad.csv:1: end_s 7 is not after start_s 7", FED_EINVAL},
        {"0,-1,5\n", "bad.csv:1: column 2 (start_s): -1 is out of range", FED_EINVAL},
        {"# c\n9,0,5\n", "bad.csv:2: column 1 (client): 9 is not a client id in [0, 6)", FED_EINVAL},
        {"1.5,0,5\n", "bad.csv:1: column 1 (client): 1.5 is not a client id", FED_EINVAL},
        {"0,a,5\n", "bad.csv:1: column 2 (start_s): not a number", FED_EFORMAT},
        {"0,nan,5\n", "bad.csv:1: column 2 (start_s): not a number", FED_EFORMAT},
        {"0,1,inf\n", "bad.csv:1: column 3 (end_s): not a number", FED_EFORMAT},
        {"0,1,2,3\n", "bad.csv:1: more than 3 columns", FED_EFORMAT},
        {"0,1;2\n", "bad.csv:1: column 2 (start_s): unexpected ';'", FED_EFORMAT},
        {"# nothing\nclient,start_s,end_s\n", "bad.csv: no intervals", FED_EFORMAT},
        {"", "bad.csv: no intervals", FED_EFORMAT},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *bp = write_file("bad.csv", bad[i].text);
        fed_config c;
        sim_cfg(&c, "trace");
        snprintf(c.availability_trace, sizeof c.availability_trace, "%s", bp);
        fed_sysim *t = (fed_sysim *)1;
        int rc = fed_sysim_new(&t, &c, NULL, 6, 1000);
        if (rc != bad[i].code || !strstr(fed_last_error(), bad[i].want)) {
            fprintf(stderr, "case %zu: rc %d, error '%s', want '%s'\n", i, rc, fed_last_error(), bad[i].want);
            CHECK(0);
        }
        CHECK(t == NULL);
    }
    /* a line too long for the reader, and a file that is not there */
    char *big = malloc(3000);
    CHECK(big != NULL);
    memset(big, '1', 2998);
    big[2998] = '\n', big[2999] = 0;
    fed_config c;
    sim_cfg(&c, "trace");
    snprintf(c.availability_trace, sizeof c.availability_trace, "%s", write_file("long.csv", big));
    free(big);
    fed_sysim *t;
    CHECK_EQ_INT(fed_sysim_new(&t, &c, NULL, 6, 1000), FED_EFORMAT);
    CHECK(strstr(fed_last_error(), "long.csv:1: line longer than") != NULL);
    snprintf(c.availability_trace, sizeof c.availability_trace, "%s/missing.csv", dir);
    CHECK_EQ_INT(fed_sysim_new(&t, &c, NULL, 6, 1000), FED_EIO);
    CHECK(strstr(fed_last_error(), "missing.csv") != NULL);
}

/* Repository root: $FEDERATE_SOURCE_DIR, else two levels up from this file. */
static const char *source_dir(void) {
    const char *e = getenv("FEDERATE_SOURCE_DIR");
    if (e && *e) return e;
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s", __FILE__);
    char *p = strrchr(buf, '/');
    if (!p) return "..";
    *p = '\0';
    p = strrchr(buf, '/');
    if (!p) return ".";
    *p = '\0';
    return buf;
}

static void test_example_trace(void) {
    /* examples/availability-trace.csv: phones online at night */
    char path[4200];
    snprintf(path, sizeof path, "%s/examples/availability-trace.csv", source_dir());
    fed_sysim *s = trace_sim(path, 100);
    int night = 0, noon = 0, day2 = 0;
    for (int c = 0; c < 100; c++) {
        night += fed_sysim_online(s, c, 3 * 3600);
        noon += fed_sysim_online(s, c, 12 * 3600);
        day2 += fed_sysim_online(s, c, 86400 + 3 * 3600);
        CHECK(fed_sysim_next_online(s, c, 12 * 3600) < 2 * 86400);
    }
    printf("example trace: %d of 100 online at 03:00, %d at 12:00\n", night, noon);
    CHECK(night > 80 && noon < 40 && day2 == night);
    fed_sysim_free(s);
}

static void test_config_keys(void) {
    fed_config c;
    fed_config_default(&c);
    CHECK(!strcmp(c.availability_model, "periodic"));
    CHECK_EQ_INT(fed_config_set(&c, "availability_model", "bursty"), FED_EINVAL);
    CHECK(strstr(fed_last_error(), "availability_model") && strstr(fed_last_error(), "bursty") &&
          strstr(fed_last_error(), "markov"));
    CHECK_EQ_INT(fed_config_set(&c, "availability_mean_on_s", "0"), FED_EINVAL);
    CHECK(strstr(fed_last_error(), "availability_mean_on_s") != NULL);
    CHECK_EQ_INT(fed_config_set(&c, "availability_mean_off_s", "-3"), FED_EINVAL);
    CHECK_OK(fed_config_set(&c, "availability_mean_off_s", "42.5"));
    CHECK(c.availability_mean_off_s == 42.5);
    /* cross-key checks name both keys */
    CHECK_OK(fed_config_set(&c, "availability_model", "trace"));
    CHECK_OK(fed_config_set(&c, "device_profiles", "uniform"));
    CHECK_EQ_INT(fed_config_validate(&c), FED_EINVAL);
    CHECK(strstr(fed_last_error(), "availability_trace") != NULL);
    CHECK_OK(fed_config_set(&c, "availability_trace", "x.csv"));
    CHECK_OK(fed_config_validate(&c));
    CHECK_OK(fed_config_set(&c, "availability_model", "markov"));
    CHECK_EQ_INT(fed_config_validate(&c), FED_EINVAL);
    CHECK(strstr(fed_last_error(), "availability_trace is set") != NULL);
    CHECK_OK(fed_config_set(&c, "availability_trace", ""));
    CHECK_OK(fed_config_validate(&c));
    CHECK_OK(fed_config_set(&c, "device_profiles", "none"));
    CHECK_EQ_INT(fed_config_validate(&c), FED_EINVAL);
    CHECK(strstr(fed_last_error(), "device_profiles") != NULL);
    /* the keys round-trip through the YAML a run stores */
    CHECK_OK(fed_config_set(&c, "device_profiles", "uniform"));
    char *y = fed_config_to_yaml(&c);
    CHECK(y != NULL);
    fed_config d;
    fed_config_default(&d);
    CHECK_OK(fed_config_load_string(&d, y, strlen(y)));
    free(y);
    CHECK(!strcmp(d.availability_model, "markov") && d.availability_mean_off_s == 42.5);
    /* always: online whatever the periodic settings say */
    sim_cfg(&c, "always");
    c.availability = 0.1;
    fed_sysim *s;
    CHECK_OK(fed_sysim_new(&s, &c, NULL, 5, 1000));
    for (int i = 0; i < 5; i++) {
        CHECK(fed_sysim_online(s, i, 1234.5));
        CHECK(isinf(fed_sysim_next_offline(s, i, 7)));
    }
    fed_sysim_free(s);
    /* periodic: the device's own cycle, as before */
    sim_cfg(&c, "periodic");
    c.availability = 0.3;
    c.availability_period_s = 100;
    CHECK_OK(fed_sysim_new(&s, &c, NULL, 5, 1000));
    for (int i = 0; i < 5; i++)
        for (double t = 0; t < 300; t += 3.7) {
            CHECK_EQ_INT(fed_sysim_online(s, i, t), fed_device_online(&s->dev[i], 100, t));
            double on = fed_sysim_next_online(s, i, t), off = fed_sysim_next_offline(s, i, t);
            CHECK(fed_sysim_online(s, i, on) && on >= t && on - t <= 70 + 1e-6);
            CHECK(!fed_sysim_online(s, i, off) && off >= t && off - t <= 30 + 1e-6);
        }
    fed_sysim_free(s);
}

static fed_sysim *markov_sim(uint64_t seed, int n, double on, double off) {
    fed_config c;
    sim_cfg(&c, "markov");
    c.seed = seed;
    c.availability_mean_on_s = on;
    c.availability_mean_off_s = off;
    CHECK_OK(fed_config_validate(&c));
    fed_sysim *s;
    CHECK_OK(fed_sysim_new(&s, &c, NULL, n, 1000));
    return s;
}

static void test_markov_fraction(void) {
    /* on 30 s, off 10 s: online 3/4 of the time in the long run, and at any
     * fixed time (the chain starts stationary) */
    enum { N = 50 };
    const double T = 20000;
    fed_sysim *s = markov_sim(5, N, 30, 10);
    double on_time = 0, sojourn = 0;
    long stretches = 0, at0 = 0;
    for (int c = 0; c < N; c++) {
        at0 += fed_sysim_online(s, c, 0);
        double t = 0;
        while (t < T) {
            if (fed_sysim_online(s, c, t)) {
                double off = fed_sysim_next_offline(s, c, t);
                CHECK(off > t);
                CHECK(!fed_sysim_online(s, c, off));
                if (t > 0 && off < T) sojourn += off - t, stretches++;
                on_time += fmin(off, T) - t;
                t = off;
            } else {
                double on = fed_sysim_next_online(s, c, t);
                CHECK(on > t && fed_sysim_online(s, c, on));
                t = on;
            }
        }
    }
    double frac = on_time / (N * T), mean_on = sojourn / (double)stretches;
    printf("markov on 30 s / off 10 s: online fraction %.4f (0.75), mean online stretch %.2f s (30), %ld/%d "
           "online at t = 0\n", frac, mean_on, at0, N);
    CHECK_NEAR(frac, 0.75, 0.02);
    CHECK_NEAR(mean_on, 30, 2);
    CHECK(at0 > N / 2 && at0 < N);
    /* sampled on a grid the fraction agrees */
    long hits = 0, total = 0;
    for (int c = 0; c < N; c++)
        for (double t = 0.5; t < T; t += 13) hits += fed_sysim_online(s, c, t), total++;
    CHECK_NEAR((double)hits / (double)total, 0.75, 0.02);
    fed_sysim_free(s);
}

static void test_markov_determinism(void) {
    /* the same seed answers the same whatever the order of the queries, also
     * after the cache window moved far ahead (mean toggle 2 s: 1e5 s is ~5e4
     * toggles, many windows) */
    enum { N = 8, Q = 400 };
    static double t[Q];
    static int a[N][Q], b[N][Q];
    static double na[N][Q], nb[N][Q];
    fed_rng r;
    fed_rng_init(&r, 99, 0, 0, FED_RNG_USER);
    for (int q = 0; q < Q; q++) t[q] = q % 7 == 0 ? 1e5 * fed_rng_uniform(&r) : 300 * fed_rng_uniform(&r);
    fed_sysim *x = markov_sim(21, N, 3, 1), *y = markov_sim(21, N, 3, 1);
    for (int c = 0; c < N; c++)
        for (int q = 0; q < Q; q++) {
            a[c][q] = fed_sysim_online(x, c, t[q]);
            na[c][q] = fed_sysim_next_online(x, c, t[q]);
        }
    CHECK(fed_sysim_online(y, 3, 2e5) == fed_sysim_online(y, 3, 2e5));   /* y starts far ahead */
    for (int q = Q - 1; q >= 0; q--)
        for (int c = N - 1; c >= 0; c--) {
            nb[c][q] = fed_sysim_next_online(y, c, t[q]);
            b[c][q] = fed_sysim_online(y, c, t[q]);
        }
    CHECK(memcmp(a, b, sizeof a) == 0);
    CHECK(memcmp(na, nb, sizeof na) == 0);
    /* clients differ from each other, and another seed gives another chain */
    fed_sysim *z = markov_sim(22, N, 3, 1);
    int same_client = 0, same_seed = 0;
    for (int q = 0; q < Q; q++) {
        same_client += a[0][q] == a[1][q];
        same_seed += a[0][q] == fed_sysim_online(z, 0, t[q]);
    }
    CHECK(same_client < Q - 20);
    CHECK(same_seed < Q - 20);
    fed_sysim_free(x);
    fed_sysim_free(y);
    fed_sysim_free(z);
}

/* ---- runs: offline devices are never picked ------------------------------ */

static void base(fed_config *c) {
    fed_config_default(c);
    snprintf(c->name, sizeof c->name, "avail");
    c->num_clients = 60;
    c->clients_per_round = 5;
    c->num_rounds = 4;
    snprintf(c->model, sizeof c->model, "mlp");
    snprintf(c->hidden, sizeof c->hidden, "16");
    c->local_epochs = 1;
    c->batch_size = 20;
    c->seed = 3;
    c->evaluation_every = 100;
    c->threads = 2;
    snprintf(c->device_profiles, sizeof c->device_profiles, "lognormal");
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

static void test_runs(void) {
    /* a trace in which clients 30.. are offline for the first half of each
     * 1e6 s (rounds last seconds), and 0..29 are always on */
    char text[4096];
    size_t len = 0;
    len += (size_t)snprintf(text + len, sizeof text - len, "client,start_s,end_s\n");
    for (int i = 0; i < 60; i++)
        len += (size_t)snprintf(text + len, sizeof text - len, "%d,%s,1e6\n", i, i < 30 ? "0" : "5e5");
    const char *path = write_file("half.csv", text);
    const char *strategies[] = {"fedavg", "fedbuff"};
    for (int k = 0; k < 2; k++) {
        fed_config c;
        base(&c);
        snprintf(c.strategy, sizeof c.strategy, "%s", strategies[k]);
        snprintf(c.availability_model, sizeof c.availability_model, "trace");
        snprintf(c.availability_trace, sizeof c.availability_trace, "%s", path);
        c.buffer_size = 3;
        c.concurrency = 5;
        fed_store *st = open_store("trace.db");
        fed_run_opts o = {0};
        o.store = st;
        fed_run_result res;
        CHECK_OK(fed_run(&c, &o, &res));
        CHECK_EQ_INT(res.rounds_done, 4);
        int seen = 0;
        for (int r = 1; r <= 4; r++) {
            fed_client_metrics *cm;
            int n;
            CHECK_OK(fed_store_get_clients(st, res.run_id, r, &cm, &n));
            for (int i = 0; i < n; i++) CHECK(cm[i].client < 30);
            seen += n;
            free(cm);
        }
        CHECK(seen >= 12);
        printf("%s with a trace: %d client updates, all from online devices; simulated %.1f s\n", strategies[k], seen,
               res.sim_time_s);
        fed_run_result_free(&res);
        fed_store_close(st);
    }

    /* markov: every selected client was online at its round's start */
    fed_config c;
    base(&c);
    snprintf(c.availability_model, sizeof c.availability_model, "markov");
    c.availability_mean_on_s = 20;
    c.availability_mean_off_s = 20;
    c.num_rounds = 5;
    fed_store *st = open_store("markov.db");
    fed_run_opts o = {0};
    o.store = st;
    fed_run_result res;
    CHECK_OK(fed_run(&c, &o, &res));
    fed_round_metrics *rm;
    int nr;
    CHECK_OK(fed_store_get_rounds(st, res.run_id, &rm, &nr));
    CHECK_EQ_INT(nr, 5);
    fed_sysim *s;
    CHECK_OK(fed_sysim_new(&s, &c, NULL, c.num_clients, 1000));
    double start = 0;
    int offline_somewhere = 0;
    for (int r = 0; r < nr; r++) {
        fed_client_metrics *cm;
        int n;
        CHECK_OK(fed_store_get_clients(st, res.run_id, r + 1, &cm, &n));
        CHECK_EQ_INT(n, 5);
        for (int i = 0; i < n; i++) CHECK(fed_sysim_online(s, cm[i].client, start));
        for (int i = 0; i < c.num_clients; i++) offline_somewhere += !fed_sysim_online(s, i, start);
        free(cm);
        start += rm[r].sim_time_s;
    }
    CHECK(offline_somewhere > 0);   /* the test means something */
    fed_sysim_free(s);
    free(rm);
    fed_run_result_free(&res);
    fed_store_close(st);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/federate_test_sim_avail_%d", (int)getpid());
    CHECK(mkdir(dir, 0755) == 0 || access(dir, W_OK) == 0);
    test_trace();
    test_example_trace();
    test_config_keys();
    test_markov_fraction();
    test_markov_determinism();
    test_runs();
    TEST_PASS("test_sim_avail");
}
