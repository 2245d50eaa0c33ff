/* SCAFFOLD: configure_fit turns on control variates; the model moves by eta times
 * the unweighted mean delta over S and the server control by (1/N) sum dc_i, and
 * c persists across rounds. Pinned over two rounds on hand-computed vectors. */
#include <string.h>
#include "check.h"
#include "federate/error.h"
#include "federate/strategy.h"

int main(void) {
    fed_strategy_params p;
    fed_strategy_params_default(&p);
    p.num_clients = 4;
    p.server_lr = 0.5;
    fed_strategy *s;
    CHECK_OK(fed_strategy_create(&s, "scaffold", &p, 3));
    CHECK(s->server_control != NULL);
    const float *c = s->server_control(s);
    CHECK(c[0] == 0 && c[1] == 0 && c[2] == 0); /* c starts at 0 */

    fed_client_ins def = {.local_epochs = 1, .batch_size = 4, .lr = 0.1f};
    fed_client_ins ins[2];
    int ids[2] = {0, 3};
    CHECK_OK(s->configure_fit(s, 1, ids, 2, &def, ins));
    CHECK_EQ_INT(ins[0].scaffold, 1);
    CHECK_EQ_INT(ins[1].scaffold, 1);
    CHECK_EQ_INT(ins[1].batch_size, 4);

    /* Round 1, S = {0, 1} of N = 4; example counts differ (10, 30) and must NOT
     * weight the mean.
     *   mean dy = ((2 + 4)/2, (4 + 0)/2, (-6 + 2)/2) = (3, 2, -2)
     *   x = (0, 0, 0) + 0.5 (3, 2, -2) = (1.5, 1, -1)
     *   c = 0 + (1/4) ((1 + 3), (0 - 4), (2 + 2)) = (1, -1, 1) */
    float g[3] = {0, 0, 0};
    float dA[3] = {2, 4, -6}, cA[3] = {1, 0, 2};
    float dB[3] = {4, 0, 2}, cB[3] = {3, -4, 2};
    fed_client_res r1[2] = {{.client = 0, .delta = dA, .delta_c = cA, .num_examples = 10},
                            {.client = 1, .delta = dB, .delta_c = cB, .num_examples = 30}};
    CHECK_OK(s->aggregate_fit(s, 1, r1, 2, g));
    CHECK_NEAR(g[0], 1.5, 1e-6);
    CHECK_NEAR(g[1], 1, 1e-6);
    CHECK_NEAR(g[2], -1, 1e-6);
    c = s->server_control(s);
    CHECK_NEAR(c[0], 1, 1e-6);
    CHECK_NEAR(c[1], -1, 1e-6);
    CHECK_NEAR(c[2], 1, 1e-6);

    /* Failures leave x and c as they were: a missing delta_c, and |S| > N. */
    fed_client_res nodc[2] = {r1[0], r1[1]};
    nodc[1].delta_c = NULL;
    CHECK_EQ_INT(s->aggregate_fit(s, 2, nodc, 2, g), FED_EINVAL);
    CHECK(strstr(fed_last_error(), "delta_c") != NULL);
    fed_client_res five[5] = {r1[0], r1[1], r1[0], r1[1], r1[0]};
    CHECK_EQ_INT(s->aggregate_fit(s, 2, five, 5, g), FED_EINVAL);
    CHECK(strstr(fed_last_error(), "num_clients") != NULL);
    CHECK_NEAR(g[0], 1.5, 0);
    CHECK_NEAR(c[0], 1, 0);

    /* Round 2, S = {1, 2, 3}:
     *   mean dy = ((3 + 0 + 0)/3, (0 + 3 + 0)/3, (0 + 0 + 3)/3) = (1, 1, 1)
     *   x = (1.5, 1, -1) + 0.5 (1, 1, 1) = (2, 1.5, -0.5)
     *   sum dc = (1 + 1 + 2, 1 + 1 + 2, 1 + 1 - 2) = (4, 4, 0); c = (1, -1, 1) + (4, 4, 0)/4 = (2, 0, 1) */
    float d1[3] = {3, 0, 0}, d2[3] = {0, 3, 0}, d3[3] = {0, 0, 3};
    float c1[3] = {1, 1, 1}, c2[3] = {1, 1, 1}, c3[3] = {2, 2, -2};
    fed_client_res r2[3] = {{.client = 1, .delta = d1, .delta_c = c1, .num_examples = 1},
                            {.client = 2, .delta = d2, .delta_c = c2, .num_examples = 100},
                            {.client = 3, .delta = d3, .delta_c = c3, .num_examples = 7}};
    CHECK_OK(s->aggregate_fit(s, 2, r2, 3, g));
    CHECK_NEAR(g[0], 2, 1e-6);
    CHECK_NEAR(g[1], 1.5, 1e-6);
    CHECK_NEAR(g[2], -0.5, 1e-6);
    c = s->server_control(s);
    CHECK_NEAR(c[0], 2, 1e-6);
    CHECK_NEAR(c[1], 0, 1e-6);
    CHECK_NEAR(c[2], 1, 1e-6);

    /* The checkpointed state is c itself. */
    float *vecs[2];
    size_t lens[2];
    CHECK_EQ_INT(s->save_state(s, vecs, lens, 2), 1);
    CHECK(vecs[0] == c);
    CHECK_EQ_INT(lens[0], 3);
    fed_strategy_free(s);

    /* N is required: the control update divides by it. */
    p.num_clients = 0;
    CHECK_EQ_INT(fed_strategy_create(&s, "scaffold", &p, 3), FED_EINVAL);
    CHECK(strstr(fed_last_error(), "num_clients") != NULL);
    p.num_clients = 4;
    p.server_lr = 0;
    CHECK_EQ_INT(fed_strategy_create(&s, "scaffold", &p, 3), FED_EINVAL);
    CHECK(strstr(fed_last_error(), "server_lr") != NULL);
    TEST_PASS("scaffold");
}
