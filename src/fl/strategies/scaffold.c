/* SCAFFOLD: Karimireddy et al., "SCAFFOLD: Stochastic Controlled Averaging for
 * Federated Learning", ICML 2020, Algorithm 1 (clients use option II for c_i):
 * x += eta_g (1/|S|) sum_{i in S} dy_i;  c += (|S|/N) (1/|S|) sum_{i in S} dc_i. */
#include <stdlib.h>
#include "federate/vec.h"
#include "strategies.h"

typedef struct {
    float *c;   /* server control variate, starts at 0 as in the paper */
    float *dx;  /* this round's mean model delta */
    float *dc;  /* this round's control increment, (1/N) sum dc_i */
} scaffold_state;

static void scaffold_free(fed_strategy *s) {
    scaffold_state *st = s->state;
    if (st) {
        free(st->c);
        free(st->dx);
        free(st->dc);
        free(st);
    }
    s->state = NULL;
}

static int scaffold_configure_fit(fed_strategy *s, int round, const int *clients, int k,
                                  const fed_client_ins *defaults, fed_client_ins *ins) {
    int rc = fed_strategy_configure_fit_default(s, round, clients, k, defaults, ins);
    if (rc) return rc;
    for (int i = 0; i < k; i++) ins[i].scaffold = 1;
    return 0;
}

static int scaffold_aggregate_fit(fed_strategy *s, int round, const fed_client_res *res, int k, float *global) {
    (void)round;
    int rc = fed_strategy_check_fit(s, res, k, global, 1);
    if (rc) return rc;
    scaffold_state *st = s->state;
    int N = s->p.num_clients;
    if (k > N)
        return fed_error(FED_EINVAL, "scaffold: %d results but the federation has num_clients = %d", k, N);
    double *w = malloc((size_t)k * sizeof *w);
    if (!w) return fed_error(FED_ENOMEM, "scaffold: cannot allocate %d weights", k);
    /* The model update is the plain mean over S (the paper's Algorithm 1), not
     * example-weighted: the control-variate correction assumes equal weights. */
    for (int i = 0; i < k; i++) w[i] = 1.0 / k;
    rc = fed_strategy_sum_deltas(res, k, w, 0, st->dx, s->n);
    /* Dividing by N, not |S|: clients outside S keep their c_i, so c (the mean of
     * all N c_i) moves by their share only. */
    for (int i = 0; i < k; i++) w[i] = 1.0 / N;
    if (!rc) rc = fed_strategy_sum_deltas(res, k, w, 1, st->dc, s->n);
    free(w);
    if (rc) return rc;
    /* Both sums are formed before either is applied, so a failure leaves x and c as they were. */
    fed_vec_axpy(global, (float)s->p.server_lr, st->dx, s->n);
    fed_vec_axpy(st->c, 1.0f, st->dc, s->n);
    return 0;
}

static const float *scaffold_server_control(const fed_strategy *s) {
    const scaffold_state *st = s->state;
    return st ? st->c : NULL;
}

static int scaffold_save_state(fed_strategy *s, float **vecs, size_t *lens, int max) {
    scaffold_state *st = s->state;
    return fed_strategy_state_vecs(s, &st->c, 1, vecs, lens, max);
}

int fed_strategy_init_scaffold(fed_strategy *s) {
    if (s->p.num_clients <= 0)
        return fed_error(FED_EINVAL, "scaffold: num_clients (N, the federation's size) must be >= 1 (got %d)",
                         s->p.num_clients);
    int rc = fed_strategy_check_positive(s, "server_lr", s->p.server_lr);
    if (rc) return rc;
    scaffold_state *st = calloc(1, sizeof *st);
    if (!st) return fed_error(FED_ENOMEM, "scaffold: cannot allocate state");
    s->state = st;
    s->free_state = scaffold_free;
    st->c = fed_strategy_alloc(s, "the server control variate");
    st->dx = fed_strategy_alloc(s, "the averaged delta");
    st->dc = fed_strategy_alloc(s, "the control increment");
    if (!st->c || !st->dx || !st->dc) return FED_ENOMEM;
    s->configure_fit = scaffold_configure_fit;
    s->aggregate_fit = scaffold_aggregate_fit;
    s->server_control = scaffold_server_control;
    s->save_state = scaffold_save_state;
    return 0;
}
