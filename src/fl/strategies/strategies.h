/* Private to src/fl: the constructors the registry in strategy.c calls, and the
 * checks and sums the strategy files share. A constructor receives a zeroed
 * fed_strategy with name, n, p and the default callbacks filled in; it validates
 * the parameters it uses, allocates its state and overrides what it needs. */
#ifndef FEDERATE_FL_STRATEGIES_H
#define FEDERATE_FL_STRATEGIES_H
#include <math.h>
#include "federate/error.h"
#include "federate/strategy.h"

int fed_strategy_init_fedavg(fed_strategy *s);
int fed_strategy_init_fedavgm(fed_strategy *s);
int fed_strategy_init_fedprox(fed_strategy *s);
int fed_strategy_init_scaffold(fed_strategy *s);
int fed_strategy_init_qfedavg(fed_strategy *s);
int fed_strategy_init_fedadam(fed_strategy *s);
int fed_strategy_init_fedyogi(fed_strategy *s);
int fed_strategy_init_fedadagrad(fed_strategy *s);
int fed_strategy_init_fednova(fed_strategy *s);

/* FedOpt family (fedopt.c): the three variants differ only in the second-moment
 * update, which each variant's file supplies; v = v(v, Delta) element-wise. */
typedef void (*fed_fedopt_v_update)(float *restrict v, const float *restrict d, float beta2, size_t n);
/* uses_beta2: FedAdagrad ignores beta2, so it is not validated for it. */
int fed_fedopt_init(fed_strategy *s, fed_fedopt_v_update update_v, int uses_beta2);

/* Validates aggregate_fit's arguments: non-NULL global and res, k >= 1, every
 * delta present, num_examples >= 0; need_delta_c also requires delta_c. */
int fed_strategy_check_fit(const fed_strategy *s, const fed_client_res *res, int k, const float *global,
                           int need_delta_c);
/* out = sum_i w[i] * x_i (x_i = res[i].delta, or res[i].delta_c with use_delta_c)
 * in client order, accumulated in double and rounded once; entries with
 * w[i] == 0 are skipped entirely. Callers run fed_strategy_check_fit first. */
int fed_strategy_sum_deltas(const fed_client_res *res, int k, const double *w, int use_delta_c, float *out,
                            size_t n);
/* For save_state: hands out the k vectors (each n floats) that make up a
 * strategy's persistent state; FED_EINVAL if the caller has room for fewer. */
int fed_strategy_state_vecs(fed_strategy *s, float *const *state, int k, float **vecs, size_t *lens, int max);
/* Allocates n zeroed floats or sets FED_ENOMEM naming the strategy and what for. */
float *fed_strategy_alloc(const fed_strategy *s, const char *what);

/* Parameter range checks: FED_EINVAL naming strategy, parameter and range. NaN
 * fails every comparison, so each check is written as !(in range). */
static inline int fed_strategy_check_positive(const fed_strategy *s, const char *param, double v) {
    if (!(v > 0) || !isfinite(v))
        return fed_error(FED_EINVAL, "%s: %s must be finite and > 0 (got %g)", s->name, param, v);
    return 0;
}
static inline int fed_strategy_check_nonneg(const fed_strategy *s, const char *param, double v) {
    if (!(v >= 0) || !isfinite(v))
        return fed_error(FED_EINVAL, "%s: %s must be finite and >= 0 (got %g)", s->name, param, v);
    return 0;
}
static inline int fed_strategy_check_unit(const fed_strategy *s, const char *param, double v) {
    if (!(v >= 0 && v < 1))
        return fed_error(FED_EINVAL, "%s: %s must be in [0, 1) (got %g)", s->name, param, v);
    return 0;
}

#endif
