/* 5x5 convolutions (stride 1, padding 2) by Winograd's minimal filtering F(2x2, 5x5)
 * (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR 2016):
 * every 2x2 output tile comes from a 6x6 input tile through 36 elementwise products in
 * a transformed domain instead of 100 multiply-adds, and summed over input channels
 * those products are 36 independent GEMMs [out x in] x [in x tiles]. The backward pass
 * stays in the same domain (the forward is linear in both the weights and the input):
 *   forward   Y_t = A^T [ U (.) V_t ] A,      U = G g G^T,  V_t = B^T d_t B
 *   dweights  dg  = G^T [ sum_t M_t (.) V_t ] G,            M_t = A dY_t A^T
 *   dinput    dd_t = B [ U (.) M_t ] B^T, overlap-added over the tiles,
 * so all three products cost 36 GEMMs each, 2.8x fewer multiplies than im2col. The
 * GEMMs are wino_gemm.c's, which read the operands in place.
 * The transforms use the interpolation points 0, 1, -1, 2, -2 and infinity (the
 * Toom-Cook construction; tests/test_nn_winograd.c checks them against im2col).
 *
 * Layouts, per chunk of examples with T tiles in all (t = example * tiles + tile):
 * V and dV as [channel][36][T], the GEMM outputs M as [out channel][36][T] (each of the
 * 36 GEMMs reads and writes rows 36 T apart), U and dU as [36][out][in]. Each transform
 * is two passes of small constant matrices over whole rows of T values, so the compiler
 * vectorizes them across tiles. */
#include <string.h>
#include "nn_internal.h"
#include "simd.h"

#define WA 6   /* tile side: 2 + 5 - 1 */
#define WN 36  /* WA * WA */

/* B^T (6x6), A^T (2x6), G (6x5) for points 0, 1, -1, 2, -2, infinity */
static const float BT[WA * WA] = {
    1.0f, 0.0f,         -1.25f,        0.0f,         0.25f,        0.0f,
    0.0f, 2.0f / 3,     2.0f / 3,      -1.0f / 6,    -1.0f / 6,    0.0f,
    0.0f, -2.0f / 3,    2.0f / 3,      1.0f / 6,     -1.0f / 6,    0.0f,
    0.0f, -1.0f / 12,   -1.0f / 24,    1.0f / 12,    1.0f / 24,    0.0f,
    0.0f, 1.0f / 12,    -1.0f / 24,    -1.0f / 12,   1.0f / 24,    0.0f,
    0.0f, 4.0f,         0.0f,          -5.0f,        0.0f,         1.0f,
};
static const float AT[2 * WA] = {
    1.0f, 1.0f, 1.0f, 1.0f, 1.0f, 0.0f,
    0.0f, 1.0f, -1.0f, 2.0f, -2.0f, 1.0f,
};
static const float G[WA * 5] = {
    1.0f, 0.0f, 0.0f, 0.0f, 0.0f,
    1.0f, 1.0f, 1.0f, 1.0f, 1.0f,
    1.0f, -1.0f, 1.0f, -1.0f, 1.0f,
    1.0f, 2.0f, 4.0f, 8.0f, 16.0f,
    1.0f, -2.0f, 4.0f, -8.0f, 16.0f,
    0.0f, 0.0f, 0.0f, 0.0f, 1.0f,
};

/* out[r * ostride + k] = sum_c coef[r * cs + c * ct] in[c * istride + k] for r < nr,
 * c < nc, k < len: a small constant matrix (or its transpose, through the strides cs,
 * ct) applied to nc rows of len values. Zero coefficients are skipped. */
static void lin(float *restrict out, size_t ostride, const float *restrict in, size_t istride, const float *coef,
                int cs, int ct, int nr, int nc, size_t len) {
    enum { B = 16 };   /* one vector register of accumulators per block of values */
    for (int r = 0; r < nr; r++) {
        int idx[WA];
        float wv[WA];
        int nz = 0;
        for (int c = 0; c < nc; c++) {
            float w = coef[r * cs + c * ct];
            if (w != 0.0f) idx[nz] = c, wv[nz++] = w;
        }
        float *restrict o = out + (size_t)r * ostride;
        size_t k = 0;
        /* each output written once, its terms summed in registers in coefficient order */
        for (; k + B <= len; k += B) {
            float acc[B] = {0};
            for (int j = 0; j < nz; j++) {
                const float *restrict sp = in + (size_t)idx[j] * istride + k;
                float w = wv[j];
                for (int q = 0; q < B; q++) acc[q] += w * sp[q];
            }
            for (int q = 0; q < B; q++) o[k + q] = acc[q];
        }
        for (; k < len; k++) {
            float acc = 0;
            for (int j = 0; j < nz; j++) acc += wv[j] * in[(size_t)idx[j] * istride + k];
            o[k] = acc;
        }
    }
}

