/* The model zoo, by name. Layer names follow the equivalent torch.nn.Module so
 * state_dicts are interchangeable:
 *   mlp    : fc1..fcN (hidden sizes configurable, ReLU between)
 *   cnn    : McMahan et al. 2017 (AISTATS), "CNN" for MNIST: two 5x5 convs (32, 64,
 *            same padding) each followed by ReLU and 2x2 max pooling, fc 512, fc 10.
 *   cnn-bn : the same convs with BatchNorm (bn1, bn2) before ReLU, dropout before fc2.
 *   resnet : He et al. 2016, CIFAR ResNet-(6n+2) (default 20) with BatchNorm or
 *            GroupNorm, 1x1 projection shortcuts (downsample.0/1) when the shape changes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "federate/error.h"
#include "nn_internal.h"

static const char *const zoo_names[] = {"mlp", "cnn", "cnn-bn", "resnet", "cnn-dp", NULL};

const char *const *fed_model_zoo(void) { return zoo_names; }

void fed_model_opts_default(fed_model_opts *o) {
    memset(o, 0, sizeof *o);
    o->dropout = -1.0f;
}

static int input_slot(fed_model *m, int c, int h, int w) {
    m->input = (shape3){c, h, w};
    m->slot_shape[0] = m->input;
    m->nslots = 1;
    return 0;
}

static int build_mlp(fed_model *m, const fed_model_opts *o) {
    int hidden[8] = {200, 200};
    int nh = 2;
    if (o->n_hidden > 0) {
        nh = o->n_hidden > 8 ? 8 : o->n_hidden;
        memcpy(hidden, o->hidden, (size_t)nh * sizeof(int));
    }
    int s = nn_add_flatten(m, 0);
    char name[16];
    for (int i = 0; i < nh; i++) {
        snprintf(name, sizeof name, "fc%d", i + 1);
        s = nn_add_linear(m, name, s, hidden[i], 1);
        s = nn_add_act(m, L_RELU, s);
    }
    snprintf(name, sizeof name, "fc%d", nh + 1);
    return nn_add_linear(m, name, s, m->num_classes, 1);
}

static int build_cnn(fed_model *m, int bn, float dropout) {
    int s = nn_add_conv(m, "conv1", 0, 32, 5, 1, 2, 1);
    if (bn) s = nn_add_batchnorm(m, "bn1", s);
    s = nn_add_act(m, L_RELU, s);
    s = nn_add_pool(m, L_MAXPOOL, s, 2, 2);
    s = nn_add_conv(m, "conv2", s, 64, 5, 1, 2, 1);
    if (bn) s = nn_add_batchnorm(m, "bn2", s);
    s = nn_add_act(m, L_RELU, s);
    s = nn_add_pool(m, L_MAXPOOL, s, 2, 2);
    s = nn_add_flatten(m, s);
    s = nn_add_linear(m, "fc1", s, 512, 1);
    s = nn_add_act(m, L_RELU, s);
    if (bn) s = nn_add_dropout(m, s, dropout);
    return nn_add_linear(m, "fc2", s, m->num_classes, 1);
}

/* The small tanh CNN used for DP-SGD on MNIST (Papernot et al. 2021, "Tempered
 * Sigmoid Activations"; Tramer & Boneh 2021, Table 9): 26K parameters, so the
 * noise DP-SGD adds to every coordinate weighs on few of them, and bounded
 * activations keep per-example gradient norms small. */
static int build_cnn_dp(fed_model *m) {
    int s = nn_add_conv(m, "conv1", 0, 16, 8, 2, 3, 1);
    s = nn_add_act(m, L_TANH, s);
    s = nn_add_pool(m, L_MAXPOOL, s, 2, 1);
    s = nn_add_conv(m, "conv2", s, 32, 4, 2, 0, 1);
    s = nn_add_act(m, L_TANH, s);
    s = nn_add_pool(m, L_MAXPOOL, s, 2, 1);
    s = nn_add_flatten(m, s);
    s = nn_add_linear(m, "fc1", s, 32, 1);
    s = nn_add_act(m, L_TANH, s);
    return nn_add_linear(m, "fc2", s, m->num_classes, 1);
}

static int add_norm(fed_model *m, int group, const char *prefix, const char *leaf, int s) {
    char name[80];
    snprintf(name, sizeof name, "%s%s", prefix, leaf);
    if (!group) return nn_add_batchnorm(m, name, s);
    int c = m->slot_shape[s].c;
    /* groups of 8 channels at most 32 groups: 2, 4, 8 groups for 16, 32, 64 channels */
    int g = c / 8 > 32 ? 32 : (c / 8 > 0 ? c / 8 : 1);
    return nn_add_groupnorm(m, name, s, g);
}

