/* Who masks with whom. Full graph: everyone (Bonawitz et al. CCS 2017). SecAgg+
 * (Bell et al. CCS 2020): a k-regular Harary graph H(k, n) - ring positions joined
 * to their k/2 nearest positions on each side - laid over a random permutation
 * of the client ids drawn from server randomness. Also the (k, t) parameter
 * choice, reimplemented after Google's production finder
 * (fcp/secagg/server/graph_parameter_finder.cc and distribution_utilities.cc in
 * github.com/google-parfait/federated-compute): security parameter 40,
 * correctness parameter 20; hypergeometric tail bounds on adversarial and
 * surviving neighbours plus a union bound on the Harary ring getting cut. */
#include <math.h>
#include <stdlib.h>
#include <sodium.h>
#include "federate/error.h"
#include "secagg_internal.h"

int sa_graph_init(sa_graph *g, int n, int k, const uint8_t seed[32]) {
    memset(g, 0, sizeof *g);
    g->n = n;
    g->full = k <= 0 || k >= n - 1;
    g->k = g->full ? n - 1 : k;
    if (g->full) return 0;
    g->perm = malloc((size_t)n * sizeof *g->perm);
    g->pos = malloc((size_t)n * sizeof *g->pos);
    if (!g->perm || !g->pos) {
        sa_graph_free(g);
        return fed_error(FED_ENOMEM, "secagg graph: %d clients", n);
    }
    for (int i = 0; i < n; i++) g->perm[i] = (uint32_t)i;
    sa_xof x;
    sa_xof_init(&x, seed, "federate-secagg-graph");
    for (int i = n - 1; i > 0; i--) { /* Fisher-Yates */
        uint32_t j = sa_xof_below(&x, (uint32_t)i + 1);
        uint32_t t = g->perm[i];
        g->perm[i] = g->perm[j];
        g->perm[j] = t;
    }
    for (int i = 0; i < n; i++) g->pos[g->perm[i]] = (uint32_t)i;
    return 0;
}

void sa_graph_free(sa_graph *g) {
    free(g->perm);
    free(g->pos);
    g->perm = g->pos = NULL;
}

int sa_graph_degree(const sa_graph *g) { return g->k; }

