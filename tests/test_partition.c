/* The partitioners on a synthetic data set (1000 examples, 10 classes, 1x2x2
 * images): every scheme is a partition, deterministic per seed, and skewed the way
 * its paper says (Dirichlet: Hsu et al. 2019; shards: McMahan et al. 2017). */
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "federate/error.h"
#include "federate/partition.h"

#define N 1000
#define C 10

static fed_dataset make_data(void) {
    fed_dataset d = {0};
    d.n = N;
    d.c = 1;
    d.h = 2;
    d.w = 2;
    d.num_classes = C;
    d.x = calloc((size_t)N * 4, sizeof(float));
    d.y = malloc(N * sizeof(int32_t));
    /* Labels interleaved, not sorted, so "sorted by label" is the scheme's doing. */
    for (int i = 0; i < N; i++) d.y[i] = (i * 7) % C;
    return d;
}

/* Each example in exactly one list, every client trains on something, and
 * label_counts agree with the train lists. */
static void check_partition(const fed_dataset *d, const fed_partition *p, int K) {
    CHECK_EQ_INT(p->num_clients, K);
    CHECK_EQ_INT(p->num_classes, C);
    int *seen = calloc(N, sizeof(int));
    for (int k = 0; k < K; k++) {
        CHECK(p->train_n[k] >= 1);
        int32_t lc[C] = {0};
        for (size_t j = 0; j < p->train_n[k]; j++) {
            CHECK(p->train[k][j] < N);
            seen[p->train[k][j]]++;
            lc[d->y[p->train[k][j]]]++;
        }
        for (size_t j = 0; j < p->test_n[k]; j++) {
            CHECK(p->test[k][j] < N);
            seen[p->test[k][j]]++;
        }
        for (int c = 0; c < C; c++) CHECK_EQ_INT(p->label_counts[k * C + c], lc[c]);
    }
    for (int i = 0; i < N; i++) CHECK_EQ_INT(seen[i], 1);
    free(seen);
}

static int same(const fed_partition *a, const fed_partition *b) {
    if (a->num_clients != b->num_clients) return 0;
    for (int k = 0; k < a->num_clients; k++) {
        if (a->train_n[k] != b->train_n[k] || a->test_n[k] != b->test_n[k]) return 0;
        if (memcmp(a->train[k], b->train[k], a->train_n[k] * sizeof(uint32_t))) return 0;
        if (a->test_n[k] && memcmp(a->test[k], b->test[k], a->test_n[k] * sizeof(uint32_t))) return 0;
    }
    return 1;
}

static double mean_distinct_labels(const fed_partition *p) {
    double s = 0;
    for (int k = 0; k < p->num_clients; k++)
        for (int c = 0; c < C; c++) s += p->label_counts[k * C + c] > 0;
    return s / p->num_clients;
}

static size_t size_of(const fed_partition *p, int k) { return p->train_n[k] + p->test_n[k]; }

static fed_partition_opts opts(int scheme, int K, uint64_t seed) {
    fed_partition_opts o;
    fed_partition_opts_default(&o);
    o.scheme = scheme;
    o.num_clients = K;
    o.seed = seed;
    return o;
}

static void test_every_scheme(const fed_dataset *d) {
    for (int s = 0; s < 4; s++) {
        int Ks[] = {1, 7, 20, 100};
        for (int i = 0; i < 4; i++) {
            fed_partition_opts o = opts(s, Ks[i], 3);
            o.local_test_fraction = i % 2 ? 0.2 : 0.0;
            fed_partition a, b, c;
            CHECK_OK(fed_partition_make(d, &o, &a));
            check_partition(d, &a, Ks[i]);
            CHECK_OK(fed_partition_make(d, &o, &b));
            CHECK(same(&a, &b));
            o.seed = 4;
            CHECK_OK(fed_partition_make(d, &o, &c));
            check_partition(d, &c, Ks[i]);
            if (Ks[i] > 1) CHECK(!same(&a, &c));
            fed_partition_free(&a);
            fed_partition_free(&b);
            fed_partition_free(&c);
        }
    }
}

