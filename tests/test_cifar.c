/* CIFAR-10 binary reader on files written here (the real set is not fetched):
 * record layout (label byte, then CHW pixels), concatenation order, malformed
 * files, and fed_dataset_load("cifar10") from a data directory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "check.h"
#include "federate/data.h"
#include "federate/error.h"

#define REC 3073

static char dir[64];

static void path(char *out, const char *name) { snprintf(out, 512, "%s/%s", dir, name); }

static unsigned char pixel(int rec, int ch, int y, int x) { return (unsigned char)(rec * 31 + ch * 101 + y * 7 + x * 3); }

/* Record r of a test file: label, then channel-major 32x32 planes. */
static void make_record(unsigned char *buf, int r, int label) {
    buf[0] = (unsigned char)label;
    for (int ch = 0; ch < 3; ch++)
        for (int y = 0; y < 32; y++)
            for (int x = 0; x < 32; x++) buf[1 + ch * 1024 + y * 32 + x] = pixel(r, ch, y, x);
}

static void write_file(const char *p, const unsigned char *buf, size_t len) {
    FILE *f = fopen(p, "wb");
    CHECK(f);
    CHECK(fwrite(buf, 1, len, f) == len);
    CHECK(fclose(f) == 0);
}

static void expect_fail(const char *const *paths, int n, int code, const char *s1, const char *s2) {
    fed_dataset d;
    memset(&d, 0xAB, sizeof d);
    int rc = fed_cifar_read(paths, n, &d);
    if (rc != code) fprintf(stderr, "got %d: %s\n", rc, fed_last_error());
    CHECK_EQ_INT(rc, code);
    const char *msg = fed_last_error();
    if ((s1 && !strstr(msg, s1)) || (s2 && !strstr(msg, s2))) fprintf(stderr, "message: %s\n", msg);
    if (s1) CHECK(strstr(msg, s1));
    if (s2) CHECK(strstr(msg, s2));
    CHECK(d.x == NULL && d.y == NULL && d.n == 0);
}

