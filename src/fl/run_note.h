/* What both round drivers (driver.c, async_driver.c) record when a run stops early or fails. */
#ifndef FEDERATE_FL_RUN_NOTE_H
#define FEDERATE_FL_RUN_NOTE_H
#include <stdint.h>
#include "federate/store.h"

/* target_accuracy reached at `at` (unit: "round" or "server step"): a line on
 * stderr and the run's "target" note in the store (when there is one). */
void fed_run_note_target(fed_store *store, int64_t run_id, const char *unit, int at, double accuracy, double target);

/* A run that ends with error rc: status "failed" and the error message in the
 * store; fed_last_error() still names the failure afterwards. */
void fed_run_note_failure(fed_store *store, int64_t run_id, int rc);
#endif
