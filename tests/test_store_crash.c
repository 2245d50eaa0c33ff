/* Checkpoints survive kill -9: a child process resumes from the latest
 * checkpoint and writes new ones in a loop until the parent SIGKILLs it at a
 * random moment; the store must then open and hold an intact checkpoint. */
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "check.h"
#include "federate/error.h"
#include "federate/store.h"

/* Sizes vary with the round, and large enough that a kill often lands mid-write. */
static size_t model_len(int round) { return 200000 + (size_t)(round % 13) * 4099; }
static size_t state_len(int round) { return 100 + (size_t)(round % 5) * 17; }

static unsigned char byte_at(int round, size_t i, int salt) {
    return (unsigned char)(i % 5 == 0 ? 0 : (i * 2654435761u + (size_t)round * 97 + (size_t)salt) >> 7);
}

static unsigned char *make(int round, size_t n, int salt) {
    unsigned char *b = malloc(n);
    if (!b) return NULL;
    for (size_t i = 0; i < n; i++) b[i] = byte_at(round, i, salt);
    return b;
}

static int matches(const unsigned char *b, size_t n, int round, int salt) {
    for (size_t i = 0; i < n; i++)
        if (b[i] != byte_at(round, i, salt)) return 0;
    return 1;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* The child: the driver's resume path (checkpoint, truncate, redo) in a loop.
 * It reports its first commit on the pipe so every kill lands after progress. */
static void child(const char *db, int64_t run, int wfd) {
    fed_store *s;
    if (fed_store_open(&s, db)) _exit(2);
    int round = 0;
    void *m = NULL, *st = NULL;
    size_t ml, sl;
    int rc = fed_store_load_checkpoint(s, run, &round, &m, &ml, &st, &sl);
    free(m);
    free(st);
    if (rc == FED_ENOTFOUND) round = 0;
    else if (rc) _exit(3);
    if (fed_store_truncate(s, run, round)) _exit(4);
    for (int i = 0; i < 100000; i++) {
        round++;
        fed_round_metrics rm;
        memset(&rm, 0, sizeof rm);
        rm.round = round;
        rm.test_accuracy = round % 2 ? 0.001 * round : NAN;
        rm.test_loss = NAN;
        rm.train_loss_mean = 1.0;
        rm.selected = 3;
        if (fed_store_add_round(s, run, &rm)) _exit(5);
        unsigned char *mb = make(round, model_len(round), 1), *sb = make(round, state_len(round), 2);
        if (!mb || !sb) _exit(6);
        if (fed_store_save_checkpoint(s, run, round, mb, model_len(round), sb, state_len(round))) _exit(7);
        free(mb);
        free(sb);
        if (i == 0 && write(wfd, "x", 1) != 1) _exit(8);
    }
    fed_store_close(s);
    _exit(0);
}

int main(void) {
    char dir[64], db[128];
    snprintf(dir, sizeof dir, "/tmp/federate-crash-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    snprintf(db, sizeof db, "%s/crash.db", dir);

    fed_store *s;
    int64_t run;
    CHECK_OK(fed_store_open(&s, db));
    CHECK_OK(fed_store_run_begin(s, "crash", "rounds: 1000\n", &run));
    fed_store_close(s);  /* no SQLite connection may cross fork() */

    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    srand(seed);
    double t0 = now();
    int last = 0, kills = 0;
    for (int it = 0; it < 12 && now() - t0 < 3.0; it++) {
        int fds[2];
        CHECK(pipe(fds) == 0);
        fflush(NULL);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            child(db, run, fds[1]);
        }
        close(fds[1]);
        struct pollfd p = {.fd = fds[0], .events = POLLIN};
        int ready = poll(&p, 1, 2000);
        char x;
        if (ready == 1 && read(fds[0], &x, 1) != 1) ready = 0;
        /* then a random moment among the following writes */
        if (ready == 1) usleep((useconds_t)(rand() % 30000));
        kill(pid, SIGKILL);
        int status = 0;
        CHECK(waitpid(pid, &status, 0) == pid);
        close(fds[0]);
        if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)) {
            fprintf(stderr, "child exited with status %d (seed %u)\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                    seed);
            CHECK(0);
        }
        CHECK(ready == 1);
        kills++;

        CHECK_OK(fed_store_open(&s, db));
        int round = -1;
        void *m, *st;
        size_t ml, sl;
        CHECK_OK(fed_store_load_checkpoint(s, run, &round, &m, &ml, &st, &sl));
        CHECK(round > last);  /* every child committed at least one new checkpoint */
        CHECK_EQ_INT(ml, model_len(round));
        CHECK_EQ_INT(sl, state_len(round));
        CHECK(matches(m, ml, round, 1));
        CHECK(matches(st, sl, round, 2));
        free(m);
        free(st);
        /* the round rows are at least as far along as the checkpoint */
        fed_run_info info;
        CHECK_OK(fed_store_get_run(s, run, &info));
        CHECK(info.rounds_done >= round);
        fed_run_info_free(&info);
        fed_round_metrics *rounds;
        int n;
        CHECK_OK(fed_store_get_rounds(s, run, &rounds, &n));
        CHECK(n >= round);
        for (int i = 0; i < n; i++) CHECK_EQ_INT(rounds[i].round, i + 1);
        free(rounds);
        fed_store_close(s);
        last = round;
    }
    CHECK(kills >= 3);

    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    TEST_PASS("test_store_crash");
}
