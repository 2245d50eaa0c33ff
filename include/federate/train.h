/* The local training loop shared by centralized training and every federated
 * client: shuffled mini-batches over an index list, forward/backward, an optional
 * gradient hook (FedProx's proximal term, SCAFFOLD's correction, DP clipping),
 * and one optimizer step per batch. */
#ifndef FEDERATE_TRAIN_H
#define FEDERATE_TRAIN_H
#include <stddef.h>
#include <stdint.h>
#include "federate/data.h"
#include "federate/model.h"
#include "federate/optim.h"
#include "federate/schedule.h"

/* Called after each backward pass, before the optimizer step. */
typedef void (*fed_grad_hook)(void *ctx, float *grads, const float *params, size_t n);
/* Called after each step; total is the number of steps the call will make. */
typedef void (*fed_progress_fn)(void *ctx, long step, long total, double running_loss);

typedef struct fed_train_opts {
    int epochs;                   /* passes over the data */
    long max_steps;               /* > 0: stop after this many steps */
    int batch_size;
    float lr;                     /* used when schedule is NULL */
    const fed_lr_schedule *schedule;
    long schedule_offset;         /* schedule step of this call's first step */
    const fed_augment *augment;   /* NULL: none */
    int drop_last;
    /* stream address for shuffling, augmentation and dropout */
    uint64_t seed, round, client;
    fed_grad_hook hook;
    void *hook_ctx;
    /* DP-SGD (Abadi et al. 2016) when dp_clip > 0: each step draws a Poisson
     * sample (every example in with probability q = batch_size / n), clips
     * each example's gradient to dp_clip, adds N(0, (dp_noise_multiplier *
     * dp_clip)^2) to the sum and divides by the expected batch size q n.
     * An epoch is ceil(n / batch_size) steps; drop_last is ignored. */
    float dp_clip;
    float dp_noise_multiplier;
    int dp_secure_noise;          /* noise from the CSPRNG, not the seeded stream */
    int unfused;                  /* plain SGD: take the optimizer's separate step, not
                                     fed_model_sgd_step (kernels: reference) */
    int dp_grad_only;             /* DP-SGD: compute each step's gradient (clipped sum, noise,
                                     / q n) into the model's gradients, leave the parameters */
    fed_progress_fn progress;
    void *progress_ctx;
} fed_train_opts;

typedef struct fed_train_stats {
    double loss;          /* mean training loss over the steps taken */
    double accuracy;      /* fraction of training examples classified right (pre-step) */
    long steps;
    long examples;
} fed_train_stats;

void fed_train_opts_default(fed_train_opts *o);
/* Trains m in place on the examples idx[0..n) of d (idx NULL = all of d). The
 * model is put in training mode and left there. */
int fed_train(fed_model *m, fed_optim *opt, const fed_dataset *d, const uint32_t *idx, size_t n,
              const fed_train_opts *opts, fed_train_stats *stats);

#endif
