/* Per-client folders: fed_partition_write_dirs then fed_partition_read_dirs gives
 * back every client's examples (labels exactly, normalized pixels within the byte
 * rounding), and damaged folders fail with messages naming the client and file. */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "check.h"
#include "federate/error.h"
#include "federate/partition.h"

static fed_dataset make_data(int n, int c, int h, int w, int from_bytes, const float *mean, const float *std) {
    fed_dataset d = {0};
    d.n = n;
    d.c = c;
    d.h = h;
    d.w = w;
    d.num_classes = 10;
    size_t es = (size_t)c * h * w;
    d.x = malloc((size_t)n * es * sizeof(float));
    d.y = malloc((size_t)n * sizeof(int32_t));
    fed_rng r;
    fed_rng_init(&r, 9, 0, 0, FED_RNG_USER);
    for (int i = 0; i < n; i++) {
        d.y[i] = (int32_t)fed_rng_below(&r, 10);
        for (size_t j = 0; j < es; j++) {
            /* Pixels from bytes, as loaded data sets are, or anywhere in [0, 1]. */
            float v = from_bytes ? (float)fed_rng_below(&r, 256) / 255.0f : fed_rng_uniformf(&r);
            d.x[(size_t)i * es + j] = v;
        }
    }
    if (mean) fed_dataset_normalize(&d, mean, std);
    return d;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void rm_tree(const char *dir) { nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

/* Reads dir back and compares with d / p; tol is the pixel tolerance. */
static void check_round_trip(const fed_dataset *d, const fed_partition *p, const char *dir, double tol) {
    fed_dataset r;
    fed_partition q;
    CHECK_OK(fed_partition_read_dirs(dir, &r, &q));
    CHECK_EQ_INT(q.num_clients, p->num_clients);
    CHECK_EQ_INT(q.num_classes, p->num_classes);
    CHECK_EQ_INT(r.c, d->c);
    CHECK_EQ_INT(r.h, d->h);
    CHECK_EQ_INT(r.w, d->w);
    CHECK_EQ_INT(r.num_classes, d->num_classes);
    size_t es = (size_t)d->c * d->h * d->w, total = 0;
    double worst = 0;
    int next = 0;
    for (int k = 0; k < p->num_clients; k++) {
        CHECK_EQ_INT(q.train_n[k], p->train_n[k]);
        CHECK_EQ_INT(q.test_n[k], p->test_n[k]);
        for (int c = 0; c < p->num_classes; c++)
            CHECK_EQ_INT(q.label_counts[k * p->num_classes + c], p->label_counts[k * p->num_classes + c]);
        for (int s = 0; s < 2; s++) {
            size_t n = s ? p->test_n[k] : p->train_n[k];
            const uint32_t *a = s ? p->test[k] : p->train[k], *b = s ? q.test[k] : q.train[k];
            for (size_t j = 0; j < n; j++) {
                /* Client order, train then test: the folders' examples concatenated. */
                CHECK_EQ_INT(b[j], next++);
                CHECK_EQ_INT(r.y[b[j]], d->y[a[j]]);
                for (size_t i = 0; i < es; i++) {
                    double e = fabs((double)r.x[(size_t)b[j] * es + i] - (double)d->x[(size_t)a[j] * es + i]);
                    if (e > worst) worst = e;
                }
            }
            total += n;
        }
    }
    CHECK_EQ_INT(r.n, total);
    CHECK_EQ_INT(r.n, d->n);
    CHECK(worst <= tol);
    fed_dataset_free(&r);
    fed_partition_free(&q);
}

static char *path_in(const char *dir, const char *rel) {
    static char buf[1024];
    snprintf(buf, sizeof buf, "%s/%s", dir, rel);
    return buf;
}

static void copy_file(const char *from, const char *to) {
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    CHECK(a && b);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, a)) > 0) CHECK(fwrite(buf, 1, n, b) == n);
    fclose(a);
    fclose(b);
}

