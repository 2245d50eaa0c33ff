/* federate dashboard [--db PATH] [--listen HOST:PORT]: the web dashboard without
 * a run of its own: past runs from the experiment store, and a form that starts
 * a simulation (one at a time) and stops it. Serves until Ctrl-C. See
 * docs/dashboard.md. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "args.h"
#include "common.h"
#include "federate/dashboard.h"

/* The lead adds this to cli/common.h: */
int cmd_dashboard(int argc, char **argv);

static volatile sig_atomic_t quit = 0;
static void on_signal(int sig) { (void)sig; quit = 1; }

int cmd_dashboard(int argc, char **argv) {
    const char *db = "federate.db", *listen = "127.0.0.1:8080";
    int pub = 0, read_only = 0;
    const arg_spec specs[] = {
        {"db", ARG_STRING, &db, "experiment store (default ./federate.db; created by the first run started here)", NO_RANGE, NULL},
        {"listen", ARG_STRING, &listen, "HOST:PORT to serve on (default 127.0.0.1:8080; port 0 picks a free one)", NO_RANGE, NULL},
        {"public", ARG_FLAG, &pub, "allow a non-loopback --listen address (plain HTTP, no login)", NO_RANGE, NULL},
        {"read-only", ARG_FLAG, &read_only, "show runs only: no starting or stopping runs from the page", NO_RANGE, NULL},
        ARG_END,
    };
    int npos = 0;
    int rc = args_parse("dashboard", "[--db PATH] [--listen HOST:PORT] [FLAGS]", specs, argc, argv, 2, NULL, 0, &npos);
    if (rc) return rc > 0 ? 0 : 2;
    fed_dashboard_opts o = {listen, db, pub, read_only};
    fed_dashboard *d = NULL;
    if ((rc = fed_dashboard_start(&d, &o))) return cli_fail("dashboard", "cannot start the dashboard", rc);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    const char *colon = strrchr(listen, ':');
    printf("dashboard: http://%.*s:%d/\n", (int)(colon - listen), listen, fed_dashboard_port(d));
    printf("store: %s\n", db);
    fflush(stdout);
    while (!quit) usleep(100000);
    fed_dashboard_free(d);
    return 0;
}
