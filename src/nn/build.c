/* Building a model graph: each nn_add_* appends a layer, gives its output a new
 * activation slot, registers its parameters under PyTorch state_dict names and
 * counts its training FLOPs. nn_finalize allocates the flat buffers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "federate/error.h"
#include "nn_internal.h"

static int fail(fed_model *m, const char *msg, const char *name) {
    if (!m->build_error) fed_error(FED_EINVAL, "building model %s: %s (%s)", m->name, msg, name ? name : "");
    m->build_error = 1;
    return -1;
}

static int valid_slot(const fed_model *m, int s) { return s >= 0 && s < m->nslots; }

static layer *new_layer(fed_model *m, int kind, int in) {
    if (m->build_error || !valid_slot(m, in)) { fail(m, "bad input slot", NULL); return NULL; }
    if (m->nlayers >= MAX_LAYERS || m->nslots >= MAX_SLOTS) { fail(m, "too many layers", NULL); return NULL; }
    layer *l = &m->layers[m->nlayers++];
    memset(l, 0, sizeof *l);
    l->kind = kind;
    l->in = in;
    l->in2 = -1;
    l->ish = m->slot_shape[in];
    l->b_off = SIZE_MAX;
    l->w_off = SIZE_MAX;
    return l;
}

static int new_slot(fed_model *m, layer *l, shape3 s) {
    int slot = m->nslots++;
    m->slot_shape[slot] = s;
    l->out = slot;
    l->osh = s;
    return slot;
}

static size_t add_tensor(fed_model *m, const char *prefix, const char *leaf, int ndim, const int64_t *shape,
                         int is_buffer, int dtype) {
    fed_tensor_info *t = &m->tensors[m->ntensors++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s.%s", prefix, leaf);
    t->ndim = ndim;
    t->numel = 1;
    for (int i = 0; i < ndim; i++) { t->shape[i] = shape[i]; t->numel *= (size_t)shape[i]; }
    t->is_buffer = is_buffer;
    t->dtype = dtype;
    if (is_buffer) { t->offset = m->nbuffers; m->nbuffers += t->numel; }
    else { t->offset = m->nparams; m->nparams += t->numel; }
    return t->offset;
}

int nn_add_conv(fed_model *m, const char *name, int in, int cout, int k, int stride, int pad, int bias) {
    layer *l = new_layer(m, L_CONV, in);
    if (!l) return -1;
    shape3 is = l->ish;
    if (k <= 0 || stride <= 0 || cout <= 0 || pad < 0 || is.h + 2 * pad < k || is.w + 2 * pad < k)
        return fail(m, "bad convolution geometry (kernel larger than the padded input?)", name);
    int oh = (is.h + 2 * pad - k) / stride + 1, ow = (is.w + 2 * pad - k) / stride + 1;
    snprintf(l->name, sizeof l->name, "%s", name);
    l->k = k; l->stride = stride; l->pad = pad;
    int64_t ws[4] = {cout, is.c, k, k};
    l->w_off = add_tensor(m, name, "weight", 4, ws, 0, FED_DTYPE_F32);
    if (bias) { int64_t bs[1] = {cout}; l->b_off = add_tensor(m, name, "bias", 1, bs, 0, FED_DTYPE_F32); }
    size_t col = (size_t)is.c * k * k * oh * ow;
    if (col > m->col_floats) m->col_floats = col;
    if (shape_size((shape3){cout, oh, ow}) > m->out_floats) m->out_floats = shape_size((shape3){cout, oh, ow});
    double f = 2.0 * cout * is.c * k * k * oh * ow;
    /* backward: weight gradient always; input gradient unless this reads the input */
    m->flops += f * (in == 0 ? 2 : 3);
    return new_slot(m, l, (shape3){cout, oh, ow});
}

int nn_add_linear(fed_model *m, const char *name, int in, int out_features, int bias) {
    layer *l = new_layer(m, L_LINEAR, in);
    if (!l) return -1;
    if (out_features <= 0) return fail(m, "bad linear size", name);
    snprintf(l->name, sizeof l->name, "%s", name);
    int64_t ws[2] = {out_features, (int64_t)shape_size(l->ish)};
    l->w_off = add_tensor(m, name, "weight", 2, ws, 0, FED_DTYPE_F32);
    if (bias) { int64_t bs[1] = {out_features}; l->b_off = add_tensor(m, name, "bias", 1, bs, 0, FED_DTYPE_F32); }
    m->flops += 2.0 * out_features * shape_size(l->ish) * (in == 0 ? 2 : 3);
    return new_slot(m, l, (shape3){out_features, 1, 1});
}

