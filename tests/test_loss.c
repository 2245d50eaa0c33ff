/* Checks fed_softmax_xent: loss against a direct double-precision computation,
 * the gradient against central finite differences, stability at extreme logits,
 * argmax counting, in-place gradients and the bad-label error. */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include "check.h"
#include "federate/error.h"
#include "federate/loss.h"

/* Mean cross-entropy in double, written the textbook way (with the max shift so the
 * extreme-logit cases stay representable). */
static double ref_loss(const double *x, const int32_t *y, int n, int k) {
    double total = 0;
    for (int r = 0; r < n; r++) {
        const double *row = x + (size_t)r * k;
        double mx = row[0];
        for (int j = 1; j < k; j++) mx = fmax(mx, row[j]);
        double s = 0;
        for (int j = 0; j < k; j++) s += exp(row[j] - mx);
        total += mx + log(s) - row[y[r]];
    }
    return total / n;
}

/* Deterministic, varied logits in roughly [-4, 4]. */
static void fill(float *x, int m) {
    for (int i = 0; i < m; i++) x[i] = (float)(4.0 * sin(1.3 * i + 0.7) * cos(0.37 * i));
}

enum { N = 6, K = 5 };

static void test_value_and_grad(void) {
    float x[N * K], d[N * K];
    int32_t y[N] = {0, 4, 2, 2, 1, 3};
    fill(x, N * K);
    double xd[N * K];
    for (int i = 0; i < N * K; i++) xd[i] = x[i];
    float loss;
    CHECK_OK(fed_softmax_xent(x, y, N, K, &loss, d, NULL));
    double want = ref_loss(xd, y, N, K);
    CHECK_CLOSE(loss, want, 1e-6, 1e-7);

    /* Central differences on a double copy: the truncation error of eps=1e-3 is
     * ~eps^2 times the third derivative, well inside 1e-6. */
    const double eps = 1e-3;
    for (int i = 0; i < N * K; i++) {
        double keep = xd[i];
        xd[i] = keep + eps;
        double up = ref_loss(xd, y, N, K);
        xd[i] = keep - eps;
        double down = ref_loss(xd, y, N, K);
        xd[i] = keep;
        double fd = (up - down) / (2 * eps);
        CHECK_NEAR(d[i], fd, 1e-6);
    }
    /* Each row of the gradient of a softmax loss sums to zero. */
    for (int r = 0; r < N; r++) {
        double s = 0;
        for (int j = 0; j < K; j++) s += d[r * K + j];
        CHECK_NEAR(s, 0.0, 1e-7);
    }

    /* The loss alone, without a gradient buffer, is the same number. */
    float loss2;
    CHECK_OK(fed_softmax_xent(x, y, N, K, &loss2, NULL, NULL));
    CHECK(loss2 == loss);

    /* dlogits may be the logits buffer itself (the model writes it in place). */
    float inplace[N * K];
    memcpy(inplace, x, sizeof x);
    float loss3;
    CHECK_OK(fed_softmax_xent(inplace, y, N, K, &loss3, inplace, NULL));
    CHECK(loss3 == loss);
    CHECK(memcmp(inplace, d, sizeof d) == 0);
}

static void test_known_values(void) {
    /* Uniform logits: loss log(k), gradient (1/k - onehot)/n. */
    float x[2 * 4] = {0};
    int32_t y[2] = {1, 3};
    float loss, d[8];
    CHECK_OK(fed_softmax_xent(x, y, 2, 4, &loss, d, NULL));
    CHECK_CLOSE(loss, log(4.0), 1e-7, 0);
    CHECK_CLOSE(d[0], 0.125, 1e-7, 0);
    CHECK_CLOSE(d[1], (0.25 - 1) / 2, 1e-7, 0);
    CHECK_CLOSE(d[7], (0.25 - 1) / 2, 1e-7, 0);
    /* One class: loss 0, gradient 0. */
    float one[3] = {5, -2, 1e4f};
    int32_t zeros[3] = {0, 0, 0};
    CHECK_OK(fed_softmax_xent(one, zeros, 3, 1, &loss, d, NULL));
    CHECK(loss == 0 && d[0] == 0 && d[1] == 0 && d[2] == 0);
}

