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
#include "federate/error.h"
#include "federate/fl.h"
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

/* The mechanism of one secure round, for the simulator and the coordinator alike.
 * distributed-dp-sgd: the unit lr C / B from the learning rate the finished clients
 * (res[i] OK, a client id of the run) trained with, which must be one rate, or the
 * server could not read their sum; max_records bounds a client's data. distributed:
 * fed_ddp_params. */
static inline int fed_ddp_round_params(const fed_config *c, size_t dim, int round, const fed_result *res, int k,
                                       long max_records, fed_secagg_ddp *p) {
    if (!fed_ddp_record_level(c)) return fed_ddp_params(c, dim, (uint64_t)round, p);
    float lr = 0;
    int first = -1;
    for (int i = 0; i < k; i++) {
        if (res[i].status != FED_RESULT_OK || res[i].client < 0 || res[i].client >= c->num_clients) continue;
        if (first < 0) first = i, lr = res[i].lr;
        else if (res[i].lr != lr)
            return fed_error(FED_EINVAL, "privacy.mode distributed-dp-sgd: clients %d and %d trained with learning "
                                         "rates %g and %g in round %d; every client needs the round's rate",
                             res[first].client, res[i].client, (double)lr, (double)res[i].lr, round);
    }
    double unit = (double)lr * fed_ddp_record_clip(c) / (double)c->batch_size;
    return fed_ddp_record_params(c, dim, (uint64_t)round, unit, max_records, p);
}
#endif
