/* Linear layer y = x W^T + b with W as [out, in] (PyTorch's layout). Threads
 * split the output features (forward, weight gradient) and the input features
 * (input gradient), so no thread's result needs reducing with another's. */
#include <cblas.h>
#include <string.h>
#include "nn_internal.h"
#include "simd.h"

/* Fast kernels for small batches (n <= SMALL_N, a client's local step): BLAS copies the
 * whole weight matrix into its packed layout on every call, which for a batch of 10
 * costs more than the arithmetic; these stream each weight once (simd.h's vectors). */
#define SMALL_N 16

/* y[i][o] (+)= sum_k x[i][k] w[o][k] for o in [o0, o1), i < n: two weight rows at a
 * time against every example row (2 n accumulators). add: y already holds the bias. */
FUSE_MADD static void small_fwd(const float *x, const float *w, float *y, int n,
                                                                   int in, int out, size_t o0, size_t o1) {
    int kv = in / 16 * 16;
    size_t o = o0;
    for (; o + 2 <= o1; o += 2) {
        const float *w0 = w + o * in, *w1 = w0 + in;
        v16 a0[SMALL_N], a1[SMALL_N];
        for (int i = 0; i < n; i++) a0[i] = a1[i] = (v16){0};
        /* the next pair of rows is fetched while this one is used: with two rows in
         * flight the weights' stream from memory is latency-bound */
        const float *n0 = o + 4 <= o1 ? w1 + in : w0, *n1 = o + 4 <= o1 ? n0 + in : w1;
        for (int k = 0; k < kv; k += 16) {
            v16 p, q;
            __builtin_prefetch(n0 + k);
            __builtin_prefetch(n1 + k);
            LD16(p, w0 + k);
            LD16(q, w1 + k);
            for (int i = 0; i < n; i++) {
                v16 xi;
                LD16(xi, x + (size_t)i * in + k);
                a0[i] += xi * p;
                a1[i] += xi * q;
            }
        }
        for (int i = 0; i < n; i++) {
            float s0 = 0, s1 = 0;
            HSUM16(s0, a0[i]);
            HSUM16(s1, a1[i]);
            const float *xi = x + (size_t)i * in;
            for (int k = kv; k < in; k++) s0 += xi[k] * w0[k], s1 += xi[k] * w1[k];
            y[(size_t)i * out + o] += s0;
            y[(size_t)i * out + o + 1] += s1;
        }
    }
    for (; o < o1; o++) {
        const float *w0 = w + o * in;
        for (int i = 0; i < n; i++) {
            const float *xi = x + (size_t)i * in;
            v16 a = {0};
            for (int k = 0; k < kv; k += 16) {
                v16 u, v;
                LD16(u, xi + k);
                LD16(v, w0 + k);
                a += u * v;
            }
            float s0 = 0;
            HSUM16(s0, a);
            for (int k = kv; k < in; k++) s0 += xi[k] * w0[k];
            y[(size_t)i * out + o] += s0;
        }
    }
}

/* dx[i][k .. k + 16) += a[i] for i < n */
static inline __attribute__((always_inline)) void add_to_rows(float *dx, size_t in, size_t k, const v16 *a, int n) {
    for (int i = 0; i < n; i++) {
        float *d = dx + (size_t)i * in + k;
        v16 cur;
        LD16(cur, d);
        cur += a[i];
        ST16(d, cur);
    }
}

/* dx[i][k] += sum_o dy[i][o] w[o][k] for k in [k0, k1), i < n: 16 columns of the
 * weights at a time, every row of them once, against every example (n accumulators). */
FUSE_MADD static void small_dx(const float *dy, const float *w, float *dx, int n,
                                                                  int in, int out, size_t k0, size_t k1) {
    size_t k = k0;
    for (; k + 16 <= k1; k += 16) {
        v16 a[SMALL_N];
        for (int i = 0; i < n; i++) a[i] = (v16){0};
        for (int o = 0; o < out; o++) {
            v16 wv;
            LD16(wv, w + (size_t)o * in + k);
            for (int i = 0; i < n; i++) a[i] += dy[(size_t)i * out + o] * wv;
        }
        add_to_rows(dx, (size_t)in, k, a, n);
    }
    for (; k < k1; k++)
        for (int i = 0; i < n; i++) {
            float s0 = 0;
            for (int o = 0; o < out; o++) s0 += dy[(size_t)i * out + o] * w[(size_t)o * in + k];
            dx[(size_t)i * in + k] += s0;
        }
}

/* Plain SGD's backward in one pass over the weights (fed_model_sgd_step), columns
 * [k0, k1): dx[i][k] += sum_o dy[i][o] w[o][k] with the weights as they were, then
 * w[o][k] += -lr sum_i dy[i][o] x[i][k]. Each weight is read and written once instead
 * of read for dx and then read and written again by the update GEMM: fc1 (6.4 MB) is
 * streamed from memory, so that pass is most of the layer's backward. dx may be NULL
 * (a first layer). Constant n lets the compiler keep all 2 n vectors in registers. */