static void expect_error(const char *dir, const char *w1, const char *w2) {
    fed_dataset r;
    fed_partition q;
    int rc = fed_partition_read_dirs(dir, &r, &q);
    CHECK(rc != 0);
    const char *msg = fed_last_error();
    if (!strstr(msg, w1) || (w2 && !strstr(msg, w2))) {
        fprintf(stderr, "error '%s' does not name '%s' and '%s'\n", msg, w1, w2 ? w2 : "");
        exit(1);
    }
    printf("  expected error: %s\n", msg);
    /* Failure leaves nothing allocated behind. */
    CHECK(r.x == NULL && r.n == 0 && q.num_clients == 0 && q.train == NULL);
}

static void write_fresh(const fed_dataset *d, const fed_partition *p, const fed_partition_opts *o, const char *dir) {
    rm_tree(dir);
    CHECK_OK(fed_partition_write_dirs_named(d, p, o, "mnist", dir));
}

int main(void) {
    char root[] = "/tmp/federate_partdirs_XXXXXX";
    CHECK(mkdtemp(root) != NULL);
    char dir[512];
    snprintf(dir, sizeof dir, "%s/out/nested", root);   /* parents are created */

    /* MNIST-shaped data normalized like fed_dataset_load leaves it. */
    const float mm = 0.1307f, ms = 0.3081f;
    fed_dataset d = make_data(400, 1, 5, 3, 1, &mm, &ms);
    fed_partition_opts o;
    fed_partition_opts_default(&o);
    o.scheme = FED_PART_QUANTITY;
    o.num_clients = 6;
    o.local_test_fraction = 0.2;
    o.seed = 5;
    fed_partition p;
    CHECK_OK(fed_partition_make(&d, &o, &p));
    CHECK_OK(fed_partition_write_dirs_named(&d, &p, &o, "mnist", dir));
    /* Pixels that were bytes come back as the same bytes. */
    check_round_trip(&d, &p, dir, 1e-5);
    char name[32];
    CHECK_OK(fed_partition_dir_dataset(dir, name, sizeof name));
    CHECK(strcmp(name, "mnist") == 0);
    CHECK(access(path_in(dir, "client_00005/train-labels-idx1-ubyte"), R_OK) == 0);
    CHECK(access(path_in(dir, "partition.json"), R_OK) == 0);

    /* Arbitrary pixels: within the rounding to bytes, 1/255/std. */
    fed_dataset d2 = make_data(400, 1, 5, 3, 0, &mm, &ms);
    CHECK_OK(fed_partition_write_dirs_named(&d2, &p, &o, "mnist", dir));
    check_round_trip(&d2, &p, dir, 1.0 / 255.0 / ms);
    fed_dataset_free(&d2);

    /* CIFAR-shaped: three channels, each with its own mean/std. */
    {
        const float cm[3] = {0.4914f, 0.4822f, 0.4465f}, cs[3] = {0.2470f, 0.2435f, 0.2616f};
        fed_dataset c = make_data(120, 3, 4, 4, 1, cm, cs);
        fed_partition_opts oc = o;
        oc.scheme = FED_PART_DIRICHLET;
        oc.alpha = 0.3;
        oc.num_clients = 4;
        fed_partition pc;
        CHECK_OK(fed_partition_make(&c, &oc, &pc));
        char cdir[512];
        snprintf(cdir, sizeof cdir, "%s/cifar", root);
        CHECK_OK(fed_partition_write_dirs_named(&c, &pc, &oc, "cifar10", cdir));
        check_round_trip(&c, &pc, cdir, 1e-5);
        /* A name whose channel count disagrees with the data is refused. */
        CHECK_EQ_INT(fed_partition_write_dirs_named(&d, &p, &o, "cifar10", cdir), FED_EINVAL);
        fed_partition_free(&pc);
        fed_dataset_free(&c);
    }

    /* Unnamed: pixels in [0, 1] are stored as given and not normalized on reading. */
    {
        fed_dataset u = make_data(400, 1, 5, 3, 1, NULL, NULL);
        char udir[512];
        snprintf(udir, sizeof udir, "%s/plain", root);
        CHECK_OK(fed_partition_write_dirs(&u, &p, NULL, udir));
        check_round_trip(&u, &p, udir, 1e-6);
        CHECK_OK(fed_partition_dir_dataset(udir, name, sizeof name));
        CHECK(strcmp(name, "unknown") == 0);
        fed_dataset_free(&u);
    }

    /* Rewriting a folder without local test lists removes the old test files. */
    {
        fed_partition_opts o2 = o;
        o2.local_test_fraction = 0.0;
        fed_partition p2;
        CHECK_OK(fed_partition_make(&d, &o2, &p2));
        CHECK_OK(fed_partition_write_dirs_named(&d, &p2, &o2, "mnist", dir));
        CHECK(access(path_in(dir, "client_00000/test-images-idx3-ubyte"), F_OK) != 0);
        check_round_trip(&d, &p2, dir, 1e-5);
        fed_partition_free(&p2);
    }

    /* A truncated image file. */
    write_fresh(&d, &p, &o, dir);
    CHECK(truncate(path_in(dir, "client_00001/train-images-idx3-ubyte"), 20) == 0);
    expect_error(dir, "client_00001", "train-images-idx3-ubyte");

    /* Another client's files in a folder: the counts disagree with partition.json. */
    write_fresh(&d, &p, &o, dir);
    int a = 2, b = 3;
    for (int k = 0; k < 6; k++)
        if (p.train_n[k] != p.train_n[2]) b = k;
    CHECK(p.train_n[a] != p.train_n[b]);
    char from[64], to[64];
    for (int f = 0; f < 2; f++) {
        const char *fn = f ? "train-labels-idx1-ubyte" : "train-images-idx3-ubyte";
        snprintf(from, sizeof from, "client_%05d/%s", b, fn);
        snprintf(to, sizeof to, "client_%05d/%s", a, fn);
        char src[1024];
        snprintf(src, sizeof src, "%s", path_in(dir, from));
        copy_file(src, path_in(dir, to));
    }
    expect_error(dir, "client_00002", "partition.json");

    /* Labels file and images file of different lengths within one client. */
    write_fresh(&d, &p, &o, dir);
    {
        char src[1024];
        snprintf(from, sizeof from, "client_%05d/train-labels-idx1-ubyte", b);
        snprintf(src, sizeof src, "%s", path_in(dir, from));
        copy_file(src, path_in(dir, "client_00002/train-labels-idx1-ubyte"));
    }
    expect_error(dir, "client_00002", "train-");

    /* A label outside the classes partition.json declares. */
    write_fresh(&d, &p, &o, dir);
    {
        FILE *f = fopen(path_in(dir, "client_00004/train-labels-idx1-ubyte"), "r+b");
        CHECK(f != NULL);
        CHECK(fseek(f, 8, SEEK_SET) == 0);
        CHECK(fputc(200, f) == 200);
        fclose(f);
    }
    expect_error(dir, "client_00004", "label");

    /* A missing test file for a client that has local test examples. */
    write_fresh(&d, &p, &o, dir);
    CHECK(p.test_n[0] > 0);
    CHECK(remove(path_in(dir, "client_00000/test-images-idx3-ubyte")) == 0);
    expect_error(dir, "client_00000", "test-images-idx3-ubyte");

    /* A missing client folder. */
    write_fresh(&d, &p, &o, dir);
    rm_tree(path_in(dir, "client_00003"));
    expect_error(dir, "client_00003", NULL);

    /* partition.json missing, then garbage. */
    write_fresh(&d, &p, &o, dir);
    CHECK(remove(path_in(dir, "partition.json")) == 0);
    expect_error(dir, "partition.json", NULL);
    {
        FILE *f = fopen(path_in(dir, "partition.json"), "w");
        CHECK(f != NULL);
        fputs("{\"version\": 1, \"num_clients\": ", f);
        fclose(f);
    }
    expect_error(dir, "partition.json", NULL);
    {
        FILE *f = fopen(path_in(dir, "partition.json"), "w");
        CHECK(f != NULL);
        fputs("{\"version\": 1, \"num_clients\": 6, \"num_classes\": 10, \"dataset\": \"mnist\", \"shape\": [1, 5]}", f);
        fclose(f);
    }
    expect_error(dir, "partition.json", "shape");

    /* A directory that does not exist. */
    expect_error(path_in(root, "no_such_dir"), "no_such_dir", NULL);

    fed_partition_free(&p);
    fed_dataset_free(&d);
    rm_tree(root);
    TEST_PASS("test_partition_dirs");
}
