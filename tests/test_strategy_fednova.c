/* FedNova (Wang et al. 2020): normalised averaging x += eta tau_eff sum p_i d_i / tau_i,
 * pinned on hand-computed vectors; clients with 0 steps are dropped and p renormalised;
 * equal step counts reduce to FedAvg; bad inputs fail. */
#include <string.h>
#include "check.h"
#include "federate/error.h"
#include "federate/strategy.h"

static fed_client_res res(int client, long n_ex, long steps, const float *delta) {
    fed_client_res r;
    memset(&r, 0, sizeof r);
    r.client = client;
    r.delta = delta;
    r.num_examples = n_ex;
    r.steps = steps;
    r.lr = 0.1f;
    return r;
}

int main(void) {
    fed_strategy_params p;
    fed_strategy_params_default(&p);
    fed_strategy *s;
    CHECK_OK(fed_strategy_create(&s, "fednova", &p, 3));

    /* A: n = 1, tau = 2, d = (2, 4, 0); B: n = 3, tau = 4, d = (4, 0, 8);
     * C: n = 4, tau = 0 -> skipped, so p = (1/4, 3/4) over A and B.
     *   tau_eff = 1/4 * 2 + 3/4 * 4 = 3.5
     *   sum p d / tau = 1/4 (1, 2, 0) + 3/4 (1, 0, 2) = (1, 0.5, 1.5)
     *   x = 0 + 1 * 3.5 * (1, 0.5, 1.5) = (3.5, 1.75, 5.25)
     * (FedAvg would give 1/4 (2, 4, 0) + 3/4 (4, 0, 8) = (3.5, 1, 6).) */
    float g[3] = {0, 0, 0};
    float a[3] = {2, 4, 0}, b[3] = {4, 0, 8}, c[3] = {100, 100, 100};
    fed_client_res r1[3] = {res(0, 1, 2, a), res(1, 3, 4, b), res(2, 4, 0, c)};
    CHECK_OK(s->aggregate_fit(s, 1, r1, 3, g));
    CHECK_NEAR(g[0], 3.5, 1e-6);
    CHECK_NEAR(g[1], 1.75, 1e-6);
    CHECK_NEAR(g[2], 5.25, 1e-6);

    /* Equal tau_i = 3: tau_eff = 3, x += 3 * sum p d / 3 = FedAvg:
     *   1/2 (3, 0, 0) + 1/2 (0, 3, 3) = (1.5, 1.5, 1.5) -> (5, 3.25, 6.75) */
    float d[3] = {3, 0, 0}, e[3] = {0, 3, 3};
    fed_client_res r2[2] = {res(0, 5, 3, d), res(1, 5, 3, e)};
    CHECK_OK(s->aggregate_fit(s, 2, r2, 2, g));
    CHECK_NEAR(g[0], 5, 1e-6);
    CHECK_NEAR(g[1], 3.25, 1e-6);
    CHECK_NEAR(g[2], 6.75, 1e-6);

    /* Nobody took a step: nothing to apply, the model stays. */
    fed_client_res r3[2] = {res(0, 5, 0, c), res(1, 5, 0, c)};
    CHECK_OK(s->aggregate_fit(s, 3, r3, 2, g));
    CHECK_NEAR(g[0], 5, 0);

    /* Errors: negative steps; the clients that trained hold no examples. */
    fed_client_res r4[2] = {res(0, 5, -1, a), res(1, 5, 2, b)};
    CHECK_EQ_INT(s->aggregate_fit(s, 4, r4, 2, g), FED_EINVAL);
    CHECK(strstr(fed_last_error(), "steps") != NULL);
    fed_client_res r5[2] = {res(0, 0, 2, a), res(1, 7, 0, b)};
    CHECK_EQ_INT(s->aggregate_fit(s, 4, r5, 2, g), FED_EINVAL);
    CHECK(strstr(fed_last_error(), "0 examples") != NULL);
    CHECK_NEAR(g[0], 5, 0);
    fed_strategy_free(s);

    /* server_lr scales the step: eta = 0.5 on round 1's clients gives half of (3.5, 1.75, 5.25). */
    p.server_lr = 0.5;
    CHECK_OK(fed_strategy_create(&s, "fednova", &p, 3));
    float h[3] = {0, 0, 0};
    CHECK_OK(s->aggregate_fit(s, 1, r1, 3, h));
    CHECK_NEAR(h[0], 1.75, 1e-6);
    CHECK_NEAR(h[1], 0.875, 1e-6);
    CHECK_NEAR(h[2], 2.625, 1e-6);
    fed_strategy_free(s);

    p.server_lr = -1;
    CHECK_EQ_INT(fed_strategy_create(&s, "fednova", &p, 3), FED_EINVAL);
    CHECK(strstr(fed_last_error(), "server_lr") != NULL);
    TEST_PASS("fednova");
}
