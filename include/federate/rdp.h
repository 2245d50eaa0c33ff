/* Rényi differential privacy (RDP) accountant for the Poisson-subsampled Gaussian
 * mechanism (DP-SGD, DP-FedAvg with client sampling), with (epsilon, delta)
 * conversion. Numbers agree with Google's dp_accounting RdpAccountant. */
#ifndef FEDERATE_RDP_H
#define FEDERATE_RDP_H

/* An accountant: a fixed list of RDP orders and the RDP accumulated at each.
 * Composition of any mix of mechanisms is the sum of their RDP vectors. */
typedef struct fed_rdp fed_rdp;

/* Ways to turn an RDP curve into (epsilon, delta)-DP. */
enum {
    /* Canonne, Kamath, Steinke 2020 Prop. 12 (= Balle et al. 2020 eq. 20),
     * as dp_accounting's compute_epsilon / compute_delta. Never worse than CLASSIC. */
    FED_RDP_CONVERSION_IMPROVED = 0,
    /* Mironov 2017 Prop. 3: eps = min_a rdp_a + log(1/delta)/(a-1), as the
     * original TF Privacy accountant (for reproducing older published numbers). */
    FED_RDP_CONVERSION_CLASSIC = 1,
};

/* Number of orders in dp_accounting's DEFAULT_RDP_ORDERS:
 * 1.1, 1.2, ..., 10.9, 11, 12, ..., 63, 128, 256, 512, 1024. */
#define FED_RDP_NUM_DEFAULT_ORDERS 156

/* New accountant with zero RDP. orders: norders values, each > 1 (+INFINITY
 * allowed), copied; orders == NULL selects DEFAULT_RDP_ORDERS (norders ignored). */
int fed_rdp_new(fed_rdp **out, const double *orders, int norders);
void fed_rdp_free(fed_rdp *a);

/* Adds `steps` compositions of the Poisson-subsampled Gaussian mechanism with
 * sampling rate q in [0, 1] and noise multiplier sigma >= 0 (noise stddev over
 * L2 sensitivity). steps == 0 is a no-op. */
int fed_rdp_compose_subsampled_gaussian(fed_rdp *a, double q, double sigma, long steps);

/* Adds an RDP curve computed elsewhere (another mechanism): rdp[i] >= 0 (+inf
 * allowed) at orders[i] of this accountant; n must equal its number of orders. */
int fed_rdp_add(fed_rdp *a, const double *rdp, int n);

/* RDP of one step of that mechanism at one order (> 1, or +INFINITY).
 * q == 0 gives 0; otherwise sigma == 0 or order == inf gives +inf. */
int fed_rdp_subsampled_gaussian(double q, double sigma, double order, double *rdp);

/* Smallest epsilon over the orders such that the composition is
 * (epsilon, delta)-DP, delta in (0, 1). best_order (may be NULL) receives the
 * order achieving it. epsilon is +inf when no order gives a finite bound. */
int fed_rdp_epsilon(const fed_rdp *a, double delta, int conversion, double *eps,
                    double *best_order);

/* Smallest delta (<= 1) over the orders such that the composition is
 * (eps, delta)-DP, eps finite and >= 0; the inverse of the IMPROVED conversion
 * (dp_accounting's get_delta). best_order may be NULL. */
int fed_rdp_delta(const fed_rdp *a, double eps, double *delta, double *best_order);

/* Read-only views of the orders and accumulated RDP (valid until _free). */
int fed_rdp_orders(const fed_rdp *a, const double **orders, const double **rdp, int *n);

#endif
