/* FedAdagrad: Reddi et al., "Adaptive Federated Optimization", ICLR 2021, Algorithm 2:
 * v_t = v_{t-1} + Delta_t^2 (beta2 is unused). The rest of the update, including the
 * paper's beta1 momentum on m, is shared with FedAdam and FedYogi in fedopt.c. */
#include "strategies.h"

static void adagrad_v(float *restrict v, const float *restrict d, float beta2, size_t n) {
    (void)beta2;
    for (size_t i = 0; i < n; i++) v[i] += d[i] * d[i];
}

int fed_strategy_init_fedadagrad(fed_strategy *s) { return fed_fedopt_init(s, adagrad_v, 0); }
