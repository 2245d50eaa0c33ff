/* federate privacy: the (epsilon, delta) of DP-SGD / DP-FedAvg from its hyperparameters
 * (Poisson-subsampled Gaussian, RDP accountant, dp_accounting's default orders), or the
 * smallest noise multiplier that meets a target epsilon, like TF Privacy's
 * compute_dp_sgd_privacy and compute_noise. With --secure-clients, the same for one
 * client of privacy.mode distributed-dp-sgd: the noise split into that many discrete
 * Gaussian shares, rounding to --bits, Zhu & Wang's subsampling bound (docs/privacy.md). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "args.h"
#include "common.h"
#include "federate/dp.h"
#include "federate/error.h"

/* The lead adds this declaration to cli/common.h. */
int cmd_privacy(int argc, char **argv);

static const char *const conversions[] = {"improved", "classic", NULL};

static int bad(const char *flag, const char *why) {
    fprintf(stderr, "federate privacy: %s %s\n", flag, why);
    return 2;
}

/* The mechanism: the sampled Gaussian, or (shares > 0) the distributed discrete
 * Gaussian on record sums rounded to `bits`, dimension dim. */
typedef struct mech {
    double q, delta;
    long steps;
    int conv, shares, bits;
    double dim;
} mech;

static int mech_epsilon(const mech *m, double z, double *eps, double *order) {
    if (!m->shares) return fed_dp_epsilon(m->q, z, m->steps, m->delta, m->conv, NULL, 0, eps, order);
    double c = ldexp(1.0, m->bits - 1);
    fed_rdp *a;
    int rc = fed_rdp_new(&a, NULL, 0);
    if (rc) return rc;
    rc = fed_rdp_compose_subsampled_ddgauss(a, m->q, c + sqrt(m->dim), z * z * c * c / m->shares, m->shares, m->dim,
                                            m->steps);
    if (!rc) rc = fed_rdp_epsilon(a, m->delta, m->conv, eps, order);
    fed_rdp_free(a);
    return rc;
}

/* The smallest z meeting the target, to 1e-7 relative, by bisection (epsilon falls as z
 * grows). */
static int mech_calibrate(const mech *m, double target, double *z) {
    if (!m->shares) return fed_dp_calibrate_noise(m->q, m->steps, m->delta, target, m->conv, NULL, 0, 1e-6, z);
    double lo = 0, hi = 1, e;
    int rc;
    for (;;) {
        if ((rc = mech_epsilon(m, hi, &e, NULL))) return rc;
        if (e <= target) break;
        lo = hi;
        hi *= 2;
        if (hi > 1e6) return fed_error(FED_ERANGE, "no noise multiplier up to 1e6 reaches epsilon %g", target);
    }
    while (hi - lo > 1e-7 * hi) {
        double mid = 0.5 * (lo + hi);
        if ((rc = mech_epsilon(m, mid, &e, NULL))) return rc;
        if (e <= target) hi = mid;
        else lo = mid;
    }
    *z = hi;
    return 0;
}

/* z rounded up to 6 significant digits, so that the printed value, read back, still meets
 * the target (and `--noise-multiplier <it>` reproduces the epsilon printed). */
static int printable_z(double z, const mech *m, double target, char *buf, size_t len, double *zp) {
    double u = pow(10.0, floor(log10(z)) - 5.0);
    double k = ceil(z / u * (1 - 1e-12));
    for (int tries = 0; tries < 10; tries++, k += 1.0) {
        snprintf(buf, len, "%.6g", k * u);
        double back = strtod(buf, NULL), e;
        int rc = mech_epsilon(m, back, &e, NULL);
        if (rc) return rc;
        if (e <= target) {
            *zp = back;
            return 0;
        }
    }
    snprintf(buf, len, "%.17g", z); /* cannot happen: z itself meets the target */
    *zp = z;
    return 0;
}

