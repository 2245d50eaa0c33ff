/* The round driver (McMahan et al. 2017, Algorithm 1, generalized by Flower's
 * Strategy): select clients, configure them, hand the tasks to the transport,
 * collect before the deadline, aggregate in client-id order, evaluate, record,
 * checkpoint. It never knows where the clients run. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "run_note.h"
#include "federate/compress.h"
#include "federate/error.h"
#include "federate/fl.h"
#include "federate/safetensors.h"
#include "federate/sim.h"
#include "federate/vec.h"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}


/* One 1-D tensor of a checkpoint. */
static void vec_tensor(fed_st_tensor *t, const char *name, int dtype, size_t n, const void *data) {
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->dtype = dtype;
    t->ndim = 1;
    t->shape[0] = (int64_t)n;
    t->numel = n;
    t->data = data;
}

/* Server state for a checkpoint: the strategy's vectors, the selector's memory,
 * the privacy accountant's and the virtual clock's state, as named tensors in a
 * safetensors buffer. */
static int save_state(fed_strategy *s, const fed_selector *sel, const fed_privacy *priv, const fed_sysim *sim,
                      void **buf, size_t *len) {
    fed_st_tensor t[20];
    float *vecs[16];
    size_t lens[16];
    int nv = s->save_state ? s->save_state(s, vecs, lens, 16) : 0;
    int n = 0;
    for (int i = 0; i < nv; i++, n++) {
        char name[32];
        snprintf(name, sizeof name, "strategy.%d", i);
        vec_tensor(&t[n], name, FED_DTYPE_F32, lens[i], vecs[i]);
    }
    size_t pw = 0, sw = fed_sysim_state_size(sim, sel);
    fed_privacy_state_size(priv, &pw);
    int64_t *last = malloc((size_t)sel->num_clients * sizeof(int64_t));
    int64_t *words = malloc((pw ? pw : 1) * sizeof(int64_t));
    int64_t *sim_words = malloc((sw ? sw : 1) * sizeof(int64_t));
    int rc = 0;
    if (!last || !words || !sim_words) {
        rc = fed_error(FED_ENOMEM, "checkpoint: out of memory");
        goto out;
    }
    for (int i = 0; i < sel->num_clients; i++) last[i] = sel->last_selected[i];
    vec_tensor(&t[n++], "selector.last_selected", FED_DTYPE_I64, (size_t)sel->num_clients, last);
    if (pw) {
        fed_privacy_state_get(priv, words, pw);
        vec_tensor(&t[n++], "privacy.state", FED_DTYPE_I64, pw, words);
    }
    /* the virtual clock and what oort / power-of-choice remember */
    fed_sysim_state_get(sim, sel, sim_words);
    vec_tensor(&t[n++], "sim.state", FED_DTYPE_I64, sw, sim_words);
    rc = fed_st_serialize(t, n, NULL, 0, buf, len);
out:
    free(last);
    free(words);
    free(sim_words);
    return rc;
}

static int load_state(fed_strategy *s, fed_selector *sel, fed_privacy *priv, fed_sysim *sim, const void *buf,
                      size_t len) {
    fed_st_file *f;
    int rc = fed_st_parse(buf, len, &f);
    if (rc) return rc;
    float *vecs[16];
    size_t lens[16];
    int nv = s->save_state ? s->save_state(s, vecs, lens, 16) : 0;
    for (int i = 0; i < nv && !rc; i++) {
        char name[32];
        snprintf(name, sizeof name, "strategy.%d", i);
        const fed_st_tensor *t = fed_st_find(f, name);
        if (!t || t->dtype != FED_DTYPE_F32 || t->numel != lens[i])
            rc = fed_error(FED_EFORMAT, "checkpoint lacks a matching %s for strategy %s", name, s->name);
        else
            memcpy(vecs[i], t->data, lens[i] * sizeof(float));
    }
    const fed_st_tensor *t = fed_st_find(f, "selector.last_selected");
    if (!rc && (!t || t->dtype != FED_DTYPE_I64 || t->numel != (size_t)sel->num_clients))
        rc = fed_error(FED_EFORMAT, "checkpoint lacks the client selector's state");
    if (!rc)
        for (int i = 0; i < sel->num_clients; i++) sel->last_selected[i] = (int)((const int64_t *)t->data)[i];
    if (!rc && priv) {
        const fed_st_tensor *pt = fed_st_find(f, "privacy.state");
        if (!pt || pt->dtype != FED_DTYPE_I64)
            rc = fed_error(FED_EFORMAT, "checkpoint lacks the privacy accountant's state");
        else
            rc = fed_privacy_state_set(priv, (const int64_t *)pt->data, pt->numel);
    }
    const fed_st_tensor *st = rc ? NULL : fed_st_find(f, "sim.state");   /* absent in older checkpoints */
    if (st && st->dtype == FED_DTYPE_I64) rc = fed_sysim_state_set(sim, sel, (const int64_t *)st->data, st->numel);
    fed_st_close(f);
    return rc;
}

