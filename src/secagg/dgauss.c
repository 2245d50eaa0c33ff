/* Distributed DP under secure aggregation: each client adds exact discrete
 * Gaussian noise N_Z(0, sigma^2) (Canonne, Kamath, Steinke 2020; the sampler is
 * fed_dp_discrete_gaussian of the privacy module) to its quantized input, mod R,
 * before masking; the server only ever sees the noisy sum (Kairouz et al. 2021,
 * "The Distributed Discrete Gaussian Mechanism"). */
#include <stdlib.h>
#include "federate/crypto.h"
#include "federate/dp.h"
#include "federate/error.h"
#include "secagg_internal.h"

int fed_secagg_add_dgauss(struct fed_dp_noise *ns, uint64_t *x, size_t L, int ring_bits, uint64_t sigma2_num,
                          uint64_t sigma2_den) {
    if (!ns || (!x && L) || ring_bits < 1 || ring_bits > 64)
        return fed_error(FED_EINVAL, "secagg noise: bad arguments (ring_bits %d)", ring_bits);
    uint64_t mask = ring_bits == 64 ? ~0ULL : (1ULL << ring_bits) - 1;
    enum { B = 1024 };
    int64_t z[B];
    for (size_t i = 0; i < L; i += B) {
        size_t m = L - i < B ? L - i : B;
        int rc = fed_dp_discrete_gaussian(ns, z, m, sigma2_num, sigma2_den);
        if (rc) {
            fed_crypto_wipe(z, sizeof z);
            return rc;
        }
        for (size_t j = 0; j < m; j++) x[i + j] = (x[i + j] + (uint64_t)z[j]) & mask; /* two's complement mod 2^b */
    }
    fed_crypto_wipe(z, sizeof z); /* the noise is as secret as the input */
    return 0;
}
