/* Conv2d by im2col + OpenBLAS sgemm. Each worker thread owns a contiguous range
 * of the batch and lowers several examples side by side into one column matrix
 * [C*k*k, nb*OH*OW], so each GEMM is wide enough to run near the kernel's peak.
 * Weight gradients: worker 0 accumulates into the model's gradient, the others
 * into private partials added in worker order afterwards, so a fixed thread
 * count gives bit-identical results. */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#include "federate/error.h"
#include "nn_internal.h"

/* col[(c*k + ki)*k + kj][oy*ow + ox] (row stride ld) = x[c][oy*s - p + ki][ox*s - p + kj],
 * zero outside the image. */
static void im2col(const float *restrict x, float *restrict col, size_t ld, shape3 is, int k, int s, int p, int oh,
                   int ow) {
    for (int c = 0; c < is.c; c++) {
        const float *xc = x + (size_t)c * is.h * is.w;
        for (int ki = 0; ki < k; ki++) {
            for (int kj = 0; kj < k; kj++) {
                float *row = col + ((size_t)(c * k + ki) * k + kj) * ld;
                /* valid ox: 0 <= ox*s - p + kj < W */
                int lo = 0, hi = ow;
                while (lo < ow && lo * s - p + kj < 0) lo++;
                while (hi > lo && (hi - 1) * s - p + kj >= is.w) hi--;
                for (int oy = 0; oy < oh; oy++) {
                    int iy = oy * s - p + ki;
                    float *dst = row + (size_t)oy * ow;
                    /* Rows are short (tens of floats): plain loops beat memcpy/memset calls. */
                    if (iy < 0 || iy >= is.h) {
                        for (int ox = 0; ox < ow; ox++) dst[ox] = 0;
                        continue;
                    }
                    const float *src = xc + (size_t)iy * is.w - p + kj;
                    for (int ox = 0; ox < lo; ox++) dst[ox] = 0;
                    if (s == 1) {
                        for (int ox = lo; ox < hi; ox++) dst[ox] = src[ox];
                    } else {
                        for (int ox = lo; ox < hi; ox++) dst[ox] = src[ox * s];
                    }
                    for (int ox = hi; ox < ow; ox++) dst[ox] = 0;
                }
            }
        }
    }
}

/* The adjoint of im2col: dx += scatter(col). */
static void col2im_add(const float *restrict col, size_t ld, float *restrict dx, shape3 is, int k, int s, int p,
                       int oh, int ow) {
    for (int c = 0; c < is.c; c++) {
        float *xc = dx + (size_t)c * is.h * is.w;
        for (int ki = 0; ki < k; ki++) {
            for (int kj = 0; kj < k; kj++) {
                const float *row = col + ((size_t)(c * k + ki) * k + kj) * ld;
                int lo = 0, hi = ow;
                while (lo < ow && lo * s - p + kj < 0) lo++;
                while (hi > lo && (hi - 1) * s - p + kj >= is.w) hi--;
                for (int oy = 0; oy < oh; oy++) {
                    int iy = oy * s - p + ki;
                    if (iy < 0 || iy >= is.h) continue;
                    float *restrict dst = xc + (size_t)iy * is.w - p + kj;
                    const float *restrict src = row + (size_t)oy * ow;
                    if (s == 1) {
                        for (int ox = lo; ox < hi; ox++) dst[ox] += src[ox];
                    } else {
                        for (int ox = lo; ox < hi; ox++) dst[ox * s] += src[ox];
                    }
                }
            }
        }
    }
}

typedef struct conv_ctx { fed_model *m; const layer *l; int tasks; int li; } conv_ctx;

/* Examples lowered together: bounded by the per-worker column scratch. */
static size_t chunk_of(const fed_model *m, const layer *l) {
    size_t per = (size_t)l->ish.c * l->k * l->k * l->osh.h * l->osh.w, out = shape_size(l->osh);
    size_t c = m->col_chunk_floats / (per ? per : 1);
    size_t t = m->tmp_chunk_floats / (out ? out : 1);   /* tmp holds the chunk's outputs */
    if (t < c) c = t;
    return c ? c : 1;
}

