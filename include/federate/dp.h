/* Differential-privacy building blocks: Gaussian and Laplace noise on flat vectors from a
 * seeded (simulation) or secure (deployment) source, a pure-DP accountant for Laplace
 * mechanisms, noise calibration against the RDP accountant (federate/rdp.h), and the
 * arithmetic of adaptive clipping (Andrew et al. 2021). */
#ifndef FEDERATE_DP_H
#define FEDERATE_DP_H
#include <stddef.h>
#include <stdint.h>
#include "federate/rdp.h"
#include "federate/rng.h"

/* ---- noise sources ---- */

/* Where noise comes from. Values are stable (a store may record the number); the names
 * ("seeded", "secure") are what configs and the store use. */
enum fed_dp_noise_source {
    /* Counter-based stream (seed, round, client, FED_RNG_NOISE): bit-reproducible
     * simulation. Not private against anyone who knows the seed. */
    FED_DP_NOISE_SEEDED = 0,
    /* The operating system's CSPRNG through federate/crypto.h, normals and exponentials
     * in double precision: deployments. Not reproducible. */
    FED_DP_NOISE_SECURE = 1,
};

/* "seeded" / "secure"; NULL for an unknown value. */
const char *fed_dp_noise_source_name(int source);
/* Parses "seeded" or "secure"; FED_EINVAL (naming the value) otherwise. */
int fed_dp_noise_source_from_name(const char *name, int *source);

/* Client ids for noise streams that belong to no client, so that they never share a
 * stream with a client's local noise in the same round. */
#define FED_DP_CLIENT_SERVER UINT64_MAX            /* central noise on the aggregate */
#define FED_DP_CLIENT_CLIP_COUNT (UINT64_MAX - 1)  /* adaptive clipping's count noise */

/* A noise stream. Plain struct, no allocation: one per thread/client at a time. */
typedef struct fed_dp_noise {
    int source;
    fed_rng rng; /* SEEDED only */
} fed_dp_noise;

/* SEEDED: the stream at address (seed, round, client, FED_RNG_NOISE); fed_dp_gaussian
 * on a whole vector adds exactly fed_rng_fill_normal(stream, n, 0, stddev).
 * SECURE: seed, round and client are ignored. */
int fed_dp_noise_init(fed_dp_noise *ns, int source, uint64_t seed, uint64_t round, uint64_t client);

/* One draw of N(0, 1) / of Laplace(0, 1) (density exp(-|x|)/2), in double precision. */
int fed_dp_sample_normal(fed_dp_noise *ns, double *out);
int fed_dp_sample_laplace(fed_dp_noise *ns, double *out);

/* ---- mechanisms: add noise to x[0..n) in place ---- */
/* On an error from the CSPRNG, x may be partly noised: do not release it. */

/* Gaussian mechanism: x[i] += N(0, stddev^2) independently; stddev >= 0 and finite
 * (for DP-SGD / DP-FedAvg, stddev = noise multiplier z * clip norm C on a sum, or
 * z * C / m on a mean of m). stddev == 0 leaves x untouched and draws nothing. */
int fed_dp_gaussian(fed_dp_noise *ns, float *x, size_t n, double stddev);

/* Laplace mechanism: x[i] += Laplace(0, scale) independently; scale >= 0 and finite.
 * With L1 sensitivity D it is (D / scale)-DP (fed_dp_laplace_epsilon). */
int fed_dp_laplace(fed_dp_noise *ns, float *x, size_t n, double scale);

/* Laplace with Mironov's (2012) snapping: each x[i] is clamped to [-bound, bound], noise
 * added in double precision, the result rounded to the nearest multiple of the smallest
 * power of two >= scale and clamped again. This closes the floating-point attack on
 * textbook Laplace noise. Needs 0 < scale < bound < 2^46 scale. For unit-sensitivity
 * coordinates it is (1/scale + 2^-49 bound/scale)-DP per coordinate (Mironov 2012, Sec. 5.2). */
int fed_dp_laplace_snapped(fed_dp_noise *ns, float *x, size_t n, double scale, double bound);

/* Discrete Gaussian: out[i] ~ N_Z(0, sigma^2), P(x) proportional to exp(-x^2 / (2 sigma^2))
 * over the integers, sigma^2 = sigma2_num / sigma2_den, sampled exactly with integer
 * arithmetic (Canonne, Kamath, Steinke 2020, Alg. 1-3): for distributed DP on integers
 * under secure aggregation. Needs sigma2_num >= 1, 1 <= sigma2_den <= 2^20, sigma^2 < 2^40.
 * Exact but for candidates of acceptance probability < e^-64 (total variation ~2^-90).
 * Fills (does not add to) out. */
int fed_dp_discrete_gaussian(fed_dp_noise *ns, int64_t *out, size_t n, uint64_t sigma2_num,
                             uint64_t sigma2_den);

/* ---- pure-DP (epsilon-DP) composition ---- */

/* Epsilon of the Laplace mechanism: l1_sensitivity / scale (both > 0, finite). */
int fed_dp_laplace_epsilon(double l1_sensitivity, double scale, double *eps);

