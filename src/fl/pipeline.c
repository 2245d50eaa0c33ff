/* The update pipeline: stages that transform an update on its way from a client
 * (clip, later noise, quantization, masking) and the aggregate on the server.
 * Built from the config so the round loop never branches on features. */
#include <stdlib.h>
#include <string.h>
#include "federate/compress.h"
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

/* compress: the update goes on the wire as the codec chain's bytes; the
 * server receives exactly what they decode to, so the simulation trains on
 * the same lossy updates a deployment would. With error feedback the client
 * keeps what was not sent (its residual, on disk per client like SCAFFOLD's
 * state) and adds it to its next update. */
typedef struct compress_state {
    fed_codec *codec;
    int error_feedback;
    fed_client_state *residuals;   /* attached by the driver; NULL = none */
} compress_state;

static int compress_client(fed_stage *st, const fed_stage_ctx *ctx, float *u, size_t n, int64_t *bytes) {
    compress_state *cs = st->state;
    float *res = NULL;
    int rc = 0;
    if (cs->error_feedback && cs->residuals) {
        res = malloc(n * sizeof(float));
        if (!res) return fed_error(FED_ENOMEM, "compression: out of memory");
        if ((rc = fed_client_state_get(cs->residuals, ctx->client, ctx->round, res))) goto out;
    }
    fed_codec_ctx cc = {ctx->seed, (uint64_t)ctx->round, (uint64_t)ctx->client};
    uint8_t *buf = NULL;
    size_t len = 0;
    if ((rc = fed_codec_encode(cs->codec, &cc, u, n, res, &buf, &len))) goto out;
    rc = fed_codec_decode(cs->codec, buf, len, u, n);
    free(buf);
    if (rc) goto out;
    *bytes = (int64_t)len;
    if (res) rc = fed_client_state_put(cs->residuals, ctx->client, ctx->round, res);
out:
    free(res);
    return rc;
}

static void compress_free(fed_stage *st) {
    compress_state *cs = st->state;
    if (cs) fed_codec_free(cs->codec);
    free(cs);
}

int fed_pipeline_needs_state(const fed_pipeline *p) {
    for (int i = 0; i < p->count; i++)
        if (p->stages[i].free_state == compress_free) {
            const compress_state *cs = p->stages[i].state;
            if (cs->error_feedback) return 1;
        }
    return 0;
}

void fed_pipeline_attach_state(fed_pipeline *p, fed_client_state *s) {
    for (int i = 0; i < p->count; i++)
        if (p->stages[i].free_state == compress_free) ((compress_state *)p->stages[i].state)->residuals = s;
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
    if (cfg->compression[0]) {
        compress_state *cs = calloc(1, sizeof *cs);
        if (!cs) return fed_error(FED_ENOMEM, "pipeline: out of memory");
        int rc = fed_codec_new(&cs->codec, cfg->compression);
        if (rc) {
            free(cs);
            return fed_error(rc, "key 'compression': %s", fed_last_error());
        }
        cs->error_feedback = cfg->compression_error_feedback;
        fed_stage *st = add(p, "compress");
        st->state = cs;
        st->client_apply = compress_client;
        st->free_state = compress_free;
        return 0;
    }
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
