/* Winograd F(2x2, 5x5) against im2col + GEMM on the full-size cnn (28x28 MNIST
 * geometry, conv2 32 -> 64 channels, and a CIFAR 32x32x3 cnn): the same logits, weight
 * and bias gradients of every layer (conv1's come through conv2's input gradient), to
 * float rounding; with the batch split over two threads; in DP-SGD's split backward
 * (input gradients, then parameters from scaled output gradients); and with a batch
 * too large for the kept transformed input (recomputed in backward). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "federate/error.h"
#include "federate/model.h"
#include "federate/pool.h"
#include "federate/rng.h"
#include "federate/train.h"
#include "nn/nn_internal.h"

/* max |a - b| / (max |b| over the tensor), per tensor: float rounding differs */
static double rel_err(const float *a, const float *b, size_t n) {
    double d = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        s = fmax(s, fabs((double)b[i]));
    }
    return s > 0 ? d / s : d;
}

typedef struct out { float *logits, *grads; } out;

static out run(fed_model *m, int wino, const float *x, const int32_t *y, int n, int dp) {
    fed_model_set_fast_kernels(m, wino);
    size_t np = fed_model_num_params(m);
    out o = {malloc((size_t)n * 10 * sizeof(float)), malloc(np * sizeof(float))};
    float loss;
    if (dp) {
        CHECK_OK(fed_model_clipped_grad_sum(m, x, y, n, 0.5f, &loss, NULL, NULL));
        const float *lg;
        CHECK_OK(fed_model_forward(m, x, n, &lg));
        memcpy(o.logits, lg, (size_t)n * 10 * sizeof(float));
    } else {
        const float *lg;
        CHECK_OK(fed_model_forward(m, x, n, &lg));
        memcpy(o.logits, lg, (size_t)n * 10 * sizeof(float));
        CHECK_OK(fed_model_loss_grad(m, x, y, n, &loss, NULL));
    }
    memcpy(o.grads, fed_model_grads(m), np * sizeof(float));
    return o;
}

static void compare(const char *label, const char *model, int c, int h, int n, int threads, int dp) {
    fed_model_opts mo;
    fed_model_opts_default(&mo);
    mo.in_c = c;
    mo.in_h = mo.in_w = h;
    fed_model *m;
    CHECK_OK(fed_model_create(&m, model, &mo));
    fed_model_init_params(m, 3);
    fed_pool *pool = NULL;
    if (threads > 1) {
        CHECK_OK(fed_pool_new(&pool, threads));
        fed_model_set_pool(m, pool);
    }
    size_t ex = (size_t)c * h * h;
    float *x = malloc((size_t)n * ex * sizeof(float));
    int32_t *y = malloc((size_t)n * sizeof(int32_t));
    fed_rng r;
    fed_rng_init(&r, 5, 0, 0, FED_RNG_USER);
    for (size_t i = 0; i < (size_t)n * ex; i++) x[i] = (float)fed_rng_uniform(&r);
    for (int i = 0; i < n; i++) y[i] = i % 10;
    /* Away from kinks: the two paths round differently (~1e-6), so an example whose
     * conv2 output has a 2x2 pooling window with two near-equal maxima, or a value
     * near the ReLU's kink, could route its gradient differently. Such examples are
     * drawn again (as gradcheck skips kinks). */
    fed_model_set_fast_kernels(m, 0);
    int li = -1;
    for (int i = 0; i < m->nlayers; i++)
        if (nn_wino_eligible(&m->layers[i])) li = i;
    CHECK(li >= 0 && m->layers[li + 1].kind == L_RELU && m->layers[li + 2].kind == L_MAXPOOL);
    const layer *cv = &m->layers[li];
    size_t osz = shape_size(cv->osh);
    int redrawn = 0;
    for (int pass = 0; pass < 100; pass++) {
        const float *lg;
        CHECK_OK(fed_model_forward(m, x, n, &lg));
        int bad = 0;
        for (int e = 0; e < n; e++) {
            const float *ye = m->ws.act[cv->out] + (size_t)e * osz;
            int kink = 0;
            for (int o = 0; o < cv->osh.c && !kink; o++)
                for (int py = 0; py + 1 < cv->osh.h && !kink; py += 2)
                    for (int px = 0; px + 1 < cv->osh.w && !kink; px += 2) {
                        const float *p0 = ye + ((size_t)o * cv->osh.h + py) * cv->osh.w + px;
                        float v[4] = {p0[0], p0[1], p0[cv->osh.w], p0[cv->osh.w + 1]};
                        for (int i = 0; i < 4; i++) {
                            if (fabsf(v[i]) < 1e-5f) kink = 1;
                            for (int j = i + 1; j < 4; j++)
                                if (v[i] > 0 && fabsf(v[i] - v[j]) < 1e-5f) kink = 1;
                        }
                    }
            if (kink) {
                bad++;
                for (size_t i = 0; i < ex; i++) x[(size_t)e * ex + i] = (float)fed_rng_uniform(&r);
            }
        }
        redrawn += bad;
        if (!bad) break;
        CHECK(pass < 99);
    }
    if (redrawn) printf("%s: %d examples redrawn away from pooling ties\n", label, redrawn);
    int eligible = 0;
    for (int i = 0; i < m->nlayers; i++) eligible += nn_wino_eligible(&m->layers[i]);
    CHECK(eligible >= 1);
    out a = run(m, 0, x, y, n, dp), b = run(m, 1, x, y, n, dp);
    double le = rel_err(b.logits, a.logits, (size_t)n * 10), worst = 0;
    const char *worst_name = "";
    int ntens = fed_model_num_tensors(m);
    for (int t = 0; t < ntens; t++) {
        const fed_tensor_info *ti = fed_model_tensor(m, t);
        if (ti->is_buffer) continue;
        double e = rel_err(b.grads + ti->offset, a.grads + ti->offset, ti->numel);
        if (e > worst) worst = e, worst_name = ti->name;
    }
    printf("%s: logits %.2e, worst gradient %.2e (%s)\n", label, le, worst, worst_name);
    CHECK(le < 1e-4);
    CHECK(worst < 1e-3);
    CHECK(worst > 0 || le > 0 || n == 0);   /* the two paths really ran different code */
    free(a.logits); free(a.grads); free(b.logits); free(b.grads);
    free(x); free(y);
    fed_model_free(m);
    fed_pool_free(pool);
}

int main(void) {
    compare("cnn, MNIST, batch 10", "cnn", 1, 28, 10, 1, 0);
    compare("cnn, MNIST, batch 10, 2 threads", "cnn", 1, 28, 10, 2, 0);
    compare("cnn, CIFAR, batch 7", "cnn", 3, 32, 7, 1, 0);
    compare("cnn, MNIST, DP-SGD split backward", "cnn", 1, 28, 6, 1, 1);
    /* 200 examples: more than the 4M floats the kept transformed input may take */
    compare("cnn, MNIST, batch 41 (5 chunks)", "cnn", 1, 28, 41, 1, 0);
    compare("cnn, MNIST, batch 200 (recomputed input)", "cnn", 1, 28, 200, 2, 0);
    TEST_PASS("nn_winograd");
}