static void test_iid(const fed_dataset *d) {
    fed_partition p;
    fed_partition_opts o = opts(FED_PART_IID, 7, 1);
    CHECK_OK(fed_partition_make(d, &o, &p));
    for (int k = 0; k < 7; k++) CHECK(size_of(&p, k) == 142 || size_of(&p, k) == 143);
    /* With ~143 examples each client sees all ten labels. */
    CHECK_NEAR(mean_distinct_labels(&p), 10.0, 0.0);
    fed_partition_free(&p);
}

static void test_dirichlet(const fed_dataset *d) {
    fed_partition p;
    fed_partition_opts o = opts(FED_PART_DIRICHLET, 10, 1);
    o.alpha = 100.0;
    CHECK_OK(fed_partition_make(d, &o, &p));
    /* Near-uniform: every client has every label, close to 10 of each. */
    CHECK_NEAR(mean_distinct_labels(&p), 10.0, 0.0);
    for (int k = 0; k < 10; k++) {
        CHECK_NEAR((double)size_of(&p, k), 100.0, 30.0);
        for (int c = 0; c < C; c++) CHECK_NEAR(p.label_counts[k * C + c], 10.0, 9.0);
    }
    double uniform = mean_distinct_labels(&p);
    fed_partition_free(&p);

    o.alpha = 0.05;
    CHECK_OK(fed_partition_make(d, &o, &p));
    check_partition(d, &p, 10);
    double skewed = mean_distinct_labels(&p);
    printf("dirichlet: mean distinct labels %.2f (alpha 100) vs %.2f (alpha 0.05)\n", uniform, skewed);
    CHECK(skewed < 4.0);
    fed_partition_free(&p);

    /* Tiny alpha and many clients: most clients would get nothing; the rule that
     * every client has an example must still hold, and the lists stay a partition. */
    o.alpha = 0.01;
    o.num_clients = 300;
    o.local_test_fraction = 0.5;
    CHECK_OK(fed_partition_make(d, &o, &p));
    check_partition(d, &p, 300);
    fed_partition_free(&p);
    o.num_clients = N;   /* one example each */
    CHECK_OK(fed_partition_make(d, &o, &p));
    check_partition(d, &p, N);
    for (int k = 0; k < N; k++) CHECK_EQ_INT(size_of(&p, k), 1);
    fed_partition_free(&p);
}

static void test_shards(const fed_dataset *d) {
    fed_partition p;
    fed_partition_opts o = opts(FED_PART_SHARDS, 20, 1);
    o.shards_per_client = 2;
    CHECK_OK(fed_partition_make(d, &o, &p));
    int at_most_s = 0;
    for (int k = 0; k < 20; k++) {
        CHECK_EQ_INT(size_of(&p, k), 50);   /* 40 shards of 25 */
        int distinct = 0;
        for (int c = 0; c < C; c++) distinct += p.label_counts[k * C + c] > 0;
        CHECK(distinct <= 2 * o.shards_per_client);
        at_most_s += distinct <= o.shards_per_client;
    }
    /* 100 examples per label, shards of 25: no shard straddles two labels. */
    CHECK_EQ_INT(at_most_s, 20);
    fed_partition_free(&p);
}

static void test_quantity(const fed_dataset *d) {
    fed_partition p;
    fed_partition_opts o = opts(FED_PART_QUANTITY, 20, 1);
    o.quantity_sigma = 1.0;
    CHECK_OK(fed_partition_make(d, &o, &p));
    size_t lo = N, hi = 0, total = 0;
    for (int k = 0; k < 20; k++) {
        size_t s = size_of(&p, k);
        lo = s < lo ? s : lo;
        hi = s > hi ? s : hi;
        total += s;
    }
    CHECK_EQ_INT(total, N);
    CHECK(lo >= 1);
    CHECK(hi >= 3 * lo);   /* log-normal(0, 1) sizes vary by far more than IID's one */
    fed_partition_free(&p);
    o.quantity_sigma = 0.0;   /* sigma 0: equal sizes up to rounding */
    CHECK_OK(fed_partition_make(d, &o, &p));
    for (int k = 0; k < 20; k++) CHECK_NEAR((double)size_of(&p, k), 50.0, 1.0);
    fed_partition_free(&p);
}

