/* Checks the learning-rate schedules at their key points against hand-computed
 * values (StepLR and CosineAnnealingLR semantics) and the name lookup. */
#include <math.h>
#include <string.h>
#include "check.h"
#include "federate/error.h"
#include "federate/schedule.h"

static void test_constant(void) {
    fed_lr_schedule s = {.kind = FED_LR_CONSTANT, .base_lr = 0.05f};
    CHECK(fed_lr_at(&s, 0) == 0.05f);
    CHECK(fed_lr_at(&s, 123456) == 0.05f);
    CHECK(fed_lr_at(&s, -3) == 0.05f);
}

static void test_step(void) {
    fed_lr_schedule s = {.kind = FED_LR_STEP, .base_lr = 0.1f, .step_size = 30, .gamma = 0.1f};
    /* StepLR decays at multiples of step_size: 0..29 -> 0.1, 30..59 -> 0.01, ... */
    CHECK_CLOSE(fed_lr_at(&s, 0), 0.1, 1e-7, 0);
    CHECK_CLOSE(fed_lr_at(&s, 29), 0.1, 1e-7, 0);
    CHECK_CLOSE(fed_lr_at(&s, 30), 0.01, 1e-6, 0);
    CHECK_CLOSE(fed_lr_at(&s, 59), 0.01, 1e-6, 0);
    CHECK_CLOSE(fed_lr_at(&s, 60), 0.001, 1e-6, 0);
    CHECK_CLOSE(fed_lr_at(&s, 95), 0.0001, 1e-6, 0);
    s.gamma = 0.5f;
    s.step_size = 1;
    CHECK_CLOSE(fed_lr_at(&s, 10), 0.1 / 1024, 1e-6, 0);
    /* step_size <= 0 never decays (rather than dividing by zero). */
    s.step_size = 0;
    CHECK(fed_lr_at(&s, 1000) == 0.1f);
    /* A negative step is treated as the start. */
    s.step_size = 5;
    CHECK(fed_lr_at(&s, -7) == 0.1f);
}

static void test_cosine(void) {
    fed_lr_schedule s = {.kind = FED_LR_COSINE, .base_lr = 0.1f, .total_steps = 100, .min_lr = 0.0f};
    CHECK_CLOSE(fed_lr_at(&s, 0), 0.1, 1e-7, 0);
    CHECK_CLOSE(fed_lr_at(&s, 50), 0.05, 1e-6, 0);          /* cos(pi/2) = 0 */
    CHECK_CLOSE(fed_lr_at(&s, 25), 0.1 * (1 + sqrt(0.5)) / 2, 1e-6, 0); /* cos(pi/4) */
    CHECK_CLOSE(fed_lr_at(&s, 75), 0.1 * (1 - sqrt(0.5)) / 2, 1e-6, 0);
    CHECK_NEAR(fed_lr_at(&s, 100), 0.0, 1e-12);
    /* Clamped after total_steps rather than rising again. */
    CHECK_NEAR(fed_lr_at(&s, 150), 0.0, 1e-12);
    CHECK_NEAR(fed_lr_at(&s, 1000000), 0.0, 1e-12);

    s.min_lr = 0.01f;
    CHECK_CLOSE(fed_lr_at(&s, 0), 0.1, 1e-7, 0);
    CHECK_CLOSE(fed_lr_at(&s, 50), 0.055, 1e-6, 0);
    CHECK_CLOSE(fed_lr_at(&s, 100), 0.01, 1e-7, 0);
    CHECK_CLOSE(fed_lr_at(&s, 250), 0.01, 1e-7, 0);
    /* Monotone non-increasing over the run. */
    float prev = fed_lr_at(&s, 0);
    for (int t = 1; t <= 100; t++) {
        float cur = fed_lr_at(&s, t);
        CHECK(cur <= prev);
        prev = cur;
    }
    /* No horizon: stays at the base rate. */
    s.total_steps = 0;
    CHECK(fed_lr_at(&s, 10) == 0.1f);
}

static void test_names(void) {
    const char *names[] = {"constant", "step", "cosine"};
    for (int k = 0; k < 3; k++) {
        int kind = -1;
        CHECK_OK(fed_lr_kind_from_name(names[k], &kind));
        CHECK_EQ_INT(kind, k);
        CHECK(strcmp(fed_lr_kind_name(k), names[k]) == 0);
    }
    int kind = FED_LR_COSINE;
    CHECK_EQ_INT(fed_lr_kind_from_name("linear", &kind), FED_ENOTFOUND);
    CHECK_EQ_INT(kind, FED_LR_COSINE);
    CHECK(strstr(fed_last_error(), "linear") && strstr(fed_last_error(), "cosine"));
    CHECK_EQ_INT(fed_lr_kind_from_name(NULL, &kind), FED_EINVAL);
}

int main(void) {
    test_constant();
    test_step();
    test_cosine();
    test_names();
    TEST_PASS("test_schedule");
}