int nn_add_pool(fed_model *m, int kind, int in, int k, int stride) {
    layer *l = new_layer(m, kind, in);
    if (!l) return -1;
    shape3 is = l->ish;
    if (k <= 0 || stride <= 0 || is.h < k || is.w < k) return fail(m, "pooling window larger than its input", NULL);
    int oh = (is.h - k) / stride + 1, ow = (is.w - k) / stride + 1;
    l->k = k; l->stride = stride;
    shape3 os = {is.c, oh, ow};
    if (kind == L_MAXPOOL) l->save_bytes = shape_size(os) * sizeof(int32_t);
    return new_slot(m, l, os);
}

int nn_add_gap(fed_model *m, int in) {
    layer *l = new_layer(m, L_GAP, in);
    if (!l) return -1;
    return new_slot(m, l, (shape3){l->ish.c, 1, 1});
}

int nn_add_act(fed_model *m, int kind, int in) {
    layer *l = new_layer(m, kind, in);
    if (!l) return -1;
    return new_slot(m, l, l->ish);
}

int nn_add_dropout(fed_model *m, int in, float p) {
    layer *l = new_layer(m, L_DROPOUT, in);
    if (!l) return -1;
    if (!(p >= 0 && p < 1)) return fail(m, "dropout probability must be in [0, 1)", NULL);
    l->p = p;
    l->save_bytes = shape_size(l->ish) * sizeof(float);  /* scaled mask */
    return new_slot(m, l, l->ish);
}

int nn_add_batchnorm(fed_model *m, const char *name, int in) {
    layer *l = new_layer(m, L_BATCHNORM, in);
    if (!l) return -1;
    snprintf(l->name, sizeof l->name, "%s", name);
    int64_t cs[1] = {l->ish.c};
    l->w_off = add_tensor(m, name, "weight", 1, cs, 0, FED_DTYPE_F32);
    l->b_off = add_tensor(m, name, "bias", 1, cs, 0, FED_DTYPE_F32);
    l->rm_off = add_tensor(m, name, "running_mean", 1, cs, 1, FED_DTYPE_F32);
    l->rv_off = add_tensor(m, name, "running_var", 1, cs, 1, FED_DTYPE_F32);
    l->nbt_off = add_tensor(m, name, "num_batches_tracked", 0, NULL, 1, FED_DTYPE_I64);
    l->eps = 1e-5f;
    l->momentum = 0.1f;
    l->save_chan_floats = 2 * (size_t)l->ish.c;   /* batch mean, 1/std */
    m->flops += 10.0 * shape_size(l->ish);
    return new_slot(m, l, l->ish);
}

int nn_add_groupnorm(fed_model *m, const char *name, int in, int groups) {
    layer *l = new_layer(m, L_GROUPNORM, in);
    if (!l) return -1;
    if (groups <= 0 || l->ish.c % groups) return fail(m, "channels not divisible by groups", name);
    snprintf(l->name, sizeof l->name, "%s", name);
    int64_t cs[1] = {l->ish.c};
    l->w_off = add_tensor(m, name, "weight", 1, cs, 0, FED_DTYPE_F32);
    l->b_off = add_tensor(m, name, "bias", 1, cs, 0, FED_DTYPE_F32);
    l->groups = groups;
    l->eps = 1e-5f;
    l->save_chan_floats = 2 * (size_t)groups;     /* per example: mean, 1/std */
    m->flops += 10.0 * shape_size(l->ish);
    return new_slot(m, l, l->ish);
}

int nn_add_flatten(fed_model *m, int in) {
    layer *l = new_layer(m, L_FLATTEN, in);
    if (!l) return -1;
    return new_slot(m, l, (shape3){(int)shape_size(l->ish), 1, 1});
}

int nn_add_add(fed_model *m, int a, int b) {
    layer *l = new_layer(m, L_ADD, a);
    if (!l) return -1;
    if (!valid_slot(m, b)) return fail(m, "bad residual slot", NULL);
    shape3 sb = m->slot_shape[b];
    if (sb.c != l->ish.c || sb.h != l->ish.h || sb.w != l->ish.w) return fail(m, "residual shapes differ", NULL);
    l->in2 = b;
    return new_slot(m, l, l->ish);
}

int nn_finalize(fed_model *m) {
    if (m->build_error) return FED_EINVAL;
    m->params = calloc(m->nparams ? m->nparams : 1, sizeof(float));
    m->grads = calloc(m->nparams ? m->nparams : 1, sizeof(float));
    m->buffers = calloc(m->nbuffers ? m->nbuffers : 1, sizeof(float));
    if (!m->params || !m->grads || !m->buffers)
        return fed_error(FED_ENOMEM, "model %s: cannot allocate %zu parameters", m->name, m->nparams);
    /* Column scratch for up to 16 examples, within 4M floats (16 MB) per worker. */
    size_t per = m->col_floats ? m->col_floats : 1;
    size_t chunk = (4u << 20) / per;
    if (chunk > 16) chunk = 16;
    if (chunk < 1) chunk = 1;
    m->col_chunk_floats = chunk * per;
    m->tmp_chunk_floats = chunk * m->out_floats;
    m->training = 1;
    m->fast = 1;
    return 0;
}
