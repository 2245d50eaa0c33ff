/* Federated strategies, modelled on Flower's Strategy: the server-side policy of
 * a round (what to ask the selected clients, how to fold their results into the
 * new global model, how to combine their evaluations). Each algorithm is one file
 * in src/fl/strategies/ that fills a fed_strategy. All arithmetic is on flat
 * vectors and is done in client-list order, so results are deterministic. */
#ifndef FEDERATE_STRATEGY_H
#define FEDERATE_STRATEGY_H
#include <stddef.h>
#include <stdint.h>

/* What the server asks one client to do in a round (configure_fit's output). */
typedef struct fed_client_ins {
    int local_epochs;      /* passes over the client's training data */
    int batch_size;
    float lr;              /* client learning rate */
    long max_steps;        /* > 0: stop after this many local steps */
    float prox_mu;         /* FedProx: gradient += mu * (w - w_global); 0 = off */
    int scaffold;          /* SCAFFOLD: gradient += c - c_i and report delta_c */
    int want_loss_before;  /* q-FedAvg: report the global model's loss on the local data */
    /* differential privacy, set by the run's privacy settings (0 = off) */
    float dpsgd_clip;      /* DP-SGD: per-example clip norm */
    float dpsgd_noise;     /* DP-SGD: noise multiplier */
    float update_clip;     /* DP-FedAvg / local DP: clip the update to this L2 norm */
    float local_noise;     /* local DP: stddev of the Gaussian noise the client adds */
    int secure_noise;      /* noise from the CSPRNG instead of the seeded stream */
    int dpsgd_sum;         /* distributed-dp-sgd: one DP-SGD step without noise; the update is
                              -lr times its gradient (clipped sum / B), computed directly so it is
                              exactly linear in the clipped sum; secure aggregation adds the noise */
} fed_client_ins;

/* What one client sends back (aggregate_fit's input). */
typedef struct fed_client_res {
    int client;            /* client id */
    const float *delta;    /* local model - global model, n floats */
    const float *delta_c;  /* SCAFFOLD: c_i(new) - c_i(old), n floats; else NULL */
    long num_examples;     /* training examples the client holds */
    long steps;            /* local optimizer steps taken (FedNova's tau_i) */
    float lr;              /* client learning rate used */
    double loss_before;    /* q-FedAvg: F_k(w^t), when asked */
    double train_loss;     /* mean loss over local training */
} fed_client_res;

/* A client's evaluation of the global model on its local test split. */
typedef struct fed_eval_res {
    int client;
    long num_examples;
    double loss;
    double accuracy;       /* fraction in [0, 1] */
} fed_eval_res;

/* Hyper-parameters of all strategies; each uses the ones it names. */
typedef struct fed_strategy_params {
    int num_clients;       /* N, the federation's size (SCAFFOLD's control update) */
    double server_lr;      /* eta: FedAvgM, FedOpt family, SCAFFOLD (default 1) */
    double server_momentum;/* FedAvgM beta (default 0.9) */
    double beta1, beta2;   /* FedAdam/FedYogi/FedAdagrad (defaults 0.9, 0.99) */
    double tau;            /* FedOpt adaptivity epsilon (default 1e-3) */
    double mu;             /* FedProx proximal weight (default 0.01) */
    double q;              /* q-FedAvg fairness q (default 1) */
    double lipschitz;      /* q-FedAvg L (default 1 / client lr) */
} fed_strategy_params;

typedef struct fed_strategy fed_strategy;
struct fed_strategy {
    const char *name;
    size_t n;              /* model size in floats */
    fed_strategy_params p;
    void *state;           /* the algorithm's own state (momentum, moments, control) */

    /* Fills ins[0..k) for the selected clients (ids in clients[], ascending).
     * defaults holds the run's client settings; strategies copy and adjust. */
    int (*configure_fit)(fed_strategy *s, int round, const int *clients, int k, const fed_client_ins *defaults,
                         fed_client_ins *ins);
    /* Folds k results (in client-id order) into global (n floats, in place).
     * k >= 1; the driver skips the call when no client finished. */
    int (*aggregate_fit)(fed_strategy *s, int round, const fed_client_res *res, int k, float *global);
    /* Chooses which of the k clients evaluate the new global model locally:
     * sets evaluate[i] to 1 or 0. NULL means all. */
    int (*configure_evaluate)(fed_strategy *s, int round, const int *clients, int k, int *evaluate);
    /* Combines local evaluations (default: weighted by num_examples). */
    int (*aggregate_evaluate)(fed_strategy *s, int round, const fed_eval_res *res, int k, double *loss,
                              double *accuracy);
    /* Optional server-side evaluation of the global model; NULL = the driver's
     * evaluation on the held-out test set. */
    int (*evaluate)(fed_strategy *s, int round, const float *global, double *loss, double *accuracy);
    /* The server state that must survive a restart (momentum, moments, control
     * variate, counters stored as floats), for checkpoints: fills up to max
     * pointers into the strategy's own storage with their lengths and returns
     * how many. NULL = stateless. Resuming copies saved values back into them. */
    int (*save_state)(fed_strategy *s, float **vecs, size_t *lens, int max);
    /* SCAFFOLD's server control variate c (n floats); NULL for others. */
    const float *(*server_control)(const fed_strategy *s);
    void (*free_state)(fed_strategy *s);
};

void fed_strategy_params_default(fed_strategy_params *p);
/* name: fedavg | fedavgm | fedprox | scaffold | qfedavg | fedadam | fedyogi |
 * fedadagrad | fednova. Unknown names are FED_ENOTFOUND listing the known. */
int fed_strategy_create(fed_strategy **out, const char *name, const fed_strategy_params *p, size_t n);
void fed_strategy_free(fed_strategy *s);
/* NULL-terminated list of names. */
const char *const *fed_strategy_names(void);
/* 1 if the strategy's server step needs only the clients' weighted mean
 * update (FedAvg and the server optimizers on it), so the mean can come
 * pre-aggregated: noised (DP-FedAvg) or securely summed. SCAFFOLD, q-FedAvg
 * and FedNova need per-client quantities and give 0. */
int fed_strategy_mean_only(const char *name);

/* Shared helpers for strategy files. */
/* out = sum_i w_i * res[i].delta with w_i = num_examples_i / sum num_examples. */
int fed_strategy_weighted_delta(const fed_client_res *res, int k, float *out, size_t n);
int fed_strategy_configure_fit_default(fed_strategy *s, int round, const int *clients, int k,
                                       const fed_client_ins *defaults, fed_client_ins *ins);
int fed_strategy_aggregate_evaluate_default(fed_strategy *s, int round, const fed_eval_res *res, int k, double *loss,
                                            double *accuracy);

#endif
