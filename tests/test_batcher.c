/* Batcher: each index once per epoch (with and without drop_last), PyTorch batch
 * counts, shuffles fixed by the stream address, index-list subsets; and the small
 * data set operations it leans on (subset, normalize, free). */
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "federate/data.h"
#include "federate/error.h"

/* n examples of shape 1x1x2: x = (i, -i), y = i % 10; x[0] identifies the example. */
static fed_dataset make(int n) {
    fed_dataset d = {n, 1, 1, 2, 10, malloc((size_t)n * 2 * sizeof(float)), malloc((size_t)n * sizeof(int32_t))};
    for (int i = 0; i < n; i++) {
        d.x[2 * i] = (float)i;
        d.x[2 * i + 1] = -(float)i;
        d.y[i] = i % 10;
    }
    return d;
}

/* Runs one epoch; records the example order into seq and returns how many came. */
static size_t epoch(fed_batcher *b, fed_rng *shuffle, uint32_t *seq, int *sizes, int *nbatches) {
    fed_batcher_reset(b, shuffle);
    float x[64 * 2];
    int32_t y[64];
    size_t total = 0;
    int got, k = 0;
    while ((got = fed_batcher_next(b, x, y, NULL, NULL)) > 0) {
        CHECK(got <= b->batch_size);
        for (int i = 0; i < got; i++) {
            int id = (int)x[2 * i];
            CHECK(x[2 * i + 1] == -x[2 * i]);
            CHECK_EQ_INT(y[i], id % 10);
            seq[total++] = (uint32_t)id;
        }
        if (sizes) sizes[k] = got;
        k++;
    }
    CHECK_EQ_INT(fed_batcher_next(b, x, y, NULL, NULL), 0);   /* stays at the end */
    if (nbatches) *nbatches = k;
    return total;
}

static void check_permutation(const uint32_t *seq, size_t n, const uint32_t *of, size_t m) {
    CHECK_EQ_INT(n, m);
    int *count = calloc(1000, sizeof(int));
    for (size_t i = 0; i < m; i++) count[of[i]]++;
    for (size_t i = 0; i < n; i++) count[seq[i]]--;
    for (int i = 0; i < 1000; i++) CHECK_EQ_INT(count[i], 0);
    free(count);
}

