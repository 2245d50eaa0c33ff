/* IDX files (LeCun's MNIST format, also Fashion-MNIST): a big-endian header of
 * magic 0x00000803 + (n, rows, cols) for images or 0x00000801 + (n) for labels,
 * then unsigned bytes. Read through zlib so .gz and raw files share one path. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include "federate/data.h"
#include "federate/error.h"

#define IDX_IMAGES 0x00000803u
#define IDX_LABELS 0x00000801u
/* Payload cap: keeps n * rows * cols (and so every index into x) within int32;
 * also the most a header can make us expect. */
#define IDX_MAX_BYTES ((uint64_t)INT32_MAX)
/* The payload buffer grows from this size as bytes actually arrive, so a header
 * that lies about its size costs at most twice the real data, never what it claims
 * (a gzip file's size says nothing about its decompressed size). */
#define IDX_FIRST_CHUNK ((size_t)1 << 20)

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static void put_be32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* Reads up to len bytes; *got is what arrived before EOF. A gzip stream cut short
 * counts as EOF (so the caller reports the byte shortfall); other errors are real. */
static int read_upto(gzFile f, const char *path, unsigned char *buf, size_t len, size_t *got) {
    *got = 0;
    while (*got < len) {
        size_t want = len - *got;
        if (want > ((size_t)1 << 30)) want = (size_t)1 << 30;
        int r = gzread(f, buf + *got, (unsigned)want);
        if (r > 0) {
            *got += (size_t)r;
            continue;
        }
        if (r == 0) break;
        int zerr;
        const char *msg = gzerror(f, &zerr);
        if (zerr == Z_BUF_ERROR) break;   /* "unexpected end of file" */
        if (zerr == Z_ERRNO) return fed_error(FED_EIO, "%s: read failed: %s", path, strerror(errno));
        return fed_error(FED_EFORMAT, "%s: corrupt gzip data: %s", path, msg);
    }
    return 0;
}

/* Opens an IDX file, checks magic and dims, and returns the payload bytes. */
static int read_idx(const char *path, uint32_t magic, int ndims, uint32_t *dims, unsigned char **data) {
    *data = NULL;
    errno = 0;
    gzFile f = gzopen(path, "rb");
    if (!f) return fed_error(FED_EIO, "cannot open %s: %s", path, errno ? strerror(errno) : "out of memory");
    gzbuffer(f, 1u << 17);

    int rc = 0;
    unsigned char *buf = NULL;
    unsigned char hdr[16];
    size_t hlen = 4 + 4 * (size_t)ndims, got;
    if ((rc = read_upto(f, path, hdr, hlen, &got))) goto out;
    if (got >= 4 && be32(hdr) != magic) {
        rc = fed_error(FED_EFORMAT, "%s: bad magic: expected 0x%08x (IDX %s), found 0x%08x", path, magic,
                       magic == IDX_IMAGES ? "images" : "labels", be32(hdr));
        goto out;
    }
    if (got < hlen) {
        rc = fed_error(FED_EFORMAT, "%s: truncated header: expected %zu bytes, got %zu", path, hlen, got);
        goto out;
    }
    uint64_t total = 1;
    int absurd = 0;
    for (int i = 0; i < ndims; i++) {
        dims[i] = be32(hdr + 4 + 4 * i);
        /* 64-bit product of factors < 2^32, checked at each step: cannot overflow. */
        total *= dims[i];
        if (dims[i] == 0 || total > IDX_MAX_BYTES) absurd = 1;
        if (absurd) total = 0;
    }
    if (absurd) {
        if (ndims == 3)
            rc = fed_error(FED_EFORMAT, "%s: absurd dimensions %u x %u x %u in header (payload must be 1..%llu bytes)",
                           path, dims[0], dims[1], dims[2], (unsigned long long)IDX_MAX_BYTES);
        else
            rc = fed_error(FED_EFORMAT, "%s: absurd count %u in header (must be 1..%llu)", path, dims[0],
                           (unsigned long long)IDX_MAX_BYTES);
        goto out;
    }

    size_t need = (size_t)total, have = 0;
    size_t cap = need < IDX_FIRST_CHUNK ? need : IDX_FIRST_CHUNK;
    buf = malloc(cap);
    if (!buf) {
        rc = fed_error(FED_ENOMEM, "%s: cannot allocate %zu bytes", path, cap);
        goto out;
    }
    for (;;) {
        if ((rc = read_upto(f, path, buf + have, cap - have, &got))) goto out;
        have += got;
        if (have < cap || have == need) break;   /* EOF, or everything arrived */
        size_t ncap = cap > need / 2 ? need : 2 * cap;
        unsigned char *nb = realloc(buf, ncap);
        if (!nb) {
            rc = fed_error(FED_ENOMEM, "%s: cannot allocate %zu bytes", path, ncap);
            goto out;
        }
        buf = nb;
        cap = ncap;
    }
    if (have < need) {
        rc = fed_error(FED_EFORMAT, "%s: truncated data: expected %zu bytes, got %zu", path, need, have);
        goto out;
    }
    /* Bytes past the payload mean header and file disagree: most likely a wrong file. */
    unsigned char extra;
    if ((rc = read_upto(f, path, &extra, 1, &got))) goto out;
    if (got) rc = fed_error(FED_EFORMAT, "%s: trailing data after the %zu bytes the header declares", path, need);
out:
    gzclose(f);
    if (rc) {
        free(buf);
        return rc;
    }
    *data = buf;
    return 0;
}

