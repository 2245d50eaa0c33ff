/* FedYogi (Reddi et al. 2021, Algorithm 2): v -= (1 - beta2) Delta^2 sign(v - Delta^2),
 * which may grow, shrink or (sign 0) keep v per coordinate; m, v persist. Pinned
 * over two rounds on hand-computed vectors covering all three signs. */
#include <string.h>
#include "check.h"
#include "federate/error.h"
#include "federate/strategy.h"

int main(void) {
    fed_strategy_params p;
    fed_strategy_params_default(&p);
    p.server_lr = 1;
    p.beta1 = 0.5;
    p.beta2 = 0.5;
    p.tau = 1; /* v starts at 1 */
    fed_strategy *s;
    CHECK_OK(fed_strategy_create(&s, "fedyogi", &p, 3));

    /* Round 1: Delta = ((4 + 4)/2, (-2 + 2)/2, (2 + 0)/2) = (4, 0, 1), Delta^2 = (16, 0, 1)
     *   sign(v - Delta^2) = sign(1 - 16, 1 - 0, 1 - 1) = (-1, +1, 0)
     *   v = (1 + 0.5*16, 1 - 0.5*0, 1 - 0) = (9, 1, 1); sqrt(v) = (3, 1, 1)
     *   m = 0.5 (4, 0, 1) = (2, 0, 0.5)
     *   x = 0 + (2/(3+1), 0/(1+1), 0.5/(1+1)) = (0.5, 0, 0.25) */
    float g[3] = {0, 0, 0};
    float a[3] = {4, -2, 2}, b[3] = {4, 2, 0};
    fed_client_res r1[2] = {{.client = 0, .delta = a, .num_examples = 1},
                            {.client = 1, .delta = b, .num_examples = 1}};
    CHECK_OK(s->aggregate_fit(s, 1, r1, 2, g));
    CHECK_NEAR(g[0], 0.5, 1e-6);
    CHECK_NEAR(g[1], 0, 1e-6);
    CHECK_NEAR(g[2], 0.25, 1e-6);

    /* Round 2: Delta = ((6 + 0)/2, (-8 + 0)/2, (1 + 0)/2) = (3, -4, 0.5), Delta^2 = (9, 16, 0.25)
     *   sign(v - Delta^2) = sign(9 - 9, 1 - 16, 1 - 0.25) = (0, -1, +1)
     *   v = (9, 1 + 0.5*16, 1 - 0.5*0.25) = (9, 9, 0.875); sqrt(v) = (3, 3, 0.9354143467)
     *   m = 0.5 (2, 0, 0.5) + 0.5 (3, -4, 0.5) = (2.5, -2, 0.5)
     *   x += (2.5/4, -2/4, 0.5/1.9354143467) = (0.625, -0.5, 0.2583426132)
     *   x = (1.125, -0.5, 0.5083426132) */
    float c[3] = {6, -8, 1}, d[3] = {0, 0, 0};
    fed_client_res r2[2] = {{.client = 0, .delta = c, .num_examples = 5},
                            {.client = 1, .delta = d, .num_examples = 5}};
    CHECK_OK(s->aggregate_fit(s, 2, r2, 2, g));
    CHECK_NEAR(g[0], 1.125, 1e-6);
    CHECK_NEAR(g[1], -0.5, 1e-6);
    CHECK_NEAR(g[2], 0.5083426132, 1e-6);
    float *vecs[2];
    size_t lens[2];
    CHECK_EQ_INT(s->save_state(s, vecs, lens, 2), 2);
    CHECK_NEAR(vecs[1][0], 9, 1e-6);
    CHECK_NEAR(vecs[1][1], 9, 1e-6);
    CHECK_NEAR(vecs[1][2], 0.875, 1e-6);

    r2[0].num_examples = r2[1].num_examples = 0;
    CHECK_EQ_INT(s->aggregate_fit(s, 3, r2, 2, g), FED_EINVAL);
    CHECK_NEAR(g[0], 1.125, 1e-6);
    fed_strategy_free(s);

    p.beta2 = 1;
    CHECK_EQ_INT(fed_strategy_create(&s, "fedyogi", &p, 3), FED_EINVAL);
    CHECK(strstr(fed_last_error(), "beta2") != NULL);
    p.beta2 = 0.99;
    p.beta1 = -0.1;
    CHECK_EQ_INT(fed_strategy_create(&s, "fedyogi", &p, 3), FED_EINVAL);
    CHECK(strstr(fed_last_error(), "beta1") != NULL);
    p.beta1 = 0.9;
    p.tau = -1;
    CHECK_EQ_INT(fed_strategy_create(&s, "fedyogi", &p, 3), FED_EINVAL);
    CHECK(strstr(fed_last_error(), "tau") != NULL);
    TEST_PASS("fedyogi");
}
