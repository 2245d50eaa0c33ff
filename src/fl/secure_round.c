/* Secure aggregation in a round (Bonawitz et al. 2017; SecAgg+, Bell et al.
 * 2020): the finished clients' updates are clipped, quantized with their
 * weights and summed under pairwise masks, so the server learns their weighted
 * mean and nothing about any one of them. The strategy's server step then sees
 * that mean as a single update. Clients that drop out during the protocol are
 * left out of the sum (down to the threshold t); below t the round fails and
 * the global model stays as it was.
 * With privacy.mode distributed each client instead clips its update to L2 norm C,
 * rounds it to integers and adds its share of discrete Gaussian noise before masking
 * (Kairouz, Liu, Steinke 2021; src/secagg/ddp.c): the server unmasks only the noised
 * sum of the survivors and divides by their count.
 * With privacy.mode distributed-dp-sgd each client's update is one DP-SGD step's clipped
 * gradient sum times -lr / B, rounded without a norm condition, with the same noise
 * shares: record-level DP-SGD whose noise only the sum carries. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "federate/error.h"
#include "federate/fl.h"
#include "federate/secagg.h"
#include "ddp_config.h"

struct fed_secure_agg {
    fed_config cfg;
    double weight_max;
    const float **updates;
    double *weights;
    uint8_t *drop_at, *included;
    uint64_t *ids;     /* distributed DP: the clients' ids name their rounding and noise streams */
    int cap;
    int ddp;           /* privacy.mode distributed or distributed-dp-sgd */
};

int fed_secure_agg_new(fed_secure_agg **out, const fed_config *cfg, const fed_federation *fed) {
    *out = NULL;
    if (!cfg->sa_enabled) return 0;
    fed_secure_agg *sa = calloc(1, sizeof *sa);
    if (!sa) return fed_error(FED_ENOMEM, "secure aggregation: out of memory");
    sa->cfg = *cfg;
    sa->ddp = fed_ddp_enabled(cfg) || fed_ddp_record_level(cfg);
    /* the weights (example counts) travel inside the masked vector, scaled by a
     * public bound: the largest client */
    for (int i = 0; i < fed->num_clients; i++)
        if ((double)fed->part.train_n[i] > sa->weight_max) sa->weight_max = (double)fed->part.train_n[i];
    if (sa->weight_max <= 0) sa->weight_max = 1;
    *out = sa;
    return 0;
}

void fed_secure_agg_free(fed_secure_agg *sa) {
    if (!sa) return;
    free(sa->updates);
    free(sa->weights);
    free(sa->drop_at);
    free(sa->included);
    free(sa->ids);
    free(sa);
}