static void test_local_test_fraction(const fed_dataset *d) {
    fed_partition p;
    fed_partition_opts o = opts(FED_PART_QUANTITY, 30, 2);
    o.local_test_fraction = 0.25;
    CHECK_OK(fed_partition_make(d, &o, &p));
    for (int k = 0; k < 30; k++) {
        size_t n = size_of(&p, k), t = (size_t)(0.25 * (double)n);
        if (t > n - 1) t = n - 1;
        CHECK_EQ_INT(p.test_n[k], t);
        CHECK(p.train_n[k] >= 1);
    }
    fed_partition_free(&p);
    o.local_test_fraction = 0.99;   /* a client of one example still trains on it */
    o.num_clients = N;
    o.scheme = FED_PART_IID;
    CHECK_OK(fed_partition_make(d, &o, &p));
    for (int k = 0; k < N; k++) {
        CHECK_EQ_INT(p.train_n[k], 1);
        CHECK_EQ_INT(p.test_n[k], 0);
    }
    fed_partition_free(&p);
}

static void expect_einval(const fed_dataset *d, const fed_partition_opts *o, const char *word) {
    fed_partition p;
    int rc = fed_partition_make(d, o, &p);
    CHECK_EQ_INT(rc, FED_EINVAL);
    if (!strstr(fed_last_error(), word)) {
        fprintf(stderr, "error '%s' does not name '%s'\n", fed_last_error(), word);
        exit(1);
    }
    CHECK(p.num_clients == 0 && p.train == NULL);
    fed_partition_free(&p);
}

static void test_errors(const fed_dataset *d) {
    fed_partition_opts o = opts(FED_PART_IID, 0, 1);
    expect_einval(d, &o, "num_clients");
    o.num_clients = N + 1;
    expect_einval(d, &o, "num_clients");
    o = opts(FED_PART_DIRICHLET, 10, 1);
    o.alpha = 0.0;
    expect_einval(d, &o, "alpha");
    o.alpha = -1.0;
    expect_einval(d, &o, "alpha");
    o.alpha = NAN;
    expect_einval(d, &o, "alpha");
    o = opts(FED_PART_SHARDS, 10, 1);
    o.shards_per_client = 0;
    expect_einval(d, &o, "shards_per_client");
    o.shards_per_client = 101;   /* 1010 shards from 1000 examples */
    expect_einval(d, &o, "shards_per_client");
    o.shards_per_client = 100;   /* exactly one example per shard is fine */
    fed_partition p;
    CHECK_OK(fed_partition_make(d, &o, &p));
    check_partition(d, &p, 10);
    fed_partition_free(&p);
    o = opts(FED_PART_QUANTITY, 10, 1);
    o.quantity_sigma = -0.5;
    expect_einval(d, &o, "quantity_sigma");
    o = opts(FED_PART_IID, 10, 1);
    o.local_test_fraction = 1.0;
    expect_einval(d, &o, "local_test_fraction");
    o.local_test_fraction = -0.1;
    expect_einval(d, &o, "local_test_fraction");
    o = opts(17, 10, 1);
    expect_einval(d, &o, "scheme");

    fed_dataset bad = *d;
    bad.y = malloc(N * sizeof(int32_t));
    memcpy(bad.y, d->y, N * sizeof(int32_t));
    bad.y[5] = C;
    o = opts(FED_PART_IID, 10, 1);
    expect_einval(&bad, &o, "label");
    free(bad.y);

    int s = -1;
    CHECK_OK(fed_partition_scheme_from_name("dirichlet", &s));
    CHECK_EQ_INT(s, FED_PART_DIRICHLET);
    CHECK_OK(fed_partition_scheme_from_name("quantity", &s));
    CHECK_EQ_INT(s, FED_PART_QUANTITY);
    CHECK(fed_partition_scheme_from_name("pathological", &s) != 0);
    CHECK(strstr(fed_last_error(), "shards") != NULL);
    CHECK(strcmp(fed_partition_scheme_name(FED_PART_SHARDS), "shards") == 0);
    fed_partition_free(NULL);
}

int main(void) {
    fed_dataset d = make_data();
    test_every_scheme(&d);
    test_iid(&d);
    test_dirichlet(&d);
    test_shards(&d);
    test_quantity(&d);
    test_local_test_fraction(&d);
    test_errors(&d);
    free(d.x);
    free(d.y);
    TEST_PASS("test_partition");
}
