/* RDP accountant for the Poisson-subsampled Gaussian mechanism: Mironov, Talwar, Zhang
 * 2019, "Rényi Differential Privacy of the Sampled Gaussian Mechanism" (Sec. 3.3, A_alpha),
 * and (epsilon, delta) conversion by Canonne, Kamath, Steinke 2020 Prop. 12.
 * Numerically it follows Google's dp_accounting RdpAccountant, so results match it. */
#include "federate/rdp.h"
#include "federate/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct fed_rdp {
    int n;
    double *orders;
    double *rdp;
};

/* dp_accounting gives up on the fractional-order series after this many terms and
 * reports +inf for that order (it is then ignored by the conversion). */
#define FRAC_MAX_TERMS 1000
/* Integer orders cost O(order) terms; beyond this use +inf as the order instead. */
#define MAX_FINITE_ORDER 1e7

/* log(sqrt(pi)), spelled out: M_PI is POSIX, not ISO C. */
#define LOG_SQRT_PI 0.57236494292470008707

/* ---- log-space helpers: a number x >= 0 is held as log(x), 0 as -inf ---- */

static double log_add(double lx, double ly) {
    double a = fmin(lx, ly), b = fmax(lx, ly);
    if (a == -INFINITY) return b;
    return log1p(exp(a - b)) + b;
}

/* log(erfc(x)), accurate where erfc(x) underflows (x large). */
static double log_erfc(double x) {
    if (x < 25.0) return log(erfc(x)); /* erfc(25) ~ 1e-273 is still a normal double */
    /* Asymptotic (Laurent) series of log erfc at +inf; the omitted x^-10 term is < 1e-12
     * here. */
    double x2 = x * x, r = 1.0 / x2;
    return -LOG_SQRT_PI - log(x) - x2 +
           r * (-0.5 + r * (0.625 + r * (-37.0 / 24.0 + r * (353.0 / 64.0))));
}

/* ---- log A_alpha (MTZ19 eq. for A_alpha; RDP = log A_alpha / (alpha - 1)) ---- */

/* Integer alpha: exact binomial expansion of E_{z~mu0}[(1 - q + q mu1/mu0)^alpha],
 * sum_i C(alpha,i) q^i (1-q)^(alpha-i) exp((i^2 - i) / (2 sigma^2)), in log space. */
static double log_a_int(double q, double sigma, long alpha) {
    double lq = log(q), l1mq = log1p(-q), inv2s2 = 1.0 / (2.0 * sigma * sigma);
    double log_a = -INFINITY, log_binom = 0.0; /* log C(alpha, 0) */
    for (long i = 0; i <= alpha; i++) {
        if (i > 0) /* C(alpha,i) = C(alpha,i-1) (alpha-i+1)/i; avoids lgamma's global signgam */
            log_binom += log((double)(alpha - i + 1)) - log((double)i);
        double di = (double)i;
        double s = log_binom + di * lq + (double)(alpha - i) * l1mq + (di * di - di) * inv2s2;
        log_a = log_add(log_a, s);
    }
    return log_a;
}

/* Fractional alpha: the integral split at z0 where mu1/mu0 = (1-q)/q, each half a
 * binomial series with Gaussian tail factors. Terms are summed in absolute value, as
 * current dp_accounting does: an upper bound on A_alpha, safe for accounting and free of
 * the cancellation the signed sum suffers at orders near 1. */
static double log_a_frac(double q, double sigma, double alpha) {
    double lq = log(q), l1mq = log1p(-q), inv2s2 = 1.0 / (2.0 * sigma * sigma);
    double z0 = sigma * sigma * log(1.0 / q - 1.0) + 0.5;
    double sqrt2s = sqrt(2.0) * sigma;
    double log_a0 = -INFINITY, log_a1 = -INFINITY;
    double last_s0 = -INFINITY, last_s1 = -INFINITY;
    double log_binom = 0.0; /* log |C(alpha, 0)| */
    for (int i = 0; i < FRAC_MAX_TERMS; i++) {
        double di = (double)i;
        if (i > 0) log_binom += log(fabs(alpha - di + 1.0)) - log(di);
        double j = alpha - di;
        double log_t0 = log_binom + di * lq + j * l1mq;
        double log_t1 = log_binom + j * lq + di * l1mq;
        double log_e0 = log(0.5) + log_erfc((di - z0) / sqrt2s);
        double log_e1 = log(0.5) + log_erfc((z0 - j) / sqrt2s);
        double log_s0 = log_t0 + (di * di - di) * inv2s2 + log_e0;
        double log_s1 = log_t1 + (j * j - j) * inv2s2 + log_e1;
        log_a0 = log_add(log_a0, log_s0);
        log_a1 = log_add(log_a1, log_s1);
        double total = log_add(log_a0, log_a1);
        /* Stop once both halves are past their peak and the new terms no longer matter. */
        if (log_s0 < last_s0 && log_s1 < last_s1 && fmax(log_s0, log_s1) < total - 30.0)
            return total;
        last_s0 = log_s0;
        last_s1 = log_s1;
    }
    return INFINITY; /* not converged: no usable bound at this order */
}

