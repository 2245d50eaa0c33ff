/* Pooling: MaxPool2d (argmax kept for backward), AvgPool2d, global average
 * pooling. No padding, floor mode, like PyTorch's defaults. Threads split the batch. */
#include <float.h>
#include <string.h>
#include "nn_internal.h"

typedef struct pool_ctx { fed_model *m; const layer *l; int tasks; int li; } pool_ctx;

static int layer_index(const fed_model *m, const layer *l) { return (int)(l - m->layers); }

/* One row of 2x2/2 windows: the maxima, and when ar is not NULL the first maximum of
 * each window in window order (as PyTorch picks it): the first element equal to the
 * maximum. Inlined with the row length as a constant where it is a common one, so the
 * loop vectorizes: with an unknown short trip count the compiler keeps it scalar. */
static inline __attribute__((always_inline)) void maxpool2x2_row(const float *restrict r0, const float *restrict r1,
                                                                 float *restrict yr, int32_t *restrict ar, int base0,
                                                                 int W, int OW) {
    if (!ar) {
        for (int ox = 0; ox < OW; ox++) {
            float a = r0[2 * ox], b = r0[2 * ox + 1], cc = r1[2 * ox], d = r1[2 * ox + 1];
            float ab = b > a ? b : a, cd = d > cc ? d : cc;
            yr[ox] = cd > ab ? cd : ab;
        }
        return;
    }
    for (int ox = 0; ox < OW; ox++) {
        float a = r0[2 * ox], b = r0[2 * ox + 1], cc = r1[2 * ox], d = r1[2 * ox + 1];
        float ab = b > a ? b : a, cd = d > cc ? d : cc;
        float v = cd > ab ? cd : ab;
        yr[ox] = v;
        int base = base0 + 2 * ox;
        int bi = cc == v ? base + W : base + W + 1;
        bi = b == v ? base + 1 : bi;
        ar[ox] = a == v ? base : bi;
    }
}

static void maxpool2x2_plane(const float *xc, float *yc, int32_t *arg, int W, int OH, int OW) {
    for (int oy = 0; oy < OH; oy++) {
        const float *r0 = xc + (size_t)(2 * oy) * W, *r1 = r0 + W;
        float *yr = yc + (size_t)oy * OW;
        int32_t *ar = arg ? arg + (size_t)oy * OW : NULL;
        int b0 = 2 * oy * W;
        switch (OW) {
        case 7: maxpool2x2_row(r0, r1, yr, ar, b0, W, 7); break;
        case 8: maxpool2x2_row(r0, r1, yr, ar, b0, W, 8); break;
        case 14: maxpool2x2_row(r0, r1, yr, ar, b0, W, 14); break;
        case 16: maxpool2x2_row(r0, r1, yr, ar, b0, W, 16); break;
        default: maxpool2x2_row(r0, r1, yr, ar, b0, W, OW); break;
        }
    }
}

