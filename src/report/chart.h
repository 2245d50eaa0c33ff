/* Internal to src/report: a tiny drawing surface with two back ends (cairo for
 * PNG/SVG files, hand-written SVG text for the HTML report, whose charts keep
 * their labels as real text), the charts drawn on it once, the run data they
 * draw, and writing files whole (temp file + rename). */
#ifndef FEDERATE_REPORT_CHART_H
#define FEDERATE_REPORT_CHART_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "federate/config.h"
#include "federate/store.h"

#define RGB_NONE 0xffffffffu

typedef struct canvas canvas;
struct canvas {
    void (*line)(canvas *c, double x1, double y1, double x2, double y2, uint32_t rgb, double width, int dashed);
    void (*polyline)(canvas *c, const double *xy, int n, uint32_t rgb, double width);
    void (*rect)(canvas *c, double x, double y, double w, double h, uint32_t fill, uint32_t stroke);
    void (*circle)(canvas *c, double x, double y, double r, uint32_t fill);
    /* anchor -1 left, 0 centre, 1 right; (x, y) is the baseline; vertical rotates 90 degrees left */
    void (*text)(canvas *c, double x, double y, const char *s, double size, int anchor, int vertical, uint32_t rgb,
                 int bold);
    void *ctx;
};

/* SVG text into f (an <svg> element with width x height user units). */
void canvas_svg_begin(canvas *c, FILE *f, int width, int height);
void canvas_svg_end(canvas *c);
/* cairo: ctx is a cairo_t*. */
void canvas_cairo(canvas *c, void *cairo_ctx);

typedef struct series {
    const char *name;
    const double *x, *y;   /* NAN y: no point */
    int n;
} series;

/* A line chart with one line per series and a legend when there are several. */
void chart_lines(canvas *c, double w, double h, const char *title, const char *xlabel, const char *ylabel,
                 const series *s, int ns, int y_from_zero);
/* Counts in cells, coloured by the share of their row (recall). */
void chart_confusion(canvas *c, double w, double h, const char *title, const int64_t *conf, int k);
/* Histogram of values (NAN skipped) in bins over [lo, hi]. */
void chart_histogram(canvas *c, double w, double h, const char *title, const char *xlabel, const double *v, int n,
                     int bins, double lo, double hi);
/* Labelled points. */
void chart_scatter(canvas *c, double w, double h, const char *title, const char *xlabel, const char *ylabel,
                   const double *x, const double *y, const char *const *labels, int n);
/* Grouped bars: two values per category (e.g. bytes up and down per round). */
void chart_bars2(canvas *c, double w, double h, const char *title, const char *xlabel, const char *ylabel,
                 const double *cat, const double *a, const double *b, int n, const char *aname, const char *bname);

/* Everything the report and the plots need about one run. */
typedef struct run_data {
    fed_run_info info;
    fed_round_metrics *rounds;
    int nr;
    fed_client_metrics **clients;   /* per round index: that round's clients */
    int *nclients;
    fed_config cfg;
    int cfg_ok;                     /* the stored YAML parsed */
    char *privacy;                  /* run attribute or NULL */
    char *budget, *error;
    int64_t *confusion;             /* k*k or NULL */
    int k;
} run_data;

/* FED_ENOTFOUND "no run N" or an error naming what could not be read. */
int run_data_load(fed_store *s, int64_t id, run_data *d);
void run_data_free(run_data *d);
/* The last round with a test accuracy, or -1. */
int run_data_last_eval(const run_data *d);

/* Writes len bytes to path through a temp file in the same directory and a
 * rename, so the path holds the old content or all of the new. */
int write_whole_file(const char *path, const void *data, size_t len);

#endif
