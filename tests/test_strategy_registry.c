/* The strategy registry: every listed name creates a usable strategy, unknown
 * names fail with FED_ENOTFOUND listing the known ones, and the defaults and
 * ownership rules (free(NULL), *out = NULL on failure) hold. */
#include <string.h>
#include "check.h"
#include "federate/error.h"
#include "federate/strategy.h"

int main(void) {
    fed_strategy_params p;
    fed_strategy_params_default(&p);
    CHECK_EQ_INT(p.num_clients, 0);
    CHECK_NEAR(p.server_lr, 1, 0);
    CHECK_NEAR(p.server_momentum, 0.9, 0);
    CHECK_NEAR(p.beta1, 0.9, 0);
    CHECK_NEAR(p.beta2, 0.99, 0);
    CHECK_NEAR(p.tau, 1e-3, 0);
    CHECK_NEAR(p.mu, 0.01, 0);
    CHECK_NEAR(p.q, 1, 0);
    CHECK_NEAR(p.lipschitz, 0, 0);
    p.num_clients = 10; /* SCAFFOLD needs N */

    const char *const *names = fed_strategy_names();
    int count = 0;
    for (; names[count]; count++) {
        fed_strategy *s = NULL;
        CHECK_OK(fed_strategy_create(&s, names[count], &p, 5));
        CHECK(s != NULL);
        CHECK(strcmp(s->name, names[count]) == 0);
        CHECK_EQ_INT(s->n, 5);
        CHECK(s->configure_fit && s->aggregate_fit && s->aggregate_evaluate);
        int is_scaffold = strcmp(names[count], "scaffold") == 0;
        CHECK_EQ_INT(s->server_control != NULL, is_scaffold);
        /* One trivial round: a zero delta from one client keeps the model. Every
         * strategy's configure_fit accepts the defaults. */
        fed_client_ins def = {.local_epochs = 1, .batch_size = 4, .lr = 0.1f}, ins[1];
        int id = 0;
        CHECK_OK(s->configure_fit(s, 1, &id, 1, &def, ins));
        float zero[5] = {0}, g[5] = {1, 2, 3, 4, 5};
        fed_client_res r = {.client = 0, .delta = zero, .delta_c = zero, .num_examples = 3, .steps = 2,
                            .lr = 0.1f, .loss_before = 1.0};
        CHECK_OK(s->aggregate_fit(s, 1, &r, 1, g));
        for (int i = 0; i < 5; i++) CHECK_NEAR(g[i], i + 1, 0);
        fed_strategy_free(s);
    }
    CHECK_EQ_INT(count, 9);

    /* Passing no params means the defaults: fine for all but SCAFFOLD, whose N
     * has no default. */
    fed_strategy *s = (fed_strategy *)&p; /* poison: must be reset to NULL */
    CHECK_OK(fed_strategy_create(&s, "fedadam", NULL, 2));
    CHECK_NEAR(s->p.beta2, 0.99, 0);
    fed_strategy_free(s);
    s = (fed_strategy *)&p;
    CHECK_EQ_INT(fed_strategy_create(&s, "scaffold", NULL, 2), FED_EINVAL);
    CHECK(s == NULL);

    s = (fed_strategy *)&p;
    CHECK_EQ_INT(fed_strategy_create(&s, "fedsgd-typo", &p, 5), FED_ENOTFOUND);
    CHECK(s == NULL);
    const char *msg = fed_last_error();
    CHECK(strstr(msg, "fedsgd-typo") != NULL);
    for (int i = 0; names[i]; i++) CHECK(strstr(msg, names[i]) != NULL);

    CHECK_EQ_INT(fed_strategy_create(&s, NULL, &p, 5), FED_EINVAL);
    CHECK_EQ_INT(fed_strategy_create(NULL, "fedavg", &p, 5), FED_EINVAL);
    CHECK_EQ_INT(fed_strategy_create(&s, "fedavg", &p, 0), FED_EINVAL);
    CHECK(s == NULL);
    fed_strategy_free(NULL);
    TEST_PASS("registry");
}