static inline __attribute__((always_inline)) void dx_sgd_cols(const float *dy, const float *x, float *w, float *dx,
                                                              const int n, int in, int out, size_t k, float lr) {
    v16 a[SMALL_N], xv[SMALL_N];
    for (int i = 0; i < n; i++) {
        a[i] = (v16){0};
        LD16(xv[i], x + (size_t)i * in + k);
    }
    for (int o = 0; o < out; o++) {
        float *wp = w + (size_t)o * in + k;
        const float *d = dy + o;
        v16 wv, g = {0};
        __builtin_prefetch(wp + 16, 1);   /* the row's next block, for the next call */
        LD16(wv, wp);
        for (int i = 0; i < n; i++) {
            float di = d[(size_t)i * out];
            a[i] += di * wv;
            g += di * xv[i];
        }
        wv += -lr * g;
        memcpy(wp, &wv, sizeof wv);
    }
    if (dx) add_to_rows(dx, (size_t)in, k, a, n);
}

FUSE_MADD static void small_dx_sgd(const float *dy, const float *x, float *w, float *dx, int n, int in, int out,
                                   size_t k0, size_t k1, float lr) {
    size_t k = k0;
    for (; k + 16 <= k1; k += 16) {
        if (n == 10) dx_sgd_cols(dy, x, w, dx, 10, in, out, k, lr); /* B = 10, the FedAvg baseline */
        else dx_sgd_cols(dy, x, w, dx, n, in, out, k, lr);
    }
    for (; k < k1; k++) { /* the same arithmetic as one lane of the vectors above */
        float a[SMALL_N] = {0};
        for (int o = 0; o < out; o++) {
            float *wp = w + (size_t)o * in + k, g = 0;
            for (int i = 0; i < n; i++) {
                float di = dy[(size_t)i * out + o];
                a[i] += di * *wp;
                g += di * x[(size_t)i * in + k];
            }
            *wp += -lr * g;
        }
        if (dx)
            for (int i = 0; i < n; i++) dx[(size_t)i * in + k] += a[i];
    }
}

/* fused: 0 no SGD step in backward, 1 the update by GEMM after the input gradient, 2 both
 * in one pass (lin_sgd_task) */
typedef struct lin_ctx { fed_model *m; const layer *l; int tasks; int fused; } lin_ctx;

static void lin_fwd_task(void *vctx, size_t task, int worker) {
    (void)worker;
    lin_ctx *c = vctx;
    fed_model *m = c->m;
    const layer *l = c->l;
    int in = (int)shape_size(l->ish), out = l->osh.c, n = m->n;
    size_t o0, o1;
    nn_split((size_t)out, (size_t)c->tasks, task, &o0, &o1);
    if (o1 == o0) return;
    const float *x = nn_act(m, l->in);
    float *y = m->ws.act[l->out];
    const float *w = m->params + l->w_off;
    if (l->b_off != SIZE_MAX) {
        const float *b = m->params + l->b_off;
        for (int i = 0; i < n; i++)
            for (size_t o = o0; o < o1; o++) y[(size_t)i * out + o] = b[o];
    }
    if (m->fast && n <= SMALL_N) {
        if (l->b_off == SIZE_MAX)
            for (int i = 0; i < n; i++) memset(y + (size_t)i * out + o0, 0, (o1 - o0) * sizeof(float));
        small_fwd(x, w, y, n, in, out, o0, o1);
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, (int)(o1 - o0), in, 1.0f, x, in, w + o0 * in, in,
                l->b_off != SIZE_MAX ? 1.0f : 0.0f, y + o0, out);
}

void nn_linear_forward(fed_model *m, const layer *l) {
    int t = nn_threads(m);
    lin_ctx c = {m, l, t < l->osh.c ? t : l->osh.c, 0};
    fed_pool_run(m->pool, (size_t)c.tasks, lin_fwd_task, &c);
}

static void lin_bwd_task(void *vctx, size_t task, int worker) {
    (void)worker;
    lin_ctx *c = vctx;
    fed_model *m = c->m;
    const layer *l = c->l;
    int in = (int)shape_size(l->ish), out = l->osh.c, n = m->n;
    const float *x = nn_act(m, l->in);
    const float *dy = m->ws.grad[l->out];
    const float *w = m->params + l->w_off;
    size_t o0, o1;
    nn_split((size_t)out, (size_t)c->tasks, task, &o0, &o1);
    if (o1 > o0 && m->bwd_mode != NN_BWD_INPUTS && !c->fused) {
        /* dW[o0:o1, :] = dY[:, o0:o1]^T X */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)(o1 - o0), in, n, 1.0f, dy + o0, out, x, in, 0.0f,
                    m->grads + l->w_off + o0 * in, in);
        if (l->b_off != SIZE_MAX) {
            float *gb = m->grads + l->b_off;
            for (size_t o = o0; o < o1; o++) {
                float s = 0;
                for (int i = 0; i < n; i++) s += dy[(size_t)i * out + o];
                gb[o] = s;
            }
        }
    }
    if (l->in != 0 && m->bwd_mode != NN_BWD_PARAMS) {
        /* dX[:, i0:i1] += dY W[:, i0:i1] */
        size_t i0, i1;
        nn_split((size_t)in, (size_t)c->tasks, task, &i0, &i1);
        if (i1 > i0 && m->fast && n <= SMALL_N)
            small_dx(dy, w, m->ws.grad[l->in], n, in, out, i0, i1);
        else if (i1 > i0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, (int)(i1 - i0), out, 1.0f, dy, out, w + i0, in,
                        1.0f, m->ws.grad[l->in] + i0, in);
    }
}

