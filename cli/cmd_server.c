/* federate server --config server.yaml: the coordinator of a networked
 * federation. The same round driver as `federate run`, with client daemons
 * over authenticated TLS instead of threads. Prints a line per round and ends
 * with run_id, bytes_up, bytes_down and final_accuracy. SIGINT/SIGTERM stop
 * after the round in progress; run the same command again to resume. */
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include "args.h"
#include "common.h"
#include "federate/dashboard.h"
#include "federate/net.h"

/* The lead adds this to cli/common.h. */
int cmd_server(int argc, char **argv);

static fed_coordinator *volatile the_coordinator;
static void on_signal(int sig) {
    (void)sig;
    fed_coordinator_request_stop(the_coordinator);
}

static void on_round(void *ctx, const fed_config *cfg, const fed_round_report *r) {
    fed_dashboard_live_round(ctx, cfg, r);   /* NULL without --dashboard: a no-op */
    const fed_round_metrics *m = &r->m;
    char acc[32] = "-";
    if (!isnan(m->test_accuracy)) snprintf(acc, sizeof acc, "%.2f%%", 100 * m->test_accuracy);
    char dp[32] = "";
    if (!isnan(m->epsilon)) snprintf(dp, sizeof dp, "  eps %.3f", m->epsilon);
    printf("round %3d/%d  test_acc %7s  train_loss %.4f  clients %d/%d (%d dropped)  up %lld B  down %lld B  %.1fs%s\n",
           m->round, cfg->num_rounds, acc, m->train_loss_mean, m->finished, m->selected, m->dropped,
           (long long)m->bytes_up, (long long)m->bytes_down, m->wall_s, dp);
    fflush(stdout);
}

int cmd_server(int argc, char **argv) {
    const char *config = NULL, *listen = NULL, *db = NULL, *allow = NULL, *port_file = NULL, *model_out = NULL;
    const char *sets[34] = {NULL};
    const char *dashboard = NULL;
    int plaintext = 0, dashboard_public = 0;
    const arg_spec specs[] = {
        {"config", ARG_STRING, &config, "run config plus a server: section (required)", NO_RANGE, NULL},
        {"set", ARG_STRLIST, sets, "override a run config key: --set key=value (repeatable)", NO_RANGE, NULL},
        {"listen", ARG_STRING, &listen, "HOST:PORT to serve on (overrides server.listen)", NO_RANGE, NULL},
        {"db", ARG_STRING, &db, "experiment store (overrides server.store)", NO_RANGE, NULL},
        {"allow-list", ARG_STRING, &allow, "enrolled client keys (overrides server.allow_list)", NO_RANGE, NULL},
        {"port-file", ARG_STRING, &port_file, "write the bound port here (overrides server.port_file)", NO_RANGE, NULL},
        {"model-out", ARG_STRING, &model_out, "save the final model here (overrides server.model_out)", NO_RANGE, NULL},
        {"insecure-plaintext", ARG_FLAG, &plaintext, "serve plain HTTP without TLS (loopback only; tests)", NO_RANGE, NULL},
        {"dashboard", ARG_STRING, &dashboard, "also serve the live dashboard (read-only) on HOST:PORT", NO_RANGE, NULL},
        {"dashboard-public", ARG_FLAG, &dashboard_public, "allow a non-loopback dashboard address", NO_RANGE, NULL},
        ARG_END,
    };
    int rc = args_parse("server", "--config server.yaml [FLAGS]", specs, argc, argv, 2, NULL, 0, NULL);
    if (rc) return rc > 0 ? 0 : 2;
    if (!config) {
        fprintf(stderr, "federate server: --config is required (a run config with a server: section)\n");
        return 2;
    }
    fed_config cfg;
    fed_server_opts so;
    fed_config_default(&cfg);
    fed_server_opts_default(&so);
    if ((rc = fed_server_config_load(config, &cfg, &so))) return cli_fail("server", "bad config", rc);
    for (int i = 0; sets[i]; i++)
        if ((rc = fed_config_set_assignment(&cfg, sets[i]))) return cli_fail("server", "bad --set", rc);
#define OVR(flag, field)                                                                   \
    if (flag) {                                                                            \
        if (strlen(flag) >= sizeof so.field) {                                             \
            fprintf(stderr, "federate server: --%s is too long\n", #field);               \
            return 2;                                                                      \
        }                                                                                  \
        snprintf(so.field, sizeof so.field, "%s", flag);                                   \
    }
    OVR(listen, listen)
    OVR(db, store)
    OVR(allow, allow_list)
    OVR(port_file, port_file)
    OVR(model_out, model_out)
#undef OVR
    so.insecure_plaintext = plaintext;
    if ((rc = fed_config_validate(&cfg))) return cli_fail("server", "bad config", rc);
    fed_coordinator *co = NULL;
    if ((rc = fed_coordinator_start(&co, &cfg, &so))) return cli_fail("server", "cannot start", rc);
    the_coordinator = co;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);
    printf("federate server: %s on %s://%s (port %d), %d clients, %d per round, %d rounds, model %s, strategy %s\n",
           cfg.dataset, plaintext ? "http" : "https", so.listen, fed_coordinator_port(co), cfg.num_clients,
           fed_config_clients_per_round(&cfg), cfg.num_rounds, cfg.model, cfg.strategy);
    fflush(stdout);
    /* the dashboard reads the coordinator's store; it starts no runs of its own */
    fed_dashboard *dash = NULL;
    if (dashboard) {
        fed_dashboard_opts dopts = {dashboard, so.store, dashboard_public, 1};
        if ((rc = fed_dashboard_start(&dash, &dopts))) {
            fed_coordinator_free(co);
            return cli_fail("server", "cannot start the dashboard", rc);
        }
        fprintf(stderr, "dashboard: http://%s/ (port %d)\n", dashboard, fed_dashboard_port(dash));
        fed_dashboard_live_begin(dash, &cfg, 0, NULL);
    }
    fed_run_result res;
    rc = fed_coordinator_run(co, on_round, dash, &res);
    fed_dashboard_live_end(dash, rc, rc ? NULL : &res);
    fed_dashboard_free(dash);
    the_coordinator = NULL;
    if (rc) {
        int r = cli_fail("server", "the run failed", rc);
        fed_coordinator_free(co);
        fed_run_result_free(&res);
        return r;
    }
    fed_coordinator_free(co);
    if (res.stopped) printf("stopped after round %d; run the same command again to resume\n", res.rounds_done);
    printf("run_id: %lld\n", (long long)res.run_id);
    printf("rounds: %d\n", res.rounds_done);
    printf("bytes_up: %lld\n", (long long)res.bytes_up);
    printf("bytes_down: %lld\n", (long long)res.bytes_down);
    printf("final_accuracy: %.2f\n", 100 * res.final_accuracy);
    cli_print_privacy(&cfg, res.epsilon);
    fed_run_result_free(&res);
    return 0;
}
