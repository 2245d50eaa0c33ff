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
/* A coordinator's federation: the test set only, no training examples (train
 * holds the image shape and class count, n = 0), and per client only the sizes
 * (and train label histogram, num_classes entries per client, may be NULL) that
 * the clients reported; capabilities drawn as fed_federation_build does. */
int fed_federation_build_sizes(const fed_config *cfg, int num_clients, const size_t *train_n, const size_t *test_n,
                               const int32_t *label_counts, fed_federation *fed);
void fed_federation_free(fed_federation *fed);
/* The run's model (cfg->model, hidden sizes, norm) for data shaped like d,
 * initialized as fed_model_create does. */
int fed_model_for_config(const fed_config *cfg, const fed_dataset *d, fed_model **out);

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
/* As get; *found (may be NULL) says whether a vector was written before round. */
int fed_client_state_find(fed_client_state *s, int client, int round, float *out, int *found);

/* ---- the update pipeline ------------------------------------------------ */

/* Context a stage sees: who and when, and a stream address for its randomness. */
typedef struct fed_stage_ctx {
    uint64_t seed;
    int round;
    int client;        /* -1 on the server */
    long num_examples;
    const struct fed_client_ins *ins;  /* the client's instructions (NULL on the server) */
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
/* 1 if a stage keeps per-client state between rounds (compression's error
 * feedback); the driver then opens a state store and attaches it. */
int fed_pipeline_needs_state(const fed_pipeline *p);
void fed_pipeline_attach_state(fed_pipeline *p, fed_client_state *s);
void fed_pipeline_free(fed_pipeline *p);
/* Runs every client stage in order; *wire_bytes = encoded size. */
int fed_pipeline_client(fed_pipeline *p, const fed_stage_ctx *ctx, float *update, size_t n, int64_t *wire_bytes);
int fed_pipeline_server(fed_pipeline *p, const fed_stage_ctx *ctx, float *update, size_t n);

/* ---- differential privacy over rounds ----------------------------------- */

/* The privacy side of a run (src/fl/privacy.c): what clients are told to do
 * (DP-SGD, update clipping, local noise), user-level DP-FedAvg's Poisson client
 * sampling and noised aggregate with fixed or adaptive clipping, and the
 * accountant that turns what ran into (epsilon, delta). */
typedef struct fed_privacy fed_privacy;
struct fed_result;
struct fed_task;

/* Append-only. */
enum fed_privacy_mode { FED_PRIVACY_NONE = 0, FED_PRIVACY_DPSGD = 1, FED_PRIVACY_DPFEDAVG = 2, FED_PRIVACY_LOCAL = 3,
                        FED_PRIVACY_DISTRIBUTED = 4, FED_PRIVACY_DISTRIBUTED_DPSGD = 5 };

/* From cfg's privacy.* keys; refuses combinations that cannot be accounted
 * (e.g. DP-FedAvg with a strategy that weights clients unequally). */
int fed_privacy_new(fed_privacy **out, const fed_config *cfg, const fed_federation *fed);
void fed_privacy_free(fed_privacy *p);
int fed_privacy_mode(const fed_privacy *p);
/* Human-readable mechanism, for the store and reports. */
const char *fed_privacy_describe(const fed_privacy *p);
/* Sets the DP fields of one client's instructions for the coming round. */
void fed_privacy_configure(const fed_privacy *p, fed_client_ins *ins);
/* DP-FedAvg: each client in independently with probability m / N (the
 * accountant's assumption). Writes ascending ids to out (room for N), *k their count. */
int fed_privacy_select(const fed_privacy *p, uint64_t seed, int round, int *out, int *k);
/* DP-FedAvg: the noised mean of the finished clients' clipped updates,
 * (sum + N(0, (z C)^2)) / m with m the expected clients per round, into out;
 * then adaptive clipping's update of C from the noised count of unclipped
 * updates. res[i].update_norm is each update's norm before clipping. */
int fed_privacy_aggregate(fed_privacy *p, uint64_t seed, int round, const struct fed_result *res, int k,
                          float *out, size_t n);
/* The clip used this round (NAN without update clipping). */
double fed_privacy_clip(const fed_privacy *p);
/* Epsilon if the given tasks run as planned, without recording anything. */
int fed_privacy_epsilon_after(const fed_privacy *p, const struct fed_task *tasks, int k, double *eps);
/* Records a finished round: the steps each finished client ran. */
int fed_privacy_account(fed_privacy *p, const struct fed_result *res, int k);
/* Epsilon spent so far at the configured delta (0 before any round). */
int fed_privacy_epsilon(const fed_privacy *p, double *eps);
/* Checkpoint: the state a resumed run needs (per-client steps, rounds, clip),
 * as 64-bit words; get fills up to *len words, set restores them. */
int fed_privacy_state_size(const fed_privacy *p, size_t *len);
int fed_privacy_state_get(const fed_privacy *p, int64_t *words, size_t len);
int fed_privacy_state_set(fed_privacy *p, const int64_t *words, size_t len);

/* ---- secure aggregation in a round --------------------------------------- */

/* src/fl/secure_round.c: with secure_aggregation.enabled, the finished
 * clients' updates are summed under masks (SecAgg, or SecAgg+ on a Harary
 * graph) and the server gets only their weighted mean. */
typedef struct fed_secure_agg fed_secure_agg;
typedef struct fed_secure_agg_report {
    int participants, survivors;   /* clients that began the protocol / whose inputs are in the sum */
    int degree, threshold;         /* neighbours per client, Shamir threshold t */
    double client_ms, server_ms;   /* one client's compute, the server's */
    double bytes_per_client;       /* protocol traffic, up and down */
} fed_secure_agg_report;
/* NULL in *out when secure aggregation is off. */
int fed_secure_agg_new(fed_secure_agg **out, const fed_config *cfg, const fed_federation *fed);
void fed_secure_agg_free(fed_secure_agg *sa);
/* Securely averages the finished results (weights: num_examples) into mean (n
 * floats). Clients that drop out during the protocol become FED_RESULT_DROPPED;
 * the survivors' bytes_up become their protocol traffic. FED_ESTATE when fewer
 * than the threshold survive: the caller leaves the global model unchanged. */
int fed_secure_agg_round(fed_secure_agg *sa, int round, struct fed_result *res, int k, float *mean, size_t n,
                         fed_secure_agg_report *rep);

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
    /* download compression: the codec for the global model and each client's
     * last decoded copy (deltas are encoded against it); NULL when off */
    const struct fed_codec *download;
    fed_client_state *download_state;
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
    int kind;                 /* 0 uniform, 1 stratified, 2 capability, 3 speed, 4 oort, 5 power-of-choice */
    int num_clients;
    int *last_selected;       /* round each client was last selected (0 = never); checkpointed */
    /* what oort and power-of-choice remember per client (NAN = unknown); checkpointed */
    double *loss;             /* last reported mean training loss */
    double *duration;         /* last simulated duration of its work, s */
    const double *speed;      /* device speeds (samples/s) from the simulated system; NULL = all equal */
    double oort_alpha, oort_epsilon;
    int poc_candidates;       /* power-of-choice d (0 = 2k) */
} fed_selector;

