/* The strategy registry (name -> constructor in src/fl/strategies/) and the
 * pieces most strategies share: weighted averaging of client deltas, the default
 * client configuration and the example-weighted evaluation average. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "federate/error.h"
#include "federate/strategy.h"
#include "federate/vec.h"
#include "fl/strategies/strategies.h"

void fed_strategy_params_default(fed_strategy_params *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->num_clients = 0;
    p->server_lr = 1.0;
    p->server_momentum = 0.9;
    p->beta1 = 0.9;
    p->beta2 = 0.99;
    p->tau = 1e-3;
    p->mu = 0.01;
    p->q = 1.0;
    p->lipschitz = 0.0; /* 0: q-FedAvg uses 1 / the client's learning rate */
}

/* One list, expanded twice, so the registry and fed_strategy_names() cannot drift. */
#define FED_STRATEGY_LIST(X) \
    X(fedavg) X(fedavgm) X(fedprox) X(scaffold) X(qfedavg) X(fedadam) X(fedyogi) X(fedadagrad) X(fednova)

typedef struct {
    const char *name;
    int (*init)(fed_strategy *s);
} strategy_entry;

#define ENTRY(name) {#name, fed_strategy_init_##name},
static const strategy_entry registry[] = {FED_STRATEGY_LIST(ENTRY)};
#undef ENTRY
#define NUM_STRATEGIES (sizeof registry / sizeof registry[0])

#define NAME(name) #name,
static const char *const names[] = {FED_STRATEGY_LIST(NAME) NULL};
#undef NAME

const char *const *fed_strategy_names(void) { return names; }

static int unknown_name(const char *name) {
    char known[256];
    size_t len = 0;
    known[0] = '\0';
    for (size_t i = 0; i < NUM_STRATEGIES; i++) {
        int w = snprintf(known + len, sizeof known - len, "%s%s", i ? ", " : "", registry[i].name);
        if (w < 0 || (size_t)w >= sizeof known - len) break;
        len += (size_t)w;
    }
    return fed_error(FED_ENOTFOUND, "unknown strategy '%s' (known: %s)", name, known);
}

int fed_strategy_create(fed_strategy **out, const char *name, const fed_strategy_params *p, size_t n) {
    if (!out) return fed_error(FED_EINVAL, "fed_strategy_create: out is NULL");
    *out = NULL;
    if (!name) return fed_error(FED_EINVAL, "fed_strategy_create: name is NULL");
    const strategy_entry *e = NULL;
    for (size_t i = 0; i < NUM_STRATEGIES; i++)
        if (strcmp(registry[i].name, name) == 0) e = &registry[i];
    if (!e) return unknown_name(name);
    if (n == 0) return fed_error(FED_EINVAL, "fed_strategy_create: %s: model size must be > 0", name);

    fed_strategy *s = calloc(1, sizeof *s);
    if (!s) return fed_error(FED_ENOMEM, "fed_strategy_create: cannot allocate strategy %s", name);
    s->name = e->name; /* static storage: outlives any caller's buffer */
    s->n = n;
    if (p)
        s->p = *p;
    else
        fed_strategy_params_default(&s->p);
    s->configure_fit = fed_strategy_configure_fit_default;
    s->aggregate_evaluate = fed_strategy_aggregate_evaluate_default;
    int rc = e->init(s);
    if (rc) {
        fed_strategy_free(s); /* constructors set free_state as soon as they own memory */
        return rc;
    }
    *out = s;
    return 0;
}

void fed_strategy_free(fed_strategy *s) {
    if (!s) return;
    if (s->free_state) s->free_state(s);
    free(s);
}

float *fed_strategy_alloc(const fed_strategy *s, const char *what) {
    float *x = calloc(s->n, sizeof *x);
    if (!x) fed_error(FED_ENOMEM, "%s: cannot allocate %s (%zu floats)", s->name, what, s->n);
    return x;
}

int fed_strategy_state_vecs(fed_strategy *s, float *const *state, int k, float **vecs, size_t *lens, int max) {
    if (!vecs || !lens || max < k)
        return fed_error(FED_EINVAL, "%s: save_state needs room for %d state vectors (got %d)", s->name, k,
                         vecs && lens ? max : 0);
    for (int i = 0; i < k; i++) {
        vecs[i] = state[i];
        lens[i] = s->n;
    }
    return k;
}