static void conv_fwd_task(void *vctx, size_t task, int worker) {
    conv_ctx *ctx = vctx;
    fed_model *m = ctx->m;
    const layer *l = ctx->l;
    size_t lo, hi;
    nn_split((size_t)m->n, (size_t)ctx->tasks, task, &lo, &hi);
    const float *x = nn_act(m, l->in);
    float *y = m->ws.act[l->out];
    const float *w = m->params + l->w_off;
    const float *bias = l->b_off != SIZE_MAX ? m->params + l->b_off : NULL;
    int K = l->ish.c * l->k * l->k, HW = l->osh.h * l->osh.w, M = l->osh.c;
    size_t isz = shape_size(l->ish), osz = shape_size(l->osh), chunk = chunk_of(m, l);
    float *tmp = m->ws.tmp[worker];
    /* In training, the lowered input is kept for the backward pass when it fits. */
    float *keep = m->training ? m->ws.colsave[ctx->li] : NULL;
    for (size_t i0 = lo; i0 < hi; i0 += chunk) {
        size_t nb = hi - i0 < chunk ? hi - i0 : chunk, ld = nb * HW;
        float *col = keep ? keep + i0 * (size_t)K * HW : m->ws.col[worker];
        for (size_t s = 0; s < nb; s++)
            im2col(x + (i0 + s) * isz, col + s * HW, ld, l->ish, l->k, l->stride, l->pad, l->osh.h, l->osh.w);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, (int)ld, K, 1.0f, w, K, col, (int)ld, 0.0f, tmp,
                    (int)ld);
        for (size_t s = 0; s < nb; s++) {
            float *ys = y + (i0 + s) * osz;
            for (int o = 0; o < M; o++) {
                const float *restrict src = tmp + (size_t)o * ld + s * HW;
                float *restrict dst = ys + (size_t)o * HW;
                float b = bias ? bias[o] : 0.0f;
                for (int j = 0; j < HW; j++) dst[j] = src[j] + b;
            }
        }
    }
}

void nn_conv_forward(fed_model *m, const layer *l) {
    if (m->fast && nn_wino_eligible(l)) {
        nn_wino_forward(m, l);
        return;
    }
    int t = nn_threads(m);
    conv_ctx ctx = {m, l, t < m->n ? t : m->n, (int)(l - m->layers)};
    fed_pool_run(m->pool, (size_t)ctx.tasks, conv_fwd_task, &ctx);
    m->ws.colsave_valid[ctx.li] = m->training && m->ws.colsave[ctx.li] != NULL;
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
    size_t isz = shape_size(l->ish), osz = shape_size(l->osh), chunk = chunk_of(m, l);
    int want_params = m->bwd_mode != NN_BWD_INPUTS;
    if (m->bwd_mode == NN_BWD_PARAMS) dx = NULL;
    if (!want_params && !dx) return;
    /* Task 0 writes the real gradient; task t > 0 its partial. Both start at zero. */
    float *base = task == 0 ? m->grads : m->ws.partial[task];
    float *gw = want_params ? base + l->w_off : NULL;
    float *gb = want_params && l->b_off != SIZE_MAX ? base + l->b_off : NULL;
    if (gw) memset(gw, 0, (size_t)M * K * sizeof(float));
    if (gb) memset(gb, 0, (size_t)M * sizeof(float));
    float *tmp = m->ws.tmp[worker];
    float *keep = m->ws.colsave_valid[ctx->li] ? m->ws.colsave[ctx->li] : NULL;
    for (size_t i0 = lo; i0 < hi; i0 += chunk) {
        size_t nb = hi - i0 < chunk ? hi - i0 : chunk, ld = nb * HW;
        float *col = keep ? keep + i0 * (size_t)K * HW : m->ws.col[worker];
        /* gather dY as [M, nb*HW] */
        for (size_t s = 0; s < nb; s++) {
            const float *dys = dy + (i0 + s) * osz;
            for (int o = 0; o < M; o++) memcpy(tmp + (size_t)o * ld + s * HW, dys + (size_t)o * HW, HW * sizeof(float));
        }
        if (gb) {
            for (int o = 0; o < M; o++) {
                const float *r = tmp + (size_t)o * ld;
                float sum = 0;
                for (size_t j = 0; j < ld; j++) sum += r[j];
                gb[o] += sum;
            }
        }
        if (gw) {
            if (!keep)
                for (size_t s = 0; s < nb; s++)
                    im2col(x + (i0 + s) * isz, col + s * HW, ld, l->ish, l->k, l->stride, l->pad, l->osh.h, l->osh.w);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, K, (int)ld, 1.0f, tmp, (int)ld, col, (int)ld, 1.0f,
                        gw, K);
        }
        if (dx) {
            /* the kept columns are not needed any more: reuse them for dcol */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, (int)ld, M, 1.0f, w, K, tmp, (int)ld, 0.0f, col,
                        (int)ld);
            for (size_t s = 0; s < nb; s++)
                col2im_add(col + s * HW, ld, dx + (i0 + s) * isz, l->ish, l->k, l->stride, l->pad, l->osh.h, l->osh.w);
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
    conv_ctx ctx = {m, l, t < m->n ? t : m->n, (int)(l - m->layers)};
    if (m->fast && nn_wino_eligible(l)) nn_wino_backward(m, l);
    else fed_pool_run(m->pool, (size_t)ctx.tasks, conv_bwd_task, &ctx);
    m->ws.colsave_valid[ctx.li] = 0;   /* overwritten by dcol */
    if (ctx.tasks > 1 && m->bwd_mode != NN_BWD_INPUTS) {
        reduce_ctx rw = {m, l->w_off, (size_t)l->osh.c * l->ish.c * l->k * l->k, ctx.tasks};
        fed_pool_run(m->pool, (size_t)t, reduce_task, &rw);
        if (l->b_off != SIZE_MAX) {
            reduce_ctx rb = {m, l->b_off, (size_t)l->osh.c, ctx.tasks};
            fed_pool_run(m->pool, (size_t)t, reduce_task, &rb);
        }
    }
}

