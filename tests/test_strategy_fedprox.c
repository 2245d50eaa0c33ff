/* FedProx: configure_fit hands every client the proximal weight mu, the
 * aggregation is FedAvg's (pinned on hand-computed vectors), and bad mu fails. */
#include <string.h>
#include "check.h"
#include "federate/error.h"
#include "federate/strategy.h"

int main(void) {
    fed_strategy_params p;
    fed_strategy_params_default(&p);
    p.mu = 0.25;
    fed_strategy *s;
    CHECK_OK(fed_strategy_create(&s, "fedprox", &p, 3));

    fed_client_ins def = {.local_epochs = 1, .batch_size = 8, .lr = 0.1f};
    fed_client_ins ins[3];
    int ids[3] = {0, 2, 5};
    CHECK_OK(s->configure_fit(s, 1, ids, 3, &def, ins));
    for (int i = 0; i < 3; i++) {
        CHECK_NEAR(ins[i].prox_mu, 0.25, 0);
        CHECK_EQ_INT(ins[i].local_epochs, 1);
        CHECK_EQ_INT(ins[i].batch_size, 8);
        CHECK_NEAR(ins[i].lr, 0.1f, 0);
        CHECK_EQ_INT(ins[i].scaffold, 0);
    }

    /* Aggregation as FedAvg: weights 2/8 and 6/8.
     *   avg = 1/4 (4, 0, -8) + 3/4 (0, 4, 8) = (1, 3, 4); global (0, 1, 2) -> (1, 4, 6)
     * Round 2: weights 1/2, 1/2: avg = ((2 - 2)/2, (1 + 3)/2, (0 + 0)/2) = (0, 2, 0) -> (1, 6, 6) */
    float g[3] = {0, 1, 2};
    float a[3] = {4, 0, -8}, b[3] = {0, 4, 8};
    fed_client_res r[2] = {{.client = 0, .delta = a, .num_examples = 2, .steps = 1, .lr = 0.1f},
                           {.client = 2, .delta = b, .num_examples = 6, .steps = 1, .lr = 0.1f}};
    CHECK_OK(s->aggregate_fit(s, 1, r, 2, g));
    CHECK_NEAR(g[0], 1, 1e-6);
    CHECK_NEAR(g[1], 4, 1e-6);
    CHECK_NEAR(g[2], 6, 1e-6);
    float c[3] = {2, 1, 0}, d[3] = {-2, 3, 0};
    fed_client_res r2[2] = {{.client = 1, .delta = c, .num_examples = 5},
                            {.client = 3, .delta = d, .num_examples = 5}};
    CHECK_OK(s->aggregate_fit(s, 2, r2, 2, g));
    CHECK_NEAR(g[0], 1, 1e-6);
    CHECK_NEAR(g[1], 6, 1e-6);
    CHECK_NEAR(g[2], 6, 1e-6);
    r2[0].num_examples = r2[1].num_examples = 0;
    CHECK_EQ_INT(s->aggregate_fit(s, 3, r2, 2, g), FED_EINVAL);
    fed_strategy_free(s);

    /* mu = 0 is plain FedAvg with FedProx's bookkeeping: allowed. */
    p.mu = 0;
    CHECK_OK(fed_strategy_create(&s, "fedprox", &p, 3));
    CHECK_OK(s->configure_fit(s, 1, ids, 3, &def, ins));
    CHECK_NEAR(ins[2].prox_mu, 0, 0);
    fed_strategy_free(s);

    p.mu = -0.5;
    CHECK_EQ_INT(fed_strategy_create(&s, "fedprox", &p, 3), FED_EINVAL);
    CHECK(s == NULL);
    CHECK(strstr(fed_last_error(), "mu") != NULL);
    p.mu = NAN;
    CHECK_EQ_INT(fed_strategy_create(&s, "fedprox", &p, 3), FED_EINVAL);
    p.mu = INFINITY;
    CHECK_EQ_INT(fed_strategy_create(&s, "fedprox", &p, 3), FED_EINVAL);
    TEST_PASS("fedprox");
}
