/* Softmax cross-entropy for classification: loss, gradient and accuracy count in
 * one pass over the logits. Log-sum-exp subtracts each row's maximum first, so
 * logits of any finite size give finite results. */
#include <math.h>
#include <stddef.h>
#include "federate/error.h"
#include "federate/loss.h"

int fed_softmax_xent(const float *logits, const int32_t *labels, int n, int k, float *loss, float *dlogits,
                     int *correct) {
    if (n < 0 || k <= 0) return fed_error(FED_EINVAL, "fed_softmax_xent: need n >= 0 and k > 0 (got %d, %d)", n, k);
    if (n > 0 && (!logits || !labels)) return fed_error(FED_EINVAL, "fed_softmax_xent: NULL logits or labels");
    /* Check every label before writing anything, so a bad batch leaves no partial output. */
    for (int r = 0; r < n; r++)
        if (labels[r] < 0 || labels[r] >= k)
            return fed_error(FED_EINVAL, "fed_softmax_xent: row %d has label %d, outside [0, %d)", r,
                             (int)labels[r], k);
    double total = 0;
    int right = 0;
    double inv_n = n ? 1.0 / n : 0.0;
    for (int r = 0; r < n; r++) {
        const float *x = logits + (size_t)r * k;
        int y = labels[r];
        float mx = x[0];
        int arg = 0;
        for (int j = 1; j < k; j++)
            if (x[j] > mx) {
                mx = x[j];
                arg = j;
            }
        right += arg == y;
        /* Read the label's logit before dlogits (possibly the same buffer) is written. */
        double shifted_y = (double)x[y] - (double)mx;
        double sum = 0;
        if (dlogits) {
            float *d = dlogits + (size_t)r * k;
            for (int j = 0; j < k; j++) {
                float e = expf(x[j] - mx);
                d[j] = e;
                sum += e;
            }
            /* sum >= 1 (the maximum contributes exp(0)), so the division is safe. */
            float s = (float)(inv_n / sum);
            for (int j = 0; j < k; j++) d[j] *= s;
            d[y] -= (float)inv_n;
        } else {
            for (int j = 0; j < k; j++) sum += expf(x[j] - mx);
        }
        total += log(sum) - shifted_y;
    }
    if (loss) *loss = (float)(total * inv_n);
    if (correct) *correct = right;
    return 0;
}
