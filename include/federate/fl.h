/* Federated learning: the federation (clients = their data and state), the
 * client-side fit, the update pipeline, client selection, the transport seam,
 * and the round driver. The driver does not know where clients run: the
 * transport is the only part the network deployment or MPI replaces. */
#ifndef FEDERATE_FL_H
#define FEDERATE_FL_H
#include <stddef.h>
#include <stdint.h>
#include "federate/config.h"
#include "federate/data.h"
#include "federate/model.h"
#include "federate/partition.h"
#include "federate/pool.h"
#include "federate/store.h"
#include "federate/strategy.h"

/* ---- the federation: data and clients --------------------------------- */

typedef struct fed_federation {
    fed_dataset train;        /* all clients' training data (each sees only its index lists) */
    fed_dataset test;         /* the server's held-out test set */
    fed_partition part;       /* per-client train/local-test index lists */
    double *capability;       /* per-client speed factor (1 = nominal) */
    int num_clients;
} fed_federation;

/* Loads the data set (or the per-client folders of cfg->data_dir), partitions
 * it and draws capability profiles, all from cfg->seed. */
int fed_federation_build(const fed_config *cfg, fed_federation *fed);
void fed_federation_free(fed_federation *fed);

/* ---- per-client persistent state (SCAFFOLD's c_i) ---------------------- */

/* Vectors per client kept on disk under a directory (memory stays flat however
 * many clients there are), with the previous version kept so a run resumed from
 * an earlier checkpoint reads the state as it was then. Thread-safe. */
typedef struct fed_client_state fed_client_state;
/* versions: how many rounds back a resume may need (checkpoint_every + 1). */
int fed_client_state_open(fed_client_state **out, const char *dir, size_t n, int versions);
void fed_client_state_close(fed_client_state *s);
/* Latest vector written before `round` (zeros if none). */
int fed_client_state_get(fed_client_state *s, int client, int round, float *out);
int fed_client_state_put(fed_client_state *s, int client, int round, const float *v);

/* ---- the update pipeline ------------------------------------------------ */

/* Context a stage sees: who and when, and a stream address for its randomness. */
typedef struct fed_stage_ctx {
    uint64_t seed;
    int round;
    int client;        /* -1 on the server */
    long num_examples;
} fed_stage_ctx;

/* One stage of the update pipeline. Client side: in place on a client's update
 * before it leaves (clip, noise, quantize, mask), and may set the bytes it
 * will take on the wire. Server side: on each received update before it is
 * aggregated (decode, validate). */
typedef struct fed_stage fed_stage;
struct fed_stage {
    const char *name;
    void *state;
    int (*client_apply)(fed_stage *st, const fed_stage_ctx *ctx, float *update, size_t n, int64_t *wire_bytes);
    int (*server_apply)(fed_stage *st, const fed_stage_ctx *ctx, float *update, size_t n);
    void (*free_state)(fed_stage *st);
};

typedef struct fed_pipeline {
    fed_stage stages[16];
    int count;
} fed_pipeline;

/* Stages from the config (clip_norm > 0 adds "clip"; "float32" encoding last). */
int fed_pipeline_build(const fed_config *cfg, fed_pipeline *p);
void fed_pipeline_free(fed_pipeline *p);
/* Runs every client stage in order; *wire_bytes = encoded size. */
int fed_pipeline_client(fed_pipeline *p, const fed_stage_ctx *ctx, float *update, size_t n, int64_t *wire_bytes);
int fed_pipeline_server(fed_pipeline *p, const fed_stage_ctx *ctx, float *update, size_t n);

/* ---- a client's work ---------------------------------------------------- */

/* Append-only. */
enum fed_result_status { FED_RESULT_OK = 0, FED_RESULT_DROPPED = 1, FED_RESULT_FAILED = 2, FED_RESULT_LATE = 3 };

/* One client's task in a round. */
typedef struct fed_task {
    int round;
    int client;
    fed_client_ins ins;
} fed_task;

/* One client's result. delta/delta_c/buffers point into transport-owned memory
 * that stays valid until the next broadcast. */
typedef struct fed_result {
    int client;
    int status;               /* fed_result_status */
    float *delta;             /* n floats: local - global, after the client pipeline */
    float *delta_c;           /* SCAFFOLD: n floats, else NULL */
    float *buffers;           /* the model's buffers after training (BatchNorm statistics) */
    long num_examples, steps;
    float lr;
    double loss_before, train_loss, train_accuracy;
    double update_norm;       /* L2 norm of delta before the pipeline */
    int64_t bytes_up, bytes_down;
    char error[200];          /* why, when status is FED_RESULT_FAILED */
} fed_result;

