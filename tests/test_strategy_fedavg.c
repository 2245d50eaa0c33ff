/* FedAvg and the shared strategy helpers: the example-weighted average pinned on
 * hand-computed vectors, the default client configuration and evaluation average,
 * and the error paths (no examples, negative counts, missing deltas, k = 0). */
#include <string.h>
#include "check.h"
#include "federate/error.h"
#include "federate/strategy.h"

static fed_client_res res(int client, long n_ex, const float *delta) {
    fed_client_res r;
    memset(&r, 0, sizeof r);
    r.client = client;
    r.num_examples = n_ex;
    r.delta = delta;
    r.steps = 1;
    r.lr = 0.1f;
    return r;
}

int main(void) {
    fed_strategy_params p;
    fed_strategy_params_default(&p);
    fed_strategy *s;
    CHECK_OK(fed_strategy_create(&s, "fedavg", &p, 3));
    CHECK(strcmp(s->name, "fedavg") == 0);
    CHECK(s->save_state == NULL); /* stateless */
    CHECK(s->server_control == NULL);

    /* Round 1: n_A = 1, n_B = 3, so weights 1/4 and 3/4.
     *   avg = 1/4 (1, 2, -4) + 3/4 (5, -2, 0) = (0.25 + 3.75, 0.5 - 1.5, -1 + 0) = (4, -1, -1)
     *   global (1, 1, 1) + avg = (5, 0, 0) */
    float g[3] = {1, 1, 1};
    float dA[3] = {1, 2, -4}, dB[3] = {5, -2, 0};
    fed_client_res r1[2] = {res(0, 1, dA), res(1, 3, dB)};
    CHECK_OK(s->aggregate_fit(s, 1, r1, 2, g));
    CHECK_NEAR(g[0], 5, 1e-6);
    CHECK_NEAR(g[1], 0, 1e-6);
    CHECK_NEAR(g[2], 0, 1e-6);

    /* Round 2, three clients, one with 0 examples: its (huge) delta gets weight 0.
     *   avg = 1/2 (0.5, 0, 1) + 0 + 1/2 (1.5, 2, -1) = (1, 1, 0); global -> (6, 1, 0) */
    float dC[3] = {0.5f, 0, 1}, dD[3] = {100, 100, 100}, dE[3] = {1.5f, 2, -1};
    fed_client_res r2[3] = {res(2, 2, dC), res(3, 0, dD), res(4, 2, dE)};
    CHECK_OK(s->aggregate_fit(s, 2, r2, 3, g));
    CHECK_NEAR(g[0], 6, 1e-6);
    CHECK_NEAR(g[1], 1, 1e-6);
    CHECK_NEAR(g[2], 0, 1e-6);

    /* Three equal clients: weights 1/3 each.
     *   avg = ((1 + 2 + 3)/3, (0 + 0 + 3)/3, (-3 + 0 + 0)/3) = (2, 1, -1) */
    float e1[3] = {1, 0, -3}, e2[3] = {2, 0, 0}, e3[3] = {3, 3, 0}, out[3];
    fed_client_res r3[3] = {res(0, 7, e1), res(1, 7, e2), res(2, 7, e3)};
    CHECK_OK(fed_strategy_weighted_delta(r3, 3, out, 3));
    CHECK_NEAR(out[0], 2, 1e-6);
    CHECK_NEAR(out[1], 1, 1e-6);
    CHECK_NEAR(out[2], -1, 1e-6);

    /* Errors leave the model untouched. */
    float before[3] = {g[0], g[1], g[2]};
    fed_client_res z[2] = {res(0, 0, dA), res(1, 0, dB)};
    CHECK_EQ_INT(s->aggregate_fit(s, 3, z, 2, g), FED_EINVAL);
    CHECK(strstr(fed_last_error(), "0 examples") != NULL);
    CHECK_EQ_INT(fed_strategy_weighted_delta(z, 2, out, 3), FED_EINVAL);
    fed_client_res neg[2] = {res(0, -1, dA), res(1, 5, dB)};
    CHECK_EQ_INT(s->aggregate_fit(s, 3, neg, 2, g), FED_EINVAL);
    fed_client_res nodelta[2] = {res(0, 1, dA), res(1, 1, NULL)};
    CHECK_EQ_INT(s->aggregate_fit(s, 3, nodelta, 2, g), FED_EINVAL);
    CHECK_EQ_INT(s->aggregate_fit(s, 3, r1, 0, g), FED_EINVAL);
    CHECK_EQ_INT(s->aggregate_fit(s, 3, r1, 2, NULL), FED_EINVAL);
    CHECK(memcmp(before, g, sizeof g) == 0);

    /* configure_fit copies the run's defaults to every client, unchanged. */
    fed_client_ins def = {.local_epochs = 2, .batch_size = 16, .lr = 0.05f, .max_steps = 7};
    fed_client_ins ins[3];
    memset(ins, 0xff, sizeof ins);
    int ids[3] = {1, 4, 9};
    CHECK_OK(s->configure_fit(s, 1, ids, 3, &def, ins));
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(ins[i].local_epochs, 2);
        CHECK_EQ_INT(ins[i].batch_size, 16);
        CHECK_NEAR(ins[i].lr, 0.05f, 0);
        CHECK_EQ_INT(ins[i].max_steps, 7);
        CHECK_NEAR(ins[i].prox_mu, 0, 0);
        CHECK_EQ_INT(ins[i].scaffold, 0);
        CHECK_EQ_INT(ins[i].want_loss_before, 0);
    }
    CHECK_EQ_INT(s->configure_fit(s, 1, ids, -1, &def, ins), FED_EINVAL);

    /* aggregate_evaluate: weights 1/4 and 3/4.
     *   loss = 1/4 * 2 + 3/4 * 1 = 1.25; accuracy = 1/4 * 0.5 + 3/4 * 1 = 0.875 */
    fed_eval_res ev[2] = {{.client = 0, .num_examples = 10, .loss = 2, .accuracy = 0.5},
                          {.client = 1, .num_examples = 30, .loss = 1, .accuracy = 1}};
    double loss, acc;
    CHECK_OK(s->aggregate_evaluate(s, 1, ev, 2, &loss, &acc));
    CHECK_NEAR(loss, 1.25, 1e-12);
    CHECK_NEAR(acc, 0.875, 1e-12);
    ev[0].num_examples = ev[1].num_examples = 0;
    CHECK_EQ_INT(s->aggregate_evaluate(s, 1, ev, 2, &loss, &acc), FED_EINVAL);
    CHECK_EQ_INT(s->aggregate_evaluate(s, 1, ev, 0, &loss, &acc), FED_EINVAL);

    fed_strategy_free(s);
    TEST_PASS("fedavg");
}
