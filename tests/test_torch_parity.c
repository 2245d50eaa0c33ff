/* Forward and backward of the zoo's `cnn` and `cnn-bn` against PyTorch: the
 * fixtures (tests/fixtures/cnn{,_bn}_parity.safetensors, made by make_fixtures.py with
 * Debian's python3-torch) hold PyTorch's initial weights, an input batch, and
 * the logits, loss, parameter gradients and BatchNorm statistics it computed.
 * Tolerance: max |ours - torch| <= 1e-4 * max |torch| per tensor. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "federate/federate.h"

static const char *fixture_path(const char *name, char *buf, size_t size) {
    const char *dir = getenv("FEDERATE_FIXTURES");
    snprintf(buf, size, "%s/%s", dir ? dir : "tests/fixtures", name);
    return buf;
}

static const fed_st_tensor *need(const fed_st_file *f, const char *name) {
    const fed_st_tensor *t = fed_st_find(f, name);
    if (!t) {
        fprintf(stderr, "fixture lacks tensor %s\n", name);
        exit(1);
    }
    return t;
}

/* floor: a scale below which max|ref| is not trusted as the yardstick. A conv
 * bias in front of BatchNorm has gradient 0 in exact arithmetic (the mean
 * subtraction cancels it), so both sides hold rounding noise of ~1e-8; those
 * are compared against 1% of the model's largest gradient instead. */
static void compare_floor(const char *what, const float *ours, const float *ref, size_t n, double floor) {
    double maxref = 0, maxdiff = 0;
    for (size_t i = 0; i < n; i++) {
        if (fabs(ref[i]) > maxref) maxref = fabs(ref[i]);
        double d = fabs((double)ours[i] - ref[i]);
        if (d > maxdiff) maxdiff = d;
    }
    double scale = maxref > floor ? maxref : floor;
    double rel = scale > 0 ? maxdiff / scale : maxdiff;
    printf("  %-28s max|diff|/max|ref| = %.2e\n", what, rel);
    if (!(rel <= 1e-4)) {
        for (size_t i = 0; i < n && i < 5; i++) fprintf(stderr, "  [%zu] ours %.8g torch %.8g\n", i, ours[i], ref[i]);
        fprintf(stderr, "%s differs from PyTorch: relative %.3g\n", what, rel);
        exit(1);
    }
}

static void compare(const char *what, const float *ours, const float *ref, size_t n) {
    compare_floor(what, ours, ref, n, 0);
}

static void parity(const char *model_name, const char *file) {
    char path[512];
    fed_st_file *f;
    CHECK_OK(fed_st_open(fixture_path(file, path, sizeof path), &f));
    fed_model_opts o;
    fed_model_opts_default(&o);
    o.dropout = 0.0f;   /* the fixture runs dropout with p = 0 so it is deterministic */
    fed_model *m;
    CHECK_OK(fed_model_create(&m, model_name, &o));
    printf("%s (%zu parameters)\n", model_name, fed_model_num_params(m));
    /* weights and buffers, by state_dict name */
    for (int i = 0; i < fed_model_num_tensors(m); i++) {
        const fed_tensor_info *ti = fed_model_tensor(m, i);
        char key[160];
        snprintf(key, sizeof key, "model.%s", ti->name);
        const fed_st_tensor *t = need(f, key);
        CHECK_EQ_INT(t->numel, ti->numel);
        float *dst = (ti->is_buffer ? fed_model_buffers(m) : fed_model_params(m)) + ti->offset;
        if (t->dtype == FED_DTYPE_I64) {
            for (size_t j = 0; j < t->numel; j++) dst[j] = (float)((const int64_t *)t->data)[j];
        } else {
            memcpy(dst, t->data, t->numel * sizeof(float));
        }
    }
    const fed_st_tensor *x = need(f, "input"), *lab = need(f, "labels");
    int n = (int)x->shape[0];
    int32_t y[64];
    for (int i = 0; i < n; i++) y[i] = (int32_t)((const int64_t *)lab->data)[i];

    fed_model_set_training(m, 1);
    const float *logits;
    CHECK_OK(fed_model_forward(m, x->data, n, &logits));
    compare("logits (train mode)", logits, need(f, "logits")->data, (size_t)n * 10);
    float loss;
    CHECK_OK(fed_model_loss_grad(m, x->data, y, n, &loss, NULL));
    compare("loss", &loss, need(f, "loss")->data, 1);
    double gmax = 0;
    for (int i = 0; i < fed_model_num_tensors(m); i++) {
        const fed_tensor_info *ti = fed_model_tensor(m, i);
        if (ti->is_buffer) continue;
        char key[160];
        snprintf(key, sizeof key, "grad.%s", ti->name);
        const float *g = need(f, key)->data;
        for (size_t j = 0; j < ti->numel; j++) gmax = fabs(g[j]) > gmax ? fabs(g[j]) : gmax;
    }
    for (int i = 0; i < fed_model_num_tensors(m); i++) {
        const fed_tensor_info *ti = fed_model_tensor(m, i);
        if (ti->is_buffer) continue;
        char key[160];
        snprintf(key, sizeof key, "grad.%s", ti->name);
        compare_floor(key, fed_model_grads(m) + ti->offset, need(f, key)->data, ti->numel, 0.01 * gmax);
    }
    if (fed_st_find(f, "logits_eval")) {
        /* Our loss_grad ran a second training forward; PyTorch's running stats
         * saw one. Reload the buffers and run exactly one training forward. */
        for (int i = 0; i < fed_model_num_tensors(m); i++) {
            const fed_tensor_info *ti = fed_model_tensor(m, i);
            if (!ti->is_buffer) continue;
            char key[160];
            snprintf(key, sizeof key, "model.%s", ti->name);
            const fed_st_tensor *t = need(f, key);
            float *dst = fed_model_buffers(m) + ti->offset;
            for (size_t j = 0; j < t->numel; j++)
                dst[j] = t->dtype == FED_DTYPE_I64 ? (float)((const int64_t *)t->data)[j] : ((const float *)t->data)[j];
        }
        CHECK_OK(fed_model_forward(m, x->data, n, &logits));
        for (int i = 0; i < fed_model_num_tensors(m); i++) {
            const fed_tensor_info *ti = fed_model_tensor(m, i);
            if (!ti->is_buffer) continue;
            char key[160];
            snprintf(key, sizeof key, "after.%s", ti->name);
            const fed_st_tensor *t = need(f, key);
            if (t->dtype == FED_DTYPE_I64) {
                CHECK_EQ_INT((long long)fed_model_buffers(m)[ti->offset], ((const int64_t *)t->data)[0]);
            } else {
                compare(key, fed_model_buffers(m) + ti->offset, t->data, ti->numel);
            }
        }
        fed_model_set_training(m, 0);
        CHECK_OK(fed_model_forward(m, x->data, n, &logits));
        compare("logits (eval mode)", logits, need(f, "logits_eval")->data, (size_t)n * 10);
    }
    fed_model_free(m);
    fed_st_close(f);
}

int main(void) {
    parity("cnn", "cnn_parity.safetensors");
    parity("cnn-bn", "cnn_bn_parity.safetensors");
    TEST_PASS("test_torch_parity");
}