/* Composition of epsilon-DP mechanisms. Zero-initialize or fed_pure_dp_init. */
typedef struct fed_pure_dp {
    long count;         /* mechanisms composed */
    double eps_sum;     /* sum eps_i: basic composition */
    double eps_sq_sum;  /* sum eps_i^2 */
    double eps_exp_sum; /* sum eps_i (e^eps_i - 1): expected privacy loss */
} fed_pure_dp;

void fed_pure_dp_init(fed_pure_dp *a);
/* Composes `times` (>= 0) runs of an eps-DP mechanism (eps >= 0, finite). */
int fed_pure_dp_add(fed_pure_dp *a, double eps, long times);
/* Composes `times` runs of the Laplace mechanism. */
int fed_pure_dp_add_laplace(fed_pure_dp *a, double l1_sensitivity, double scale, long times);

enum { FED_PURE_DP_BASIC = 0, FED_PURE_DP_ADVANCED = 1 };

/* Total epsilon. delta == 0: basic composition, sum eps_i (the result is eps-DP).
 * delta in (0, 1): also the advanced composition theorem (Dwork, Rothblum, Vadhan 2010,
 * as Dwork & Roth 2014 Thm. 3.20, for unequal eps_i): (eps', delta)-DP with
 * eps' = sqrt(2 ln(1/delta) sum eps_i^2) + sum eps_i (e^eps_i - 1); the smaller of the
 * two is returned and *method (may be NULL) says which (FED_PURE_DP_BASIC on a tie). */
int fed_pure_dp_epsilon(const fed_pure_dp *a, double delta, double *eps, int *method);

/* RDP of one Laplace mechanism (Mironov 2017 Prop. 6) at each order (> 1, or +inf),
 * for l1_sensitivity / scale = t: 1/(a-1) log(a/(2a-1) e^{(a-1)t} + (a-1)/(2a-1) e^{-at});
 * t at order +inf. rdp has n entries. */
int fed_dp_laplace_rdp(double l1_sensitivity, double scale, const double *orders, int n,
                       double *rdp);
/* Adds `times` Laplace mechanisms to an RDP accountant (through fed_rdp_add), so they
 * compose with Gaussian mechanisms accounted there. */
int fed_rdp_compose_laplace(fed_rdp *a, double l1_sensitivity, double scale, long times);

/* ---- distributed discrete Gaussian (Kairouz, Liu, Steinke 2021) ---- */

/* n clients each add N_Z(0, sigma2) (integer units) to an integer vector of dimension
 * dim whose L2 norm is at most l2 (the sensitivity, integer units, add/remove one
 * client); the server sees only the sum. The sum of the n shares is close to, but not,
 * N_Z(0, n sigma2); the gap is (Kairouz et al. 2021, Thm. 1 / Prop. 14)
 *   tau = 10 sum_{k=1}^{n-1} exp(-2 pi^2 sigma2 k / (k + 1)),
 * and the mechanism has RDP at order alpha (their Eq. 17, the L1 term left out)
 *   eps(alpha) = min( alpha l2^2 / (2 n sigma2) + tau dim,
 *                     alpha / 2 (l2 / sqrt(n sigma2) + tau sqrt(dim))^2 ).
 * Needs sigma2 >= 1/4 (sigma >= 1/2, the paper's condition), n >= 1, l2 >= 0, dim >= 1. */
double fed_dp_ddgauss_tau(double sigma2, int n);
/* rdp[i] at orders[i] (> 1; +inf gives +inf unless l2 == 0). */
int fed_dp_ddgauss_rdp(double l2, double sigma2, int n, double dim, const double *orders, int norders,
                       double *rdp);
/* Adds `times` releases of that mechanism to an accountant, without sampling
 * amplification (each release counts in full). */
int fed_rdp_compose_ddgauss(fed_rdp *a, double l2, double sigma2, int n, double dim, long times);

/* ---- Poisson subsampling of records (Zhu & Wang 2019), for record-level DP-SGD ---- */
/* The accountant of privacy.mode distributed-dp-sgd, in which each client's DP-SGD step
 * Poisson-samples its records and adds a 1/m share of the discrete Gaussian noise before
 * secure aggregation (docs/privacy.md, "Record level"). */

/* Largest integer order at which the subsampled bound is evaluated (its cost and memory
 * grow linearly with the order); above it the unamplified curve is used. */
#define FED_RDP_SUBSAMPLED_MAX_ORDER 65536

/* General upper bound on the RDP at integer order alpha >= 2 of any mechanism run on a
 * Poisson sample of the records at rate q in [0, 1] (Zhu & Wang, ICML 2019, Thm. 5), given
 * the base mechanism's RDP base_rdp[j - 2] at each order j = 2..alpha (>= 0, +inf allowed:
 * the result is then +inf). Add/remove-one-record neighbours. Computed in log space, so
 * large orders neither overflow nor lose the small-q precision. q == 0 gives 0. With q == 1
 * it is base_rdp at alpha plus log(3)/(alpha-1) (alpha >= 3): not a tightening; callers
 * take the smaller of this and the unsampled curve. */
