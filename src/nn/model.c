/* The model container: one flat parameter buffer, one gradient buffer, one
 * buffer of running statistics; a list of layers reading and writing activation
 * slots; and the forward/backward drivers that run the layers in order. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <string.h>
#include "federate/data.h"
#include "federate/error.h"
#include "federate/loss.h"
#include "federate/rng.h"
#include "federate/vec.h"
#include "nn_internal.h"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int nn_threads(const fed_model *m) { return m->pool ? fed_pool_size(m->pool) : 1; }

const char *fed_model_name(const fed_model *m) { return m->name; }
size_t fed_model_num_params(const fed_model *m) { return m->nparams; }
float *fed_model_params(fed_model *m) { return m->params; }
const float *fed_model_params_const(const fed_model *m) { return m->params; }
float *fed_model_grads(fed_model *m) { return m->grads; }
size_t fed_model_num_buffers(const fed_model *m) { return m->nbuffers; }
float *fed_model_buffers(fed_model *m) { return m->buffers; }
int fed_model_num_tensors(const fed_model *m) { return m->ntensors; }
int fed_model_num_classes(const fed_model *m) { return m->num_classes; }
double fed_model_train_flops(const fed_model *m) { return m->flops; }
void fed_model_set_training(fed_model *m, int training) { m->training = training; }
void fed_model_set_pool(fed_model *m, fed_pool *pool) { m->pool = pool; }
fed_pool *fed_model_pool(const fed_model *m) { return m->pool; }

const fed_tensor_info *fed_model_tensor(const fed_model *m, int i) {
    return (i >= 0 && i < m->ntensors) ? &m->tensors[i] : NULL;
}

const fed_tensor_info *fed_model_find_tensor(const fed_model *m, const char *name) {
    for (int i = 0; i < m->ntensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0) return &m->tensors[i];
    return NULL;
}

void fed_model_input_shape(const fed_model *m, int *c, int *h, int *w) {
    if (c) *c = m->input.c;
    if (h) *h = m->input.h;
    if (w) *w = m->input.w;
}

void fed_model_set_rng(fed_model *m, uint64_t seed, uint64_t round, uint64_t client) {
    m->rng_seed = seed;
    m->rng_round = round;
    m->rng_client = client;
    m->rng_step = 0;
}

static void workspace_free(fed_model *m) {
    workspace *ws = &m->ws;
    for (int s = 1; s < MAX_SLOTS; s++) { free(ws->act[s]); free(ws->grad[s]); }
    free(ws->grad[0]);
    for (int l = 0; l < MAX_LAYERS; l++) {
        free(ws->save[l]); free(ws->chan[l]); free(ws->colsave[l]); free(ws->wino_u[l]); free(ws->wino_v[l]);
    }
    for (int t = 0; t < MAX_WORKERS; t++) {
        free(ws->col[t]); free(ws->tmp[t]); free(ws->partial[t]); free(ws->dp[t]); free(ws->wino_s[t]);
    }
    memset(ws, 0, sizeof *ws);
}

void fed_model_free(fed_model *m) {
    if (!m) return;
    workspace_free(m);
    free(m->params);
    free(m->grads);
    free(m->buffers);
    free(m);
}

static void *xcalloc(size_t n, size_t size) { return calloc(n ? n : 1, size ? size : 1); }

/* Grows the workspace to hold n examples with the current thread count. */
static int workspace_reserve(fed_model *m, int n) {
    workspace *ws = &m->ws;
    int threads = nn_threads(m);
    if (threads > MAX_WORKERS) threads = MAX_WORKERS;
    if (ws->cap < n) {
        int cap = n;
        for (int s = 1; s < m->nslots; s++) {
            free(ws->act[s]); free(ws->grad[s]);
            ws->grad[s] = NULL;   /* gradients come with the first backward (evaluation needs none) */
            size_t sz = (size_t)cap * shape_size(m->slot_shape[s]);
            ws->act[s] = malloc(sz * sizeof(float));
            if (!ws->act[s]) goto oom;
        }
        free(ws->grad[0]);
        ws->grad[0] = NULL;   /* the input's gradient is never needed */
        for (int l = 0; l < m->nlayers; l++) {
            const layer *ly = &m->layers[l];
            free(ws->save[l]); ws->save[l] = NULL;
            free(ws->chan[l]); ws->chan[l] = NULL;
            if (ly->save_bytes) {
                ws->save[l] = malloc((size_t)cap * ly->save_bytes);
                if (!ws->save[l]) goto oom;
            }
            free(ws->colsave[l]); ws->colsave[l] = NULL;
            ws->colsave_valid[l] = 0;
            free(ws->wino_v[l]); ws->wino_v[l] = NULL;   /* sized for the new cap below */
            ws->wino_v_valid[l] = 0;
            if (ly->kind == L_CONV) {
                /* Keeping the lowered input saves recomputing it in backward; only
                 * when it is small (as at federated batch sizes). */
                size_t per = (size_t)ly->ish.c * ly->k * ly->k * ly->osh.h * ly->osh.w;
                if (per * (size_t)cap <= ((size_t)4 << 20)) {
                    ws->colsave[l] = malloc(per * (size_t)cap * sizeof(float));
                    if (!ws->colsave[l]) goto oom;
                }
            }
            size_t chan = ly->save_chan_floats;
            if (ly->kind == L_GROUPNORM) chan *= (size_t)cap;  /* stats per example and group */
            if (chan) {
                ws->chan[l] = xcalloc(chan, sizeof(float));
                if (!ws->chan[l]) goto oom;
            }
        }
        ws->cap = cap;
    }
    for (int t = 0; t < threads; t++) {
        if (!ws->col[t] && m->col_floats) {
            /* tmp holds as many conv outputs as col holds lowered examples */
            ws->col[t] = malloc(m->col_chunk_floats * sizeof(float));
            ws->tmp[t] = malloc(m->tmp_chunk_floats * sizeof(float));
            if (!ws->col[t] || !ws->tmp[t]) goto oom;
        }
        /* worker 0 accumulates straight into the model's gradient */
        if (t > 0 && !ws->partial[t]) {
            ws->partial[t] = xcalloc(m->nparams, sizeof(float));
            if (!ws->partial[t]) goto oom;
        }
    }
    if (m->fast) {
        size_t scratch = 0;
        for (int l = 0; l < m->nlayers; l++) {
            const layer *ly = &m->layers[l];
            if (!nn_wino_eligible(ly)) continue;
            if (nn_wino_scratch_floats(ly) > scratch) scratch = nn_wino_scratch_floats(ly);
            if (!ws->wino_u[l] && !(ws->wino_u[l] = malloc(nn_wino_u_floats(ly) * sizeof(float)))) goto oom;
            /* the transformed input is kept for backward when it is small, as colsave */
            size_t keep = nn_wino_keep_floats(ly) * (size_t)ws->cap;
            if (!ws->wino_v[l] && keep <= ((size_t)4 << 20) && !(ws->wino_v[l] = malloc(keep * sizeof(float))))
                goto oom;
        }
        for (int t = 0; t < threads && scratch; t++)
            if (!ws->wino_s[t] && !(ws->wino_s[t] = malloc(scratch * sizeof(float)))) goto oom;
    }
    return 0;
oom:
    workspace_free(m);
    return fed_error(FED_ENOMEM, "model %s: cannot allocate the workspace for %d examples", m->name, n);
}

