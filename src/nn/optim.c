/* Optimizers on flat vectors, written to reproduce torch.optim (1.13+) exactly:
 * SGD with momentum/Nesterov, Adam (Kingma & Ba 2015, Algorithm 1, with L2 weight
 * decay folded into the gradient as torch.optim.Adam does) and Adagrad (Duchi et
 * al. 2011, diagonal form, with torch's lr_decay and initial accumulator). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "federate/error.h"
#include "federate/optim.h"
#include "federate/pool.h"

struct fed_optim {
    fed_optim_cfg cfg;
    size_t n;
    long step;
    float *m; /* SGD momentum buffer; Adam first moment */
    float *v; /* Adam second moment; Adagrad sum of squared gradients */
};

static const char *const kind_names[] = {"sgd", "adam", "adagrad"};
#define NKINDS ((int)(sizeof kind_names / sizeof kind_names[0]))

void fed_optim_cfg_default(fed_optim_cfg *c, int kind) {
    memset(c, 0, sizeof *c);
    c->kind = kind;
    /* Every field gets a sane value, so changing kind afterwards stays valid. */
    c->beta1 = 0.9f;
    c->beta2 = 0.999f;
    c->eps = kind == FED_OPTIM_ADAGRAD ? 1e-10f : 1e-8f;
}

const char *fed_optim_kind_name(int kind) {
    return kind >= 0 && kind < NKINDS ? kind_names[kind] : "unknown";
}

int fed_optim_kind_from_name(const char *name, int *kind) {
    if (!name || !kind) return fed_error(FED_EINVAL, "fed_optim_kind_from_name: NULL argument");
    for (int i = 0; i < NKINDS; i++)
        if (strcmp(name, kind_names[i]) == 0) {
            *kind = i;
            return 0;
        }
    return fed_error(FED_ENOTFOUND, "unknown optimizer '%s' (known: sgd, adam, adagrad)", name);
}

/* `!(x >= 0)` rather than `x < 0` so that NaN is rejected too. */
static int check_nonneg(const char *what, float x) {
    if (!(x >= 0.0f) || isinf(x))
        return fed_error(FED_EINVAL, "optimizer: %s must be finite and >= 0 (got %g)", what, (double)x);
    return 0;
}

static int validate(const fed_optim_cfg *c) {
    int rc;
    if ((rc = check_nonneg("weight_decay", c->weight_decay))) return rc;
    switch (c->kind) {
    case FED_OPTIM_SGD:
        if ((rc = check_nonneg("momentum", c->momentum))) return rc;
        /* As in torch: Nesterov's look-ahead is meaningless without a velocity. */
        if (c->nesterov && c->momentum <= 0.0f)
            return fed_error(FED_EINVAL, "optimizer sgd: nesterov requires momentum > 0 (got %g)",
                             (double)c->momentum);
        return 0;
    case FED_OPTIM_ADAM:
        if (!(c->beta1 >= 0.0f && c->beta1 < 1.0f))
            return fed_error(FED_EINVAL, "optimizer adam: beta1 must be in [0, 1) (got %g)", (double)c->beta1);
        if (!(c->beta2 >= 0.0f && c->beta2 < 1.0f))
            return fed_error(FED_EINVAL, "optimizer adam: beta2 must be in [0, 1) (got %g)", (double)c->beta2);
        return check_nonneg("eps", c->eps);
    case FED_OPTIM_ADAGRAD:
        if ((rc = check_nonneg("eps", c->eps))) return rc;
        if ((rc = check_nonneg("lr_decay", c->lr_decay))) return rc;
        return check_nonneg("initial_accumulator", c->initial_accumulator);
    default:
        return fed_error(FED_EINVAL, "optimizer: unknown kind %d (known: 0 sgd, 1 adam, 2 adagrad)", c->kind);
    }
}

