/* Mini-batch SGD-style training over a subset of a data set; see train.h. */
#include <stdlib.h>
#include <string.h>
#include "federate/error.h"
#include "federate/rng.h"
#include "federate/train.h"

void fed_train_opts_default(fed_train_opts *o) {
    memset(o, 0, sizeof *o);
    o->epochs = 1;
    o->batch_size = 32;
    o->lr = 0.01f;
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
            rc = fed_model_loss_grad(m, x, y, got, &loss, &correct);
            if (rc) break;
            float *p = fed_model_params(m), *g = fed_model_grads(m);
            if (o->hook) o->hook(o->hook_ctx, g, p, np);
            float lr = o->schedule ? fed_lr_at(o->schedule, (int)(o->schedule_offset + steps)) : o->lr;
            rc = fed_optim_step_pool(opt, p, g, lr, fed_model_pool(m));
            if (rc) break;
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
