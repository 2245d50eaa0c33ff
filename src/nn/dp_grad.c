/* Clipped per-example gradient sums for DP-SGD (Abadi et al. 2016) without a
 * loop over batches of one. Every per-example quantity DP-SGD needs is in the
 * activations and output gradients a batched backward pass already keeps:
 * example i's gradient for a layer's weights is a function of x_i and dy_i
 * only, and scaling example i's output gradient by s_i scales all of its
 * parameter gradients by s_i. So: backward once for the inputs' gradients,
 * per-example norms per layer, scale, and a parameter-only backward. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "federate/error.h"
#include "federate/loss.h"
#include "nn_internal.h"

static int is_param_layer(const layer *l) { return l->kind == L_CONV || l->kind == L_LINEAR; }

int fed_model_clipped_grad_sum(fed_model *m, const float *x, const int32_t *y, int n, float clip, float *loss,
                               int *correct, float *norms) {
    if (!m || !x || !y || n <= 0 || !(clip > 0))
        return fed_error(FED_EINVAL, "fed_model_clipped_grad_sum: need a model, data, n > 0 and clip > 0");
    for (int i = 0; i < m->nlayers; i++)
        if (m->layers[i].kind == L_BATCHNORM || m->layers[i].kind == L_GROUPNORM)
            return fed_error(FED_EUNSUPPORTED,
                             "DP-SGD needs per-example gradients, and model %s has a normalization layer (%s) that "
                             "mixes examples; use mlp or cnn",
                             m->name, m->layers[i].name);
    const float *logits;
    int rc = fed_model_forward(m, x, n, &logits);
    if (rc) return rc;
    int k = m->num_classes;
    float *dlogits = malloc((size_t)n * k * sizeof(float));
    double *sq = calloc((size_t)n, sizeof(double));
    if (!dlogits || !sq) {
        free(dlogits); free(sq);
        return fed_error(FED_ENOMEM, "DP-SGD: out of memory for a batch of %d", n);
    }
    float l = 0;
    if ((rc = fed_softmax_xent(logits, y, n, k, &l, dlogits, correct))) goto out;
    if (loss) *loss = l;
    /* the mean loss's gradient carries 1/n: per-example losses want 1 */
    for (size_t j = 0; j < (size_t)n * k; j++) dlogits[j] *= (float)n;

    m->bwd_mode = NN_BWD_INPUTS;
    rc = fed_model_backward(m, dlogits);
    m->bwd_mode = NN_BWD_ALL;
    if (rc) goto out;
    for (int i = 0; i < m->nlayers && !rc; i++) {
        const layer *ly = &m->layers[i];
        if (ly->kind == L_CONV) rc = nn_conv_per_example_sqnorm(m, ly, sq);
        else if (ly->kind == L_LINEAR) nn_linear_per_example_sqnorm(m, ly, sq);
    }
    if (rc) goto out;
    for (int i = 0; i < n; i++) {
        double norm = sqrt(sq[i]);
        if (norms) norms[i] = (float)norm;
        double f = clip / (norm + 1e-6);
        sq[i] = f < 1 ? f : 1;   /* now the scale factor */
    }
    for (int i = 0; i < m->nlayers; i++) {
        const layer *ly = &m->layers[i];
        if (!is_param_layer(ly)) continue;
        size_t per = shape_size(m->slot_shape[ly->out]);
        float *dy = m->ws.grad[ly->out];
        for (int e = 0; e < n; e++) {
            float s = (float)sq[e];
            if (s == 1.0f) continue;
            float *row = dy + (size_t)e * per;
            for (size_t j = 0; j < per; j++) row[j] *= s;
        }
    }
    m->bwd_mode = NN_BWD_PARAMS;
    for (int i = m->nlayers - 1; i >= 0; i--) {
        const layer *ly = &m->layers[i];
        if (ly->kind == L_CONV) nn_conv_backward(m, ly);
        else if (ly->kind == L_LINEAR) nn_linear_backward(m, ly);
    }
    m->bwd_mode = NN_BWD_ALL;
out:
    free(dlogits);
    free(sq);
    return rc;
}