int fed_optim_new(fed_optim **out, const fed_optim_cfg *cfg, size_t n) {
    if (!out || !cfg) return fed_error(FED_EINVAL, "fed_optim_new: NULL argument");
    *out = NULL;
    int rc = validate(cfg);
    if (rc) return rc;
    if (n > SIZE_MAX / sizeof(float)) return fed_error(FED_EINVAL, "fed_optim_new: %zu parameters is too many", n);
    fed_optim *o = calloc(1, sizeof *o);
    if (!o) return fed_error(FED_ENOMEM, "fed_optim_new: cannot allocate the optimizer");
    o->cfg = *cfg;
    o->n = n;
    /* Plain SGD is stateless; only allocate what the kind updates. */
    int need_m = (cfg->kind == FED_OPTIM_SGD && cfg->momentum != 0.0f) || cfg->kind == FED_OPTIM_ADAM;
    int need_v = cfg->kind == FED_OPTIM_ADAM || cfg->kind == FED_OPTIM_ADAGRAD;
    size_t bytes = (n ? n : 1) * sizeof(float);
    if ((need_m && !(o->m = malloc(bytes))) || (need_v && !(o->v = malloc(bytes)))) {
        fed_optim_free(o);
        return fed_error(FED_ENOMEM, "fed_optim_new: cannot allocate state for %zu parameters", n);
    }
    fed_optim_reset(o);
    *out = o;
    return 0;
}

void fed_optim_free(fed_optim *o) {
    if (!o) return;
    free(o->m);
    free(o->v);
    free(o);
}

void fed_optim_reset(fed_optim *o) {
    if (!o) return;
    o->step = 0;
    if (o->m) memset(o->m, 0, o->n * sizeof(float));
    if (o->v) {
        if (o->cfg.kind == FED_OPTIM_ADAGRAD) {
            float a = o->cfg.initial_accumulator;
            for (size_t i = 0; i < o->n; i++) o->v[i] = a;
        } else {
            memset(o->v, 0, o->n * sizeof(float));
        }
    }
}

long fed_optim_steps(const fed_optim *o) { return o ? o->step : 0; }
size_t fed_optim_size(const fed_optim *o) { return o ? o->n : 0; }
const fed_optim_cfg *fed_optim_config(const fed_optim *o) { return o ? &o->cfg : NULL; }

/* Each kernel is one branch-free loop over contiguous restrict-qualified arrays so
 * the compiler can vectorize it; the order of float operations follows torch's
 * kernels (d = g + wd*p; buf = mu*buf + d; p = p + (-lr)*d) so results agree to
 * rounding. Weight decay with wd == 0 adds an exact 0, so it needs no branch. */

static void sgd_plain(float *restrict p, const float *restrict g, size_t n, float wd, float lr) {
    for (size_t i = 0; i < n; i++) {
        float d = g[i] + wd * p[i];
        p[i] = p[i] + -lr * d;
    }
}

/* torch starts the buffer as a copy of the first (decayed) gradient, not as
 * mu*0 + d; with dampening 0 these agree, but `first` keeps it literal. */
static void sgd_momentum(float *restrict p, const float *restrict g, float *restrict buf, size_t n, float wd,
                         float mu, float lr, int first) {
    float keep = first ? 0.0f : mu;
    for (size_t i = 0; i < n; i++) {
        float d = g[i] + wd * p[i];
        float b = keep * buf[i] + d;
        buf[i] = b;
        p[i] = p[i] + -lr * b;
    }
}

static void sgd_nesterov(float *restrict p, const float *restrict g, float *restrict buf, size_t n, float wd,
                         float mu, float lr, int first) {
    float keep = first ? 0.0f : mu;
    for (size_t i = 0; i < n; i++) {
        float d = g[i] + wd * p[i];
        float b = keep * buf[i] + d;
        buf[i] = b;
        p[i] = p[i] + -lr * (d + mu * b);
    }
}

/* Algorithm 1 of Kingma & Ba with the bias corrections applied the way torch does:
 * p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps). */
static void adam_update(float *restrict p, const float *restrict g, float *restrict m, float *restrict v, size_t n,
                        float wd, float b1, float b2, float eps, float step_size, float bc2_sqrt) {
    float a1 = 1.0f - b1, a2 = 1.0f - b2;
    for (size_t i = 0; i < n; i++) {
        float d = g[i] + wd * p[i];
        float mi = m[i] * b1 + a1 * d;
        float vi = v[i] * b2 + a2 * (d * d);
        m[i] = mi;
        v[i] = vi;
        float denom = sqrtf(vi) / bc2_sqrt + eps;
        p[i] = p[i] + -step_size * (mi / denom);
    }
}

/* Duchi et al.'s diagonal Adagrad: p -= clr * g / (sqrt(sum g^2) + eps). */
static void adagrad_update(float *restrict p, const float *restrict g, float *restrict s, size_t n, float wd,
                           float eps, float clr) {
    for (size_t i = 0; i < n; i++) {
        float d = g[i] + wd * p[i];
        float si = s[i] + d * d;
        s[i] = si;
        p[i] = p[i] + -clr * (d / (sqrtf(si) + eps));
    }
}

