/* Fixed thread pool for data-parallel loops (include/federate/pool.h). A training
 * step calls fed_pool_run ~30 times (once per layer per pass), so dispatch must be
 * cheap: workers and the caller spin briefly on atomics before sleeping. */
#include "federate/pool.h"
#include "federate/error.h"
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define CPU_RELAX() __asm__ __volatile__("yield" ::: "memory")
#else
#define CPU_RELAX() ((void)0)
#endif

/* How long to wait actively before sleeping: SPIN_PAUSE pause instructions (a few
 * microseconds: the serial gap between two layers' runs), then SPIN_YIELD
 * sched_yield()s. Yielding costs well under a microsecond when the core is free,
 * and hands the core over when it is not (more threads than cores, or ctest -j):
 * pause-only spinning measured 100-300 us per tiny run on 4 threads x 2 cores.
 * After that (roughly a millisecond idle) the thread sleeps on a condition. */
#define SPIN_PAUSE 100
#define SPIN_YIELD 1000
#define SPIN_ITERS (SPIN_PAUSE + SPIN_YIELD)
#define MAX_THREADS 1024

/* Protocol. One 64-bit state word: generation (high 48 bits), OPEN flag, and the
 * number of workers that joined the current run (low 15 bits).
 *   caller: writes the job (fn, ctx, n_tasks) and next = 0, then publishes
 *           state = (gen + 1, OPEN, 0). It claims tasks like any worker; when
 *           none is left it clears OPEN and waits for the joined count to reach 0.
 *   worker: on a new generation, joins by CAS (count + 1) only while OPEN, runs
 *           tasks until next passes n_tasks, then leaves (count - 1).
 * A worker that wakes after the run was closed skips it, so the caller never
 * waits for a thread that was asleep or descheduled and did no work: a small run
 * costs what the caller alone would take, plus whatever help arrived in time.
 * Ordering: the join CAS (acquire) reads the publishing store (release), so the
 * job is visible; every leave is a release RMW and the caller's count == 0 load
 * (acquire) reads the end of their release sequence, so all task writes are
 * visible when fed_pool_run returns and nobody reads the job when it is rewritten.
 * Sleeping uses a Dekker-style handshake on seq_cst atomics: a sleeper publishes
 * itself (sleepers / caller_waiting) and then re-checks its condition under the
 * mutex; the waker changes the condition and then checks for sleepers, taking the
 * mutex before signalling. One of the two always sees the other's write, and the
 * mutex makes the signal land after the sleeper is actually waiting. */
#define ST_COUNT_MASK 0x7fffull
#define ST_OPEN 0x8000ull
#define ST_GEN_SHIFT 16

struct fed_pool {
    int n;                         /* workers including the caller */
    pthread_t *threads;            /* n - 1 */
    int started;                   /* threads actually created */

    fed_pool_fn fn;                /* current job, written only between runs */
    void *ctx;
    size_t n_tasks;

    _Alignas(64) atomic_size_t next;       /* next task to claim */
    _Alignas(64) atomic_uint_least64_t state;
    _Alignas(64) atomic_int sleepers;      /* workers parked on cv_work */
    atomic_int caller_waiting;             /* caller parked on cv_done */
    atomic_int stop;

    pthread_mutex_t mu;
    pthread_cond_t cv_work;
    pthread_cond_t cv_done;
    pthread_mutex_t submit;        /* serializes runs from different threads */
};

typedef struct {
    fed_pool *p;
    int id;
} worker_arg;

/* The pool this thread is currently running a task for: a task that submits to
 * its own pool would deadlock, so such a nested run executes inline instead. */
static _Thread_local const fed_pool *tls_pool;
static _Thread_local int tls_worker;

static inline void backoff(int i) {
    if (i < SPIN_PAUSE) CPU_RELAX();
    else sched_yield();
}

static inline uint64_t gen_of(uint64_t s) { return s >> ST_GEN_SHIFT; }

