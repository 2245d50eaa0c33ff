/* The same seed and thread count give bit-identical trained parameters, and a
 * different seed gives different ones. Trains on random MNIST-shaped data. */
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "federate/federate.h"

static float *train_once(const char *model, int threads, uint64_t seed, size_t *np) {
    fed_dataset d = {0};
    d.n = 64; d.c = 1; d.h = 28; d.w = 28; d.num_classes = 10;
    d.x = malloc((size_t)d.n * 784 * sizeof(float));
    d.y = malloc((size_t)d.n * sizeof(int32_t));
    fed_rng r;
    fed_rng_init(&r, 5, 0, 0, FED_RNG_USER);
    fed_rng_fill_normal(&r, d.x, (size_t)d.n * 784, 0, 1);
    for (int i = 0; i < d.n; i++) d.y[i] = i % 10;
    fed_model *m;
    CHECK_OK(fed_model_create(&m, model, NULL));
    fed_model_init_params(m, seed);
    fed_pool *pool;
    CHECK_OK(fed_pool_new(&pool, threads));
    fed_model_set_pool(m, threads > 1 ? pool : NULL);
    fed_optim_cfg oc;
    fed_optim_cfg_default(&oc, FED_OPTIM_SGD);
    oc.momentum = 0.9f;
    fed_optim *o;
    CHECK_OK(fed_optim_new(&o, &oc, fed_model_num_params(m)));
    fed_train_opts to;
    fed_train_opts_default(&to);
    to.epochs = 2;
    to.batch_size = 10;
    to.lr = 0.05f;
    to.seed = seed;
    fed_train_stats st;
    CHECK_OK(fed_train(m, o, &d, NULL, 0, &to, &st));
    CHECK_EQ_INT(st.steps, 14);
    *np = fed_model_num_params(m);
    float *p = malloc(*np * sizeof(float));
    memcpy(p, fed_model_params(m), *np * sizeof(float));
    fed_optim_free(o);
    fed_model_free(m);
    fed_pool_free(pool);
    fed_dataset_free(&d);
    return p;
}

int main(void) {
    const char *models[] = {"cnn", "cnn-bn"};
    for (int k = 0; k < 2; k++) {
        for (int t = 1; t <= 2; t++) {
            size_t n1, n2, n3;
            float *a = train_once(models[k], t, 3, &n1);
            float *b = train_once(models[k], t, 3, &n2);
            float *c = train_once(models[k], t, 4, &n3);
            CHECK(n1 == n2 && memcmp(a, b, n1 * sizeof(float)) == 0);
            CHECK(memcmp(a, c, n1 * sizeof(float)) != 0);
            free(a); free(b); free(c);
        }
    }
    TEST_PASS("test_determinism");
}