int sa_graph_is_nbr(const sa_graph *g, uint32_t u, uint32_t v) {
    if (u == v || u >= (uint32_t)g->n || v >= (uint32_t)g->n) return 0;
    if (g->full) return 1;
    uint32_t a = g->pos[u], b = g->pos[v];
    uint32_t d = a > b ? a - b : b - a;
    if ((uint32_t)g->n - d < d) d = (uint32_t)g->n - d;
    return d <= (uint32_t)(g->k / 2);
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

int sa_graph_nbrs(const sa_graph *g, uint32_t u, uint32_t *out) {
    int c = 0;
    if (g->full) {
        for (int v = 0; v < g->n; v++)
            if ((uint32_t)v != u) out[c++] = (uint32_t)v;
        return c;
    }
    uint32_t p = g->pos[u], n = (uint32_t)g->n;
    for (int j = 1; j <= g->k / 2; j++) {
        out[c++] = g->perm[(p + (uint32_t)j) % n];
        out[c++] = g->perm[(p + n - (uint32_t)j) % n];
    }
    qsort(out, (size_t)c, sizeof *out, cmp_u32);
    return c;
}

/* ---- hypergeometric distribution: `sampled` draws without replacement from
 * `total` items of which `marked` are marked; helpers take the counted class. */
typedef struct hyp { int total, marked, sampled; } hyp;

static double hyp_pmf_c(const hyp *h, double x, int counted) {
    int N = h->total, n = h->sampled;
    if (x < 0 || x > n || x > counted) return 0;
    if (N + x < counted + n) return 0;
    double l = lgamma(n + 1.0) + lgamma(counted + 1.0) + lgamma(N - counted + 1.0) + lgamma(N - n + 1.0) -
               lgamma(x + 1) - lgamma(n - x + 1) - lgamma(counted - x + 1) - lgamma(N + 1.0) -
               lgamma(N - n - counted + x + 1);
    return exp(l);
}

/* P[X <= x], summing the pmf downwards until the terms no longer matter */
static double hyp_cdf_c(const hyp *h, double x, int counted) {
    int N = h->total, n = h->sampled;
    double p = hyp_pmf_c(h, x, counted), r = 0;
    while (p > r * 1e-16) {
        r += p;
        p *= x;
        p *= N - counted - n + x;
        p /= counted - x + 1;
        p /= n - x + 1;
        x -= 1;
    }
    return r;
}

static double hyp_cdf(const hyp *h, double x) {
    x = floor(x);
    double mean = h->marked * (double)h->sampled / h->total;
    if (x > mean) return 1 - hyp_cdf_c(h, h->sampled - x - 1, h->total - h->marked);
    return hyp_cdf_c(h, x, h->marked);
}

/* largest x with P[X <= x] < q, searching upwards from a Hoeffding lower bound */
static double hyp_quantile_c(const hyp *h, double q, int counted) {
    int N = h->total, n = h->sampled;
    double r = -1, basic = counted + n - N - 1.0;
    double fancy = n * ((double)counted / N - sqrt(-log(q) / (2.0 * n)));
    if (basic > r) r = basic;
    if (fancy > r) r = fancy;
    r = floor(r);
    double cdf = hyp_cdf_c(h, r, counted), p = hyp_pmf_c(h, r, counted);
    while (cdf < q && r < n) {
        if (p > 0) {
            p /= r + 1;
            p /= N - counted - n + r + 1;
            p *= counted - r;
            p *= n - r;
        } else {
            p = hyp_pmf_c(h, r + 1, counted);
        }
        cdf += p;
        r += 1;
    }
    return r - 1;
}

static double hyp_quantile(const hyp *h, double q, int complement) {
    if (q > 0.5) {
        q = 1 - q;
        complement = !complement;
    }
    if (complement) return h->sampled - hyp_quantile_c(h, q, h->total - h->marked) - 1;
    return hyp_quantile_c(h, q, h->marked);
}

#define SEC_PARAM 40.0
#define COR_PARAM 20.0
#define SMALL 1e-14 /* keeps float rounding from flooring in the insecure direction */

/* Union bound on a random Harary graph losing connectivity once adversarial and
 * dropped clients are removed: that needs k/2 consecutive removed positions in
 * two disjoint places of the ring. */
static double log_prob_disconnected(int N, int k, double adv, double drop) {
    double lpairs = log((double)N) + log((double)(N - k - 1)) - log(2.0);
    int bad = (int)floor((adv + SMALL) * N) + (int)floor((drop + SMALL) * N);
    if (k > bad) return -HUGE_VAL;
    return lpairs + lgamma(bad + 1.0) + lgamma(N - k + 1.0) - lgamma(N + 1.0) - lgamma(bad - k + 1.0);
}

static int check_degree(int N, int k, double adv, double drop, int semi_malicious, int *t_out) {
    const double sec_event = SEC_PARAM + 1; /* the security budget split over two bad events */
    if (log_prob_disconnected(N, k, adv, drop) >= -sec_event * log(2.0)) return 0;
    int max_adv = (int)floor((adv + SMALL) * N);
    int min_surv = (int)ceil((1 - drop - SMALL) * N);
    hyp ha = {N, max_adv, k}, hs = {N, min_surv, k};
    /* t1: adversarial neighbours exceed t1 with probability <= 2^-41 / N;
     * t2: surviving neighbours are <= t2 with probability about 2^-20 / N */
    double t1 = hyp_quantile(&ha, pow(2, -sec_event) / N, 1);
    double qc = pow(2, -COR_PARAM) / N;
    double t2 = hyp_quantile(&hs, qc, 0);
    if (hyp_cdf(&hs, t2) < qc) t2 += 1;
    /* semi-malicious: 2t - k must also exceed the adversarial neighbours */
    if (semi_malicious) t1 = ceil((t1 + k - 1.25) / 2);
    if (t2 <= t1) return 0;
    double t = t1 + 1 < 2 ? 2 : t1 + 1; /* t in (t1, t2]; the smallest is cheapest */
    *t_out = (int)t;
    return 1;
}

int fed_secagg_harary_params(int n, double adv, double drop, int semi_malicious, int *degree, int *threshold) {
    if (n <= 0 || n > 1000000) return fed_error(FED_ERANGE, "secagg params: clients %d outside 1..1000000", n);
    if (!(adv >= 0 && adv < 1)) return fed_error(FED_ERANGE, "secagg params: adversarial fraction %g outside [0, 1)", adv);
    if (!(drop >= 0 && drop < 1)) return fed_error(FED_ERANGE, "secagg params: dropout fraction %g outside [0, 1)", drop);
    if (!semi_malicious && adv + drop > 0.9)
        return fed_error(FED_ERANGE, "secagg params: semi-honest needs adversarial + dropout <= 0.9 (got %g)", adv + drop);
    if (semi_malicious && adv + 2 * drop > 0.9)
        return fed_error(FED_ERANGE, "secagg params: semi-malicious needs adversarial + 2 dropout <= 0.9 (got %g)",
                         adv + 2 * drop);
    for (int k = 2; k < n - 1; k += 2) {
        int t;
        if (check_degree(n, k, adv, drop, semi_malicious, &t)) {
            *degree = k;
            *threshold = t;
            return 0;
        }
    }
    return fed_error(FED_ERANGE, "secagg params: no Harary degree below %d clients meets security 2^-40 and "
                                 "failure 2^-20 (use the full graph)", n - 1);
}

int fed_secagg_cfg_default(fed_secagg_cfg *cfg, int n) {
    memset(cfg, 0, sizeof *cfg);
    cfg->n = n;
    cfg->degree = 0;
    cfg->threshold = n / 2 + 1;
    cfg->ring_bits = 32;
    cfg->threads = 1;
    if (sodium_init() < 0) return fed_error(FED_EINTERNAL, "secagg: libsodium failed to initialize");
    randombytes_buf(cfg->graph_seed, sizeof cfg->graph_seed);
    return 0;
}

int fed_secagg_cfg_plus(fed_secagg_cfg *cfg, double adv, double drop, int semi_malicious) {
    int k, t, n = cfg->n;
    int rc = fed_secagg_harary_params(n, adv, drop, semi_malicious, &k, &t);
    if (rc == 0) {
        cfg->degree = k;
        cfg->threshold = t;
        return 0;
    }
    if (n < 1 || !(adv >= 0 && adv < 1) || !(drop >= 0 && drop < 1)) return rc;
    /* Full graph (n holders counting one's own share): t must exceed the
     * adversaries (semi-honest) or half the clients plus them (semi-malicious),
     * and be reachable by the survivors. */
    int nadv = (int)ceil(adv * n - SMALL);
    t = semi_malicious ? (int)ceil((n + nadv) / 2.0 + SMALL) : nadv + 1;
    if (t < 2) t = n >= 2 ? 2 : 1;
    int surv = (int)floor((1 - drop) * n + SMALL);
    if (t > surv || t > n)
        return fed_error(FED_ERANGE, "secagg params: %d clients, adversarial %g, dropout %g: threshold %d exceeds "
                                     "the %d expected survivors", n, adv, drop, t, surv);
    cfg->degree = 0;
    cfg->threshold = t;
    fed_clear_error();
    return 0;
}

int fed_secagg_cfg_check(const fed_secagg_cfg *cfg) {
    if (!cfg) return fed_error(FED_EINVAL, "secagg: no configuration");
    if (cfg->n < 1 || cfg->n > (1 << 24)) return fed_error(FED_EINVAL, "secagg: clients %d outside 1..2^24", cfg->n);
    int full = cfg->degree <= 0 || cfg->degree >= cfg->n - 1;
    int k = full ? cfg->n - 1 : cfg->degree;
    if (!full && (k % 2 != 0 || k < 2))
        return fed_error(FED_EINVAL, "secagg: Harary degree %d must be even and >= 2 (or use the full graph)", k);
    if (cfg->threshold < 1 || cfg->threshold > k + 1)
        return fed_error(FED_EINVAL, "secagg: threshold %d outside 1..degree+1 = %d", cfg->threshold, k + 1);
    if (cfg->consistency && !cfg->sign_pks)
        return fed_error(FED_EINVAL, "secagg: the consistency check needs every client's signing public key (sign_pks)");
    sa_ring r;
    return sa_ring_init(&r, cfg);
}
