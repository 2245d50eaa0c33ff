/* RDP amplification by Poisson subsampling of records for any base mechanism: the general
 * upper bound of Zhu & Wang, "Poisson Subsampled Rényi Differential Privacy", ICML 2019
 * (PMLR 97), Theorem 5, and its use on the distributed discrete Gaussian (ddgauss.c) for
 * record-level DP-SGD under secure aggregation.
 *
 * For an integer order alpha >= 2, a base mechanism with RDP eps(j) at the orders
 * j = 2..alpha, run on a Poisson sample (each record kept with probability q) has
 *   eps'(alpha) <= 1/(alpha-1) log( (1-q)^(alpha-1) (alpha q - q + 1)
 *                                  + C(alpha,2) q^2 (1-q)^(alpha-2) e^eps(2)
 *                                  + 3 sum_{l=3}^{alpha} C(alpha,l) q^l (1-q)^(alpha-l)
 *                                                      e^((l-1) eps(l)) ),
 * under the add/remove-one-record relation. The statement and number are as Google's
 * distributed-DP accounting (federated/distributed_dp/accounting_utils.py, by the authors
 * of the distributed discrete Gaussian) restates them (the same sum without the factor 3
 * is its "Theorem 6" option, which the paper shows exact for the Gaussian and Laplace
 * mechanisms but not valid for every mechanism). For the Gaussian base, eps(l) =
 * l / (2 sigma^2), the sum without the 3 is Mironov et al.'s A_alpha, so this bound lies
 * between the tight sampled-Gaussian RDP and that plus log(3) / (alpha-1)
 * (tests/test_dp_subsample.c checks both sides). */
#include "federate/dp.h"
#include "federate/error.h"

#include <math.h>
#include <stdlib.h>

/* log 3, spelled out (no M_LN3 in ISO C). */
#define LOG3 1.09861228866810969140

/* k * log(1-q), with the empty power (1-q)^0 = 1 even at q = 1 (where 0 * -inf = NaN). */
static double pow_log(double k, double log1mq) {
    return k == 0 ? 0.0 : k * log1mq;
}

/* Running log-sum-exp that keeps the largest term apart and the rest as a sum of
 * exp(t - max) < ~alpha: the result max + log1p(rest) keeps the precision of a sum that is
 * 1 + tiny, which is the usual case (small q, the first term near 1). */
typedef struct {
    double max;  /* largest term so far, -inf while empty */
    double rest; /* sum of exp(t - max) over the other terms */
} lse_acc;

static void lse_add(lse_acc *s, double t) {
    if (t == -INFINITY) return;
    if (t > s->max) {
        s->rest = s->max == -INFINITY ? 0.0 : (s->rest + 1.0) * exp(s->max - t);
        s->max = t;
    } else {
        s->rest += exp(t - s->max);
    }
}

int fed_rdp_poisson_subsampled_bound(double q, const double *base_rdp, long alpha, double *rdp) {
    if (!rdp) return fed_error(FED_EINVAL, "dp: subsampled RDP: output is NULL");
    if (!(q >= 0.0 && q <= 1.0))
        return fed_error(FED_EINVAL, "dp: subsampled RDP: sampling rate q must be in [0, 1] (got %g)", q);
    if (alpha < 2)
        return fed_error(FED_EINVAL, "dp: subsampled RDP: the bound is for integer orders >= 2 (got %ld)", alpha);
    if (!base_rdp) return fed_error(FED_EINVAL, "dp: subsampled RDP: base RDP is NULL");
    for (long j = 2; j <= alpha; j++)
        if (!(base_rdp[j - 2] >= 0.0)) /* NaN too; +inf is allowed (no bound at that order) */
            return fed_error(FED_EINVAL, "dp: subsampled RDP: base RDP at order %ld must be >= 0 (got %g)", j,
                             base_rdp[j - 2]);
    /* A record that is never sampled leaks nothing, whatever the base mechanism. */
    if (q == 0.0) {
        *rdp = 0.0;
        return 0;
    }
    double a = (double)alpha, lq = log(q), l1mq = log1p(-q);
    lse_acc s = {-INFINITY, 0.0};
    /* the l = 0 and l = 1 terms together: (1-q)^(alpha-1) (1 + (alpha-1) q) */
    lse_add(&s, pow_log(a - 1.0, l1mq) + log1p((a - 1.0) * q));
    /* log C(alpha, l) built up term by term (C(a,l) = C(a,l-1) (a-l+1)/l): lgamma would be
     * shorter but sets the global signgam, which is not thread-safe */
    double log_binom = log(a); /* log C(alpha, 1) */
    for (long l = 2; l <= alpha; l++) {
        double dl = (double)l;
        log_binom += log(a - dl + 1.0) - log(dl);
        double e = base_rdp[l - 2];
        if (isinf(e)) { /* e^inf dominates: no finite bound at this order */
            *rdp = INFINITY;
            return 0;
        }
        double t = log_binom + dl * lq + pow_log(a - dl, l1mq) + (dl - 1.0) * e;
        if (l >= 3) t += LOG3; /* the theorem's factor 3 on the l >= 3 terms */
        lse_add(&s, t);
    }
    double r = (s.max + log1p(s.rest)) / (a - 1.0);
    /* The log of a sum >= (1-q)^alpha + ... is >= 0 in exact arithmetic; a rounding hair
     * below is no privacy loss and fed_rdp_add refuses negatives. */
    *rdp = r > 0.0 ? r : 0.0;
    return 0;
}

