/* Differential privacy across the rounds of a run: the instructions clients
 * get, DP-FedAvg's sampling and noised aggregate, and the accounting.
 *   record level, dp-sgd: Abadi et al. 2016; each client is its own RDP
 *     accountant over the local steps it ran at its own sampling rate B / n_k,
 *     and the run's epsilon is the largest over clients.
 *   user level, dp-fedavg: McMahan et al. 2018 (DP-FedAvg with Poisson client
 *     sampling at q = m / N and the fixed denominator m), adaptive clipping of
 *     Andrew et al. 2021 with the noise split so the pair (noised count, noised
 *     sum) is accounted as one Gaussian mechanism with multiplier z.
 *   local: each client noises its own clipped update; replacing a client's
 *     data moves its clipped update by up to 2C, so each participation is a
 *     Gaussian mechanism with multiplier z / 2, without sampling amplification.
 *   distributed: with secure aggregation, each client clips, rounds and adds a
 *     share of discrete Gaussian noise before masking (Kairouz, Liu, Steinke
 *     2021); each released round is their Prop. 14 / Eq. 17 RDP for the sum of as
 *     many shares as survived (fed_rdp_compose_ddgauss), add/remove sensitivity the
 *     rounded vector's norm bound, composed without sampling amplification (the
 *     run's fixed-size selection is not the Poisson sampling the amplification
 *     theorems assume).
 *   distributed-dp-sgd: record-level DP-SGD under secure aggregation. Each round every
 *     selected client takes one DP-SGD step without noise: it Poisson-samples its
 *     records at q_k = B / n_k, clips each record's gradient to C and sends -lr / B
 *     times the sum, rounded and with its share of discrete Gaussian noise, under
 *     masks. The server unmasks only the noised sum, so each record is protected by
 *     the noise of all the shares (centralized DP-SGD over the union of the samples).
 *     A client's records are accounted over the rounds whose release included its
 *     input: Zhu & Wang 2019's Poisson-subsampling bound (fed_dp_subsampled_ddgauss_rdp)
 *     on Kairouz et al.'s RDP for as many shares as survived, with one record's
 *     sensitivity after rounding (fed_secagg_ddp_init_records); the run's epsilon is
 *     the largest over clients. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "federate/dp.h"
#include "federate/error.h"
#include "federate/fl.h"
#include "federate/vec.h"
#include "ddp_config.h"

struct fed_privacy {
    int mode;
    int source;                /* FED_DP_NOISE_* */
    int conversion;            /* FED_RDP_CONVERSION_* */
    double z, clip, delta;
    int adaptive;
    fed_adaptive_clip ac;
    int num_clients;
    double expected;           /* m: expected clients per round */
    int batch_size, local_epochs;
    const fed_federation *fed;
    long *steps;               /* dp-sgd: local steps per client; local: participations */
    double *eps;               /* dp-sgd / local: epsilon per client so far */
    double eps_max;
    long rounds;               /* dp-fedavg, distributed: rounds run */
    fed_secagg_ddp ddp;        /* distributed: the mechanism (round 0's streams) */
    fed_rdp *acc;              /* distributed: RDP of the released rounds; distributed-dp-sgd: the orders */
    fed_rdp **cacc;            /* distributed-dp-sgd: each client's RDP over the releases it was in */
    double *inc;               /* distributed-dp-sgd: one release's RDP at (inc_q, inc_m), cached */
    double inc_q;
    int inc_m;
    int max_participants;      /* distributed: clients per round */
    char desc[512];
};

int fed_privacy_mode(const fed_privacy *p) { return p ? p->mode : FED_PRIVACY_NONE; }

/* ---- distributed: the mechanism as the secure round runs it (ddp_config.h) ---- */
static double ddp_l2(const fed_privacy *p) { return sqrt(p->ddp.l2_bound2); }
static double ddp_sigma2(const fed_privacy *p) {
    return p->ddp.sigma2_num ? (double)p->ddp.sigma2_num / (double)p->ddp.sigma2_den : 0.0;
}

