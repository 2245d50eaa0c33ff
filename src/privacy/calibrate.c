/* Noise calibration for DP-SGD / DP-FedAvg: epsilon of a number of Poisson-subsampled
 * Gaussian steps, and the smallest noise multiplier that meets a target epsilon, both
 * through the RDP accountant (federate/rdp.h). */
#include "federate/dp.h"
#include "federate/error.h"

#include <math.h>

#define MAX_Z 1e6

int fed_dp_epsilon(double q, double z, long steps, double delta, int conversion,
                   const double *orders, int norders, double *eps, double *best_order) {
    fed_rdp *a = NULL;
    if (!eps) return fed_error(FED_EINVAL, "dp: eps output is NULL");
    int rc = fed_rdp_new(&a, orders, norders);
    if (!rc) rc = fed_rdp_compose_subsampled_gaussian(a, q, z, steps);
    if (!rc) rc = fed_rdp_epsilon(a, delta, conversion, eps, best_order);
    fed_rdp_free(a);
    return rc;
}

static int eps_at(const double *orders, int norders, double q, double z, long steps,
                  double delta, int conversion, double *eps) {
    return fed_dp_epsilon(q, z, steps, delta, conversion, orders, norders, eps, NULL);
}

int fed_dp_calibrate_noise(double q, long steps, double delta, double target_eps,
                           int conversion, const double *orders, int norders, double rel_tol,
                           double *z) {
    if (!z) return fed_error(FED_EINVAL, "dp: calibrate: z output is NULL");
    if (!(target_eps > 0.0) || !isfinite(target_eps))
        return fed_error(FED_EINVAL, "dp: calibrate: target epsilon must be finite and > 0 (got %g)",
                         target_eps);
    if (!(rel_tol > 0.0)) rel_tol = 1e-6;
    if (!(rel_tol < 0.5))
        return fed_error(FED_EINVAL, "dp: calibrate: relative tolerance must be < 0.5 (got %g)", rel_tol);
    double lo, hi, e;
    int rc = eps_at(orders, norders, q, 1.0, steps, delta, conversion, &e);
    if (rc) goto out;
    /* Bracket: eps(lo) > target >= eps(hi). eps falls as z grows (more noise never costs
     * more privacy), so doubling / halving from z = 1 finds the bracket. */
    if (e <= target_eps) {
        hi = 1.0;
        for (lo = 0.5;; lo *= 0.5) {
            if ((rc = eps_at(orders, norders, q, lo, steps, delta, conversion, &e))) goto out;
            if (e > target_eps) break;
            hi = lo;
            if (lo < 1e-12) { /* q == 0 or steps == 0: any noise, even none, meets it */
                *z = 0.0;
                goto out;
            }
        }
    } else {
        lo = 1.0;
        for (hi = 2.0;; hi *= 2.0) {
            if (hi > MAX_Z) {
                rc = fed_error(FED_ERANGE, "dp: calibrate: no noise multiplier up to %g reaches epsilon %g",
                               MAX_Z, target_eps);
                goto out;
            }
            if ((rc = eps_at(orders, norders, q, hi, steps, delta, conversion, &e))) goto out;
            if (e <= target_eps) break;
            lo = hi;
        }
    }
    while (hi - lo > rel_tol * hi) {
        double mid = 0.5 * (lo + hi);
        if ((rc = eps_at(orders, norders, q, mid, steps, delta, conversion, &e))) goto out;
        if (e <= target_eps) hi = mid;
        else lo = mid;
    }
    *z = hi;
out:
    return rc;
}
