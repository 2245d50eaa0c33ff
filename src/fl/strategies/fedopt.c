/* The FedOpt family: Reddi et al., "Adaptive Federated Optimization", ICLR 2021,
 * Algorithm 2. Shared here: Delta = example-weighted average delta (weighted as in
 * FedAvg), m = beta1 m + (1 - beta1) Delta, x += eta m / (sqrt(v) + tau), no bias
 * correction (as in the paper). Only the v update differs; it lives in fedadam.c,
 * fedyogi.c and fedadagrad.c. State starts at m = 0 and v = tau^2: Algorithm 2 takes
 * any v_{-1} >= tau^2, and we start at that bound. */
#include <stdlib.h>
#include "federate/vec.h"
#include "strategies.h"

typedef struct {
    fed_fedopt_v_update update_v;
    float *m, *v, *d; /* first and second moments, this round's Delta */
} fedopt_state;

static void fedopt_free(fed_strategy *s) {
    fedopt_state *st = s->state;
    if (st) {
        free(st->m);
        free(st->v);
        free(st->d);
        free(st);
    }
    s->state = NULL;
}

static void fedopt_step(float *restrict x, float *restrict m, const float *restrict v, const float *restrict d,
                        float beta1, float eta, float tau, size_t n) {
    for (size_t i = 0; i < n; i++) {
        m[i] = beta1 * m[i] + (1.0f - beta1) * d[i];
        x[i] += eta * m[i] / (sqrtf(v[i]) + tau);
    }
}

static int fedopt_aggregate_fit(fed_strategy *s, int round, const fed_client_res *res, int k, float *global) {
    (void)round;
    int rc = fed_strategy_check_fit(s, res, k, global, 0);
    if (rc) return rc;
    fedopt_state *st = s->state;
    rc = fed_strategy_weighted_delta(res, k, st->d, s->n);
    if (rc) return rc;
    /* v_t uses Delta_t, and the step uses m_t and v_t (both of this round). */
    st->update_v(st->v, st->d, (float)s->p.beta2, s->n);
    fedopt_step(global, st->m, st->v, st->d, (float)s->p.beta1, (float)s->p.server_lr, (float)s->p.tau, s->n);
    return 0;
}

/* m and v persist (in that order); d is rebuilt every round. */
static int fedopt_save_state(fed_strategy *s, float **vecs, size_t *lens, int max) {
    fedopt_state *st = s->state;
    float *const mv[2] = {st->m, st->v};
    return fed_strategy_state_vecs(s, mv, 2, vecs, lens, max);
}

int fed_fedopt_init(fed_strategy *s, fed_fedopt_v_update update_v, int uses_beta2) {
    int rc = fed_strategy_check_positive(s, "server_lr", s->p.server_lr);
    if (!rc) rc = fed_strategy_check_unit(s, "beta1", s->p.beta1);
    if (!rc && uses_beta2) rc = fed_strategy_check_unit(s, "beta2", s->p.beta2);
    if (!rc) rc = fed_strategy_check_positive(s, "tau", s->p.tau);
    if (rc) return rc;
    /* tau^2 must survive the trip to float, or v would start at 0. */
    float tau2 = (float)(s->p.tau * s->p.tau);
    if (!(tau2 > 0) || !isfinite(tau2))
        return fed_error(FED_EINVAL, "%s: tau = %g: tau^2 is not a positive finite float", s->name, s->p.tau);
    fedopt_state *st = calloc(1, sizeof *st);
    if (!st) return fed_error(FED_ENOMEM, "%s: cannot allocate state", s->name);
    s->state = st;
    s->free_state = fedopt_free;
    st->update_v = update_v;
    st->m = fed_strategy_alloc(s, "the first moment");
    st->v = fed_strategy_alloc(s, "the second moment");
    st->d = fed_strategy_alloc(s, "the averaged delta");
    if (!st->m || !st->v || !st->d) return FED_ENOMEM;
    for (size_t i = 0; i < s->n; i++) st->v[i] = tau2;
    s->aggregate_fit = fedopt_aggregate_fit;
    s->save_state = fedopt_save_state;
    return 0;
}
