/* q-FedAvg (Li et al. 2020, Algorithm 2): the step -sum Delta_k / sum h_k pinned on
 * hand-computed vectors for q = 1 with a fixed L, q = 2 with L = 1/lr, and q = 0
 * (the uniform mean); configure_fit asks for F_k; bad F_k and bad params fail. */
#include <string.h>
#include "check.h"
#include "federate/error.h"
#include "federate/strategy.h"

static fed_client_res res(int client, const float *delta, double loss_before, float lr) {
    fed_client_res r;
    memset(&r, 0, sizeof r);
    r.client = client;
    r.delta = delta;
    r.num_examples = 10;
    r.steps = 1;
    r.lr = lr;
    r.loss_before = loss_before;
    return r;
}

int main(void) {
    fed_strategy_params p;
    fed_strategy_params_default(&p);
    fed_strategy *s;

    /* q = 1, L = 1.
     *   A: F = 2, delta = (1, 0, 0):  dw = -(1, 0, 0), ||dw||^2 = 1
     *      Delta_A = F^1 dw = (-2, 0, 0);  h_A = 1 * F^0 * 1 + L F^1 = 1 + 2 = 3
     *   B: F = 1, delta = (0, 2, 0):  dw = -(0, 2, 0), ||dw||^2 = 4
     *      Delta_B = (0, -2, 0);          h_B = 1 * 1 * 4 + 1 * 1 = 5
     *   w -= (-2, -2, 0) / 8  ->  (1, 1, 1) + (0.25, 0.25, 0) = (1.25, 1.25, 1) */
    p.q = 1;
    p.lipschitz = 1;
    CHECK_OK(fed_strategy_create(&s, "qfedavg", &p, 3));
    fed_client_ins def = {.local_epochs = 1, .batch_size = 4, .lr = 0.5f};
    fed_client_ins ins[2];
    int ids[2] = {0, 1};
    CHECK_OK(s->configure_fit(s, 1, ids, 2, &def, ins));
    CHECK_EQ_INT(ins[0].want_loss_before, 1);
    CHECK_EQ_INT(ins[1].want_loss_before, 1);
    CHECK_NEAR(ins[1].lr, 0.5f, 0);
    float g[3] = {1, 1, 1};
    float a[3] = {1, 0, 0}, b[3] = {0, 2, 0};
    fed_client_res r1[2] = {res(0, a, 2, 0.1f), res(1, b, 1, 0.1f)};
    CHECK_OK(s->aggregate_fit(s, 1, r1, 2, g));
    CHECK_NEAR(g[0], 1.25, 1e-6);
    CHECK_NEAR(g[1], 1.25, 1e-6);
    CHECK_NEAR(g[2], 1, 1e-6);

    /* F_k <= 0 (or NaN) with q > 0 is an error and leaves the model alone. */
    fed_client_res r0[2] = {res(0, a, 0, 0.1f), res(1, b, 1, 0.1f)};
    CHECK_EQ_INT(s->aggregate_fit(s, 2, r0, 2, g), FED_EINVAL);
    CHECK(strstr(fed_last_error(), "loss_before") != NULL);
    r0[0].loss_before = NAN;
    CHECK_EQ_INT(s->aggregate_fit(s, 2, r0, 2, g), FED_EINVAL);
    r0[0].loss_before = -1;
    CHECK_EQ_INT(s->aggregate_fit(s, 2, r0, 2, g), FED_EINVAL);
    CHECK_NEAR(g[0], 1.25, 0);
    fed_strategy_free(s);

    /* q = 2, lipschitz = 0 so L = 1/lr = 1/0.5 = 2.
     *   A: F = 1, delta = (0.5, 0, 0): dw = -2 (0.5, 0, 0) = (-1, 0, 0), ||dw||^2 = 1
     *      Delta_A = 1^2 (-1, 0, 0) = (-1, 0, 0); h_A = 2 * 1^1 * 1 + 2 * 1^2 = 4
     *   B: F = 2, delta = (0, 0, 1):   dw = (0, 0, -2), ||dw||^2 = 4
     *      Delta_B = 2^2 (0, 0, -2) = (0, 0, -8); h_B = 2 * 2^1 * 4 + 2 * 2^2 = 16 + 8 = 24
     *   w -= (-1, 0, -8) / 28  ->  (0, 0, 0) + (1/28, 0, 8/28) = (0.0357142857, 0, 0.2857142857) */
    p.q = 2;
    p.lipschitz = 0;
    CHECK_OK(fed_strategy_create(&s, "qfedavg", &p, 3));
    float h[3] = {0, 0, 0};
    float c[3] = {0.5f, 0, 0}, d[3] = {0, 0, 1};
    fed_client_res r2[2] = {res(0, c, 1, 0.5f), res(1, d, 2, 0.5f)};
    CHECK_OK(s->aggregate_fit(s, 1, r2, 2, h));
    CHECK_NEAR(h[0], 0.0357142857, 1e-7);
    CHECK_NEAR(h[1], 0, 1e-7);
    CHECK_NEAR(h[2], 0.2857142857, 1e-7);
    /* L = 1/lr needs a positive lr. */
    r2[1].lr = 0;
    CHECK_EQ_INT(s->aggregate_fit(s, 2, r2, 2, h), FED_EINVAL);
    CHECK(strstr(fed_last_error(), "lr") != NULL);
    fed_strategy_free(s);

    /* q = 0: F^0 = 1, h_k = L, so the step is the uniform mean of the deltas
     * whatever F_k (even 0) and the example counts:
     *   ((2 + 0)/2, (0 + 4)/2, 0) = (1, 2, 0) */
    p.q = 0;
    p.lipschitz = 3;
    CHECK_OK(fed_strategy_create(&s, "qfedavg", &p, 3));
    float z[3] = {0, 0, 0};
    float e[3] = {2, 0, 0}, f[3] = {0, 4, 0};
    fed_client_res r3[2] = {res(0, e, 0, 0.1f), res(1, f, 5, 0.1f)};
    r3[1].num_examples = 1000;
    CHECK_OK(s->aggregate_fit(s, 1, r3, 2, z));
    CHECK_NEAR(z[0], 1, 1e-6);
    CHECK_NEAR(z[1], 2, 1e-6);
    CHECK_NEAR(z[2], 0, 1e-6);
    fed_strategy_free(s);

    p.q = -1;
    CHECK_EQ_INT(fed_strategy_create(&s, "qfedavg", &p, 3), FED_EINVAL);
    CHECK(strstr(fed_last_error(), "q must") != NULL);
    p.q = 1;
    p.lipschitz = -2;
    CHECK_EQ_INT(fed_strategy_create(&s, "qfedavg", &p, 3), FED_EINVAL);
    CHECK(strstr(fed_last_error(), "lipschitz") != NULL);
    p.lipschitz = NAN;
    CHECK_EQ_INT(fed_strategy_create(&s, "qfedavg", &p, 3), FED_EINVAL);
    TEST_PASS("qfedavg");
}