int main(void) {
    fed_dataset d = make(103);
    uint32_t all[103], seq[103], seq2[103];
    for (int i = 0; i < 103; i++) all[i] = (uint32_t)i;
    fed_batcher b;
    int sizes[16], nb;

    /* Sequential, short last batch kept: 11 batches of 10 then 3. */
    CHECK_OK(fed_batcher_init(&b, &d, NULL, 0, 10, 0));
    CHECK_EQ_INT(fed_batcher_batches(&b), 11);
    CHECK_EQ_INT(epoch(&b, NULL, seq, sizes, &nb), 103);
    CHECK_EQ_INT(nb, 11);
    CHECK_EQ_INT(sizes[10], 3);
    for (int i = 0; i < 103; i++) CHECK_EQ_INT(seq[i], i);
    fed_batcher_free(&b);
    CHECK(b.order == NULL);
    fed_batcher_free(&b);   /* twice is harmless */
    fed_batcher_free(NULL);

    /* drop_last: 10 full batches, the 3 left over are skipped. */
    CHECK_OK(fed_batcher_init(&b, &d, NULL, 0, 10, 1));
    CHECK_EQ_INT(fed_batcher_batches(&b), 10);
    fed_rng sh;
    fed_rng_init(&sh, 9, 0, 0, FED_RNG_SHUFFLE);
    CHECK_EQ_INT(epoch(&b, &sh, seq, sizes, &nb), 100);
    CHECK_EQ_INT(nb, 10);
    for (int i = 0; i < 10; i++) CHECK_EQ_INT(sizes[i], 10);
    {
        int seen[103] = {0};
        for (int i = 0; i < 100; i++) CHECK_EQ_INT(seen[seq[i]]++, 0);   /* no repeats */
    }
    fed_batcher_free(&b);
    /* Exact multiples: drop_last changes nothing. */
    {
        fed_dataset e = make(100);
        for (int dl = 0; dl <= 1; dl++) {
            CHECK_OK(fed_batcher_init(&b, &e, NULL, 0, 25, dl));
            CHECK_EQ_INT(fed_batcher_batches(&b), 4);
            CHECK_EQ_INT(epoch(&b, NULL, seq, NULL, &nb), 100);
            CHECK_EQ_INT(nb, 4);
            fed_batcher_free(&b);
        }
        /* Fewer examples than a batch: one short batch, or none with drop_last. */
        CHECK_OK(fed_batcher_init(&b, &e, all, 7, 32, 0));
        CHECK_EQ_INT(fed_batcher_batches(&b), 1);
        CHECK_EQ_INT(epoch(&b, NULL, seq, NULL, &nb), 7);
        fed_batcher_free(&b);
        CHECK_OK(fed_batcher_init(&b, &e, all, 7, 32, 1));
        CHECK_EQ_INT(fed_batcher_batches(&b), 0);
        CHECK_EQ_INT(epoch(&b, NULL, seq, NULL, &nb), 0);
        fed_batcher_free(&b);
        fed_dataset_free(&e);
    }

    /* Shuffling: a permutation each epoch; the same address gives the same epochs,
     * another address different ones; successive epochs differ. */
    {
        fed_batcher b2, b3;
        CHECK_OK(fed_batcher_init(&b, &d, NULL, 0, 16, 0));
        CHECK_OK(fed_batcher_init(&b2, &d, NULL, 0, 16, 0));
        CHECK_OK(fed_batcher_init(&b3, &d, NULL, 0, 16, 0));
        fed_rng r1, r2, r3;
        fed_rng_init(&r1, 5, 1, 2, FED_RNG_SHUFFLE);
        fed_rng_init(&r2, 5, 1, 2, FED_RNG_SHUFFLE);
        fed_rng_init(&r3, 5, 1, 3, FED_RNG_SHUFFLE);
        uint32_t prev[103], seq3[103];
        for (int e = 0; e < 3; e++) {
            CHECK_EQ_INT(epoch(&b, &r1, seq, NULL, NULL), 103);
            CHECK_EQ_INT(epoch(&b2, &r2, seq2, NULL, NULL), 103);
            CHECK_EQ_INT(epoch(&b3, &r3, seq3, NULL, NULL), 103);
            check_permutation(seq, 103, all, 103);
            check_permutation(seq3, 103, all, 103);
            CHECK(memcmp(seq, seq2, sizeof seq) == 0);
            CHECK(memcmp(seq, seq3, sizeof seq) != 0);
            CHECK(memcmp(seq, all, sizeof seq) != 0);
            if (e) CHECK(memcmp(seq, prev, sizeof seq) != 0);
            memcpy(prev, seq, sizeof seq);
        }
        /* reset without a stream replays the current order. */
        CHECK_EQ_INT(epoch(&b, NULL, seq, NULL, NULL), 103);
        CHECK(memcmp(seq, prev, sizeof seq) == 0);
        fed_batcher_free(&b);
        fed_batcher_free(&b2);
        fed_batcher_free(&b3);
    }

    /* An index list (a client's share): exactly those examples, repeats included,
     * and the caller's list is copied, not shuffled in place. */
    {
        uint32_t idx[6] = {5, 17, 42, 102, 0, 17};
        uint32_t keep[6];
        memcpy(keep, idx, sizeof idx);
        CHECK_OK(fed_batcher_init(&b, &d, idx, 6, 4, 0));
        CHECK_EQ_INT(fed_batcher_batches(&b), 2);
        CHECK_EQ_INT(epoch(&b, NULL, seq, sizes, &nb), 6);
        CHECK(memcmp(seq, idx, sizeof idx) == 0);
        CHECK_EQ_INT(sizes[0], 4); CHECK_EQ_INT(sizes[1], 2);
        fed_rng_init(&sh, 1, 0, 0, FED_RNG_SHUFFLE);
        CHECK_EQ_INT(epoch(&b, &sh, seq, NULL, NULL), 6);
        check_permutation(seq, 6, idx, 6);
        CHECK(memcmp(idx, keep, sizeof idx) == 0);
        fed_batcher_free(&b);

        /* Bad input: index out of range, batch size 0, NULLs. Never a crash. */
        uint32_t bad[2] = {3, 103};
        CHECK_EQ_INT(fed_batcher_init(&b, &d, bad, 2, 4, 0), FED_ERANGE);
        CHECK(strstr(fed_last_error(), "103"));
        CHECK(b.order == NULL);
        CHECK_EQ_INT(fed_batcher_next(&b, NULL, NULL, NULL, NULL), 0);
        CHECK_EQ_INT(fed_batcher_init(&b, &d, NULL, 0, 0, 0), FED_EINVAL);
        CHECK_EQ_INT(fed_batcher_init(&b, NULL, NULL, 0, 4, 0), FED_EINVAL);
        CHECK_EQ_INT(fed_batcher_init(NULL, &d, NULL, 0, 4, 0), FED_EINVAL);
        /* An empty list: no batches. */
        CHECK_OK(fed_batcher_init(&b, &d, idx, 0, 4, 0));
        CHECK_EQ_INT(fed_batcher_batches(&b), 0);
        CHECK_EQ_INT(epoch(&b, &sh, seq, NULL, &nb), 0);
        fed_batcher_free(&b);
    }

    /* Augmentation through the batcher: with flips on a 1x2 image, each example is
     * (i, -i) or (-i, i); the same stream gives the same batches. */
    {
        fed_augment flip = {0, 1, 0.0f, NULL};
        fed_rng a1, a2;
        fed_rng_init(&a1, 3, 0, 0, FED_RNG_AUGMENT);
        fed_rng_init(&a2, 3, 0, 0, FED_RNG_AUGMENT);
        CHECK_OK(fed_batcher_init(&b, &d, NULL, 0, 50, 0));
        float x1[100], x2[100];
        int32_t y1[50], y2[50];
        int flipped = 0, got;
        while ((got = fed_batcher_next(&b, x1, y1, &flip, &a1)) > 0) {
            for (int i = 0; i < got; i++) {
                int id = (int)(x1[2 * i] != 0 ? fabsf(x1[2 * i]) : fabsf(x1[2 * i + 1]));
                CHECK_EQ_INT(y1[i], id % 10);
                CHECK(x1[2 * i] == -x1[2 * i + 1]);
                if (x1[2 * i] < 0) flipped++;
            }
        }
        CHECK(flipped > 30 && flipped < 72);
        /* Replaying the epoch with a fresh stream at the same address gives the same
         * batches, bit for bit. */
        fed_rng_init(&a1, 3, 0, 0, FED_RNG_AUGMENT);
        fed_batcher_reset(&b, NULL);
        fed_batcher b2;
        CHECK_OK(fed_batcher_init(&b2, &d, NULL, 0, 50, 0));
        int batches = 0;
        while ((got = fed_batcher_next(&b, x1, y1, &flip, &a1)) > 0) {
            CHECK_EQ_INT(fed_batcher_next(&b2, x2, y2, &flip, &a2), got);
            CHECK(memcmp(x1, x2, (size_t)got * 2 * sizeof(float)) == 0);
            CHECK(memcmp(y1, y2, (size_t)got * sizeof(int32_t)) == 0);
            batches++;
        }
        CHECK_EQ_INT(batches, 3);
        fed_batcher_free(&b);
        fed_batcher_free(&b2);
    }

    /* fed_dataset_subset: a copy of the listed examples, in order. */
    {
        uint32_t idx[4] = {9, 0, 9, 55};
        fed_dataset s;
        CHECK_OK(fed_dataset_subset(&d, idx, 4, &s));
        CHECK_EQ_INT(s.n, 4); CHECK_EQ_INT(s.c, 1); CHECK_EQ_INT(s.h, 1); CHECK_EQ_INT(s.w, 2);
        CHECK_EQ_INT(s.num_classes, 10);
        for (int i = 0; i < 4; i++) {
            CHECK(s.x[2 * i] == (float)idx[i] && s.x[2 * i + 1] == -(float)idx[i]);
            CHECK_EQ_INT(s.y[i], (int)idx[i] % 10);
        }
        CHECK(s.x != d.x);
        fed_dataset_free(&s);
        CHECK(s.x == NULL && s.n == 0);
        uint32_t bad[1] = {103};
        CHECK_EQ_INT(fed_dataset_subset(&d, bad, 1, &s), FED_ERANGE);
        CHECK(s.x == NULL);
        CHECK_OK(fed_dataset_subset(&d, NULL, 0, &s));   /* empty is allowed */
        CHECK_EQ_INT(s.n, 0);
        fed_dataset_free(&s);
        fed_dataset_free(NULL);
    }

    /* fed_dataset_normalize: per channel. */
    {
        float x[2 * 2 * 3] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};   /* 2 examples, 2 channels, 1x3 */
        int32_t y[2] = {0, 1};
        fed_dataset t = {2, 2, 1, 3, 2, x, y};
        const float mean[2] = {1.0f, 10.0f}, std[2] = {2.0f, 0.5f};
        fed_dataset_normalize(&t, mean, std);
        const float want[12] = {0, 0.5f, 1, -12, -10, -8, 3, 3.5f, 4, 0, 2, 4};
        for (int i = 0; i < 12; i++) CHECK_NEAR(x[i], want[i], 1e-6);
        CHECK_EQ_INT(fed_dataset_example_size(&t), 6);
        CHECK_EQ_INT(fed_dataset_example_size(NULL), 0);
    }

    fed_dataset_free(&d);
    TEST_PASS("test_batcher");
}
