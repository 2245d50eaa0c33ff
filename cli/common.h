/* Helpers shared by the CLI subcommands. */
#ifndef FEDERATE_CLI_COMMON_H
#define FEDERATE_CLI_COMMON_H
#include <stdio.h>
#include "federate/federate.h"

double cli_now(void);
/* Prints "federate CMD: what: detail" for a failed library call; returns 1. */
int cli_fail(const char *cmd, const char *what, int rc);
/* A DP run's closing `epsilon:` and `delta:` lines (nothing for a run without DP). */
void cli_print_privacy(const fed_config *cfg, double epsilon);
/* Builds a zoo model whose input matches the data set (c, h, w). hidden is a
 * comma-separated list of mlp hidden sizes or NULL. */
int cli_model_for(const char *cmd, const char *name, int c, int h, int w, int classes, const char *hidden,
                  const char *norm, fed_model **out);

/* A one-line progress bar on a terminal (nothing otherwise). */
typedef struct cli_progress {
    int enabled;
    double start;
    const char *label;
} cli_progress;
void cli_progress_init(cli_progress *p, const char *label);
void cli_progress_update(cli_progress *p, long done, long total, const char *extra);
void cli_progress_clear(cli_progress *p);

int cmd_run(int argc, char **argv);
int cmd_partition(int argc, char **argv);
int cmd_runs(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_evaluate(int argc, char **argv);
int cmd_privacy(int argc, char **argv);
int cmd_bench_compress(int argc, char **argv);
int cmd_bench_secagg(int argc, char **argv);
int cmd_bench_coordinator(int argc, char **argv);
int cmd_secagg_params(int argc, char **argv);
int cmd_server(int argc, char **argv);
int cmd_client(int argc, char **argv);
int cmd_certs(int argc, char **argv);
int cmd_keygen(int argc, char **argv);
int cmd_enroll(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_plot(int argc, char **argv);
int cmd_dashboard(int argc, char **argv);

#endif
