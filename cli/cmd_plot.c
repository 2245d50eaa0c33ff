/* federate plot: PNG and SVG plots of one or more runs (accuracy and loss per
 * round overlaid, confusion matrices, clients' local accuracy, privacy vs
 * accuracy), one path printed per file written. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "args.h"
#include "common.h"
#include "federate/report.h"

/* The lead adds this to cli/common.h. */
int cmd_plot(int argc, char **argv);

#define MAX_PLOT_RUNS 32

static void on_file(void *ctx, const char *text, int is_note) {
    (void)ctx;
    if (is_note) fprintf(stderr, "federate plot: note: %s\n", text);
    else printf("%s\n", text);
}

int cmd_plot(int argc, char **argv) {
    const char *db = "federate.db", *out = NULL;
    const arg_spec specs[] = {
        {"db", ARG_STRING, &db, "experiment store (default ./federate.db)", NO_RANGE, NULL},
        {"out", ARG_STRING, &out, "output directory, created if missing (required)", NO_RANGE, NULL},
        ARG_END,
    };
    const char *pos[MAX_PLOT_RUNS + 1];
    int npos = 0;
    int rc = args_parse("plot", "RUN_ID [RUN_ID ...] [--db PATH] --out DIR", specs, argc, argv, 2, pos, MAX_PLOT_RUNS,
                        &npos);
    if (rc) return rc > 0 ? 0 : 2;
    if (npos < 1) {
        fprintf(stderr, "federate plot: expected at least one run id (see federate plot --help)\n");
        return 2;
    }
    int64_t ids[MAX_PLOT_RUNS];
    for (int i = 0; i < npos; i++) {
        char *end;
        errno = 0;
        long long id = strtoll(pos[i], &end, 10);
        if (!*pos[i] || *end || errno || id <= 0) {
            fprintf(stderr, "federate plot: invalid run id '%s': expected a positive integer\n", pos[i]);
            return 2;
        }
        ids[i] = (int64_t)id;
    }
    if (!out || !*out) {
        fprintf(stderr, "federate plot: --out DIR is required\n");
        return 2;
    }
    fed_store *s;
    if ((rc = fed_store_open_readonly(&s, db))) return cli_fail("plot", "cannot open the experiment store", rc);
    /* check every run before creating anything */
    for (int i = 0; i < npos; i++) {
        fed_run_info info;
        if ((rc = fed_store_get_run(s, ids[i], &info))) {
            fed_store_close(s);
            return cli_fail("plot", "cannot read the run", rc);
        }
        fed_run_info_free(&info);
    }
    struct stat sb;
    if (stat(out, &sb) != 0) {
        if (mkdir(out, 0777) != 0) {
            fprintf(stderr, "federate plot: cannot create the directory %s: %s\n", out, strerror(errno));
            fed_store_close(s);
            return 1;
        }
    } else if (!S_ISDIR(sb.st_mode)) {
        fprintf(stderr, "federate plot: %s exists and is not a directory\n", out);
        fed_store_close(s);
        return 1;
    }
    rc = fed_report_plot(s, ids, npos, out, on_file, NULL);
    fed_store_close(s);
    if (rc) return cli_fail("plot", "cannot draw the plots", rc);
    return 0;
}
