/* Client selection for a round: uniform without replacement; stratified by each
 * client's dominant label (strata sampled in proportion to their size); and
 * capability-weighted, p_k proportional to n_k * capability_k / staleness_k
 * (staleness = rounds since last selected), sampled without replacement with
 * Efraimidis-Spirakis keys u^(1/w). The system-aware selectors (speed, oort,
 * power-of-choice) live in selection_sys.c. Deterministic in (seed, round). */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "federate/error.h"
#include "federate/fl.h"
#include "federate/rng.h"

int fed_selector_init(fed_selector *s, const char *kind, int num_clients) {
    memset(s, 0, sizeof *s);
    if (strcmp(kind, "uniform") == 0) s->kind = 0;
    else if (strcmp(kind, "stratified") == 0) s->kind = 1;
    else if (strcmp(kind, "capability") == 0) s->kind = 2;
    else if (strcmp(kind, "speed") == 0) s->kind = 3;
    else if (strcmp(kind, "oort") == 0) s->kind = 4;
    else if (strcmp(kind, "power-of-choice") == 0) s->kind = 5;
    else return fed_error(FED_EINVAL, "client_selection '%s' is not one of uniform, stratified, capability, speed, "
                                      "oort, power-of-choice", kind);
    s->num_clients = num_clients;
    s->oort_alpha = 2.0;
    s->oort_epsilon = 0.9;
    s->last_selected = calloc((size_t)num_clients, sizeof(int));
    s->loss = malloc((size_t)num_clients * sizeof(double));
    s->duration = malloc((size_t)num_clients * sizeof(double));
    if (!s->last_selected || !s->loss || !s->duration) {
        fed_selector_free(s);
        return fed_error(FED_ENOMEM, "client selection: out of memory");
    }
    for (int i = 0; i < num_clients; i++) s->loss[i] = s->duration[i] = NAN;
    return 0;
}

void fed_selector_free(fed_selector *s) {
    if (!s) return;
    free(s->last_selected);
    free(s->loss);
    free(s->duration);
    s->last_selected = NULL;
    s->loss = s->duration = NULL;
}

static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

typedef struct keyed { double key; int id; } keyed;

static int cmp_keyed_desc(const void *a, const void *b) {
    const keyed *x = a, *y = b;
    if (x->key != y->key) return x->key < y->key ? 1 : -1;
    return (x->id > y->id) - (x->id < y->id);
}

/* k of the ids in pool[0..n) uniformly, by a partial Fisher-Yates shuffle. */
static void pick_uniform(fed_rng *r, uint32_t *pool, int n, int k, int *out) {
    for (int i = 0; i < k; i++) {
        uint32_t j = (uint32_t)i + fed_rng_below(r, (uint32_t)(n - i));
        uint32_t t = pool[i];
        pool[i] = pool[j];
        pool[j] = t;
        out[i] = (int)pool[i];
    }
}

/* selection_sys.c: speed, oort, power-of-choice. */
int fed_select_sys(fed_selector *s, const fed_federation *fed, fed_rng *r, int round, int k,
                   const unsigned char *eligible, int *out);

int fed_select_clients(fed_selector *s, const fed_federation *fed, uint64_t seed, int round, int k, int *out) {
    return fed_select_clients_among(s, fed, seed, round, k, NULL, out);
}