static int ddp_setup(fed_privacy *p, const fed_config *cfg, const fed_federation *fed) {
    /* the accountant needs the update's dimension: the run's model */
    fed_model *m = NULL;
    int rc = fed_model_for_config(cfg, &fed->train, &m);
    if (rc) return rc;
    size_t dim = fed_model_num_params(m);
    fed_model_free(m);
    p->clip = fed_ddp_clip(cfg);
    /* the errors already say "distributed DP: ..." and name the keys to change */
    if ((rc = fed_ddp_params(cfg, dim, 0, &p->ddp))) return rc;
    p->max_participants = fed_config_clients_per_round(cfg);
    int ring;
    if ((rc = fed_secagg_ddp_ring_bits(&p->ddp, p->max_participants, &ring))) return rc;
    if (p->ddp.min_survivors < 2)
        return fed_error(FED_EINVAL, "privacy.mode distributed needs at least 2 surviving clients per round "
                                     "(clients_per_round %d, secure_aggregation.dropout_fraction %g)",
                         p->max_participants, cfg->sa_dropout);
    return fed_rdp_new(&p->acc, NULL, 0);
}

/* Epsilon so far, plus one more release of `more` shares when more > 0. */
static int ddp_epsilon(const fed_privacy *p, int more, double *eps) {
    if (more <= 0) return fed_rdp_epsilon(p->acc, p->delta, p->conversion, eps, NULL);
    const double *orders, *rdp;
    int n;
    fed_rdp_orders(p->acc, &orders, &rdp, &n);
    fed_rdp *a;
    int rc = fed_rdp_new(&a, orders, n);
    if (!rc) rc = fed_rdp_add(a, rdp, n);
    if (!rc) rc = fed_rdp_compose_ddgauss(a, ddp_l2(p), ddp_sigma2(p), more, (double)p->ddp.dim, 1);
    if (!rc) rc = fed_rdp_epsilon(a, p->delta, p->conversion, eps, NULL);
    fed_rdp_free(a);
    return rc;
}
/* ---- distributed-dp-sgd: record-level DP-SGD under secure aggregation ---- */
static int records_setup(fed_privacy *p, const fed_config *cfg, const fed_federation *fed) {
    fed_model *m = NULL;
    int rc = fed_model_for_config(cfg, &fed->train, &m);
    if (rc) return rc;
    size_t dim = fed_model_num_params(m);
    fed_model_free(m);
    long max_records = 1;
    for (int i = 0; i < fed->num_clients; i++)
        if ((long)fed->part.train_n[i] > max_records) max_records = (long)fed->part.train_n[i];
    /* the integer-unit sensitivity and noise do not depend on the round's lr C / B */
    if ((rc = fed_ddp_record_params(cfg, dim, 0, 1.0, max_records, &p->ddp))) return rc;
    p->max_participants = fed_config_clients_per_round(cfg);
    int ring;
    if ((rc = fed_secagg_ddp_ring_bits(&p->ddp, p->max_participants, &ring))) return rc;
    if (p->ddp.min_survivors < 2)
        return fed_error(FED_EINVAL, "privacy.mode distributed-dp-sgd needs at least 2 surviving clients per round "
                                     "(clients_per_round %d, secure_aggregation.dropout_fraction %g)",
                         p->max_participants, cfg->sa_dropout);
    if ((rc = fed_rdp_new(&p->acc, NULL, 0))) return rc;
    int no;
    fed_rdp_orders(p->acc, NULL, NULL, &no);
    p->cacc = calloc((size_t)p->num_clients, sizeof *p->cacc);
    p->inc = malloc((size_t)no * sizeof *p->inc);
    p->eps = calloc((size_t)p->num_clients, sizeof *p->eps);
    if (!p->cacc || !p->inc || !p->eps) return fed_error(FED_ENOMEM, "privacy: out of memory for %d clients", p->num_clients);
    for (int i = 0; i < p->num_clients; i++)
        if ((rc = fed_rdp_new(&p->cacc[i], NULL, 0))) return rc;
    p->inc_m = 0;
    return 0;
}

static double records_q(const fed_privacy *p, int client) {
    double nk = (double)p->fed->part.train_n[client];
    double q = nk > 0 ? (double)p->batch_size / nk : 1.0;
    return q > 1 ? 1 : q;
}