/* b[o] <- b[o] - lr sum_i dy[i][o], as the optimizer's plain step on that gradient */
static void bias_sgd(const float *dy, float *b, int n, int out, size_t o0, size_t o1, float lr) {
    for (size_t o = o0; o < o1; o++) {
        float s = 0;
        for (int i = 0; i < n; i++) s += dy[(size_t)i * out + o];
        b[o] = b[o] + -lr * s;
    }
}

/* fed_model_sgd_step. fused 1: W[o0:o1] <- W[o0:o1] + (-lr) dY[:, o0:o1]^T X by GEMM,
 * once every task's input gradient (which reads all of W) is done. fused 2 (the
 * fast small-batch kernels): the input gradient and the update in one pass over W,
 * the tasks splitting its columns in whole vectors (so the split never changes a
 * column's arithmetic). Either way the bias steps too. */
static void lin_sgd_task(void *vctx, size_t task, int worker) {
    (void)worker;
    lin_ctx *c = vctx;
    fed_model *m = c->m;
    const layer *l = c->l;
    int in = (int)shape_size(l->ish), out = l->osh.c, n = m->n;
    const float *x = nn_act(m, l->in), *dy = m->ws.grad[l->out];
    float lr = m->fused_lr;
    size_t o0, o1;
    nn_split((size_t)out, (size_t)c->tasks, task, &o0, &o1);
    if (c->fused == 2) {
        size_t v0, v1;
        nn_split(((size_t)in + 15) / 16, (size_t)c->tasks, task, &v0, &v1);
        size_t k0 = v0 * 16, k1 = v1 * 16 < (size_t)in ? v1 * 16 : (size_t)in;
        if (k1 > k0)
            small_dx_sgd(dy, x, m->params + l->w_off, l->in != 0 ? m->ws.grad[l->in] : NULL, n, in, out, k0, k1, lr);
    } else if (o1 > o0) {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)(o1 - o0), in, n, -lr, dy + o0, out, x, in, 1.0f,
                    m->params + l->w_off + o0 * in, in);
    }
    if (l->b_off != SIZE_MAX) bias_sgd(dy, m->params + l->b_off, n, out, o0, o1, lr);
}

void nn_linear_backward(fed_model *m, const layer *l) {
    int t = nn_threads(m);
    int in = (int)shape_size(l->ish);
    int most = l->osh.c > in ? l->osh.c : in;
    int fused = m->fused_lr > 0 && m->bwd_mode == NN_BWD_ALL;
    if (fused && m->fast && m->n <= SMALL_N) {
        int vecs = (in + 15) / 16;
        lin_ctx c = {m, l, t < vecs ? t : vecs, 2};
        fed_pool_run(m->pool, (size_t)c.tasks, lin_sgd_task, &c);
        return;
    }
    lin_ctx c = {m, l, t < most ? t : most, fused};
    fed_pool_run(m->pool, (size_t)c.tasks, lin_bwd_task, &c);
    if (fused) {
        lin_ctx u = {m, l, t < l->osh.c ? t : l->osh.c, 1};
        fed_pool_run(m->pool, (size_t)u.tasks, lin_sgd_task, &u);
    }
}

typedef struct lin_sq_ctx { fed_model *m; const layer *l; double *sq; int tasks; } lin_sq_ctx;

/* The gradient of W for example i is dy_i x_i^T, a rank-one matrix, so its
 * squared norm is |dy_i|^2 |x_i|^2 (and the bias adds |dy_i|^2). */
static void lin_sq_task(void *vctx, size_t task, int worker) {
    (void)worker;
    lin_sq_ctx *c = vctx;
    fed_model *m = c->m;
    const layer *l = c->l;
    size_t in = shape_size(l->ish), out = (size_t)l->osh.c, lo, hi;
    nn_split((size_t)m->n, (size_t)c->tasks, task, &lo, &hi);
    const float *x = nn_act(m, l->in), *dy = m->ws.grad[l->out];
    for (size_t i = lo; i < hi; i++) {
        const float *xi = x + i * in, *di = dy + i * out;
        double xx = 0, dd = 0;
        for (size_t j = 0; j < in; j++) xx += (double)xi[j] * xi[j];
        for (size_t j = 0; j < out; j++) dd += (double)di[j] * di[j];
        c->sq[i] += dd * xx + (l->b_off != SIZE_MAX ? dd : 0.0);
    }
}

void nn_linear_per_example_sqnorm(fed_model *m, const layer *l, double *sq) {
    int t = nn_threads(m);
    lin_sq_ctx c = {m, l, sq, t < m->n ? t : m->n};
    fed_pool_run(m->pool, (size_t)c.tasks, lin_sq_task, &c);
}
