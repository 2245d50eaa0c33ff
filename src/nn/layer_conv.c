/* Conv2d by im2col + OpenBLAS sgemm, one example at a time so each worker thread
 * owns a contiguous range of the batch. Weight gradients: worker 0 accumulates
 * into the model's gradient, the others into private partials that are added in
 * worker order afterwards, so a fixed thread count gives bit-identical results. */
#include <cblas.h>
#include <string.h>
#include <stdlib.h>
#include "nn_internal.h"

/* col[(c*k + ki)*k + kj][oy*ow + ox] = x[c][oy*s - p + ki][ox*s - p + kj] (0 outside). */
static void im2col(const float *restrict x, float *restrict col, shape3 is, int k, int s, int p, int oh, int ow) {
    size_t hw = (size_t)oh * ow;
    for (int c = 0; c < is.c; c++) {
        const float *xc = x + (size_t)c * is.h * is.w;
        for (int ki = 0; ki < k; ki++) {
            for (int kj = 0; kj < k; kj++) {
                float *row = col + ((size_t)(c * k + ki) * k + kj) * hw;
                for (int oy = 0; oy < oh; oy++) {
                    int iy = oy * s - p + ki;
                    float *dst = row + (size_t)oy * ow;
                    if (iy < 0 || iy >= is.h) { memset(dst, 0, (size_t)ow * sizeof(float)); continue; }
                    const float *src = xc + (size_t)iy * is.w;
                    if (s == 1 && getenv("SLOWPATH") == NULL) {
                        /* contiguous run with zero borders: valid ox in [lo, hi) */
                        int lo = p - kj, hi = is.w + p - kj;
                        if (lo < 0) lo = 0;
                        if (lo > ow) lo = ow;
                        if (hi > ow) hi = ow;
                        if (hi < lo) hi = lo;
                        memset(dst, 0, (size_t)lo * sizeof(float));
                        memcpy(dst + lo, src + lo - p + kj, (size_t)(hi - lo) * sizeof(float));
                        memset(dst + hi, 0, (size_t)(ow - hi) * sizeof(float));
                    } else {
                        for (int ox = 0; ox < ow; ox++) {
                            int ix = ox * s - p + kj;
                            dst[ox] = (ix >= 0 && ix < is.w) ? src[ix] : 0.0f;
                        }
                    }
                }
            }
        }
    }
}

/* The adjoint of im2col: dx += scatter(dcol). */
static void col2im_add(const float *restrict col, float *restrict dx, shape3 is, int k, int s, int p, int oh, int ow) {
    size_t hw = (size_t)oh * ow;
    for (int c = 0; c < is.c; c++) {
        float *xc = dx + (size_t)c * is.h * is.w;
        for (int ki = 0; ki < k; ki++) {
            for (int kj = 0; kj < k; kj++) {
                const float *row = col + ((size_t)(c * k + ki) * k + kj) * hw;
                for (int oy = 0; oy < oh; oy++) {
                    int iy = oy * s - p + ki;
                    if (iy < 0 || iy >= is.h) continue;
                    float *dst = xc + (size_t)iy * is.w;
                    const float *src = row + (size_t)oy * ow;
                    for (int ox = 0; ox < ow; ox++) {
                        int ix = ox * s - p + kj;
                        if (ix >= 0 && ix < is.w) dst[ix] += src[ox];
                    }
                }
            }
        }
    }
}

typedef struct conv_ctx { fed_model *m; const layer *l; int tasks; } conv_ctx;

static int is_pointwise(const layer *l) { return l->k == 1 && l->stride == 1 && l->pad == 0; }

static void conv_fwd_task(void *vctx, size_t task, int worker) {
    conv_ctx *ctx = vctx;
    fed_model *m = ctx->m;
    const layer *l = ctx->l;
    size_t lo, hi;
    nn_split((size_t)m->n, (size_t)ctx->tasks, task, &lo, &hi);
    const float *x = nn_act(m, l->in);
    float *y = m->ws.act[l->out];
    const float *w = m->params + l->w_off;
    int K = l->ish.c * l->k * l->k, HW = l->osh.h * l->osh.w, M = l->osh.c;
    size_t isz = shape_size(l->ish), osz = shape_size(l->osh);
    float *col = m->ws.col[worker];
    for (size_t i = lo; i < hi; i++) {
        const float *xi = x + i * isz;
        const float *b = xi;
        if (!is_pointwise(l)) {
            im2col(xi, col, l->ish, l->k, l->stride, l->pad, l->osh.h, l->osh.w);
            b = col;
        }
        float *yi = y + i * osz;
        if (l->b_off != SIZE_MAX) {
            const float *bias = m->params + l->b_off;
            for (int o = 0; o < M; o++) {
                float bv = bias[o];
                float *r = yi + (size_t)o * HW;
                for (int j = 0; j < HW; j++) r[j] = bv;
            }
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, HW, K, 1.0f, w, K, b, HW,
                    l->b_off != SIZE_MAX ? 1.0f : 0.0f, yi, HW);
    }
}