/* One release's RDP for a client sampled at q among m noise shares (p->inc). */
static int records_inc(fed_privacy *p, double q, int m) {
    if (m == p->inc_m && q == p->inc_q) return 0;
    const double *orders;
    int no;
    fed_rdp_orders(p->acc, &orders, NULL, &no);
    p->inc_m = 0;
    int rc = fed_dp_subsampled_ddgauss_rdp(q, ddp_l2(p), ddp_sigma2(p), m, (double)p->ddp.dim, orders, no, p->inc);
    if (rc) return rc;
    p->inc_q = q;
    p->inc_m = m;
    return 0;
}

/* Epsilon of a client's curve plus one more release (p->inc) when more. */
static int records_epsilon(const fed_privacy *p, int client, int more, double *eps) {
    const double *orders, *rdp;
    int no;
    fed_rdp_orders(p->cacc[client], &orders, &rdp, &no);
    fed_rdp *a;
    int rc = fed_rdp_new(&a, orders, no);
    if (!rc) rc = fed_rdp_add(a, rdp, no);
    if (!rc && more) rc = fed_rdp_add(a, p->inc, no);
    if (!rc) rc = fed_rdp_epsilon(a, p->delta, p->conversion, eps, NULL);
    fed_rdp_free(a);
    return rc;
}

const char *fed_privacy_describe(const fed_privacy *p) { return p ? p->desc : "none"; }
double fed_privacy_clip(const fed_privacy *p) {
    if (!p || (p->mode != FED_PRIVACY_DPFEDAVG && p->mode != FED_PRIVACY_LOCAL &&
               p->mode != FED_PRIVACY_DISTRIBUTED))
        return NAN;
    return p->adaptive ? p->ac.clip : p->clip;
}

void fed_privacy_free(fed_privacy *p) {
    if (!p) return;
    free(p->steps);
    free(p->eps);
    if (p->cacc)
        for (int i = 0; i < p->num_clients; i++) fed_rdp_free(p->cacc[i]);
    free(p->cacc);
    free(p->inc);
    fed_rdp_free(p->acc);
    free(p);
}

