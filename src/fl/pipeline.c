/* The update pipeline: stages that transform an update on its way from a client
 * (clip, later noise, quantization, masking) and the aggregate on the server.
 * Built from the config so the round loop never branches on features. */
#include <stdlib.h>
#include <string.h>
#include "federate/dp.h"
#include "federate/error.h"
#include "federate/fl.h"
#include "federate/vec.h"

/* clip: scale the update to L2 norm <= clip_norm (McMahan et al. 2018's
 * per-user clipping; bounds any one client's influence). */
static int clip_client(fed_stage *st, const fed_stage_ctx *ctx, float *u, size_t n, int64_t *bytes) {
    (void)ctx; (void)bytes;
    double c = *(double *)st->state;
    fed_vec_clip_norm(u, n, c);
    return 0;
}

/* dp-clip: user-level DP's clip, C of this round from the server (fixed or
 * adaptive), so one client's influence on the sum is at most C. */
static int dp_clip_client(fed_stage *st, const fed_stage_ctx *ctx, float *u, size_t n, int64_t *bytes) {
    (void)st; (void)bytes;
    if (ctx->ins && ctx->ins->update_clip > 0) fed_vec_clip_norm(u, n, ctx->ins->update_clip);
    return 0;
}

/* local-dp: the client adds the Gaussian noise itself, so the update that
 * leaves it is already private and no server needs to be trusted. */
static int local_dp_client(fed_stage *st, const fed_stage_ctx *ctx, float *u, size_t n, int64_t *bytes) {
    (void)st; (void)bytes;
    if (!ctx->ins || !(ctx->ins->local_noise > 0)) return 0;
    fed_dp_noise ns;
    int rc = fed_dp_noise_init(&ns, ctx->ins->secure_noise ? FED_DP_NOISE_SECURE : FED_DP_NOISE_SEEDED, ctx->seed,
                               (uint64_t)ctx->round, (uint64_t)ctx->client);
    if (!rc) rc = fed_dp_gaussian(&ns, u, n, ctx->ins->local_noise);
    return rc;
}

/* float32: the update goes on the wire as raw little-endian floats. */
static int f32_client(fed_stage *st, const fed_stage_ctx *ctx, float *u, size_t n, int64_t *bytes) {
    (void)st; (void)ctx; (void)u;
    *bytes = (int64_t)(n * sizeof(float));
    return 0;
}

static void free_plain(fed_stage *st) { free(st->state); }

static fed_stage *add(fed_pipeline *p, const char *name) {
    if (p->count >= (int)(sizeof p->stages / sizeof p->stages[0])) return NULL;
    fed_stage *st = &p->stages[p->count++];
    memset(st, 0, sizeof *st);
    st->name = name;
    return st;
}

int fed_pipeline_build(const fed_config *cfg, fed_pipeline *p) {
    memset(p, 0, sizeof *p);
    if (cfg->clip_norm > 0) {
        fed_stage *st = add(p, "clip");
        double *c = malloc(sizeof *c);
        if (!c) return fed_error(FED_ENOMEM, "pipeline: out of memory");
        *c = cfg->clip_norm;
        st->state = c;
        st->client_apply = clip_client;
        st->free_state = free_plain;
    }
    if (!strcmp(cfg->dp_mode, "dp-fedavg") || !strcmp(cfg->dp_mode, "local")) add(p, "dp-clip")->client_apply = dp_clip_client;
    if (!strcmp(cfg->dp_mode, "local")) add(p, "local-dp")->client_apply = local_dp_client;
    fed_stage *enc = add(p, "float32");
    enc->client_apply = f32_client;
    return 0;
}

void fed_pipeline_free(fed_pipeline *p) {
    if (!p) return;
    for (int i = 0; i < p->count; i++)
        if (p->stages[i].free_state) p->stages[i].free_state(&p->stages[i]);
    p->count = 0;
}

int fed_pipeline_client(fed_pipeline *p, const fed_stage_ctx *ctx, float *update, size_t n, int64_t *wire_bytes) {
    for (int i = 0; i < p->count; i++) {
        fed_stage *st = &p->stages[i];
        if (!st->client_apply) continue;
        int rc = st->client_apply(st, ctx, update, n, wire_bytes);
        if (rc) return rc;
    }
    return 0;
}

int fed_pipeline_server(fed_pipeline *p, const fed_stage_ctx *ctx, float *aggregate, size_t n) {
    for (int i = 0; i < p->count; i++) {
        fed_stage *st = &p->stages[i];
        if (!st->server_apply) continue;
        int rc = st->server_apply(st, ctx, aggregate, n);
        if (rc) return rc;
    }
    return 0;
}