/* A 6x6 transform X -> P X Q^T of 36 rows of len values (X[a][b] at (a * 6 + b) * len):
 * pass 1 over the first index into z, pass 2 over the second into out. P and Q are
 * given with their strides (P[i][a] = p[i * ps + a * pt]). */
static void t2d(float *restrict out, const float *restrict x, float *restrict z, const float *p, int ps, int pt,
                int pr, int pc, const float *q, int qs, int qt, int qr, int qc, size_t len) {
    /* z[i][b] = sum_a P[i][a] x[a][b]: rows of qc * len values */
    lin(z, (size_t)qc * len, x, (size_t)qc * len, p, ps, pt, pr, pc, (size_t)qc * len);
    for (int i = 0; i < pr; i++)
        lin(out + (size_t)i * qr * len, len, z + (size_t)i * qc * len, len, q, qs, qt, qr, qc, len);
}

int nn_wino_eligible(const layer *l) {
    return l->kind == L_CONV && l->k == 5 && l->stride == 1 && l->pad == 2 && l->ish.c >= 8 && l->osh.c >= 8 &&
           l->osh.h == l->ish.h && l->osh.w == l->ish.w;
}

static size_t tiles_of(const layer *l) { return (size_t)((l->osh.h + 1) / 2) * ((l->osh.w + 1) / 2); }

int nn_wino_chunk(const layer *l) {
    /* about 500 tiles per GEMM: wide enough for the kernel, small enough to stay in cache */
    size_t c = 512 / tiles_of(l);
    return c < 1 ? 1 : (int)c;
}

size_t nn_wino_keep_floats(const layer *l) { return tiles_of(l) * WN * (size_t)l->ish.c; }

size_t nn_wino_u_floats(const layer *l) { return (size_t)WN * l->osh.c * l->ish.c; }

/* An image channel with the padding (2 on each side, and up to the last tile's
 * edge) around it: PH x PW with PH = 2 TY + 4, PW = 2 TX + 4. */
static int pad_h(const layer *l) { return 2 * ((l->osh.h + 1) / 2) + 4; }
static int pad_w(const layer *l) { return 2 * ((l->osh.w + 1) / 2) + 4; }

/* A worker's scratch: V (when not kept), a gathered tile set and its half-transform,
 * M, dV and dU. M's room also holds the weight transforms' temporaries (55 values per
 * filter) and dV's the weight gradient before it is transposed (25 per filter). */
typedef struct wscr { float *v, *x, *z, *mo, *dv, *du, *pad; } wscr;

static size_t max_sz(size_t a, size_t b) { return a > b ? a : b; }

static size_t scratch_parts(const layer *l, size_t part[6]) {
    size_t T = (size_t)nn_wino_chunk(l) * tiles_of(l), C = (size_t)l->ish.c, M = (size_t)l->osh.c;
    part[0] = C * WN * T;
    part[1] = WN * T;
    part[2] = WN * T;
    part[3] = max_sz(M * WN * T, 55 * M * C);
    part[4] = max_sz(C * WN * T, 25 * M * C);
    part[5] = nn_wino_u_floats(l) + (size_t)pad_h(l) * pad_w(l);   /* dU, then one padded channel */
    return part[0] + part[1] + part[2] + part[3] + part[4] + part[5];
}

size_t nn_wino_scratch_floats(const layer *l) {
    size_t part[6];
    return scratch_parts(l, part);
}

static wscr scratch(const fed_model *m, const layer *l, int worker) {
    size_t part[6];
    scratch_parts(l, part);
    float *s = m->ws.wino_s[worker];
    wscr w;
    w.v = s;
    w.x = w.v + part[0];
    w.z = w.x + part[1];
    w.mo = w.z + part[2];
    w.dv = w.mo + part[3];
    w.du = w.dv + part[4];
    w.pad = w.du + nn_wino_u_floats(l);
    return w;
}

/* U = G g G^T for every (out, in) pair, as [36][out][in]. */
static void weights_to_u(const fed_model *m, const layer *l, float *u, float *tmp) {
    size_t MC = (size_t)l->osh.c * l->ish.c;
    const float *w = m->params + l->w_off;   /* [out][in][5][5] */
    float *g = tmp, *z = tmp + 25 * MC;      /* g as [a][b][oc], z [i][b][oc] */
    for (int ab = 0; ab < 25; ab++)   /* written in order: 25 strided write streams thrash the cache */
        for (size_t oc = 0; oc < MC; oc++) g[(size_t)ab * MC + oc] = w[oc * 25 + (size_t)ab];
    t2d(u, g, z, G, 5, 1, WA, 5, G, 5, 1, WA, 5, MC);
}