int fed_privacy_new(fed_privacy **out, const fed_config *cfg, const fed_federation *fed) {
    *out = NULL;
    int mode;
    if (!strcmp(cfg->dp_mode, "none")) return 0;
    else if (!strcmp(cfg->dp_mode, "dp-sgd")) mode = FED_PRIVACY_DPSGD;
    else if (!strcmp(cfg->dp_mode, "dp-fedavg")) mode = FED_PRIVACY_DPFEDAVG;
    else if (!strcmp(cfg->dp_mode, "local")) mode = FED_PRIVACY_LOCAL;
    else if (fed_ddp_enabled(cfg)) mode = FED_PRIVACY_DISTRIBUTED;
    else if (fed_ddp_record_level(cfg)) mode = FED_PRIVACY_DISTRIBUTED_DPSGD;
    else return fed_error(FED_EINVAL, "privacy.mode '%s' is not one of none, dp-sgd, dp-fedavg, local, distributed, "
                                      "distributed-dp-sgd", cfg->dp_mode);
    if (!(cfg->dp_delta > 0 && cfg->dp_delta < 1))
        return fed_error(FED_EINVAL, "privacy.delta must be in (0, 1) (got %g)", cfg->dp_delta);
    if (mode == FED_PRIVACY_DPFEDAVG) {
        /* the noised sum is divided by a fixed m and handed to the server step:
         * strategies that weight or normalize clients themselves would undo the
         * sensitivity bound */
        if (!fed_strategy_mean_only(cfg->strategy))
            return fed_error(FED_EINVAL,
                             "privacy.mode dp-fedavg works with strategy fedavg, fedavgm, fedprox, fedadam, fedyogi "
                             "or fedadagrad, not %s (its aggregation weights clients unequally)",
                             cfg->strategy);
    }
    if (mode == FED_PRIVACY_DISTRIBUTED) {
        if (!cfg->sa_enabled)
            return fed_error(FED_EINVAL, "privacy.mode distributed adds the noise inside secure aggregation; set "
                                         "secure_aggregation.enabled: true (or use privacy.mode dp-fedavg)");
        if (cfg->dp_adaptive)
            return fed_error(FED_EINVAL, "privacy.adaptive_clipping does not work with privacy.mode distributed (the "
                                         "noised count of unclipped updates would need its own secure sum); set a "
                                         "fixed privacy.clip_norm");
        if (!fed_strategy_mean_only(cfg->strategy))
            return fed_error(FED_EINVAL, "privacy.mode distributed works with strategy fedavg, fedavgm, fedprox, "
                                         "fedadam, fedyogi or fedadagrad, not %s", cfg->strategy);
    }
    if (mode == FED_PRIVACY_DISTRIBUTED_DPSGD) {
        if (!cfg->sa_enabled)
            return fed_error(FED_EINVAL, "privacy.mode distributed-dp-sgd adds the noise inside secure aggregation; "
                                         "set secure_aggregation.enabled: true (or use privacy.mode dp-sgd)");
        if (cfg->dp_adaptive)
            return fed_error(FED_EINVAL, "privacy.adaptive_clipping needs privacy.mode dp-fedavg (got %s)",
                             cfg->dp_mode);
        if (!fed_strategy_mean_only(cfg->strategy) || !strcmp(cfg->strategy, "fedprox"))
            return fed_error(FED_EINVAL, "privacy.mode distributed-dp-sgd works with strategy fedavg, fedavgm, "
                                         "fedadam, fedyogi or fedadagrad (the server's optimizer), not %s",
                             cfg->strategy);
        if (cfg->adapt_to_capability)
            return fed_error(FED_EINVAL, "privacy.mode distributed-dp-sgd runs one DP-SGD step per client and "
                                         "round at the round's learning rate; unset adapt_to_capability");
        /* the input must be linear in the sampled records: a lossy codec could turn one
         * record into more than its clip, and error feedback would carry it into rounds
         * that did not sample it */
        if (cfg->compression[0] && strcmp(cfg->compression, "none"))
            return fed_error(FED_EINVAL, "privacy.mode distributed-dp-sgd does not work with compression '%s' (it "
                                         "would act on the update before masking, and a record's share of it is "
                                         "what the noise is sized for); remove compression", cfg->compression);
    }
    fed_privacy *p = calloc(1, sizeof *p);
    if (!p) return fed_error(FED_ENOMEM, "privacy: out of memory");
    p->mode = mode;
    p->z = cfg->dp_noise_multiplier;
    p->delta = cfg->dp_delta;
    p->clip = cfg->dp_clip > 0 ? cfg->dp_clip
                               : (mode == FED_PRIVACY_DPSGD || mode == FED_PRIVACY_DISTRIBUTED_DPSGD
                                      ? 1.0 : FED_ADAPTIVE_CLIP_INITIAL);
    p->conversion = strcmp(cfg->dp_conversion, "classic") ? FED_RDP_CONVERSION_IMPROVED : FED_RDP_CONVERSION_CLASSIC;
    int rc = fed_dp_noise_source_from_name(cfg->dp_noise_source, &p->source);
    if (rc) goto fail;
    p->num_clients = fed->num_clients;
    p->expected = (double)fed_config_clients_per_round(cfg);
    p->batch_size = cfg->batch_size;
    p->local_epochs = cfg->local_epochs;
    p->fed = fed;
    p->adaptive = mode == FED_PRIVACY_DPFEDAVG && cfg->dp_adaptive;
    if (cfg->dp_adaptive && mode != FED_PRIVACY_DPFEDAVG) {
        rc = fed_error(FED_EINVAL, "privacy.adaptive_clipping needs privacy.mode dp-fedavg (got %s)", cfg->dp_mode);
        goto fail;
    }
    if (p->adaptive &&
        (rc = fed_adaptive_clip_init(&p->ac, p->clip, cfg->dp_target_quantile, cfg->dp_clip_lr, p->expected,
                                     cfg->dp_count_stddev, p->z))) {
        fed_error(rc, "privacy.adaptive_clipping: %s (raise privacy.clipped_count_stddev or lower "
                      "privacy.noise_multiplier)", fed_last_error());
        goto fail;
    }
    if (mode == FED_PRIVACY_DISTRIBUTED && (rc = ddp_setup(p, cfg, fed))) goto fail;
    if (mode == FED_PRIVACY_DISTRIBUTED_DPSGD && (rc = records_setup(p, cfg, fed))) goto fail;
    if (mode == FED_PRIVACY_DPSGD || mode == FED_PRIVACY_LOCAL) {
        p->steps = calloc((size_t)p->num_clients, sizeof(long));
        p->eps = calloc((size_t)p->num_clients, sizeof(double));
        if (!p->steps || !p->eps) {
            rc = fed_error(FED_ENOMEM, "privacy: out of memory for %d clients", p->num_clients);
            goto fail;
        }
    }
    const char *src = fed_dp_noise_source_name(p->source);
    const char *conv = p->conversion == FED_RDP_CONVERSION_CLASSIC ? "classic" : "improved";
    if (mode == FED_PRIVACY_DPSGD)
        snprintf(p->desc, sizeof p->desc,
                 "record-level DP-SGD: Poisson sampling q = %d / n_k, per-example clip %g, Gaussian noise "
                 "multiplier %g (%s); RDP accountant (%s conversion), max over clients, delta %g",
                 p->batch_size, p->clip, p->z, src, conv, p->delta);
    else if (mode == FED_PRIVACY_DPFEDAVG)
        snprintf(p->desc, sizeof p->desc,
                 "user-level DP-FedAvg: Poisson client sampling q = %g / %d, %s clip %g, Gaussian noise "
                 "multiplier %g (%s); RDP accountant (%s conversion), delta %g",
                 p->expected, p->num_clients, p->adaptive ? "adaptive" : "fixed", p->clip, p->z, src, conv, p->delta);
    else if (mode == FED_PRIVACY_DISTRIBUTED)
        snprintf(p->desc, sizeof p->desc,
                 "user-level distributed DP under secure aggregation: update clip %g, %d bits, discrete Gaussian "
                 "shares of variance %.6g steps^2 from each client, calibrated for %d survivors (total noise %g x "
                 "clip); Kairouz et al. 2021 RDP, no sampling amplification (%s conversion), delta %g",
                 p->clip, p->ddp.bits, (double)p->ddp.sigma2_num / (double)(p->ddp.sigma2_den ? p->ddp.sigma2_den : 1),
                 p->ddp.min_survivors, p->z, conv, p->delta);
    else if (mode == FED_PRIVACY_DISTRIBUTED_DPSGD)
        snprintf(p->desc, sizeof p->desc,
                 "record-level DP-SGD under secure aggregation: one step per round, Poisson sampling q = %d / n_k, "
                 "per-example clip %g, %d bits per clip, discrete Gaussian shares from each client calibrated for %d "
                 "survivors (total noise %g x clip); Kairouz et al. 2021 RDP with Zhu & Wang 2019 subsampling "
                 "(%s conversion), max over clients, delta %g",
                 p->batch_size, p->clip, p->ddp.bits, p->ddp.min_survivors, p->z, conv, p->delta);
    else
        snprintf(p->desc, sizeof p->desc,
                 "local DP: update clip %g, Gaussian noise %g x clip added by each client (%s); RDP accountant "
                 "(%s conversion), sensitivity 2 x clip, max over clients, delta %g",
                 p->clip, p->z, src, conv, p->delta);
    *out = p;
    return 0;
fail:
    fed_privacy_free(p);
    return rc;
}

