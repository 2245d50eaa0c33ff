/* RDP of the distributed discrete Gaussian mechanism (Kairouz, Liu, Steinke, "The
 * Distributed Discrete Gaussian Mechanism for Federated Learning with Secure
 * Aggregation", ICML 2021): n clients each add N_Z(0, sigma^2) to integer vectors that
 * secure aggregation sums. Thm. 1 bounds how far the sum of the shares is from one
 * discrete Gaussian (tau), Prop. 14 / Eq. 17 gives the RDP with that slack. The same
 * figures come from tests/fixtures/ddgauss_rdp.py (mpmath). */
#include "federate/dp.h"
#include "federate/error.h"

#include <math.h>
#include <stdlib.h>

double fed_dp_ddgauss_tau(double sigma2, int n) {
    /* the terms shrink with k (k / (k + 1) grows), so once one underflows the rest do */
    double tau = 0;
    for (int k = 1; k < n; k++) {
        double t = exp(-2.0 * M_PI * M_PI * sigma2 * (double)k / (double)(k + 1));
        if (t == 0) break;
        tau += t;
    }
    return 10.0 * tau;
}

static int check_args(double l2, double sigma2, int n, double dim) {
    if (!(l2 >= 0) || !isfinite(l2)) return fed_error(FED_EINVAL, "dp: ddgauss: L2 sensitivity %g must be >= 0", l2);
    if (!(sigma2 == 0 || sigma2 >= 0.25) || !isfinite(sigma2))
        return fed_error(FED_ERANGE, "dp: ddgauss: each client's variance %g must be >= 1/4 (sigma >= 1/2, "
                                     "Kairouz et al. 2021) or 0 (no noise)", sigma2);
    if (n < 1) return fed_error(FED_EINVAL, "dp: ddgauss: %d clients", n);
    if (!(dim >= 1) || !isfinite(dim)) return fed_error(FED_EINVAL, "dp: ddgauss: dimension %g", dim);
    return 0;
}

int fed_dp_ddgauss_rdp(double l2, double sigma2, int n, double dim, const double *orders, int norders,
                       double *rdp) {
    int rc = check_args(l2, sigma2, n, dim);
    if (rc) return rc;
    if (!orders || !rdp || norders <= 0)
        return fed_error(FED_EINVAL, "dp: ddgauss RDP: need orders and output (n %d)", norders);
    for (int i = 0; i < norders; i++)
        if (!(orders[i] > 1.0)) return fed_error(FED_EINVAL, "dp: ddgauss RDP: order must be > 1 (got %g)", orders[i]);
    if (sigma2 == 0) {
        for (int i = 0; i < norders; i++) rdp[i] = l2 > 0 ? INFINITY : 0;
        return 0;
    }
    double tau = fed_dp_ddgauss_tau(sigma2, n);
    double var = (double)n * sigma2;               /* the variance the sum would have as one N_Z */
    double a = l2 * l2 / (2.0 * var), b = tau * dim;
    double c = l2 / sqrt(var) + tau * sqrt(dim);
    for (int i = 0; i < norders; i++) {
        double al = orders[i];
        if (isinf(al)) {
            rdp[i] = (l2 > 0 || tau > 0) ? INFINITY : 0;
            continue;
        }
        double t1 = al * a + b, t2 = 0.5 * al * c * c;
        rdp[i] = t1 < t2 ? t1 : t2;
    }
    return 0;
}

int fed_rdp_compose_ddgauss(fed_rdp *a, double l2, double sigma2, int n, double dim, long times) {
    int rc, no;
    const double *orders;
    if (!a) return fed_error(FED_EINVAL, "dp: RDP accountant is NULL");
    if (times < 0) return fed_error(FED_EINVAL, "dp: ddgauss RDP: times must be >= 0 (got %ld)", times);
    if ((rc = check_args(l2, sigma2, n, dim))) return rc;
    if (times == 0) return 0;
    if ((rc = fed_rdp_orders(a, &orders, NULL, &no))) return rc;
    double *r = malloc((size_t)no * sizeof *r);
    if (!r) return fed_error(FED_ENOMEM, "dp: ddgauss RDP: allocating %d orders", no);
    rc = fed_dp_ddgauss_rdp(l2, sigma2, n, dim, orders, no, r);
    if (!rc) {
        for (int i = 0; i < no; i++) r[i] *= (double)times;
        rc = fed_rdp_add(a, r, no);
    }
    free(r);
    return rc;
}
