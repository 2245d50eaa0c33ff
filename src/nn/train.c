/* Mini-batch SGD-style training over a subset of a data set; see train.h. */
#include <stdlib.h>
#include <string.h>
#include "federate/error.h"
#include "federate/rng.h"
#include "federate/train.h"
#include "federate/vec.h"
#include "federate/dp.h"

void fed_train_opts_default(fed_train_opts *o) {
    memset(o, 0, sizeof *o);
    o->epochs = 1;
    o->batch_size = 32;
    o->lr = 0.01f;
}

/* DP-SGD's loop: Poisson batches, clipped per-example gradients, noise. */
static int train_dp(fed_model *m, fed_optim *opt, const fed_dataset *d, const uint32_t *idx, size_t n,
                    const fed_train_opts *o, fed_train_stats *stats) {
    size_t ex = fed_dataset_example_size(d), np = fed_model_num_params(m);
    double q = (double)o->batch_size / (double)n;
    if (q > 1) q = 1;
    long per_epoch = (long)((n + (size_t)o->batch_size - 1) / (size_t)o->batch_size);
    long total = per_epoch * o->epochs;
    if (o->max_steps > 0 && o->max_steps < total) total = o->max_steps;
    size_t cap = (size_t)o->batch_size * 2 + 16;
    double loss_sum = 0;
    long steps = 0, examples = 0, right = 0;
    float *x = malloc(cap * ex * sizeof(float));
    int32_t *y = malloc(cap * sizeof(int32_t));
    int rc = 0;
    if (!x || !y) {
        rc = fed_error(FED_ENOMEM, "DP-SGD: out of memory");
        goto out;
    }
    fed_rng pick, aug;
    fed_rng_init(&pick, o->seed, o->round, o->client, FED_RNG_SHUFFLE);
    fed_rng_init(&aug, o->seed, o->round, o->client, FED_RNG_AUGMENT);
    fed_dp_noise nz;
    rc = fed_dp_noise_init(&nz, o->dp_secure_noise ? FED_DP_NOISE_SECURE : FED_DP_NOISE_SEEDED, o->seed, o->round,
                           o->client);
    if (rc) goto out;
    fed_model_set_rng(m, o->seed, o->round, o->client);
    fed_model_set_training(m, 1);
    double std = (double)o->dp_noise_multiplier * o->dp_clip;
    /* the expected batch q n, which is n when B > n; a gradient-only step divides by
     * B itself, so one record moves it by C / B however few records there are (its
     * caller's sensitivity unit) */
    float inv_expected = (float)(1.0 / (o->dp_grad_only ? (double)o->batch_size : q * (double)n));
    for (; steps < total; steps++) {
        size_t b = 0;
        for (size_t i = 0; i < n; i++) {
            if (!(fed_rng_uniform(&pick) < q)) continue;
            if (b == cap) {
                size_t nc = cap * 2;
                float *nx = realloc(x, nc * ex * sizeof(float));
                if (nx) x = nx;
                int32_t *ny = nx ? realloc(y, nc * sizeof(int32_t)) : NULL;
                if (ny) y = ny;
                if (!nx || !ny) { rc = fed_error(FED_ENOMEM, "DP-SGD: out of memory"); goto out; }
                cap = nc;
            }
            uint32_t e = idx ? idx[i] : (uint32_t)i;
            const float *src = d->x + (size_t)e * ex;
            if (o->augment) fed_augment_apply(o->augment, src, x + b * ex, d->c, d->h, d->w, &aug);
            else memcpy(x + b * ex, src, ex * sizeof(float));
            y[b++] = d->y[e];
        }
        float *p = fed_model_params(m), *g = fed_model_grads(m);
        float loss = 0;
        int correct = 0;
        if (b > 0) {
            if ((rc = fed_model_clipped_grad_sum(m, x, y, (int)b, o->dp_clip, &loss, &correct, NULL))) goto out;
        } else {
            memset(g, 0, np * sizeof(float));   /* an empty sample still gets its noise */
        }
        if ((rc = fed_dp_gaussian(&nz, g, np, std))) goto out;
        fed_vec_scale(g, inv_expected, np);
        if (o->hook) o->hook(o->hook_ctx, g, p, np);
        float lr = o->schedule ? fed_lr_at(o->schedule, (int)(o->schedule_offset + steps)) : o->lr;
        if (!o->dp_grad_only && (rc = fed_optim_step_pool(opt, p, g, lr, fed_model_pool(m)))) goto out;
        loss_sum += loss;
        right += correct;
        examples += (long)b;
        if (o->progress) o->progress(o->progress_ctx, steps + 1, total, loss_sum / (steps + 1));
    }
out:
    if (stats) {
        stats->steps = steps;
        stats->examples = examples;
        stats->loss = steps ? loss_sum / steps : 0;
        stats->accuracy = examples ? (double)right / examples : 0;
    }
    free(x); free(y);
    return rc;
}

