/* What the report and the plots read about a run, gathered from the store in
 * one place, and whole-file writes (temp file + rename) so that a failed
 * report or plot never leaves a half-written file behind. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "federate/error.h"
#include "report/chart.h"

/* The stored confusion matrix: a JSON array of k arrays of k counts. */
static int parse_confusion(const char *js, int64_t **out, int *k) {
    *out = NULL;
    *k = 0;
    json_error_t err;
    json_t *a = json_loads(js, 0, &err);
    if (!a) return -1;
    int rc = -1;
    size_t n = json_is_array(a) ? json_array_size(a) : 0;
    if (n == 0 || n > 1000) goto out;
    int64_t *m = calloc(n * n, sizeof *m);
    if (!m) goto out;
    for (size_t i = 0; i < n; i++) {
        json_t *row = json_array_get(a, i);
        if (!json_is_array(row) || json_array_size(row) != n) {
            free(m);
            goto out;
        }
        for (size_t j = 0; j < n; j++) {
            json_t *v = json_array_get(row, j);
            if (!json_is_integer(v) || json_integer_value(v) < 0) {
                free(m);
                goto out;
            }
            m[i * n + j] = (int64_t)json_integer_value(v);
        }
    }
    *out = m;
    *k = (int)n;
    rc = 0;
out:
    json_decref(a);
    return rc;
}

static char *attr(fed_store *s, int64_t id, const char *key) {
    char *v = NULL;
    if (fed_store_run_get_text(s, id, key, &v)) {
        free(v);
        return NULL;
    }
    return v;
}

int run_data_load(fed_store *s, int64_t id, run_data *d) {
    memset(d, 0, sizeof *d);
    int rc = fed_store_get_run(s, id, &d->info);
    if (rc) return rc;
    if ((rc = fed_store_get_rounds(s, id, &d->rounds, &d->nr))) goto fail;
    d->clients = calloc(d->nr ? (size_t)d->nr : 1, sizeof *d->clients);
    d->nclients = calloc(d->nr ? (size_t)d->nr : 1, sizeof *d->nclients);
    if (!d->clients || !d->nclients) {
        rc = fed_error(FED_ENOMEM, "run %lld: out of memory", (long long)id);
        goto fail;
    }
    for (int i = 0; i < d->nr; i++)
        if ((rc = fed_store_get_clients(s, id, d->rounds[i].round, &d->clients[i], &d->nclients[i]))) goto fail;
    fed_config_default(&d->cfg);
    const char *y = d->info.config_yaml;
    /* a config that no longer parses (an older federate's keys) still gets a report */
    d->cfg_ok = y && *y && fed_config_load_string(&d->cfg, y, strlen(y)) == 0;
    if (!d->cfg_ok) fed_config_default(&d->cfg);
    fed_clear_error();
    d->privacy = attr(s, id, "privacy");
    d->budget = attr(s, id, "budget");
    d->error = attr(s, id, "error");
    char *conf = attr(s, id, "confusion");
    if (conf && parse_confusion(conf, &d->confusion, &d->k)) d->confusion = NULL, d->k = 0;
    free(conf);
    fed_clear_error();
    return 0;
fail:
    run_data_free(d);
    return rc;
}

void run_data_free(run_data *d) {
    if (!d) return;
    fed_run_info_free(&d->info);
    if (d->clients)
        for (int i = 0; i < d->nr; i++) free(d->clients[i]);
    free(d->clients);
    free(d->nclients);
    free(d->rounds);
    free(d->privacy);
    free(d->budget);
    free(d->error);
    free(d->confusion);
    memset(d, 0, sizeof *d);
}

int run_data_last_eval(const run_data *d) {
    for (int i = d->nr - 1; i >= 0; i--)
        if (!isnan(d->rounds[i].test_accuracy)) return i;
    return -1;
}

int write_whole_file(const char *path, const void *data, size_t len) {
    if (!path || !*path) return fed_error(FED_EINVAL, "output: empty path");
    size_t pl = strlen(path);
    char *tmp = malloc(pl + 16);
    if (!tmp) return fed_error(FED_ENOMEM, "%s: out of memory", path);
    /* the temp file sits next to the target so the rename stays on one file system */
    snprintf(tmp, pl + 16, "%s.tmp-XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        int e = errno;
        free(tmp);
        return fed_error(FED_EIO, "%s: cannot write: %s", path, strerror(e));
    }
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        int e = errno;
        close(fd);
        unlink(tmp);
        free(tmp);
        return fed_error(FED_EIO, "%s: cannot write: %s", path, strerror(e));
    }
    int ok = (len == 0 || fwrite(data, 1, len, f) == len) && fflush(f) == 0 && fsync(fileno(f)) == 0;
    int e = errno;
    if (fclose(f) != 0 && ok) ok = 0, e = errno;
    if (ok) {
        /* mkstemp makes the file 0600; an output file gets the usual permissions */
        mode_t um = umask(0);
        umask(um);
        chmod(tmp, 0666 & ~um);
        if (rename(tmp, path) != 0) ok = 0, e = errno;
    }
    if (!ok) {
        unlink(tmp);
        free(tmp);
        return fed_error(FED_EIO, "%s: cannot write: %s", path, strerror(e));
    }
    free(tmp);
    return 0;
}