typedef struct conv_sq_ctx { fed_model *m; const layer *l; double *sq; int tasks; } conv_sq_ctx;

/* Example i's weight gradient is dY_i [M, HW] times its columns^T [HW, K]:
 * formed in a per-worker scratch and reduced to its squared norm. */
static void conv_sq_task(void *vctx, size_t task, int worker) {
    conv_sq_ctx *c = vctx;
    fed_model *m = c->m;
    const layer *l = c->l;
    size_t lo, hi;
    nn_split((size_t)m->n, (size_t)c->tasks, task, &lo, &hi);
    int K = l->ish.c * l->k * l->k, HW = l->osh.h * l->osh.w, M = l->osh.c;
    size_t isz = shape_size(l->ish), osz = shape_size(l->osh);
    float *g = m->ws.dp[worker], *col = g + (size_t)M * K;
    const float *x = nn_act(m, l->in), *dy = m->ws.grad[l->out];
    for (size_t i = lo; i < hi; i++) {
        const float *dyi = dy + i * osz;
        im2col(x + i * isz, col, (size_t)HW, l->ish, l->k, l->stride, l->pad, l->osh.h, l->osh.w);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, K, HW, 1.0f, dyi, HW, col, HW, 0.0f, g, K);
        double s = 0;
        for (size_t j = 0; j < (size_t)M * K; j++) s += (double)g[j] * g[j];
        if (l->b_off != SIZE_MAX)
            for (int o = 0; o < M; o++) {
                double b = 0;
                for (int j = 0; j < HW; j++) b += dyi[(size_t)o * HW + j];
                s += b * b;
            }
        c->sq[i] += s;
    }
}

int nn_conv_per_example_sqnorm(fed_model *m, const layer *l, double *sq) {
    int t = nn_threads(m);
    size_t need = (size_t)l->osh.c * l->ish.c * l->k * l->k + (size_t)l->ish.c * l->k * l->k * l->osh.h * l->osh.w;
    for (int w = 0; w < t; w++) {
        /* sized for the largest conv layer the first time round */
        if (!m->ws.dp[w]) {
            size_t most = 0;
            for (int i = 0; i < m->nlayers; i++) {
                const layer *c = &m->layers[i];
                if (c->kind != L_CONV) continue;
                size_t k = (size_t)c->ish.c * c->k * c->k;
                size_t v = (size_t)c->osh.c * k + k * c->osh.h * c->osh.w;
                if (v > most) most = v;
            }
            m->ws.dp[w] = malloc((most > need ? most : need) * sizeof(float));
            if (!m->ws.dp[w]) return fed_error(FED_ENOMEM, "model %s: no memory for per-example gradients", m->name);
        }
    }
    conv_sq_ctx c = {m, l, sq, t < m->n ? t : m->n};
    fed_pool_run(m->pool, (size_t)c.tasks, conv_sq_task, &c);
    return 0;
}
