/* FedAdagrad (Reddi et al. 2021, Algorithm 2): v += Delta^2 from v = tau^2, with
 * the paper's beta1 momentum on m; pinned over two rounds on hand-computed
 * vectors (Pythagorean triples keep sqrt(v) exact). beta2 is unused, so it is
 * not validated. */
#include <string.h>
#include "check.h"
#include "federate/error.h"
#include "federate/strategy.h"

int main(void) {
    fed_strategy_params p;
    fed_strategy_params_default(&p);
    p.server_lr = 1;
    p.beta1 = 0.5;
    p.beta2 = 5; /* nonsense, but FedAdagrad has no beta2 */
    p.tau = 3;   /* v starts at 9 */
    fed_strategy *s;
    CHECK_OK(fed_strategy_create(&s, "fedadagrad", &p, 3));

    /* Round 1: Delta = ((8 + 0)/2, (1 - 1)/2, (-8 + 0)/2) = (4, 0, -4)
     *   v = 9 + (16, 0, 16) = (25, 9, 25); sqrt(v) = (5, 3, 5)
     *   m = 0.5 (4, 0, -4) = (2, 0, -2)
     *   x = 0 + (2/(5+3), 0, -2/(5+3)) = (0.25, 0, -0.25) */
    float g[3] = {0, 0, 0};
    float a[3] = {8, 1, -8}, b[3] = {0, -1, 0};
    fed_client_res r1[2] = {{.client = 0, .delta = a, .num_examples = 1},
                            {.client = 1, .delta = b, .num_examples = 1}};
    CHECK_OK(s->aggregate_fit(s, 1, r1, 2, g));
    CHECK_NEAR(g[0], 0.25, 1e-6);
    CHECK_NEAR(g[1], 0, 1e-6);
    CHECK_NEAR(g[2], -0.25, 1e-6);

    /* Round 2: weights 1/4, 3/4: Delta = 1/4 (0, 4, 0) + 3/4 (16, 4, 0) = (12, 4, 0)
     *   v = (25 + 144, 9 + 16, 25 + 0) = (169, 25, 25); sqrt(v) = (13, 5, 5)
     *   m = 0.5 (2, 0, -2) + 0.5 (12, 4, 0) = (7, 2, -1)
     *   x += (7/16, 2/8, -1/8) = (0.4375, 0.25, -0.125)
     *   x = (0.6875, 0.25, -0.375) */
    float c[3] = {0, 4, 0}, d[3] = {16, 4, 0};
    fed_client_res r2[2] = {{.client = 0, .delta = c, .num_examples = 1},
                            {.client = 1, .delta = d, .num_examples = 3}};
    CHECK_OK(s->aggregate_fit(s, 2, r2, 2, g));
    CHECK_NEAR(g[0], 0.6875, 1e-6);
    CHECK_NEAR(g[1], 0.25, 1e-6);
    CHECK_NEAR(g[2], -0.375, 1e-6);
    float *vecs[2];
    size_t lens[2];
    CHECK_EQ_INT(s->save_state(s, vecs, lens, 2), 2);
    CHECK_NEAR(vecs[0][0], 7, 1e-6);
    CHECK_NEAR(vecs[1][0], 169, 1e-4);

    fed_client_res z[1] = {{.client = 0, .delta = c, .num_examples = 0}};
    CHECK_EQ_INT(s->aggregate_fit(s, 3, z, 1, g), FED_EINVAL);
    CHECK_NEAR(g[0], 0.6875, 1e-6);
    fed_strategy_free(s);

    p.beta1 = 1.5;
    CHECK_EQ_INT(fed_strategy_create(&s, "fedadagrad", &p, 3), FED_EINVAL);
    CHECK(strstr(fed_last_error(), "beta1") != NULL);
    p.beta1 = 0.9;
    p.tau = NAN;
    CHECK_EQ_INT(fed_strategy_create(&s, "fedadagrad", &p, 3), FED_EINVAL);
    CHECK(strstr(fed_last_error(), "tau") != NULL);
    p.tau = 1e-3;
    p.server_lr = INFINITY;
    CHECK_EQ_INT(fed_strategy_create(&s, "fedadagrad", &p, 3), FED_EINVAL);
    CHECK(strstr(fed_last_error(), "server_lr") != NULL);
    TEST_PASS("fedadagrad");
}
