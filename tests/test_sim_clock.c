/* The virtual clock: task-time arithmetic on tiny profiles, deadline budgets,
 * availability traces, FedBuff's staleness weights pinned, and device profile
 * files (a good one parsed, bad ones refused with errors that say where). */
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
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    fputs(text, f);
    fclose(f);
    return path;
}

static void test_arithmetic(void) {
    fed_device d = {.speed = 100, .up = 1000, .down = 4000, .latency = 0.5, .availability = 1, .phase = 0};
    /* 2000 B down / 4000 + 0.5 + 300 samples / 100 + 500 B up / 1000 + 0.5 */
    CHECK_NEAR(fed_device_task_time(&d, 2000, 300, 500), 0.5 + 0.5 + 3.0 + 0.5 + 0.5, 1e-12);
    /* 25 examples, batch 10: 3 steps per epoch (10, 10, 5) */
    CHECK_EQ_INT(fed_task_steps(25, 10, 2, 0), 6);
    CHECK_EQ_INT(fed_task_steps(25, 10, 2, 4), 4);
    CHECK_NEAR(fed_task_samples(25, 10, 3), 25, 0);
    CHECK_NEAR(fed_task_samples(25, 10, 4), 35, 0);
    CHECK_NEAR(fed_task_samples(25, 10, 6), 50, 0);
    CHECK_NEAR(fed_task_samples(25, 10, 0), 0, 0);
    /* budget 5 s, transfers 2 s: 3 s x 100 samples/s = 300 samples = 12 full
     * epochs of 25 -> 36 steps, no remainder */
    CHECK_EQ_INT(fed_device_steps_within(&d, 5.0, 2000, 500, 25, 10), 36);
    /* 2.35 s of compute = 235 samples = 9 epochs (225) + 10 -> 27 + 1 steps */
    CHECK_EQ_INT(fed_device_steps_within(&d, 4.35, 2000, 500, 25, 10), 28);
    /* no time for anything */
    CHECK_EQ_INT(fed_device_steps_within(&d, 1.9, 2000, 500, 25, 10), 0);
    /* what fits, fits */
    long s = fed_device_steps_within(&d, 4.35, 2000, 500, 25, 10);
    CHECK(fed_device_task_time(&d, 2000, fed_task_samples(25, 10, s), 500) <= 4.35 + 1e-12);
    CHECK(fed_device_task_time(&d, 2000, fed_task_samples(25, 10, s + 1), 500) > 4.35);
}

static void test_availability(void) {
    /* online for the first 30% of a 100 s cycle, shifted by phase 0.5 */
    fed_device d = {.speed = 1, .up = 1, .down = 1, .availability = 0.3, .phase = 0.5};
    CHECK(!fed_device_online(&d, 100, 0));     /* position 0.5 */
    CHECK(!fed_device_online(&d, 100, 49));    /* 0.99 */
    CHECK(fed_device_online(&d, 100, 50));     /* 0.0 */
    CHECK(fed_device_online(&d, 100, 79));     /* 0.29 */
    CHECK(!fed_device_online(&d, 100, 81));
    CHECK(fed_device_online(&d, 100, 150));
    double t = fed_device_next_online(&d, 100, 10);
    CHECK(t >= 50 - 1e-6 && t <= 50 + 1e-3);
    CHECK(fed_device_online(&d, 100, t));
    CHECK_NEAR(fed_device_next_online(&d, 100, 60), 60, 0);
    fed_device on = {.availability = 1, .phase = 0.7};
    for (int i = 0; i < 10; i++) CHECK(fed_device_online(&on, 100, i * 37.0));
}

static void test_staleness(void) {
    CHECK_NEAR(fed_staleness_weight("constant", 0.5, 4, 7), 1.0, 0);
    CHECK_NEAR(fed_staleness_weight("polynomial", 0.5, 4, 0), 1.0, 0);
    CHECK_NEAR(fed_staleness_weight("polynomial", 0.5, 4, 3), 0.5, 1e-15);          /* (1+3)^-0.5 */
    CHECK_NEAR(fed_staleness_weight("polynomial", 0.5, 4, 8), 1.0 / 3.0, 1e-15);    /* 9^-0.5 */
    CHECK_NEAR(fed_staleness_weight("polynomial", 1.0, 4, 1), 0.5, 1e-15);
    CHECK_NEAR(fed_staleness_weight("hinge", 10, 4, 4), 1.0, 0);
    CHECK_NEAR(fed_staleness_weight("hinge", 10, 4, 5), 1.0 / 11.0, 1e-15);         /* 1/(10*1+1) */
    CHECK_NEAR(fed_staleness_weight("hinge", 0.5, 2, 6), 1.0 / 3.0, 1e-15);         /* 1/(0.5*4+1) */
    CHECK(isnan(fed_staleness_weight("polynomial", 0.5, 4, -1)));
    CHECK(isnan(fed_staleness_weight("exponential", 0.5, 4, 1)));
}

