/* `federate plot`: PNG and SVG files drawn with cairo from the store: accuracy
 * and loss per round (runs overlaid), each run's confusion matrix and the
 * distribution of its clients' local accuracy, and privacy against accuracy
 * across runs. Each image is rendered into memory and written whole. */
#include <cairo-svg.h>
#include <cairo.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "federate/error.h"
#include "federate/report.h"
#include "report/chart.h"

#define W 720
#define H 440
#define MAX_RUNS 32

typedef struct membuf {
    unsigned char *p;
    size_t len, cap;
    int failed;
} membuf;

static cairo_status_t mem_write(void *closure, const unsigned char *data, unsigned int n) {
    membuf *m = closure;
    if (m->len + n > m->cap) {
        size_t nc = m->cap ? m->cap * 2 : 65536;
        while (nc < m->len + n) nc *= 2;
        unsigned char *q = realloc(m->p, nc);
        if (!q) {
            m->failed = 1;
            return CAIRO_STATUS_WRITE_ERROR;
        }
        m->p = q;
        m->cap = nc;
    }
    memcpy(m->p + m->len, data, n);
    m->len += n;
    return CAIRO_STATUS_SUCCESS;
}

typedef void (*draw_fn)(canvas *c, double w, double h, const void *arg);

/* Renders draw() as dir/name.png and dir/name.svg. */
static int render(const char *dir, const char *name, int w, int h, draw_fn draw, const void *arg, fed_report_cb cb,
                  void *ctx) {
    char path[4096];
    for (int kind = 0; kind < 2; kind++) {
        membuf m = {0};
        cairo_surface_t *surf = kind == 0 ? cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, h)
                                          : cairo_svg_surface_create_for_stream(mem_write, &m, w, h);
        cairo_t *cr = cairo_create(surf);
        canvas c;
        canvas_cairo(&c, cr);
        draw(&c, w, h, arg);
        cairo_status_t st = cairo_status(cr);
        cairo_destroy(cr);
        if (kind == 0) {
            if (st == CAIRO_STATUS_SUCCESS) st = cairo_surface_write_to_png_stream(surf, mem_write, &m);
            cairo_surface_destroy(surf);
        } else {
            cairo_surface_finish(surf);   /* the SVG is written out here */
            if (st == CAIRO_STATUS_SUCCESS) st = cairo_surface_status(surf);
            cairo_surface_destroy(surf);
        }
        if (st != CAIRO_STATUS_SUCCESS || m.failed) {
            free(m.p);
            return fed_error(m.failed ? FED_ENOMEM : FED_EINTERNAL, "plot %s: cairo: %s", name,
                             m.failed ? "out of memory" : cairo_status_to_string(st));
        }
        snprintf(path, sizeof path, "%s/%s.%s", dir, name, kind == 0 ? "png" : "svg");
        int rc = write_whole_file(path, m.p, m.len);
        free(m.p);
        if (rc) return rc;
        if (cb) cb(ctx, path, 0);
    }
    return 0;
}

typedef struct lines_arg {
    const char *title, *ylabel;
    series s[MAX_RUNS];
    int ns, from_zero;
} lines_arg;

static void draw_lines(canvas *c, double w, double h, const void *arg) {
    const lines_arg *a = arg;
    chart_lines(c, w, h, a->title, "round", a->ylabel, a->s, a->ns, a->from_zero);
}

typedef struct conf_arg {
    char title[160];
    const int64_t *conf;
    int k;
} conf_arg;

static void draw_conf(canvas *c, double w, double h, const void *arg) {
    const conf_arg *a = arg;
    chart_confusion(c, w, h, a->title, a->conf, a->k);
}

typedef struct hist_arg {
    char title[160];
    double *v;
    int n;
} hist_arg;

static void draw_hist(canvas *c, double w, double h, const void *arg) {
    const hist_arg *a = arg;
    chart_histogram(c, w, h, a->title, "local test accuracy (%)", a->v, a->n, 20, 0, 100);
}

typedef struct scatter_arg {
    double x[MAX_RUNS], y[MAX_RUNS];
    const char *labels[MAX_RUNS];
    int n;
} scatter_arg;

static void draw_scatter(canvas *c, double w, double h, const void *arg) {
    const scatter_arg *a = arg;
    chart_scatter(c, w, h, "Privacy vs accuracy", "final epsilon", "final test accuracy (%)", a->x, a->y, a->labels,
                  a->n);
}

