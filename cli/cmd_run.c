/* federate run CONFIG.yaml: a simulated federation on this machine, recorded in
 * the experiment store. Prints a line (or a JSON object) per round and ends with
 * run_id, final_accuracy, bytes_up and bytes_down. Ctrl-C stops after the round
 * in progress (checkpointed); `--resume ID` continues a run. */
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <jansson.h>
#include "args.h"
#include "common.h"
#include "federate/dashboard.h"
#include "federate/fl.h"

static volatile int stop_requested = 0;
static volatile sig_atomic_t signals_seen = 0;
static void on_sigint(int sig) { (void)sig; stop_requested = 1; signals_seen++; }

typedef struct run_ctx {
    int json;
    cli_progress bar;
    fed_dashboard *dash;   /* --dashboard: fed from the callbacks below */
} run_ctx;

static void fmt_bytes(char *buf, size_t size, int64_t b) {
    if (b >= 1000000000) snprintf(buf, size, "%.2f GB", b / 1e9);
    else if (b >= 1000000) snprintf(buf, size, "%.1f MB", b / 1e6);
    else snprintf(buf, size, "%.1f kB", b / 1e3);
}

static void on_client(void *vctx, int round, int done, int total) {
    run_ctx *c = vctx;
    fed_dashboard_live_client(c->dash, round, done, total);
    char extra[48];
    snprintf(extra, sizeof extra, "round %d clients", round);
    cli_progress_update(&c->bar, done, total, extra);
}

static void on_round(void *vctx, const fed_config *cfg, const fed_round_report *r) {
    run_ctx *c = vctx;
    const fed_round_metrics *m = &r->m;
    fed_dashboard_live_round(c->dash, cfg, r);
    cli_progress_clear(&c->bar);
    if (c->json) {
        json_t *o = json_object();
        json_object_set_new(o, "round", json_integer(m->round));
        json_object_set_new(o, "num_rounds", json_integer(cfg->num_rounds));
        json_object_set_new(o, "test_accuracy", isnan(m->test_accuracy) ? json_null() : json_real(100 * m->test_accuracy));
        json_object_set_new(o, "test_loss", isnan(m->test_loss) ? json_null() : json_real(m->test_loss));
        json_object_set_new(o, "train_loss_mean", isnan(m->train_loss_mean) ? json_null() : json_real(m->train_loss_mean));
        json_object_set_new(o, "train_loss_std", isnan(m->train_loss_std) ? json_null() : json_real(m->train_loss_std));
        json_object_set_new(o, "local_accuracy", isnan(m->local_accuracy) ? json_null() : json_real(100 * m->local_accuracy));
        json_object_set_new(o, "selected", json_integer(m->selected));
        json_object_set_new(o, "finished", json_integer(m->finished));
        json_object_set_new(o, "dropped", json_integer(m->dropped));
        json_object_set_new(o, "bytes_up", json_integer(m->bytes_up));
        json_object_set_new(o, "bytes_down", json_integer(m->bytes_down));
        json_object_set_new(o, "wall_s", json_real(m->wall_s));
        if (!isnan(m->epsilon)) json_object_set_new(o, "epsilon", json_real(m->epsilon));
        if (!isnan(m->clip)) json_object_set_new(o, "clip", json_real(m->clip));
        char *s = json_dumps(o, JSON_COMPACT);
        if (s) { printf("%s\n", s); free(s); }
        json_decref(o);
    } else {
        char acc[32] = "-", loss[32] = "-", up[32], down[32];
        if (!isnan(m->test_accuracy)) snprintf(acc, sizeof acc, "%.2f%%", 100 * m->test_accuracy);
        if (!isnan(m->test_loss)) snprintf(loss, sizeof loss, "%.4f", m->test_loss);
        fmt_bytes(up, sizeof up, m->bytes_up);
        fmt_bytes(down, sizeof down, m->bytes_down);
        char dp[64] = "";
        if (!isnan(m->epsilon)) snprintf(dp, sizeof dp, "  eps %.3f", m->epsilon);
        if (!isnan(m->clip)) snprintf(dp + strlen(dp), sizeof dp - strlen(dp), " clip %.3g", m->clip);
        printf("round %3d/%d  test_acc %7s  test_loss %7s  train_loss %.4f±%.4f  clients %d/%d (%d dropped)  up %s  down %s  %.1fs%s\n",
               m->round, cfg->num_rounds, acc, loss, m->train_loss_mean, m->train_loss_std, m->finished, m->selected,
               m->dropped, up, down, m->wall_s, dp);
    }
    fflush(stdout);
    cli_progress_init(&c->bar, "run");
}

