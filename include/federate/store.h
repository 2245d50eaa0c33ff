/* The experiment store: one SQLite file (default ./federate.db) with runs
 * (config, start, end, status), per-round and per-client metrics, and
 * checkpoints of the global model and server state for `--resume`. */
#ifndef FEDERATE_STORE_H
#define FEDERATE_STORE_H
#include <stddef.h>
#include <stdint.h>

typedef struct fed_store fed_store;

typedef struct fed_round_metrics {
    int round;                  /* 1-based */
    double test_accuracy;       /* global model on the test set, fraction; NAN when not evaluated */
    double test_loss;           /* NAN when not evaluated */
    double train_loss_mean;     /* over the clients that finished */
    double train_loss_std;
    double local_accuracy;      /* weighted mean of clients' local test accuracy; NAN if none */
    int selected, finished, dropped;
    int64_t bytes_up, bytes_down;
    double wall_s;              /* wall time of the round */
    double epsilon;             /* privacy spent so far (the run's epsilon at its delta); NAN without DP */
    double clip;                /* DP clip norm used this round; NAN without DP */
    double sim_time_s;          /* simulated time of the round (virtual clock); NAN when not simulated */
} fed_round_metrics;

typedef struct fed_client_metrics {
    int round;
    int client;
    int dropped;                /* 1 if selected but did not finish */
    long num_examples;
    long steps;
    double train_loss;          /* NAN if dropped */
    double local_accuracy;      /* on its local test split; NAN if not evaluated */
    int64_t bytes_up;
    int64_t bytes_down;         /* what the client downloaded this round */
} fed_client_metrics;

typedef struct fed_run_info {
    int64_t id;
    char name[64];
    char status[16];            /* running | finished | failed | interrupted */
    char started[32], ended[32];/* ISO 8601 UTC; "" if not ended */
    int rounds_done;
    double final_accuracy;      /* NAN if never evaluated */
    char *config_yaml;          /* malloc'd; freed by fed_run_info_free */
} fed_run_info;

/* Opens (creating the schema if needed). Errors name the path. */
int fed_store_open(fed_store **out, const char *path);
void fed_store_close(fed_store *s);
/* Opens an existing store for reading only: never creates the file or the
 * schema (FED_EIO naming the path if it does not exist, FED_EFORMAT if it is
 * not a federate store). Writes through it fail with FED_ESTATE. */
int fed_store_open_readonly(fed_store **out, const char *path);
/* The path the store was opened with (for messages); "" for NULL. */
const char *fed_store_path(const fed_store *s);

int fed_store_run_begin(fed_store *s, const char *name, const char *config_yaml, int64_t *run_id);
int fed_store_run_set_status(fed_store *s, int64_t run_id, const char *status); /* sets ended for non-running */
/* A free-form text attribute of a run (e.g. "confusion" as JSON). */
int fed_store_run_set_text(fed_store *s, int64_t run_id, const char *key, const char *value);
int fed_store_run_get_text(fed_store *s, int64_t run_id, const char *key, char **value); /* malloc'd */
int fed_store_add_round(fed_store *s, int64_t run_id, const fed_round_metrics *m);
/* Many clients of one round in one transaction. */
int fed_store_add_clients(fed_store *s, int64_t run_id, const fed_client_metrics *c, int n);
/* Checkpoint after `round`: the model (safetensors bytes) and server state
 * (opaque bytes). Keeps only the latest per run. */
int fed_store_save_checkpoint(fed_store *s, int64_t run_id, int round, const void *model, size_t model_len,
                              const void *state, size_t state_len);
/* FED_ENOTFOUND if the run has none. Buffers are malloc'd. */
int fed_store_load_checkpoint(fed_store *s, int64_t run_id, int *round, void **model, size_t *model_len,
                              void **state, size_t *state_len);
/* The global model (safetensors bytes) after an evaluated round, kept for every
 * such round (schema v3; zstd-compressed in the file) for `federate export --round`. */
int fed_store_save_round_model(fed_store *s, int64_t run_id, int round, const void *model, size_t len);
/* FED_ENOTFOUND, naming the rounds that have a model, if `round` has none. *model malloc'd. */
int fed_store_load_round_model(fed_store *s, int64_t run_id, int round, void **model, size_t *len);
/* Rounds with a stored model, ascending (none for a store older than v3); *rounds malloc'd. */
int fed_store_round_model_rounds(fed_store *s, int64_t run_id, int **rounds, int *n);
/* Removes rounds/clients/round models recorded after `round` (a resumed run redoes them). */
int fed_store_truncate(fed_store *s, int64_t run_id, int round);

int fed_store_get_run(fed_store *s, int64_t run_id, fed_run_info *info);
void fed_run_info_free(fed_run_info *info);
/* All runs, newest first; *runs is malloc'd (free each with fed_run_info_free, then free()). */
int fed_store_list_runs(fed_store *s, fed_run_info **runs, int *n);
/* All rounds of a run in order; *rounds malloc'd. */
int fed_store_get_rounds(fed_store *s, int64_t run_id, fed_round_metrics **rounds, int *n);
int fed_store_get_clients(fed_store *s, int64_t run_id, int round, fed_client_metrics **clients, int *n);

/* Replay protection of a networked coordinator that survives a restart (schema
 * v5): records that `client` signed a request with this nonce (1..64 bytes),
 * stamped ts (Unix seconds). *seen = 1, and nothing changes, if it was recorded
 * before. Atomic: of two concurrent calls with one nonce, one sees the other. */
int fed_store_nonce_record(fed_store *s, int client, const void *nonce, size_t len, int64_t ts, int *seen);
/* Forgets nonces stamped before `before` (requests that old are refused by their timestamp). */
int fed_store_nonce_forget(fed_store *s, int64_t before);

#endif