/* JSON array of arrays for the confusion matrix (stored with the run). */
static char *confusion_json(const int64_t *c, int k) {
    size_t cap = (size_t)k * k * 12 + 16, len = 0;
    char *s = malloc(cap);
    if (!s) return NULL;
    len += (size_t)snprintf(s + len, cap - len, "[");
    for (int i = 0; i < k; i++) {
        len += (size_t)snprintf(s + len, cap - len, "%s[", i ? "," : "");
        for (int j = 0; j < k; j++) len += (size_t)snprintf(s + len, cap - len, "%s%lld", j ? "," : "", (long long)c[(size_t)i * k + j]);
        len += (size_t)snprintf(s + len, cap - len, "]");
    }
    snprintf(s + len, cap - len, "]");
    return s;
}

void fed_run_result_free(fed_run_result *r) {
    if (!r) return;
    free(r->confusion);
    r->confusion = NULL;
}

typedef struct run_state {
    fed_config cfg;
    fed_federation fed;
    fed_model *model;          /* holds the global model for evaluation and checkpoints */
    fed_pool *eval_pool;
    fed_strategy *strategy;
    fed_pipeline pipeline;
    fed_client_state *cstate;
    fed_client_env env;
    fed_transport *own_transport;
    fed_selector sel;
    float *global, *gbuf;
    size_t n, nb;
    int *clients, *eval_flags, *eval_ids;
    fed_task *tasks;
    fed_result *results;
    fed_client_res *cres;
    fed_eval_res *evals;
    fed_client_metrics *cm;
    fed_privacy *priv;
    float *dp_mean;            /* DP-FedAvg: the noised mean update */
    fed_client_ins *ins;
    fed_client_state *residuals;   /* compression's error feedback */
    fed_client_state *down_state;  /* download compression: each client's last copy */
    fed_codec *down_codec;
    fed_secure_agg *secagg;
    float *sa_mean;                /* secure aggregation: the weighted mean the server learns */
    fed_sysim *sim;                /* simulated devices and the virtual clock */
    unsigned char *eligible;       /* clients the transport can reach this round (tr->eligible) */
} run_state;

static void run_state_free(run_state *s) {
    fed_transport_free(s->own_transport);
    fed_strategy_free(s->strategy);
    fed_privacy_free(s->priv);
    free(s->dp_mean);
    free(s->ins);
    fed_pipeline_free(&s->pipeline);
    fed_client_state_close(s->residuals);
    fed_client_state_close(s->down_state);
    fed_codec_free(s->down_codec);
    fed_secure_agg_free(s->secagg);
    free(s->sa_mean);
    fed_client_state_close(s->cstate);
    fed_selector_free(&s->sel);
    fed_sysim_free(s->sim);
    fed_model_free(s->model);
    fed_pool_free(s->eval_pool);
    fed_federation_free(&s->fed);
    free(s->global); free(s->gbuf); free(s->clients); free(s->eval_flags); free(s->eval_ids);
    free(s->tasks); free(s->results); free(s->cres); free(s->evals); free(s->cm); free(s->eligible);
}

static int evaluate_global(run_state *s, double *loss, double *acc, int64_t *confusion) {
    memcpy(fed_model_params(s->model), s->global, s->n * sizeof(float));
    if (s->nb) memcpy(fed_model_buffers(s->model), s->gbuf, s->nb * sizeof(float));
    return fed_model_evaluate(s->model, &s->fed.test, s->cfg.eval_batch_size, loss, acc, confusion);
}

static int checkpoint(run_state *s, fed_store *store, int64_t run_id, int round) {
    memcpy(fed_model_params(s->model), s->global, s->n * sizeof(float));
    if (s->nb) memcpy(fed_model_buffers(s->model), s->gbuf, s->nb * sizeof(float));
    void *mbuf = NULL, *sbuf = NULL;
    size_t mlen = 0, slen = 0;
    int rc = fed_model_serialize(s->model, &mbuf, &mlen);
    if (!rc) rc = save_state(s->strategy, &s->sel, s->priv, s->sim, &sbuf, &slen);
    if (!rc) rc = fed_store_save_checkpoint(store, run_id, round, mbuf, mlen, sbuf, slen);
    free(mbuf);
    free(sbuf);
    return rc;
}

