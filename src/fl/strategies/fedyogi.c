/* FedYogi: Reddi et al., "Adaptive Federated Optimization", ICLR 2021, Algorithm 2:
 * v_t = v_{t-1} - (1 - beta2) Delta_t^2 sign(v_{t-1} - Delta_t^2), with sign(0) = 0.
 * The rest of the update is shared with FedAdam and FedAdagrad in fedopt.c. */
#include "strategies.h"

static void yogi_v(float *restrict v, const float *restrict d, float beta2, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float d2 = d[i] * d[i];
        float diff = v[i] - d2;
        float sign = (float)((diff > 0.0f) - (diff < 0.0f));
        v[i] -= (1.0f - beta2) * d2 * sign;
    }
}

int fed_strategy_init_fedyogi(fed_strategy *s) { return fed_fedopt_init(s, yogi_v, 1); }
