/* federate report: a self-contained HTML report of one run (config, curves,
 * clients, privacy guarantee, what left the clients) for reviewers. */
#include <errno.h>
#include <stdlib.h>
#include "args.h"
#include "common.h"
#include "federate/report.h"

/* The lead adds this to cli/common.h. */
int cmd_report(int argc, char **argv);

int cmd_report(int argc, char **argv) {
    const char *db = "federate.db", *out = NULL;
    const arg_spec specs[] = {
        {"db", ARG_STRING, &db, "experiment store (default ./federate.db)", NO_RANGE, NULL},
        {"out", ARG_STRING, &out, "output FILE.html (required)", NO_RANGE, NULL},
        ARG_END,
    };
    const char *pos[2];
    int npos = 0;
    int rc = args_parse("report", "RUN_ID [--db PATH] --out FILE.html", specs, argc, argv, 2, pos, 1, &npos);
    if (rc) return rc > 0 ? 0 : 2;
    if (npos != 1) {
        fprintf(stderr, "federate report: expected one run id (see federate report --help)\n");
        return 2;
    }
    char *end;
    errno = 0;
    long long id = strtoll(pos[0], &end, 10);
    if (!*pos[0] || *end || errno || id <= 0) {
        fprintf(stderr, "federate report: invalid run id '%s': expected a positive integer\n", pos[0]);
        return 2;
    }
    if (!out || !*out) {
        fprintf(stderr, "federate report: --out FILE.html is required\n");
        return 2;
    }
    fed_store *s;
    if ((rc = fed_store_open_readonly(&s, db))) return cli_fail("report", "cannot open the experiment store", rc);
    rc = fed_report_html(s, (int64_t)id, out);
    fed_store_close(s);
    if (rc) return cli_fail("report", "cannot write the report", rc);
    printf("run: %lld\nout: %s\n", id, out);
    return 0;
}
