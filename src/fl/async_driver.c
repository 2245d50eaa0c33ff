/* Asynchronous FL: FedBuff (Nguyen et al., "Federated Learning with Buffered
 * Asynchronous Aggregation", AISTATS 2022, Algorithm 1) on the virtual clock.
 * `concurrency` clients train at once, each from the model current when it
 * started; an arriving update is weighted by s(staleness) and added to a
 * buffer, and every `buffer_size` arrivals the server steps by server_lr times
 * the buffer's mean. Events are processed in simulated-finish order (ties by
 * client id); clients that started on the same model version are trained side
 * by side through the transport just before their results are needed, so the
 * run is bit-identical for any thread count. One server step = one round in
 * the store. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "federate/error.h"
#include "federate/rng.h"
#include "federate/safetensors.h"
#include "federate/sim.h"
#include "federate/vec.h"

enum { RNG_ASYNC_PICK = FED_RNG_USER + 33, RNG_ASYNC_FAIL = FED_RNG_USER + 34 };

static double wall_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct slot {
    int client;
    long seq;             /* start number: the task's "round", so its randomness is its own */
    int version;          /* server steps done when it started */
    double start, finish; /* simulated */
    int trained, failed;
    long steps, num_examples;
    double train_loss;
    int64_t bytes_up, bytes_down;
    float *delta;         /* n floats once trained */
} slot;

typedef struct async_run {
    fed_config cfg;
    fed_federation fed;
    fed_model *model;
    fed_pool *eval_pool;
    fed_pipeline pipeline;
    fed_client_env env;
    fed_transport *own;
    fed_sysim *sim;
    float *global, *buffer;
    double *acc;
    size_t n;
    slot *slots;
    int C;
    unsigned char *busy;
    fed_task *tasks;
    fed_result *results;
    int *task_slot;
    fed_client_metrics *cm;
    int ncm;
} async_run;


/* Starts a new client in slot i at simulated time t: uniformly among the
 * devices online at t and not already training (if none is online, the one
 * that comes online first). */
static void start_client(async_run *A, int i, double t, int version, long seq) {
    int N = A->fed.num_clients, m = 0;
    fed_rng r;
    fed_rng_init(&r, A->cfg.seed, (uint64_t)seq, 0, RNG_ASYNC_PICK);
    int pick = -1;
    for (int c = 0; c < N; c++)
        if (!A->busy[c] && fed_device_online(&A->sim->dev[c], A->sim->period, t)) m++;
    if (m > 0) {
        uint32_t j = fed_rng_below(&r, (uint32_t)m);
        for (int c = 0; c < N; c++)
            if (!A->busy[c] && fed_device_online(&A->sim->dev[c], A->sim->period, t) && j-- == 0) { pick = c; break; }
    } else {
        double best = INFINITY;
        for (int c = 0; c < N; c++) {
            if (A->busy[c]) continue;
            double x = fed_device_next_online(&A->sim->dev[c], A->sim->period, t);
            if (x < best) { best = x; pick = c; }
        }
        t = best;
    }
    slot *s = &A->slots[i];
    A->busy[pick] = 1;
    s->client = pick;
    s->seq = seq;
    s->version = version;
    s->start = t;
    s->trained = 0;
    const fed_device *d = &A->sim->dev[pick];
    long n = (long)A->fed.part.train_n[pick];
    long steps = fed_task_steps(n, A->cfg.batch_size, A->cfg.local_epochs, 0);
    /* the upload is timed at the raw update size, so finish times are known
     * before training and events can be ordered without it */
    double bytes = A->sim->model_bytes;
    s->finish = t + fed_device_task_time(d, bytes, fed_task_samples(n, A->cfg.batch_size, steps), bytes);
    fed_rng_init(&r, A->cfg.seed, (uint64_t)seq, (uint64_t)pick, RNG_ASYNC_FAIL);
    s->failed = d->failure > 0 && fed_rng_uniform(&r) < d->failure;
}

