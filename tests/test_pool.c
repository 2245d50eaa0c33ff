/* Thread pool contract: every task runs exactly once with a worker id in range,
 * runs complete back to back without deadlock (10000 tiny runs, the shape of a
 * training step), NULL and one-thread pools run inline, nested runs don't hang. */
#include "check.h"
#include "federate/error.h"
#include "federate/pool.h"
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

typedef struct {
    atomic_int *count;      /* per task */
    atomic_int bad_worker;
    int nthreads;
    pthread_t caller;
    atomic_int caller_not_worker0;
} count_ctx;

static void count_task(void *vctx, size_t task, int worker) {
    count_ctx *c = vctx;
    atomic_fetch_add_explicit(&c->count[task], 1, memory_order_relaxed);
    if (worker < 0 || worker >= c->nthreads) atomic_store(&c->bad_worker, 1);
    /* Worker 0 is the calling thread, and only the calling thread. */
    if ((worker == 0) != (pthread_equal(pthread_self(), c->caller) != 0))
        atomic_store(&c->caller_not_worker0, 1);
}

static void check_exactly_once(fed_pool *p, int nthreads, size_t n_tasks) {
    count_ctx c;
    c.count = calloc(n_tasks ? n_tasks : 1, sizeof *c.count);
    CHECK(c.count);
    atomic_init(&c.bad_worker, 0);
    atomic_init(&c.caller_not_worker0, 0);
    c.nthreads = nthreads;
    c.caller = pthread_self();
    for (int rep = 0; rep < 3; rep++) {
        fed_pool_run(p, n_tasks, count_task, &c);
        /* fed_pool_run returned: every task's effect must be visible here. */
        for (size_t t = 0; t < n_tasks; t++) CHECK_EQ_INT(atomic_load(&c.count[t]), rep + 1);
    }
    CHECK_EQ_INT(atomic_load(&c.bad_worker), 0);
    CHECK_EQ_INT(atomic_load(&c.caller_not_worker0), 0);
    free(c.count);
}

/* Plain (non-atomic) writes by tasks, read by the caller after the run: the pool's
 * completion must order them (ThreadSanitizer checks this under -fsanitize=thread). */
typedef struct {
    long *slot;
    long base;
} plain_ctx;

static void plain_task(void *vctx, size_t task, int worker) {
    (void)worker;
    plain_ctx *c = vctx;
    c->slot[task] = c->base + (long)task;
}

typedef struct {
    atomic_long sum;
} tiny_ctx;

static void tiny_task(void *vctx, size_t task, int worker) {
    (void)worker;
    tiny_ctx *c = vctx;
    atomic_fetch_add_explicit(&c->sum, (long)task + 1, memory_order_relaxed);
}

typedef struct {
    fed_pool *pool;
    atomic_int inner_runs;
    int nthreads;
    atomic_int bad_worker;
} nested_ctx;

static void inner_task(void *vctx, size_t task, int worker) {
    (void)task;
    nested_ctx *c = vctx;
    if (worker < 0 || worker >= c->nthreads) atomic_store(&c->bad_worker, 1);
    atomic_fetch_add(&c->inner_runs, 1);
}

static void outer_task(void *vctx, size_t task, int worker) {
    (void)task;
    (void)worker;
    nested_ctx *c = vctx;
    /* Not allowed by the contract, but must not deadlock: runs inline. */
    fed_pool_run(c->pool, 5, inner_task, c);
}

/* n_tasks == nthreads tasks that each wait until all have started: completes only
 * if every worker really takes a task in every run (a lost wake-up would hang
 * here, so the wait gives up after 20 s and the test fails instead). */
typedef struct {
    atomic_int arrived;
    int nthreads;
    atomic_int timed_out;
    atomic_int worker_seen[8];
} barrier_ctx;

static double now_s(void);

static void barrier_task(void *vctx, size_t task, int worker) {
    (void)task;
    barrier_ctx *c = vctx;
    atomic_fetch_add(&c->worker_seen[worker], 1);
    atomic_fetch_add(&c->arrived, 1);
    double t0 = now_s();
    while (atomic_load(&c->arrived) < c->nthreads) {
        if (now_s() - t0 > 20.0) {
            atomic_store(&c->timed_out, 1);
            return;
        }
        sched_yield();
    }
}

static void check_all_workers_help(fed_pool *p, int nthreads, int reps, long sleep_ns) {
    barrier_ctx c;
    c.nthreads = nthreads;
    atomic_init(&c.timed_out, 0);
    for (int w = 0; w < 8; w++) atomic_init(&c.worker_seen[w], 0);
    for (int rep = 0; rep < reps; rep++) {
        atomic_init(&c.arrived, 0);
        if (sleep_ns) {
            struct timespec ts = {0, sleep_ns};
            nanosleep(&ts, NULL);
        }
        fed_pool_run(p, (size_t)nthreads, barrier_task, &c);
        CHECK_EQ_INT(atomic_load(&c.timed_out), 0);
        CHECK_EQ_INT(atomic_load(&c.arrived), nthreads);
    }
    /* Each task ran on a distinct worker, so every worker ran once per run. */
    for (int w = 0; w < nthreads; w++) CHECK_EQ_INT(atomic_load(&c.worker_seen[w]), reps);
}

