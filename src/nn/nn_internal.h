/* Internals of the model container shared by the layer files: the layer record,
 * the per-batch workspace, and the parallel helpers. Not a public header. */
#ifndef FEDERATE_NN_INTERNAL_H
#define FEDERATE_NN_INTERNAL_H
#include <stddef.h>
#include <stdint.h>
#include "federate/model.h"
#include "federate/pool.h"

enum layer_kind {
    L_LINEAR, L_CONV, L_MAXPOOL, L_AVGPOOL, L_GAP, L_RELU, L_TANH,
    L_DROPOUT, L_BATCHNORM, L_GROUPNORM, L_FLATTEN, L_ADD,
};

typedef struct shape3 { int c, h, w; } shape3;

static inline size_t shape_size(shape3 s) { return (size_t)s.c * s.h * s.w; }

typedef struct layer {
    int kind;
    char name[48];
    int in, in2, out;        /* activation slots (in2 only for L_ADD) */
    shape3 ish, osh;
    size_t w_off, b_off;     /* into params (b_off == SIZE_MAX: no bias) */
    size_t rm_off, rv_off, nbt_off; /* into buffers (BatchNorm) */
    int k, stride, pad;      /* conv and pooling */
    int groups;              /* GroupNorm */
    float eps, momentum, p;  /* norms; dropout probability */
    size_t save_bytes;       /* per-example bytes of state kept for backward */
    size_t save_chan_floats; /* per-layer (not per-example) floats: norm stats */
} layer;

#define MAX_SLOTS 128
#define MAX_LAYERS 128
#define MAX_WORKERS 64

typedef struct workspace {
    int cap;                       /* examples the buffers hold */
    float *act[MAX_SLOTS];         /* cap * slot_size floats each (slot 0 = input, not owned) */
    float *grad[MAX_SLOTS];
    void *save[MAX_LAYERS];        /* cap * save_bytes */
    float *chan[MAX_LAYERS];       /* save_chan_floats (norm mean/invstd, per-example stats) */
    float *col[MAX_WORKERS];       /* im2col scratch per worker */
    float *colsave[MAX_LAYERS];    /* conv: lowered input kept from forward to backward */
    int colsave_valid[MAX_LAYERS];
    float *tmp[MAX_WORKERS];       /* conv output/gradient in [C, nb*HW] layout per worker */
    float *partial[MAX_WORKERS];   /* per-worker partial weight gradients (conv) */
    float *dp[MAX_WORKERS];        /* DP-SGD: one example's weight gradient and columns */
    float *wino_u[MAX_LAYERS];     /* Winograd conv: the transformed weights of the last forward */
    float *wino_v[MAX_LAYERS];     /* Winograd conv: transformed input kept for backward (or NULL) */
    int wino_v_valid[MAX_LAYERS];
    float *wino_s[MAX_WORKERS];    /* Winograd conv scratch per worker */
} workspace;

/* What a backward pass computes (DP-SGD runs the two halves separately). */
enum { NN_BWD_ALL = 0, NN_BWD_INPUTS = 1, NN_BWD_PARAMS = 2 };

struct fed_model {
    char name[32];
    shape3 input;
    int num_classes;
    layer layers[MAX_LAYERS];
    int nlayers;
    shape3 slot_shape[MAX_SLOTS];
    int nslots;
    float *params, *grads, *buffers;
    size_t nparams, nbuffers;
    fed_tensor_info tensors[MAX_LAYERS * 4];
    int ntensors;
    size_t col_floats;             /* largest im2col buffer per example */
    size_t col_chunk_floats;       /* im2col scratch per worker (several examples) */
    size_t out_floats;             /* largest conv output per example */
    size_t tmp_chunk_floats;       /* conv output scratch per worker */
    double flops;                  /* training flops per example */
    int training;
    int bwd_mode;                  /* NN_BWD_*: which gradients backward computes */
    int fast;                      /* fast kernels (default on): 5x5 stride-1 convs by Winograd F(2x2,
                                      5x5), small-batch linear layers without BLAS packing */
    float fused_lr;                /* > 0 during fed_model_sgd_step: linear layers apply p -= lr g to
                                      their weights in backward instead of writing g */
    fed_pool *pool;
    uint64_t rng_seed, rng_round, rng_client, rng_step;
    int n;                         /* examples in the current forward */
    workspace ws;
    const float *x;                /* input of the current forward */
    /* per-layer seconds [layer][0 = forward, 1 = backward], when profiling */
    int profile;
    double prof[MAX_LAYERS][2];
    /* building state */
    int build_error;
};

