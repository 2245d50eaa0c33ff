/* Client selection: k distinct ascending ids, deterministic per (seed, round),
 * uniform covers everyone over time, stratified follows the label strata, and
 * capability weighting prefers data-rich, fast clients. */
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "federate/federate.h"

static fed_federation fake(int N) {
    fed_federation f;
    memset(&f, 0, sizeof f);
    f.num_clients = N;
    f.part.num_clients = N;
    f.part.num_classes = 10;
    f.part.train_n = calloc((size_t)N, sizeof(size_t));
    f.part.label_counts = calloc((size_t)N * 10, sizeof(int32_t));
    f.capability = calloc((size_t)N, sizeof(double));
    for (int i = 0; i < N; i++) {
        f.part.train_n[i] = 100;
        f.part.label_counts[i * 10 + (i % 10)] = 100;   /* client i's dominant label: i % 10 */
        f.capability[i] = 1.0;
    }
    return f;
}

static void release(fed_federation *f) {
    free(f->part.train_n);
    free(f->part.label_counts);
    free(f->capability);
}

int main(void) {
    int N = 100, k = 10, a[10], b[10];
    fed_federation f = fake(N);
    const char *kinds[] = {"uniform", "stratified", "capability"};
    for (int s = 0; s < 3; s++) {
        fed_selector x, y;
        CHECK_OK(fed_selector_init(&x, kinds[s], N));
        CHECK_OK(fed_selector_init(&y, kinds[s], N));
        int seen[100] = {0};
        for (int round = 1; round <= 50; round++) {
            CHECK_OK(fed_select_clients(&x, &f, 7, round, k, a));
            CHECK_OK(fed_select_clients(&y, &f, 7, round, k, b));
            CHECK(memcmp(a, b, sizeof a) == 0);               /* deterministic */
            for (int i = 0; i < k; i++) {
                CHECK(a[i] >= 0 && a[i] < N);
                if (i) CHECK(a[i] > a[i - 1]);                /* distinct, ascending */
                seen[a[i]]++;
                CHECK_EQ_INT(x.last_selected[a[i]], round);
            }
            if (s == 1) {
                /* one client per dominant label: exactly one of each i % 10 */
                int labels[10] = {0};
                for (int i = 0; i < k; i++) labels[a[i] % 10]++;
                for (int c = 0; c < 10; c++) CHECK_EQ_INT(labels[c], 1);
            }
        }
        int never = 0;
        for (int i = 0; i < N; i++) never += seen[i] == 0;
        /* 500 uniform or stratified draws over 100 clients reach nearly all;
         * capability weighting divides by staleness, so it revisits clients */
        if (s < 2) CHECK(never < 10);
        fed_selector_free(&x);
        fed_selector_free(&y);
    }
    /* a different seed or round gives a different choice */
    fed_selector x;
    CHECK_OK(fed_selector_init(&x, "uniform", N));
    CHECK_OK(fed_select_clients(&x, &f, 7, 1, k, a));
    CHECK_OK(fed_select_clients(&x, &f, 8, 1, k, b));
    CHECK(memcmp(a, b, sizeof a) != 0);
    fed_selector_free(&x);

    /* capability: clients 0..9 hold 10x the data and are 4x faster */
    for (int i = 0; i < 10; i++) { f.part.train_n[i] = 1000; f.capability[i] = 4.0; }
    CHECK_OK(fed_selector_init(&x, "capability", N));
    int favoured = 0;
    for (int round = 1; round <= 40; round++) {
        CHECK_OK(fed_select_clients(&x, &f, 3, round, k, a));
        for (int i = 0; i < k; i++) favoured += a[i] < 10;
    }
    CHECK(favoured > 200);   /* uniform would give about 40 of 400 */
    fed_selector_free(&x);

    /* errors */
    CHECK_EQ_INT(fed_selector_init(&x, "random", N), FED_EINVAL);
    CHECK_OK(fed_selector_init(&x, "uniform", N));
    CHECK_EQ_INT(fed_select_clients(&x, &f, 1, 1, N + 1, a), FED_EINVAL);
    CHECK_EQ_INT(fed_select_clients(&x, &f, 1, 1, 0, a), FED_EINVAL);
    fed_selector_free(&x);
    release(&f);
    TEST_PASS("test_selection");
}
