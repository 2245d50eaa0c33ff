/* IDX reader and writer: small files written here (raw and gzip) read back exactly,
 * a write/read round trip, and every malformed input failing with the right code and
 * a message naming the file -- including headers that claim gigabytes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>
#include "check.h"
#include "federate/data.h"
#include "federate/error.h"

/* ASan reserves terabytes of address space, so the address-space cap below cannot
 * run under it (gcc and clang announce ASan differently). */
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

static char dir[64];
static char path_buf[8][512];
static int path_next;

/* dir/name, from a small ring so several can be live at once. */
static const char *P(const char *name) {
    char *p = path_buf[path_next++ % 8];
    snprintf(p, 512, "%s/%s", dir, name);
    return p;
}

static void put_be32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24); p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8); p[3] = (unsigned char)v;
}

static void write_raw(const char *path, const void *buf, size_t len) {
    FILE *f = fopen(path, "wb");
    CHECK(f);
    CHECK(fwrite(buf, 1, len, f) == len);
    CHECK(fclose(f) == 0);
}

static void write_gz(const char *path, const void *buf, size_t len) {
    gzFile f = gzopen(path, "wb");
    CHECK(f);
    CHECK(gzwrite(f, buf, (unsigned)len) == (int)len);
    CHECK(gzclose(f) == Z_OK);
}

/* An images file: header for (n, rows, cols) followed by `len` payload bytes. */
static size_t make_images(unsigned char *buf, uint32_t n, uint32_t rows, uint32_t cols, size_t len) {
    put_be32(buf, 0x803); put_be32(buf + 4, n); put_be32(buf + 8, rows); put_be32(buf + 12, cols);
    for (size_t i = 0; i < len; i++) buf[16 + i] = (unsigned char)(i * 37 + 11);
    return 16 + len;
}

static size_t make_labels(unsigned char *buf, uint32_t n, const unsigned char *labels, size_t len) {
    put_be32(buf, 0x801); put_be32(buf + 4, n);
    memcpy(buf + 8, labels, len);
    return 8 + len;
}

/* Expects fed_idx_read to fail with code, mentioning each of the non-NULL strings. */
static void expect_fail(const char *img, const char *lab, int code, const char *s1, const char *s2) {
    fed_dataset d;
    memset(&d, 0xAB, sizeof d);
    int rc = fed_idx_read(img, lab, &d);
    if (rc != code) fprintf(stderr, "got %d (%s): %s\n", rc, fed_strerror(rc), fed_last_error());
    CHECK_EQ_INT(rc, code);
    const char *msg = fed_last_error();
    if ((s1 && !strstr(msg, s1)) || (s2 && !strstr(msg, s2))) fprintf(stderr, "message: %s\n", msg);
    if (s1) CHECK(strstr(msg, s1));
    if (s2) CHECK(strstr(msg, s2));
    /* Failure leaves nothing to free. */
    CHECK(d.x == NULL && d.y == NULL && d.n == 0);
}

static void check_small(const char *img, const char *lab, const unsigned char *pix, const unsigned char *labels) {
    fed_dataset d;
    CHECK_OK(fed_idx_read(img, lab, &d));
    CHECK_EQ_INT(d.n, 3); CHECK_EQ_INT(d.c, 1); CHECK_EQ_INT(d.h, 2); CHECK_EQ_INT(d.w, 4);
    CHECK_EQ_INT(d.num_classes, 10);
    CHECK_EQ_INT(fed_dataset_example_size(&d), 8);
    for (int i = 0; i < 24; i++) CHECK(d.x[i] == (float)pix[i] / 255.0f);
    for (int i = 0; i < 3; i++) CHECK_EQ_INT(d.y[i], labels[i]);
    fed_dataset_free(&d);
    CHECK(d.x == NULL && d.n == 0);
}

/* Reading a header that promises `claim` bytes from a tiny file must not allocate
 * what it promises: run it in a child whose address space is capped well below. */
static void check_bounded(const char *img, const char *lab) {
#ifdef UNDER_ASAN
    expect_fail(img, lab, FED_EFORMAT, "truncated", NULL);
#else
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        struct rlimit rl = {(rlim_t)512 << 20, (rlim_t)512 << 20};
        if (setrlimit(RLIMIT_AS, &rl)) _exit(3);
        fed_dataset d;
        int rc = fed_idx_read(img, lab, &d);
        if (rc != FED_EFORMAT) fprintf(stderr, "child: %d: %s\n", rc, fed_last_error());
        _exit(rc == FED_EFORMAT && strstr(fed_last_error(), "truncated") ? 0 : 1);
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
#endif
}