/* Two application threads sharing one pool: runs are serialized, not mixed. */
typedef struct {
    fed_pool *pool;
    int failed;
} submitter_arg;

static void *submitter(void *varg) {
    submitter_arg *a = varg;
    for (int rep = 0; rep < 300; rep++) {
        long slot[97];
        plain_ctx pc = {slot, rep};
        fed_pool_run(a->pool, 97, plain_task, &pc);
        for (int i = 0; i < 97; i++)
            if (slot[i] != rep + i) a->failed = 1;
    }
    return NULL;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(void) {
    fed_blas_single_thread();

    /* NULL pool: inline, worker 0, exactly once. */
    CHECK_EQ_INT(fed_pool_size(NULL), 1);
    check_exactly_once(NULL, 1, 0);
    check_exactly_once(NULL, 1, 1);
    check_exactly_once(NULL, 1, 1000);

    /* Create and free without any run; free(NULL) is a no-op. */
    for (int n = 0; n <= 4; n++) {
        fed_pool *p = NULL;
        CHECK_OK(fed_pool_new(&p, n));
        CHECK(p != NULL);
        CHECK_EQ_INT(fed_pool_size(p), n < 1 ? 1 : n);
        fed_pool_free(p);
    }
    fed_pool_free(NULL);
    CHECK(fed_pool_new(NULL, 2) == FED_EINVAL);
    fed_pool *bad = (fed_pool *)&bad;
    CHECK(fed_pool_new(&bad, 1 << 20) < 0);
    CHECK(bad == NULL);

    int sizes[] = {1, 2, 4};
    size_t tasks[] = {0, 1, 3, 1000};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        fed_pool *p;
        CHECK_OK(fed_pool_new(&p, sizes[s]));
        for (size_t t = 0; t < sizeof tasks / sizeof *tasks; t++) check_exactly_once(p, sizes[s], tasks[t]);

        /* Plain memory written by tasks is visible after the run. */
        long slot[257];
        plain_ctx pc = {slot, 0};
        for (int rep = 0; rep < 50; rep++) {
            pc.base = rep * 1000;
            fed_pool_run(p, 257, plain_task, &pc);
            for (int i = 0; i < 257; i++) CHECK_EQ_INT(slot[i], rep * 1000 + i);
        }

        /* 10000 back-to-back tiny runs: no lost wake-up, no deadlock. */
        tiny_ctx tc;
        atomic_init(&tc.sum, 0);
        double t0 = now_s();
        for (int rep = 0; rep < 10000; rep++) fed_pool_run(p, (size_t)sizes[s], tiny_task, &tc);
        double dt = now_s() - t0;
        long n = sizes[s];
        CHECK_EQ_INT(atomic_load(&tc.sum), 10000L * n * (n + 1) / 2);
        printf("  pool %d: %.2f us per run of %d tiny tasks\n", sizes[s], dt / 10000 * 1e6, sizes[s]);

        /* Runs separated by pauses long enough for workers to fall asleep. */
        for (int rep = 0; rep < 20; rep++) {
            struct timespec ts = {0, 5 * 1000 * 1000};
            nanosleep(&ts, NULL);
            check_exactly_once(p, sizes[s], 64);
        }

        /* Every worker takes part: back to back (spinning workers), and after
         * pauses that put them to sleep (condition-variable wake-up). */
        check_all_workers_help(p, sizes[s], 1000, 0);
        check_all_workers_help(p, sizes[s], 30, 5 * 1000 * 1000);

        /* A task that submits to its own pool runs the inner loop inline. */
        nested_ctx nc;
        nc.pool = p;
        nc.nthreads = sizes[s];
        atomic_init(&nc.inner_runs, 0);
        atomic_init(&nc.bad_worker, 0);
        fed_pool_run(p, 8, outer_task, &nc);
        CHECK_EQ_INT(atomic_load(&nc.inner_runs), 8 * 5);
        CHECK_EQ_INT(atomic_load(&nc.bad_worker), 0);

        fed_pool_free(p);
    }

    {
        fed_pool *p;
        CHECK_OK(fed_pool_new(&p, 3));
        pthread_t th[2];
        submitter_arg args[2] = {{p, 0}, {p, 0}};
        for (int i = 0; i < 2; i++) CHECK(pthread_create(&th[i], NULL, submitter, &args[i]) == 0);
        for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
        CHECK(!args[0].failed && !args[1].failed);
        fed_pool_free(p);
    }

    /* Many pools alive at once, each used and freed (thread start/stop paths). */
    fed_pool *ps[8];
    for (int i = 0; i < 8; i++) CHECK_OK(fed_pool_new(&ps[i], 3));
    for (int i = 0; i < 8; i++) check_exactly_once(ps[i], 3, 100);
    for (int i = 0; i < 8; i++) fed_pool_free(ps[i]);

    TEST_PASS("test_pool");
}
