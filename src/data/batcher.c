/* Mini-batches over an index list into one shared data set, so a client costs its
 * index list rather than a copy of its examples. Epoch and drop_last semantics
 * follow PyTorch's DataLoader (a short final batch unless drop_last). */
#include <stdlib.h>
#include <string.h>
#include "federate/data.h"
#include "federate/error.h"

int fed_batcher_init(fed_batcher *b, const fed_dataset *d, const uint32_t *idx, size_t n, int batch_size,
                     int drop_last) {
    if (!b) return fed_error(FED_EINVAL, "fed_batcher_init: NULL batcher");
    memset(b, 0, sizeof *b);
    if (!d) return fed_error(FED_EINVAL, "fed_batcher_init: NULL data set");
    if (batch_size <= 0) return fed_error(FED_EINVAL, "fed_batcher_init: batch_size must be > 0 (got %d)", batch_size);
    if (d->n < 0) return fed_error(FED_EINVAL, "fed_batcher_init: data set has n = %d", d->n);
    if (!idx) n = (size_t)d->n;
    /* Checked once here, so next() can copy without bounds checks. */
    if (idx)
        for (size_t i = 0; i < n; i++)
            if (idx[i] >= (uint32_t)d->n)
                return fed_error(FED_ERANGE, "fed_batcher_init: index %u at position %zu is out of range (n = %d)",
                                 idx[i], i, d->n);
    uint32_t *order = malloc((n ? n : 1) * sizeof *order);
    if (!order) return fed_error(FED_ENOMEM, "fed_batcher_init: cannot allocate %zu indices", n);
    if (idx) memcpy(order, idx, n * sizeof *order);
    else
        for (size_t i = 0; i < n; i++) order[i] = (uint32_t)i;
    b->data = d;
    b->order = order;
    b->n = n;
    b->pos = 0;
    b->batch_size = batch_size;
    b->drop_last = drop_last;
    return 0;
}

void fed_batcher_reset(fed_batcher *b, fed_rng *r) {
    if (!b) return;
    b->pos = 0;
    /* Shuffling the previous epoch's order in place is still a uniform permutation,
     * and the epoch sequence is fixed by the stream. */
    if (r && b->order) fed_rng_shuffle(r, b->order, b->n);
}

int fed_batcher_next(fed_batcher *b, float *x, int32_t *y, const fed_augment *aug, fed_rng *r) {
    if (!b || !b->order || !b->data || b->pos >= b->n) return 0;
    size_t left = b->n - b->pos;
    size_t take = left < (size_t)b->batch_size ? left : (size_t)b->batch_size;
    if (take < (size_t)b->batch_size && b->drop_last) {
        b->pos = b->n;
        return 0;
    }
    const fed_dataset *d = b->data;
    size_t ex = fed_dataset_example_size(d);
    for (size_t i = 0; i < take; i++) {
        uint32_t k = b->order[b->pos + i];
        const float *src = d->x + (size_t)k * ex;
        if (x) {
            if (aug && r) fed_augment_apply(aug, src, x + i * ex, d->c, d->h, d->w, r);
            else memcpy(x + i * ex, src, ex * sizeof(float));
        }
        if (y) y[i] = d->y[k];
    }
    b->pos += take;
    return (int)take;
}

size_t fed_batcher_batches(const fed_batcher *b) {
    if (!b || b->batch_size <= 0) return 0;
    size_t bs = (size_t)b->batch_size;
    return b->drop_last ? b->n / bs : (b->n + bs - 1) / bs;
}

void fed_batcher_free(fed_batcher *b) {
    if (!b) return;
    free(b->order);
    memset(b, 0, sizeof *b);
}