int fed_secure_agg_round(fed_secure_agg *sa, int round, fed_result *res, int k, float *mean, size_t n,
                         fed_secure_agg_report *rep) {
    memset(rep, 0, sizeof *rep);
    if (k > sa->cap) {
        free(sa->updates); free(sa->weights); free(sa->drop_at); free(sa->included); free(sa->ids);
        sa->ids = malloc((size_t)k * sizeof *sa->ids);
        sa->updates = malloc((size_t)k * sizeof *sa->updates);
        sa->weights = malloc((size_t)k * sizeof *sa->weights);
        sa->drop_at = malloc((size_t)k);
        sa->included = malloc((size_t)k);
        sa->cap = k;
        if (!sa->updates || !sa->weights || !sa->drop_at || !sa->included || !sa->ids) {
            sa->cap = 0;
            return fed_error(FED_ENOMEM, "secure aggregation: out of memory for %d clients", k);
        }
    }
    /* the protocol's participants: the clients whose training finished */
    int m = 0;
    int *who = malloc((size_t)k * sizeof(int));
    if (!who) return fed_error(FED_ENOMEM, "secure aggregation: out of memory");
    for (int i = 0; i < k; i++) {
        if (res[i].status != FED_RESULT_OK) continue;
        sa->updates[m] = res[i].delta;
        sa->weights[m] = (double)res[i].num_examples;
        sa->ids[m] = (uint64_t)res[i].client;
        who[m++] = i;
    }
    rep->participants = m;
    int rc = 0;
    if (m < 2) {
        rc = fed_error(FED_ESTATE, "secure aggregation needs at least 2 clients, round %d has %d", round, m);
        goto out;
    }
    const fed_config *c = &sa->cfg;
    fed_secagg_cfg pc;
    if ((rc = fed_secagg_cfg_default(&pc, m))) goto out;
    if (!strcmp(c->sa_graph, "harary") && (rc = fed_secagg_cfg_plus(&pc, c->sa_adversarial, c->sa_dropout, c->sa_consistency))) goto out;
    pc.round = (uint64_t)round;
    pc.threads = c->threads > 0 ? c->threads : 2;
    pc.consistency = c->sa_consistency; /* the driver generates the clients' signing keys */
    /* reproducible simulation: the graph's permutation from the run's seed */
    fed_rng r;
    fed_rng_init(&r, c->seed, (uint64_t)round, 0, FED_RNG_USER + 1);
    for (int i = 0; i < 32; i += 4) {
        uint32_t w = fed_rng_u32(&r);
        memcpy(pc.graph_seed + i, &w, 4);
    }
    /* the signatures' context (consistency check): the run's seed and this round's
     * graph seed, so signatures of one simulated run do not verify in another */
    if ((rc = fed_secagg_context(pc.context, c->seed, pc.graph_seed))) goto out;
    fed_secagg_enc enc;
    fed_secagg_enc_default(&enc);
    enc.clip = c->sa_clip;
    enc.bits = c->sa_bits;
    enc.weight_max = sa->weight_max;
    enc.seed = c->seed;
    enc.round = (uint64_t)round;
    double p[4] = {c->sa_stage_dropout, c->sa_stage_dropout, c->sa_stage_dropout, c->sa_stage_dropout};
    fed_secagg_drop_schedule(m, p, c->seed, (uint64_t)round, sa->drop_at);
    fed_secagg_stats st;
    if (sa->ddp) {
        /* equal weights, as DP-FedAvg: a client's influence is bounded by the clip alone */
        fed_secagg_ddp dp;
        rc = fed_ddp_round_params(c, n, round, res, k, (long)sa->weight_max, &dp);
        if (!rc) rc = fed_secagg_ddp_mean(&pc, &dp, m, sa->updates, sa->ids, n, sa->drop_at, mean, sa->included, &st);
    } else {
        rc = fed_secagg_mean(&pc, &enc, m, sa->updates, sa->weights, n, sa->drop_at, mean, sa->included, &st);
    }
    rep->degree = pc.degree <= 0 || pc.degree >= m - 1 ? m - 1 : pc.degree;
    rep->threshold = pc.threshold;
    if (rc) goto out;
    rep->survivors = st.survivors;
    rep->client_ms = st.client_ms;
    rep->server_ms = st.server_ms;
    rep->bytes_per_client = st.bytes_per_client;
    /* a client whose input is not in the sum did not take part in the round */
    for (int j = 0; j < m; j++) {
        fed_result *rr = &res[who[j]];
        if (sa->included[j]) {
            /* the plain update never leaves the client: its traffic is the protocol's */
            rr->bytes_up = (int64_t)llround(st.bytes_per_client);
        } else {
            rr->status = FED_RESULT_DROPPED;
            snprintf(rr->error, sizeof rr->error, "dropped out during secure aggregation");
        }
    }
out:
    if (rc && sa->ddp) {
        /* nothing was released: no client's update is in the model, and the
         * accountant (which counts the finished clients) records no release */
        for (int j = 0; j < m; j++) {
            fed_result *rr = &res[who[j]];
            rr->status = FED_RESULT_DROPPED;
            snprintf(rr->error, sizeof rr->error, "secure aggregation round failed");
        }
    }
    free(who);
    return rc;
}