int fed_strategy_check_fit(const fed_strategy *s, const fed_client_res *res, int k, const float *global,
                           int need_delta_c) {
    const char *name = s ? s->name : "strategy";
    if (!s || !res || !global) return fed_error(FED_EINVAL, "%s: aggregate_fit: NULL argument", name);
    if (k < 1) return fed_error(FED_EINVAL, "%s: aggregate_fit needs at least one result (got %d)", name, k);
    for (int i = 0; i < k; i++) {
        if (!res[i].delta) return fed_error(FED_EINVAL, "%s: client %d sent no delta", name, res[i].client);
        if (need_delta_c && !res[i].delta_c)
            return fed_error(FED_EINVAL, "%s: client %d sent no delta_c (was scaffold set in its instructions?)",
                             name, res[i].client);
        if (res[i].num_examples < 0)
            return fed_error(FED_EINVAL, "%s: client %d reports %ld examples", name, res[i].client,
                             res[i].num_examples);
    }
    return 0;
}

int fed_strategy_sum_deltas(const fed_client_res *res, int k, const double *w, int use_delta_c, float *out,
                            size_t n) {
    const float **xs = malloc((size_t)(k > 0 ? k : 1) * sizeof *xs);
    double *ws = malloc((size_t)(k > 0 ? k : 1) * sizeof *ws);
    if (!xs || !ws) {
        free(xs);
        free(ws);
        return fed_error(FED_ENOMEM, "cannot allocate the index of %d client updates", k);
    }
    size_t m = 0;
    for (int i = 0; i < k; i++) {
        if (w[i] == 0) continue; /* skipped clients contribute nothing, not even a NaN */
        xs[m] = use_delta_c ? res[i].delta_c : res[i].delta;
        ws[m] = w[i];
        m++;
    }
    /* fed_vec_weighted_sum accumulates in double in index (= client) order. */
    if (m)
        fed_vec_weighted_sum(out, (const float *const *)xs, ws, m, n);
    else
        fed_vec_zero(out, n);
    free(xs);
    free(ws);
    return 0;
}

int fed_strategy_weighted_delta(const fed_client_res *res, int k, float *out, size_t n) {
    if (!res || !out || k < 1)
        return fed_error(FED_EINVAL, "fed_strategy_weighted_delta: need results and an output (k = %d)", k);
    long total = 0;
    for (int i = 0; i < k; i++) {
        if (!res[i].delta)
            return fed_error(FED_EINVAL, "fed_strategy_weighted_delta: client %d sent no delta", res[i].client);
        if (res[i].num_examples < 0)
            return fed_error(FED_EINVAL, "fed_strategy_weighted_delta: client %d reports %ld examples",
                             res[i].client, res[i].num_examples);
        total += res[i].num_examples;
    }
    if (total == 0)
        return fed_error(FED_EINVAL, "fed_strategy_weighted_delta: the %d clients hold 0 examples in total", k);
    double *w = malloc((size_t)k * sizeof *w);
    if (!w) return fed_error(FED_ENOMEM, "fed_strategy_weighted_delta: cannot allocate %d weights", k);
    for (int i = 0; i < k; i++) w[i] = (double)res[i].num_examples / (double)total;
    int rc = fed_strategy_sum_deltas(res, k, w, 0, out, n);
    free(w);
    return rc;
}

int fed_strategy_configure_fit_default(fed_strategy *s, int round, const int *clients, int k,
                                       const fed_client_ins *defaults, fed_client_ins *ins) {
    (void)s;
    (void)round;
    (void)clients;
    if (k < 0) return fed_error(FED_EINVAL, "configure_fit: negative client count %d", k);
    if (k > 0 && (!defaults || !ins)) return fed_error(FED_EINVAL, "configure_fit: NULL defaults or output");
    for (int i = 0; i < k; i++) ins[i] = *defaults;
    return 0;
}

int fed_strategy_aggregate_evaluate_default(fed_strategy *s, int round, const fed_eval_res *res, int k, double *loss,
                                            double *accuracy) {
    (void)s;
    (void)round;
    if (!res || k < 1) return fed_error(FED_EINVAL, "aggregate_evaluate: no evaluation results (k = %d)", k);
    long total = 0;
    for (int i = 0; i < k; i++) {
        if (res[i].num_examples < 0)
            return fed_error(FED_EINVAL, "aggregate_evaluate: client %d reports %ld examples", res[i].client,
                             res[i].num_examples);
        total += res[i].num_examples;
    }
    if (total == 0)
        return fed_error(FED_EINVAL, "aggregate_evaluate: the %d clients evaluated 0 examples in total", k);
    double l = 0, a = 0;
    for (int i = 0; i < k; i++) {
        double w = (double)res[i].num_examples / (double)total;
        l += w * res[i].loss;
        a += w * res[i].accuracy;
    }
    if (loss) *loss = l;
    if (accuracy) *accuracy = a;
    return 0;
}

int fed_strategy_mean_only(const char *name) {
    static const char *const ok[] = {"fedavg", "fedavgm", "fedprox", "fedadam", "fedyogi", "fedadagrad", NULL};
    for (const char *const *s = ok; *s; s++)
        if (name && strcmp(name, *s) == 0) return 1;
    return 0;
}
