/* BatchNorm2d (Ioffe & Szegedy 2015) and GroupNorm (Wu & He 2018), with
 * PyTorch's conventions: biased variance to normalize, unbiased variance in the
 * running estimate, momentum 0.1, eps 1e-5. BatchNorm threads split channels
 * (statistics span the whole batch); GroupNorm threads split examples. */
#include <math.h>
#include <string.h>
#include "nn_internal.h"

typedef struct norm_ctx { fed_model *m; const layer *l; int li; int tasks; } norm_ctx;

static void bn_fwd_task(void *vctx, size_t task, int worker) {
    (void)worker;
    norm_ctx *c = vctx;
    fed_model *m = c->m;
    const layer *l = c->l;
    int C = l->ish.c, HW = l->ish.h * l->ish.w, n = m->n;
    size_t ex = shape_size(l->ish);
    size_t c0, c1;
    nn_split((size_t)C, (size_t)c->tasks, task, &c0, &c1);
    const float *x = nn_act(m, l->in);
    float *y = m->ws.act[l->out];
    const float *gamma = m->params + l->w_off, *beta = m->params + l->b_off;
    float *rm = m->buffers + l->rm_off, *rv = m->buffers + l->rv_off;
    float *stat = m->ws.chan[c->li];   /* [mean[C], invstd[C]] */
    double M = (double)n * HW;
    for (size_t ch = c0; ch < c1; ch++) {
        float mean, invstd;
        if (m->training) {
            double s = 0, ss = 0;
            for (int i = 0; i < n; i++) {
                const float *xc = x + i * ex + ch * HW;
                for (int j = 0; j < HW; j++) s += xc[j];
            }
            double mu = s / M;
            for (int i = 0; i < n; i++) {
                const float *xc = x + i * ex + ch * HW;
                for (int j = 0; j < HW; j++) { double d = xc[j] - mu; ss += d * d; }
            }
            double var = ss / M;
            mean = (float)mu;
            invstd = (float)(1.0 / sqrt(var + l->eps));
            double unbiased = M > 1 ? ss / (M - 1) : var;
            rm[ch] = (1.0f - l->momentum) * rm[ch] + l->momentum * mean;
            rv[ch] = (float)((1.0 - l->momentum) * rv[ch] + l->momentum * unbiased);
        } else {
            mean = rm[ch];
            invstd = 1.0f / sqrtf(rv[ch] + l->eps);
        }
        stat[ch] = mean;
        stat[C + ch] = invstd;
        float a = gamma[ch] * invstd, b = beta[ch] - mean * a;
        for (int i = 0; i < n; i++) {
            const float *restrict xc = x + i * ex + ch * HW;
            float *restrict yc = y + i * ex + ch * HW;
            for (int j = 0; j < HW; j++) yc[j] = xc[j] * a + b;
        }
    }
}

