/* fed_model_sgd_step (the linear layers step inside backward) against
 * fed_model_loss_grad + a plain SGD fed_optim_step: after a few steps the same losses
 * and parameters to float rounding, tensor by tensor; with the batch split over two
 * threads too, at batch 8 and at the baseline's batch 10 (its own kernel); the fused
 * linear step's parameters bit-identical whatever the thread count; a bad learning rate is
 * refused; momentum is not a plain step. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "federate/error.h"
#include "federate/model.h"
#include "federate/optim.h"
#include "federate/pool.h"
#include "federate/rng.h"

/* steps: few enough that no ReLU or max-pool choice flips between the two (a flip
 * makes a difference of 1e-3, from the fourth step at batch 10 on this data) */
static void compare(const char *model, int threads, int N, int steps) {
    fed_model_opts mo;
    fed_model_opts_default(&mo);
    fed_model *a, *b;
    CHECK_OK(fed_model_create(&a, model, &mo));
    fed_model_init_params(a, 4);
    CHECK_OK(fed_model_clone(&b, a));
    fed_pool *pool = NULL;
    if (threads > 1) {
        CHECK_OK(fed_pool_new(&pool, threads));
        fed_model_set_pool(a, pool);
        fed_model_set_pool(b, pool);
    }
    size_t np = fed_model_num_params(a);
    float *x = malloc((size_t)N * 784 * sizeof(float));
    int32_t y[16];
    fed_rng r;
    fed_rng_init(&r, 9, 0, 0, FED_RNG_USER);
    fed_optim_cfg oc;
    fed_optim_cfg_default(&oc, FED_OPTIM_SGD);
    fed_optim *opt;
    CHECK_OK(fed_optim_new(&opt, &oc, np));
    CHECK(fed_optim_is_plain_sgd(opt));
    double worst_loss = 0;
    for (int step = 0; step < steps; step++) {
        for (size_t i = 0; i < (size_t)N * 784; i++) x[i] = (float)fed_rng_uniform(&r);
        for (int i = 0; i < N; i++) y[i] = (int32_t)fed_rng_below(&r, 10);
        float la, lb;
        CHECK_OK(fed_model_loss_grad(a, x, y, N, &la, NULL));
        CHECK_OK(fed_optim_step_pool(opt, fed_model_params(a), fed_model_grads(a), 0.1f, pool));
        CHECK_OK(fed_model_sgd_step(b, x, y, N, 0.1f, &lb, NULL));
        worst_loss = fmax(worst_loss, fabs((double)la - lb));
    }
    const float *pa = fed_model_params(a), *pb = fed_model_params(b);
    double worst = 0;
    int moved = 0;
    for (int t = 0; t < fed_model_num_tensors(a); t++) {
        const fed_tensor_info *ti = fed_model_tensor(a, t);
        if (ti->is_buffer) continue;
        double d = 0, s = 0;
        for (size_t j = 0; j < ti->numel; j++) {
            d = fmax(d, fabs((double)pa[ti->offset + j] - pb[ti->offset + j]));
            s = fmax(s, fabs((double)pa[ti->offset + j]));
        }
        worst = fmax(worst, d / s);
        moved += d > 0;
    }
    printf("%s, batch %d, %d thread(s): loss differs by %.2g, parameters by %.2g (relative), %d tensors not bit-equal\n", model,
           N, threads, worst_loss, worst, moved);
    CHECK(worst_loss < 1e-5);
    CHECK(worst < 1e-5);
    CHECK_EQ_INT(fed_model_sgd_step(b, x, y, N, NAN, NULL, NULL), FED_EINVAL);
    CHECK_EQ_INT(fed_model_sgd_step(b, x, y, N, -1.0f, NULL, NULL), FED_EINVAL);
    fed_optim_free(opt);
    fed_model_free(a);
    fed_model_free(b);
    fed_pool_free(pool);
    free(x);
}

/* five fused steps with 1, 2 and 3 threads: the linear layers' parameters are
 * bit-identical (threads split their columns in whole vectors). Only the mlp: a
 * convolution's threads split the batch and add up partial gradients. */
static void same_bits_any_threads(const char *model, int N) {
    fed_model_opts mo;
    fed_model_opts_default(&mo);
    float *x = malloc((size_t)N * 784 * sizeof(float)), *first = NULL;
    int32_t y[16];
    size_t np = 0;
    for (int threads = 1; threads <= 3; threads++) {
        fed_model *m;
        CHECK_OK(fed_model_create(&m, model, &mo));
        fed_model_init_params(m, 4);
        fed_pool *pool = NULL;
        if (threads > 1) {
            CHECK_OK(fed_pool_new(&pool, threads));
            fed_model_set_pool(m, pool);
        }
        fed_rng r;
        fed_rng_init(&r, 11, 0, 0, FED_RNG_USER);
        for (int step = 0; step < 5; step++) {
            for (size_t i = 0; i < (size_t)N * 784; i++) x[i] = (float)fed_rng_uniform(&r);
            for (int i = 0; i < N; i++) y[i] = (int32_t)fed_rng_below(&r, 10);
            CHECK_OK(fed_model_sgd_step(m, x, y, N, 0.1f, NULL, NULL));
        }
        np = fed_model_num_params(m);
        if (!first) {
            first = malloc(np * sizeof(float));
            memcpy(first, fed_model_params(m), np * sizeof(float));
        } else {
            CHECK(memcmp(first, fed_model_params(m), np * sizeof(float)) == 0);
        }
        fed_model_free(m);
        fed_pool_free(pool);
    }
    printf("%s, batch %d: fused steps bit-identical with 1, 2 and 3 threads\n", model, N);
    free(first);
    free(x);
}

int main(void) {
    compare("cnn", 1, 8, 5);
    compare("cnn", 2, 8, 5);
    compare("mlp", 1, 8, 5);
    compare("cnn", 1, 10, 3);
    compare("mlp", 2, 10, 3);
    same_bits_any_threads("mlp", 10);
    same_bits_any_threads("mlp", 7);
    /* momentum or weight decay: not a plain step, so fed_train keeps the optimizer */
    fed_optim_cfg oc;
    fed_optim_cfg_default(&oc, FED_OPTIM_SGD);
    oc.momentum = 0.9f;
    fed_optim *o;
    CHECK_OK(fed_optim_new(&o, &oc, 10));
    CHECK(!fed_optim_is_plain_sgd(o));
    fed_optim_free(o);
    TEST_PASS("nn_sgd_step");
}
