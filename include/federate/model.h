/* A model is one flat float buffer of parameters (and one of gradients, one of
 * buffers such as BatchNorm running statistics); layers are named views into it,
 * laid out like PyTorch's state_dict (Conv2d weight OIHW, Linear weight [out, in],
 * flattening in (C, H, W) order). Models come from a zoo by name. */
#ifndef FEDERATE_MODEL_H
#define FEDERATE_MODEL_H
#include <stddef.h>
#include <stdint.h>
#include "federate/pool.h"

typedef struct fed_model fed_model;

/* Append-only. */
/* Append-only. U8 is not a model dtype: raw bytes in safetensors files, such as
 * a compressed update's codec frame (docs/protocol.md). */
enum fed_dtype { FED_DTYPE_F32 = 0, FED_DTYPE_I64 = 1, FED_DTYPE_U8 = 2 };
enum fed_norm_kind { FED_NORM_BATCH = 0, FED_NORM_GROUP = 1 };

typedef struct fed_tensor_info {
    char name[64];        /* state_dict key, e.g. "conv1.weight" */
    int ndim;
    int64_t shape[4];
    size_t offset;        /* in floats, into params (is_buffer=0) or buffers (1) */
    size_t numel;
    int is_buffer;        /* 0: trainable parameter; 1: buffer (running stats) */
    int dtype;            /* dtype on disk: F32, or I64 for num_batches_tracked */
} fed_tensor_info;

typedef struct fed_model_opts {
    int in_c, in_h, in_w;   /* input shape; 0 = the model's default */
    int num_classes;        /* 0 = 10 */
    int hidden[8];          /* mlp hidden sizes; n_hidden = 0 gives {200, 200} */
    int n_hidden;
    int norm;               /* resnet: FED_NORM_BATCH or FED_NORM_GROUP */
    int depth;              /* resnet depth 6n+2; 0 = 20 */
    float dropout;          /* cnn-bn dropout probability; < 0 = default 0.5 */
} fed_model_opts;

/* Fills opts with defaults (all zero, dropout -1). */
void fed_model_opts_default(fed_model_opts *o);
/* name: "mlp" | "cnn" | "cnn-bn" | "resnet" | "cnn-dp" (small tanh CNN for DP-SGD). opts NULL = defaults.
 * Parameters are initialized like PyTorch's defaults from seed 0; call
 * fed_model_init_params to choose another seed. */
int fed_model_create(fed_model **out, const char *name, const fed_model_opts *opts);
/* Same architecture, copied parameters and buffers, no workspace shared. */
int fed_model_clone(fed_model **out, const fed_model *m);
void fed_model_free(fed_model *m);
/* NULL-terminated list of zoo names. */
const char *const *fed_model_zoo(void);

const char *fed_model_name(const fed_model *m);
size_t fed_model_num_params(const fed_model *m);
float *fed_model_params(fed_model *m);
const float *fed_model_params_const(const fed_model *m);
float *fed_model_grads(fed_model *m);
size_t fed_model_num_buffers(const fed_model *m);
float *fed_model_buffers(fed_model *m);
int fed_model_num_tensors(const fed_model *m);
const fed_tensor_info *fed_model_tensor(const fed_model *m, int i);
const fed_tensor_info *fed_model_find_tensor(const fed_model *m, const char *name);
void fed_model_input_shape(const fed_model *m, int *c, int *h, int *w);
int fed_model_num_classes(const fed_model *m);
/* Training FLOPs (forward + backward) per example, for throughput reports. */
double fed_model_train_flops(const fed_model *m);

/* PyTorch's default initialization (kaiming-uniform a=sqrt(5) weights, uniform
 * biases in +-1/sqrt(fan_in), norm weight 1 and bias 0), from (seed, FED_RNG_INIT). */
void fed_model_init_params(fed_model *m, uint64_t seed);
/* Training mode: dropout active, BatchNorm uses batch statistics and updates
 * its running statistics. Eval mode: neither. */
void fed_model_set_training(fed_model *m, int training);
/* The fast kernels (on, the default) or the reference ones (off). Fast: 5x5
 * convolutions with stride 1 and padding 2 (and >= 8 channels in and out, as the cnn's
 * second layer) by Winograd's F(2x2, 5x5) instead of im2col + GEMM, and the linear
 * layers' forward and input gradient at batches of up to 16 by kernels that stream
 * the weights once instead of BLAS (which copies them into its packed layout every
 * call). Both compute the same functions; their float rounding differs. */
void fed_model_set_fast_kernels(fed_model *m, int on);
/* Splits each batch across the pool's threads; NULL = single-threaded. The
 * model does not own the pool. */
void fed_model_set_pool(fed_model *m, fed_pool *pool);
fed_pool *fed_model_pool(const fed_model *m);
/* Address of the dropout stream: (seed, round, client, FED_RNG_DROPOUT); each
 * forward in training mode advances a step counter within it. */
void fed_model_set_rng(fed_model *m, uint64_t seed, uint64_t round, uint64_t client);

/* Forward pass on n examples x (n * C*H*W floats). *logits points into the
 * model's workspace (n * num_classes) and stays valid until the next call. */
int fed_model_forward(fed_model *m, const float *x, int n, const float **logits);
/* Backward from dlogits (n * num_classes) of the last forward; overwrites the
 * gradient buffer with d(loss)/d(params). */
int fed_model_backward(fed_model *m, const float *dlogits);
/* forward + mean softmax cross-entropy + backward. loss and correct may be NULL. */
int fed_model_loss_grad(fed_model *m, const float *x, const int32_t *y, int n, float *loss, int *correct);
/* fed_model_loss_grad followed by one plain SGD step, p <- p + (-lr) g (no momentum, no
 * weight decay), except that the linear layers update their weights inside the backward
 * pass (one GEMM into the weights per layer, after their input gradient), so their
 * gradients, the bulk of a model like the cnn, are never written out and read back.
 * The other parameters step exactly as fed_optim_step would. The model's gradients
 * are left undefined. lr must be finite and >= 0. */
int fed_model_sgd_step(fed_model *m, const float *x, const int32_t *y, int n, float lr, float *loss, int *correct);
/* DP-SGD's gradient (Abadi et al. 2016, Alg. 1 lines 5-6 without the noise):
 * forward on n examples, then the sum over examples of each example's loss
 * gradient scaled to L2 norm at most clip (by min(1, clip / (norm + 1e-6)), as
 * Opacus), written to the gradient buffer. The per-example gradients are never
 * materialized: one backward pass gives every layer's input activations and
 * output gradients, per-example norms come from those, and a second,
 * parameter-only pass with each example's output gradients scaled by its
 * factor gives the clipped sum. loss is the mean loss; norms (n floats, may be
 * NULL) receives the unclipped per-example norms. FED_EUNSUPPORTED for models
 * with normalization layers, whose per-example gradients are not separable. */
int fed_model_clipped_grad_sum(fed_model *m, const float *x, const int32_t *y, int n, float clip, float *loss,
                               int *correct, float *norms);
/* Evaluation in eval mode over a whole data set in batches: mean loss and
 * accuracy; confusion (num_classes^2, row = true label) may be NULL. */
struct fed_dataset;
int fed_model_evaluate(fed_model *m, const struct fed_dataset *d, int batch_size,
                       double *loss, double *accuracy, int64_t *confusion);

/* Per-layer timing, for `federate bench train --profile`. */
#include <stdio.h>
void fed_model_profile(fed_model *m, int on);
void fed_model_profile_print(const fed_model *m, FILE *out, int steps);

#endif