static void bn_bwd_task(void *vctx, size_t task, int worker) {
    (void)worker;
    norm_ctx *c = vctx;
    fed_model *m = c->m;
    const layer *l = c->l;
    int C = l->ish.c, HW = l->ish.h * l->ish.w, n = m->n;
    size_t ex = shape_size(l->ish);
    size_t c0, c1;
    nn_split((size_t)C, (size_t)c->tasks, task, &c0, &c1);
    const float *x = nn_act(m, l->in);
    const float *dy = m->ws.grad[l->out];
    float *dx = l->in == 0 ? NULL : m->ws.grad[l->in];
    const float *gamma = m->params + l->w_off;
    float *gg = m->grads + l->w_off, *gb = m->grads + l->b_off;
    const float *stat = m->ws.chan[c->li];
    double M = (double)n * HW;
    for (size_t ch = c0; ch < c1; ch++) {
        float mean = stat[ch], invstd = stat[C + ch];
        double sdy = 0, sdyx = 0;
        for (int i = 0; i < n; i++) {
            const float *xc = x + i * ex + ch * HW, *dyc = dy + i * ex + ch * HW;
            for (int j = 0; j < HW; j++) {
                sdy += dyc[j];
                sdyx += (double)dyc[j] * ((xc[j] - mean) * invstd);
            }
        }
        gg[ch] = (float)sdyx;
        gb[ch] = (float)sdy;
        if (!dx) continue;
        if (m->training) {
            float k = gamma[ch] * invstd;
            float mdy = (float)(sdy / M), mdyx = (float)(sdyx / M);
            for (int i = 0; i < n; i++) {
                const float *restrict xc = x + i * ex + ch * HW, *restrict dyc = dy + i * ex + ch * HW;
                float *restrict dxc = dx + i * ex + ch * HW;
                for (int j = 0; j < HW; j++) {
                    float xh = (xc[j] - mean) * invstd;
                    dxc[j] += k * (dyc[j] - mdy - xh * mdyx);
                }
            }
        } else {
            float k = gamma[ch] * invstd;
            for (int i = 0; i < n; i++) {
                const float *restrict dyc = dy + i * ex + ch * HW;
                float *restrict dxc = dx + i * ex + ch * HW;
                for (int j = 0; j < HW; j++) dxc[j] += k * dyc[j];
            }
        }
    }
}

static void gn_fwd_task(void *vctx, size_t task, int worker) {
    (void)worker;
    norm_ctx *c = vctx;
    fed_model *m = c->m;
    const layer *l = c->l;
    int C = l->ish.c, HW = l->ish.h * l->ish.w, G = l->groups, cpg = C / G;
    size_t ex = shape_size(l->ish), gsz = (size_t)cpg * HW;
    size_t lo, hi;
    nn_split((size_t)m->n, (size_t)c->tasks, task, &lo, &hi);
    const float *x = nn_act(m, l->in);
    float *y = m->ws.act[l->out];
    const float *gamma = m->params + l->w_off, *beta = m->params + l->b_off;
    float *stat = m->ws.chan[c->li];   /* per example: [mean[G], invstd[G]] */
    for (size_t i = lo; i < hi; i++) {
        for (int g = 0; g < G; g++) {
            const float *xg = x + i * ex + (size_t)g * gsz;
            double s = 0, ss = 0;
            for (size_t j = 0; j < gsz; j++) s += xg[j];
            double mu = s / (double)gsz;
            for (size_t j = 0; j < gsz; j++) { double d = xg[j] - mu; ss += d * d; }
            float mean = (float)mu, invstd = (float)(1.0 / sqrt(ss / (double)gsz + l->eps));
            stat[i * 2 * G + g] = mean;
            stat[i * 2 * G + G + g] = invstd;
            for (int cc = 0; cc < cpg; cc++) {
                int ch = g * cpg + cc;
                float a = gamma[ch] * invstd, b = beta[ch] - mean * a;
                const float *restrict xc = xg + (size_t)cc * HW;
                float *restrict yc = y + i * ex + (size_t)ch * HW;
                for (int j = 0; j < HW; j++) yc[j] = xc[j] * a + b;
            }
        }
    }
}

