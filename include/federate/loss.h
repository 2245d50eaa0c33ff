/* Loss functions on a batch of logits. The model's training step calls
 * fed_softmax_xent for the loss, its gradient and the accuracy count in one pass. */
#ifndef FEDERATE_LOSS_H
#define FEDERATE_LOSS_H
#include <stdint.h>

/* Mean softmax cross-entropy over n rows of k logits (row-major, n x k), as
 * torch.nn.functional.cross_entropy with reduction "mean".
 * loss: the mean loss (may be NULL). dlogits: when not NULL, receives
 * d(mean loss)/d(logits), n x k; it may be the logits buffer itself.
 * correct: when not NULL, receives the number of rows whose argmax (first on ties)
 * equals the label. Stable for any finite logits (log-sum-exp after subtracting the
 * row maximum); the loss is accumulated in double. n == 0 gives loss 0.
 * A label outside [0, k) is FED_EINVAL naming the row and label, and nothing is
 * written. */
int fed_softmax_xent(const float *logits, const int32_t *labels, int n, int k, float *loss, float *dlogits,
                     int *correct);

#endif