int fed_idx_read(const char *images_path, const char *labels_path, fed_dataset *out) {
    if (!out) return fed_error(FED_EINVAL, "fed_idx_read: NULL output");
    memset(out, 0, sizeof *out);
    if (!images_path || !labels_path) return fed_error(FED_EINVAL, "fed_idx_read: NULL path");

    uint32_t idims[3] = {0}, ldims[1] = {0};
    unsigned char *pix = NULL, *lab = NULL;
    int rc = read_idx(images_path, IDX_IMAGES, 3, idims, &pix);
    if (rc) return rc;
    if ((rc = read_idx(labels_path, IDX_LABELS, 1, ldims, &lab))) {
        free(pix);
        return rc;
    }
    if (idims[0] != ldims[0]) {
        free(pix);
        free(lab);
        return fed_error(FED_EFORMAT, "count mismatch: %s has %u images but %s has %u labels", images_path, idims[0],
                         labels_path, ldims[0]);
    }

    size_t n = idims[0], ex = (size_t)idims[1] * idims[2];
    float *x = malloc(n * ex * sizeof(float));
    int32_t *y = malloc(n * sizeof(int32_t));
    if (!x || !y) {
        free(x);
        free(y);
        free(pix);
        free(lab);
        return fed_error(FED_ENOMEM, "%s: cannot allocate %zu images of %zu pixels", images_path, n, ex);
    }
    /* byte / 255 exactly as torchvision's ToTensor, via a table. */
    float lut[256];
    for (int i = 0; i < 256; i++) lut[i] = (float)i / 255.0f;
    for (size_t i = 0; i < n * ex; i++) x[i] = lut[pix[i]];
    int maxl = 0;
    for (size_t i = 0; i < n; i++) {
        y[i] = lab[i];
        if (lab[i] > maxl) maxl = lab[i];
    }
    free(pix);
    free(lab);

    out->n = (int)n;
    out->c = 1;
    out->h = (int)idims[1];
    out->w = (int)idims[2];
    /* MNIST-like data sets have 10 classes even when a small file misses some. */
    out->num_classes = maxl < 10 ? 10 : maxl + 1;
    out->x = x;
    out->y = y;
    return 0;
}

/* Writes all of buf, or fails naming the file. */
static int write_all(FILE *f, const char *path, const void *buf, size_t len) {
    if (len && fwrite(buf, 1, len, f) != len) return fed_error(FED_EIO, "%s: write failed: %s", path, strerror(errno));
    return 0;
}

static int write_images(const fed_dataset *d, const char *path) {
    FILE *f = fopen(path, "wb");
    if (!f) return fed_error(FED_EIO, "cannot create %s: %s", path, strerror(errno));
    unsigned char hdr[16];
    put_be32(hdr, IDX_IMAGES);
    put_be32(hdr + 4, (uint32_t)d->n);
    put_be32(hdr + 8, (uint32_t)d->h);
    put_be32(hdr + 12, (uint32_t)d->w);
    int rc = write_all(f, path, hdr, sizeof hdr);
    /* One image at a time: a whole-file byte buffer would double peak memory. */
    size_t ex = (size_t)d->h * d->w;
    unsigned char *row = malloc(ex);
    if (!rc && !row) rc = fed_error(FED_ENOMEM, "%s: cannot allocate %zu bytes", path, ex);
    for (int i = 0; !rc && i < d->n; i++) {
        const float *x = d->x + (size_t)i * ex;
        for (size_t j = 0; j < ex; j++) {
            float v = x[j] * 255.0f + 0.5f;
            /* The negated tests also send NaN to 0. */
            row[j] = !(v >= 0.0f) ? 0 : v >= 255.0f ? 255 : (unsigned char)v;
        }
        rc = write_all(f, path, row, ex);
    }
    free(row);
    if (fclose(f) && !rc) rc = fed_error(FED_EIO, "%s: write failed: %s", path, strerror(errno));
    if (rc) remove(path);
    return rc;
}

static int write_labels(const fed_dataset *d, const char *path) {
    unsigned char *lab = malloc((size_t)d->n + 8);
    if (!lab) return fed_error(FED_ENOMEM, "%s: cannot allocate %d labels", path, d->n);
    put_be32(lab, IDX_LABELS);
    put_be32(lab + 4, (uint32_t)d->n);
    for (int i = 0; i < d->n; i++) lab[8 + i] = (unsigned char)d->y[i];
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(lab);
        return fed_error(FED_EIO, "cannot create %s: %s", path, strerror(errno));
    }
    int rc = write_all(f, path, lab, (size_t)d->n + 8);
    free(lab);
    if (fclose(f) && !rc) rc = fed_error(FED_EIO, "%s: write failed: %s", path, strerror(errno));
    if (rc) remove(path);
    return rc;
}

int fed_idx_write(const fed_dataset *d, const char *images_path, const char *labels_path) {
    if (!d || !images_path || !labels_path) return fed_error(FED_EINVAL, "fed_idx_write: NULL argument");
    if (d->n <= 0 || !d->x || !d->y) return fed_error(FED_EINVAL, "fed_idx_write: empty data set");
    if (d->c != 1 || d->h <= 0 || d->w <= 0)
        return fed_error(FED_ESHAPE, "fed_idx_write: IDX holds 1-channel images, data set is %dx%dx%d", d->c, d->h,
                         d->w);
    /* IDX label bytes hold 0..255; checked before either file is touched. */
    for (int i = 0; i < d->n; i++)
        if (d->y[i] < 0 || d->y[i] > 255)
            return fed_error(FED_ERANGE, "fed_idx_write: label %d of example %d does not fit a byte", d->y[i], i);
    int rc = write_images(d, images_path);
    if (rc) return rc;
    if ((rc = write_labels(d, labels_path))) remove(images_path);
    return rc;
}