static int check_order(double order) {
    if (!(order > 1.0))
        return fed_error(FED_EINVAL, "rdp: order must be > 1 (got %g)", order);
    if (isfinite(order) && order > MAX_FINITE_ORDER)
        return fed_error(FED_EINVAL, "rdp: order %g too large (max %g, or +inf)", order,
                         MAX_FINITE_ORDER);
    return 0;
}

static int check_mechanism(double q, double sigma) {
    if (!(q >= 0.0 && q <= 1.0))
        return fed_error(FED_EINVAL, "rdp: sampling rate q must be in [0, 1] (got %g)", q);
    if (!(sigma >= 0.0) || !isfinite(sigma))
        return fed_error(FED_EINVAL, "rdp: noise multiplier sigma must be finite and >= 0 (got %g)",
                         sigma);
    return 0;
}

/* Inputs already validated. Case order as dp_accounting: no sampling is no privacy
 * loss, even with no noise or at order inf. */
static double rdp_one(double q, double sigma, double order) {
    if (q == 0.0) return 0.0;
    if (isinf(order) || sigma == 0.0) return INFINITY;
    if (q == 1.0) return order / (2.0 * sigma * sigma);
    double log_a = (floor(order) == order) ? log_a_int(q, sigma, (long)order)
                                           : log_a_frac(q, sigma, order);
    return log_a / (order - 1.0);
}

int fed_rdp_subsampled_gaussian(double q, double sigma, double order, double *rdp) {
    int rc;
    if (!rdp) return fed_error(FED_EINVAL, "rdp: rdp output is NULL");
    if ((rc = check_mechanism(q, sigma)) || (rc = check_order(order))) return rc;
    *rdp = rdp_one(q, sigma, order);
    return 0;
}

/* ---- accountant ---- */

static void default_orders(double *o) {
    int k = 0;
    for (int x = 1; x < 100; x++) o[k++] = 1.0 + x / 10.0;
    for (int x = 11; x < 64; x++) o[k++] = x;
    o[k++] = 128;
    o[k++] = 256;
    o[k++] = 512;
    o[k++] = 1024;
}

int fed_rdp_new(fed_rdp **out, const double *orders, int norders) {
    if (!out) return fed_error(FED_EINVAL, "rdp: out is NULL");
    *out = NULL;
    int n = orders ? norders : FED_RDP_NUM_DEFAULT_ORDERS;
    if (n <= 0) return fed_error(FED_EINVAL, "rdp: norders must be > 0 (got %d)", norders);
    if (orders)
        for (int i = 0; i < n; i++) {
            int rc = check_order(orders[i]);
            if (rc) return rc;
        }
    fed_rdp *a = calloc(1, sizeof *a);
    if (!a) return fed_error(FED_ENOMEM, "rdp: allocating accountant");
    a->orders = malloc((size_t)n * sizeof *a->orders);
    a->rdp = calloc((size_t)n, sizeof *a->rdp);
    if (!a->orders || !a->rdp) {
        fed_rdp_free(a);
        return fed_error(FED_ENOMEM, "rdp: allocating %d orders", n);
    }
    a->n = n;
    if (orders) memcpy(a->orders, orders, (size_t)n * sizeof *orders);
    else default_orders(a->orders);
    *out = a;
    return 0;
}

void fed_rdp_free(fed_rdp *a) {
    if (!a) return;
    free(a->orders);
    free(a->rdp);
    free(a);
}

int fed_rdp_compose_subsampled_gaussian(fed_rdp *a, double q, double sigma, long steps) {
    int rc;
    if (!a) return fed_error(FED_EINVAL, "rdp: accountant is NULL");
    if ((rc = check_mechanism(q, sigma))) return rc;
    if (steps < 0) return fed_error(FED_EINVAL, "rdp: steps must be >= 0 (got %ld)", steps);
    if (steps == 0) return 0; /* not 0 * inf = NaN at orders where one step is unbounded */
    for (int i = 0; i < a->n; i++) a->rdp[i] += (double)steps * rdp_one(q, sigma, a->orders[i]);
    return 0;
}