static void gn_bwd_task(void *vctx, size_t task, int worker) {
    (void)worker;
    norm_ctx *c = vctx;
    fed_model *m = c->m;
    const layer *l = c->l;
    if (l->in == 0) return;
    int C = l->ish.c, HW = l->ish.h * l->ish.w, G = l->groups, cpg = C / G;
    size_t ex = shape_size(l->ish), gsz = (size_t)cpg * HW;
    size_t lo, hi;
    nn_split((size_t)m->n, (size_t)c->tasks, task, &lo, &hi);
    const float *x = nn_act(m, l->in);
    const float *dy = m->ws.grad[l->out];
    float *dx = m->ws.grad[l->in];
    const float *gamma = m->params + l->w_off;
    const float *stat = m->ws.chan[c->li];
    for (size_t i = lo; i < hi; i++) {
        for (int g = 0; g < G; g++) {
            float mean = stat[i * 2 * G + g], invstd = stat[i * 2 * G + G + g];
            double s1 = 0, s2 = 0;
            for (int cc = 0; cc < cpg; cc++) {
                int ch = g * cpg + cc;
                const float *xc = x + i * ex + (size_t)ch * HW, *dyc = dy + i * ex + (size_t)ch * HW;
                for (int j = 0; j < HW; j++) {
                    double dxh = (double)dyc[j] * gamma[ch];
                    s1 += dxh;
                    s2 += dxh * ((xc[j] - mean) * invstd);
                }
            }
            float m1 = (float)(s1 / (double)gsz), m2 = (float)(s2 / (double)gsz);
            for (int cc = 0; cc < cpg; cc++) {
                int ch = g * cpg + cc;
                const float *restrict xc = x + i * ex + (size_t)ch * HW, *restrict dyc = dy + i * ex + (size_t)ch * HW;
                float *restrict dxc = dx + i * ex + (size_t)ch * HW;
                for (int j = 0; j < HW; j++) {
                    float xh = (xc[j] - mean) * invstd;
                    dxc[j] += invstd * (dyc[j] * gamma[ch] - m1 - xh * m2);
                }
            }
        }
    }
}

/* GroupNorm's weight and bias gradients, channel by channel over the batch. */
static void gn_param_task(void *vctx, size_t task, int worker) {
    (void)worker;
    norm_ctx *c = vctx;
    fed_model *m = c->m;
    const layer *l = c->l;
    int C = l->ish.c, HW = l->ish.h * l->ish.w, G = l->groups, cpg = C / G, n = m->n;
    size_t ex = shape_size(l->ish);
    size_t c0, c1;
    nn_split((size_t)C, (size_t)c->tasks, task, &c0, &c1);
    const float *x = nn_act(m, l->in);
    const float *dy = m->ws.grad[l->out];
    const float *stat = m->ws.chan[c->li];
    for (size_t ch = c0; ch < c1; ch++) {
        int g = (int)ch / cpg;
        double sg = 0, sb = 0;
        for (int i = 0; i < n; i++) {
            float mean = stat[(size_t)i * 2 * G + g], invstd = stat[(size_t)i * 2 * G + G + g];
            const float *xc = x + i * ex + ch * HW, *dyc = dy + i * ex + ch * HW;
            for (int j = 0; j < HW; j++) {
                sb += dyc[j];
                sg += (double)dyc[j] * ((xc[j] - mean) * invstd);
            }
        }
        m->grads[l->w_off + ch] = (float)sg;
        m->grads[l->b_off + ch] = (float)sb;
    }
}

void nn_norm_forward(fed_model *m, const layer *l, int li) {
    int t = nn_threads(m);
    if (l->kind == L_BATCHNORM) {
        norm_ctx c = {m, l, li, t < l->ish.c ? t : l->ish.c};
        fed_pool_run(m->pool, (size_t)c.tasks, bn_fwd_task, &c);
        if (m->training) m->buffers[l->nbt_off] += 1.0f;
    } else {
        norm_ctx c = {m, l, li, t < m->n ? t : m->n};
        fed_pool_run(m->pool, (size_t)c.tasks, gn_fwd_task, &c);
    }
}

void nn_norm_backward(fed_model *m, const layer *l, int li) {
    int t = nn_threads(m);
    if (l->kind == L_BATCHNORM) {
        norm_ctx c = {m, l, li, t < l->ish.c ? t : l->ish.c};
        fed_pool_run(m->pool, (size_t)c.tasks, bn_bwd_task, &c);
    } else {
        norm_ctx c = {m, l, li, t < m->n ? t : m->n};
        fed_pool_run(m->pool, (size_t)c.tasks, gn_bwd_task, &c);
        norm_ctx p = {m, l, li, t < l->ish.c ? t : l->ish.c};
        fed_pool_run(m->pool, (size_t)p.tasks, gn_param_task, &p);
    }
}