static int ensure_grads(fed_model *m) {
    for (int s = 1; s < m->nslots; s++) {
        if (m->ws.grad[s]) continue;
        m->ws.grad[s] = malloc((size_t)m->ws.cap * shape_size(m->slot_shape[s]) * sizeof(float));
        if (!m->ws.grad[s])
            return fed_error(FED_ENOMEM, "model %s: cannot allocate gradients for %d examples", m->name, m->ws.cap);
    }
    return 0;
}

int fed_model_forward(fed_model *m, const float *x, int n, const float **logits) {
    if (!m || !x || n <= 0) return fed_error(FED_EINVAL, "fed_model_forward: need a model, input and n > 0 (n = %d)", n);
    int rc = workspace_reserve(m, n);
    if (rc) return rc;
    m->n = n;
    m->x = x;
    for (int i = 0; i < m->nlayers; i++) {
        const layer *l = &m->layers[i];
        double t0 = m->profile ? now_s() : 0;
        switch (l->kind) {
        case L_CONV: nn_conv_forward(m, l); break;
        case L_LINEAR: nn_linear_forward(m, l); break;
        case L_MAXPOOL: case L_AVGPOOL: case L_GAP: nn_pool_forward(m, l); break;
        case L_BATCHNORM: case L_GROUPNORM: nn_norm_forward(m, l, i); break;
        default: nn_eltwise_forward(m, l, i); break;
        }
        if (m->profile) m->prof[i][0] += now_s() - t0;
    }
    if (m->training) m->rng_step++;
    if (logits) *logits = m->ws.act[m->layers[m->nlayers - 1].out];
    return 0;
}