/* Gathers every other pixel of a padded row (a tile row's pixel (a, b) for each tile
 * column) and scatter-adds the reverse. Inlined with the tile count as a constant for
 * the cnn's 14x14 and 16x16 maps, so the loops vectorize (with an unknown short trip
 * count the compiler keeps them scalar). */
static inline __attribute__((always_inline)) void gather2(float *restrict dst, const float *restrict src, int n) {
    for (int t = 0; t < n; t++) dst[t] = src[2 * t];
}
static inline __attribute__((always_inline)) void scatter2(float *restrict dst, const float *restrict src, int n) {
    for (int t = 0; t < n; t++) dst[2 * t] += src[t];
}
static void gather_row(float *dst, const float *src, int n) {
    if (n == 7) gather2(dst, src, 7);
    else if (n == 8) gather2(dst, src, 8);
    else gather2(dst, src, n);
}
static void scatter_row(float *dst, const float *src, int n) {
    if (n == 7) scatter2(dst, src, 7);
    else if (n == 8) scatter2(dst, src, 8);
    else scatter2(dst, src, n);
}

/* The input tiles of examples [i0, i0 + nb) transformed: v as [in][36][T]. pad holds
 * one padded channel. */
static void input_to_v(const fed_model *m, const layer *l, size_t i0, int nb, float *v, float *x6, float *z,
                       float *pad) {
    const float *x = nn_act(m, l->in);
    int C = l->ish.c, H = l->ish.h, W = l->ish.w, TY = (l->osh.h + 1) / 2, TX = (l->osh.w + 1) / 2;
    int PH = pad_h(l), PW = pad_w(l);
    size_t tiles = (size_t)TY * TX, T = (size_t)nb * tiles, isz = shape_size(l->ish);
    memset(pad, 0, (size_t)PH * PW * sizeof(float));   /* the border stays zero */
    for (int c = 0; c < C; c++) {
        /* x6[a][b][t]: the tile's input pixel (a, b), zero outside the image */
        for (int e = 0; e < nb; e++) {
            const float *xc = x + (i0 + (size_t)e) * isz + (size_t)c * H * W;
            for (int y = 0; y < H; y++) memcpy(pad + (size_t)(y + 2) * PW + 2, xc + (size_t)y * W, W * sizeof(float));
            for (int a = 0; a < WA; a++)
                for (int b = 0; b < WA; b++) {
                    float *dst = x6 + (size_t)(a * WA + b) * T + (size_t)e * tiles;
                    for (int ty = 0; ty < TY; ty++)
                        gather_row(dst + (size_t)ty * TX, pad + (size_t)(2 * ty + a) * PW + b, TX);
                }
        }
        /* B^T X B */
        t2d(v + (size_t)c * WN * T, x6, z, BT, WA, 1, WA, WA, BT, WA, 1, WA, WA, T);
    }
}

/* The sum of a plane of n values, 16 lanes at a time (a serial sum waits on each add). */
FUSE_MADD static float plane_sum(const float *r, int n) {
    v16 acc = {0};
    int j = 0;
    for (; j + 16 <= n; j += 16) {
        v16 v;
        LD16(v, r + j);
        acc += v;
    }
    float s = 0;
    HSUM16(s, acc);
    for (; j < n; j++) s += r[j];
    return s;
}

typedef struct wctx { fed_model *m; const layer *l; int tasks; int li; } wctx;

