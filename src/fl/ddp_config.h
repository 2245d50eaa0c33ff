/* privacy.mode distributed (the distributed discrete Gaussian, Kairouz et al. 2021) and
 * distributed-dp-sgd (the same noise on record-level DP-SGD sums): the mechanism's
 * parameters from a run config, shared by the secure round that adds the noise
 * (secure_round.c) and the accountant (privacy.c), so both see one mechanism. */
#ifndef FEDERATE_FL_DDP_CONFIG_H
#define FEDERATE_FL_DDP_CONFIG_H
#include <math.h>
#include <string.h>
#include "federate/config.h"
#include "federate/dp.h"
#include "federate/secagg.h"


static inline int fed_ddp_enabled(const fed_config *c) { return !strcmp(c->dp_mode, "distributed"); }
static inline int fed_ddp_record_level(const fed_config *c) { return !strcmp(c->dp_mode, "distributed-dp-sgd"); }

/* The noise is split among the clients the protocol is sized to keep: clients per
 * round less the tolerated drop-out fraction. A round with fewer survivors is not
 * released. */
static inline int fed_ddp_min_survivors(const fed_config *c) {
    int k = fed_config_clients_per_round(c);
    double m = ceil((double)k * (1.0 - c->sa_dropout) - 1e-9);
    return m < 1 ? 1 : (int)m;
}

static inline double fed_ddp_clip(const fed_config *c) {
    return c->dp_clip > 0 ? c->dp_clip : FED_ADAPTIVE_CLIP_INITIAL;
}

static inline int fed_ddp_params(const fed_config *c, size_t dim, uint64_t round, fed_secagg_ddp *p) {
    int src;
    int rc = fed_dp_noise_source_from_name(c->dp_noise_source, &src);
    if (rc) return rc;
    return fed_secagg_ddp_init(p, fed_ddp_clip(c), c->sa_bits, c->dp_noise_multiplier, dim,
                               fed_ddp_min_survivors(c), src, c->seed, round);
}

/* distributed-dp-sgd: a client's input is -lr / B times its sampled records' clipped
 * gradients (clip C each), so one record moves it by at most unit = lr C / B, the
 * round's learning rate and batch size (the same for every client). The accountant
 * needs only the integer-unit sensitivity and variance, which do not depend on unit. */
static inline int fed_ddp_record_params(const fed_config *c, size_t dim, uint64_t round, double unit,
                                        long max_records, fed_secagg_ddp *p) {
    int src;
    int rc = fed_dp_noise_source_from_name(c->dp_noise_source, &src);
    if (rc) return rc;
    return fed_secagg_ddp_init_records(p, unit, c->sa_bits, c->dp_noise_multiplier, dim, fed_ddp_min_survivors(c),
                                       max_records, src, c->seed, round);
}

static inline double fed_ddp_record_clip(const fed_config *c) { return c->dp_clip > 0 ? c->dp_clip : 1.0; }
#endif