int fed_train(fed_model *m, fed_optim *opt, const fed_dataset *d, const uint32_t *idx, size_t n,
              const fed_train_opts *o, fed_train_stats *stats) {
    if (!m || !opt || !d || !o) return fed_error(FED_EINVAL, "fed_train: NULL argument");
    if (o->batch_size <= 0 || o->epochs < 0)
        return fed_error(FED_EINVAL, "fed_train: batch_size must be > 0 and epochs >= 0 (got %d, %d)", o->batch_size,
                         o->epochs);
    int c, h, w;
    fed_model_input_shape(m, &c, &h, &w);
    if (d->c != c || d->h != h || d->w != w)
        return fed_error(FED_ESHAPE, "model %s expects %dx%dx%d inputs, data set has %dx%dx%d", fed_model_name(m), c, h,
                         w, d->c, d->h, d->w);
    if (!idx) n = (size_t)d->n;
    if (stats) memset(stats, 0, sizeof *stats);
    if (n == 0) return 0;
    if (o->dp_clip > 0) return train_dp(m, opt, d, idx, n, o, stats);

    fed_batcher b;
    int rc = fed_batcher_init(&b, d, idx, n, o->batch_size, o->drop_last);
    if (rc) return rc;
    size_t ex = fed_dataset_example_size(d);
    float *x = malloc((size_t)o->batch_size * ex * sizeof(float));
    int32_t *y = malloc((size_t)o->batch_size * sizeof(int32_t));
    if (!x || !y) {
        free(x); free(y);
        fed_batcher_free(&b);
        return fed_error(FED_ENOMEM, "fed_train: cannot allocate a batch of %d", o->batch_size);
    }
    fed_rng shuffle, aug;
    fed_rng_init(&shuffle, o->seed, o->round, o->client, FED_RNG_SHUFFLE);
    fed_rng_init(&aug, o->seed, o->round, o->client, FED_RNG_AUGMENT);
    fed_model_set_rng(m, o->seed, o->round, o->client);
    fed_model_set_training(m, 1);

    long per_epoch = (long)fed_batcher_batches(&b);
    long total = per_epoch * o->epochs;
    if (o->max_steps > 0 && o->max_steps < total) total = o->max_steps;
    size_t np = fed_model_num_params(m);
    double loss_sum = 0;
    long steps = 0, examples = 0, right = 0;
    for (int e = 0; e < o->epochs && steps < total && !rc; e++) {
        fed_batcher_reset(&b, &shuffle);
        int got;
        while (steps < total && (got = fed_batcher_next(&b, x, y, o->augment, &aug)) > 0) {
            float loss;
            int correct = 0;
            float lr = o->schedule ? fed_lr_at(o->schedule, (int)(o->schedule_offset + steps)) : o->lr;
            if (!o->hook && !o->unfused && fed_optim_is_plain_sgd(opt)) {
                /* plain SGD: the linear layers step inside backward (fed_model_sgd_step) */
                if ((rc = fed_model_sgd_step(m, x, y, got, lr, &loss, &correct))) break;
                fed_optim_count_step(opt);
            } else {
                rc = fed_model_loss_grad(m, x, y, got, &loss, &correct);
                if (rc) break;
                float *p = fed_model_params(m), *g = fed_model_grads(m);
                if (o->hook) o->hook(o->hook_ctx, g, p, np);
                rc = fed_optim_step_pool(opt, p, g, lr, fed_model_pool(m));
                if (rc) break;
            }
            loss_sum += loss;
            right += correct;
            examples += got;
            steps++;
            if (o->progress) o->progress(o->progress_ctx, steps, total, loss_sum / steps);
        }
    }
    free(x);
    free(y);
    fed_batcher_free(&b);
    if (stats) {
        stats->steps = steps;
        stats->examples = examples;
        stats->loss = steps ? loss_sum / steps : 0;
        stats->accuracy = examples ? (double)right / examples : 0;
    }
    return rc;
}
