/* `federate export`: a run's global model out of the store, as the safetensors
 * bytes the driver serialized (PyTorch state_dict names), checked to parse. */
#include <stdio.h>
#include <stdlib.h>
#include "federate/error.h"
#include "federate/report.h"
#include "federate/safetensors.h"
#include "report/chart.h"

int fed_report_export(fed_store *s, int64_t run_id, int round, const char *path, int *round_out) {
    if (!s || !path || !*path) return fed_error(FED_EINVAL, "export: NULL store or empty output path");
    if (round < 0) return fed_error(FED_EINVAL, "export: round %d: expected a positive round", round);
    fed_run_info info;
    int rc = fed_store_get_run(s, run_id, &info);
    if (rc) return rc;
    fed_run_info_free(&info);
    void *buf = NULL;
    size_t len = 0;
    int got = round;
    if (round > 0) {
        if ((rc = fed_store_load_round_model(s, run_id, round, &buf, &len))) return rc;
    } else {
        /* the final model is the newest one stored: the checkpoint, or the last
         * evaluated round's model when that is newer (checkpoint_every: 0) */
        int ck_round = -1, *rounds = NULL, nr = 0;
        void *ck = NULL;
        size_t ck_len = 0;
        rc = fed_store_load_checkpoint(s, run_id, &ck_round, &ck, &ck_len, NULL, NULL);
        if (rc && rc != FED_ENOTFOUND) return rc;
        if (rc) ck_round = -1;
        if ((rc = fed_store_round_model_rounds(s, run_id, &rounds, &nr))) {
            free(ck);
            return rc;
        }
        int last = nr ? rounds[nr - 1] : -1;
        free(rounds);
        if (ck_round < 0 && last < 0) {
            free(ck);
            return fed_error(FED_ENOTFOUND, "%s: run %lld has no stored model (no round finished)", fed_store_path(s),
                             (long long)run_id);
        }
        if (last > ck_round) {
            free(ck);
            if ((rc = fed_store_load_round_model(s, run_id, last, &buf, &len))) return rc;
            got = last;
        } else {
            buf = ck;
            len = ck_len;
            got = ck_round;
        }
    }
    fed_st_file *f = NULL;
    if ((rc = fed_st_parse(buf, len, &f))) {
        char why[512];
        snprintf(why, sizeof why, "%s", fed_last_error());
        free(buf);
        return fed_error(rc, "%s: the stored model of run %lld (round %d) is not valid safetensors: %s",
                         fed_store_path(s), (long long)run_id, got, why);
    }
    fed_st_close(f);
    rc = write_whole_file(path, buf, len);
    free(buf);
    if (!rc && round_out) *round_out = got;
    return rc;
}
