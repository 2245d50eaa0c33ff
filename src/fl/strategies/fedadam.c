/* FedAdam: Reddi et al., "Adaptive Federated Optimization", ICLR 2021, Algorithm 2:
 * v_t = beta2 v_{t-1} + (1 - beta2) Delta_t^2. The rest of the update (Delta, m, the
 * step, m_0 = 0, v_0 = tau^2) is shared with FedYogi and FedAdagrad in fedopt.c. */
#include "strategies.h"

static void adam_v(float *restrict v, const float *restrict d, float beta2, size_t n) {
    for (size_t i = 0; i < n; i++) v[i] = beta2 * v[i] + (1.0f - beta2) * d[i] * d[i];
}

int fed_strategy_init_fedadam(fed_strategy *s) { return fed_fedopt_init(s, adam_v, 1); }