/* Trains every started, untrained client (all began on the current model). */
static int train_pending(async_run *A, fed_transport *tr, int version) {
    int k = 0;
    for (int i = 0; i < A->C; i++) {
        slot *s = &A->slots[i];
        if (s->trained || s->failed) continue;
        fed_task *t = &A->tasks[k];
        memset(t, 0, sizeof *t);
        t->round = (int)s->seq;
        t->client = s->client;
        t->ins.local_epochs = A->cfg.local_epochs;
        t->ins.batch_size = A->cfg.batch_size;
        t->ins.lr = (float)(A->cfg.learning_rate * pow(A->cfg.lr_decay, version));
        A->task_slot[k++] = i;
    }
    if (k == 0) return 0;
    int rc = tr->broadcast(tr, A->tasks, k, A->global, NULL, NULL);
    if (!rc) rc = tr->collect(tr, A->results, k, 0);
    if (rc) return rc;
    for (int j = 0; j < k; j++) {
        slot *s = &A->slots[A->task_slot[j]];
        fed_result *r = &A->results[j];
        s->trained = 1;
        if (r->status != FED_RESULT_OK) {
            if (r->status == FED_RESULT_FAILED)
                fprintf(stderr, "federate: fedbuff: client %d failed: %s\n", r->client, r->error);
            s->failed = 1;
            continue;
        }
        fed_stage_ctx sc = {A->cfg.seed, (int)s->seq, r->client, r->num_examples, NULL};
        if ((rc = fed_pipeline_server(&A->pipeline, &sc, r->delta, A->n))) return rc;
        memcpy(s->delta, r->delta, A->n * sizeof(float));
        s->steps = r->steps;
        s->num_examples = r->num_examples;
        s->train_loss = r->train_loss;
        s->bytes_up = r->bytes_up;
        s->bytes_down = r->bytes_down;
    }
    return 0;
}

static void async_free(async_run *A) {
    fed_transport_free(A->own);
    fed_pipeline_free(&A->pipeline);
    fed_sysim_free(A->sim);
    fed_model_free(A->model);
    fed_pool_free(A->eval_pool);
    fed_federation_free(&A->fed);
    if (A->slots)
        for (int i = 0; i < A->C; i++) free(A->slots[i].delta);
    free(A->slots); free(A->busy); free(A->global); free(A->buffer); free(A->acc);
    free(A->tasks); free(A->results); free(A->task_slot); free(A->cm);
}