/* Building (zoo.c). Each returns the output slot or -1 (model->build_error set). */
int nn_add_conv(fed_model *m, const char *name, int in, int cout, int k, int stride, int pad, int bias);
int nn_add_linear(fed_model *m, const char *name, int in, int out_features, int bias);
int nn_add_pool(fed_model *m, int kind, int in, int k, int stride);
int nn_add_gap(fed_model *m, int in);
int nn_add_act(fed_model *m, int kind, int in);
int nn_add_dropout(fed_model *m, int in, float p);
int nn_add_batchnorm(fed_model *m, const char *name, int in);
int nn_add_groupnorm(fed_model *m, const char *name, int in, int groups);
int nn_add_flatten(fed_model *m, int in);
int nn_add_add(fed_model *m, int a, int b);
int nn_finalize(fed_model *m);

/* Static partition of [0, n) into parts; worker t gets [*lo, *hi). */
static inline void nn_split(size_t n, size_t parts, size_t t, size_t *lo, size_t *hi) {
    size_t base = n / parts, rem = n % parts;
    *lo = t * base + (t < rem ? t : rem);
    *hi = *lo + base + (t < rem ? 1 : 0);
}
int nn_threads(const fed_model *m);

/* Layer passes (layers_*.c). Each runs its own parallel loop over m->pool. */
void nn_conv_forward(fed_model *m, const layer *l);
void nn_conv_backward(fed_model *m, const layer *l);
void nn_linear_forward(fed_model *m, const layer *l);
void nn_linear_backward(fed_model *m, const layer *l);
void nn_pool_forward(fed_model *m, const layer *l);
void nn_pool_backward(fed_model *m, const layer *l);
void nn_eltwise_forward(fed_model *m, const layer *l, int li);
void nn_eltwise_backward(fed_model *m, const layer *l, int li);
void nn_norm_forward(fed_model *m, const layer *l, int li);
void nn_norm_backward(fed_model *m, const layer *l, int li);
/* DP-SGD: adds each example's squared gradient norm for this layer's
 * parameters to sq[0..n), from the input activations and output gradients of
 * the last forward/backward (Goodfellow 2015's trick for linear layers; one
 * small GEMM per example for convolutions). */
int nn_conv_per_example_sqnorm(fed_model *m, const layer *l, double *sq);

/* Winograd F(2x2, 5x5) for 5x5 convolutions with stride 1 and padding 2 and at least 8
 * channels in and out (conv_winograd.c); the workspace holds wino_u, wino_v and
 * wino_s for such layers when m->fast is on. */
int nn_wino_eligible(const layer *l);
int nn_wino_chunk(const layer *l);            /* examples per GEMM */
size_t nn_wino_keep_floats(const layer *l);   /* transformed input per example */
size_t nn_wino_u_floats(const layer *l);      /* transformed weights */
size_t nn_wino_scratch_floats(const layer *l);/* per worker */
void nn_wino_forward(fed_model *m, const layer *l);
void nn_wino_backward(fed_model *m, const layer *l);
/* Small single-threaded GEMMs on operands in place (wino_gemm.c), for the fast
 * kernels' Winograd passes. nn_gemm_ab: C[m][t] = sum_k A(m, k) B[k][t] for m < M,
 * t < N, k < K, with A(m, k) = a[m ars + k acs] (either orientation), B's rows and C's
 * rows contiguous (ldb, ldc apart); C is overwritten. nn_gemm_abt_acc: C[m][n] +=
 * sum_t A[m][t] B[n][t], rows lda, ldb and ldc apart. */
void nn_gemm_ab(int M, int N, int K, const float *a, size_t ars, size_t acs, const float *b, size_t ldb, float *c,
                size_t ldc);
void nn_gemm_abt_acc(int M, int N, int T, const float *a, size_t lda, const float *b, size_t ldb, float *c,
                     size_t ldc);
void nn_linear_per_example_sqnorm(fed_model *m, const layer *l, double *sq);

static inline const float *nn_act(const fed_model *m, int slot) {
    return slot == 0 ? m->x : m->ws.act[slot];
}



/* For tests and custom graphs: an empty model with an input shape, then
 * nn_add_* calls, then nn_model_end (allocates, initializes from seed 0). */
fed_model *nn_model_begin(const char *name, int c, int h, int w, int num_classes);
int nn_model_end(fed_model *m);

#endif
