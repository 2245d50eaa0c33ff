/* FedAdam (Reddi et al. 2021, Algorithm 2): m and v persist across rounds,
 * v = beta2 v + (1 - beta2) Delta^2 from v = tau^2, x += eta m / (sqrt(v) + tau);
 * pinned over two rounds on hand-computed vectors (chosen so sqrt(v) is exact),
 * with a failed round in between that must not touch the moments. */
#include <string.h>
#include "check.h"
#include "federate/error.h"
#include "federate/strategy.h"

int main(void) {
    fed_strategy_params p;
    fed_strategy_params_default(&p);
    fed_strategy *s;

    /* Defaults: m = 0, v = tau^2 = 1e-6. */
    CHECK_OK(fed_strategy_create(&s, "fedadam", &p, 3));
    float *vecs[2];
    size_t lens[2];
    CHECK_EQ_INT(s->save_state(s, vecs, lens, 2), 2);
    CHECK_EQ_INT(lens[0], 3);
    CHECK_EQ_INT(lens[1], 3);
    CHECK_NEAR(vecs[0][1], 0, 0);
    CHECK_NEAR(vecs[1][1], 1e-6, 1e-12);
    fed_strategy_free(s);

    p.server_lr = 2;
    p.beta1 = 0.5;
    p.beta2 = 0.5;
    p.tau = 1; /* v starts at 1 */
    CHECK_OK(fed_strategy_create(&s, "fedadam", &p, 3));

    /* Round 1: weights 1/4, 3/4: Delta = 1/4 (4, 7, -4) + 3/4 (0, 7, 0) = (1, 7, -1)
     *   m = 0.5 * 0 + 0.5 (1, 7, -1) = (0.5, 3.5, -0.5)
     *   v = 0.5 * 1 + 0.5 (1, 49, 1) = (1, 25, 1); sqrt(v) = (1, 5, 1)
     *   x = 0 + 2 (0.5/2, 3.5/6, -0.5/2) = (0.5, 1.1666667, -0.5) */
    float g[3] = {0, 0, 0};
    float a[3] = {4, 7, -4}, b[3] = {0, 7, 0};
    fed_client_res r1[2] = {{.client = 0, .delta = a, .num_examples = 1},
                            {.client = 1, .delta = b, .num_examples = 3}};
    CHECK_OK(s->aggregate_fit(s, 1, r1, 2, g));
    CHECK_NEAR(g[0], 0.5, 1e-6);
    CHECK_NEAR(g[1], 1.1666667, 1e-6);
    CHECK_NEAR(g[2], -0.5, 1e-6);

    /* No examples: an error, and m, v and x stay as they were. */
    fed_client_res bad[2] = {{.client = 0, .delta = a}, {.client = 1, .delta = b}};
    CHECK_EQ_INT(s->aggregate_fit(s, 2, bad, 2, g), FED_EINVAL);
    CHECK_NEAR(g[0], 0.5, 0);

    /* Round 2: weights 1/2, 1/2: Delta = ((2 + 0)/2, (10 + 0)/2, (0 + 14)/2) = (1, 5, 7)
     *   m = 0.5 (0.5, 3.5, -0.5) + 0.5 (1, 5, 7) = (0.75, 4.25, 3.25)
     *   v = 0.5 (1, 25, 1) + 0.5 (1, 25, 49) = (1, 25, 25); sqrt(v) = (1, 5, 5)
     *   x += 2 (0.75/2, 4.25/6, 3.25/6) = (0.75, 1.4166667, 1.0833333)
     *   x = (1.25, 2.5833333, 0.5833333) */
    float c[3] = {2, 10, 0}, d[3] = {0, 0, 14};
    fed_client_res r2[2] = {{.client = 0, .delta = c, .num_examples = 2},
                            {.client = 2, .delta = d, .num_examples = 2}};
    CHECK_OK(s->aggregate_fit(s, 2, r2, 2, g));
    CHECK_NEAR(g[0], 1.25, 1e-6);
    CHECK_NEAR(g[1], 2.5833333, 1e-6);
    CHECK_NEAR(g[2], 0.5833333, 1e-6);
    CHECK_EQ_INT(s->save_state(s, vecs, lens, 2), 2);
    CHECK_NEAR(vecs[0][0], 0.75, 1e-6); /* m */
    CHECK_NEAR(vecs[0][1], 4.25, 1e-6);
    CHECK_NEAR(vecs[0][2], 3.25, 1e-6);
    CHECK_NEAR(vecs[1][0], 1, 1e-6);    /* v */
    CHECK_NEAR(vecs[1][1], 25, 1e-5);
    CHECK_NEAR(vecs[1][2], 25, 1e-5);
    CHECK_EQ_INT(s->save_state(s, vecs, lens, 1), FED_EINVAL);
    fed_strategy_free(s);

    /* Parameter checks name the parameter. */
    p.beta1 = 1;
    CHECK_EQ_INT(fed_strategy_create(&s, "fedadam", &p, 3), FED_EINVAL);
    CHECK(strstr(fed_last_error(), "beta1") != NULL);
    p.beta1 = 0.9;
    p.beta2 = -0.5;
    CHECK_EQ_INT(fed_strategy_create(&s, "fedadam", &p, 3), FED_EINVAL);
    CHECK(strstr(fed_last_error(), "beta2") != NULL);
    p.beta2 = 0.99;
    p.tau = 0;
    CHECK_EQ_INT(fed_strategy_create(&s, "fedadam", &p, 3), FED_EINVAL);
    CHECK(strstr(fed_last_error(), "tau") != NULL);
    p.tau = 1e-30; /* tau^2 underflows float: v would start at 0 */
    CHECK_EQ_INT(fed_strategy_create(&s, "fedadam", &p, 3), FED_EINVAL);
    CHECK(strstr(fed_last_error(), "tau") != NULL);
    p.tau = 1e-3;
    p.server_lr = 0;
    CHECK_EQ_INT(fed_strategy_create(&s, "fedadam", &p, 3), FED_EINVAL);
    CHECK(strstr(fed_last_error(), "server_lr") != NULL);
    TEST_PASS("fedadam");
}