static void test_profile_file(void) {
    fed_device dev[3];
    const char *good = write_file("good.csv",
                                  "# measured phones\n"
                                  "client,speed,up,down,latency,availability,failure\n"
                                  "2, 150, 1e6, 5e6, 0.2\n"
                                  "0,300,2000000,8000000,0.1,0.5,0.1\n"
                                  "1,50,5e5,1e6,0.3,1\r\n");
    CHECK_OK(fed_device_profiles_load(good, 3, dev));
    CHECK_NEAR(dev[0].speed, 300, 0);
    CHECK_NEAR(dev[0].availability, 0.5, 0);
    CHECK_NEAR(dev[0].failure, 0.1, 0);
    CHECK_NEAR(dev[1].up, 5e5, 0);
    CHECK_NEAR(dev[1].availability, 1, 0);
    CHECK_NEAR(dev[2].latency, 0.2, 0);
    CHECK_NEAR(dev[2].availability, 1, 0);
    CHECK_NEAR(dev[2].failure, 0, 0);

    struct { const char *name, *text, *needle; int code; } bad[] = {
        {"missing.csv", "0,1,1,1,0\n1,1,1,1,0\n", "client 2 has none", FED_EINVAL},
        {"dup.csv", "0,1,1,1,0\n0,1,1,1,0\n", ":2: client 0 has a second row", FED_EINVAL},
        {"word.csv", "0,1,1,1,0\n1,fast,1,1,0\n", ":2: column 2 (speed): not a number", FED_EFORMAT},
        {"zero.csv", "0,0,1,1,0\n", ":1: column 2 (speed): 0 is out of range", FED_EINVAL},
        {"short.csv", "0,1,1\n", ":1: 3 columns, need at least 5", FED_EFORMAT},
        {"id.csv", "7,1,1,1,0\n", ":1: client 7 is not an id in [0, 3)", FED_EINVAL},
        {"avail.csv", "0,1,1,1,0,1.5\n", "column 6 (availability): 1.5 is out of range", FED_EINVAL},
        {"long.csv", "0,1,1,1,0,1,0,9\n", "more than 7 columns", FED_EFORMAT},
        {"junk.csv", "0,1,1,1,0 x\n", "column 5 (latency): unexpected 'x'", FED_EFORMAT},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *p = write_file(bad[i].name, bad[i].text);
        int rc = fed_device_profiles_load(p, 3, dev);
        if (rc != bad[i].code || !strstr(fed_last_error(), bad[i].needle)) {
            fprintf(stderr, "%s: rc %d, error '%s', wanted '%s'\n", bad[i].name, rc, fed_last_error(), bad[i].needle);
            CHECK(0);
        }
    }
    char nofile[600];
    snprintf(nofile, sizeof nofile, "%s/nope.csv", dir);
    CHECK_EQ_INT(fed_device_profiles_load(nofile, 3, dev), FED_EIO);
    CHECK(strstr(fed_last_error(), "nope.csv") != NULL);
}

static void test_draws(void) {
    fed_config c;
    fed_config_default(&c);
    c.seed = 5;
    enum { N = 400 };
    static fed_device a[N], b[N];
    snprintf(c.device_profiles, sizeof c.device_profiles, "lognormal");
    CHECK_OK(fed_device_profiles(&c, N, a));
    CHECK_OK(fed_device_profiles(&c, N, b));
    CHECK(memcmp(a, b, sizeof a) == 0);   /* deterministic in the seed */
    double ls = 0;
    int slow = 0, fast = 0;
    for (int i = 0; i < N; i++) {
        CHECK(a[i].speed > 0 && a[i].up > 0 && a[i].down > 0 && a[i].latency > 0);
        CHECK(a[i].phase >= 0 && a[i].phase < 1);
        ls += log(a[i].speed);
        slow += a[i].speed < 100;
        fast += a[i].speed > 1000;
    }
    CHECK_NEAR(exp(ls / N), 300, 60);    /* median around 300 samples/s */
    CHECK(slow > 20 && fast > 20);        /* sigma 1: a wide spread */
    snprintf(c.device_profiles, sizeof c.device_profiles, "uniform");
    CHECK_OK(fed_device_profiles(&c, N, a));
    for (int i = 0; i < N; i++) {
        CHECK(a[i].speed >= 100 && a[i].speed <= 1000);
        CHECK(a[i].up >= 1e6 && a[i].up <= 1e7);
        CHECK(a[i].down >= 2 * a[i].up && a[i].down <= 5 * a[i].up);
    }
    c.seed = 6;
    CHECK_OK(fed_device_profiles(&c, N, b));
    CHECK(memcmp(a, b, sizeof a) != 0);
    /* config: file without a path, deadline without devices */
    fed_config d;
    fed_config_default(&d);
    snprintf(d.device_profiles, sizeof d.device_profiles, "file");
    CHECK_EQ_INT(fed_config_validate(&d), FED_EINVAL);
    CHECK(strstr(fed_last_error(), "device_profiles_file") != NULL);
    fed_config_default(&d);
    d.round_deadline_s = 10;
    CHECK_EQ_INT(fed_config_validate(&d), FED_EINVAL);
    CHECK_EQ_INT(fed_config_set(&d, "staleness", "exponential"), FED_EINVAL);
    CHECK_EQ_INT(fed_config_set(&d, "over_selection", "-1"), FED_EINVAL);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/federate_test_sim_clock_%d", (int)getpid());
    CHECK(mkdir(dir, 0755) == 0 || access(dir, W_OK) == 0);
    test_arithmetic();
    test_availability();
    test_staleness();
    test_profile_file();
    test_draws();
    TEST_PASS("test_sim_clock");
}