int fed_rdp_add(fed_rdp *a, const double *rdp, int n) {
    if (!a) return fed_error(FED_EINVAL, "rdp: accountant is NULL");
    if (!rdp) return fed_error(FED_EINVAL, "rdp: rdp is NULL");
    if (n != a->n)
        return fed_error(FED_EINVAL, "rdp: rdp has %d values, accountant has %d orders", n, a->n);
    for (int i = 0; i < n; i++)
        if (!(rdp[i] >= 0.0)) /* all-or-nothing: check before adding any */
            return fed_error(FED_EINVAL, "rdp: rdp[%d] must be >= 0 (got %g)", i, rdp[i]);
    for (int i = 0; i < n; i++) a->rdp[i] += rdp[i];
    return 0;
}

int fed_rdp_orders(const fed_rdp *a, const double **orders, const double **rdp, int *n) {
    if (!a) return fed_error(FED_EINVAL, "rdp: accountant is NULL");
    if (orders) *orders = a->orders;
    if (rdp) *rdp = a->rdp;
    if (n) *n = a->n;
    return 0;
}

/* ---- (epsilon, delta) conversion ---- */

/* Epsilon from one order. The order +inf is taken as its limit, eps = rdp (pure DP),
 * where the finite formulas would give inf/inf. */
static double eps_one(double alpha, double r, double delta, int conversion) {
    if (conversion == FED_RDP_CONVERSION_CLASSIC) {
        if (isinf(alpha)) return r;
        return r - log(delta) / (alpha - 1.0);
    }
    /* Rounding can leave a zero RDP a hair below 0; it is no privacy loss. */
    if (r < 0.0) return 0.0;
    /* KL bound: delta <= sqrt(1 - exp(-rdp)) already holds at eps = 0. */
    if (delta * delta + expm1(-r) > 0.0) return 0.0;
    /* Prop. 12 is unstable as alpha -> 1 and useless there anyway. */
    if (alpha <= 1.01) return INFINITY;
    if (isinf(alpha)) return r;
    return r + log1p(-1.0 / alpha) - log(delta * alpha) / (alpha - 1.0);
}

int fed_rdp_epsilon(const fed_rdp *a, double delta, int conversion, double *eps,
                    double *best_order) {
    if (!a) return fed_error(FED_EINVAL, "rdp: accountant is NULL");
    if (!eps) return fed_error(FED_EINVAL, "rdp: eps output is NULL");
    if (!(delta > 0.0 && delta < 1.0))
        return fed_error(FED_EINVAL, "rdp: delta must be in (0, 1) (got %g)", delta);
    if (conversion != FED_RDP_CONVERSION_IMPROVED && conversion != FED_RDP_CONVERSION_CLASSIC)
        return fed_error(FED_EINVAL, "rdp: unknown conversion %d", conversion);
    /* First minimum wins, as numpy's argmin does, so the reported order matches. */
    double best = INFINITY, order = a->orders[0];
    for (int i = 0; i < a->n; i++) {
        double e = eps_one(a->orders[i], a->rdp[i], delta, conversion);
        if (e < best) {
            best = e;
            order = a->orders[i];
        }
    }
    *eps = fmax(0.0, best);
    if (best_order) *best_order = order;
    return 0;
}

/* log delta from one order: min of the KL bound and Prop. 12 solved for delta. */
static double log_delta_one(double alpha, double r, double eps) {
    if (r <= 0.0) return -INFINITY;
    double ld = 0.5 * log1p(-exp(-r));
    if (alpha > 1.01) {
        double bound;
        if (isinf(alpha)) bound = (eps >= r) ? -INFINITY : INFINITY; /* pure-DP limit */
        else bound = (alpha - 1.0) * (r - eps + log1p(-1.0 / alpha)) - log(alpha);
        ld = fmin(ld, bound);
    }
    return ld;
}

int fed_rdp_delta(const fed_rdp *a, double eps, double *delta, double *best_order) {
    if (!a) return fed_error(FED_EINVAL, "rdp: accountant is NULL");
    if (!delta) return fed_error(FED_EINVAL, "rdp: delta output is NULL");
    if (!(eps >= 0.0) || !isfinite(eps))
        return fed_error(FED_EINVAL, "rdp: eps must be finite and >= 0 (got %g)", eps);
    double best = INFINITY, order = a->orders[0];
    for (int i = 0; i < a->n; i++) {
        double ld = log_delta_one(a->orders[i], a->rdp[i], eps);
        if (ld < best) {
            best = ld;
            order = a->orders[i];
        }
    }
    *delta = fmin(exp(best), 1.0);
    if (best_order) *best_order = order;
    return 0;
}
