/* FedAvgM: Hsu, Qi, Brown, "Measuring the Effects of Non-Identical Data Distribution
 * for Federated Visual Classification", 2019, Sec. 3 (server momentum):
 * v = beta v + Delta, w += eta v, with Delta the example-weighted average delta
 * (the paper's negated pseudo-gradient, since our deltas are local - global). */
#include <stdlib.h>
#include "federate/vec.h"
#include "strategies.h"

typedef struct {
    float *v;   /* server momentum, starts at 0 */
    float *avg; /* this round's averaged delta */
} fedavgm_state;

static void fedavgm_free(fed_strategy *s) {
    fedavgm_state *st = s->state;
    if (st) {
        free(st->v);
        free(st->avg);
        free(st);
    }
    s->state = NULL;
}

static int fedavgm_aggregate_fit(fed_strategy *s, int round, const fed_client_res *res, int k, float *global) {
    (void)round;
    int rc = fed_strategy_check_fit(s, res, k, global, 0);
    if (rc) return rc;
    fedavgm_state *st = s->state;
    rc = fed_strategy_weighted_delta(res, k, st->avg, s->n);
    if (rc) return rc;
    fed_vec_axpby(st->v, 1.0f, st->avg, (float)s->p.server_momentum, s->n);
    fed_vec_axpy(global, (float)s->p.server_lr, st->v, s->n);
    return 0;
}

/* Only the momentum persists; avg is rebuilt every round. */
static int fedavgm_save_state(fed_strategy *s, float **vecs, size_t *lens, int max) {
    fedavgm_state *st = s->state;
    return fed_strategy_state_vecs(s, &st->v, 1, vecs, lens, max);
}

int fed_strategy_init_fedavgm(fed_strategy *s) {
    int rc = fed_strategy_check_positive(s, "server_lr", s->p.server_lr);
    if (!rc) rc = fed_strategy_check_unit(s, "server_momentum", s->p.server_momentum);
    if (rc) return rc;
    fedavgm_state *st = calloc(1, sizeof *st);
    if (!st) return fed_error(FED_ENOMEM, "fedavgm: cannot allocate state");
    s->state = st;
    s->free_state = fedavgm_free;
    st->v = fed_strategy_alloc(s, "the momentum");
    st->avg = fed_strategy_alloc(s, "the averaged delta");
    if (!st->v || !st->avg) return FED_ENOMEM;
    s->aggregate_fit = fedavgm_aggregate_fit;
    s->save_state = fedavgm_save_state;
    return 0;
}