int main(void) {
    strcpy(dir, "/tmp/fed_idx_XXXXXX");
    CHECK(mkdtemp(dir));

    unsigned char img[64 + 16], lab[16];
    const unsigned char labels[3] = {0, 7, 3};
    size_t ilen = make_images(img, 3, 2, 4, 24), llen = make_labels(lab, 3, labels, 3);
    const unsigned char *pix = img + 16;
    write_raw(P("img"), img, ilen);
    write_raw(P("lab"), lab, llen);
    write_gz(P("img.gz"), img, ilen);
    write_gz(P("lab.gz"), lab, llen);

    /* Raw, gzip, and mixed: gzip is detected by content, not by name. */
    check_small(P("img"), P("lab"), pix, labels);
    check_small(P("img.gz"), P("lab.gz"), pix, labels);
    check_small(P("img.gz"), P("lab"), pix, labels);
    write_gz(P("img_gz_no_suffix"), img, ilen);
    check_small(P("img_gz_no_suffix"), P("lab"), pix, labels);

    /* Labels past 9 widen the class count to max + 1. */
    {
        const unsigned char wide[3] = {12, 0, 5};
        unsigned char l2[16];
        write_raw(P("lab12"), l2, make_labels(l2, 3, wide, 3));
        fed_dataset d;
        CHECK_OK(fed_idx_read(P("img"), P("lab12"), &d));
        CHECK_EQ_INT(d.num_classes, 13);
        CHECK_EQ_INT(d.y[0], 12);
        fed_dataset_free(&d);
    }

    /* Round trip through fed_idx_write: byte-valued pixels come back exactly, other
     * values to the nearest byte, out-of-range values clamped. */
    {
        fed_dataset d;
        CHECK_OK(fed_idx_read(P("img.gz"), P("lab.gz"), &d));
        CHECK_OK(fed_idx_write(&d, P("w_img"), P("w_lab")));
        fed_dataset e;
        CHECK_OK(fed_idx_read(P("w_img"), P("w_lab"), &e));
        CHECK_EQ_INT(e.n, d.n); CHECK_EQ_INT(e.h, d.h); CHECK_EQ_INT(e.w, d.w);
        CHECK(memcmp(e.x, d.x, 24 * sizeof(float)) == 0);
        CHECK(memcmp(e.y, d.y, 3 * sizeof(int32_t)) == 0);
        /* The files themselves are byte-identical to the originals. */
        FILE *f = fopen(P("w_img"), "rb");
        unsigned char back[128];
        CHECK(f && fread(back, 1, sizeof back, f) == ilen);
        fclose(f);
        CHECK(memcmp(back, img, ilen) == 0);
        fed_dataset_free(&e);

        d.x[0] = 0.3f; d.x[1] = -2.0f; d.x[2] = 7.0f; d.x[3] = NAN; d.x[4] = 0.5f / 255.0f;
        CHECK_OK(fed_idx_write(&d, P("w_img"), P("w_lab")));
        CHECK_OK(fed_idx_read(P("w_img"), P("w_lab"), &e));
        CHECK(e.x[0] == 77.0f / 255.0f);   /* round(76.5) */
        CHECK(e.x[1] == 0.0f);
        CHECK(e.x[2] == 1.0f);
        CHECK(e.x[3] == 0.0f);
        CHECK(e.x[4] == 1.0f / 255.0f);
        fed_dataset_free(&e);

        /* Unwritable shapes and labels are refused before any file is touched. */
        d.y[1] = 256;
        CHECK_EQ_INT(fed_idx_write(&d, P("bad_img"), P("bad_lab")), FED_ERANGE);
        CHECK(access(P("bad_img"), F_OK) != 0);
        d.y[1] = 7;
        d.c = 3; d.h = 1; d.w = 8;
        CHECK_EQ_INT(fed_idx_write(&d, P("bad_img"), P("bad_lab")), FED_ESHAPE);
        d.c = 1; d.h = 2; d.w = 4;
        const char *nodir = "/nonexistent_fed_dir/img";
        CHECK_EQ_INT(fed_idx_write(&d, nodir, P("bad_lab")), FED_EIO);
        CHECK(strstr(fed_last_error(), nodir));
        CHECK_EQ_INT(fed_idx_write(NULL, P("a"), P("b")), FED_EINVAL);
        fed_dataset_free(&d);
    }

    /* Missing files: FED_EIO naming the path (either one). */
    expect_fail(P("missing"), P("lab"), FED_EIO, P("missing"), NULL);
    expect_fail(P("img"), P("missing_lab"), FED_EIO, P("missing_lab"), NULL);
    CHECK_EQ_INT(fed_idx_read(NULL, P("lab"), &(fed_dataset){0}), FED_EINVAL);
    CHECK_EQ_INT(fed_idx_read(P("img"), P("lab"), NULL), FED_EINVAL);

    /* Wrong magic: a labels file given as images and the reverse, raw and gzip. */
    expect_fail(P("lab"), P("lab"), FED_EFORMAT, P("lab"), "expected 0x00000803");
    expect_fail(P("lab.gz"), P("lab"), FED_EFORMAT, "found 0x00000801", P("lab.gz"));
    expect_fail(P("img"), P("img"), FED_EFORMAT, "expected 0x00000801", "found 0x00000803");
    {
        const char junk[] = "this is not an IDX file at all";
        write_raw(P("junk"), junk, sizeof junk);
        expect_fail(P("junk"), P("lab"), FED_EFORMAT, P("junk"), "bad magic");
    }

    /* Truncation: of the payload (raw and gzip), and of the header. */
    write_raw(P("img_short"), img, ilen - 10);
    expect_fail(P("img_short"), P("lab"), FED_EFORMAT, P("img_short"), "expected 24 bytes, got 14");
    write_gz(P("img_short.gz"), img, ilen - 10);
    expect_fail(P("img_short.gz"), P("lab"), FED_EFORMAT, P("img_short.gz"), "expected 24 bytes, got 14");
    write_raw(P("lab_short"), lab, llen - 1);
    expect_fail(P("img"), P("lab_short"), FED_EFORMAT, P("lab_short"), "expected 3 bytes, got 2");
    write_raw(P("img_hdr"), img, 10);
    expect_fail(P("img_hdr"), P("lab"), FED_EFORMAT, P("img_hdr"), "expected 16 bytes, got 10");
    write_raw(P("empty"), img, 0);
    expect_fail(P("empty"), P("lab"), FED_EFORMAT, P("empty"), "truncated");
    {
        /* A gzip file whose compressed stream is cut off mid-way. */
        unsigned char big[16 + 4000];
        size_t blen = make_images(big, 10, 20, 20, 4000);
        for (size_t i = 16; i < blen; i++) big[i] = (unsigned char)(rand() & 0xff);   /* incompressible */
        write_gz(P("big.gz"), big, blen);
        FILE *f = fopen(P("big.gz"), "rb");
        unsigned char gz[8192];
        size_t gzlen = fread(gz, 1, sizeof gz, f);
        fclose(f);
        CHECK(gzlen > 2000);
        write_raw(P("cut.gz"), gz, gzlen / 2);
        expect_fail(P("cut.gz"), P("lab"), FED_EFORMAT, P("cut.gz"), NULL);
        /* And one whose deflate data is corrupt. */
        for (size_t i = 20; i < gzlen - 8; i++) gz[i] ^= 0x5a;
        write_raw(P("corrupt.gz"), gz, gzlen);
        expect_fail(P("corrupt.gz"), P("lab"), FED_EFORMAT, P("corrupt.gz"), NULL);
    }

    /* Trailing bytes: header and file disagree. */
    {
        unsigned char t[128];
        memcpy(t, img, ilen);
        t[ilen] = 1;
        write_raw(P("img_trail"), t, ilen + 1);
        expect_fail(P("img_trail"), P("lab"), FED_EFORMAT, P("img_trail"), "trailing");
    }

    /* Count mismatch names both files. */
    {
        unsigned char l2[16];
        write_raw(P("lab2"), l2, make_labels(l2, 2, labels, 2));
        expect_fail(P("img"), P("lab2"), FED_EFORMAT, P("img"), P("lab2"));
        CHECK(strstr(fed_last_error(), "3 images") && strstr(fed_last_error(), "2 labels"));
    }

    /* Absurd dimensions: zero, over the 2^31 payload cap, and 32-bit overflow bait. */
    {
        unsigned char h[116];
        write_raw(P("zero_rows"), h, make_images(h, 3, 0, 4, 0));
        expect_fail(P("zero_rows"), P("lab"), FED_EFORMAT, P("zero_rows"), "absurd");
        write_raw(P("huge"), h, make_images(h, 1u << 30, 28, 28, 100));
        expect_fail(P("huge"), P("lab"), FED_EFORMAT, P("huge"), "absurd");
        /* 2^16 * 2^16 * 1 wraps to 0 in 32 bits. */
        write_raw(P("wrap"), h, make_images(h, 1u << 16, 1u << 16, 1, 100));
        expect_fail(P("wrap"), P("lab"), FED_EFORMAT, P("wrap"), "absurd");
        write_raw(P("max"), h, make_images(h, 0xffffffffu, 0xffffffffu, 0xffffffffu, 100));
        expect_fail(P("max"), P("lab"), FED_EFORMAT, P("max"), "absurd");
        unsigned char l2[16];
        write_raw(P("lab_zero"), l2, make_labels(l2, 0, labels, 0));
        expect_fail(P("img"), P("lab_zero"), FED_EFORMAT, P("lab_zero"), "absurd");

        /* Within the cap (2^30 one-pixel images) but only 100 bytes there: fails as
         * truncated without allocating the gigabyte the header asks for. */
        write_raw(P("liar"), h, make_images(h, 1u << 30, 1, 1, 100));
        check_bounded(P("liar"), P("lab"));
        write_gz(P("liar.gz"), h, make_images(h, 1u << 30, 1, 1, 100));
        check_bounded(P("liar.gz"), P("lab"));
        write_raw(P("liar_lab"), l2, make_labels(l2, 0x7fffffffu, labels, 3));
        check_bounded(P("img"), P("liar_lab"));
    }

    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    TEST_PASS("test_idx");
}