int cmd_privacy(int argc, char **argv) {
    uint64_t n = 0, batch = 0;
    double z = NAN, target = NAN, epochs = NAN, delta = NAN;
    const char *conv_name = "improved";
    int timing = 0;
    uint64_t shares = 0, dim = 0;
    int bits = 16;
    const arg_spec specs[] = {
        {"dataset-size", ARG_U64, &n, "training examples N (required)", NO_RANGE, NULL},
        {"batch-size", ARG_U64, &batch, "expected batch size B; sampling rate q = B/N (required)", NO_RANGE, NULL},
        {"noise-multiplier", ARG_FLOAT, &z, "noise stddev over clip norm (this or --target-epsilon)", 0, 1e6, NULL},
        {"target-epsilon", ARG_FLOAT, &target, "print the smallest noise multiplier reaching this epsilon", NO_RANGE,
         NULL},
        {"epochs", ARG_FLOAT, &epochs, "passes over the data; steps = ceil(E N / B) (required)", NO_RANGE, NULL},
        {"delta", ARG_FLOAT, &delta, "target delta, in (0, 1) (required)", NO_RANGE, NULL},
        {"conversion", ARG_STRING, &conv_name, "RDP to (eps, delta) conversion (default improved)", NO_RANGE,
         conversions},
        {"secure-clients", ARG_U64, &shares,
         "privacy.mode distributed-dp-sgd: the noise is split into this many discrete Gaussian shares (the "
         "survivors a round needs); needs --dim", NO_RANGE, NULL},
        {"bits", ARG_INT, &bits, "with --secure-clients: secure_aggregation.bits (one clip is 2^(bits-1) steps)", 2,
         52, NULL},
        {"dim", ARG_U64, &dim, "with --secure-clients: the model's parameter count", NO_RANGE, NULL},
        {"timing", ARG_FLAG, &timing, "also print accountant_ms: the time for the epsilon of 10^4 steps", NO_RANGE,
         NULL},
        ARG_END,
    };
    int rc = args_parse("privacy",
                        "--dataset-size N --batch-size B (--noise-multiplier Z | --target-epsilon X) --epochs E "
                        "--delta D [FLAGS]",
                        specs, argc, argv, 2, NULL, 0, NULL);
    if (rc) return rc > 0 ? 0 : 2;
    if (n == 0) return bad("--dataset-size", "is required (the number of training examples, >= 1)");
    if (batch == 0) return bad("--batch-size", "is required (the expected batch size, >= 1)");
    if (batch > n) {
        fprintf(stderr, "federate privacy: --batch-size %llu exceeds --dataset-size %llu\n",
                (unsigned long long)batch, (unsigned long long)n);
        return 2;
    }
    if (isnan(epochs)) return bad("--epochs", "is required");
    if (!(epochs > 0.0)) return bad("--epochs", "must be > 0");
    if (isnan(delta)) return bad("--delta", "is required");
    if (!(delta > 0.0 && delta < 1.0)) return bad("--delta", "must be in (0, 1)");
    int have_z = !isnan(z), have_target = !isnan(target);
    if (have_z == have_target)
        return bad(have_z ? "--noise-multiplier and --target-epsilon" : "--noise-multiplier or --target-epsilon",
                   have_z ? "cannot both be given: pick one" : "is required (give exactly one of them)");
    if (have_target && !(target > 0.0)) return bad("--target-epsilon", "must be > 0");
    int conv = strcmp(conv_name, "classic") == 0 ? FED_RDP_CONVERSION_CLASSIC : FED_RDP_CONVERSION_IMPROVED;
    if (shares > 1000000) return bad("--secure-clients", "must be at most 1000000");
    if (shares && dim == 0) return bad("--dim", "is required with --secure-clients (the model's parameter count)");
    if (!shares && dim) return bad("--dim", "needs --secure-clients");
    if (timing && shares) return bad("--timing", "times the sampled Gaussian accountant; drop --secure-clients");

    double q = (double)batch / (double)n;
    double steps_d = ceil(epochs * (double)n / (double)batch);
    if (steps_d > 1e15) return bad("--epochs", "gives too many steps (more than 1e15)");
    long steps = (long)steps_d;

    mech mc = {q, delta, steps, conv, (int)shares, (int)bits, (double)dim};
    char zbuf[64] = "";
    if (have_target) {
        double zc;
        if ((rc = mech_calibrate(&mc, target, &zc)))
            return cli_fail("privacy", "cannot reach --target-epsilon", rc);
        if ((rc = printable_z(zc, &mc, target, zbuf, sizeof zbuf, &z)))
            return cli_fail("privacy", "accountant", rc);
    }
    double eps, order;
    if ((rc = mech_epsilon(&mc, z, &eps, &order)))
        return cli_fail("privacy", "accountant", rc);
    printf("steps: %ld\n", steps);
    printf("sampling_rate: %.10g\n", q);
    if (have_target) printf("noise_multiplier: %s\n", zbuf);
    printf("epsilon: %.6f\n", eps);
    printf("order: %g\n", order);
    if (timing) {
        /* the time for one epsilon of 10^4 composed steps at this q and z, best of 20 */
        double best = INFINITY, e;
        for (int i = 0; i < 20; i++) {
            double t0 = cli_now();
            if ((rc = fed_dp_epsilon(q, z, 10000, delta, conv, NULL, 0, &e, NULL)))
                return cli_fail("privacy", "accountant", rc);
            best = fmin(best, cli_now() - t0);
        }
        printf("accountant_ms: %.3f\n", best * 1e3);
    }
    return 0;
}
