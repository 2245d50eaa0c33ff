/* q-FedAvg: Li, Sanjabi, Beirami, Smith, "Fair Resource Allocation in Federated
 * Learning", ICLR 2020, Algorithm 2: dw_k = L (w^t - wbar_k) = -L delta_k,
 * Delta_k = F_k^q dw_k, h_k = q F_k^(q-1) ||dw_k||^2 + L F_k^q, w -= sum Delta_k / sum h_k,
 * with F_k = F_k(w^t) the global model's loss on client k's data (res.loss_before). */
#include <stdlib.h>
#include "federate/vec.h"
#include "strategies.h"

static void qfedavg_free(fed_strategy *s) {
    free(s->state);
    s->state = NULL;
}

static int qfedavg_configure_fit(fed_strategy *s, int round, const int *clients, int k,
                                 const fed_client_ins *defaults, fed_client_ins *ins) {
    int rc = fed_strategy_configure_fit_default(s, round, clients, k, defaults, ins);
    if (rc) return rc;
    for (int i = 0; i < k; i++) ins[i].want_loss_before = 1;
    return 0;
}

static int qfedavg_aggregate_fit(fed_strategy *s, int round, const fed_client_res *res, int k, float *global) {
    (void)round;
    int rc = fed_strategy_check_fit(s, res, k, global, 0);
    if (rc) return rc;
    const double q = s->p.q;
    double *coef = malloc((size_t)k * sizeof *coef);
    if (!coef) return fed_error(FED_ENOMEM, "qfedavg: cannot allocate %d weights", k);
    double H = 0;
    for (int i = 0; i < k; i++) {
        /* L = 1/lr is the paper's choice (Sec. 4.2): the step a client took is then
         * undone at the same scale. Per client, so mixed learning rates stay sound. */
        double L = s->p.lipschitz;
        if (L == 0) {
            if (!(res[i].lr > 0) || !isfinite(res[i].lr)) {
                free(coef);
                return fed_error(FED_EINVAL, "qfedavg: client %d reports lr = %g; with lipschitz = 0, L = 1/lr "
                                 "needs lr > 0", res[i].client, (double)res[i].lr);
            }
            L = 1.0 / res[i].lr;
        }
        double F = res[i].loss_before;
        /* F^q and F^(q-1) need F > 0. A zero loss is what a client that ignored
         * want_loss_before sends, so it is an error rather than a silent skip.
         * q = 0 (FedAvg with uniform weights) does not use F at all. */
        if (q > 0 && (!(F > 0) || !isfinite(F))) {
            free(coef);
            return fed_error(FED_EINVAL, "qfedavg: client %d reports loss_before = %g; q-FedAvg with q = %g needs "
                             "F_k(w^t) > 0 and finite (was want_loss_before honoured?)", res[i].client, F, q);
        }
        double Fq = q > 0 ? pow(F, q) : 1.0;
        double sq = fed_vec_dot(res[i].delta, res[i].delta, s->n); /* ||delta_k||^2 */
        double h = L * Fq;
        if (q > 0) h += q * pow(F, q - 1) * L * L * sq; /* ||dw_k||^2 = L^2 ||delta_k||^2 */
        H += h;
        /* w -= sum_k F^q (-L delta_k) / H, i.e. w += sum_k (L F^q / H) delta_k; the
         * division by H waits until H is complete. */
        coef[i] = L * Fq;
    }
    if (!(H > 0) || !isfinite(H)) {
        free(coef);
        return fed_error(FED_ERANGE, "qfedavg: sum of h_k is %g, cannot take the step (losses or deltas overflow)", H);
    }
    for (int i = 0; i < k; i++) coef[i] /= H;
    float *step = s->state;
    rc = fed_strategy_sum_deltas(res, k, coef, 0, step, s->n);
    free(coef);
    if (rc) return rc;
    fed_vec_axpy(global, 1.0f, step, s->n);
    return 0;
}

int fed_strategy_init_qfedavg(fed_strategy *s) {
    int rc = fed_strategy_check_nonneg(s, "q", s->p.q);
    if (!rc) rc = fed_strategy_check_nonneg(s, "lipschitz (0 = 1/client lr)", s->p.lipschitz);
    if (rc) return rc;
    s->state = fed_strategy_alloc(s, "the step");
    if (!s->state) return FED_ENOMEM;
    s->free_state = qfedavg_free;
    s->configure_fit = qfedavg_configure_fit;
    s->aggregate_fit = qfedavg_aggregate_fit;
    return 0;
}
