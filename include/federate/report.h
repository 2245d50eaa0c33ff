/* Seeing and sharing a run's results from the experiment store: its global
 * model as a PyTorch-loadable safetensors file, a self-contained HTML report
 * for reviewers (config, curves, clients, privacy, what left the clients) and
 * PNG/SVG plots drawn with cairo. Every file is written whole (temp file and
 * rename): on failure the output path keeps what it had. */
#ifndef FEDERATE_REPORT_H
#define FEDERATE_REPORT_H
#include <stdint.h>
#include "federate/store.h"

/* Writes the global model of run_id after `round` (0 = the final model: the
 * latest one stored) to path, as safetensors with state_dict names.
 * *round_out (may be NULL) receives the round. FED_ENOTFOUND for an unknown
 * run, a run without a stored model, or a round without one (the message lists
 * the rounds that have one). */
int fed_report_export(fed_store *s, int64_t run_id, int round, const char *path, int *round_out);

/* The HTML report of one run: one file, no external resources, no script. */
int fed_report_html(fed_store *s, int64_t run_id, const char *path);

/* Called for each file written (is_note 0, the path) and for each plot skipped
 * (is_note 1, why). */
typedef void (*fed_report_cb)(void *ctx, const char *text, int is_note);

/* PNG and SVG plots of runs into the existing directory dir: accuracy and loss
 * per round (runs overlaid), privacy_accuracy (final epsilon vs final accuracy,
 * skipped with a note when no run has DP), and for each run ID
 * confusion_ID (its final model) and client_accuracy_ID (local accuracy of
 * its last evaluated round's clients). Each as NAME.png and NAME.svg. At most
 * 32 runs. */
int fed_report_plot(fed_store *s, const int64_t *run_ids, int n, const char *dir, fed_report_cb cb, void *ctx);

#endif