static void run_tasks(fed_pool *p, int worker) {
    fed_pool_fn fn = p->fn;
    void *ctx = p->ctx;
    size_t n = p->n_tasks;
    for (;;) {
        size_t t = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
        if (t >= n) break;
        fn(ctx, t, worker);
    }
}

/* Waits until the generation differs from seen (returns the state) or stop is
 * set (returns a state whose generation equals seen). */
static uint64_t wait_new_gen(fed_pool *p, uint64_t seen) {
    uint64_t s = 0;
    for (int i = 0; i < SPIN_ITERS; i++) {
        s = atomic_load_explicit(&p->state, memory_order_acquire);
        if (gen_of(s) != seen || atomic_load_explicit(&p->stop, memory_order_relaxed)) return s;
        backoff(i);
    }
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->sleepers, 1);
    while (gen_of(s = atomic_load(&p->state)) == seen && !atomic_load(&p->stop))
        pthread_cond_wait(&p->cv_work, &p->mu);
    atomic_fetch_sub(&p->sleepers, 1);
    pthread_mutex_unlock(&p->mu);
    return s;
}

static void *worker_main(void *arg) {
    worker_arg *wa = arg;
    fed_pool *p = wa->p;
    int id = wa->id;
    free(wa);
    tls_pool = p;
    tls_worker = id;
    uint64_t seen = 0;
    for (;;) {
        uint64_t s = wait_new_gen(p, seen);
        if (gen_of(s) == seen) break; /* stop, and no run pending */
        /* Join while the run is open; a closed or superseded run is skipped. */
        int joined = 0;
        while ((s & ST_OPEN) && gen_of(s) != seen) {
            if (atomic_compare_exchange_weak_explicit(&p->state, &s, s + 1, memory_order_acquire,
                                                      memory_order_acquire)) {
                joined = 1;
                break;
            }
        }
        seen = gen_of(s);
        if (!joined) continue;
        run_tasks(p, id);
        uint64_t prev = atomic_fetch_sub(&p->state, 1);
        if ((prev & ST_COUNT_MASK) == 1 && !(prev & ST_OPEN) && atomic_load(&p->caller_waiting)) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->cv_done);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

void fed_pool_free(fed_pool *p) {
    if (!p) return;
    if (p->started > 0) {
        /* Under the mutex: a worker checks stop under it before it waits. */
        pthread_mutex_lock(&p->mu);
        atomic_store(&p->stop, 1);
        pthread_cond_broadcast(&p->cv_work);
        pthread_mutex_unlock(&p->mu);
        for (int i = 0; i < p->started; i++) pthread_join(p->threads[i], NULL);
    }
    pthread_mutex_destroy(&p->mu);
    pthread_mutex_destroy(&p->submit);
    pthread_cond_destroy(&p->cv_work);
    pthread_cond_destroy(&p->cv_done);
    free(p->threads);
    free(p);
}

int fed_pool_new(fed_pool **out, int nthreads) {
    if (!out) return fed_error(FED_EINVAL, "fed_pool_new: out is NULL");
    *out = NULL;
    if (nthreads < 1) nthreads = 1;
    if (nthreads > MAX_THREADS)
        return fed_error(FED_ERANGE, "fed_pool_new: %d threads (at most %d)", nthreads, MAX_THREADS);
    /* aligned_alloc: the hot atomics sit on their own cache lines (no false
     * sharing between the task counter and the generation workers poll). */
    fed_pool *p = aligned_alloc(_Alignof(fed_pool), sizeof *p);
    if (!p) return fed_error(FED_ENOMEM, "fed_pool_new: out of memory");
    memset(p, 0, sizeof *p);
    p->n = nthreads;
    atomic_init(&p->next, 0);
    atomic_init(&p->state, 0);
    atomic_init(&p->sleepers, 0);
    atomic_init(&p->caller_waiting, 0);
    atomic_init(&p->stop, 0);
    pthread_mutex_init(&p->mu, NULL);
    pthread_mutex_init(&p->submit, NULL);
    pthread_cond_init(&p->cv_work, NULL);
    pthread_cond_init(&p->cv_done, NULL);
    if (nthreads > 1) {
        p->threads = calloc((size_t)nthreads - 1, sizeof *p->threads);
        if (!p->threads) {
            fed_pool_free(p);
            return fed_error(FED_ENOMEM, "fed_pool_new: out of memory");
        }
        for (int i = 1; i < nthreads; i++) {
            worker_arg *wa = malloc(sizeof *wa);
            if (!wa) {
                fed_pool_free(p);
                return fed_error(FED_ENOMEM, "fed_pool_new: out of memory");
            }
            wa->p = p;
            wa->id = i;
            int rc = pthread_create(&p->threads[i - 1], NULL, worker_main, wa);
            if (rc != 0) {
                free(wa);
                fed_pool_free(p);
                return fed_error(FED_EINTERNAL, "fed_pool_new: cannot start thread %d of %d (error %d)",
                                 i, nthreads, rc);
            }
            p->started++;
        }
    }
    *out = p;
    return 0;
}

int fed_pool_size(const fed_pool *p) { return p ? p->n : 1; }

static void run_inline(size_t n_tasks, fed_pool_fn fn, void *ctx, int worker) {
    for (size_t t = 0; t < n_tasks; t++) fn(ctx, t, worker);
}

void fed_pool_run(fed_pool *p, size_t n_tasks, fed_pool_fn fn, void *ctx) {
    if (n_tasks == 0 || !fn) return;
    if (!p || p->n == 1 || n_tasks == 1) {
        /* No dispatch for a single task: waking workers costs more than it saves. */
        run_inline(n_tasks, fn, ctx, p && tls_pool == p ? tls_worker : 0);
        return;
    }
    if (tls_pool == p) { /* nested run from inside a task: inline, never deadlock */
        run_inline(n_tasks, fn, ctx, tls_worker);
        return;
    }
    pthread_mutex_lock(&p->submit);
    p->fn = fn;
    p->ctx = ctx;
    p->n_tasks = n_tasks;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    /* Between runs the state is (gen, closed, 0): nothing else writes it now. */
    uint64_t gen = gen_of(atomic_load_explicit(&p->state, memory_order_relaxed)) + 1;
    atomic_store(&p->state, (gen << ST_GEN_SHIFT) | ST_OPEN); /* seq_cst: before the sleepers check */
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv_work);
        pthread_mutex_unlock(&p->mu);
    }

    const fed_pool *outer_pool = tls_pool;
    int outer_worker = tls_worker;
    tls_pool = p;
    tls_worker = 0;
    run_tasks(p, 0);
    tls_pool = outer_pool;
    tls_worker = outer_worker;

    /* Every task is claimed; close the run so late wakers skip it, then wait
     * for the workers that joined to finish the tasks they hold. */
    uint64_t s = atomic_fetch_and(&p->state, ~ST_OPEN);
    if (s & ST_COUNT_MASK) {
        int done = 0;
        for (int i = 0; i < SPIN_ITERS; i++) {
            if ((atomic_load_explicit(&p->state, memory_order_acquire) & ST_COUNT_MASK) == 0) {
                done = 1;
                break;
            }
            backoff(i);
        }
        if (!done) {
            pthread_mutex_lock(&p->mu);
            atomic_store(&p->caller_waiting, 1);
            while (atomic_load(&p->state) & ST_COUNT_MASK) pthread_cond_wait(&p->cv_done, &p->mu);
            atomic_store(&p->caller_waiting, 0);
            pthread_mutex_unlock(&p->mu);
        }
    }
    pthread_mutex_unlock(&p->submit);
}

/* OpenBLAS's own threads would nest inside ours; declared here so no header of
 * a specific BLAS build is needed (OpenBLAS exports it from every variant). */
void openblas_set_num_threads(int);

void fed_blas_single_thread(void) { openblas_set_num_threads(1); }
