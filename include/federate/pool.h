/* A fixed pool of worker threads for data-parallel loops. The calling thread
 * takes part as worker 0, so a pool of 1 runs everything inline. One level of
 * threading at a time: code running inside a task must not submit to the pool. */
#ifndef FEDERATE_POOL_H
#define FEDERATE_POOL_H
#include <stddef.h>

typedef struct fed_pool fed_pool;
/* fn(ctx, task, worker): task in [0, n_tasks), worker in [0, nthreads). */
typedef void (*fed_pool_fn)(void *ctx, size_t task, int worker);

int fed_pool_new(fed_pool **out, int nthreads);
void fed_pool_free(fed_pool *p);
int fed_pool_size(const fed_pool *p);
/* Runs fn for every task and returns when all are done. Tasks are handed out
 * dynamically; a NULL pool runs them inline on worker 0. */
void fed_pool_run(fed_pool *p, size_t n_tasks, fed_pool_fn fn, void *ctx);
/* Makes BLAS single-threaded in this process (we parallelize above it). */
void fed_blas_single_thread(void);

#endif