void fed_privacy_configure(const fed_privacy *p, fed_client_ins *ins) {
    if (!p) return;
    ins->secure_noise = p->source == FED_DP_NOISE_SECURE;
    if (p->mode == FED_PRIVACY_DPSGD) {
        ins->dpsgd_clip = (float)p->clip;
        ins->dpsgd_noise = (float)p->z;
    } else if (p->mode == FED_PRIVACY_DISTRIBUTED_DPSGD) {
        /* one noiseless step at the run's batch size: the secure round adds the noise
         * and reads every client's input in the same units, lr C / B */
        ins->dpsgd_clip = (float)p->clip;
        ins->dpsgd_noise = 0;
        ins->dpsgd_sum = 1;
        ins->batch_size = p->batch_size;
        ins->max_steps = 1;
        if (ins->local_epochs < 1) ins->local_epochs = 1;
    } else if (p->mode == FED_PRIVACY_DPFEDAVG || p->mode == FED_PRIVACY_DISTRIBUTED) {
        ins->update_clip = (float)fed_privacy_clip(p);
    } else if (p->mode == FED_PRIVACY_LOCAL) {
        ins->update_clip = (float)p->clip;
        ins->local_noise = (float)(p->z * p->clip);
    }
}

int fed_privacy_select(const fed_privacy *p, uint64_t seed, int round, int *out, int *k) {
    if (!p || p->mode != FED_PRIVACY_DPFEDAVG) return fed_error(FED_ESTATE, "privacy: Poisson selection is DP-FedAvg's");
    double q = p->expected / p->num_clients;
    fed_rng r;
    fed_rng_init(&r, seed, (uint64_t)round, 0, FED_RNG_SELECT);
    int n = 0;
    for (int i = 0; i < p->num_clients; i++)
        if (fed_rng_uniform(&r) < q) out[n++] = i;
    *k = n;
    return 0;
}