static int build_resnet(fed_model *m, const fed_model_opts *o) {
    int depth = o->depth ? o->depth : 20;
    if (depth < 8 || (depth - 2) % 6) {
        m->build_error = 1;
        return fed_error(FED_EINVAL, "resnet depth must be 6n+2 (8, 14, 20, 32, ...), got %d", depth), -1;
    }
    int nblocks = (depth - 2) / 6, group = o->norm == FED_NORM_GROUP;
    const char *nl = group ? "gn" : "bn";
    char prefix[24], nm[40];
    int s = nn_add_conv(m, "conv1", 0, 16, 3, 1, 1, 0);
    snprintf(nm, sizeof nm, "%s1", nl);
    s = add_norm(m, group, "", nm, s);
    s = nn_add_act(m, L_RELU, s);
    int widths[3] = {16, 32, 64};
    for (int stage = 0; stage < 3; stage++) {
        for (int b = 0; b < nblocks; b++) {
            int stride = (stage > 0 && b == 0) ? 2 : 1;
            int cin = m->slot_shape[s].c, cout = widths[stage];
            snprintf(prefix, sizeof prefix, "layer%d.%d.", stage + 1, b);
            int in = s;
            snprintf(nm, sizeof nm, "%sconv1", prefix);
            int t = nn_add_conv(m, nm, in, cout, 3, stride, 1, 0);
            snprintf(nm, sizeof nm, "%s1", nl);
            t = add_norm(m, group, prefix, nm, t);
            t = nn_add_act(m, L_RELU, t);
            snprintf(nm, sizeof nm, "%sconv2", prefix);
            t = nn_add_conv(m, nm, t, cout, 3, 1, 1, 0);
            snprintf(nm, sizeof nm, "%s2", nl);
            t = add_norm(m, group, prefix, nm, t);
            int sc = in;
            if (stride != 1 || cin != cout) {
                snprintf(nm, sizeof nm, "%sdownsample.0", prefix);
                sc = nn_add_conv(m, nm, in, cout, 1, stride, 0, 0);
                sc = add_norm(m, group, prefix, "downsample.1", sc);
            }
            s = nn_add_add(m, t, sc);
            s = nn_add_act(m, L_RELU, s);
        }
    }
    s = nn_add_gap(m, s);
    s = nn_add_flatten(m, s);
    return nn_add_linear(m, "fc", s, m->num_classes, 1);
}

int fed_model_create(fed_model **out, const char *name, const fed_model_opts *opts) {
    if (!out || !name) return fed_error(FED_EINVAL, "fed_model_create: NULL argument");
    *out = NULL;
    fed_model_opts o;
    if (opts) o = *opts; else fed_model_opts_default(&o);
    int known = 0;
    for (int i = 0; zoo_names[i]; i++) known |= strcmp(zoo_names[i], name) == 0;
    if (!known) return fed_error(FED_ENOTFOUND, "unknown model '%s' (known: mlp, cnn, cnn-bn, resnet, cnn-dp)", name);
    fed_model *m = calloc(1, sizeof *m);
    if (!m) return fed_error(FED_ENOMEM, "fed_model_create: out of memory");
    snprintf(m->name, sizeof m->name, "%s", name);
    m->num_classes = o.num_classes > 0 ? o.num_classes : 10;
    int is_resnet = strcmp(name, "resnet") == 0;
    int c = o.in_c > 0 ? o.in_c : (is_resnet ? 3 : 1);
    int h = o.in_h > 0 ? o.in_h : (is_resnet ? 32 : 28);
    int w = o.in_w > 0 ? o.in_w : (is_resnet ? 32 : 28);
    input_slot(m, c, h, w);
    int rc;
    if (strcmp(name, "mlp") == 0) rc = build_mlp(m, &o);
    else if (strcmp(name, "cnn") == 0) rc = build_cnn(m, 0, 0);
    else if (strcmp(name, "cnn-bn") == 0) rc = build_cnn(m, 1, o.dropout < 0 ? 0.5f : o.dropout);
    else if (strcmp(name, "cnn-dp") == 0) rc = build_cnn_dp(m);
    else rc = build_resnet(m, &o);
    if (rc < 0 || m->build_error) {
        fed_model_free(m);
        return FED_EINVAL;
    }
    rc = nn_finalize(m);
    if (rc) { fed_model_free(m); return rc; }
    fed_model_init_params(m, 0);
    *out = m;
    return 0;
}

fed_model *nn_model_begin(const char *name, int c, int h, int w, int num_classes) {
    fed_model *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    snprintf(m->name, sizeof m->name, "%s", name);
    m->num_classes = num_classes;
    input_slot(m, c, h, w);
    return m;
}

int nn_model_end(fed_model *m) {
    int last = m->nlayers ? m->layers[m->nlayers - 1].out : -1;
    if (last < 0 || shape_size(m->slot_shape[last]) != (size_t)m->num_classes)
        return fed_error(FED_EINVAL, "model %s: the last layer must output num_classes values", m->name);
    int rc = nn_finalize(m);
    if (rc) return rc;
    fed_model_init_params(m, 0);
    return 0;
}
