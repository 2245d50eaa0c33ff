/* Element-wise layers: ReLU, Tanh, Dropout (inverted, mask kept for backward),
 * Flatten (a copy: (C, H, W) order is already PyTorch's) and residual Add.
 * Dropout masks come from a stream per (run, step, layer, example), so they do
 * not depend on how the batch is split across threads. */
#include <math.h>
#include <string.h>
#include "federate/rng.h"
#include "nn_internal.h"

typedef struct elt_ctx { fed_model *m; const layer *l; int li; int tasks; } elt_ctx;

static uint64_t mix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void elt_fwd_task(void *vctx, size_t task, int worker) {
    (void)worker;
    elt_ctx *c = vctx;
    fed_model *m = c->m;
    const layer *l = c->l;
    size_t ex = shape_size(l->ish);
    size_t lo, hi;
    nn_split((size_t)m->n, (size_t)c->tasks, task, &lo, &hi);
    const float *restrict x = nn_act(m, l->in) + lo * ex;
    float *restrict y = m->ws.act[l->out] + lo * ex;
    size_t len = (hi - lo) * ex;
    switch (l->kind) {
    case L_RELU:
        for (size_t j = 0; j < len; j++) y[j] = x[j] > 0 ? x[j] : 0.0f;
        break;
    case L_TANH:
        for (size_t j = 0; j < len; j++) y[j] = tanhf(x[j]);
        break;
    case L_FLATTEN:
        memcpy(y, x, len * sizeof(float));
        break;
    case L_ADD: {
        const float *restrict x2 = nn_act(m, l->in2) + lo * ex;
        for (size_t j = 0; j < len; j++) y[j] = x[j] + x2[j];
        break;
    }
    case L_DROPOUT: {
        if (!m->training || l->p == 0.0f) { memcpy(y, x, len * sizeof(float)); break; }
        float *mask = (float *)m->ws.save[c->li] + lo * ex;
        float keep = 1.0f - l->p, scale = 1.0f / keep;
        uint64_t s = mix64(mix64(mix64(mix64(m->rng_seed) ^ m->rng_round) ^ m->rng_client) ^ m->rng_step);
        s = mix64(s ^ (uint64_t)c->li);
        for (size_t i = lo; i < hi; i++) {
            fed_rng r;
            fed_rng_init(&r, s, 0, i, FED_RNG_DROPOUT);
            float *mi = mask + (i - lo) * ex;
            for (size_t j = 0; j < ex; j++) mi[j] = fed_rng_uniformf(&r) < keep ? scale : 0.0f;
        }
        for (size_t j = 0; j < len; j++) y[j] = x[j] * mask[j];
        break;
    }
    default: break;
    }
}

static void elt_bwd_task(void *vctx, size_t task, int worker) {
    (void)worker;
    elt_ctx *c = vctx;
    fed_model *m = c->m;
    const layer *l = c->l;
    size_t ex = shape_size(l->ish);
    size_t lo, hi;
    nn_split((size_t)m->n, (size_t)c->tasks, task, &lo, &hi);
    size_t len = (hi - lo) * ex;
    const float *restrict dy = m->ws.grad[l->out] + lo * ex;
    const float *restrict y = m->ws.act[l->out] + lo * ex;
    float *restrict dx = l->in == 0 ? NULL : m->ws.grad[l->in] + lo * ex;
    switch (l->kind) {
    case L_RELU:
        if (dx) for (size_t j = 0; j < len; j++) dx[j] += y[j] > 0 ? dy[j] : 0.0f;
        break;
    case L_TANH:
        if (dx) for (size_t j = 0; j < len; j++) dx[j] += dy[j] * (1.0f - y[j] * y[j]);
        break;
    case L_FLATTEN:
        if (dx) for (size_t j = 0; j < len; j++) dx[j] += dy[j];
        break;
    case L_ADD: {
        if (dx) for (size_t j = 0; j < len; j++) dx[j] += dy[j];
        if (l->in2 != 0) {
            float *restrict dx2 = m->ws.grad[l->in2] + lo * ex;
            for (size_t j = 0; j < len; j++) dx2[j] += dy[j];
        }
        break;
    }
    case L_DROPOUT:
        if (!dx) break;
        if (!m->training || l->p == 0.0f) {
            for (size_t j = 0; j < len; j++) dx[j] += dy[j];
        } else {
            const float *restrict mask = (const float *)m->ws.save[c->li] + lo * ex;
            for (size_t j = 0; j < len; j++) dx[j] += dy[j] * mask[j];
        }
        break;
    default: break;
    }
}

void nn_eltwise_forward(fed_model *m, const layer *l, int li) {
    int t = nn_threads(m);
    elt_ctx c = {m, l, li, t < m->n ? t : m->n};
    fed_pool_run(m->pool, (size_t)c.tasks, elt_fwd_task, &c);
}

void nn_eltwise_backward(fed_model *m, const layer *l, int li) {
    int t = nn_threads(m);
    elt_ctx c = {m, l, li, t < m->n ? t : m->n};
    fed_pool_run(m->pool, (size_t)c.tasks, elt_bwd_task, &c);
}
