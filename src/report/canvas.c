/* The two back ends of the report's drawing surface: SVG written as text (the
 * HTML report inlines it, so labels stay selectable text and no ids can clash
 * between charts) and cairo (PNG and SVG files from `federate plot`). */
#include <cairo.h>
#include <math.h>
#include <string.h>
#include "report/chart.h"

/* ---- SVG text -------------------------------------------------------------- */

static void svg_color(FILE *f, const char *attr, uint32_t rgb) {
    if (rgb == RGB_NONE) fprintf(f, " %s=\"none\"", attr);
    else fprintf(f, " %s=\"#%06x\"", attr, rgb & 0xffffffu);
}

static void svg_line(canvas *c, double x1, double y1, double x2, double y2, uint32_t rgb, double w, int dashed) {
    FILE *f = c->ctx;
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke-width=\"%.2g\"", x1, y1, x2, y2, w);
    svg_color(f, "stroke", rgb);
    if (dashed) fprintf(f, " stroke-dasharray=\"3,3\"");
    fprintf(f, "/>\n");
}

static void svg_polyline(canvas *c, const double *xy, int n, uint32_t rgb, double w) {
    FILE *f = c->ctx;
    fprintf(f, "<polyline fill=\"none\" stroke-width=\"%.2g\" stroke-linejoin=\"round\"", w);
    svg_color(f, "stroke", rgb);
    fprintf(f, " points=\"");
    for (int i = 0; i < n; i++) fprintf(f, "%s%.1f,%.1f", i ? " " : "", xy[2 * i], xy[2 * i + 1]);
    fprintf(f, "\"/>\n");
}

static void svg_rect(canvas *c, double x, double y, double w, double h, uint32_t fill, uint32_t stroke) {
    FILE *f = c->ctx;
    fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\"", x, y, w, h);
    svg_color(f, "fill", fill);
    svg_color(f, "stroke", stroke);
    fprintf(f, "/>\n");
}

static void svg_circle(canvas *c, double x, double y, double r, uint32_t fill) {
    FILE *f = c->ctx;
    fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%.1f\"", x, y, r);
    svg_color(f, "fill", fill);
    fprintf(f, "/>\n");
}

static void xml_escape(FILE *f, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&#39;", f); break;
        default:
            /* control characters are not allowed in XML 1.0 */
            if ((unsigned char)*s < 0x20 && *s != '\t' && *s != '\n') fputc('?', f);
            else fputc(*s, f);
        }
    }
}

static void svg_text(canvas *c, double x, double y, const char *s, double size, int anchor, int vertical,
                     uint32_t rgb, int bold) {
    FILE *f = c->ctx;
    const char *a = anchor < 0 ? "start" : anchor > 0 ? "end" : "middle";
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"%.1f\" text-anchor=\"%s\"", x, y, size, a);
    if (bold) fprintf(f, " font-weight=\"bold\"");
    if (vertical) fprintf(f, " transform=\"rotate(-90 %.1f %.1f)\"", x, y);
    svg_color(f, "fill", rgb);
    fputc('>', f);
    xml_escape(f, s);
    fputs("</text>\n", f);
}

void canvas_svg_begin(canvas *c, FILE *f, int width, int height) {
    c->line = svg_line;
    c->polyline = svg_polyline;
    c->rect = svg_rect;
    c->circle = svg_circle;
    c->text = svg_text;
    c->ctx = f;
    fprintf(f,
            "<svg width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
            "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" role=\"img\">\n",
            width, height, width, height);
}

void canvas_svg_end(canvas *c) { fputs("</svg>\n", (FILE *)c->ctx); }

/* ---- cairo ----------------------------------------------------------------- */

static void cr_set(cairo_t *cr, uint32_t rgb) {
    cairo_set_source_rgb(cr, ((rgb >> 16) & 0xff) / 255.0, ((rgb >> 8) & 0xff) / 255.0, (rgb & 0xff) / 255.0);
}

static void cr_line(canvas *c, double x1, double y1, double x2, double y2, uint32_t rgb, double w, int dashed) {
    cairo_t *cr = c->ctx;
    if (rgb == RGB_NONE) return;
    cairo_save(cr);
    cr_set(cr, rgb);
    cairo_set_line_width(cr, w);
    if (dashed) {
        double d[] = {3, 3};
        cairo_set_dash(cr, d, 2, 0);
    }
    cairo_move_to(cr, x1, y1);
    cairo_line_to(cr, x2, y2);
    cairo_stroke(cr);
    cairo_restore(cr);
}

static void cr_polyline(canvas *c, const double *xy, int n, uint32_t rgb, double w) {
    cairo_t *cr = c->ctx;
    if (n < 1 || rgb == RGB_NONE) return;
    cairo_save(cr);
    cr_set(cr, rgb);
    cairo_set_line_width(cr, w);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    cairo_move_to(cr, xy[0], xy[1]);
    for (int i = 1; i < n; i++) cairo_line_to(cr, xy[2 * i], xy[2 * i + 1]);
    cairo_stroke(cr);
    cairo_restore(cr);
}

static void cr_rect(canvas *c, double x, double y, double w, double h, uint32_t fill, uint32_t stroke) {
    cairo_t *cr = c->ctx;
    cairo_save(cr);
    cairo_rectangle(cr, x, y, w, h);
    if (fill != RGB_NONE) {
        cr_set(cr, fill);
        if (stroke != RGB_NONE) cairo_fill_preserve(cr);
        else cairo_fill(cr);
    }
    if (stroke != RGB_NONE) {
        cr_set(cr, stroke);
        cairo_set_line_width(cr, 1);
        cairo_stroke(cr);
    }
    cairo_new_path(cr);
    cairo_restore(cr);
}

static void cr_circle(canvas *c, double x, double y, double r, uint32_t fill) {
    cairo_t *cr = c->ctx;
    cairo_save(cr);
    cr_set(cr, fill);
    cairo_arc(cr, x, y, r, 0, 2 * M_PI);
    cairo_fill(cr);
    cairo_restore(cr);
}

static void cr_text(canvas *c, double x, double y, const char *s, double size, int anchor, int vertical, uint32_t rgb,
                    int bold) {
    cairo_t *cr = c->ctx;
    cairo_save(cr);
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL,
                           bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, size);
    cairo_text_extents_t te;
    cairo_text_extents(cr, s, &te);
    double dx = anchor < 0 ? 0 : anchor > 0 ? -te.x_advance : -te.x_advance / 2;
    cairo_translate(cr, x, y);
    if (vertical) cairo_rotate(cr, -M_PI / 2);
    cairo_move_to(cr, dx, 0);
    cr_set(cr, rgb);
    cairo_show_text(cr, s);
    cairo_restore(cr);
}

void canvas_cairo(canvas *c, void *cairo_ctx) {
    c->line = cr_line;
    c->polyline = cr_polyline;
    c->rect = cr_rect;
    c->circle = cr_circle;
    c->text = cr_text;
    c->ctx = cairo_ctx;
}
