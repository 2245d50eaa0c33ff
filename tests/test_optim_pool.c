/* An optimizer step split across threads is bit-identical to the single pass,
 * for every kind, over several steps (momentum and moments included). */
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "federate/federate.h"

int main(void) {
    const size_t n = 100003;   /* not a multiple of the 16-float split */
    float *p1 = malloc(n * sizeof(float)), *p2 = malloc(n * sizeof(float)), *g = malloc(n * sizeof(float));
    fed_pool *pool;
    CHECK_OK(fed_pool_new(&pool, 3));
    for (int kind = 0; kind < 3; kind++) {
        fed_optim_cfg c;
        fed_optim_cfg_default(&c, kind);
        if (kind == FED_OPTIM_SGD) c.momentum = 0.9f;
        c.weight_decay = 1e-3f;
        fed_optim *a, *b;
        CHECK_OK(fed_optim_new(&a, &c, n));
        CHECK_OK(fed_optim_new(&b, &c, n));
        fed_rng r;
        fed_rng_init(&r, 1, 0, 0, FED_RNG_USER);
        fed_rng_fill_normal(&r, p1, n, 0, 1);
        memcpy(p2, p1, n * sizeof(float));
        for (int step = 0; step < 4; step++) {
            fed_rng_fill_normal(&r, g, n, 0, 1);
            CHECK_OK(fed_optim_step(a, p1, g, 0.01f));
            CHECK_OK(fed_optim_step_pool(b, p2, g, 0.01f, pool));
            CHECK(memcmp(p1, p2, n * sizeof(float)) == 0);
        }
        CHECK(fed_optim_step_pool(b, p2, g, -1.0f, pool) != 0);
        fed_optim_free(a);
        fed_optim_free(b);
    }
    fed_pool_free(pool);
    free(p1); free(p2); free(g);
    TEST_PASS("test_optim_pool");
}
