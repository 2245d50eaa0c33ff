/* FedProx: Li et al., "Federated Optimization in Heterogeneous Networks", MLSys 2020,
 * Algorithm 2: clients minimise h_k(w) = F_k(w) + (mu/2) ||w - w^t||^2 (so each local
 * gradient gains mu (w - w^t)); the server aggregates exactly as FedAvg. */
#include "strategies.h"

static int fedprox_configure_fit(fed_strategy *s, int round, const int *clients, int k,
                                 const fed_client_ins *defaults, fed_client_ins *ins) {
    int rc = fed_strategy_configure_fit_default(s, round, clients, k, defaults, ins);
    if (rc) return rc;
    for (int i = 0; i < k; i++) ins[i].prox_mu = (float)s->p.mu;
    return 0;
}

int fed_strategy_init_fedprox(fed_strategy *s) {
    /* mu = 0 is allowed: it is FedAvg with FedProx's bookkeeping, a useful control. */
    int rc = fed_strategy_check_nonneg(s, "mu", s->p.mu);
    if (rc) return rc;
    rc = fed_strategy_init_fedavg(s);
    if (rc) return rc;
    s->configure_fit = fedprox_configure_fit;
    return 0;
}
