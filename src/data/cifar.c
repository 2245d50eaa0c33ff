/* CIFAR-10 binary batches (https://www.cs.toronto.edu/~kriz/cifar.html): records
 * of one label byte then 3072 pixel bytes (1024 red, 1024 green, 1024 blue, each
 * row-major 32x32), i.e. already CHW, concatenated over the files given. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "federate/data.h"
#include "federate/error.h"

#define CIFAR_PIXELS 3072
#define CIFAR_RECORD (1 + CIFAR_PIXELS)
#define CIFAR_CLASSES 10
/* Keeps n * 3072 within int32, like the IDX reader. */
#define CIFAR_MAX_RECORDS (INT32_MAX / CIFAR_PIXELS)

/* Sizes every file first, so the float array is allocated once and a bad file is
 * reported before any real work. */
static int file_records(const char *path, size_t *records) {
    struct stat st;
    if (stat(path, &st)) return fed_error(FED_EIO, "cannot open %s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return fed_error(FED_EIO, "%s: not a regular file", path);
    if (st.st_size % CIFAR_RECORD)
        return fed_error(FED_EFORMAT, "%s: size %lld is not a multiple of the %d-byte CIFAR record", path,
                         (long long)st.st_size, CIFAR_RECORD);
    *records = (size_t)(st.st_size / CIFAR_RECORD);
    return 0;
}

/* Reads one file's records into x/y (already offset to where its records go). */
static int read_file(const char *path, size_t records, float *x, int32_t *y, const float *lut) {
    FILE *f = fopen(path, "rb");
    if (!f) return fed_error(FED_EIO, "cannot open %s: %s", path, strerror(errno));
    unsigned char rec[CIFAR_RECORD];
    int rc = 0;
    for (size_t i = 0; i < records; i++) {
        size_t got = fread(rec, 1, sizeof rec, f);
        if (got != sizeof rec) {
            rc = ferror(f) ? fed_error(FED_EIO, "%s: read failed: %s", path, strerror(errno))
                           : fed_error(FED_EFORMAT, "%s: truncated data: expected %zu bytes, got %zu", path,
                                       records * CIFAR_RECORD, i * CIFAR_RECORD + got);
            break;
        }
        if (rec[0] >= CIFAR_CLASSES) {
            rc = fed_error(FED_EFORMAT, "%s: record %zu has label %d (CIFAR-10 labels are 0..9)", path, i, rec[0]);
            break;
        }
        y[i] = rec[0];
        float *xi = x + i * CIFAR_PIXELS;
        for (int j = 0; j < CIFAR_PIXELS; j++) xi[j] = lut[rec[1 + j]];
    }
    fclose(f);
    return rc;
}

int fed_cifar_read(const char *const *paths, int npaths, fed_dataset *out) {
    if (!out) return fed_error(FED_EINVAL, "fed_cifar_read: NULL output");
    memset(out, 0, sizeof *out);
    if (!paths || npaths <= 0) return fed_error(FED_EINVAL, "fed_cifar_read: no files given");
    size_t total = 0;
    size_t *counts = calloc((size_t)npaths, sizeof *counts);
    if (!counts) return fed_error(FED_ENOMEM, "fed_cifar_read: out of memory");
    int rc = 0;
    for (int i = 0; i < npaths && !rc; i++) {
        if (!paths[i]) rc = fed_error(FED_EINVAL, "fed_cifar_read: path %d is NULL", i);
        else if (!(rc = file_records(paths[i], &counts[i]))) total += counts[i];
        if (!rc && total > CIFAR_MAX_RECORDS)
            rc = fed_error(FED_EFORMAT, "%s: more than %d CIFAR records in all", paths[i], CIFAR_MAX_RECORDS);
    }
    if (!rc && total == 0) rc = fed_error(FED_EFORMAT, "%s: no CIFAR records", paths[0]);
    float *x = NULL;
    int32_t *y = NULL;
    if (!rc) {
        x = malloc(total * CIFAR_PIXELS * sizeof(float));
        y = malloc(total * sizeof(int32_t));
        if (!x || !y) rc = fed_error(FED_ENOMEM, "fed_cifar_read: cannot allocate %zu images", total);
    }
    float lut[256];
    for (int i = 0; i < 256; i++) lut[i] = (float)i / 255.0f;
    size_t base = 0;
    for (int i = 0; i < npaths && !rc; i++) {
        rc = read_file(paths[i], counts[i], x + base * CIFAR_PIXELS, y + base, lut);
        base += counts[i];
    }
    free(counts);
    if (rc) {
        free(x);
        free(y);
        return rc;
    }
    out->n = (int)total;
    out->c = 3;
    out->h = 32;
    out->w = 32;
    out->num_classes = CIFAR_CLASSES;
    out->x = x;
    out->y = y;
    return 0;
}