int fed_run_async(const fed_config *cfg_in, const fed_run_opts *opts, fed_run_result *out) {
    async_run A;
    memset(&A, 0, sizeof A);
    A.cfg = *cfg_in;
    fed_config *cfg = &A.cfg;
    fed_store *store = opts ? opts->store : NULL;
    int64_t run_id = 0;
    int rc = 0;
    out->final_accuracy = out->final_loss = NAN;
    if (opts && opts->resume_run > 0)
        return fed_error(FED_EUNSUPPORTED, "strategy fedbuff: resuming an asynchronous run is not supported yet");
    if (fed_staleness_weight(cfg->staleness, cfg->staleness_a, cfg->staleness_b, 0) != 1.0)
        return fed_error(FED_EINVAL, "key 'staleness': '%s' is not polynomial, hinge or constant", cfg->staleness);
    if (opts && opts->build_federation) rc = opts->build_federation(opts->federation_ctx, cfg, &A.fed);
    else rc = fed_federation_build(cfg, &A.fed);
    if (rc) return rc;
    if ((rc = fed_model_for_config(cfg, &A.fed.train, &A.model))) goto done;
    if (fed_model_num_buffers(A.model) > 0) {
        rc = fed_error(FED_EUNSUPPORTED, "strategy fedbuff: model %s has BatchNorm statistics, which asynchronous "
                                         "aggregation does not merge yet; use mlp, cnn or resnet with norm: group",
                       cfg->model);
        goto done;
    }
    fed_model_init_params(A.model, cfg->seed);
    A.n = fed_model_num_params(A.model);
    int threads = cfg->threads > 0 ? cfg->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (threads < 1) threads = 1;
    if ((rc = fed_pool_new(&A.eval_pool, threads))) goto done;
    fed_model_set_pool(A.model, threads > 1 ? A.eval_pool : NULL);
    if ((rc = fed_pipeline_build(cfg, &A.pipeline))) goto done;
    if (fed_pipeline_needs_state(&A.pipeline)) {
        rc = fed_error(FED_EUNSUPPORTED, "strategy fedbuff: compression with error feedback is not supported yet; "
                                         "set compression_error_feedback: false");
        goto done;
    }
    if ((rc = fed_sysim_new(&A.sim, cfg, NULL, A.fed.num_clients, (double)(A.n * sizeof(float))))) goto done;
    int N = A.fed.num_clients, K = cfg->buffer_size;
    int C = cfg->concurrency > 0 ? cfg->concurrency : 2 * K;
    if (C > N) C = N;
    if (K > N) { rc = fed_error(FED_EINVAL, "buffer_size (%d) exceeds num_clients (%d)", K, N); goto done; }
    A.C = C;
    A.slots = calloc((size_t)C, sizeof *A.slots);
    A.busy = calloc((size_t)N, 1);
    A.global = malloc(A.n * sizeof(float));
    A.buffer = malloc(A.n * sizeof(float));
    A.acc = malloc(A.n * sizeof(double));
    A.tasks = calloc((size_t)C, sizeof *A.tasks);
    A.results = calloc((size_t)C, sizeof *A.results);
    A.task_slot = calloc((size_t)C, sizeof *A.task_slot);
    A.cm = calloc((size_t)(K + C + 1) * 4, sizeof *A.cm);
    if (!A.slots || !A.busy || !A.global || !A.buffer || !A.acc || !A.tasks || !A.results || !A.task_slot || !A.cm) {
        rc = fed_error(FED_ENOMEM, "fedbuff: out of memory for %d concurrent clients", C);
        goto done;
    }
    for (int i = 0; i < C; i++)
        if (!(A.slots[i].delta = malloc(A.n * sizeof(float)))) {
            rc = fed_error(FED_ENOMEM, "fedbuff: out of memory for %d concurrent clients", C);
            goto done;
        }
    memcpy(A.global, fed_model_params(A.model), A.n * sizeof(float));

    if (store) {
        char *yaml = fed_config_to_yaml(cfg);
        if (!yaml) { rc = fed_error(FED_ENOMEM, "run: out of memory"); goto done; }
        rc = fed_store_run_begin(store, cfg->name, yaml, &run_id);
        free(yaml);
        if (rc) goto done;
    }
    out->run_id = run_id;
    A.env.cfg = cfg;
    A.env.fed = &A.fed;
    A.env.pipeline = &A.pipeline;
    fed_transport *tr = opts ? opts->transport : NULL;
    if (!tr) {
        if ((rc = fed_transport_inproc(&A.own, &A.env, A.model, threads))) goto done;
        tr = A.own;
    }
    out->num_classes = fed_model_num_classes(A.model);
    out->confusion = calloc((size_t)out->num_classes * out->num_classes, sizeof(int64_t));
    if (!out->confusion) { rc = fed_error(FED_ENOMEM, "run: out of memory"); goto done; }

    long seq = 0;
    for (int i = 0; i < C; i++) start_client(&A, i, 0.0, 0, ++seq);
    int version = 0, arrivals = 0, last_eval = 0;
    double last_flush = 0, now = 0, wall0 = wall_now(), ls = 0, ls2 = 0;
    int64_t up = 0, down = 0;
    int dropped = 0;
    memset(A.acc, 0, A.n * sizeof(double));
    A.ncm = 0;
    while (version < cfg->num_rounds) {
        int e = 0;
        for (int i = 1; i < C; i++) {
            slot *a = &A.slots[i], *b = &A.slots[e];
            if (a->finish < b->finish || (a->finish == b->finish && a->client < b->client)) e = i;
        }
        slot *s = &A.slots[e];
        if (!s->trained && !s->failed && (rc = train_pending(&A, tr, version))) goto done;
        now = s->finish;
        fed_client_metrics *c = &A.cm[A.ncm < (K + C + 1) * 4 ? A.ncm++ : A.ncm - 1];
        memset(c, 0, sizeof *c);
        c->round = version + 1;
        c->client = s->client;
        c->num_examples = (long)A.fed.part.train_n[s->client];
        c->local_accuracy = NAN;
        c->train_loss = NAN;
        if (s->failed) {
            c->dropped = 1;
            dropped++;
        } else {
            /* Algorithm 1: Delta += s(tau) Delta_i, tau = server steps since it started */
            double w = fed_staleness_weight(cfg->staleness, cfg->staleness_a, cfg->staleness_b, version - s->version);
            const float *d = s->delta;
            double *acc = A.acc;
            for (size_t j = 0; j < A.n; j++) acc[j] += w * (double)d[j];
            arrivals++;
            c->steps = s->steps;
            c->train_loss = s->train_loss;
            c->bytes_up = s->bytes_up;
            c->bytes_down = s->bytes_down;
            up += s->bytes_up;
            down += s->bytes_down;
            ls += s->train_loss;
            ls2 += s->train_loss * s->train_loss;
        }
        A.busy[s->client] = 0;
        if (arrivals == K) {
            /* clients already started on this version train before it changes */
            if ((rc = train_pending(&A, tr, version))) goto done;
            double scale = cfg->server_lr / K;
            for (size_t j = 0; j < A.n; j++) A.buffer[j] = (float)(scale * A.acc[j]);
            fed_vec_axpy(A.global, 1.0f, A.buffer, A.n);
            if (!fed_vec_all_finite(A.global, A.n)) {
                rc = fed_error(FED_ERANGE, "fedbuff step %d: the global model diverged (NaN/Inf); lower learning_rate "
                                           "or server_lr", version + 1);
                goto done;
            }
            version++;
            fed_round_metrics m;
            memset(&m, 0, sizeof m);
            m.round = version;
            m.selected = arrivals + dropped;
            m.finished = arrivals;
            m.dropped = dropped;
            m.bytes_up = up;
            m.bytes_down = down;
            m.train_loss_mean = ls / arrivals;
            m.train_loss_std = sqrt(fmax(0.0, ls2 / arrivals - m.train_loss_mean * m.train_loss_mean));
            m.epsilon = m.clip = NAN;
            m.test_accuracy = m.test_loss = m.local_accuracy = NAN;
            m.sim_time_s = now - last_flush;
            if ((cfg->evaluation_every > 0 && version % cfg->evaluation_every == 0) || version == cfg->num_rounds) {
                memcpy(fed_model_params(A.model), A.global, A.n * sizeof(float));
                if ((rc = fed_model_evaluate(A.model, &A.fed.test, cfg->eval_batch_size, &m.test_loss,
                                             &m.test_accuracy, out->confusion)))
                    goto done;
                out->final_accuracy = m.test_accuracy;
                out->final_loss = m.test_loss;
                last_eval = version;
                if (store) {
                    /* the evaluated model, for `federate export --round` */
                    void *mbuf = NULL;
                    size_t mlen = 0;
                    rc = fed_model_serialize(A.model, &mbuf, &mlen);
                    if (!rc) rc = fed_store_save_round_model(store, run_id, version, mbuf, mlen);
                    free(mbuf);
                    if (rc) goto done;
                }
            }
            double w1 = wall_now();
            m.wall_s = w1 - wall0;
            wall0 = w1;
            out->bytes_up += up;
            out->bytes_down += down;
            out->rounds_done = version;
            out->sim_time_s = now;
            if (store) {
                if ((rc = fed_store_add_round(store, run_id, &m))) goto done;
                if ((rc = fed_store_add_clients(store, run_id, A.cm, A.ncm))) goto done;
            }
            if (opts && opts->on_round) {
                fed_round_report rep = {m, A.cm, A.ncm, run_id};
                opts->on_round(opts->ctx, cfg, &rep);
            }
            last_flush = now;
            arrivals = dropped = 0;
            up = down = 0;
            ls = ls2 = 0;
            A.ncm = 0;
            memset(A.acc, 0, A.n * sizeof(double));
            if (opts && opts->stop && *opts->stop && version < cfg->num_rounds) {
                out->stopped = 1;
                break;
            }
        }
        start_client(&A, e, now, version, ++seq);
    }
    if (last_eval != out->rounds_done || last_eval == 0) {
        memcpy(fed_model_params(A.model), A.global, A.n * sizeof(float));
        if ((rc = fed_model_evaluate(A.model, &A.fed.test, cfg->eval_batch_size, &out->final_loss,
                                     &out->final_accuracy, out->confusion)))
            goto done;
    }
    if (store) {
        memcpy(fed_model_params(A.model), A.global, A.n * sizeof(float));
        void *mbuf = NULL;
        size_t mlen = 0;
        rc = fed_model_serialize(A.model, &mbuf, &mlen);
        if (!rc) rc = fed_store_save_checkpoint(store, run_id, out->rounds_done, mbuf, mlen, "", 0);
        free(mbuf);
        if (!rc) rc = fed_store_run_set_status(store, run_id, out->stopped ? "interrupted" : "finished");
    }
done:
    if (rc && store && run_id) {
        char msg[1100];
        snprintf(msg, sizeof msg, "%s", fed_last_error());
        fed_store_run_set_status(store, run_id, "failed");
        fed_store_run_set_text(store, run_id, "error", msg);
        fed_error(rc, "%s", msg);
    }
    async_free(&A);
    return rc;
}
