/* System-aware client selection (client_selection speed | oort | power-of-choice).
 * speed: p_i proportional to the device's speed (Efraimidis-Spirakis keys).
 * oort: Lai et al., "Oort: Efficient Federated Learning via Guided Participant
 * Selection", OSDI 2021, sec. 4: statistical utility |B_i| sqrt(mean loss^2)
 * (here |B_i| times the reported mean loss) plus a staleness bonus, times the
 * system penalty (T / t_i)^alpha when t_i > T, exploitation of the best and
 * epsilon-greedy exploration of untried clients (faster ones likelier).
 * power-of-choice: Cho, Wang, Joshi, "Client Selection in Federated Learning:
 * Convergence Analysis and Power-of-Choice Selection Strategies", 2020: d
 * candidates sampled by data size, the k with the highest local loss kept. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "federate/error.h"
#include "federate/fl.h"
#include "federate/rng.h"

int fed_select_sys(fed_selector *s, const fed_federation *fed, fed_rng *r, int round, int k,
                   const unsigned char *eligible, int *out);

typedef struct sk { double key; int id; } sk;

static int cmp_sk_desc(const void *a, const void *b) {
    const sk *x = a, *y = b;
    if (x->key != y->key) return x->key < y->key ? 1 : -1;
    return (x->id > y->id) - (x->id < y->id);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Efraimidis-Spirakis key for weight w: larger keys win; w <= 0 never does
 * unless nothing else is left (then by id). Draws one uniform per call. */
static double es_key(fed_rng *r, double w) {
    double u = fed_rng_uniform(r);
    return w > 0 ? log(u > 0 ? u : 1e-300) / w : -INFINITY;
}

/* The first m of cand[0..n) by weighted sampling without replacement. */
static void weighted_pick(fed_rng *r, sk *cand, int n, const double *w, int m) {
    for (int i = 0; i < n; i++) cand[i].key = es_key(r, w[i]);
    qsort(cand, (size_t)n, sizeof *cand, cmp_sk_desc);
    (void)m;
}

int fed_select_sys(fed_selector *s, const fed_federation *fed, fed_rng *r, int round, int k,
                   const unsigned char *eligible, int *out) {
    int N = s->num_clients;
    sk *c = malloc((size_t)N * sizeof *c);
    double *w = malloc((size_t)N * sizeof *w);
    if (!c || !w) {
        free(c); free(w);
        return fed_error(FED_ENOMEM, "client selection: out of memory");
    }
    int n = 0;
    for (int i = 0; i < N; i++)
        if (!eligible || eligible[i]) c[n++].id = i;
    if (s->kind == 3) {
        for (int i = 0; i < n; i++) w[i] = s->speed ? s->speed[c[i].id] : 1.0;
        weighted_pick(r, c, n, w, k);
        for (int i = 0; i < k; i++) out[i] = c[i].id;
    } else if (s->kind == 5) {
        int d = s->poc_candidates > 0 ? s->poc_candidates : 2 * k;
        if (d < k) d = k;
        if (d > n) d = n;
        for (int i = 0; i < n; i++) w[i] = (double)fed->part.train_n[c[i].id];
        weighted_pick(r, c, n, w, d);
        /* of the d candidates, the highest last loss (never seen: first) */
        for (int i = 0; i < d; i++) {
            double l = s->loss[c[i].id];
            c[i].key = isnan(l) ? INFINITY : l;
        }
        qsort(c, (size_t)d, sizeof *c, cmp_sk_desc);
        for (int i = 0; i < k; i++) out[i] = c[i].id;
    } else {
        /* oort: split into explored (a loss reported) and unexplored */
        double eps = s->oort_epsilon * pow(0.98, round - 1);
        if (eps < 0.2 && s->oort_epsilon >= 0.2) eps = 0.2;
        if (eps > s->oort_epsilon) eps = s->oort_epsilon;
        int ne = 0;
        for (int i = 0; i < n; i++) ne += !isnan(s->loss[c[i].id]);
        int nu = n - ne;
        int explore = (int)lround(eps * k);
        if (explore > nu) explore = nu;
        if (k - explore > ne) explore = k - ne;
        int exploit = k - explore;
        /* preferred duration T: the median of the known durations */
        double T = NAN;
        {
            int m = 0;
            for (int i = 0; i < n; i++) if (!isnan(s->duration[c[i].id])) w[m++] = s->duration[c[i].id];
            if (m > 0) {
                qsort(w, (size_t)m, sizeof *w, cmp_double);
                T = w[m / 2];
            }
        }
        sk *ex = malloc((size_t)(ne + 1) * sizeof *ex), *un = malloc((size_t)(nu + 1) * sizeof *un);
        if (!ex || !un) {
            free(ex); free(un); free(c); free(w);
            return fed_error(FED_ENOMEM, "client selection: out of memory");
        }
        int a = 0, b = 0;
        double umax = 0;
        for (int i = 0; i < n; i++) {
            int id = c[i].id;
            if (isnan(s->loss[id])) { un[b++].id = id; continue; }
            double u = (double)fed->part.train_n[id] * fabs(s->loss[id]);
            ex[a].id = id;
            ex[a++].key = u;
            if (u > umax) umax = u;
        }
        for (int i = 0; i < a; i++) {
            int id = ex[i].id;
            double u = umax > 0 ? ex[i].key / umax : 0;
            /* temporal uncertainty: clients not picked for a while come back */
            int last = s->last_selected[id] > 0 ? s->last_selected[id] : 1;
            if (round > 1) u += sqrt(0.1 * log((double)round) / (double)last);
            double t = s->duration[id];
            if (!isnan(T) && !isnan(t) && t > T && T > 0) u *= pow(T / t, s->oort_alpha);
            ex[i].key = u;
        }
        qsort(ex, (size_t)a, sizeof *ex, cmp_sk_desc);
        for (int i = 0; i < exploit; i++) out[i] = ex[i].id;
        /* exploration: untried clients, faster devices likelier */
        for (int i = 0; i < b; i++) w[i] = s->speed ? s->speed[un[i].id] : 1.0;
        weighted_pick(r, un, b, w, explore);
        for (int i = 0; i < explore; i++) out[exploit + i] = un[i].id;
        free(ex); free(un);
    }
    free(c); free(w);
    return 0;
}
