/* Asynchronous FL: FedBuff (Nguyen et al., "Federated Learning with Buffered
 * Asynchronous Aggregation", AISTATS 2022, Algorithm 1) on the virtual clock.
 * `concurrency` clients train at once, each from the model current when it
 * started; an arriving update is weighted by s(staleness) and added to a
 * buffer, and every `buffer_size` arrivals the server steps by server_lr times
 * the buffer's mean. Events are processed in simulated-finish order (ties by
 * client id); clients that started on the same model version are trained side
 * by side through the transport just before their results are needed, so the
 * run is bit-identical for any thread count. One server step = one round in
 * the store; checkpoints after a step make `--resume` bit-identical too
 * (see "checkpoints" below). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "run_note.h"
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
    /* the global models that in-flight clients started from, by version, for
     * checkpoints (refs: slots holding it; w is kept for reuse at refs 0) */
    struct base { int version, refs; float *w; } *bases;
    int nbases;
} async_run;

/* A slot starting on `version` (= the current global) holds its model; a
 * slot holds one reference from its start until its update arrives or it
 * fails, so the references are the clients in flight that will send one. */
static int base_ref(async_run *A, int version) {
    struct base *free_b = NULL;
    for (int i = 0; i < A->nbases; i++) {
        struct base *b = &A->bases[i];
        if (b->refs > 0 && b->version == version) { b->refs++; return 0; }
        if (b->refs == 0 && !free_b) free_b = b;
    }
    if (!free_b) {
        /* at most C versions are in flight at once: C + 1 entries never run out */
        if (A->nbases == A->C + 1) return fed_error(FED_ESTATE, "fedbuff: more base models than clients in flight");
        free_b = &A->bases[A->nbases++];
    }
    if (!free_b->w && !(free_b->w = malloc(A->n * sizeof(float))))
        return fed_error(FED_ENOMEM, "fedbuff: out of memory for a base model");
    memcpy(free_b->w, A->global, A->n * sizeof(float));
    free_b->version = version;
    free_b->refs = 1;
    return 0;
}

static struct base *base_find(async_run *A, int version) {
    for (int i = 0; i < A->nbases; i++)
        if (A->bases[i].refs > 0 && A->bases[i].version == version) return &A->bases[i];
    return NULL;
}

static void base_unref(async_run *A, int version) {
    struct base *b = base_find(A, version);
    if (b) b->refs--;
}


/* Starts a new client in slot i at simulated time t: uniformly among the
 * devices online at t and not already training (if none is online, the one
 * that comes online first). */