void fed_run_note_target(fed_store *store, int64_t run_id, const char *unit, int at, double accuracy, double target) {
    fprintf(stderr, "federate: target_accuracy %g%% reached at %s %d (test accuracy %.2f%%); stopping\n", target, unit,
            at, 100 * accuracy);
    if (!store) return;
    char note[160];
    snprintf(note, sizeof note, "stopped at %s %d: test accuracy %.2f%% reached target_accuracy %g%%", unit, at,
             100 * accuracy, target);
    fed_store_run_set_text(store, run_id, "target", note);
}

void fed_run_note_failure(fed_store *store, int64_t run_id, int rc) {
    /* the store's own calls may overwrite the message: keep it, then restore it */
    char msg[1100];
    snprintf(msg, sizeof msg, "%s", fed_last_error());
    fed_store_run_set_status(store, run_id, "failed");
    fed_store_run_set_text(store, run_id, "error", msg);
    fed_error(rc, "%s", msg);
}

/* The global model of an evaluated round, for `federate export --round`. */
static int save_round_model(run_state *s, fed_store *store, int64_t run_id, int round) {
    memcpy(fed_model_params(s->model), s->global, s->n * sizeof(float));
    if (s->nb) memcpy(fed_model_buffers(s->model), s->gbuf, s->nb * sizeof(float));
    void *mbuf = NULL;
    size_t mlen = 0;
    int rc = fed_model_serialize(s->model, &mbuf, &mlen);
    if (!rc) rc = fed_store_save_round_model(store, run_id, round, mbuf, mlen);
    free(mbuf);
    return rc;
}