int fed_report_plot(fed_store *s, const int64_t *ids, int n, const char *dir, fed_report_cb cb, void *ctx) {
    if (!s || !ids || !dir || !*dir) return fed_error(FED_EINVAL, "plot: NULL store, run ids or directory");
    if (n < 1 || n > MAX_RUNS) return fed_error(FED_EINVAL, "plot: %d runs (expected 1 to %d)", n, MAX_RUNS);
    run_data *d = calloc((size_t)n, sizeof *d);
    char (*names)[96] = calloc((size_t)n, sizeof *names);
    double *buf = NULL;
    int rc = 0, loaded = 0;
    if (!d || !names) {
        rc = fed_error(FED_ENOMEM, "plot: out of memory");
        goto out;
    }
    size_t total = 0;
    for (; loaded < n; loaded++) {
        if ((rc = run_data_load(s, ids[loaded], &d[loaded]))) goto out;
        if (d[loaded].nr == 0) {
            rc = fed_error(FED_ENOTFOUND, "%s: run %lld recorded no rounds: nothing to plot", fed_store_path(s),
                           (long long)ids[loaded]);
            loaded++;
            goto out;
        }
        snprintf(names[loaded], sizeof names[loaded], "%lld %s", (long long)ids[loaded], d[loaded].info.name);
        total += (size_t)d[loaded].nr;
    }
    /* x, accuracy (%) and loss per round of every run, end to end */
    buf = malloc(3 * total * sizeof *buf);
    if (!buf) {
        rc = fed_error(FED_ENOMEM, "plot: out of memory");
        goto out;
    }
    lines_arg acc = {.title = "Test accuracy per round", .ylabel = "test accuracy (%)", .ns = n};
    lines_arg loss = {.title = "Test loss per round", .ylabel = "test loss", .ns = n, .from_zero = 1};
    size_t off = 0;
    for (int j = 0; j < n; j++) {
        double *x = buf + off, *ya = buf + total + off, *yl = buf + 2 * total + off;
        for (int i = 0; i < d[j].nr; i++) {
            x[i] = d[j].rounds[i].round;
            ya[i] = 100 * d[j].rounds[i].test_accuracy;
            yl[i] = d[j].rounds[i].test_loss;
        }
        acc.s[j] = (series){names[j], x, ya, d[j].nr};
        loss.s[j] = (series){names[j], x, yl, d[j].nr};
        off += (size_t)d[j].nr;
    }
    if ((rc = render(dir, "accuracy", W, H, draw_lines, &acc, cb, ctx))) goto out;
    if ((rc = render(dir, "loss", W, H, draw_lines, &loss, cb, ctx))) goto out;

    for (int j = 0; j < n; j++) {
        char name[64];
        conf_arg ca = {.conf = d[j].confusion, .k = d[j].k};
        int le = run_data_last_eval(&d[j]);
        snprintf(ca.title, sizeof ca.title, "Confusion matrix, run %s (round %d)", names[j],
                 le >= 0 ? d[j].rounds[le].round : d[j].rounds[d[j].nr - 1].round);
        snprintf(name, sizeof name, "confusion_%lld", (long long)ids[j]);
        if (!d[j].confusion) {
            if (cb) {
                char note[160];
                snprintf(note, sizeof note, "run %lld has no confusion matrix: %s skipped", (long long)ids[j], name);
                cb(ctx, note, 1);
            }
        } else if ((rc = render(dir, name, 560, 600, draw_conf, &ca, cb, ctx))) {
            goto out;
        }
        hist_arg ha = {0};
        snprintf(name, sizeof name, "client_accuracy_%lld", (long long)ids[j]);
        /* the last round whose clients have a local accuracy */
        int ri = -1;
        for (int i = d[j].nr - 1; i >= 0 && ri < 0; i--)
            for (int k = 0; k < d[j].nclients[i]; k++)
                if (isfinite(d[j].clients[i][k].local_accuracy)) {
                    ri = i;
                    break;
                }
        if (ri < 0) {
            if (cb) {
                char note[160];
                snprintf(note, sizeof note, "run %lld recorded no local accuracy: %s skipped", (long long)ids[j], name);
                cb(ctx, note, 1);
            }
            continue;
        }
        ha.v = malloc((size_t)d[j].nclients[ri] * sizeof *ha.v);
        if (!ha.v) {
            rc = fed_error(FED_ENOMEM, "plot: out of memory");
            goto out;
        }
        for (int k = 0; k < d[j].nclients[ri]; k++) ha.v[ha.n++] = 100 * d[j].clients[ri][k].local_accuracy;
        snprintf(ha.title, sizeof ha.title, "Clients' local accuracy, run %s (round %d)", names[j],
                 d[j].rounds[ri].round);
        rc = render(dir, name, W, H, draw_hist, &ha, cb, ctx);
        free(ha.v);
        if (rc) goto out;
    }

    scatter_arg sa = {0};
    for (int j = 0; j < n; j++) {
        double eps = NAN;
        for (int i = d[j].nr - 1; i >= 0 && isnan(eps); i--) eps = d[j].rounds[i].epsilon;
        int le = run_data_last_eval(&d[j]);
        if (isnan(eps) || le < 0) continue;
        sa.x[sa.n] = eps;
        sa.y[sa.n] = 100 * d[j].rounds[le].test_accuracy;
        sa.labels[sa.n++] = names[j];
    }
    if (sa.n == 0) {
        if (cb) cb(ctx, "no run has differential privacy: privacy_accuracy skipped", 1);
    } else if ((rc = render(dir, "privacy_accuracy", W, H, draw_scatter, &sa, cb, ctx))) {
        goto out;
    }
out:
    if (d)
        for (int j = 0; j < loaded; j++) run_data_free(&d[j]);
    free(d);
    free(names);
    free(buf);
    return rc;
}
