/* fed_model_sgd_step (the linear layers step inside backward) against
 * fed_model_loss_grad + a plain SGD fed_optim_step: after five steps the same losses
 * and parameters to float rounding, tensor by tensor; with the batch split over two
 * threads too; a bad learning rate is refused; momentum is not a plain step. */
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

static void compare(const char *model, int threads) {
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
    enum { N = 8 };
    float *x = malloc((size_t)N * 784 * sizeof(float));
    int32_t y[N];
    fed_rng r;
    fed_rng_init(&r, 9, 0, 0, FED_RNG_USER);
    fed_optim_cfg oc;
    fed_optim_cfg_default(&oc, FED_OPTIM_SGD);
    fed_optim *opt;
    CHECK_OK(fed_optim_new(&opt, &oc, np));
    CHECK(fed_optim_is_plain_sgd(opt));
    double worst_loss = 0;
    for (int step = 0; step < 5; step++) {
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
    printf("%s, %d thread(s): loss differs by %.2g, parameters by %.2g (relative), %d tensors not bit-equal\n", model,
           threads, worst_loss, worst, moved);
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

int main(void) {
    compare("cnn", 1);
    compare("cnn", 2);
    compare("mlp", 1);
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