int fed_select_clients_among(fed_selector *s, const fed_federation *fed, uint64_t seed, int round, int k,
                             const unsigned char *eligible, int *out) {
    int N = s->num_clients;
    int ne = N;
    if (eligible) {
        ne = 0;
        for (int i = 0; i < N; i++) ne += eligible[i] != 0;
    }
    if (k < 1 || k > ne) return fed_error(FED_EINVAL, "cannot select %d of %d clients (%d eligible)", k, N, ne);
    fed_rng r;
    fed_rng_init(&r, seed, (uint64_t)round, 0, FED_RNG_SELECT);
    uint32_t *pool = malloc((size_t)N * sizeof(uint32_t));
    if (!pool) return fed_error(FED_ENOMEM, "client selection: out of memory");
    int rc = 0;
    if (s->kind >= 3) {
        rc = fed_select_sys(s, fed, &r, round, k, eligible, out);
        if (rc) { free(pool); return rc; }
    } else if (s->kind == 0) {
        int m = 0;
        for (int i = 0; i < N; i++) if (!eligible || eligible[i]) pool[m++] = (uint32_t)i;
        pick_uniform(&r, pool, m, k, out);
    } else if (s->kind == 1) {
        /* strata = dominant label; each stratum gets k * size/N (largest remainders) */
        int C = fed->part.num_classes > 0 ? fed->part.num_classes : 1;
        int *stratum = malloc((size_t)N * sizeof(int)), *size = calloc((size_t)C, sizeof(int));
        int *quota = calloc((size_t)C, sizeof(int));
        double *rem = calloc((size_t)C, sizeof(double));
        if (!stratum || !size || !quota || !rem) {
            free(stratum); free(size); free(quota); free(rem); free(pool);
            return fed_error(FED_ENOMEM, "client selection: out of memory");
        }
        for (int i = 0; i < N; i++) {
            const int32_t *h = fed->part.label_counts ? fed->part.label_counts + (size_t)i * C : NULL;
            int best = 0;
            if (h) for (int c = 1; c < C; c++) if (h[c] > h[best]) best = c;
            stratum[i] = (!eligible || eligible[i]) ? best : -1;
            if (stratum[i] >= 0) size[best]++;
        }
        int given = 0;
        for (int c = 0; c < C; c++) {
            double exact = (double)k * size[c] / ne;
            quota[c] = (int)floor(exact);
            rem[c] = exact - quota[c];
            given += quota[c];
        }
        while (given < k) {   /* largest remainder first, ties to the lower label */
            int best = -1;
            for (int c = 0; c < C; c++)
                if (quota[c] < size[c] && (best < 0 || rem[c] > rem[best])) best = c;
            quota[best]++;
            rem[best] = -1;
            given++;
        }
        int pos = 0;
        for (int c = 0; c < C; c++) {
            int m = 0;
            for (int i = 0; i < N; i++) if (stratum[i] == c) pool[m++] = (uint32_t)i;
            pick_uniform(&r, pool, m, quota[c], out + pos);
            pos += quota[c];
        }
        free(stratum); free(size); free(quota); free(rem);
    } else {
        keyed *keys = malloc((size_t)N * sizeof(keyed));
        if (!keys) { free(pool); return fed_error(FED_ENOMEM, "client selection: out of memory"); }
        for (int i = 0; i < N; i++) {
            double nk = (double)fed->part.train_n[i];
            double cap = fed->capability ? fed->capability[i] : 1.0;
            double stale = s->last_selected[i] ? (double)(round - s->last_selected[i]) : (double)round;
            if (stale < 1) stale = 1;
            /* p ~ n * capability / staleness, staleness = rounds since the client
             * was last selected (never: the round number), at least 1 */
            double w = (!eligible || eligible[i]) ? nk * cap / stale : 0;
            double u = fed_rng_uniform(&r);
            keys[i].key = w > 0 ? log(u > 0 ? u : 1e-300) / w : -INFINITY;
            if (eligible && !eligible[i]) keys[i].key = -INFINITY;
            else if (eligible && !(keys[i].key > -DBL_MAX)) keys[i].key = -DBL_MAX;   /* still ahead of the ineligible */
            keys[i].id = i;
        }
        qsort(keys, (size_t)N, sizeof(keyed), cmp_keyed_desc);
        for (int i = 0; i < k; i++) out[i] = keys[i].id;
        free(keys);
    }
    free(pool);
    qsort(out, (size_t)k, sizeof(int), cmp_int);
    for (int i = 0; i < k; i++) s->last_selected[out[i]] = round;
    return rc;
}

void fed_selector_observe(fed_selector *s, int client, double loss, double duration) {
    if (!s || client < 0 || client >= s->num_clients || !s->loss) return;
    if (!isnan(loss)) s->loss[client] = loss;
    if (!isnan(duration)) s->duration[client] = duration;
}
