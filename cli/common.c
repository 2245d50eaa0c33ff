/* Helpers shared by the CLI subcommands: timing, errors, model construction,
 * and the terminal progress bar. */
#include "common.h"
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double cli_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int cli_fail(const char *cmd, const char *what, int rc) {
    const char *detail = fed_last_error();
    fprintf(stderr, "federate %s: %s: %s%s%s\n", cmd, what, fed_strerror(rc), *detail ? ": " : "", detail);
    return 1;
}

int cli_model_for(const char *cmd, const char *name, int c, int h, int w, int classes, const char *hidden,
                  const char *norm, fed_model **out) {
    fed_model_opts o;
    fed_model_opts_default(&o);
    o.in_c = c;
    o.in_h = h;
    o.in_w = w;
    o.num_classes = classes;
    if (hidden && *hidden) {
        const char *p = hidden;
        while (*p) {
            char *end;
            long v = strtol(p, &end, 10);
            if (end == p || v <= 0 || v > 1 << 20 || o.n_hidden >= 8 || (*end && *end != ',')) {
                fprintf(stderr, "federate %s: invalid value '%s' for --hidden: expected up to 8 positive sizes like 200,200\n",
                        cmd, hidden);
                return 1;
            }
            o.hidden[o.n_hidden++] = (int)v;
            p = *end ? end + 1 : end;
        }
    }
    if (norm && strcmp(norm, "group") == 0) o.norm = FED_NORM_GROUP;
    int rc = fed_model_create(out, name, &o);
    if (rc) return cli_fail(cmd, "cannot build the model", rc);
    return 0;
}

void cli_progress_init(cli_progress *p, const char *label) {
    p->enabled = isatty(STDOUT_FILENO);
    p->start = cli_now();
    p->label = label;
}

void cli_progress_update(cli_progress *p, long done, long total, const char *extra) {
    if (!p->enabled || total <= 0) return;
    int width = 30, filled = (int)(width * done / total);
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < filled ? '#' : '.';
    bar[width] = '\0';
    double el = cli_now() - p->start;
    double eta = done > 0 ? el * (double)(total - done) / (double)done : 0;
    printf("\r%s [%s] %ld/%ld %s eta %.0fs   ", p->label, bar, done, total, extra ? extra : "", eta);
    fflush(stdout);
}

void cli_progress_clear(cli_progress *p) {
    if (!p->enabled) return;
    printf("\r%*s\r", 100, "");
    fflush(stdout);
}

void cli_print_privacy(const fed_config *cfg, double epsilon) {
    if (strcmp(cfg->dp_mode, "none") == 0 && !(epsilon > 0)) return;
    /* the guarantee as the accountant computed it, never a formula */
    printf("epsilon: %.4f\n", epsilon);
    printf("delta: %g\n", cfg->dp_delta);
}
