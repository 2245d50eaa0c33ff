/* A client's part of a round, the same code whatever the transport: start from
 * the global model, train on the client's own examples only (with FedProx's
 * proximal term or SCAFFOLD's correction when asked), form the update
 * delta = local - global, and pass it through the client side of the pipeline. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "federate/compress.h"
#include "federate/error.h"
#include "federate/fl.h"
#include "federate/optim.h"
#include "federate/train.h"
#include "federate/vec.h"

/* FedProx (Li et al. 2020, eq. 2): grad += mu * (w - w_global).
 * SCAFFOLD (Karimireddy et al. 2020, Alg. 1 line 10): grad += c - c_i. */
typedef struct hook_ctx {
    const float *global;
    float mu;
    const float *c_minus_ci;  /* c - c_i, or NULL */
} hook_ctx;

static void correct_gradient(void *vctx, float *restrict g, const float *restrict w, size_t n) {
    hook_ctx *h = vctx;
    if (h->mu > 0) {
        const float *restrict w0 = h->global;
        float mu = h->mu;
        for (size_t i = 0; i < n; i++) g[i] += mu * (w[i] - w0[i]);
    }
    if (h->c_minus_ci) {
        const float *restrict d = h->c_minus_ci;
        for (size_t i = 0; i < n; i++) g[i] += d[i];
    }
}

/* Loss of the current parameters on the client's training examples (eval mode). */
static int loss_on(fed_model *m, const fed_dataset *d, const uint32_t *idx, size_t n, int batch, double *loss) {
    fed_dataset sub;
    int rc = fed_dataset_subset(d, idx, n, &sub);
    if (rc) return rc;
    rc = fed_model_evaluate(m, &sub, batch, loss, NULL, NULL);
    fed_dataset_free(&sub);
    return rc;
}

