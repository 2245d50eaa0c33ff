/* federate export: a run's global model (final, or after --round N) from the
 * experiment store as safetensors with PyTorch state_dict names. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include "args.h"
#include "common.h"
#include "federate/report.h"

/* The lead adds this to cli/common.h. */
int cmd_export(int argc, char **argv);

int cmd_export(int argc, char **argv) {
    const char *db = "federate.db", *out = NULL;
    int round = 0;
    const arg_spec specs[] = {
        {"round", ARG_INT, &round, "the model after this round (default: the final model)", 1, 1 << 30, NULL},
        {"db", ARG_STRING, &db, "experiment store (default ./federate.db)", NO_RANGE, NULL},
        {"out", ARG_STRING, &out, "output FILE.safetensors (required)", NO_RANGE, NULL},
        ARG_END,
    };
    const char *pos[2];
    int npos = 0;
    int rc = args_parse("export", "RUN_ID [--round N] [--db PATH] --out FILE.safetensors", specs, argc, argv, 2, pos, 1,
                        &npos);
    if (rc) return rc > 0 ? 0 : 2;
    if (npos != 1) {
        fprintf(stderr, "federate export: expected one run id (see federate export --help)\n");
        return 2;
    }
    char *end;
    errno = 0;
    long long id = strtoll(pos[0], &end, 10);
    if (!*pos[0] || *end || errno || id <= 0) {
        fprintf(stderr, "federate export: invalid run id '%s': expected a positive integer\n", pos[0]);
        return 2;
    }
    if (!out || !*out) {
        fprintf(stderr, "federate export: --out FILE.safetensors is required\n");
        return 2;
    }
    fed_store *s;
    if ((rc = fed_store_open_readonly(&s, db))) return cli_fail("export", "cannot open the experiment store", rc);
    int got = 0;
    rc = fed_report_export(s, (int64_t)id, round, out, &got);
    fed_store_close(s);
    if (rc) return cli_fail("export", "cannot export the model", rc);
    printf("run: %lld\nround: %d\nout: %s\n", id, got, out);
    return 0;
}