int fed_privacy_aggregate(fed_privacy *p, uint64_t seed, int round, const fed_result *res, int k, float *out,
                          size_t n) {
    if (!p || p->mode != FED_PRIVACY_DPFEDAVG) return fed_error(FED_ESTATE, "privacy: not a DP-FedAvg run");
    double clip = fed_privacy_clip(p);
    fed_vec_zero(out, n);
    double bits = 0;
    for (int i = 0; i < k; i++) {
        if (res[i].status != FED_RESULT_OK) continue;
        /* the client clipped already (its pipeline); clip again so a client that
         * did not cannot raise the sensitivity */
        double norm = fed_vec_norm2(res[i].delta, n);
        float f = norm > clip ? (float)(clip / norm) : 1.0f;
        fed_vec_axpy(out, f, res[i].delta, n);
        if (p->adaptive) bits += fed_adaptive_clip_bit(&p->ac, res[i].update_norm);
    }
    double stddev = p->adaptive ? fed_adaptive_clip_sum_stddev(&p->ac) : p->z * clip;
    fed_dp_noise ns;
    int rc = fed_dp_noise_init(&ns, p->source, seed, (uint64_t)round, FED_DP_CLIENT_SERVER);
    if (!rc) rc = fed_dp_gaussian(&ns, out, n, stddev);
    if (rc) return rc;
    fed_vec_scale(out, (float)(1.0 / p->expected), n);
    if (p->adaptive) {
        fed_dp_noise cn;
        if ((rc = fed_dp_noise_init(&cn, p->source, seed, (uint64_t)round, FED_DP_CLIENT_CLIP_COUNT))) return rc;
        if ((rc = fed_adaptive_clip_update(&p->ac, bits, &cn))) return rc;
    }
    return 0;
}

/* Steps a task will run: E epochs of ceil(n_k / B), or its max_steps. */
static long planned_steps(const fed_privacy *p, const fed_task *t) {
    long nk = (long)p->fed->part.train_n[t->client];
    int b = t->ins.batch_size > 0 ? t->ins.batch_size : p->batch_size;
    long s = (long)t->ins.local_epochs * ((nk + b - 1) / b);
    if (t->ins.max_steps > 0 && t->ins.max_steps < s) s = t->ins.max_steps;
    return s;
}

static int client_epsilon(const fed_privacy *p, int client, long steps, double *eps) {
    if (steps <= 0) { *eps = 0; return 0; }
    if (p->mode == FED_PRIVACY_LOCAL)
        return fed_dp_epsilon(1.0, p->z / 2.0, steps, p->delta, p->conversion, NULL, 0, eps, NULL);
    long nk = (long)p->fed->part.train_n[client];
    double q = nk > 0 ? (double)p->batch_size / (double)nk : 1.0;
    if (q > 1) q = 1;
    return fed_dp_epsilon(q, p->z, steps, p->delta, p->conversion, NULL, 0, eps, NULL);
}

static int fedavg_epsilon(const fed_privacy *p, long rounds, double *eps) {
    if (rounds <= 0) { *eps = 0; return 0; }
    return fed_dp_epsilon(p->expected / p->num_clients, p->z, rounds, p->delta, p->conversion, NULL, 0, eps, NULL);
}