static void fwd_task(void *vctx, size_t task, int worker) {
    wctx *ctx = vctx;
    fed_model *m = ctx->m;
    const layer *l = ctx->l;
    size_t lo, hi;
    nn_split((size_t)m->n, (size_t)ctx->tasks, task, &lo, &hi);
    int C = l->ish.c, M = l->osh.c, OH = l->osh.h, OW = l->osh.w, TX = (OW + 1) / 2, TY = (OH + 1) / 2;
    size_t tiles = tiles_of(l), osz = shape_size(l->osh), chunk = (size_t)nn_wino_chunk(l);
    const float *u = m->ws.wino_u[ctx->li];
    const float *bias = l->b_off != SIZE_MAX ? m->params + l->b_off : NULL;
    float *y = m->ws.act[l->out], *keep = m->training ? m->ws.wino_v[ctx->li] : NULL;
    wscr s = scratch(m, l, worker);
    for (size_t i0 = lo; i0 < hi; i0 += chunk) {
        int nb = (int)(hi - i0 < chunk ? hi - i0 : chunk);
        size_t T = (size_t)nb * tiles;
        float *v = keep ? keep + i0 * nn_wino_keep_floats(l) : s.v;
        input_to_v(m, l, i0, nb, v, s.x, s.z, s.pad);
        for (int xi = 0; xi < WN; xi++)
            nn_gemm_ab(M, (int)T, C, u + (size_t)xi * M * C, (size_t)C, 1, v + (size_t)xi * T, WN * T,
                       s.mo + (size_t)xi * T, WN * T);
        for (int o = 0; o < M; o++) {
            /* A^T M A: the 2x2 outputs of every tile, as y2[r][s][t] in s.x */
            float *y2 = s.x;
            t2d(y2, s.mo + (size_t)o * WN * T, s.z, AT, WA, 1, 2, WA, AT, WA, 1, 2, WA, T);
            float b = bias ? bias[o] : 0.0f;
            for (int e = 0; e < nb; e++) {
                float *yo = y + (i0 + (size_t)e) * osz + (size_t)o * OH * OW;
                for (int r = 0; r < 2; r++)
                    for (int sx = 0; sx < 2; sx++) {
                        const float *src = y2 + (size_t)(r * 2 + sx) * T + (size_t)e * tiles;
                        for (int ty = 0; ty < TY; ty++) {
                            int oy = 2 * ty + r;
                            if (oy >= OH) break;
                            float *dst = yo + (size_t)oy * OW;
                            const float *sr = src + (size_t)ty * TX;
                            for (int tx = 0; tx < TX; tx++) {
                                int ox = 2 * tx + sx;
                                if (ox < OW) dst[ox] = sr[tx] + b;
                            }
                        }
                    }
            }
        }
    }
}

void nn_wino_forward(fed_model *m, const layer *l) {
    int li = (int)(l - m->layers), t = nn_threads(m);
    weights_to_u(m, l, m->ws.wino_u[li], scratch(m, l, 0).mo);
    wctx ctx = {m, l, t < m->n ? t : m->n, li};
    fed_pool_run(m->pool, (size_t)ctx.tasks, fwd_task, &ctx);
    m->ws.wino_v_valid[li] = m->training && m->ws.wino_v[li] != NULL;
}