int main(void) {
    strcpy(dir, "/tmp/fed_cifar_XXXXXX");
    CHECK(mkdtemp(dir));
    static unsigned char buf[4 * REC];
    const int labels[3] = {3, 9, 0};
    for (int r = 0; r < 3; r++) make_record(buf + r * REC, r, labels[r]);

    char a[512], b[512], c[512];
    path(a, "three.bin");
    write_file(a, buf, 3 * REC);
    {
        const char *pp[1] = {a};
        fed_dataset d;
        CHECK_OK(fed_cifar_read(pp, 1, &d));
        CHECK_EQ_INT(d.n, 3); CHECK_EQ_INT(d.c, 3); CHECK_EQ_INT(d.h, 32); CHECK_EQ_INT(d.w, 32);
        CHECK_EQ_INT(d.num_classes, 10);
        CHECK_EQ_INT(fed_dataset_example_size(&d), 3072);
        for (int r = 0; r < 3; r++) {
            CHECK_EQ_INT(d.y[r], labels[r]);
            for (int ch = 0; ch < 3; ch++)
                for (int y = 0; y < 32; y++)
                    for (int x = 0; x < 32; x++)
                        CHECK(d.x[(size_t)r * 3072 + ch * 1024 + y * 32 + x] == (float)pixel(r, ch, y, x) / 255.0f);
        }
        fed_dataset_free(&d);
    }

    /* Several files concatenate in the order given. */
    path(b, "first.bin");
    path(c, "second.bin");
    write_file(b, buf + REC, 2 * REC);   /* records 1, 2 */
    write_file(c, buf, REC);             /* record 0 */
    {
        const char *pp[2] = {b, c};
        fed_dataset d;
        CHECK_OK(fed_cifar_read(pp, 2, &d));
        CHECK_EQ_INT(d.n, 3);
        CHECK_EQ_INT(d.y[0], 9); CHECK_EQ_INT(d.y[1], 0); CHECK_EQ_INT(d.y[2], 3);
        CHECK(d.x[2 * 3072 + 5] == (float)pixel(0, 0, 0, 5) / 255.0f);
        CHECK(d.x[0 * 3072 + 2048 + 33] == (float)pixel(1, 2, 1, 1) / 255.0f);
        fed_dataset_free(&d);
    }

    /* Size not a multiple of the record: names the file and its size. */
    {
        char p[512];
        path(p, "ragged.bin");
        write_file(p, buf, 2 * REC + 5);
        const char *pp[2] = {a, p};
        expect_fail(pp, 2, FED_EFORMAT, p, "6151");
    }
    /* A label past 9: names the file and the record. */
    {
        char p[512];
        path(p, "badlabel.bin");
        buf[REC] = 10;
        write_file(p, buf, 3 * REC);
        buf[REC] = (unsigned char)labels[1];
        const char *pp[1] = {p};
        expect_fail(pp, 1, FED_EFORMAT, p, "record 1");
        CHECK(strstr(fed_last_error(), "label 10"));
    }
    /* Missing, empty, and no files at all. */
    {
        char p[512], e[512];
        path(p, "missing.bin");
        path(e, "empty.bin");
        write_file(e, buf, 0);
        const char *pp[2] = {a, p};
        expect_fail(pp, 2, FED_EIO, p, NULL);
        const char *pe[1] = {e};
        expect_fail(pe, 1, FED_EFORMAT, e, "no CIFAR records");
        expect_fail(pp, 0, FED_EINVAL, NULL, NULL);
        const char *pn[1] = {NULL};
        expect_fail(pn, 1, FED_EINVAL, NULL, NULL);
    }

    /* fed_dataset_load finds DIR/cifar10/test_batch.bin and normalizes per channel. */
    {
        char sub[512], p[600];
        path(sub, "cifar10");
        CHECK(mkdir(sub, 0755) == 0);
        snprintf(p, sizeof p, "%s/test_batch.bin", sub);
        write_file(p, buf, 3 * REC);
        fed_dataset d;
        CHECK_OK(fed_dataset_load("cifar10", 0, dir, &d));
        CHECK_EQ_INT(d.n, 3); CHECK_EQ_INT(d.c, 3);
        const float mean[3] = {0.4914f, 0.4822f, 0.4465f}, std[3] = {0.2470f, 0.2435f, 0.2616f};
        for (int ch = 0; ch < 3; ch++) {
            float want = ((float)pixel(2, ch, 4, 9) / 255.0f - mean[ch]) / std[ch];
            CHECK_NEAR(d.x[2 * 3072 + ch * 1024 + 4 * 32 + 9], want, 1e-5);
        }
        fed_dataset_free(&d);
        /* The training split needs all five batches: names the first one missing. */
        CHECK_EQ_INT(fed_dataset_load("cifar10", 1, dir, &d), FED_ENOTFOUND);
        CHECK(strstr(fed_last_error(), "data_batch_1.bin"));
        CHECK(strstr(fed_last_error(), "place the CIFAR-10 binary batches in"));
        CHECK(d.x == NULL);
        for (int i = 1; i <= 5; i++) {
            snprintf(p, sizeof p, "%s/data_batch_%d.bin", sub, i);
            write_file(p, buf + (i % 3) * REC, REC);
        }
        CHECK_OK(fed_dataset_load("cifar10", 1, dir, &d));
        CHECK_EQ_INT(d.n, 5);
        CHECK_EQ_INT(d.y[0], labels[1]); CHECK_EQ_INT(d.y[2], labels[0]);
        fed_dataset_free(&d);
        /* A malformed batch is a format error, not "not found". */
        snprintf(p, sizeof p, "%s/data_batch_4.bin", sub);
        write_file(p, buf, 100);
        CHECK_EQ_INT(fed_dataset_load("cifar10", 1, dir, &d), FED_EFORMAT);
        CHECK(strstr(fed_last_error(), "data_batch_4.bin"));
    }

    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    TEST_PASS("test_cifar");
}