void nn_conv_forward(fed_model *m, const layer *l) {
    int t = nn_threads(m);
    conv_ctx ctx = {m, l, t < m->n ? t : m->n};
    fed_pool_run(m->pool, (size_t)ctx.tasks, conv_fwd_task, &ctx);
}

static void conv_bwd_task(void *vctx, size_t task, int worker) {
    conv_ctx *ctx = vctx;
    fed_model *m = ctx->m;
    const layer *l = ctx->l;
    size_t lo, hi;
    nn_split((size_t)m->n, (size_t)ctx->tasks, task, &lo, &hi);
    const float *x = nn_act(m, l->in);
    const float *dy = m->ws.grad[l->out];
    float *dx = l->in == 0 ? NULL : m->ws.grad[l->in];
    const float *w = m->params + l->w_off;
    int K = l->ish.c * l->k * l->k, HW = l->osh.h * l->osh.w, M = l->osh.c;
    size_t isz = shape_size(l->ish), osz = shape_size(l->osh);
    /* Task 0 writes the real gradient; task t > 0 its partial (zeroed here). */
    float *gw, *gb = NULL;
    if (task == 0) {
        gw = m->grads + l->w_off;
        if (l->b_off != SIZE_MAX) gb = m->grads + l->b_off;
    } else {
        float *part = m->ws.partial[task];
        gw = part + l->w_off;
        memset(gw, 0, (size_t)M * K * sizeof(float));
        if (l->b_off != SIZE_MAX) { gb = part + l->b_off; memset(gb, 0, (size_t)M * sizeof(float)); }
    }
    float *col = m->ws.col[worker];
    for (size_t i = lo; i < hi; i++) {
        const float *xi = x + i * isz;
        const float *dyi = dy + i * osz;
        const float *b = xi;
        if (!is_pointwise(l)) {
            im2col(xi, col, l->ish, l->k, l->stride, l->pad, l->osh.h, l->osh.w);
            b = col;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, K, HW, 1.0f, dyi, HW, b, HW, 1.0f, gw, K);
        if (gb) {
            for (int o = 0; o < M; o++) {
                const float *r = dyi + (size_t)o * HW;
                float s = 0;
                for (int j = 0; j < HW; j++) s += r[j];
                gb[o] += s;
            }
        }
        if (dx) {
            float *dxi = dx + i * isz;
            if (is_pointwise(l)) {
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, HW, M, 1.0f, w, K, dyi, HW, 1.0f, dxi, HW);
            } else {
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, HW, M, 1.0f, w, K, dyi, HW, 0.0f, col, HW);
                col2im_add(col, dxi, l->ish, l->k, l->stride, l->pad, l->osh.h, l->osh.w);
            }
        }
    }
}

typedef struct reduce_ctx { fed_model *m; size_t off, len; int parts; } reduce_ctx;

/* grads[off..off+len) += partial[1] + partial[2] + ... in worker order. */
static void reduce_task(void *vctx, size_t task, int worker) {
    (void)worker;
    reduce_ctx *c = vctx;
    size_t lo, hi;
    nn_split(c->len, (size_t)nn_threads(c->m), task, &lo, &hi);
    float *restrict g = c->m->grads + c->off;
    for (int t = 1; t < c->parts; t++) {
        const float *restrict p = c->m->ws.partial[t] + c->off;
        for (size_t j = lo; j < hi; j++) g[j] += p[j];
    }
}

void nn_conv_backward(fed_model *m, const layer *l) {
    int t = nn_threads(m);
    conv_ctx ctx = {m, l, t < m->n ? t : m->n};
    fed_pool_run(m->pool, (size_t)ctx.tasks, conv_bwd_task, &ctx);
    if (ctx.tasks > 1) {
        /* weight and bias are adjacent in the flat buffer when there is a bias */
        size_t len = (size_t)l->osh.c * l->ish.c * l->k * l->k;
        if (l->b_off == l->w_off + len) len += (size_t)l->osh.c;
        reduce_ctx rc = {m, l->w_off, len, ctx.tasks};
        fed_pool_run(m->pool, (size_t)t, reduce_task, &rc);
        if (l->b_off != SIZE_MAX && l->b_off != l->w_off + (size_t)l->osh.c * l->ish.c * l->k * l->k) {
            reduce_ctx rb = {m, l->b_off, (size_t)l->osh.c, ctx.tasks};
            fed_pool_run(m->pool, (size_t)t, reduce_task, &rb);
        }
    }
}