/* The update on elements [lo, hi): every kernel is element-wise, so ranges are
 * independent and a split across threads gives the same bits as one pass. */
static void apply_range(fed_optim *o, float *params, const float *grads, float lr, size_t lo, size_t hi) {
    const fed_optim_cfg *c = &o->cfg;
    size_t n = hi - lo;
    float *p = params + lo;
    const float *g = grads + lo;
    float *m = o->m ? o->m + lo : NULL, *v = o->v ? o->v + lo : NULL;
    switch (c->kind) {
    case FED_OPTIM_SGD:
        if (c->momentum == 0.0f)
            sgd_plain(p, g, n, c->weight_decay, lr);
        else if (c->nesterov)
            sgd_nesterov(p, g, m, n, c->weight_decay, c->momentum, lr, o->step == 1);
        else
            sgd_momentum(p, g, m, n, c->weight_decay, c->momentum, lr, o->step == 1);
        break;
    case FED_OPTIM_ADAM: {
        /* torch computes these scalars in double (Python floats) and rounds once. */
        double t = (double)o->step;
        double bc1 = 1.0 - pow((double)c->beta1, t);
        double bc2 = 1.0 - pow((double)c->beta2, t);
        adam_update(p, g, m, v, n, c->weight_decay, c->beta1, c->beta2, c->eps, (float)((double)lr / bc1),
                    (float)sqrt(bc2));
        break;
    }
    case FED_OPTIM_ADAGRAD: {
        double clr = (double)lr / (1.0 + (double)(o->step - 1) * (double)c->lr_decay);
        adagrad_update(p, g, v, n, c->weight_decay, c->eps, (float)clr);
        break;
    }
    default: break;
    }
}

static int check_step(fed_optim *o, float *params, const float *grads, float lr) {
    if (!o) return fed_error(FED_EINVAL, "fed_optim_step: NULL optimizer");
    if (o->n && (!params || !grads)) return fed_error(FED_EINVAL, "fed_optim_step: NULL params or grads");
    if (!(lr >= 0.0f) || isinf(lr))
        return fed_error(FED_EINVAL, "optimizer %s: learning rate must be finite and >= 0 (got %g)",
                         fed_optim_kind_name(o->cfg.kind), (double)lr);
    if (o->cfg.kind != FED_OPTIM_SGD && o->cfg.kind != FED_OPTIM_ADAM && o->cfg.kind != FED_OPTIM_ADAGRAD)
        return fed_error(FED_EINTERNAL, "optimizer: unknown kind %d", o->cfg.kind);
    return 0;
}

int fed_optim_step(fed_optim *o, float *params, const float *grads, float lr) {
    int rc = check_step(o, params, grads, lr);
    if (rc) return rc;
    o->step++;
    apply_range(o, params, grads, lr, 0, o->n);
    return 0;
}

typedef struct step_ctx { fed_optim *o; float *p; const float *g; float lr; size_t parts; } step_ctx;

static void step_task(void *vctx, size_t task, int worker) {
    (void)worker;
    step_ctx *c = vctx;
    /* split on 16-float boundaries so each thread's loop stays aligned */
    size_t blocks = (c->o->n + 15) / 16, per = blocks / c->parts, rem = blocks % c->parts;
    size_t b0 = task * per + (task < rem ? task : rem), b1 = b0 + per + (task < rem ? 1 : 0);
    size_t lo = b0 * 16, hi = b1 * 16 < c->o->n ? b1 * 16 : c->o->n;
    if (lo < hi) apply_range(c->o, c->p, c->g, c->lr, lo, hi);
}

int fed_optim_is_plain_sgd(const fed_optim *o) {
    return o && o->cfg.kind == FED_OPTIM_SGD && o->cfg.momentum == 0.0f && o->cfg.weight_decay == 0.0f;
}

void fed_optim_count_step(fed_optim *o) {
    if (o) o->step++;
}

int fed_optim_step_pool(fed_optim *o, float *params, const float *grads, float lr, fed_pool *pool) {
    int rc = check_step(o, params, grads, lr);
    if (rc) return rc;
    o->step++;
    size_t parts = pool ? (size_t)fed_pool_size(pool) : 1;
    step_ctx c = {o, params, grads, lr, parts};
    fed_pool_run(pool, parts, step_task, &c);
    return 0;
}