int fed_selector_init(fed_selector *s, const char *kind, int num_clients);
void fed_selector_free(fed_selector *s);
/* Chooses k distinct clients for round, ascending ids. */
int fed_select_clients(fed_selector *s, const fed_federation *fed, uint64_t seed, int round, int k, int *out);
/* The same among the clients with eligible[i] != 0 (NULL = all); k must not
 * exceed their number. */
int fed_select_clients_among(fed_selector *s, const fed_federation *fed, uint64_t seed, int round, int k,
                             const unsigned char *eligible, int *out);
/* Tells oort / power-of-choice what a client reported (loss NAN = keep the old). */
void fed_selector_observe(fed_selector *s, int client, double loss, double duration);

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
    /* Optional (NULL: the driver runs secure aggregation in process): with
     * secure_aggregation.enabled, runs the protocol among the clients whose
     * results came back OK, as fed_secure_agg_round does, and writes the
     * survivors' weighted mean into mean (n floats). A networked coordinator
     * relays the clients' stage messages (src/net/secagg_relay.c). */
    int (*secure_mean)(fed_transport *t, int round, struct fed_result *results, int k, float *mean, size_t n,
                       fed_secure_agg_report *rep);
    /* Optional (NULL: every client can be selected): called from the driver's
     * thread before each round's selection. Sets eligible[i] (num_clients
     * entries) for the clients that can take a task this round and *count to
     * their number, and may fill in their sizes in fed. A networked coordinator
     * lists the clients registered so far, so clients that join after the run
     * started are selected from the next round on. */
    int (*eligible)(fed_transport *t, int round, fed_federation *fed, unsigned char *eligible, int *count);
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
    int64_t run_id;            /* the run in the store (0 without one) */
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
    /* builds the federation instead of fed_federation_build (a networked
     * coordinator: see fed_federation_build_sizes); may be NULL */
    int (*build_federation)(void *ctx, const fed_config *cfg, fed_federation *fed);
    void *federation_ctx;
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
    double epsilon;            /* privacy spent (at privacy.delta); 0 without DP */
    double sim_time_s;         /* simulated time of the whole run (virtual clock); NAN when not simulated */
    int budget_exhausted;      /* 1 if stopped before a round that would exceed privacy.target_epsilon */
    int target_round;          /* the round (FedBuff: server step) that reached target_accuracy; 0 if none */
} fed_run_result;

int fed_run(const fed_config *cfg, const fed_run_opts *opts, fed_run_result *out);
void fed_run_result_free(fed_run_result *r);

#endif
