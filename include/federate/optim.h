/* Optimizers over a model's flat parameter and gradient vectors: SGD (with
 * momentum / Nesterov), Adam and Adagrad, matching torch.optim step for step so
 * that results can be compared with PyTorch runs of the same experiment. */
#ifndef FEDERATE_OPTIM_H
#define FEDERATE_OPTIM_H
#include <stddef.h>

/* Append-only: values are stored in configs and run records. */
enum fed_optim_kind {
    FED_OPTIM_SGD = 0,
    FED_OPTIM_ADAM = 1,
    FED_OPTIM_ADAGRAD = 2,
};

/* Fields a kind does not use are ignored (and not validated) for that kind. */
typedef struct fed_optim_cfg {
    int kind;                  /* enum fed_optim_kind */
    float momentum;            /* SGD: >= 0; dampening is always 0 */
    int nesterov;              /* SGD: needs momentum > 0 */
    float weight_decay;        /* all: L2 penalty added to the gradient (Adam, not AdamW) */
    float beta1, beta2, eps;   /* Adam: betas in [0,1); eps >= 0 (Adagrad uses eps too) */
    float initial_accumulator; /* Adagrad: starting value of the sum of squares, >= 0 */
    float lr_decay;            /* Adagrad: lr / (1 + (t-1) * lr_decay), >= 0 */
} fed_optim_cfg;

typedef struct fed_optim fed_optim;

/* PyTorch's defaults for kind: momentum 0, no Nesterov, weight decay 0, betas
 * (0.9, 0.999), eps 1e-8 for Adam and 1e-10 for Adagrad, accumulator 0, lr_decay 0. */
void fed_optim_cfg_default(fed_optim_cfg *c, int kind);
/* An optimizer for n parameters; FED_EINVAL (detail names the field) for a bad cfg. */
int fed_optim_new(fed_optim **out, const fed_optim_cfg *cfg, size_t n);
void fed_optim_free(fed_optim *o);
/* Forgets all state (moments, accumulators, step count), as a fresh optimizer. */
void fed_optim_reset(fed_optim *o);
/* One update of params[0..n) in place from grads[0..n) at learning rate lr >= 0.
 * params and grads must not overlap. */
int fed_optim_step(fed_optim *o, float *params, const float *grads, float lr);
/* The same step split across a pool's threads (bit-identical to fed_optim_step). */
struct fed_pool;
int fed_optim_step_pool(fed_optim *o, float *params, const float *grads, float lr, struct fed_pool *pool);
/* Steps taken since creation or the last reset. */
long fed_optim_steps(const fed_optim *o);
size_t fed_optim_size(const fed_optim *o);
const fed_optim_cfg *fed_optim_config(const fed_optim *o);

/* "sgd", "adam", "adagrad"; an unknown name is FED_ENOTFOUND listing the known. */
int fed_optim_kind_from_name(const char *name, int *kind);
/* The name of kind, or "unknown". */
const char *fed_optim_kind_name(int kind);
/* 1 when a step is exactly p <- p + (-lr) g: SGD without momentum or weight decay. */
int fed_optim_is_plain_sgd(const fed_optim *o);
/* Counts a step taken outside fed_optim_step (fed_model_sgd_step), for a plain SGD. */
void fed_optim_count_step(fed_optim *o);

#endif