int fed_rdp_poisson_subsampled_bound(double q, const double *base_rdp, long alpha, double *rdp);

/* RDP at orders[i] (> 1, or +inf) of one distributed-discrete-Gaussian release (arguments
 * as fed_dp_ddgauss_rdp: l2 is one record's L2 sensitivity in integer units, sigma2 each
 * of the n shares' variance) whose records were Poisson-sampled at rate q: the smaller of
 * the unsampled curve at orders[i] and the bound above at ceil(orders[i]) (order 2 for
 * orders below 2; valid because RDP is non-decreasing in the order). Orders above
 * FED_RDP_SUBSAMPLED_MAX_ORDER and +inf get the unsampled curve. */
int fed_dp_subsampled_ddgauss_rdp(double q, double l2, double sigma2, int n, double dim, const double *orders,
                                  int norders, double *rdp);
/* Adds `steps` (>= 0) such releases to an accountant at its orders. */
int fed_rdp_compose_subsampled_ddgauss(fed_rdp *a, double q, double l2, double sigma2, int n, double dim,
                                       long steps);

/* ---- calibration (Poisson-subsampled Gaussian, RDP accountant) ---- */

/* Epsilon of `steps` steps with sampling rate q and noise multiplier z at delta.
 * orders == NULL: dp_accounting's default orders. best_order may be NULL. */
int fed_dp_epsilon(double q, double z, long steps, double delta, int conversion,
                   const double *orders, int norders, double *eps, double *best_order);

/* Smallest noise multiplier z such that epsilon(q, z, steps, delta) <= target_eps
 * (target_eps > 0), by bracketing and bisection to a relative tolerance rel_tol
 * (<= 0: 1e-6). The returned z always meets the target; it exceeds the exact smallest
 * one by at most rel_tol * z. FED_ERANGE if no z up to 1e6 meets it. */
int fed_dp_calibrate_noise(double q, long steps, double delta, double target_eps,
                           int conversion, const double *orders, int norders, double rel_tol,
                           double *z);

/* ---- adaptive clipping (Andrew, Thakkar, McMahan, Ramaswamy 2021) ---- */

/* The clip norm C tracks the target quantile gamma of the clients' update norms:
 * each client reports b_i = [||update_i|| <= C] (before clipping); the server forms
 * b = (sum b_i + N(0, sigma_b^2)) / m and sets C <- C exp(-eta (b - gamma)). */
typedef struct fed_adaptive_clip {
    double clip;             /* C of the current round */
    double target_quantile;  /* gamma in [0, 1] */
    double lr;               /* eta >= 0 */
    double expected_clients; /* m > 0 */
    double sigma_b;          /* stddev of the noise on the count of bits */
    double noise_multiplier; /* z: the round's overall noise multiplier */
    double z_delta;          /* noise multiplier left for the sum of updates */
} fed_adaptive_clip;

/* Defaults of the paper: C = 0.1, gamma = 0.5, eta = 0.2. */
#define FED_ADAPTIVE_CLIP_INITIAL 0.1
#define FED_ADAPTIVE_CLIP_QUANTILE 0.5
#define FED_ADAPTIVE_CLIP_LR 0.2

/* Noise split (Andrew et al. Thm. 1): z_delta = (z^-2 - (2 sigma_b)^-2)^(-1/2), so that
 * the noisy count and the noisy sum together are as private as one Gaussian mechanism
 * with multiplier z. z == 0 (no DP) gives 0. FED_ERANGE when z >= 2 sigma_b (the count
 * alone would spend the whole budget). */
int fed_adaptive_clip_noise_split(double z, double sigma_b, double *z_delta);

/* sigma_b <= 0 selects the paper's default m / 20. Fails as the noise split does. */
int fed_adaptive_clip_init(fed_adaptive_clip *ac, double initial_clip, double target_quantile,
                           double lr, double expected_clients, double sigma_b,
                           double noise_multiplier);

/* b_i for one client: 1 if norm <= clip, else 0. */
int fed_adaptive_clip_bit(const fed_adaptive_clip *ac, double norm);

/* Stddev of the Gaussian noise on the sum of this round's clipped updates:
 * z_delta * C, with C of this same round (call before the update below). */
double fed_adaptive_clip_sum_stddev(const fed_adaptive_clip *ac);

/* The end-of-round update with the count noise given (a draw of N(0, sigma_b^2)):
 * b = (bit_sum + count_noise) / m; C <- C exp(-eta (b - gamma)). bit_sum >= 0. */
int fed_adaptive_clip_update_with(fed_adaptive_clip *ac, double bit_sum, double count_noise);
/* The same, drawing the count noise from ns (for a seeded source use the address
 * (seed, round, FED_DP_CLIENT_CLIP_COUNT)). */
int fed_adaptive_clip_update(fed_adaptive_clip *ac, double bit_sum, fed_dp_noise *ns);

#endif
