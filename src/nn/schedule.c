/* Learning-rate schedules (torch.optim.lr_scheduler's StepLR and CosineAnnealingLR,
 * Loshchilov & Hutter 2017, eq. 5 without restarts) in closed form: the rate is a
 * pure function of the step, computed in double and rounded once. */
#include <math.h>
#include <string.h>
#include "federate/error.h"
#include "federate/schedule.h"

static const char *const kind_names[] = {"constant", "step", "cosine"};
#define NKINDS ((int)(sizeof kind_names / sizeof kind_names[0]))
/* Spelled out: M_PI is POSIX, not ISO C. */
static const double fed_pi = 3.14159265358979323846;

float fed_lr_at(const fed_lr_schedule *s, int step) {
    if (!s) return 0.0f;
    if (step < 0) step = 0;
    double base = s->base_lr;
    switch (s->kind) {
    case FED_LR_STEP:
        if (s->step_size <= 0) return s->base_lr;
        return (float)(base * pow((double)s->gamma, (double)(step / s->step_size)));
    case FED_LR_COSINE: {
        if (s->total_steps <= 0) return s->base_lr;
        /* Past T_max torch's closed form climbs back up; a schedule that has run its
         * course should stay at the floor instead. */
        if (step >= s->total_steps) return s->min_lr;
        double lo = s->min_lr;
        return (float)(lo + (base - lo) * (1.0 + cos(fed_pi * step / s->total_steps)) / 2.0);
    }
    default:
        return s->base_lr;
    }
}

const char *fed_lr_kind_name(int kind) { return kind >= 0 && kind < NKINDS ? kind_names[kind] : "unknown"; }

int fed_lr_kind_from_name(const char *name, int *kind) {
    if (!name || !kind) return fed_error(FED_EINVAL, "fed_lr_kind_from_name: NULL argument");
    for (int i = 0; i < NKINDS; i++)
        if (strcmp(name, kind_names[i]) == 0) {
            *kind = i;
            return 0;
        }
    return fed_error(FED_ENOTFOUND, "unknown learning-rate schedule '%s' (known: constant, step, cosine)", name);
}