int fed_run(const fed_config *cfg_in, const fed_run_opts *opts, fed_run_result *out) {
    run_state S;
    memset(&S, 0, sizeof S);
    memset(out, 0, sizeof *out);
    out->final_accuracy = NAN;
    out->final_loss = NAN;
    out->sim_time_s = NAN;
    fed_store *store = opts ? opts->store : NULL;
    int64_t run_id = 0;
    int start_round = 1, rc;
    S.cfg = *cfg_in;
    fed_config *cfg = &S.cfg;

    /* Resuming: the run's own config and last checkpoint. */
    void *ck_model = NULL, *ck_state = NULL;
    size_t ck_mlen = 0, ck_slen = 0;
    if (opts && opts->resume_run > 0) {
        if (!store) return fed_error(FED_EINVAL, "resuming needs the experiment store");
        fed_run_info info;
        if ((rc = fed_store_get_run(store, opts->resume_run, &info))) return rc;
        fed_config_default(cfg);
        rc = fed_config_load_string(cfg, info.config_yaml, strlen(info.config_yaml));
        fed_run_info_free(&info);
        if (rc) return rc;
        int ck_round = 0;
        rc = fed_store_load_checkpoint(store, opts->resume_run, &ck_round, &ck_model, &ck_mlen, &ck_state, &ck_slen);
        if (rc == FED_ENOTFOUND) { ck_round = 0; rc = 0; }
        if (rc) return rc;
        run_id = opts->resume_run;
        start_round = ck_round + 1;
    }
    if ((rc = fed_config_validate(cfg))) goto done;
    if (!strcmp(cfg->strategy, "fedbuff")) { rc = fed_run_async(cfg, opts, out); goto done; }  /* src/fl/async_driver.c */
    if (opts && opts->build_federation) rc = opts->build_federation(opts->federation_ctx, cfg, &S.fed);
    else rc = fed_federation_build(cfg, &S.fed);
    if (rc) goto done;
    if ((rc = fed_model_for_config(cfg, &S.fed.train, &S.model))) goto done;
    fed_model_init_params(S.model, cfg->seed);
    S.n = fed_model_num_params(S.model);
    S.nb = fed_model_num_buffers(S.model);
    int threads = cfg->threads > 0 ? cfg->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (threads < 1) threads = 1;
    if ((rc = fed_pool_new(&S.eval_pool, threads))) goto done;
    fed_model_set_pool(S.model, threads > 1 ? S.eval_pool : NULL);

    fed_strategy_params sp;
    fed_strategy_params_default(&sp);
    sp.num_clients = cfg->num_clients;
    sp.server_lr = cfg->server_lr;
    sp.server_momentum = cfg->server_momentum;
    sp.beta1 = cfg->beta1;
    sp.beta2 = cfg->beta2;
    sp.tau = cfg->tau;
    sp.mu = cfg->proximal_mu;
    sp.q = cfg->q;
    sp.lipschitz = cfg->lipschitz;
    if ((rc = fed_strategy_create(&S.strategy, cfg->strategy, &sp, S.n))) goto done;
    if ((rc = fed_pipeline_build(cfg, &S.pipeline))) goto done;
    if ((rc = fed_selector_init(&S.sel, cfg->client_selection, S.fed.num_clients))) goto done;
    if ((rc = fed_sysim_new(&S.sim, cfg, &S.sel, S.fed.num_clients, (double)((S.n + S.nb) * sizeof(float))))) goto done;
    if ((rc = fed_privacy_new(&S.priv, cfg, &S.fed))) goto done;
    if (S.priv && S.nb && fed_privacy_mode(S.priv) != FED_PRIVACY_DPSGD) {
        /* BatchNorm statistics would leave the clients un-noised */
        rc = fed_error(FED_EUNSUPPORTED, "privacy.mode %s: model %s has BatchNorm statistics that would be shared "
                                         "without noise; use a model without BatchNorm (mlp, cnn, cnn-dp%s)",
                       cfg->dp_mode, cfg->model,
                       fed_privacy_mode(S.priv) == FED_PRIVACY_DISTRIBUTED_DPSGD ? "" : ", or resnet with norm: group");
        goto done;
    }
    if ((fed_privacy_mode(S.priv) == FED_PRIVACY_DPSGD || fed_privacy_mode(S.priv) == FED_PRIVACY_DISTRIBUTED_DPSGD) &&
        (!strcmp(cfg->model, "cnn-bn") || !strcmp(cfg->model, "resnet"))) {
        /* refused here rather than by every client in every round */
        rc = fed_error(FED_EUNSUPPORTED, "privacy.mode %s needs per-example gradients, and model %s has "
                                         "normalization layers that mix examples; use mlp, cnn or cnn-dp",
                       cfg->dp_mode, cfg->model);
        goto done;
    }
    int dpfedavg = fed_privacy_mode(S.priv) == FED_PRIVACY_DPFEDAVG;
    if ((rc = fed_secure_agg_new(&S.secagg, cfg, &S.fed))) goto done;
    if (S.secagg && S.nb) {
        rc = fed_error(FED_EUNSUPPORTED, "secure_aggregation: model %s has BatchNorm statistics that would reach the "
                                         "server unmasked; use a model without BatchNorm (mlp, cnn, cnn-dp, or resnet "
                                         "with norm: group)", cfg->model);
        goto done;
    }
    if (S.secagg && !(S.sa_mean = malloc(S.n * sizeof(float)))) {
        rc = fed_error(FED_ENOMEM, "run: out of memory");
        goto done;
    }

    S.global = malloc(S.n * sizeof(float));
    S.gbuf = malloc((S.nb ? S.nb : 1) * sizeof(float));
    int K = fed_config_clients_per_round(cfg);
    /* DP-FedAvg samples each client independently: any number may come */
    int Kcap = dpfedavg ? S.fed.num_clients : fed_sysim_capacity(S.sim, K);
    int Ktarget = K;
    S.clients = malloc((size_t)Kcap * sizeof(int));
    if (dpfedavg) S.dp_mean = malloc(S.n * sizeof(float));
    S.eval_flags = malloc((size_t)Kcap * sizeof(int));
    S.eval_ids = malloc((size_t)Kcap * sizeof(int));
    S.tasks = calloc((size_t)Kcap, sizeof(fed_task));
    S.results = calloc((size_t)Kcap, sizeof(fed_result));
    S.cres = calloc((size_t)Kcap, sizeof(fed_client_res));
    S.evals = calloc((size_t)Kcap, sizeof(fed_eval_res));
    S.cm = calloc((size_t)Kcap, sizeof(fed_client_metrics));
    S.ins = calloc((size_t)Kcap, sizeof(fed_client_ins));
    if (!S.global || !S.gbuf || !S.clients || !S.eval_flags || !S.eval_ids || !S.tasks || !S.results || !S.cres ||
        !S.evals || !S.cm || !S.ins || (dpfedavg && !S.dp_mean)) {
        rc = fed_error(FED_ENOMEM, "run: out of memory for %d clients per round", K);
        goto done;
    }
    memcpy(S.global, fed_model_params(S.model), S.n * sizeof(float));
    if (S.nb) memcpy(S.gbuf, fed_model_buffers(S.model), S.nb * sizeof(float));

    /* the store: a new run, or the resumed one rolled back to its checkpoint */
    if (store && run_id == 0) {
        char *yaml = fed_config_to_yaml(cfg);
        if (!yaml) { rc = fed_error(FED_ENOMEM, "run: out of memory"); goto done; }
        rc = fed_store_run_begin(store, cfg->name, yaml, &run_id);
        free(yaml);
        if (rc) goto done;
    } else if (store) {
        if ((rc = fed_store_truncate(store, run_id, start_round - 1))) goto done;
        if ((rc = fed_store_run_set_status(store, run_id, "running"))) goto done;
        if (ck_model) {
            if ((rc = fed_model_load_buffer(S.model, ck_model, ck_mlen))) goto done;
            memcpy(S.global, fed_model_params(S.model), S.n * sizeof(float));
            if (S.nb) memcpy(S.gbuf, fed_model_buffers(S.model), S.nb * sizeof(float));
            if ((rc = load_state(S.strategy, &S.sel, S.priv, S.sim, ck_state, ck_slen))) goto done;
        }
        fed_round_metrics *past;
        int np;
        if ((rc = fed_store_get_rounds(store, run_id, &past, &np))) goto done;
        for (int i = 0; i < np; i++) {
            out->bytes_up += past[i].bytes_up;
            out->bytes_down += past[i].bytes_down;
            if (!isnan(past[i].test_accuracy)) { out->final_accuracy = past[i].test_accuracy; out->final_loss = past[i].test_loss; }
        }
        free(past);
    }
    out->run_id = run_id;
    if (store && S.priv) fed_store_run_set_text(store, run_id, "privacy", fed_privacy_describe(S.priv));
    if (S.priv && (rc = fed_privacy_epsilon(S.priv, &out->epsilon))) goto done;

    int scaffold = strcmp(cfg->strategy, "scaffold") == 0;
    if (scaffold) {
        char dir[700];
        if (cfg->state_dir[0]) snprintf(dir, sizeof dir, "%s", cfg->state_dir);
        else snprintf(dir, sizeof dir, "federate-state");
        if (mkdir(dir, 0755) && access(dir, W_OK)) { rc = fed_error(FED_EIO, "cannot create state_dir %s", dir); goto done; }
        char sub[760];
        snprintf(sub, sizeof sub, "%s/run_%lld_%llu", dir, (long long)run_id, (unsigned long long)cfg->seed);
        if ((rc = fed_client_state_open(&S.cstate, sub, S.n, cfg->checkpoint_every + 1))) goto done;
    }
    if (cfg->download_compression[0] && !(opts && opts->transport)) {
        /* each client's last decoded copy of the global model, for delta frames */
        char dir[700];
        if (cfg->state_dir[0]) snprintf(dir, sizeof dir, "%s", cfg->state_dir);
        else snprintf(dir, sizeof dir, "federate-state");
        if (mkdir(dir, 0755) && access(dir, W_OK)) { rc = fed_error(FED_EIO, "cannot create state_dir %s", dir); goto done; }
        char sub[760];
        snprintf(sub, sizeof sub, "%s/run_%lld_%llu_download", dir, (long long)run_id, (unsigned long long)cfg->seed);
        if ((rc = fed_client_state_open(&S.down_state, sub, S.n, cfg->checkpoint_every + 1))) goto done;
        if ((rc = fed_codec_new(&S.down_codec, cfg->download_compression))) goto done;
        S.env.download = S.down_codec;
        S.env.download_state = S.down_state;
    }
    if (fed_pipeline_needs_state(&S.pipeline)) {
        /* error feedback: each client's residual, on disk like SCAFFOLD's state */
        char dir[700];
        if (cfg->state_dir[0]) snprintf(dir, sizeof dir, "%s", cfg->state_dir);
        else snprintf(dir, sizeof dir, "federate-state");
        if (mkdir(dir, 0755) && access(dir, W_OK)) { rc = fed_error(FED_EIO, "cannot create state_dir %s", dir); goto done; }
        char sub[760];
        snprintf(sub, sizeof sub, "%s/run_%lld_%llu_residual", dir, (long long)run_id, (unsigned long long)cfg->seed);
        if ((rc = fed_client_state_open(&S.residuals, sub, S.n, cfg->checkpoint_every + 1))) goto done;
        fed_pipeline_attach_state(&S.pipeline, S.residuals);
    }
    S.env.cfg = cfg;
    S.env.fed = &S.fed;
    S.env.pipeline = &S.pipeline;
    S.env.state = S.cstate;
    if (opts && opts->on_client) {
        S.env.progress = opts->on_client;
        S.env.progress_ctx = opts->ctx;
    }
    fed_transport *tr = opts ? opts->transport : NULL;
    if (!tr) {
        if ((rc = fed_transport_inproc(&S.own_transport, &S.env, S.model, threads))) goto done;
        tr = S.own_transport;
    }
    if (tr->eligible && !(S.eligible = malloc((size_t)S.fed.num_clients))) {
        rc = fed_error(FED_ENOMEM, "run: out of memory");
        goto done;
    }

    /* Every global evaluation fills the confusion matrix, so the last one is the
     * final model's and the test set is not read again after the loop. */
    out->num_classes = fed_model_num_classes(S.model);
    out->confusion = calloc((size_t)out->num_classes * out->num_classes, sizeof(int64_t));
    if (!out->confusion) { rc = fed_error(FED_ENOMEM, "run: out of memory"); goto done; }
    int last_eval_round = 0;
    for (int round = start_round; round <= cfg->num_rounds; round++) {
        double t0 = now_s();
        int K = Kcap;
        /* a networked coordinator selects among the clients registered so far
         * (all registered: the same selection as in simulation) */
        int nel = S.fed.num_clients;
        if (tr->eligible && (rc = tr->eligible(tr, round, &S.fed, S.eligible, &nel))) goto done;
        if (dpfedavg) rc = fed_privacy_select(S.priv, cfg->seed, round, S.clients, &K);
        else if (nel < S.fed.num_clients && !S.sim->enabled) {
            K = Ktarget < nel ? Ktarget : nel;
            rc = K > 0 ? fed_select_clients_among(&S.sel, &S.fed, cfg->seed, round, K, S.eligible, S.clients) : 0;
        } else rc = fed_sysim_select(S.sim, &S.sel, &S.fed, cfg->seed, round, Ktarget, S.clients, &K);
        if (rc) goto done;
        fed_client_ins defaults = {0};
        defaults.local_epochs = cfg->local_epochs;
        if (cfg->local_steps > 0) {
            /* a fixed number of local steps instead of epochs (FedSGD at 1) */
            defaults.max_steps = cfg->local_steps;
            defaults.local_epochs = INT_MAX / 4;
        }
        defaults.batch_size = cfg->batch_size;
        defaults.lr = (float)(cfg->learning_rate * pow(cfg->lr_decay, round - 1));
        fed_client_ins *ins = S.ins;
        if (K > 0 && (rc = S.strategy->configure_fit(S.strategy, round, S.clients, K, &defaults, ins))) goto done;
        for (int i = 0; i < K; i++) fed_privacy_configure(S.priv, &ins[i]);
        for (int i = 0; i < K; i++) {
            S.tasks[i].round = round;
            S.tasks[i].client = S.clients[i];
            S.tasks[i].ins = ins[i];
            if (cfg->adapt_to_capability) {
                /* Slow devices do proportionally less local work (a fraction of E
                 * epochs, in steps), the heterogeneity FedNova corrects for. */
                int c = S.clients[i];
                double cap = S.fed.capability[c];
                long per_epoch = ((long)S.fed.part.train_n[c] + ins[i].batch_size - 1) / ins[i].batch_size;
                long steps = (long)ceil(cap * ins[i].local_epochs * per_epoch);
                if (steps < 1) steps = 1;
                S.tasks[i].ins.max_steps = steps;
                S.tasks[i].ins.local_epochs = (int)((steps + per_epoch - 1) / per_epoch);
            }
        }
        /* simulated devices: failures drawn, stragglers' work cut to the deadline */
        if ((rc = fed_sysim_plan(S.sim, &S.fed, S.tasks, K))) goto done;
        if (S.priv && cfg->dp_target_epsilon > 0) {
            /* the budget: never start a round whose release could exceed it */
            double after;
            if ((rc = fed_privacy_epsilon_after(S.priv, S.tasks, K, &after))) goto done;
            if (after > cfg->dp_target_epsilon) {
                fprintf(stderr,
                        "federate: privacy budget: round %d would bring epsilon to %.4g, above "
                        "privacy.target_epsilon %.4g (delta %g); stopping after round %d\n",
                        round, after, cfg->dp_target_epsilon, cfg->dp_delta, round - 1);
                out->budget_exhausted = 1;
                if (store) {
                    char note[200];
                    snprintf(note, sizeof note, "stopped before round %d: epsilon would reach %.4g > target %.4g",
                             round, after, cfg->dp_target_epsilon);
                    fed_store_run_set_text(store, run_id, "budget", note);
                }
                break;
            }
        }
        const float *control = S.strategy->server_control ? S.strategy->server_control(S.strategy) : NULL;
        if (K > 0) {
            if ((rc = tr->broadcast(tr, S.tasks, K, S.global, S.gbuf, control))) goto done;
            if ((rc = tr->collect(tr, S.results, K, 0))) goto done;
        }
        double sim_round;
        if ((rc = fed_sysim_finish(S.sim, &S.sel, &S.fed, S.tasks, S.results, K, dpfedavg ? K : Ktarget, &sim_round)))
            goto done;

        /* secure aggregation: the server gets only the survivors' weighted mean */
        int sa_ok = 0;
        if (S.secagg && K > 0) {
            fed_secure_agg_report sr;
            if (tr->secure_mean) rc = tr->secure_mean(tr, round, S.results, K, S.sa_mean, S.n, &sr);
            else rc = fed_secure_agg_round(S.secagg, round, S.results, K, S.sa_mean, S.n, &sr);
            if (rc == FED_ESTATE || rc == FED_ERANGE) {
                fprintf(stderr, "federate: round %d: secure aggregation failed, the global model is unchanged: %s\n",
                        round, fed_last_error());
                rc = 0;
            } else if (rc) {
                goto done;
            } else {
                sa_ok = 1;
            }
        }
        /* results in client-id order; the aggregate sees only finished ones */
        int fin = 0;
        fed_round_metrics m;
        memset(&m, 0, sizeof m);
        m.round = round;
        m.selected = K;
        double ls = 0, ls2 = 0;
        for (int i = 0; i < K; i++) {
            fed_result *r = &S.results[i];
            fed_client_metrics *c = &S.cm[i];
            memset(c, 0, sizeof *c);
            c->round = round;
            c->client = r->client;
            c->num_examples = (long)S.fed.part.train_n[r->client];
            c->local_accuracy = NAN;
            c->train_loss = NAN;
            m.bytes_down += r->bytes_down;
            c->bytes_down = r->bytes_down;   /* a client that dropped still downloaded */
            if (r->status != FED_RESULT_OK) {
                /* a failed client is the client's problem: say so, go on without it */
                if (r->status == FED_RESULT_FAILED)
                    fprintf(stderr, "federate: round %d: client %d failed: %s\n", round, r->client, r->error);
                c->dropped = 1;
                continue;
            }
            fed_stage_ctx sc = {cfg->seed, round, r->client, r->num_examples, NULL};
            if ((rc = fed_pipeline_server(&S.pipeline, &sc, r->delta, S.n))) goto done;
            c->steps = r->steps;
            c->train_loss = r->train_loss;
            c->bytes_up = r->bytes_up;
            m.bytes_up += r->bytes_up;
            ls += r->train_loss;
            ls2 += r->train_loss * r->train_loss;
            fed_client_res *cr = &S.cres[fin++];
            cr->client = r->client;
            cr->delta = r->delta;
            cr->delta_c = r->delta_c;
            cr->num_examples = r->num_examples;
            cr->steps = r->steps;
            cr->lr = r->lr;
            cr->loss_before = r->loss_before;
            cr->train_loss = r->train_loss;
        }
        m.finished = fin;
        m.dropped = K - fin;
        m.train_loss_mean = fin ? ls / fin : NAN;
        m.train_loss_std = fin ? sqrt(fmax(0.0, ls2 / fin - m.train_loss_mean * m.train_loss_mean)) : NAN;
        m.epsilon = NAN;
        m.clip = fed_privacy_clip(S.priv);
        m.sim_time_s = sim_round;
        if (S.sim->enabled) out->sim_time_s = S.sim->now;
        if (dpfedavg) {
            /* every round releases the noised sum, even of nobody's update, and
             * the strategy's server step sees it as one update of weight 1 */
            if ((rc = fed_privacy_aggregate(S.priv, cfg->seed, round, S.results, K, S.dp_mean, S.n))) goto done;
            fed_client_res one = {.client = -1, .delta = S.dp_mean, .num_examples = 1, .steps = 1,
                                  .lr = defaults.lr, .train_loss = m.train_loss_mean};
            if ((rc = S.strategy->aggregate_fit(S.strategy, round, &one, 1, S.global))) goto done;
            if (!fed_vec_all_finite(S.global, S.n)) {
                rc = fed_error(FED_ERANGE, "round %d: the global model diverged (NaN/Inf)", round);
                goto done;
            }
        } else if (S.secagg) {
            if (sa_ok && fin >= cfg->min_clients) {
                fed_client_res one = {.client = -1, .delta = S.sa_mean, .num_examples = 1, .steps = 1,
                                      .lr = defaults.lr, .train_loss = m.train_loss_mean};
                if ((rc = S.strategy->aggregate_fit(S.strategy, round, &one, 1, S.global))) goto done;
            }
        } else if (fin >= cfg->min_clients && fin > 0) {
            if ((rc = S.strategy->aggregate_fit(S.strategy, round, S.cres, fin, S.global))) goto done;
            if (!fed_vec_all_finite(S.global, S.n)) {
                rc = fed_error(FED_ERANGE, "round %d: the global model diverged (NaN/Inf); lower learning_rate or server_lr", round);
                goto done;
            }
            if (S.nb) {
                /* BatchNorm statistics: averaged by examples, like FedAvg's state_dict */
                double tot = 0;
                for (int i = 0; i < K; i++) if (S.results[i].status == FED_RESULT_OK) tot += (double)S.results[i].num_examples;
                memset(S.gbuf, 0, S.nb * sizeof(float));
                for (int i = 0; i < K; i++) {
                    if (S.results[i].status != FED_RESULT_OK) continue;
                    fed_vec_axpy(S.gbuf, (float)(S.results[i].num_examples / tot), S.results[i].buffers, S.nb);
                }
            }
        }
        m.test_accuracy = NAN;
        m.test_loss = NAN;
        m.local_accuracy = NAN;
        int eval_now = (cfg->evaluation_every > 0 && round % cfg->evaluation_every == 0) || round == cfg->num_rounds;
        if (eval_now) {
            if ((rc = evaluate_global(&S, &m.test_loss, &m.test_accuracy, out->confusion))) goto done;
            last_eval_round = round;
            out->final_accuracy = m.test_accuracy;
            out->final_loss = m.test_loss;
            if (cfg->target_accuracy > 0 && 100 * m.test_accuracy >= cfg->target_accuracy) out->target_round = round;
            /* federated evaluation: the new global model on the finished clients' own test splits */
            int ne = 0;
            for (int i = 0; i < K; i++) S.eval_flags[i] = S.results[i].status == FED_RESULT_OK;
            if (S.strategy->configure_evaluate) S.strategy->configure_evaluate(S.strategy, round, S.clients, K, S.eval_flags);
            for (int i = 0; i < K; i++)
                if (S.eval_flags[i] && S.fed.part.test_n[S.clients[i]] > 0) S.eval_ids[ne++] = S.clients[i];
            if (ne > 0) {
                if ((rc = tr->evaluate(tr, S.eval_ids, ne, S.global, S.gbuf, S.evals))) goto done;
                double lloss, lacc;
                int good = 0;
                for (int j = 0; j < ne; j++) good += !isnan(S.evals[j].accuracy);
                if (good == ne && S.strategy->aggregate_evaluate(S.strategy, round, S.evals, ne, &lloss, &lacc) == 0)
                    m.local_accuracy = lacc;
                for (int j = 0, i = 0; j < ne; j++) {
                    while (i < K && S.cm[i].client != S.eval_ids[j]) i++;
                    if (i < K) S.cm[i].local_accuracy = S.evals[j].accuracy;
                }
            }
        }
        if (S.priv) {
            if ((rc = fed_privacy_account(S.priv, S.results, K))) goto done;
            if ((rc = fed_privacy_epsilon(S.priv, &m.epsilon))) goto done;
            out->epsilon = m.epsilon;
        }
        m.wall_s = now_s() - t0;
        out->bytes_up += m.bytes_up;
        out->bytes_down += m.bytes_down;
        out->rounds_done = round;
        if (store) {
            if ((rc = fed_store_add_round(store, run_id, &m))) goto done;
            if ((rc = fed_store_add_clients(store, run_id, S.cm, K))) goto done;
            if (eval_now && (rc = save_round_model(&S, store, run_id, round))) goto done;
            if ((cfg->checkpoint_every > 0 && round % cfg->checkpoint_every == 0) || round == cfg->num_rounds ||
                out->target_round)
                if ((rc = checkpoint(&S, store, run_id, round))) goto done;
        }
        if (opts && opts->on_round) {
            fed_round_report rep = {m, S.cm, K, run_id};
            opts->on_round(opts->ctx, cfg, &rep);
        }
        if (out->target_round) {
            fed_run_note_target(store, run_id, "round", round, m.test_accuracy, cfg->target_accuracy);
            break;
        }
        if (opts && opts->stop && *opts->stop && round < cfg->num_rounds) {
            out->stopped = 1;
            break;
        }
    }
    /* stopped early between evaluations, or resumed with nothing left to run */
    if (last_eval_round == 0 || last_eval_round != out->rounds_done)
        if ((rc = evaluate_global(&S, &out->final_loss, &out->final_accuracy, out->confusion))) goto done;
    if (store) {
        char *js = confusion_json(out->confusion, out->num_classes);
        if (js) { fed_store_run_set_text(store, run_id, "confusion", js); free(js); }
        rc = fed_store_run_set_status(store, run_id, out->stopped ? "interrupted" : "finished");
    }
done:
    if (rc && store && run_id) fed_run_note_failure(store, run_id, rc);
    free(ck_model);
    free(ck_state);
    run_state_free(&S);
    return rc;
}