/* Everything a client needs that is not in its task: its data, the run's
 * settings, where its state lives. Shared read-only by all workers. */
typedef struct fed_client_env {
    const fed_config *cfg;
    const fed_federation *fed;
    fed_pipeline *pipeline;
    fed_client_state *state;  /* NULL unless SCAFFOLD */
    /* progress within a round (called from one thread only); may be NULL */
    void (*progress)(void *ctx, int round, int done, int total);
    void *progress_ctx;
} fed_client_env;

/* Trains a private copy of the model (m: a worker's model, overwritten) from
 * the global parameters and buffers, and fills res (its delta/delta_c/buffers
 * buffers must be allocated by the caller). Deterministic in (seed, round, client). */
int fed_client_fit(const fed_client_env *env, fed_model *m, const fed_task *task, const float *global,
                   const float *global_buffers, const float *control, fed_result *res);
/* Accuracy and loss of the given parameters on the client's local test split. */
int fed_client_evaluate(const fed_client_env *env, fed_model *m, int client, const float *global,
                        const float *global_buffers, fed_eval_res *out);

/* ---- client selection --------------------------------------------------- */

typedef struct fed_selector {
    int kind;                 /* 0 uniform, 1 stratified, 2 capability */
    int num_clients;
    int *last_selected;       /* round each client was last selected (0 = never); checkpointed */
} fed_selector;

int fed_selector_init(fed_selector *s, const char *kind, int num_clients);
void fed_selector_free(fed_selector *s);
/* Chooses k distinct clients for round, ascending ids. */
int fed_select_clients(fed_selector *s, const fed_federation *fed, uint64_t seed, int round, int k, int *out);

/* ---- the transport seam -------------------------------------------------- */

typedef struct fed_transport fed_transport;
struct fed_transport {
    const char *name;
    void *impl;
    /* Hands each task to its client with the global model (and SCAFFOLD's c). */
    int (*broadcast)(fed_transport *t, const fed_task *tasks, int k, const float *global,
                     const float *global_buffers, const float *control);
    /* Waits for the results of the last broadcast, at most deadline_s seconds
     * (<= 0: no deadline); results[i] answers tasks[i]. Clients that dropped or
     * missed the deadline come back with that status. */
    int (*collect)(fed_transport *t, fed_result *results, int k, double deadline_s);
    /* Local evaluation of the global model on the given clients. */
    int (*evaluate)(fed_transport *t, const int *clients, int k, const float *global, const float *global_buffers,
                    fed_eval_res *out);
    void (*free_impl)(fed_transport *t);
};

/* In-process: clients trained side by side on `threads` worker threads, each
 * worker single-threaded with its own model. */
int fed_transport_inproc(fed_transport **out, const fed_client_env *env, const fed_model *proto, int threads);
void fed_transport_free(fed_transport *t);

/* ---- the round driver ---------------------------------------------------- */

typedef struct fed_round_report {
    fed_round_metrics m;
    const fed_client_metrics *clients;
    int nclients;
} fed_round_report;

typedef struct fed_run_opts {
    fed_store *store;          /* may be NULL: nothing recorded */
    int64_t resume_run;        /* > 0: continue this run from its last checkpoint */
    fed_transport *transport;  /* NULL: in-process with cfg->threads */
    /* called after each round; may be NULL */
    void (*on_round)(void *ctx, const fed_config *cfg, const fed_round_report *r);
    /* called within a round as clients finish; may be NULL */
    void (*on_client)(void *ctx, int round, int done, int total);
    void *ctx;
    volatile int *stop;        /* set to non-zero to stop after the current round */
} fed_run_opts;

typedef struct fed_run_result {
    int64_t run_id;
    int rounds_done;
    double final_accuracy;     /* fraction; NAN if never evaluated */
    double final_loss;
    int64_t bytes_up, bytes_down;
    int64_t *confusion;        /* num_classes^2, malloc'd; freed by fed_run_result_free */
    int num_classes;
    int stopped;               /* 1 if stopped early by *stop */
} fed_run_result;

int fed_run(const fed_config *cfg, const fed_run_opts *opts, fed_run_result *out);
void fed_run_result_free(fed_run_result *r);

#endif
