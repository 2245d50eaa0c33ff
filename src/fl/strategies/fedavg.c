/* FedAvg: McMahan et al., "Communication-Efficient Learning of Deep Networks from
 * Decentralized Data", AISTATS 2017, Algorithm 1: w_{t+1} = w_t + sum_k (n_k/n) delta_k,
 * with delta_k = w_{t+1}^k - w_t and n the examples held by the round's clients.
 * FedProx (fedprox.c) reuses this aggregation. */
#include <stdlib.h>
#include "federate/vec.h"
#include "strategies.h"

static void fedavg_free(fed_strategy *s) {
    free(s->state);
    s->state = NULL;
}

static int fedavg_aggregate_fit(fed_strategy *s, int round, const fed_client_res *res, int k, float *global) {
    (void)round;
    int rc = fed_strategy_check_fit(s, res, k, global, 0);
    if (rc) return rc;
    float *avg = s->state;
    /* Average first, then apply once: the average is also what central DP and
     * logging see, and global is touched by a single rounding. */
    rc = fed_strategy_weighted_delta(res, k, avg, s->n);
    if (rc) return rc;
    fed_vec_axpy(global, 1.0f, avg, s->n);
    return 0;
}

int fed_strategy_init_fedavg(fed_strategy *s) {
    s->state = fed_strategy_alloc(s, "the averaged delta");
    if (!s->state) return FED_ENOMEM;
    s->free_state = fedavg_free;
    s->aggregate_fit = fedavg_aggregate_fit;
    return 0;
}