int fed_privacy_epsilon_after(const fed_privacy *p, const fed_task *tasks, int k, double *eps) {
    if (!p) { *eps = 0; return 0; }
    if (p->mode == FED_PRIVACY_DISTRIBUTED) return ddp_epsilon(p, k > 0 ? p->ddp.min_survivors : 0, eps);
    if (p->mode == FED_PRIVACY_DPFEDAVG) return fedavg_epsilon(p, p->rounds + 1, eps);
    if (p->mode == FED_PRIVACY_DISTRIBUTED_DPSGD) {
        /* the worst release: as few shares as the server may unmask */
        fed_privacy *w = (fed_privacy *)p; /* the cache only */
        double worst = p->eps_max;
        for (int i = 0; i < k; i++) {
            double e;
            int rc = records_inc(w, records_q(p, tasks[i].client), p->ddp.min_survivors);
            if (!rc) rc = records_epsilon(p, tasks[i].client, 1, &e);
            if (rc) return rc;
            if (e > worst) worst = e;
        }
        *eps = worst;
        return 0;
    }
    double worst = p->eps_max;
    for (int i = 0; i < k; i++) {
        int c = tasks[i].client;
        long more = p->mode == FED_PRIVACY_LOCAL ? 1 : planned_steps(p, &tasks[i]);
        double e;
        int rc = client_epsilon(p, c, p->steps[c] + more, &e);
        if (rc) return rc;
        if (e > worst) worst = e;
    }
    *eps = worst;
    return 0;
}

int fed_privacy_account(fed_privacy *p, const fed_result *res, int k) {
    if (!p) return 0;
    if (p->mode == FED_PRIVACY_DPFEDAVG) {
        /* every round is a release of the (possibly empty) noised sum */
        p->rounds++;
        return 0;
    }
    if (p->mode == FED_PRIVACY_DISTRIBUTED_DPSGD) {
        /* the clients still OK after the secure round are those whose inputs, and so
         * whose sampled records, are in the released sum, with m noise shares */
        int m = 0;
        for (int i = 0; i < k; i++) m += res[i].status == FED_RESULT_OK;
        p->rounds++;
        for (int i = 0; i < k && m > 0; i++) {
            if (res[i].status != FED_RESULT_OK) continue;
            int c = res[i].client, rc;
            const double *orders;
            int no;
            fed_rdp_orders(p->acc, &orders, NULL, &no);
            if ((rc = records_inc(p, records_q(p, c), m))) return rc;
            if ((rc = fed_rdp_add(p->cacc[c], p->inc, no))) return rc;
            if ((rc = records_epsilon(p, c, 0, &p->eps[c]))) return rc;
            if (p->eps[c] > p->eps_max) p->eps_max = p->eps[c];
        }
        return 0;
    }
    if (p->mode == FED_PRIVACY_DISTRIBUTED) {
        /* the clients still OK after the secure round are exactly those whose noise
         * shares are in the released sum; a failed round released nothing */
        int m = 0;
        for (int i = 0; i < k; i++) m += res[i].status == FED_RESULT_OK;
        p->rounds++;
        return m > 0 ? fed_rdp_compose_ddgauss(p->acc, ddp_l2(p), ddp_sigma2(p), m, (double)p->ddp.dim, 1) : 0;
    }
    for (int i = 0; i < k; i++) {
        if (res[i].status != FED_RESULT_OK) continue;   /* nothing left the client */
        int c = res[i].client;
        p->steps[c] += p->mode == FED_PRIVACY_LOCAL ? 1 : res[i].steps;
        int rc = client_epsilon(p, c, p->steps[c], &p->eps[c]);
        if (rc) return rc;
        if (p->eps[c] > p->eps_max) p->eps_max = p->eps[c];
    }
    return 0;
}

int fed_privacy_epsilon(const fed_privacy *p, double *eps) {
    if (!p) { *eps = 0; return 0; }
    if (p->mode == FED_PRIVACY_DPFEDAVG) return fedavg_epsilon(p, p->rounds, eps);
    if (p->mode == FED_PRIVACY_DISTRIBUTED) return ddp_epsilon(p, 0, eps);
    *eps = p->eps_max;
    return 0;
}

/* State words: [rounds, clip bits, steps[0..N)]; distributed: [rounds, clip bits,
 * RDP bits at each order] (the rounds' survivor counts differ, so the curve itself);
 * distributed-dp-sgd: [rounds, clip bits, each client's curve in turn]. */
static size_t ddp_orders(const fed_privacy *p) {
    int n = 0;
    if (p->acc) fed_rdp_orders(p->acc, NULL, NULL, &n);
    return (size_t)n;
}

int fed_privacy_state_size(const fed_privacy *p, size_t *len) {
    if (!p) {
        *len = 0;
        return 0;
    }
    size_t curves = p->cacc ? (size_t)p->num_clients : 1;
    *len = 2 + (p->steps ? (size_t)p->num_clients : 0) + curves * ddp_orders(p);
    return 0;
}

