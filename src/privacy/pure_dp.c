/* Pure (epsilon-)DP accounting for Laplace mechanisms: basic composition, the advanced
 * composition theorem (Dwork, Rothblum, Vadhan, FOCS 2010; Dwork & Roth 2014 Thm. 3.20),
 * and the Laplace mechanism's RDP curve (Mironov, "Renyi Differential Privacy", CSF 2017,
 * Prop. 6) so that Laplace noise composes with Gaussian noise in the RDP accountant. */
#include "federate/dp.h"
#include "federate/error.h"

#include <math.h>
#include <stdlib.h>

static int check_laplace(double l1_sensitivity, double scale) {
    if (!(l1_sensitivity > 0.0) || !isfinite(l1_sensitivity))
        return fed_error(FED_EINVAL, "dp: laplace: L1 sensitivity must be finite and > 0 (got %g)",
                         l1_sensitivity);
    if (!(scale > 0.0) || !isfinite(scale))
        return fed_error(FED_EINVAL, "dp: laplace: scale must be finite and > 0 (got %g)", scale);
    return 0;
}

int fed_dp_laplace_epsilon(double l1_sensitivity, double scale, double *eps) {
    int rc;
    if (!eps) return fed_error(FED_EINVAL, "dp: laplace: eps output is NULL");
    if ((rc = check_laplace(l1_sensitivity, scale))) return rc;
    *eps = l1_sensitivity / scale;
    return 0;
}

void fed_pure_dp_init(fed_pure_dp *a) {
    if (!a) return;
    a->count = 0;
    a->eps_sum = a->eps_sq_sum = a->eps_exp_sum = 0.0;
}

int fed_pure_dp_add(fed_pure_dp *a, double eps, long times) {
    if (!a) return fed_error(FED_EINVAL, "dp: pure-DP accountant is NULL");
    if (!(eps >= 0.0) || !isfinite(eps))
        return fed_error(FED_EINVAL, "dp: pure-DP: eps must be finite and >= 0 (got %g)", eps);
    if (times < 0) return fed_error(FED_EINVAL, "dp: pure-DP: times must be >= 0 (got %ld)", times);
    double k = (double)times;
    a->count += times;
    a->eps_sum += k * eps;
    a->eps_sq_sum += k * eps * eps;
    a->eps_exp_sum += k * eps * expm1(eps); /* may be +inf for huge eps: then basic wins */
    return 0;
}

int fed_pure_dp_add_laplace(fed_pure_dp *a, double l1_sensitivity, double scale, long times) {
    double eps;
    int rc = fed_dp_laplace_epsilon(l1_sensitivity, scale, &eps);
    if (rc) return rc;
    return fed_pure_dp_add(a, eps, times);
}

int fed_pure_dp_epsilon(const fed_pure_dp *a, double delta, double *eps, int *method) {
    if (!a) return fed_error(FED_EINVAL, "dp: pure-DP accountant is NULL");
    if (!eps) return fed_error(FED_EINVAL, "dp: pure-DP: eps output is NULL");
    if (!(delta >= 0.0 && delta < 1.0))
        return fed_error(FED_EINVAL, "dp: pure-DP: delta must be in [0, 1) (got %g)", delta);
    double best = a->eps_sum;
    int how = FED_PURE_DP_BASIC;
    if (delta > 0.0) {
        /* The privacy loss is a sum of independent terms in [-eps_i, eps_i] with means
         * <= eps_i (e^eps_i - 1); Azuma-Hoeffding bounds its tail by delta. */
        double adv = sqrt(2.0 * log(1.0 / delta) * a->eps_sq_sum) + a->eps_exp_sum;
        if (adv < best) {
            best = adv;
            how = FED_PURE_DP_ADVANCED;
        }
    }
    *eps = best;
    if (method) *method = how;
    return 0;
}

/* Mironov 2017 Prop. 6 for sensitivity/scale = t, rearranged so no term overflows:
 * D_a = t + log1p((a-1)/(2a-1) (e^{-(2a-1)t} - 1)) / (a-1). */
static double laplace_rdp_one(double t, double a) {
    if (isinf(a)) return t;
    double c = 2.0 * a - 1.0;
    double inner = log1p((a - 1.0) / c * expm1(-c * t));
    double r = t + inner / (a - 1.0);
    return r > 0.0 ? r : 0.0; /* rounding near t = 0 */
}

int fed_dp_laplace_rdp(double l1_sensitivity, double scale, const double *orders, int n,
                       double *rdp) {
    int rc;
    if ((rc = check_laplace(l1_sensitivity, scale))) return rc;
    if (!orders || !rdp || n <= 0)
        return fed_error(FED_EINVAL, "dp: laplace RDP: need orders and output with n > 0 (n %d)", n);
    for (int i = 0; i < n; i++)
        if (!(orders[i] > 1.0))
            return fed_error(FED_EINVAL, "dp: laplace RDP: order must be > 1 (got %g)", orders[i]);
    double t = l1_sensitivity / scale;
    for (int i = 0; i < n; i++) rdp[i] = laplace_rdp_one(t, orders[i]);
    return 0;
}

int fed_rdp_compose_laplace(fed_rdp *a, double l1_sensitivity, double scale, long times) {
    int rc, n;
    const double *orders;
    if (!a) return fed_error(FED_EINVAL, "dp: RDP accountant is NULL");
    if (times < 0) return fed_error(FED_EINVAL, "dp: laplace RDP: times must be >= 0 (got %ld)", times);
    if ((rc = check_laplace(l1_sensitivity, scale))) return rc;
    if (times == 0) return 0;
    if ((rc = fed_rdp_orders(a, &orders, NULL, &n))) return rc;
    double *r = malloc((size_t)n * sizeof *r);
    if (!r) return fed_error(FED_ENOMEM, "dp: laplace RDP: allocating %d orders", n);
    rc = fed_dp_laplace_rdp(l1_sensitivity, scale, orders, n, r);
    if (!rc) {
        for (int i = 0; i < n; i++) r[i] *= (double)times;
        rc = fed_rdp_add(a, r, n);
    }
    free(r);
    return rc;
}