int fed_client_fit(const fed_client_env *env, fed_model *m, const fed_task *task, const float *global,
                   const float *global_buffers, const float *control, fed_result *res) {
    const fed_config *cfg = env->cfg;
    const fed_federation *fed = env->fed;
    int k = task->client;
    if (k < 0 || k >= fed->num_clients) return fed_error(FED_EINVAL, "client id %d outside [0, %d)", k, fed->num_clients);
    size_t n = fed_model_num_params(m), nb = fed_model_num_buffers(m);
    const fed_client_ins *ins = &task->ins;
    /* Download compression: the client receives the global model as a codec
     * frame (a delta against its last decoded copy, when it has one), trains
     * from what the frame decodes to, and reports its update against that. */
    float *received = NULL;
    if (env->download && env->download_state) {
        received = malloc(n * sizeof(float));
        if (!received) return fed_error(FED_ENOMEM, "client %d: out of memory", k);
        int found = 0, rc2;
        uint8_t *frame = NULL;
        size_t flen = 0;
        fed_codec_ctx dc = {cfg->seed, (uint64_t)task->round, (uint64_t)k};
        if ((rc2 = fed_client_state_find(env->download_state, k, task->round, received, &found)) ||
            (rc2 = fed_codec_encode_model(env->download, &dc, global, found ? received : NULL, n, NULL, &frame, &flen)) ||
            (rc2 = fed_codec_decode_model(env->download, frame, flen, found ? received : NULL, received, n)) ||
            (rc2 = fed_client_state_put(env->download_state, k, task->round, received))) {
            free(frame);
            free(received);
            return rc2;
        }
        free(frame);
        res->bytes_down = (int64_t)flen + (int64_t)(nb * sizeof(float)) + (control ? (int64_t)(n * sizeof(float)) : 0);
        global = received;
    }
    memcpy(fed_model_params(m), global, n * sizeof(float));
    if (nb) memcpy(fed_model_buffers(m), global_buffers, nb * sizeof(float));
    const uint32_t *idx = fed->part.train[k];
    size_t cnt = fed->part.train_n[k];
    res->client = k;
    res->status = FED_RESULT_OK;
    res->num_examples = (long)cnt;
    res->lr = ins->lr;
    res->loss_before = NAN;
    int rc = 0;
    float *c_minus_ci = NULL;
    fed_optim *opt = NULL;
    if (ins->want_loss_before && (rc = loss_on(m, &fed->train, idx, cnt, cfg->eval_batch_size, &res->loss_before)))
        goto out;

    if (ins->scaffold) {
        if (!env->state || !control || !res->delta_c) {
            rc = fed_error(FED_ESTATE, "SCAFFOLD needs client state, a server control and a delta_c buffer");
            goto out;
        }
        /* delta_c temporarily holds c_i */
        if ((rc = fed_client_state_get(env->state, k, task->round, res->delta_c))) goto out;
        c_minus_ci = malloc(n * sizeof(float));
        if (!c_minus_ci) {
            rc = fed_error(FED_ENOMEM, "client %d: out of memory", k);
            goto out;
        }
        fed_vec_sub(c_minus_ci, control, res->delta_c, n);
    }

    int kind;
    fed_optim_cfg oc;
    if ((rc = fed_optim_kind_from_name(cfg->optimizer, &kind))) goto out;
    fed_optim_cfg_default(&oc, kind);
    if (kind == FED_OPTIM_SGD) oc.momentum = (float)cfg->momentum;
    oc.weight_decay = (float)cfg->weight_decay;
    if ((rc = fed_optim_new(&opt, &oc, n))) goto out;

    hook_ctx h = {global, ins->prox_mu, c_minus_ci};
    fed_train_opts to;
    fed_train_opts_default(&to);
    to.epochs = ins->local_epochs;
    to.max_steps = ins->max_steps;
    to.batch_size = ins->batch_size;
    to.lr = ins->lr;
    to.seed = cfg->seed;
    to.round = (uint64_t)task->round;
    to.client = (uint64_t)k;
    to.dp_clip = ins->dpsgd_clip;
    to.dp_noise_multiplier = ins->dpsgd_noise;
    to.dp_secure_noise = ins->secure_noise;
    to.dp_grad_only = ins->dpsgd_sum;
    to.unfused = !strcmp(cfg->kernels, "reference");
    float black[3];
    fed_augment aug = {cfg->augment_crop, cfg->augment_flip, (float)cfg->augment_rotate, NULL};
    if (aug.crop_pad || aug.hflip || aug.rotate_deg > 0) {
        aug.fill = fed_dataset_black(cfg->dataset, black, 3) == 0 ? black : NULL;
        to.augment = &aug;
    }
    if (ins->dpsgd_sum && (ins->dpsgd_clip <= 0 || to.max_steps != 1 || c_minus_ci)) {
        rc = fed_error(FED_EINVAL, "client %d: a DP-SGD sum is one clipped step (clip %g, %ld steps)", k,
                       (double)ins->dpsgd_clip, to.max_steps);
        goto out;
    }
    if (ins->prox_mu > 0 || c_minus_ci) {
        to.hook = correct_gradient;
        to.hook_ctx = &h;
    }
    fed_train_stats st;
    if ((rc = fed_train(m, opt, &fed->train, idx, cnt, &to, &st))) goto out;
    res->steps = st.steps;
    res->train_loss = st.loss;
    res->train_accuracy = st.accuracy;

    if (ins->dpsgd_sum) {
        /* the step's gradient is the clipped sum / B: the update -lr g is exactly
         * linear in it (no optimizer state, no parameter rounding) */
        const float *g = fed_model_grads(m);
        if (st.steps == 0) memset(res->delta, 0, n * sizeof(float));   /* no records: no step, no stale gradient */
        else for (size_t i = 0; i < n; i++) res->delta[i] = -ins->lr * g[i];
    } else {
        fed_vec_sub(res->delta, fed_model_params(m), global, n);
    }
    res->update_norm = fed_vec_norm2(res->delta, n);
    if (!fed_vec_all_finite(res->delta, n)) {
        rc = fed_error(FED_ERANGE, "client %d: the local update has NaN or Inf (learning rate %g too high?)", k, ins->lr);
        goto out;
    }
    if (nb && res->buffers) memcpy(res->buffers, fed_model_buffers(m), nb * sizeof(float));

    if (ins->scaffold) {
        /* Option II: c_i+ = c_i - c + (x - y_i) / (K * lr) = c_i - c - delta / (K * lr);
         * the client keeps c_i+ and sends delta_c = c_i+ - c_i. */
        float *ci = res->delta_c;           /* holds c_i */
        float *cnew = c_minus_ci;           /* no longer needed: reuse for c_i+ */
        float inv = st.steps > 0 ? 1.0f / ((float)st.steps * ins->lr) : 0.0f;
        for (size_t i = 0; i < n; i++) cnew[i] = ci[i] - control[i] - res->delta[i] * inv;
        if ((rc = fed_client_state_put(env->state, k, task->round, cnew))) goto out;
        for (size_t i = 0; i < n; i++) ci[i] = cnew[i] - ci[i];
    }
    {
        fed_stage_ctx sc = {cfg->seed, task->round, k, res->num_examples, ins};
        int64_t bytes = (int64_t)(n * sizeof(float));
        if (env->pipeline && (rc = fed_pipeline_client(env->pipeline, &sc, res->delta, n, &bytes))) goto out;
        res->bytes_up = bytes + (int64_t)(nb * sizeof(float)) + (ins->scaffold ? (int64_t)(n * sizeof(float)) : 0);
    }
out:
    free(c_minus_ci);
    free(received);
    fed_optim_free(opt);
    return rc;
}

int fed_client_evaluate(const fed_client_env *env, fed_model *m, int client, const float *global,
                        const float *global_buffers, fed_eval_res *out) {
    const fed_federation *fed = env->fed;
    if (client < 0 || client >= fed->num_clients) return fed_error(FED_EINVAL, "client id %d out of range", client);
    memcpy(fed_model_params(m), global, fed_model_num_params(m) * sizeof(float));
    if (fed_model_num_buffers(m)) memcpy(fed_model_buffers(m), global_buffers, fed_model_num_buffers(m) * sizeof(float));
    out->client = client;
    out->num_examples = (long)fed->part.test_n[client];
    out->loss = NAN;
    out->accuracy = NAN;
    if (!out->num_examples) return 0;
    fed_dataset sub;
    int rc = fed_dataset_subset(&fed->train, fed->part.test[client], fed->part.test_n[client], &sub);
    if (rc) return rc;
    rc = fed_model_evaluate(m, &sub, env->cfg->eval_batch_size, &out->loss, &out->accuracy, NULL);
    fed_dataset_free(&sub);
    return rc;
}
