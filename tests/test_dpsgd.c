/* DP-SGD's clipped gradient sum against the definition: a loop over batches of
 * one, each example's gradient clipped on its own and summed. Checked on an
 * mlp and on a small CNN with strides and padding, with a clip that cuts some
 * examples and not others, single- and multi-threaded. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "federate/federate.h"
#include "nn/nn_internal.h"

static fed_model *small_cnn(void) {
    fed_model *m = nn_model_begin("tiny", 2, 9, 9, 5);
    int s = nn_add_conv(m, "c1", 0, 4, 3, 1, 1, 1);
    s = nn_add_act(m, L_RELU, s);
    s = nn_add_conv(m, "c2", s, 6, 3, 2, 0, 1);
    s = nn_add_act(m, L_TANH, s);
    s = nn_add_pool(m, L_MAXPOOL, s, 2, 2);
    s = nn_add_flatten(m, s);
    s = nn_add_linear(m, "fc", s, 5, 1);
    CHECK(s > 0);
    CHECK_OK(nn_model_end(m));
    return m;
}

static void check_model(fed_model *m, int n, int threads) {
    int c, h, w;
    fed_model_input_shape(m, &c, &h, &w);
    size_t ex = (size_t)c * h * w, np = fed_model_num_params(m);
    int k = fed_model_num_classes(m);
    float *x = malloc((size_t)n * ex * sizeof(float));
    int32_t *y = malloc((size_t)n * sizeof(int32_t));
    fed_rng r;
    fed_rng_init(&r, 7, 0, 0, FED_RNG_USER);
    fed_rng_fill_normal(&r, x, (size_t)n * ex, 0, 1);
    for (int i = 0; i < n; i++) y[i] = (int32_t)fed_rng_below(&r, (uint32_t)k);
    fed_model_set_training(m, 1);

    /* the definition: one example at a time */
    double *want = calloc(np, sizeof(double));
    float *norm1 = malloc((size_t)n * sizeof(float));
    double normsum = 0;
    for (int i = 0; i < n; i++) {
        float l;
        CHECK_OK(fed_model_loss_grad(m, x + (size_t)i * ex, y + i, 1, &l, NULL));
        norm1[i] = (float)fed_vec_norm2(fed_model_grads(m), np);
        normsum += norm1[i];
    }
    float clip = (float)(normsum / n);  /* about half the examples get clipped */
    int clipped = 0;
    for (int i = 0; i < n; i++) {
        float l;
        CHECK_OK(fed_model_loss_grad(m, x + (size_t)i * ex, y + i, 1, &l, NULL));
        double f = clip / (norm1[i] + 1e-6);
        if (f < 1) clipped++;
        else f = 1;
        const float *g = fed_model_grads(m);
        for (size_t j = 0; j < np; j++) want[j] += f * g[j];
    }
    CHECK(clipped > 0 && clipped < n);

    fed_pool *pool = NULL;
    CHECK_OK(fed_pool_new(&pool, threads));
    fed_model_set_pool(m, threads > 1 ? pool : NULL);
    float loss;
    float *norms = malloc((size_t)n * sizeof(float));
    CHECK_OK(fed_model_clipped_grad_sum(m, x, y, n, clip, &loss, NULL, norms));
    for (int i = 0; i < n; i++) CHECK_CLOSE(norms[i], norm1[i], 1e-4, 1e-6);
    const float *g = fed_model_grads(m);
    double maxerr = 0, scale = 0;
    for (size_t j = 0; j < np; j++) {
        double e = fabs(g[j] - want[j]);
        if (e > maxerr) maxerr = e;
        if (fabs(want[j]) > scale) scale = fabs(want[j]);
    }
    CHECK(maxerr <= 1e-4 * scale + 1e-6);
    /* the sum of n clipped gradients has norm at most n * clip */
    CHECK(fed_vec_norm2(g, np) <= n * clip * (1 + 1e-5));
    /* an ordinary backward afterwards is unaffected by the DP passes */
    float l1;
    CHECK_OK(fed_model_loss_grad(m, x, y, 1, &l1, NULL));
    float *g1 = malloc(np * sizeof(float));
    memcpy(g1, fed_model_grads(m), np * sizeof(float));
    CHECK_OK(fed_model_loss_grad(m, x, y, 1, &l1, NULL));
    CHECK(memcmp(g1, fed_model_grads(m), np * sizeof(float)) == 0);
    fed_model_set_pool(m, NULL);
    fed_pool_free(pool);
    free(g1); free(norms); free(norm1); free(want); free(x); free(y);
}

int main(void) {
    fed_model *mlp = NULL;
    fed_model_opts o;
    fed_model_opts_default(&o);
    o.in_c = 1, o.in_h = 6, o.in_w = 6, o.num_classes = 4;
    o.hidden[0] = 16, o.hidden[1] = 8, o.n_hidden = 2;
    CHECK_OK(fed_model_create(&mlp, "mlp", &o));
    check_model(mlp, 12, 1);
    check_model(mlp, 12, 3);
    fed_model_free(mlp);

    fed_model *cnn = small_cnn();
    check_model(cnn, 10, 1);
    check_model(cnn, 10, 2);
    fed_model_free(cnn);

    /* BatchNorm mixes examples: refused with a message that says so */
    fed_model *bn = NULL;
    CHECK_OK(fed_model_create(&bn, "cnn-bn", NULL));
    float x[784 * 2] = {0};
    int32_t y[2] = {1, 2};
    CHECK(fed_model_clipped_grad_sum(bn, x, y, 2, 1.0f, NULL, NULL, NULL) == FED_EUNSUPPORTED);
    CHECK(strstr(fed_last_error(), "normalization") != NULL);
    fed_model_free(bn);
    CHECK(fed_model_clipped_grad_sum(NULL, x, y, 2, 1.0f, NULL, NULL, NULL) == FED_EINVAL);
    TEST_PASS("dp_sgd");
}