int fed_privacy_state_get(const fed_privacy *p, int64_t *w, size_t len) {
    size_t need;
    fed_privacy_state_size(p, &need);
    if (len < need) return fed_error(FED_EINVAL, "privacy: state needs %zu words", need);
    if (!p) return 0;
    w[0] = p->rounds;
    double c = p->adaptive ? p->ac.clip : p->clip;
    memcpy(&w[1], &c, sizeof c);   /* the exact double, so a resumed run is bit-identical */
    if (p->cacc) {
        size_t no = ddp_orders(p), at = 2;
        for (int c = 0; c < p->num_clients; c++, at += no) {
            const double *rdp;
            fed_rdp_orders(p->cacc[c], NULL, &rdp, NULL);
            memcpy(&w[at], rdp, no * sizeof(double));
        }
        return 0;
    }
    if (p->acc) {
        const double *rdp;
        fed_rdp_orders(p->acc, NULL, &rdp, NULL);
        for (size_t i = 2; i < need; i++) memcpy(&w[i], &rdp[i - 2], sizeof(double));
        return 0;
    }
    for (size_t i = 2; i < need; i++) w[i] = p->steps[i - 2];
    return 0;
}

int fed_privacy_state_set(fed_privacy *p, const int64_t *w, size_t len) {
    size_t need;
    fed_privacy_state_size(p, &need);
    if (len != need) return fed_error(FED_EFORMAT, "privacy: checkpoint has %zu state words, expected %zu", len, need);
    if (!p) return 0;
    p->rounds = w[0];
    double c;
    memcpy(&c, &w[1], sizeof c);
    if (!(c > 0) || !isfinite(c)) return fed_error(FED_EFORMAT, "privacy: checkpoint has a bad clip norm");
    if (p->adaptive) p->ac.clip = c;
    if (p->cacc) {
        size_t no = ddp_orders(p);
        const double *orders;
        fed_rdp_orders(p->acc, &orders, NULL, NULL);
        double *r = malloc(no * sizeof *r);
        if (!r) return fed_error(FED_ENOMEM, "privacy: out of memory");
        int rc = 0;
        p->eps_max = 0;
        for (int cl = 0; cl < p->num_clients && !rc; cl++) {
            memcpy(r, &w[2 + (size_t)cl * no], no * sizeof *r);
            fed_rdp *fresh = NULL;
            rc = fed_rdp_new(&fresh, orders, (int)no);
            if (!rc && fed_rdp_add(fresh, r, (int)no)) rc = fed_error(FED_EFORMAT, "privacy: checkpoint has a bad RDP curve");
            if (rc) {
                fed_rdp_free(fresh);
                break;
            }
            fed_rdp_free(p->cacc[cl]);
            p->cacc[cl] = fresh;
            if ((rc = records_epsilon(p, cl, 0, &p->eps[cl]))) break;
            if (p->eps[cl] > p->eps_max) p->eps_max = p->eps[cl];
        }
        free(r);
        return rc;
    }
    if (p->acc) {
        int no;
        const double *orders;
        fed_rdp_orders(p->acc, &orders, NULL, &no);
        double *r = malloc((size_t)no * sizeof *r);
        if (!r) return fed_error(FED_ENOMEM, "privacy: out of memory");
        for (int i = 0; i < no; i++) memcpy(&r[i], &w[2 + i], sizeof(double));
        fed_rdp *fresh = NULL;
        int rc = fed_rdp_new(&fresh, orders, no);
        if (!rc && fed_rdp_add(fresh, r, no)) rc = fed_error(FED_EFORMAT, "privacy: checkpoint has a bad RDP curve");
        free(r);
        if (rc) {
            fed_rdp_free(fresh);
            return rc;
        }
        fed_rdp_free(p->acc);
        p->acc = fresh;
        return 0;
    }
    p->eps_max = 0;
    for (size_t i = 2; i < need; i++) {
        int client = (int)(i - 2);
        if (w[i] < 0) return fed_error(FED_EFORMAT, "privacy: checkpoint has negative steps");
        p->steps[client] = w[i];
        int rc = client_epsilon(p, client, w[i], &p->eps[client]);
        if (rc) return rc;
        if (p->eps[client] > p->eps_max) p->eps_max = p->eps[client];
    }
    return 0;
}
