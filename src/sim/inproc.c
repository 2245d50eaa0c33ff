/* The in-process transport: the selected clients of a round are trained side by
 * side on a pool of worker threads, each worker single-threaded with its own
 * model (so memory grows with threads, not clients). Results do not depend on
 * which worker ran which client, so any thread count gives the same model. */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "federate/error.h"
#include "federate/fl.h"
#include "federate/rng.h"

typedef struct inproc {
    const fed_client_env *env;
    fed_pool *pool;
    int threads;
    fed_model *models[64];        /* one per worker */
    size_t n, nb;
    /* the last broadcast */
    const fed_task *tasks;
    int k;
    const float *global, *global_buffers, *control;
    /* result buffers: cap clients x n floats */
    float *deltas, *deltas_c, *buffers;
    int cap;
    fed_result *results;
    const int *eval_clients;
    fed_eval_res *eval_out;
    atomic_int done;
} inproc;

static int grow(inproc *ip, int k, int scaffold) {
    if (k <= ip->cap && (!scaffold || ip->deltas_c)) return 0;
    int cap = k > ip->cap ? k : ip->cap;
    free(ip->deltas); free(ip->deltas_c); free(ip->buffers);
    ip->deltas = malloc((size_t)cap * ip->n * sizeof(float));
    ip->deltas_c = scaffold ? malloc((size_t)cap * ip->n * sizeof(float)) : NULL;
    ip->buffers = ip->nb ? malloc((size_t)cap * ip->nb * sizeof(float)) : NULL;
    ip->cap = cap;
    if (!ip->deltas || (scaffold && !ip->deltas_c) || (ip->nb && !ip->buffers)) {
        ip->cap = 0;
        return fed_error(FED_ENOMEM, "in-process transport: cannot hold %d client updates of %zu floats", k, ip->n);
    }
    return 0;
}

static int ip_broadcast(fed_transport *t, const fed_task *tasks, int k, const float *global,
                        const float *global_buffers, const float *control) {
    inproc *ip = t->impl;
    int scaffold = 0;
    for (int i = 0; i < k; i++) scaffold |= tasks[i].ins.scaffold;
    int rc = grow(ip, k, scaffold);
    if (rc) return rc;
    ip->tasks = tasks;
    ip->k = k;
    ip->global = global;
    ip->global_buffers = global_buffers;
    ip->control = control;
    return 0;
}

static void fit_task(void *vctx, size_t i, int worker) {
    inproc *ip = vctx;
    const fed_task *task = &ip->tasks[i];
    fed_result *res = &ip->results[i];
    memset(res, 0, sizeof *res);
    res->client = task->client;
    res->delta = ip->deltas + i * ip->n;
    res->delta_c = task->ins.scaffold ? ip->deltas_c + i * ip->n : NULL;
    res->buffers = ip->nb ? ip->buffers + i * ip->nb : NULL;
    res->bytes_down = (int64_t)((ip->n + ip->nb) * sizeof(float)) + (ip->control ? (int64_t)(ip->n * sizeof(float)) : 0);
    /* A simulated device drops out with the configured probability; the draw
     * has its own address so it does not disturb any other stream. */
    double p = ip->env->cfg->dropout_probability;
    if (p > 0) {
        fed_rng r;
        fed_rng_init(&r, ip->env->cfg->seed, (uint64_t)task->round, (uint64_t)task->client, FED_RNG_DROPOUT_CLIENT);
        if (fed_rng_uniform(&r) < p) {
            res->status = FED_RESULT_DROPPED;
            res->train_loss = NAN;
            atomic_fetch_add(&ip->done, 1);
            return;
        }
    }
    int rc = fed_client_fit(ip->env, ip->models[worker], task, ip->global, ip->global_buffers, ip->control, res);
    if (rc) {
        res->status = FED_RESULT_FAILED;
        snprintf(res->error, sizeof res->error, "%s", fed_last_error());
    }
    int done = atomic_fetch_add(&ip->done, 1) + 1;
    if (worker == 0 && ip->env->progress) ip->env->progress(ip->env->progress_ctx, task->round, done, ip->k);
}

static int ip_collect(fed_transport *t, fed_result *results, int k, double deadline_s) {
    (void)deadline_s;   /* simulated clients always answer; drop-outs are drawn */
    inproc *ip = t->impl;
    if (k != ip->k) return fed_error(FED_EINVAL, "collect for %d results after a broadcast of %d", k, ip->k);
    ip->results = results;
    atomic_store(&ip->done, 0);
    fed_pool_run(ip->pool, (size_t)k, fit_task, ip);
    /* A failing client (e.g. a diverged update) is that client's problem: it is
     * reported as failed and the round goes on with the others. */
    return 0;
}

static void eval_task(void *vctx, size_t i, int worker) {
    inproc *ip = vctx;
    int rc = fed_client_evaluate(ip->env, ip->models[worker], ip->eval_clients[i], ip->global, ip->global_buffers,
                                 &ip->eval_out[i]);
    if (rc) { ip->eval_out[i].accuracy = NAN; ip->eval_out[i].loss = NAN; }
}

static int ip_evaluate(fed_transport *t, const int *clients, int k, const float *global, const float *global_buffers,
                       fed_eval_res *out) {
    inproc *ip = t->impl;
    ip->eval_clients = clients;
    ip->eval_out = out;
    ip->global = global;
    ip->global_buffers = global_buffers;
    fed_pool_run(ip->pool, (size_t)k, eval_task, ip);
    return 0;
}

static void ip_free(fed_transport *t) {
    inproc *ip = t->impl;
    if (!ip) return;
    for (int i = 0; i < ip->threads; i++) fed_model_free(ip->models[i]);
    fed_pool_free(ip->pool);
    free(ip->deltas); free(ip->deltas_c); free(ip->buffers);
    free(ip);
}

int fed_transport_inproc(fed_transport **out, const fed_client_env *env, const fed_model *proto, int threads) {
    if (threads < 1) threads = 1;
    if (threads > 64) threads = 64;
    fed_transport *t = calloc(1, sizeof *t);
    inproc *ip = calloc(1, sizeof *ip);
    if (!t || !ip) { free(t); free(ip); return fed_error(FED_ENOMEM, "in-process transport: out of memory"); }
    t->name = "inproc";
    t->impl = ip;
    t->broadcast = ip_broadcast;
    t->collect = ip_collect;
    t->evaluate = ip_evaluate;
    t->free_impl = ip_free;
    ip->env = env;
    ip->threads = threads;
    ip->n = fed_model_num_params(proto);
    ip->nb = fed_model_num_buffers(proto);
    int rc = fed_pool_new(&ip->pool, threads);
    for (int i = 0; !rc && i < threads; i++) rc = fed_model_clone(&ip->models[i], proto);
    if (rc) { fed_transport_free(t); return rc; }
    *out = t;
    return 0;
}

void fed_transport_free(fed_transport *t) {
    if (!t) return;
    if (t->free_impl) t->free_impl(t);
    free(t);
}
