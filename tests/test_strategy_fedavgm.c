/* FedAvgM: the server momentum v persists across rounds (v = beta v + avg,
 * global += eta v), pinned over two rounds on hand-computed vectors, plus the
 * parameter checks and that a failed round leaves v alone. */
#include <string.h>
#include "check.h"
#include "federate/error.h"
#include "federate/strategy.h"

int main(void) {
    fed_strategy_params p;
    fed_strategy_params_default(&p);
    p.server_lr = 2;
    p.server_momentum = 0.5;
    fed_strategy *s;
    CHECK_OK(fed_strategy_create(&s, "fedavgm", &p, 3));

    /* Round 1: weights 1/4, 3/4: avg = 1/4 (1, 2, -4) + 3/4 (5, -2, 0) = (4, -1, -1)
     *   v = 0.5 * 0 + avg = (4, -1, -1)
     *   global = (1, 1, 1) + 2 (4, -1, -1) = (9, -1, -1) */
    float g[3] = {1, 1, 1};
    float a[3] = {1, 2, -4}, b[3] = {5, -2, 0};
    fed_client_res r1[2] = {{.client = 0, .delta = a, .num_examples = 1},
                            {.client = 1, .delta = b, .num_examples = 3}};
    CHECK_OK(s->aggregate_fit(s, 1, r1, 2, g));
    CHECK_NEAR(g[0], 9, 1e-6);
    CHECK_NEAR(g[1], -1, 1e-6);
    CHECK_NEAR(g[2], -1, 1e-6);

    /* A failed round (no examples) must not touch v or the model. */
    fed_client_res bad[2] = {{.client = 0, .delta = a}, {.client = 1, .delta = b}};
    CHECK_EQ_INT(s->aggregate_fit(s, 2, bad, 2, g), FED_EINVAL);

    /* Round 2: weights 1/2, 1/2: avg = ((2 + 0)/2, (0 + 2)/2, (0 - 2)/2) = (1, 1, -1)
     *   v = 0.5 (4, -1, -1) + (1, 1, -1) = (3, 0.5, -1.5)
     *   global = (9, -1, -1) + 2 (3, 0.5, -1.5) = (15, 0, -4) */
    float c[3] = {2, 0, 0}, d[3] = {0, 2, -2};
    fed_client_res r2[2] = {{.client = 0, .delta = c, .num_examples = 4},
                            {.client = 2, .delta = d, .num_examples = 4}};
    CHECK_OK(s->aggregate_fit(s, 2, r2, 2, g));
    CHECK_NEAR(g[0], 15, 1e-6);
    CHECK_NEAR(g[1], 0, 1e-6);
    CHECK_NEAR(g[2], -4, 1e-6);

    /* save_state exposes v = (3, 0.5, -1.5) for checkpoints. */
    float *vecs[4];
    size_t lens[4];
    CHECK_EQ_INT(s->save_state(s, vecs, lens, 4), 1);
    CHECK_EQ_INT(lens[0], 3);
    CHECK_NEAR(vecs[0][0], 3, 1e-6);
    CHECK_NEAR(vecs[0][1], 0.5, 1e-6);
    CHECK_NEAR(vecs[0][2], -1.5, 1e-6);
    CHECK_EQ_INT(s->save_state(s, vecs, lens, 0), FED_EINVAL);
    fed_strategy_free(s);

    /* Momentum 0 reduces to FedAvg scaled by eta: 2 * (4, -1, -1) from (1, 1, 1) = (9, -1, -1). */
    p.server_momentum = 0;
    CHECK_OK(fed_strategy_create(&s, "fedavgm", &p, 3));
    float h[3] = {1, 1, 1};
    CHECK_OK(s->aggregate_fit(s, 1, r1, 2, h));
    CHECK_NEAR(h[0], 9, 1e-6);
    CHECK_NEAR(h[2], -1, 1e-6);
    fed_strategy_free(s);

    double bad_beta[] = {1.0, -0.1, 1.5, NAN};
    for (int i = 0; i < 4; i++) {
        p.server_momentum = bad_beta[i];
        CHECK_EQ_INT(fed_strategy_create(&s, "fedavgm", &p, 3), FED_EINVAL);
        CHECK(strstr(fed_last_error(), "server_momentum") != NULL);
        CHECK(strstr(fed_last_error(), "[0, 1)") != NULL);
    }
    p.server_momentum = 0.9;
    double bad_lr[] = {0, -1, NAN, INFINITY};
    for (int i = 0; i < 4; i++) {
        p.server_lr = bad_lr[i];
        CHECK_EQ_INT(fed_strategy_create(&s, "fedavgm", &p, 3), FED_EINVAL);
        CHECK(strstr(fed_last_error(), "server_lr") != NULL);
    }
    TEST_PASS("fedavgm");
}