int fed_model_backward(fed_model *m, const float *dlogits) {
    if (!m || !dlogits || m->n <= 0) return fed_error(FED_ESTATE, "fed_model_backward: no forward pass to differentiate");
    int n = m->n;
    int rc = ensure_grads(m);
    if (rc) return rc;
    /* Every slot's gradient accumulates from the layers that read it (a residual
     * input has two readers), so all start at zero. */
    int last = m->layers[m->nlayers - 1].out;
    for (int s = 1; s < m->nslots; s++)
        if (s != last) memset(m->ws.grad[s], 0, (size_t)n * shape_size(m->slot_shape[s]) * sizeof(float));
    /* dlogits may already live in the output's gradient slot (fed_model_loss_grad) */
    if (dlogits != m->ws.grad[last]) memcpy(m->ws.grad[last], dlogits, (size_t)n * m->num_classes * sizeof(float));
    /* No need to clear m->grads: every layer overwrites its own parameters' gradients. */
    for (int i = m->nlayers - 1; i >= 0; i--) {
        const layer *l = &m->layers[i];
        double t0 = m->profile ? now_s() : 0;
        switch (l->kind) {
        case L_CONV: nn_conv_backward(m, l); break;
        case L_LINEAR: nn_linear_backward(m, l); break;
        case L_MAXPOOL: case L_AVGPOOL: case L_GAP: nn_pool_backward(m, l); break;
        case L_BATCHNORM: case L_GROUPNORM: nn_norm_backward(m, l, i); break;
        default: nn_eltwise_backward(m, l, i); break;
        }
        if (m->profile) m->prof[i][1] += now_s() - t0;
    }
    return 0;
}

int fed_model_loss_grad(fed_model *m, const float *x, const int32_t *y, int n, float *loss, int *correct) {
    const float *logits;
    int rc = fed_model_forward(m, x, n, &logits);
    if (rc) return rc;
    /* dlogits lives in the gradient slot of the output, written in place. */
    int last = m->layers[m->nlayers - 1].out;
    if ((rc = ensure_grads(m))) return rc;
    float *dlogits = m->ws.grad[last];
    float l = 0;
    rc = fed_softmax_xent(logits, y, n, m->num_classes, &l, dlogits, correct);
    if (rc) return rc;
    if (loss) *loss = l;
    return fed_model_backward(m, dlogits);
}

int fed_model_sgd_step(fed_model *m, const float *x, const int32_t *y, int n, float lr, float *loss, int *correct) {
    if (!m) return fed_error(FED_EINVAL, "fed_model_sgd_step: NULL model");
    if (!(lr >= 0.0f) || isinf(lr))
        return fed_error(FED_EINVAL, "fed_model_sgd_step: learning rate must be finite and >= 0 (got %g)", (double)lr);
    m->fused_lr = lr;
    int rc = fed_model_loss_grad(m, x, y, n, loss, correct);
    m->fused_lr = 0;
    if (rc) return rc;
    /* every other parameter tensor: the plain step on the gradient its layer wrote */
    for (int t = 0; t < m->ntensors; t++) {
        const fed_tensor_info *ti = &m->tensors[t];
        if (ti->is_buffer) continue;
        int linear = 0;
        for (int i = 0; i < m->nlayers && !linear; i++)
            linear = m->layers[i].kind == L_LINEAR && (ti->offset == m->layers[i].w_off || ti->offset == m->layers[i].b_off);
        if (linear) continue;
        fed_vec_axpy(m->params + ti->offset, -lr, m->grads + ti->offset, ti->numel);   /* as sgd_plain */
    }
    return 0;
}

int fed_model_evaluate(fed_model *m, const fed_dataset *d, int batch_size, double *loss, double *accuracy,
                       int64_t *confusion) {
    if (!m || !d || batch_size <= 0) return fed_error(FED_EINVAL, "fed_model_evaluate: bad arguments");
    if (d->c != m->input.c || d->h != m->input.h || d->w != m->input.w)
        return fed_error(FED_ESHAPE, "model %s expects %dx%dx%d inputs, data set has %dx%dx%d", m->name,
                         m->input.c, m->input.h, m->input.w, d->c, d->h, d->w);
    int was_training = m->training;
    m->training = 0;
    size_t ex = fed_dataset_example_size(d);
    int k = m->num_classes;
    double total = 0;
    long right = 0;
    if (confusion) memset(confusion, 0, (size_t)k * k * sizeof(int64_t));
    int rc = 0;
    for (int i = 0; i < d->n; i += batch_size) {
        int b = d->n - i < batch_size ? d->n - i : batch_size;
        const float *logits;
        rc = fed_model_forward(m, d->x + (size_t)i * ex, b, &logits);
        if (rc) break;
        float l;
        int c = 0;
        rc = fed_softmax_xent(logits, d->y + i, b, k, &l, NULL, &c);
        if (rc) break;
        total += (double)l * b;
        right += c;
        if (confusion) {
            for (int j = 0; j < b; j++) {
                const float *row = logits + (size_t)j * k;
                int arg = 0;
                for (int c2 = 1; c2 < k; c2++) if (row[c2] > row[arg]) arg = c2;
                confusion[(size_t)d->y[i + j] * k + arg]++;
            }
        }
    }
    m->training = was_training;
    if (rc) return rc;
    if (loss) *loss = d->n ? total / d->n : 0;
    if (accuracy) *accuracy = d->n ? (double)right / d->n : 0;
    return 0;
}