static void bwd_task(void *vctx, size_t task, int worker) {
    wctx *ctx = vctx;
    fed_model *m = ctx->m;
    const layer *l = ctx->l;
    size_t lo, hi;
    nn_split((size_t)m->n, (size_t)ctx->tasks, task, &lo, &hi);
    int C = l->ish.c, M = l->osh.c, H = l->ish.h, W = l->ish.w, OH = l->osh.h, OW = l->osh.w;
    int TX = (OW + 1) / 2, TY = (OH + 1) / 2;
    size_t tiles = tiles_of(l), osz = shape_size(l->osh), isz = shape_size(l->ish), chunk = (size_t)nn_wino_chunk(l);
    const float *u = m->ws.wino_u[ctx->li], *dy = m->ws.grad[l->out];
    float *dx = l->in == 0 ? NULL : m->ws.grad[l->in];
    int want_params = m->bwd_mode != NN_BWD_INPUTS;
    if (m->bwd_mode == NN_BWD_PARAMS) dx = NULL;
    if (!want_params && !dx) return;
    float *base = task == 0 ? m->grads : m->ws.partial[task];
    float *gw = want_params ? base + l->w_off : NULL;
    float *gb = want_params && l->b_off != SIZE_MAX ? base + l->b_off : NULL;
    float *keep = m->ws.wino_v_valid[ctx->li] ? m->ws.wino_v[ctx->li] : NULL;
    int even = OH % 2 == 0 && OW % 2 == 0;
    wscr s = scratch(m, l, worker);
    if (gw) memset(s.du, 0, nn_wino_u_floats(l) * sizeof(float));
    if (gb) memset(gb, 0, (size_t)M * sizeof(float));
    for (size_t i0 = lo; i0 < hi; i0 += chunk) {
        int nb = (int)(hi - i0 < chunk ? hi - i0 : chunk);
        size_t T = (size_t)nb * tiles;
        /* M = A dY A^T for every output channel and tile, as [out][36][T] */
        for (int o = 0; o < M; o++) {
            float *d2 = s.x;   /* dY tile [r][s][t], zero past the edge */
            for (int r = 0; r < 2; r++)
                for (int sx = 0; sx < 2; sx++) {
                    float *dst = d2 + (size_t)(r * 2 + sx) * T;
                    for (int e = 0; e < nb; e++) {
                        const float *dyo = dy + (i0 + (size_t)e) * osz + (size_t)o * OH * OW;
                        for (int ty = 0; ty < TY; ty++) {
                            int oy = 2 * ty + r;
                            float *row = dst + (size_t)e * tiles + (size_t)ty * TX;
                            if (even) {   /* every tile whole: a strided gather */
                                gather_row(row, dyo + (size_t)oy * OW + sx, TX);
                                continue;
                            }
                            for (int tx = 0; tx < TX; tx++) {
                                int ox = 2 * tx + sx;
                                row[tx] = oy < OH && ox < OW ? dyo[(size_t)oy * OW + ox] : 0.0f;
                            }
                        }
                    }
                }
            /* (A^T)^T: A[i][r] = AT[r][i] */
            t2d(s.mo + (size_t)o * WN * T, d2, s.z, AT, 1, WA, WA, 2, AT, 1, WA, WA, 2, T);
        }
        if (gb)
            for (int e = 0; e < nb; e++)
                for (int o = 0; o < M; o++) gb[o] += plane_sum(dy + (i0 + (size_t)e) * osz + (size_t)o * OH * OW, OH * OW);
        if (gw) {
            float *v = keep ? keep + i0 * nn_wino_keep_floats(l) : s.v;
            if (!keep) input_to_v(m, l, i0, nb, v, s.x, s.z, s.pad);
            /* dU_xi += M_xi V_xi^T */
            for (int xi = 0; xi < WN; xi++)
                nn_gemm_abt_acc(M, C, (int)T, s.mo + (size_t)xi * T, WN * T, v + (size_t)xi * T, WN * T,
                                s.du + (size_t)xi * M * C, (size_t)C);
        }
        if (dx) {
            /* dV_xi = U_xi^T M_xi, as [in][36][T] */
            for (int xi = 0; xi < WN; xi++)
                nn_gemm_ab(C, (int)T, M, u + (size_t)xi * M * C, 1, (size_t)C, s.mo + (size_t)xi * T, WN * T,
                           s.dv + (size_t)xi * T, WN * T);
            int PH = pad_h(l), PW = pad_w(l);
            for (int c = 0; c < C; c++) {
                float *d6 = s.x;   /* B dV B^T: [a][b][t]; B[a][i] = BT[i][a] */
                t2d(d6, s.dv + (size_t)c * WN * T, s.z, BT, 1, WA, WA, WA, BT, 1, WA, WA, WA, T);
                for (int e = 0; e < nb; e++) {
                    /* tiles overlap by 4 pixels: added into the padded channel in tile
                     * order (the same every time), whose interior then goes to dx */
                    memset(s.pad, 0, (size_t)PH * PW * sizeof(float));
                    for (int a = 0; a < WA; a++)
                        for (int b = 0; b < WA; b++) {
                            const float *src = d6 + (size_t)(a * WA + b) * T + (size_t)e * tiles;
                            for (int ty = 0; ty < TY; ty++)
                                scatter_row(s.pad + (size_t)(2 * ty + a) * PW + b, src + (size_t)ty * TX, TX);
                        }
                    float *dxc = dx + (i0 + (size_t)e) * isz + (size_t)c * H * W;
                    for (int y = 0; y < H; y++) {
                        float *restrict d = dxc + (size_t)y * W;
                        const float *restrict q = s.pad + (size_t)(y + 2) * PW + 2;
                        for (int x0 = 0; x0 < W; x0++) d[x0] += q[x0];
                    }
                }
            }
        }
    }
    if (gw) {
        /* dg = G^T dU G, from [36][oc] to the weights' [out][in][5][5] */
        size_t MC = (size_t)M * C;
        float *g = s.dv, *z = s.mo;   /* free now, and sized for 25 MC and 30 MC floats */
        t2d(g, s.du, z, G, 1, 5, 5, WA, G, 1, 5, 5, WA, MC);
        for (int ab = 0; ab < 25; ab++)
            for (size_t oc = 0; oc < MC; oc++) gw[oc * 25 + (size_t)ab] = g[(size_t)ab * MC + oc];
    }
}

void nn_wino_backward(fed_model *m, const layer *l) {
    int li = (int)(l - m->layers), t = nn_threads(m);
    wctx ctx = {m, l, t < m->n ? t : m->n, li};
    fed_pool_run(m->pool, (size_t)ctx.tasks, bwd_task, &ctx);
}
