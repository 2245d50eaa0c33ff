/* Per-example augmentation in the order torchvision pipelines use for CIFAR:
 * random crop after padding, random horizontal flip, random rotation (bilinear).
 * Pixels from outside the image take the channel's fill value (the normalized
 * black that torchvision pads with before normalizing, or 0). All three are one
 * inverse mapping, so no scratch buffer. */
#include <math.h>
#include <string.h>
#include "federate/data.h"

/* Largest padding honoured; beyond it every offset already yields an empty image,
 * and the cap keeps 2 * pad + 1 far from overflow. */
#define MAX_PAD (1 << 20)

typedef struct {
    int h, w;
    int pad, oy, ox;   /* crop: out1[y][x] = in[y + oy - pad][x + ox - pad] */
    int flip;          /* flip: out2[y][x] = out1[y][w - 1 - x] */
} geom;

/* Pixel (iy, ix) of the cropped and flipped plane, fill outside it. */
static inline float fetch(const float *plane, const geom *g, int iy, int ix, float fill) {
    if (iy < 0 || iy >= g->h || ix < 0 || ix >= g->w) return fill;
    int y = iy + g->oy - g->pad;
    int x = (g->flip ? g->w - 1 - ix : ix) + g->ox - g->pad;
    if (y < 0 || y >= g->h || x < 0 || x >= g->w) return fill;
    return plane[(size_t)y * g->w + x];
}

/* A coordinate within this of an integer is taken as that integer, so right-angle
 * rotations (where cos is 6e-17, not 0) move pixels exactly instead of blending. */
static double snap(double v) {
    double r = nearbyint(v);
    return fabs(v - r) < 1e-9 ? r : v;
}

static void transform(const float *in, float *out, int c, const geom *g, double deg, const float *fill) {
    size_t plane = (size_t)g->h * g->w;
#define FILL(ch) (fill ? fill[ch] : 0.0f)
    if (deg == 0.0) {
        for (int ch = 0; ch < c; ch++)
            for (int y = 0; y < g->h; y++)
                for (int x = 0; x < g->w; x++)
                    out[ch * plane + (size_t)y * g->w + x] = fetch(in + ch * plane, g, y, x, FILL(ch));
        return;
    }
    /* Inverse map: an output pixel samples the source at the output position rotated
     * by -deg about the center; positive deg turns the image counter-clockwise as
     * displayed (y pointing down), like torchvision's rotate. */
    const double t = deg * (3.14159265358979323846 / 180.0), cs = cos(t), sn = sin(t);
    const double cy = (g->h - 1) * 0.5, cx = (g->w - 1) * 0.5;
    for (int y = 0; y < g->h; y++) {
        for (int x = 0; x < g->w; x++) {
            double dx = x - cx, dy = y - cy;
            double sx = snap(cx + cs * dx - sn * dy), sy = snap(cy + sn * dx + cs * dy);
            double fx = floor(sx), fy = floor(sy);
            /* Samples more than a pixel outside the plane read only the fill. */
            if (fx < -1 || fx > g->w || fy < -1 || fy > g->h) {
                for (int ch = 0; ch < c; ch++) out[ch * plane + (size_t)y * g->w + x] = FILL(ch);
                continue;
            }
            int x0 = (int)fx, y0 = (int)fy;
            float ax = (float)(sx - fx), ay = (float)(sy - fy);
            for (int ch = 0; ch < c; ch++) {
                const float *p = in + ch * plane;
                float f = FILL(ch);
                float top = (1 - ax) * fetch(p, g, y0, x0, f) + ax * fetch(p, g, y0, x0 + 1, f);
                float bot = (1 - ax) * fetch(p, g, y0 + 1, x0, f) + ax * fetch(p, g, y0 + 1, x0 + 1, f);
                out[ch * plane + (size_t)y * g->w + x] = (1 - ay) * top + ay * bot;
            }
        }
    }
#undef FILL
}

void fed_augment_rotate(const float *in, float *out, int c, int h, int w, float deg) {
    if (!in || !out || c <= 0 || h <= 0 || w <= 0) return;
    geom g = {h, w, 0, 0, 0, 0};
    transform(in, out, c, &g, isfinite(deg) ? deg : 0.0, NULL);
}

void fed_augment_apply(const fed_augment *a, const float *in, float *out, int c, int h, int w, fed_rng *r) {
    if (!in || !out || c <= 0 || h <= 0 || w <= 0) return;
    size_t n = (size_t)c * h * w;
    int pad = a ? a->crop_pad : 0;
    int hflip = a ? a->hflip : 0;
    /* !(x > 0) also turns NaN off. */
    float deg = a && a->rotate_deg > 0 && isfinite(a->rotate_deg) ? a->rotate_deg : 0.0f;
    if (pad < 0) pad = 0;
    if (pad > MAX_PAD) pad = MAX_PAD;
    if (!r || (!pad && !hflip && deg == 0.0f)) {
        memcpy(out, in, n * sizeof(float));
        return;
    }
    /* Draws in a fixed order, only for the enabled operations: crop offsets (y, x),
     * flip coin, angle. The same stream address gives the same augmentation. */
    geom g = {h, w, pad, 0, 0, 0};
    if (pad) {
        g.oy = (int)fed_rng_below(r, (uint32_t)(2 * pad + 1));
        g.ox = (int)fed_rng_below(r, (uint32_t)(2 * pad + 1));
    }
    if (hflip) g.flip = fed_rng_uniformf(r) < 0.5f;
    double angle = 0.0;
    if (deg > 0.0f) angle = (2.0 * fed_rng_uniform(r) - 1.0) * deg;
    transform(in, out, c, &g, angle, a ? a->fill : NULL);
}