int cmd_run(int argc, char **argv) {
    const char *db = "federate.db", *log_format = "text";
    const char *sets[34] = {NULL};
    uint64_t resume = 0;
    int threads = -1;
    const char *dash_listen = NULL;
    int dash_public = 0, dash_keep = 0;
    static const char *const formats[] = {"text", "json", NULL};
    const arg_spec specs[] = {
        {"set", ARG_STRLIST, sets, "override a config key: --set key=value (repeatable)", NO_RANGE, NULL},
        {"db", ARG_STRING, &db, "experiment store (default ./federate.db)", NO_RANGE, NULL},
        {"resume", ARG_U64, &resume, "continue run ID from its last checkpoint", NO_RANGE, NULL},
        {"threads", ARG_INT, &threads, "clients trained side by side (overrides the config)", 1, 64, NULL},
        {"log-format", ARG_STRING, &log_format, "text, or json: one object per round", NO_RANGE, formats},
        {"dashboard", ARG_STRING, &dash_listen, "serve the live dashboard on HOST:PORT (e.g. 127.0.0.1:8080; port 0: any free one)", NO_RANGE, NULL},
        {"dashboard-public", ARG_FLAG, &dash_public, "let --dashboard listen on a non-loopback address (plain HTTP, no login)", NO_RANGE, NULL},
        {"dashboard-keep", ARG_FLAG, &dash_keep, "keep serving the dashboard after the run, until Ctrl-C", NO_RANGE, NULL},
        ARG_END,
    };
    const char *pos[1] = {NULL};
    int npos = 0;
    int rc = args_parse("run", "CONFIG.yaml [--set key=value ...] [FLAGS]", specs, argc, argv, 2, pos, 1, &npos);
    if (rc) return rc > 0 ? 0 : 2;
    if (!npos && !resume) {
        fprintf(stderr, "federate run: a config file is required (or --resume ID)\n");
        return 2;
    }
    fed_config cfg;
    fed_config_default(&cfg);
    if (npos && (rc = fed_config_load(&cfg, pos[0]))) return cli_fail("run", "bad config", rc);
    for (int i = 0; sets[i]; i++)
        if ((rc = fed_config_set_assignment(&cfg, sets[i]))) return cli_fail("run", "bad --set", rc);
    if (threads > 0) cfg.threads = threads;
    if (!resume && (rc = fed_config_validate(&cfg))) return cli_fail("run", "bad config", rc);

    fed_store *store = NULL;
    if ((rc = fed_store_open(&store, db))) return cli_fail("run", "cannot open the experiment store", rc);
    run_ctx ctx = {strcmp(log_format, "json") == 0, {0}, NULL};
    if (dash_listen) {
        fed_dashboard_opts dopts = {dash_listen, db, dash_public, 0};
        if ((rc = fed_dashboard_start(&ctx.dash, &dopts))) {
            fed_store_close(store);
            return cli_fail("run", "cannot start the dashboard", rc);
        }
        const char *colon = strrchr(dash_listen, ':');
        /* stderr: stdout may be one JSON object per line */
        fprintf(stderr, "dashboard: http://%.*s:%d/\n", (int)(colon - dash_listen), dash_listen, fed_dashboard_port(ctx.dash));
        fed_dashboard_live_begin(ctx.dash, &cfg, (int64_t)resume, &stop_requested);
    }
    cli_progress_init(&ctx.bar, "run");
    if (ctx.json) ctx.bar.enabled = 0;
    fed_run_opts ro = {0};
    ro.store = store;
    ro.resume_run = (int64_t)resume;
    ro.on_round = on_round;
    ro.on_client = on_client;
    ro.ctx = &ctx;
    ro.stop = &stop_requested;
    signal(SIGINT, on_sigint);
    signal(SIGTERM, on_sigint);
    if (!ctx.json) {
        if (resume) printf("resuming run %llu from its last checkpoint\n", (unsigned long long)resume);
        else
            printf("federate run: %s, %d clients (%s), %d per round, %d rounds, model %s, strategy %s\n", cfg.dataset,
                   cfg.num_clients, cfg.data_dir[0] ? cfg.data_dir : cfg.data_distribution,
                   fed_config_clients_per_round(&cfg), cfg.num_rounds, cfg.model, cfg.strategy);
        fflush(stdout);
    }
    fed_run_result res;
    rc = fed_run(&cfg, &ro, &res);
    cli_progress_clear(&ctx.bar);
    fed_store_close(store);
    if (ctx.dash) {
        fed_dashboard_live_end(ctx.dash, rc, &res);
        /* a stop from the page keeps serving; Ctrl-C ends it */
        if (dash_keep && !signals_seen) {
            fprintf(stderr, "dashboard: the run has ended; still serving until Ctrl-C\n");
            while (!signals_seen) usleep(100000);
        }
        fed_dashboard_free(ctx.dash);
        ctx.dash = NULL;
    }
    if (rc) {
        fed_run_result_free(&res);
        return cli_fail("run", "the run failed", rc);
    }
    if (res.stopped) printf("stopped after round %d; continue with: federate run --resume %lld --db %s\n", res.rounds_done,
                            (long long)res.run_id, db);
    if (!ctx.json && res.confusion) {
        int k = res.num_classes;
        printf("confusion matrix of the final model (rows: true label, columns: predicted)\n     ");
        for (int j = 0; j < k; j++) printf("%6d", j);
        printf("\n");
        for (int i = 0; i < k; i++) {
            printf("%4d ", i);
            for (int j = 0; j < k; j++) printf("%6lld", (long long)res.confusion[(size_t)i * k + j]);
            printf("\n");
        }
    }
    printf("run_id: %lld\n", (long long)res.run_id);
    printf("final_accuracy: %.2f\n", 100 * res.final_accuracy);
    printf("bytes_up: %lld\n", (long long)res.bytes_up);
    printf("bytes_down: %lld\n", (long long)res.bytes_down);
    if (cfg.target_accuracy > 0) printf("target_round: %d\n", res.target_round);   /* 0: not reached */
    if (!isnan(res.sim_time_s) && res.sim_time_s > 0) printf("sim_time_s: %.1f\n", res.sim_time_s);
    cli_print_privacy(&cfg, res.epsilon);
    fed_run_result_free(&res);
    return res.stopped ? 130 : 0;
}
