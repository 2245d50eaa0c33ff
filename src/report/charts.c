/* The report's charts, drawn once on the canvas interface: line charts with
 * "nice" ticks (steps of 1, 2 or 5 times a power of ten), a confusion-matrix
 * heatmap, a histogram, a labelled scatter plot and grouped bars. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "report/chart.h"

#define INK 0x222222u
#define GRID 0xe0e0e0u
#define AXIS 0x555555u

static const uint32_t palette[] = {0x1f77b4, 0xff7f0e, 0x2ca02c, 0xd62728, 0x9467bd,
                                   0x8c564b, 0xe377c2, 0x7f7f7f, 0xbcbd22, 0x17becf};
#define NPAL (sizeof palette / sizeof *palette)

typedef struct frame {
    double x0, y0, x1, y1;    /* plot area in pixels (y0 top) */
    double lo_x, hi_x, lo_y, hi_y;
} frame;

static double px(const frame *f, double x) { return f->x0 + (x - f->lo_x) / (f->hi_x - f->lo_x) * (f->x1 - f->x0); }
static double py(const frame *f, double y) { return f->y1 - (y - f->lo_y) / (f->hi_y - f->lo_y) * (f->y1 - f->y0); }

static double nice_step(double range, int target) {
    if (!(range > 0) || !isfinite(range)) return 1;
    double raw = range / target, p = pow(10, floor(log10(raw))), m = raw / p;
    return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

/* Widens [lo, hi] to whole steps (and away from a zero width). */
static void nice_range(double *lo, double *hi, int target, double *step) {
    if (!isfinite(*lo) || !isfinite(*hi)) *lo = 0, *hi = 1;
    if (*hi - *lo < 1e-12) {
        double pad = fabs(*lo) > 0 ? fabs(*lo) * 0.1 : 1;
        *lo -= pad;
        *hi += pad;
    }
    *step = nice_step(*hi - *lo, target);
    *lo = floor(*lo / *step + 1e-9) * *step;
    *hi = ceil(*hi / *step - 1e-9) * *step;
}

/* A tick label with as few digits as the step needs, and k/M/G for big numbers. */
static void tick_label(char *buf, size_t cap, double v, double step) {
    if (fabs(v) < step * 1e-6) v = 0;
    double a = fabs(v);
    if (a >= 1e9 && step >= 1e8) snprintf(buf, cap, "%gG", v / 1e9);
    else if (a >= 1e6 && step >= 1e5) snprintf(buf, cap, "%gM", v / 1e6);
    else if (a >= 1e4 && step >= 1e3) snprintf(buf, cap, "%gk", v / 1e3);
    else {
        int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
        if (dec > 6) dec = 6;
        snprintf(buf, cap, "%.*f", dec, v);
    }
}

static void title_and_labels(canvas *c, double w, double h, const frame *f, const char *title, const char *xl,
                             const char *yl) {
    c->rect(c, 0, 0, w, h, 0xffffff, RGB_NONE);
    if (title) c->text(c, w / 2, 22, title, 15, 0, 0, INK, 1);
    if (xl) c->text(c, (f->x0 + f->x1) / 2, h - 10, xl, 12, 0, 0, INK, 0);
    if (yl) c->text(c, 16, (f->y0 + f->y1) / 2, yl, 12, 0, 1, INK, 0);
}

/* Grid, axes and tick labels; integer_x puts x ticks on whole numbers only. */
static void axes(canvas *c, frame *f, double xstep, double ystep, int integer_x) {
    char buf[32];
    for (double y = f->lo_y; y <= f->hi_y + ystep * 1e-6; y += ystep) {
        double yy = py(f, y);
        c->line(c, f->x0, yy, f->x1, yy, GRID, 1, 0);
        tick_label(buf, sizeof buf, y, ystep);
        c->text(c, f->x0 - 6, yy + 4, buf, 11, 1, 0, AXIS, 0);
    }
    if (integer_x && xstep < 1) xstep = 1;
    for (double x = ceil(f->lo_x / xstep - 1e-9) * xstep; x <= f->hi_x + xstep * 1e-6; x += xstep) {
        double xx = px(f, x);
        c->line(c, xx, f->y1, xx, f->y1 + 4, AXIS, 1, 0);
        tick_label(buf, sizeof buf, x, xstep);
        c->text(c, xx, f->y1 + 17, buf, 11, 0, 0, AXIS, 0);
    }
    c->line(c, f->x0, f->y1, f->x1, f->y1, AXIS, 1, 0);
    c->line(c, f->x0, f->y0, f->x0, f->y1, AXIS, 1, 0);
}

/* Bottom right, or top right when the data end low (a falling loss curve). */
static void legend(canvas *c, const frame *f, const char *const *names, int n, int markers_only, int top) {
    double lh = 16, wmax = 0;
    for (int i = 0; i < n; i++) {
        double wl = 6.5 * (double)strlen(names[i]);
        if (wl > wmax) wmax = wl;
    }
    double bw = wmax + 36, bh = lh * n + 8;
    if (bw > f->x1 - f->x0) bw = f->x1 - f->x0;
    double bx = f->x1 - bw - 6, by = top ? f->y0 + 6 : f->y1 - bh - 6;
    c->rect(c, bx, by, bw, bh, 0xffffff, 0xbbbbbb);
    for (int i = 0; i < n; i++) {
        double yy = by + 4 + lh * i + lh / 2;
        uint32_t col = palette[(size_t)i % NPAL];
        if (markers_only) c->circle(c, bx + 14, yy, 4, col);
        else c->line(c, bx + 6, yy, bx + 24, yy, col, 2.5, 0);
        c->text(c, bx + 30, yy + 4, names[i], 11, -1, 0, INK, 0);
    }
}

static frame make_frame(double w, double h) {
    frame f = {.x0 = 70, .y0 = 40, .x1 = w - 20, .y1 = h - 50};
    return f;
}

void chart_lines(canvas *c, double w, double h, const char *title, const char *xlabel, const char *ylabel,
                 const series *s, int ns, int y_from_zero) {
    frame f = make_frame(w, h);
    double lx = INFINITY, hx = -INFINITY, ly = INFINITY, hy = -INFINITY;
    for (int k = 0; k < ns; k++)
        for (int i = 0; i < s[k].n; i++) {
            if (!isfinite(s[k].y[i])) continue;
            lx = fmin(lx, s[k].x[i]);
            hx = fmax(hx, s[k].x[i]);
            ly = fmin(ly, s[k].y[i]);
            hy = fmax(hy, s[k].y[i]);
        }
    title_and_labels(c, w, h, &f, title, xlabel, ylabel);
    if (!isfinite(lx)) {
        c->text(c, w / 2, h / 2, "no data", 13, 0, 0, AXIS, 0);
        return;
    }
    if (y_from_zero && ly > 0) ly = 0;
    double xs, ys;
    /* rounds span exactly their range; ticks fall on whole steps inside it */
    if (hx - lx < 1) hx = lx + 1;
    xs = nice_step(hx - lx, 8);
    nice_range(&ly, &hy, 5, &ys);
    f.lo_x = lx, f.hi_x = hx, f.lo_y = ly, f.hi_y = hy;
    axes(c, &f, xs, ys, 1);
    for (int k = 0; k < ns; k++) {
        uint32_t col = palette[(size_t)k % NPAL];
        double xy[2 * 512];
        int m = 0;
        /* a NaN breaks the line: draw each finite run separately */
        for (int i = 0; i <= s[k].n; i++) {
            int ok = i < s[k].n && isfinite(s[k].y[i]);
            if (ok && m < 512) {
                xy[2 * m] = px(&f, s[k].x[i]);
                xy[2 * m + 1] = py(&f, s[k].y[i]);
                m++;
            }
            if ((!ok || m == 512) && m > 0) {
                c->polyline(c, xy, m, col, 2);
                if (m <= 40)
                    for (int j = 0; j < m; j++) c->circle(c, xy[2 * j], xy[2 * j + 1], 2.5, col);
                if (m == 512 && ok) {   /* continue from the last point */
                    xy[0] = xy[2 * 511], xy[1] = xy[2 * 511 + 1];
                    m = 1;
                } else {
                    m = 0;
                }
            }
        }
    }
    if (ns > 1) {
        const char *names[32];
        int n = ns < 32 ? ns : 32, low = 0, high = 0;
        for (int k = 0; k < n; k++) {
            names[k] = s[k].name ? s[k].name : "";
            for (int i = s[k].n - 1; i >= 0; i--)
                if (isfinite(s[k].y[i])) {
                    if (py(&f, s[k].y[i]) > (f.y0 + f.y1) / 2) low++;
                    else high++;
                    break;
                }
        }
        legend(c, &f, names, n, 0, low > high);
    }
}

/* White to a deep blue. */
static uint32_t blues(double t) {
    if (!(t >= 0)) t = 0;
    if (t > 1) t = 1;
    int r = (int)lround(247 + (8 - 247) * t), g = (int)lround(251 + (48 - 251) * t), b = (int)lround(255 + (107 - 255) * t);
    return (uint32_t)(r << 16 | g << 8 | b);
}

void chart_confusion(canvas *c, double w, double h, const char *title, const int64_t *conf, int k) {
    c->rect(c, 0, 0, w, h, 0xffffff, RGB_NONE);
    if (title) c->text(c, w / 2, 22, title, 15, 0, 0, INK, 1);
    if (!conf || k <= 0) {
        c->text(c, w / 2, h / 2, "no confusion matrix recorded", 13, 0, 0, AXIS, 0);
        return;
    }
    double top = 56, left = 70, size = fmin(w - left - 20, h - top - 50), cell = size / k;
    double fs = fmin(11, cell * 0.32);
    char buf[32];
    for (int i = 0; i < k; i++) {
        int64_t row = 0;
        for (int j = 0; j < k; j++) row += conf[(size_t)i * k + j];
        for (int j = 0; j < k; j++) {
            int64_t v = conf[(size_t)i * k + j];
            double t = row > 0 ? (double)v / (double)row : 0;
            double x = left + j * cell, y = top + i * cell;
            c->rect(c, x, y, cell, cell, blues(t), 0xffffff);
            if (fs >= 5) {
                snprintf(buf, sizeof buf, "%lld", (long long)v);
                c->text(c, x + cell / 2, y + cell / 2 + fs * 0.35, buf, fs, 0, 0, t > 0.5 ? 0xffffff : INK, 0);
            }
        }
    }
    double lfs = fmin(11, cell * 0.6);
    for (int i = 0; i < k; i++) {
        snprintf(buf, sizeof buf, "%d", i);
        c->text(c, left - 5, top + i * cell + cell / 2 + lfs * 0.35, buf, lfs, 1, 0, AXIS, 0);
        c->text(c, left + i * cell + cell / 2, top - 5, buf, lfs, 0, 0, AXIS, 0);
    }
    c->text(c, left + size / 2, top + size + 22, "predicted label (columns); colour: share of the row", 12, 0, 0, INK, 0);
    c->text(c, 30, top + size / 2, "true label", 12, 0, 1, INK, 0);
}

void chart_histogram(canvas *c, double w, double h, const char *title, const char *xlabel, const double *v, int n,
                     int bins, double lo, double hi) {
    frame f = make_frame(w, h);
    title_and_labels(c, w, h, &f, title, xlabel, "clients");
    int cnt[256] = {0}, any = 0;
    if (bins > 256) bins = 256;
    if (bins < 1) bins = 1;
    if (!(hi > lo)) hi = lo + 1;
    for (int i = 0; i < n; i++) {
        if (!isfinite(v[i])) continue;
        int b = (int)floor((v[i] - lo) / (hi - lo) * bins);
        if (b < 0) b = 0;
        if (b >= bins) b = bins - 1;
        cnt[b]++;
        any = 1;
    }
    if (!any) {
        c->text(c, w / 2, h / 2, "no data", 13, 0, 0, AXIS, 0);
        return;
    }
    int mx = 0;
    for (int b = 0; b < bins; b++)
        if (cnt[b] > mx) mx = cnt[b];
    double ly = 0, hy = mx, ys, xs;
    nice_range(&ly, &hy, 5, &ys);
    if (ys < 1) {
        ys = 1;
        hy = ceil(hy);
    }
    f.lo_x = lo, f.hi_x = hi, f.lo_y = ly, f.hi_y = hy;
    xs = nice_step(hi - lo, 8);
    axes(c, &f, xs, ys, 0);
    for (int b = 0; b < bins; b++) {
        if (!cnt[b]) continue;
        double a = lo + (hi - lo) * b / bins, z = lo + (hi - lo) * (b + 1) / bins;
        c->rect(c, px(&f, a), py(&f, cnt[b]), px(&f, z) - px(&f, a), py(&f, 0) - py(&f, cnt[b]), palette[0], 0xffffff);
    }
}

void chart_scatter(canvas *c, double w, double h, const char *title, const char *xlabel, const char *ylabel,
                   const double *x, const double *y, const char *const *labels, int n) {
    frame f = make_frame(w, h);
    title_and_labels(c, w, h, &f, title, xlabel, ylabel);
    double lx = INFINITY, hx = -INFINITY, ly = INFINITY, hy = -INFINITY;
    for (int i = 0; i < n; i++) {
        if (!isfinite(x[i]) || !isfinite(y[i])) continue;
        lx = fmin(lx, x[i]), hx = fmax(hx, x[i]), ly = fmin(ly, y[i]), hy = fmax(hy, y[i]);
    }
    if (!isfinite(lx)) {
        c->text(c, w / 2, h / 2, "no data", 13, 0, 0, AXIS, 0);
        return;
    }
    if (lx > 0) lx = 0;
    double xs, ys;
    nice_range(&lx, &hx, 6, &xs);
    nice_range(&ly, &hy, 5, &ys);
    f.lo_x = lx, f.hi_x = hx, f.lo_y = ly, f.hi_y = hy;
    axes(c, &f, xs, ys, 0);
    for (int i = 0; i < n; i++) {
        if (!isfinite(x[i]) || !isfinite(y[i])) continue;
        c->circle(c, px(&f, x[i]), py(&f, y[i]), 5, palette[(size_t)i % NPAL]);
    }
    const char *names[32];
    int m = n < 32 ? n : 32;
    for (int i = 0; i < m; i++) names[i] = labels && labels[i] ? labels[i] : "";
    legend(c, &f, names, m, 1, 0);
}

void chart_bars2(canvas *c, double w, double h, const char *title, const char *xlabel, const char *ylabel,
                 const double *cat, const double *a, const double *b, int n, const char *aname, const char *bname) {
    frame f = make_frame(w, h);
    title_and_labels(c, w, h, &f, title, xlabel, ylabel);
    if (n <= 0) {
        c->text(c, w / 2, h / 2, "no data", 13, 0, 0, AXIS, 0);
        return;
    }
    double hy = 0, ly = 0, ys, xs;
    for (int i = 0; i < n; i++) hy = fmax(hy, fmax(a[i], b[i]));
    nice_range(&ly, &hy, 5, &ys);
    double lx = cat[0] - 0.5, hx = cat[n - 1] + 0.5;
    f.lo_x = lx, f.hi_x = hx, f.lo_y = ly, f.hi_y = hy;
    xs = fmax(1, nice_step(hx - lx, 10));
    /* ticks on whole categories */
    char buf[32];
    for (double y = ly; y <= hy + ys * 1e-6; y += ys) {
        double yy = py(&f, y);
        c->line(c, f.x0, yy, f.x1, yy, GRID, 1, 0);
        tick_label(buf, sizeof buf, y, ys);
        c->text(c, f.x0 - 6, yy + 4, buf, 11, 1, 0, AXIS, 0);
    }
    for (double x = ceil(cat[0] / xs) * xs; x <= cat[n - 1] + 1e-9; x += xs) {
        snprintf(buf, sizeof buf, "%.0f", x);
        c->text(c, px(&f, x), f.y1 + 17, buf, 11, 0, 0, AXIS, 0);
    }
    c->line(c, f.x0, f.y1, f.x1, f.y1, AXIS, 1, 0);
    c->line(c, f.x0, f.y0, f.x0, f.y1, AXIS, 1, 0);
    double bw = (px(&f, 1) - px(&f, 0)) * 0.4;
    for (int i = 0; i < n; i++) {
        double x = px(&f, cat[i]);
        c->rect(c, x - bw, py(&f, a[i]), bw, py(&f, 0) - py(&f, a[i]), palette[0], RGB_NONE);
        c->rect(c, x, py(&f, b[i]), bw, py(&f, 0) - py(&f, b[i]), palette[1], RGB_NONE);
    }
    const char *names[2] = {aname, bname};
    legend(c, &f, names, 2, 0, 0);
}
