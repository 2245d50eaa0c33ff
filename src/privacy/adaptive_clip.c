/* Adaptive clipping arithmetic: Andrew, Thakkar, McMahan, Ramaswamy, "Differentially
 * Private Learning with Adaptive Clipping", NeurIPS 2021 (Alg. 1 with the geometric
 * update, and Thm. 1 for splitting the noise between the count and the sum). */
#include "federate/dp.h"
#include "federate/error.h"

#include <math.h>

int fed_adaptive_clip_noise_split(double z, double sigma_b, double *z_delta) {
    if (!z_delta) return fed_error(FED_EINVAL, "adaptive clip: z_delta output is NULL");
    if (!(z >= 0.0) || !isfinite(z))
        return fed_error(FED_EINVAL, "adaptive clip: noise multiplier must be finite and >= 0 (got %g)", z);
    if (!(sigma_b > 0.0) || !isfinite(sigma_b))
        return fed_error(FED_EINVAL, "adaptive clip: count noise sigma_b must be finite and > 0 (got %g)",
                         sigma_b);
    if (z == 0.0) {
        *z_delta = 0.0;
        return 0;
    }
    /* The count (sensitivity 1/2 after centring the bits) is a Gaussian mechanism with
     * multiplier 2 sigma_b; the two compose like one with 1/z^2 = 1/z_delta^2 + 1/(2 sigma_b)^2. */
    double rest = 1.0 / (z * z) - 1.0 / (4.0 * sigma_b * sigma_b);
    if (!(rest > 0.0))
        return fed_error(FED_ERANGE,
                         "adaptive clip: noise multiplier %g must be < 2 sigma_b = %g: the clip-count "
                         "noise alone would use the whole privacy budget (raise sigma_b or lower z)",
                         z, 2.0 * sigma_b);
    *z_delta = 1.0 / sqrt(rest);
    return 0;
}

int fed_adaptive_clip_init(fed_adaptive_clip *ac, double initial_clip, double target_quantile,
                           double lr, double expected_clients, double sigma_b,
                           double noise_multiplier) {
    if (!ac) return fed_error(FED_EINVAL, "adaptive clip: state is NULL");
    if (!(initial_clip > 0.0) || !isfinite(initial_clip))
        return fed_error(FED_EINVAL, "adaptive clip: initial clip must be finite and > 0 (got %g)",
                         initial_clip);
    if (!(target_quantile >= 0.0 && target_quantile <= 1.0))
        return fed_error(FED_EINVAL, "adaptive clip: target quantile must be in [0, 1] (got %g)",
                         target_quantile);
    if (!(lr >= 0.0) || !isfinite(lr))
        return fed_error(FED_EINVAL, "adaptive clip: learning rate must be finite and >= 0 (got %g)", lr);
    if (!(expected_clients > 0.0) || !isfinite(expected_clients))
        return fed_error(FED_EINVAL, "adaptive clip: expected clients per round must be > 0 (got %g)",
                         expected_clients);
    if (sigma_b <= 0.0) sigma_b = expected_clients / 20.0; /* the paper's default */
    double zd;
    int rc = fed_adaptive_clip_noise_split(noise_multiplier, sigma_b, &zd);
    if (rc) return rc;
    ac->clip = initial_clip;
    ac->target_quantile = target_quantile;
    ac->lr = lr;
    ac->expected_clients = expected_clients;
    ac->sigma_b = sigma_b;
    ac->noise_multiplier = noise_multiplier;
    ac->z_delta = zd;
    return 0;
}

int fed_adaptive_clip_bit(const fed_adaptive_clip *ac, double norm) {
    return ac && norm <= ac->clip;
}

double fed_adaptive_clip_sum_stddev(const fed_adaptive_clip *ac) {
    return ac ? ac->z_delta * ac->clip : 0.0;
}

int fed_adaptive_clip_update_with(fed_adaptive_clip *ac, double bit_sum, double count_noise) {
    if (!ac) return fed_error(FED_EINVAL, "adaptive clip: state is NULL");
    if (!(bit_sum >= 0.0) || !isfinite(bit_sum))
        return fed_error(FED_EINVAL, "adaptive clip: bit sum must be finite and >= 0 (got %g)", bit_sum);
    if (!isfinite(count_noise))
        return fed_error(FED_EINVAL, "adaptive clip: count noise must be finite (got %g)", count_noise);
    double b = (bit_sum + count_noise) / ac->expected_clients;
    double c = ac->clip * exp(-ac->lr * (b - ac->target_quantile));
    /* b is noisy and unbounded, so one wild draw could take C to 0 or inf; a clip that
     * stops being a positive finite number would stop all learning, keep the old one. */
    if (c > 0.0 && isfinite(c)) ac->clip = c;
    return 0;
}

int fed_adaptive_clip_update(fed_adaptive_clip *ac, double bit_sum, fed_dp_noise *ns) {
    if (!ac) return fed_error(FED_EINVAL, "adaptive clip: state is NULL");
    double g;
    int rc = fed_dp_sample_normal(ns, &g);
    if (rc) return rc;
    return fed_adaptive_clip_update_with(ac, bit_sum, ac->sigma_b * g);
}