static void pool_fwd_task(void *vctx, size_t task, int worker) {
    (void)worker;
    pool_ctx *c = vctx;
    fed_model *m = c->m;
    const layer *l = c->l;
    size_t lo, hi;
    nn_split((size_t)m->n, (size_t)c->tasks, task, &lo, &hi);
    const float *x = nn_act(m, l->in);
    float *y = m->ws.act[l->out];
    size_t isz = shape_size(l->ish), osz = shape_size(l->osh);
    int H = l->ish.h, W = l->ish.w, OH = l->osh.h, OW = l->osh.w, k = l->k, s = l->stride;
    int32_t *arg = l->kind == L_MAXPOOL ? (int32_t *)m->ws.save[c->li] : NULL;
    if (l->kind == L_MAXPOOL && k == 2 && s == 2) {
        /* The common 2x2/2 window; argmax only when training needs it. */
        const int training = m->training;
        for (size_t i = lo; i < hi; i++) {
            for (int ch = 0; ch < l->ish.c; ch++) {
                const float *xc = x + i * isz + (size_t)ch * H * W;
                float *yc = y + i * osz + (size_t)ch * OH * OW;
                int32_t *ac = arg + i * osz + (size_t)ch * OH * OW;
                maxpool2x2_plane(xc, yc, training ? ac : NULL, W, OH, OW);
            }
        }
        return;
    }
    for (size_t i = lo; i < hi; i++) {
        const float *xi = x + i * isz;
        float *yi = y + i * osz;
        for (int ch = 0; ch < l->ish.c; ch++) {
            const float *xc = xi + (size_t)ch * H * W;
            float *yc = yi + (size_t)ch * OH * OW;
            if (l->kind == L_GAP) {
                float sum = 0;
                for (int j = 0; j < H * W; j++) sum += xc[j];
                yc[0] = sum / (float)(H * W);
                continue;
            }
            for (int oy = 0; oy < OH; oy++) {
                for (int ox = 0; ox < OW; ox++) {
                    if (l->kind == L_MAXPOOL) {
                        float best = -FLT_MAX;
                        int bi = (oy * s) * W + ox * s;
                        for (int ky = 0; ky < k; ky++)
                            for (int kx = 0; kx < k; kx++) {
                                int idx = (oy * s + ky) * W + ox * s + kx;
                                /* strict '>' keeps the first maximum, as PyTorch does */
                                if (xc[idx] > best) { best = xc[idx]; bi = idx; }
                            }
                        yc[oy * OW + ox] = best;
                        arg[i * osz + (size_t)ch * OH * OW + oy * OW + ox] = bi;
                    } else {
                        float sum = 0;
                        for (int ky = 0; ky < k; ky++)
                            for (int kx = 0; kx < k; kx++) sum += xc[(oy * s + ky) * W + ox * s + kx];
                        yc[oy * OW + ox] = sum / (float)(k * k);
                    }
                }
            }
        }
    }
}

static void pool_bwd_task(void *vctx, size_t task, int worker) {
    (void)worker;
    pool_ctx *c = vctx;
    fed_model *m = c->m;
    const layer *l = c->l;
    if (l->in == 0) return;
    size_t lo, hi;
    nn_split((size_t)m->n, (size_t)c->tasks, task, &lo, &hi);
    const float *dy = m->ws.grad[l->out];
    float *dx = m->ws.grad[l->in];
    size_t isz = shape_size(l->ish), osz = shape_size(l->osh);
    int H = l->ish.h, W = l->ish.w, OH = l->osh.h, OW = l->osh.w, k = l->k, s = l->stride;
    const int32_t *arg = l->kind == L_MAXPOOL ? (const int32_t *)m->ws.save[c->li] : NULL;
    for (size_t i = lo; i < hi; i++) {
        float *dxi = dx + i * isz;
        const float *dyi = dy + i * osz;
        for (int ch = 0; ch < l->ish.c; ch++) {
            float *dxc = dxi + (size_t)ch * H * W;
            const float *dyc = dyi + (size_t)ch * OH * OW;
            if (l->kind == L_GAP) {
                float g = dyc[0] / (float)(H * W);
                for (int j = 0; j < H * W; j++) dxc[j] += g;
            } else if (l->kind == L_MAXPOOL) {
                const int32_t *a = arg + i * osz + (size_t)ch * OH * OW;
                for (int j = 0; j < OH * OW; j++) dxc[a[j]] += dyc[j];
            } else {
                float inv = 1.0f / (float)(k * k);
                for (int oy = 0; oy < OH; oy++)
                    for (int ox = 0; ox < OW; ox++) {
                        float g = dyc[oy * OW + ox] * inv;
                        for (int ky = 0; ky < k; ky++)
                            for (int kx = 0; kx < k; kx++) dxc[(oy * s + ky) * W + ox * s + kx] += g;
                    }
            }
        }
    }
}

void nn_pool_forward(fed_model *m, const layer *l) {
    int t = nn_threads(m);
    pool_ctx c = {m, l, t < m->n ? t : m->n, layer_index(m, l)};
    fed_pool_run(m->pool, (size_t)c.tasks, pool_fwd_task, &c);
}

void nn_pool_backward(fed_model *m, const layer *l) {
    int t = nn_threads(m);
    pool_ctx c = {m, l, t < m->n ? t : m->n, layer_index(m, l)};
    fed_pool_run(m->pool, (size_t)c.tasks, pool_bwd_task, &c);
}
