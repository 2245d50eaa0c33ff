/* The zoo's models have the PyTorch state_dict names, shapes and parameter
 * counts they promise; bad options are errors, not crashes. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "check.h"
#include "federate/federate.h"

static void expect_tensors(fed_model *m, const char *const *names, const int64_t shapes[][4], const int *ndims, int n) {
    int seen = 0;
    for (int i = 0; i < fed_model_num_tensors(m); i++) {
        const fed_tensor_info *t = fed_model_tensor(m, i);
        if (t->is_buffer) continue;
        CHECK(seen < n);
        if (strcmp(t->name, names[seen]) != 0) {
            fprintf(stderr, "tensor %d is %s, expected %s\n", seen, t->name, names[seen]);
            CHECK(0);
        }
        CHECK_EQ_INT(t->ndim, ndims[seen]);
        for (int d = 0; d < t->ndim; d++) CHECK_EQ_INT(t->shape[d], shapes[seen][d]);
        seen++;
    }
    CHECK_EQ_INT(seen, n);
}

int main(void) {
    fed_model *m;
    /* McMahan et al.'s CNN: exactly 1,663,370 parameters in torch's order */
    CHECK_OK(fed_model_create(&m, "cnn", NULL));
    CHECK_EQ_INT(fed_model_num_params(m), 1663370);
    CHECK_EQ_INT(fed_model_num_buffers(m), 0);
    const char *cnn_names[] = {"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias",
                               "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"};
    const int64_t cnn_shapes[][4] = {{32, 1, 5, 5}, {32}, {64, 32, 5, 5}, {64}, {512, 3136}, {512}, {10, 512}, {10}};
    const int cnn_ndims[] = {4, 1, 4, 1, 2, 1, 2, 1};
    expect_tensors(m, cnn_names, cnn_shapes, cnn_ndims, 8);
    /* tensors tile the flat buffer in order */
    size_t off = 0;
    for (int i = 0; i < fed_model_num_tensors(m); i++) {
        CHECK_EQ_INT(fed_model_tensor(m, i)->offset, off);
        off += fed_model_tensor(m, i)->numel;
    }
    /* default init is PyTorch's: |w| <= 1/sqrt(fan_in) */
    const fed_tensor_info *fc1 = fed_model_find_tensor(m, "fc1.weight");
    CHECK(fc1 != NULL);
    float mx = 0;
    for (size_t i = 0; i < fc1->numel; i++) {
        float v = fed_model_params(m)[fc1->offset + i];
        if (v > mx) mx = v;
        if (-v > mx) mx = -v;
    }
    CHECK(mx <= 1.0f / sqrtf(3136.0f) && mx > 0.9f / sqrtf(3136.0f));
    fed_model_free(m);

    /* cnn-bn: batch norm buffers as torch names them */
    CHECK_OK(fed_model_create(&m, "cnn-bn", NULL));
    const char *bufs[] = {"bn1.running_mean", "bn1.running_var", "bn1.num_batches_tracked"};
    for (int i = 0; i < 3; i++) CHECK(fed_model_find_tensor(m, bufs[i]) && fed_model_find_tensor(m, bufs[i])->is_buffer);
    CHECK_EQ_INT(fed_model_find_tensor(m, "bn1.num_batches_tracked")->dtype, FED_DTYPE_I64);
    CHECK_EQ_INT(fed_model_num_params(m), 1663370 + 2 * 32 + 2 * 64);
    fed_model_free(m);

    /* mlp with configured hidden sizes: 784-200-200-10 */
    fed_model_opts o;
    fed_model_opts_default(&o);
    o.n_hidden = 2;
    o.hidden[0] = 200;
    o.hidden[1] = 200;
    CHECK_OK(fed_model_create(&m, "mlp", &o));
    CHECK_EQ_INT(fed_model_num_params(m), 784 * 200 + 200 + 200 * 200 + 200 + 200 * 10 + 10);
    CHECK(fed_model_find_tensor(m, "fc3.weight") != NULL);
    fed_model_free(m);

    /* resnet-20, both norms; 3x32x32 input */
    for (int g = 0; g < 2; g++) {
        fed_model_opts_default(&o);
        o.norm = g ? FED_NORM_GROUP : FED_NORM_BATCH;
        CHECK_OK(fed_model_create(&m, "resnet", &o));
        int c, h, w;
        fed_model_input_shape(m, &c, &h, &w);
        CHECK(c == 3 && h == 32 && w == 32);
        const fed_tensor_info *t = fed_model_find_tensor(m, "layer3.2.conv2.weight");
        CHECK(t && t->shape[0] == 64 && t->shape[1] == 64 && t->shape[2] == 3);
        CHECK(fed_model_find_tensor(m, "layer2.0.downsample.0.weight") != NULL);
        CHECK(fed_model_find_tensor(m, g ? "layer1.0.gn1.weight" : "layer1.0.bn1.running_var") != NULL);
        CHECK(fed_model_find_tensor(m, "fc.weight")->shape[1] == 64);
        /* ResNet-20 with projection shortcuts: 0.27M parameters */
        CHECK(fed_model_num_params(m) > 270000 && fed_model_num_params(m) < 280000);
        fed_model_free(m);
    }

    /* errors */
    CHECK_EQ_INT(fed_model_create(&m, "vgg", NULL), FED_ENOTFOUND);
    CHECK(strstr(fed_last_error(), "vgg") != NULL);
    fed_model_opts_default(&o);
    o.depth = 21;
    CHECK_EQ_INT(fed_model_create(&m, "resnet", &o), FED_EINVAL);
    fed_model_opts_default(&o);
    o.in_h = o.in_w = 2;   /* too small for two 2x2 poolings */
    CHECK(fed_model_create(&m, "cnn", &o) != 0);
    CHECK_OK(fed_model_create(&m, "cnn", NULL));
    const float *lg;
    CHECK(fed_model_forward(m, NULL, 1, &lg) != 0);
    CHECK(fed_model_backward(m, NULL) != 0);
    fed_model_free(m);
    fed_model_free(NULL);

    /* cnn-dp: Papernot et al.'s tanh CNN, 28 -> 14 -> 13 -> 5 -> 4, 26,010 parameters */
    CHECK_OK(fed_model_create(&m, "cnn-dp", NULL));
    CHECK_EQ_INT(fed_model_num_params(m), 16 * 64 + 16 + 32 * 16 * 16 + 32 + 512 * 32 + 32 + 32 * 10 + 10);
    const fed_tensor_info *t = fed_model_find_tensor(m, "fc1.weight");
    CHECK(t && t->shape[0] == 32 && t->shape[1] == 512);
    t = fed_model_find_tensor(m, "conv1.weight");
    CHECK(t && t->shape[0] == 16 && t->shape[1] == 1 && t->shape[2] == 8 && t->shape[3] == 8);
    float x[2 * 784] = {0};
    int32_t y[2] = {3, 7};
    float loss;
    CHECK_OK(fed_model_clipped_grad_sum(m, x, y, 2, 1.0f, &loss, NULL, NULL));
    CHECK(loss > 0);
    fed_model_free(m);
    TEST_PASS("test_zoo");
}