/* Rounded-up integer order at which an accountant order is evaluated: the bound exists
 * only at integers, and RDP is non-decreasing in the order (van Erven & Harremoës 2014,
 * Thm. 3), so the bound at ceil(order) also bounds every order below it, including the
 * orders in (1, 2), which get order 2's value. 0 when the order is beyond the cap (or
 * +inf), where no amplified bound is computed. */
static long bound_order(double order) {
    if (!(order <= (double)FED_RDP_SUBSAMPLED_MAX_ORDER)) return 0;
    double c = ceil(order);
    return c < 2.0 ? 2 : (long)c;
}

int fed_dp_subsampled_ddgauss_rdp(double q, double l2, double sigma2, int n, double dim, const double *orders,
                                  int norders, double *rdp) {
    int rc;
    if (!(q >= 0.0 && q <= 1.0))
        return fed_error(FED_EINVAL, "dp: subsampled ddgauss RDP: sampling rate q must be in [0, 1] (got %g)", q);
    /* The unamplified curve at the requested orders: it validates l2, sigma2, n, dim and
     * the orders, and it is itself a bound for the subsampled mechanism (sampling never
     * hurts: the sampled outputs are mixtures of the base's, and Rényi divergence is
     * jointly quasi-convex), used where it is smaller and beyond the cap. */
    if ((rc = fed_dp_ddgauss_rdp(l2, sigma2, n, dim, orders, norders, rdp))) return rc;
    if (q == 0.0) {
        for (int i = 0; i < norders; i++) rdp[i] = 0.0;
        return 0;
    }
    long top = 0;
    for (int i = 0; i < norders; i++) {
        long k = bound_order(orders[i]);
        if (k > top) top = k;
    }
    if (top == 0) return 0; /* only orders past the cap: the unamplified curve stands */
    /* The base curve at the integer orders 2..top, which the theorem sums over. */
    size_t nint = (size_t)(top - 1);
    double *iord = malloc(nint * sizeof *iord), *base = malloc(nint * sizeof *base);
    if (!iord || !base) {
        free(iord);
        free(base);
        return fed_error(FED_ENOMEM, "dp: subsampled ddgauss RDP: allocating %zu orders", nint);
    }
    for (size_t j = 0; j < nint; j++) iord[j] = (double)(j + 2);
    rc = fed_dp_ddgauss_rdp(l2, sigma2, n, dim, iord, (int)nint, base);
    for (int i = 0; !rc && i < norders; i++) {
        long k = bound_order(orders[i]);
        if (k == 0) continue;
        double b;
        if ((rc = fed_rdp_poisson_subsampled_bound(q, base, k, &b))) break;
        if (b < rdp[i]) rdp[i] = b;
    }
    free(iord);
    free(base);
    return rc;
}

int fed_rdp_compose_subsampled_ddgauss(fed_rdp *a, double q, double l2, double sigma2, int n, double dim,
                                       long steps) {
    int rc, no;
    const double *orders;
    if (!a) return fed_error(FED_EINVAL, "dp: RDP accountant is NULL");
    if (steps < 0) return fed_error(FED_EINVAL, "dp: subsampled ddgauss RDP: steps must be >= 0 (got %ld)", steps);
    if ((rc = fed_rdp_orders(a, &orders, NULL, &no))) return rc;
    double *r = malloc((size_t)no * sizeof *r);
    if (!r) return fed_error(FED_ENOMEM, "dp: subsampled ddgauss RDP: allocating %d orders", no);
    /* computed (and so validated) even for steps == 0, so bad arguments are refused alike */
    rc = fed_dp_subsampled_ddgauss_rdp(q, l2, sigma2, n, dim, orders, no, r);
    if (!rc && steps > 0) { /* steps == 0 adds nothing, not 0 * inf = NaN */
        for (int i = 0; i < no; i++) r[i] *= (double)steps;
        rc = fed_rdp_add(a, r, no);
    }
    free(r);
    return rc;
}
