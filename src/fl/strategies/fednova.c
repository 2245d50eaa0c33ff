/* FedNova: Wang, Liu, Liang, Joshi, Poor, "Tackling the Objective Inconsistency Problem
 * in Heterogeneous Federated Optimization", NeurIPS 2020, eq. (6)-(7) for vanilla local
 * SGD (a_i = tau_i, ||a_i||_1 = tau_i): x += eta tau_eff sum_i p_i delta_i / tau_i,
 * tau_eff = sum_i p_i tau_i, p_i = n_i / n. Normalising by tau_i removes the bias
 * towards clients that ran more local steps. */
#include <stdlib.h>
#include "federate/vec.h"
#include "strategies.h"

static void fednova_free(fed_strategy *s) {
    free(s->state);
    s->state = NULL;
}

static int fednova_aggregate_fit(fed_strategy *s, int round, const fed_client_res *res, int k, float *global) {
    (void)round;
    int rc = fed_strategy_check_fit(s, res, k, global, 0);
    if (rc) return rc;
    /* A client that took no step has no normalised gradient (delta/0); it is left
     * out and p_i renormalised over the clients that did train. */
    long total = 0;
    int trained = 0;
    for (int i = 0; i < k; i++) {
        if (res[i].steps < 0)
            return fed_error(FED_EINVAL, "fednova: client %d reports %ld local steps", res[i].client, res[i].steps);
        if (res[i].steps > 0) {
            total += res[i].num_examples;
            trained++;
        }
    }
    if (trained == 0) return 0; /* nobody moved: the model stays where it was */
    if (total == 0)
        return fed_error(FED_EINVAL, "fednova: the %d clients that trained hold 0 examples in total", trained);
    double *w = malloc((size_t)k * sizeof *w);
    if (!w) return fed_error(FED_ENOMEM, "fednova: cannot allocate %d weights", k);
    double tau_eff = 0;
    for (int i = 0; i < k; i++) {
        double p = res[i].steps > 0 ? (double)res[i].num_examples / (double)total : 0.0;
        tau_eff += p * (double)res[i].steps;
        w[i] = res[i].steps > 0 ? p / (double)res[i].steps : 0.0;
    }
    /* tau_eff folds into the weights: one rounding to float for the whole step. */
    double scale = s->p.server_lr * tau_eff;
    for (int i = 0; i < k; i++) w[i] *= scale;
    float *step = s->state;
    rc = fed_strategy_sum_deltas(res, k, w, 0, step, s->n);
    free(w);
    if (rc) return rc;
    fed_vec_axpy(global, 1.0f, step, s->n);
    return 0;
}

int fed_strategy_init_fednova(fed_strategy *s) {
    int rc = fed_strategy_check_positive(s, "server_lr", s->p.server_lr);
    if (rc) return rc;
    s->state = fed_strategy_alloc(s, "the step");
    if (!s->state) return FED_ENOMEM;
    s->free_state = fednova_free;
    s->aggregate_fit = fednova_aggregate_fit;
    return 0;
}