static int start_client(async_run *A, int i, double t, int version, long seq) {
    int N = A->fed.num_clients, m = 0;
    fed_rng r;
    fed_rng_init(&r, A->cfg.seed, (uint64_t)seq, 0, RNG_ASYNC_PICK);
    int pick = -1;
    for (int c = 0; c < N; c++)
        if (!A->busy[c] && fed_sysim_online(A->sim, c, t)) m++;
    if (m > 0) {
        uint32_t j = fed_rng_below(&r, (uint32_t)m);
        for (int c = 0; c < N; c++)
            if (!A->busy[c] && fed_sysim_online(A->sim, c, t) && j-- == 0) { pick = c; break; }
    } else {
        double best = INFINITY;
        for (int c = 0; c < N; c++) {
            if (A->busy[c]) continue;
            double x = fed_sysim_next_online(A->sim, c, t);
            if (x < best) { best = x; pick = c; }
        }
        if (pick < 0)
            return fed_error(FED_ESTATE, "fedbuff: no idle simulated device ever comes online after t = %g s", t);
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
    /* a client that will send an update holds its base model until it arrives */
    return s->failed ? 0 : base_ref(A, version);
}

/* Trains every started, untrained client that began on `version`, whose
 * global model is w (in a run, all untrained clients began on the current one). */
static int train_pending(async_run *A, fed_transport *tr, int version, const float *w) {
    int k = 0;
    for (int i = 0; i < A->C; i++) {
        slot *s = &A->slots[i];
        if (s->trained || s->failed || s->version != version) continue;
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
    int rc = tr->broadcast(tr, A->tasks, k, w, NULL, NULL);
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
            base_unref(A, s->version);
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

/* ---- checkpoints (resume) ------------------------------------------------
 * Taken right after a server step, before the freed slot starts its next
 * client. The buffer is then empty, FedBuff's server step has no optimizer
 * state, every random draw is keyed by (seed, start number, client) and the
 * availability models are pure functions of (seed, client, t); what is left
 * is the clients in flight. Each slot's record (client, start number, base
 * version, simulated start and finish, failure) is kept, and, rather than
 * the C - 1 finished updates (C model-sized vectors per checkpoint), the
 * global models they started from: the distinct base versions in flight,
 * typically C / K + 1 of them. A resumed run retrains those clients from
 * their base models, which gives the same bits: a client's training depends
 * only on its base model and its task, never on who trains beside it (the
 * property that makes runs identical for any thread count). The current
 * global model goes in the checkpoint's model half. */

enum { CK_MAGIC = 0x46424632 /* "FBF2" */, CK_META = 7, CK_SLOT = 8 };

static int64_t dbits(double x) {
    int64_t w;
    memcpy(&w, &x, sizeof w);
    return w;
}

static double dunbits(int64_t w) {
    double x;
    memcpy(&x, &w, sizeof x);
    return x;
}

static void tensor1(fed_st_tensor *t, const char *name, int dtype, size_t n, const void *data) {
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->dtype = dtype;
    t->ndim = 1;
    t->shape[0] = (int64_t)n;
    t->numel = n;
    t->data = data;
}

/* A slot whose client's update a resumed run needs (it has not arrived). */
static int in_flight(const slot *s, int i, int refill) {
    return i != refill && !s->failed;
}

static int save_checkpoint(async_run *A, fed_store *store, int64_t run_id, int version, long seq, double now,
                           int refill) {
    size_t C = (size_t)A->C, n = A->n;
    int64_t meta[CK_META] = {CK_MAGIC, version, seq, dbits(now), refill, A->C, (int64_t)n};
    int64_t *sw = malloc(C * CK_SLOT * sizeof *sw), *bv = malloc(C * sizeof *bv);
    float *bw = malloc((C * n > 0 ? C * n : 1) * sizeof *bw);
    void *mbuf = NULL, *sbuf = NULL;
    size_t mlen = 0, slen = 0, nb = 0;
    int rc = 0;
    if (!sw || !bv || !bw) { rc = fed_error(FED_ENOMEM, "fedbuff checkpoint: out of memory"); goto out; }
    for (size_t i = 0; i < C; i++) {
        const slot *s = &A->slots[i];
        int64_t *w = sw + i * CK_SLOT;
        w[0] = s->client; w[1] = s->seq; w[2] = s->version; w[3] = dbits(s->start); w[4] = dbits(s->finish);
        w[5] = s->failed; w[6] = 0; w[7] = 0;
        if (!in_flight(s, (int)i, refill)) continue;
        size_t j = 0;
        while (j < nb && bv[j] != s->version) j++;
        if (j < nb) continue;
        const struct base *b = base_find(A, s->version);
        if (!b) {
            rc = fed_error(FED_ESTATE, "fedbuff checkpoint: the base model of version %d is gone", s->version);
            goto out;
        }
        bv[nb] = s->version;
        memcpy(bw + nb++ * n, b->w, n * sizeof(float));
    }
    fed_st_tensor t[4];
    tensor1(&t[0], "fedbuff.meta", FED_DTYPE_I64, CK_META, meta);
    tensor1(&t[1], "fedbuff.slots", FED_DTYPE_I64, C * CK_SLOT, sw);
    tensor1(&t[2], "fedbuff.base_versions", FED_DTYPE_I64, nb, bv);
    tensor1(&t[3], "fedbuff.base_models", FED_DTYPE_F32, nb * n, bw);
    memcpy(fed_model_params(A->model), A->global, n * sizeof(float));
    if ((rc = fed_model_serialize(A->model, &mbuf, &mlen))) goto out;
    if ((rc = fed_st_serialize(t, 4, NULL, 0, &sbuf, &slen))) goto out;
    rc = fed_store_save_checkpoint(store, run_id, version, mbuf, mlen, sbuf, slen);
out:
    free(sw); free(bv); free(bw); free(mbuf); free(sbuf);
    return rc;
}

/* Restores what save_checkpoint kept and retrains the clients in flight from
 * their base models; *refill = the slot to start next. */
static int load_checkpoint(async_run *A, fed_transport *tr, int64_t run_id, int ck_round, const void *model,
                           size_t mlen, const void *state, size_t slen, int *version, long *seq, double *now,
                           int *refill) {
    size_t C = (size_t)A->C, n = A->n;
    int N = A->fed.num_clients;
    if (!state || slen == 0)
        return fed_error(FED_EFORMAT, "run %lld: its checkpoint (step %d) has no fedbuff state (written by an "
                                      "older federate); it cannot be resumed", (long long)run_id, ck_round);
    int rc = fed_model_load_buffer(A->model, model, mlen);
    if (rc) return rc;
    memcpy(A->global, fed_model_params(A->model), n * sizeof(float));
    fed_st_file *f;
    if ((rc = fed_st_parse(state, slen, &f))) return rc;
    const fed_st_tensor *tm = fed_st_find(f, "fedbuff.meta"), *ts = fed_st_find(f, "fedbuff.slots"),
                        *tv = fed_st_find(f, "fedbuff.base_versions"), *tw = fed_st_find(f, "fedbuff.base_models");
    int64_t meta[CK_META];
    if (!tm || tm->dtype != FED_DTYPE_I64 || tm->numel != CK_META || !ts || ts->dtype != FED_DTYPE_I64 || !tv ||
        tv->dtype != FED_DTYPE_I64 || !tw || tw->dtype != FED_DTYPE_F32) {
        rc = fed_error(FED_EFORMAT, "run %lld: the checkpoint's fedbuff state lacks fedbuff.meta, .slots, "
                                    ".base_versions or .base_models", (long long)run_id);
        goto out;
    }
    memcpy(meta, tm->data, sizeof meta);
    if (meta[0] != CK_MAGIC || meta[1] != ck_round || meta[5] != A->C || meta[6] != (int64_t)n ||
        ts->numel != C * CK_SLOT || tv->numel > C || tw->numel != tv->numel * n || meta[4] < 0 || meta[4] >= A->C ||
        meta[2] < 0) {
        rc = fed_error(FED_EFORMAT, "run %lld: the checkpoint's fedbuff state does not match the run (step %lld of %d, "
                                    "%lld slots of %lld parameters; the run has %d of %zu)",
                       (long long)run_id, (long long)meta[1], ck_round, (long long)meta[5], (long long)meta[6], A->C, n);
        goto out;
    }
    *version = (int)meta[1];
    *seq = (long)meta[2];
    *now = dunbits(meta[3]);
    *refill = (int)meta[4];
    memset(A->busy, 0, (size_t)N);
    for (size_t i = 0; i < C && !rc; i++) {
        int64_t w[CK_SLOT];
        memcpy(w, (const char *)ts->data + i * CK_SLOT * sizeof(int64_t), sizeof w);
        slot *s = &A->slots[i];
        memset(s->delta, 0, n * sizeof(float));
        s->client = (int)w[0]; s->seq = (long)w[1]; s->version = (int)w[2];
        s->start = dunbits(w[3]); s->finish = dunbits(w[4]);
        s->failed = w[5] != 0;
        s->trained = s->failed;
        if ((int)i == *refill) continue;
        if (w[0] < 0 || w[0] >= N || A->busy[w[0]] || w[2] < 0 || w[2] >= meta[1] || w[1] < 1 || w[1] > meta[2])
            rc = fed_error(FED_EFORMAT, "run %lld: the checkpoint's fedbuff slot %zu is inconsistent (client %lld, "
                                        "version %lld, start %lld)", (long long)run_id, i, (long long)w[0],
                           (long long)w[2], (long long)w[1]);
        else
            A->busy[s->client] = 1;
    }
    /* each base model in flight: retrain the clients that started on it */
    for (size_t j = 0; j < tv->numel && !rc; j++) {
        int64_t v;
        memcpy(&v, (const char *)tv->data + j * sizeof v, sizeof v);
        float *w = malloc(n * sizeof(float) + 1);
        if (!w) { rc = fed_error(FED_ENOMEM, "fedbuff resume: out of memory"); break; }
        memcpy(w, (const char *)tw->data + j * n * sizeof(float), n * sizeof(float));
        if (v < 0 || v >= meta[1])
            rc = fed_error(FED_EFORMAT, "run %lld: the checkpoint keeps a base model of version %lld (of %lld)",
                           (long long)run_id, (long long)v, (long long)meta[1]);
        else
            rc = train_pending(A, tr, (int)v, w);
        /* the slots of version v hold it from here, as they would have */
        if (!rc) {
            struct base *b = &A->bases[A->nbases++];
            b->version = (int)v;
            b->w = w;
            b->refs = 0;
            for (size_t i = 0; i < C; i++)
                if ((int)i != *refill && !A->slots[i].failed && A->slots[i].version == v) b->refs++;
        } else {
            free(w);
        }
    }
    for (size_t i = 0; i < C && !rc; i++)
        if (in_flight(&A->slots[i], (int)i, *refill) && !A->slots[i].trained)
            rc = fed_error(FED_EFORMAT, "run %lld: the checkpoint lacks the base model (version %d) of fedbuff slot "
                                        "%zu", (long long)run_id, A->slots[i].version, i);
out:
    fed_st_close(f);
    return rc;
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
    for (int i = 0; i < A->nbases; i++) free(A->bases[i].w);
    free(A->bases);
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
    /* resuming: fed_run has loaded the run's own config into cfg_in */
    void *ck_model = NULL, *ck_state = NULL;
    size_t ck_mlen = 0, ck_slen = 0;
    int ck_round = 0;
    if (opts && opts->resume_run > 0) {
        if (!store) return fed_error(FED_EINVAL, "resuming needs the experiment store");
        rc = fed_store_load_checkpoint(store, opts->resume_run, &ck_round, &ck_model, &ck_mlen, &ck_state, &ck_slen);
        if (rc == FED_ENOTFOUND) ck_round = 0, rc = 0;   /* nothing saved: start over */
        if (rc) return rc;
        run_id = opts->resume_run;
    }
    if (fed_staleness_weight(cfg->staleness, cfg->staleness_a, cfg->staleness_b, 0) != 1.0) {
        rc = fed_error(FED_EINVAL, "key 'staleness': '%s' is not polynomial, hinge or constant", cfg->staleness);
        goto done;
    }
    if (opts && opts->build_federation) rc = opts->build_federation(opts->federation_ctx, cfg, &A.fed);
    else rc = fed_federation_build(cfg, &A.fed);
    if (rc) goto done;
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
    A.bases = calloc((size_t)C + 1, sizeof *A.bases);
    if (!A.slots || !A.busy || !A.global || !A.buffer || !A.acc || !A.tasks || !A.results || !A.task_slot || !A.cm ||
        !A.bases) {
        rc = fed_error(FED_ENOMEM, "fedbuff: out of memory for %d concurrent clients", C);
        goto done;
    }
    for (int i = 0; i < C; i++)
        if (!(A.slots[i].delta = malloc(A.n * sizeof(float)))) {
            rc = fed_error(FED_ENOMEM, "fedbuff: out of memory for %d concurrent clients", C);
            goto done;
        }
    memcpy(A.global, fed_model_params(A.model), A.n * sizeof(float));

    if (store && run_id == 0) {
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
    int version = 0, arrivals = 0, last_eval = 0;
    double last_flush = 0, now = 0, wall0 = wall_now(), ls = 0, ls2 = 0;
    if (run_id && opts && opts->resume_run > 0) {
        /* the resumed run: rolled back to its checkpoint, or to nothing */
        if ((rc = fed_store_truncate(store, run_id, ck_round))) goto done;
        if ((rc = fed_store_run_set_status(store, run_id, "running"))) goto done;
        if (ck_model) {
            int refill = 0;
            if ((rc = load_checkpoint(&A, tr, run_id, ck_round, ck_model, ck_mlen, ck_state, ck_slen, &version, &seq,
                                      &now, &refill)))
                goto done;
            last_flush = now;
            out->rounds_done = version;
            out->sim_time_s = now;
            fed_round_metrics *past;
            int np;
            if ((rc = fed_store_get_rounds(store, run_id, &past, &np))) goto done;
            for (int i = 0; i < np; i++) {
                out->bytes_up += past[i].bytes_up;
                out->bytes_down += past[i].bytes_down;
                if (!isnan(past[i].test_accuracy)) {
                    out->final_accuracy = past[i].test_accuracy;
                    out->final_loss = past[i].test_loss;
                }
            }
            free(past);
            if (version < cfg->num_rounds && (rc = start_client(&A, refill, now, version, ++seq))) goto done;
        }
    }
    if (!ck_model)
        for (int i = 0; i < C; i++)
            if ((rc = start_client(&A, i, 0.0, 0, ++seq))) goto done;
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
        if (!s->trained && !s->failed && (rc = train_pending(&A, tr, version, A.global))) goto done;
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
        if (!s->failed) base_unref(&A, s->version);
        if (arrivals == K) {
            /* clients already started on this version train before it changes */
            if ((rc = train_pending(&A, tr, version, A.global))) goto done;
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
                if (cfg->target_accuracy > 0 && 100 * m.test_accuracy >= cfg->target_accuracy) out->target_round = version;
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
            int stop = opts && opts->stop && *opts->stop && version < cfg->num_rounds;
            /* a stopped run is always resumable from where it stopped */
            if (store && ((cfg->checkpoint_every > 0 && version % cfg->checkpoint_every == 0) ||
                          version == cfg->num_rounds || stop || out->target_round))
                if ((rc = save_checkpoint(&A, store, run_id, version, seq, now, e))) goto done;
            if (out->target_round) {
                fed_run_note_target(store, run_id, "server step", version, m.test_accuracy, cfg->target_accuracy);
                break;
            }
            if (stop) {
                out->stopped = 1;
                break;
            }
        }
        if ((rc = start_client(&A, e, now, version, ++seq))) goto done;
    }
    if (last_eval != out->rounds_done || last_eval == 0) {
        memcpy(fed_model_params(A.model), A.global, A.n * sizeof(float));
        if ((rc = fed_model_evaluate(A.model, &A.fed.test, cfg->eval_batch_size, &out->final_loss,
                                     &out->final_accuracy, out->confusion)))
            goto done;
    }
    /* the checkpoint of the last step was taken in the loop */
    if (store) rc = fed_store_run_set_status(store, run_id, out->stopped ? "interrupted" : "finished");
done:
    if (rc && store && run_id) fed_run_note_failure(store, run_id, rc);
    free(ck_model);
    free(ck_state);
    async_free(&A);
    return rc;
}
