/* Learning-rate schedules as pure functions of the step number, so a client that
 * resumes mid-run (or a round that starts at step s) gets the same rate as an
 * uninterrupted run. Semantics follow torch.optim.lr_scheduler. */
#ifndef FEDERATE_SCHEDULE_H
#define FEDERATE_SCHEDULE_H

/* Append-only: values are stored in configs and run records. */
enum fed_lr_kind {
    FED_LR_CONSTANT = 0,
    FED_LR_STEP = 1,   /* StepLR: base_lr * gamma^floor(step / step_size) */
    FED_LR_COSINE = 2, /* CosineAnnealingLR, closed form, from base_lr down to min_lr */
};

typedef struct fed_lr_schedule {
    int kind;        /* enum fed_lr_kind */
    float base_lr;
    int step_size;   /* STEP: steps between decays; <= 0 means never decay */
    float gamma;     /* STEP: multiplicative decay */
    int total_steps; /* COSINE: steps to reach min_lr (T_max); <= 0 means stay at base_lr */
    float min_lr;    /* COSINE: eta_min */
} fed_lr_schedule;

/* The rate at step (0-based; a negative step counts as 0).
 * COSINE: min + (base - min) * (1 + cos(pi * step / total)) / 2 for step < total and
 * min_lr from total on (torch's closed form would rise again after T_max).
 * An unknown kind gives base_lr. */
float fed_lr_at(const fed_lr_schedule *s, int step);
/* "constant", "step", "cosine"; an unknown name is FED_ENOTFOUND listing the known,
 * and *kind is left as it was. */
int fed_lr_kind_from_name(const char *name, int *kind);
/* The name of kind, or "unknown". */
const char *fed_lr_kind_name(int kind);

#endif