/* PyTorch's defaults: kaiming_uniform(a=sqrt(5)) gives U(-1/sqrt(fan_in), ..)
 * for weights, and the same bound for biases. */
void fed_model_init_params(fed_model *m, uint64_t seed) {
    for (int i = 0; i < m->ntensors; i++) {
        fed_tensor_info *t = &m->tensors[i];
        fed_rng r;
        fed_rng_init(&r, seed, 0, (uint64_t)i, FED_RNG_INIT);
        float *p = t->is_buffer ? m->buffers + t->offset : m->params + t->offset;
        const char *dot = strrchr(t->name, '.');
        const char *leaf = dot ? dot + 1 : t->name;
        if (t->is_buffer) {
            float v = strcmp(leaf, "running_var") == 0 ? 1.0f : 0.0f;
            for (size_t j = 0; j < t->numel; j++) p[j] = v;
            continue;
        }
        /* Find the layer this tensor belongs to, for fan_in and norm-ness. */
        const layer *owner = NULL;
        for (int l = 0; l < m->nlayers; l++) {
            const layer *ly = &m->layers[l];
            if ((ly->kind == L_CONV || ly->kind == L_LINEAR || ly->kind == L_BATCHNORM || ly->kind == L_GROUPNORM) &&
                (ly->w_off == t->offset || ly->b_off == t->offset)) { owner = ly; break; }
        }
        if (!owner) continue;
        if (owner->kind == L_BATCHNORM || owner->kind == L_GROUPNORM) {
            float v = owner->w_off == t->offset ? 1.0f : 0.0f;
            for (size_t j = 0; j < t->numel; j++) p[j] = v;
            continue;
        }
        double fan_in = owner->kind == L_CONV ? (double)owner->ish.c * owner->k * owner->k : (double)shape_size(owner->ish);
        float bound = (float)(1.0 / sqrt(fan_in));
        fed_rng_fill_uniform(&r, p, t->numel, -bound, bound);
    }
}

void fed_model_set_fast_kernels(fed_model *m, int on) {
    if (!m) return;
    m->fast = on != 0;
    for (int l = 0; l < MAX_LAYERS; l++) m->ws.wino_v_valid[l] = 0;
}

int fed_model_clone(fed_model **out, const fed_model *m) {
    if (!out || !m) return fed_error(FED_EINVAL, "fed_model_clone: NULL argument");
    fed_model *c = malloc(sizeof *c);
    if (!c) return fed_error(FED_ENOMEM, "fed_model_clone: out of memory");
    memcpy(c, m, sizeof *c);
    memset(&c->ws, 0, sizeof c->ws);
    c->pool = NULL;
    c->params = malloc((m->nparams ? m->nparams : 1) * sizeof(float));
    c->grads = xcalloc(m->nparams, sizeof(float));
    c->buffers = malloc((m->nbuffers ? m->nbuffers : 1) * sizeof(float));
    if (!c->params || !c->grads || !c->buffers) {
        free(c->params); free(c->grads); free(c->buffers); free(c);
        return fed_error(FED_ENOMEM, "fed_model_clone: out of memory");
    }
    memcpy(c->params, m->params, m->nparams * sizeof(float));
    memcpy(c->buffers, m->buffers, m->nbuffers * sizeof(float));
    *out = c;
    return 0;
}

static const char *kind_name(int k) {
    static const char *names[] = {"linear", "conv", "maxpool", "avgpool", "gap", "relu", "tanh",
                                  "dropout", "batchnorm", "groupnorm", "flatten", "add"};
    return k >= 0 && k <= L_ADD ? names[k] : "?";
}

void fed_model_profile(fed_model *m, int on) {
    m->profile = on;
    memset(m->prof, 0, sizeof m->prof);
}

void fed_model_profile_print(const fed_model *m, FILE *out, int steps) {
    double tot = 0;
    for (int i = 0; i < m->nlayers; i++) tot += m->prof[i][0] + m->prof[i][1];
    fprintf(out, "%-4s %-10s %-22s %10s %10s %6s\n", "#", "kind", "name", "fwd_ms", "bwd_ms", "share");
    for (int i = 0; i < m->nlayers; i++) {
        const layer *l = &m->layers[i];
        double f = m->prof[i][0] * 1e3 / steps, b = m->prof[i][1] * 1e3 / steps;
        fprintf(out, "%-4d %-10s %-22s %10.3f %10.3f %5.1f%%\n", i, kind_name(l->kind), l->name, f, b,
                tot > 0 ? 100.0 * (m->prof[i][0] + m->prof[i][1]) / tot : 0.0);
    }
}