static void test_extreme(void) {
    /* exp(1e4) overflows float and double alike; only the max shift saves it. */
    float x[3 * 3] = {1e4f, -1e4f, 0, -1e4f, -1e4f, -1e4f, 1e4f, 1e4f, -1e4f};
    int32_t y[3] = {1, 2, 0};
    double xd[9];
    for (int i = 0; i < 9; i++) xd[i] = x[i];
    float loss, d[9];
    int correct = -1;
    CHECK_OK(fed_softmax_xent(x, y, 3, 3, &loss, d, &correct));
    CHECK(isfinite(loss));
    for (int i = 0; i < 9; i++) CHECK(isfinite(d[i]));
    /* Row 0: 2e4; row 1: log 3; row 2: log 2. */
    CHECK_CLOSE(loss, (2e4 + log(3.0) + log(2.0)) / 3, 1e-6, 0);
    CHECK_CLOSE(loss, ref_loss(xd, y, 3, 3), 1e-6, 0);
    CHECK_CLOSE(d[0], 1.0 / 3, 1e-6, 1e-7);
    CHECK_CLOSE(d[1], -1.0 / 3, 1e-6, 1e-7);
    CHECK_CLOSE(d[6], (0.5 - 1) / 3, 1e-6, 1e-7);
    CHECK_CLOSE(d[7], 0.5 / 3, 1e-6, 1e-7);
    /* Argmax takes the first maximum on ties (rows 1 and 2 pick class 0). */
    CHECK_EQ_INT(correct, 1);
}

static void test_correct(void) {
    float x[4 * 3] = {
        0.1f, 0.9f, 0.2f, /* argmax 1 */
        3.0f, -1.f, 2.0f, /* argmax 0 */
        0.0f, 0.0f, 0.5f, /* argmax 2 */
        1.0f, 1.0f, 0.0f, /* tie: 0 */
    };
    int32_t y[4] = {1, 2, 2, 0};
    int correct = -1;
    CHECK_OK(fed_softmax_xent(x, y, 4, 3, NULL, NULL, &correct));
    CHECK_EQ_INT(correct, 3);
    /* An empty batch is zero loss and zero correct, not a division by zero. */
    float loss = -1;
    CHECK_OK(fed_softmax_xent(NULL, NULL, 0, 3, &loss, NULL, &correct));
    CHECK(loss == 0 && correct == 0);
}

static void test_bad_label(void) {
    float x[2 * 3] = {0};
    float d[6] = {7, 7, 7, 7, 7, 7};
    int32_t y[2] = {0, 3};
    float loss = 42;
    fed_clear_error();
    CHECK_EQ_INT(fed_softmax_xent(x, y, 2, 3, &loss, d, NULL), FED_EINVAL);
    CHECK(strstr(fed_last_error(), "row 1") && strstr(fed_last_error(), "label 3"));
    /* Nothing is written on failure. */
    CHECK(loss == 42 && d[0] == 7);
    y[1] = -1;
    CHECK_EQ_INT(fed_softmax_xent(x, y, 2, 3, &loss, d, NULL), FED_EINVAL);
    CHECK(strstr(fed_last_error(), "label -1"));
    y[1] = 0;
    CHECK_EQ_INT(fed_softmax_xent(x, y, 2, 0, &loss, d, NULL), FED_EINVAL);
    CHECK_EQ_INT(fed_softmax_xent(x, y, -1, 3, &loss, d, NULL), FED_EINVAL);
    CHECK_EQ_INT(fed_softmax_xent(NULL, y, 2, 3, &loss, d, NULL), FED_EINVAL);
}

int main(void) {
    test_value_and_grad();
    test_known_values();
    test_extreme();
    test_correct();
    test_bad_label();
    TEST_PASS("test_loss");
}
