/* federate runs: reads the experiment store (never writes it) — list the runs,
 * show one run round by round, or compare the accuracy curves of several. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "args.h"
#include "common.h"

#define RUNS_USAGE "list|show|compare [ARGS] [--db PATH]"
#define MAX_COMPARE 16

static void usage(FILE *f) {
    fprintf(f,
            "usage: federate runs " RUNS_USAGE "\n\n"
            "  federate runs list [--db PATH]                 the recorded runs, newest first\n"
            "  federate runs show ID [--db PATH] [--clients]  one run, round by round\n"
            "  federate runs compare ID ID [ID...] [--db PATH]\n"
            "                                                 test accuracy of runs side by side\n\n"
            "The default database is ./federate.db.\n");
}

/* Accuracy as a percentage with two decimals, "-" when not evaluated. */
static const char *pct(char *buf, size_t cap, double frac) {
    if (isnan(frac)) snprintf(buf, cap, "-");
    else snprintf(buf, cap, "%.2f", 100.0 * frac);
    return buf;
}

static const char *num(char *buf, size_t cap, const char *fmt, double v) {
    if (isnan(v)) snprintf(buf, cap, "-");
    else snprintf(buf, cap, fmt, v);
    return buf;
}

static int parse_id(const char *s, int64_t *id) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno || v <= 0) {
        fprintf(stderr, "federate runs: invalid run id '%s': expected a positive integer\n", s);
        return -1;
    }
    *id = (int64_t)v;
    return 0;
}

/* Read-only so that looking at runs never creates an empty database. */
static int open_db(const char *db, fed_store **s) {
    int rc = fed_store_open_readonly(s, db);
    if (rc) return cli_fail("runs", "cannot open the experiment store", rc);
    return 0;
}

static int get_run(fed_store *s, const char *db, int64_t id, fed_run_info *info) {
    int rc = fed_store_get_run(s, id, info);
    if (rc == FED_ENOTFOUND) {
        fprintf(stderr, "federate runs: no run %" PRId64 " in %s\n", id, db);
        return 1;
    }
    if (rc) return cli_fail("runs", "cannot read the run", rc);
    return 0;
}

static int runs_list(const char *db) {
    fed_store *s;
    if (open_db(db, &s)) return 1;
    fed_run_info *runs = NULL;
    int n = 0, rc = fed_store_list_runs(s, &runs, &n);
    fed_store_close(s);
    if (rc) return cli_fail("runs", "cannot list the runs", rc);
    if (n == 0) {
        printf("no runs in %s\n", db);
        free(runs);
        return 0;
    }
    printf("%5s  %-24s  %-11s  %-20s  %6s  %9s\n", "id", "name", "status", "started", "rounds", "final acc");
    for (int i = 0; i < n; i++) {
        char acc[32];
        printf("%5" PRId64 "  %-24s  %-11s  %-20s  %6d  %9s\n", runs[i].id, runs[i].name, runs[i].status,
               runs[i].started, runs[i].rounds_done, pct(acc, sizeof acc, runs[i].final_accuracy));
        fed_run_info_free(&runs[i]);
    }
    free(runs);
    return 0;
}

static void print_clients(const fed_client_metrics *c, int n, int round) {
    printf("\nclients of round %d\n", round);
    printf("%7s  %7s  %8s  %6s  %10s  %9s  %12s  %12s\n", "client", "dropped", "examples", "steps", "train_loss",
           "local_acc", "bytes_up", "bytes_down");
    for (int i = 0; i < n; i++) {
        char tl[32], la[32];
        printf("%7d  %7s  %8ld  %6ld  %10s  %9s  %12" PRId64 "  %12" PRId64 "\n", c[i].client,
               c[i].dropped ? "yes" : "no", c[i].num_examples, c[i].steps, num(tl, sizeof tl, "%.4f", c[i].train_loss),
               pct(la, sizeof la, c[i].local_accuracy), c[i].bytes_up, c[i].bytes_down);
    }
}

static int runs_show(const char *db, int64_t id, int with_clients) {
    fed_store *s;
    if (open_db(db, &s)) return 1;
    fed_run_info info;
    fed_round_metrics *r = NULL;
    fed_client_metrics *c = NULL;
    int nr = 0, nc = 0, status = 1, rc;
    if (get_run(s, db, id, &info)) goto out;
    printf("run %" PRId64 ": %s\n", info.id, info.name);
    printf("status:  %s\n", info.status);
    printf("started: %s\n", info.started);
    printf("ended:   %s\n", info.ended[0] ? info.ended : "-");
    char *err = NULL;
    /* a failed run keeps its reason as an attribute; show it where it matters */
    if (fed_store_run_get_text(s, id, "error", &err) == 0) printf("error:   %s\n", err);
    free(err);
    char *priv = NULL;
    if (fed_store_run_get_text(s, id, "privacy", &priv) == 0) printf("privacy: %s\n", priv);
    free(priv);
    priv = NULL;
    if (fed_store_run_get_text(s, id, "budget", &priv) == 0) printf("budget:  %s\n", priv);
    free(priv);
    fed_run_info_free(&info);
    if ((rc = fed_store_get_rounds(s, id, &r, &nr))) { cli_fail("runs", "cannot read the rounds", rc); goto out; }
    if (nr == 0) {
        printf("\nno rounds recorded\n");
        status = 0;
        goto out;
    }
    /* columns that only some runs have: privacy spent, the clip, simulated time */
    int has_eps = 0, has_clip = 0, has_sim = 0;
    for (int i = 0; i < nr; i++) {
        has_eps |= !isnan(r[i].epsilon);
        has_clip |= !isnan(r[i].clip);
        has_sim |= !isnan(r[i].sim_time_s);
    }
    printf("\n%5s  %8s  %9s  %-19s  %9s  %-14s  %12s  %12s  %8s", "round", "test_acc", "test_loss",
           "train_loss", "local_acc", "sel/fin/drop", "bytes_up", "bytes_down", "wall_s");
    if (has_sim) printf("  %10s  %11s", "sim_time_s", "sim_total_s");
    double sim_total = 0;
    if (has_eps) printf("  %9s", "epsilon");
    if (has_clip) printf("  %8s", "clip");
    printf("\n");
    for (int i = 0; i < nr; i++) {
        char ta[32], tl[32], tm[32], ts[32], trl[80], la[32], sfd[48], ws[32];
        num(tm, sizeof tm, "%.4f", r[i].train_loss_mean);
        num(ts, sizeof ts, "%.4f", r[i].train_loss_std);
        if (isnan(r[i].train_loss_mean)) snprintf(trl, sizeof trl, "-");
        else snprintf(trl, sizeof trl, "%s ± %s", tm, ts);
        snprintf(sfd, sizeof sfd, "%d/%d/%d", r[i].selected, r[i].finished, r[i].dropped);
        /* "±" is two bytes but one column: pad by hand so the table stays aligned */
        int pad = 19 - (int)strlen(trl) + (isnan(r[i].train_loss_mean) ? 0 : 1);
        printf("%5d  %8s  %9s  %s%*s  %9s  %-14s  %12" PRId64 "  %12" PRId64 "  %8s", r[i].round,
               pct(ta, sizeof ta, r[i].test_accuracy), num(tl, sizeof tl, "%.4f", r[i].test_loss), trl,
               pad > 0 ? pad : 0, "", pct(la, sizeof la, r[i].local_accuracy), sfd, r[i].bytes_up, r[i].bytes_down,
               num(ws, sizeof ws, "%.2f", r[i].wall_s));
        char ex[32];
        if (has_sim) {
            sim_total += isnan(r[i].sim_time_s) ? 0 : r[i].sim_time_s;
            printf("  %10s  %11.1f", num(ex, sizeof ex, "%.1f", r[i].sim_time_s), sim_total);
        }
        if (has_eps) printf("  %9s", num(ex, sizeof ex, "%.4f", r[i].epsilon));
        if (has_clip) printf("  %8s", num(ex, sizeof ex, "%.4g", r[i].clip));
        printf("\n");
    }
    if (with_clients) {
        int last = r[nr - 1].round;
        if ((rc = fed_store_get_clients(s, id, last, &c, &nc))) {
            cli_fail("runs", "cannot read the client metrics", rc);
            goto out;
        }
        if (nc == 0) printf("\nno client metrics recorded for round %d\n", last);
        else print_clients(c, nc, last);
    }
    status = 0;
out:
    free(r);
    free(c);
    fed_store_close(s);
    return status;
}

/* The first round whose test accuracy reaches target, or 0. */
static int round_to_reach(const fed_round_metrics *r, int n, double target) {
    for (int i = 0; i < n; i++)
        if (!isnan(r[i].test_accuracy) && r[i].test_accuracy >= target - 1e-12) return r[i].round;
    return 0;
}

static int runs_compare(const char *db, const int64_t *ids, int k) {
    fed_store *s;
    if (open_db(db, &s)) return 1;
    fed_run_info info[MAX_COMPARE];
    fed_round_metrics *r[MAX_COMPARE] = {0};
    int nr[MAX_COMPARE] = {0}, got = 0, status = 1, rc;
    for (; got < k; got++) {
        if (get_run(s, db, ids[got], &info[got])) goto out;
        if ((rc = fed_store_get_rounds(s, ids[got], &r[got], &nr[got]))) {
            fed_run_info_free(&info[got]);
            cli_fail("runs", "cannot read the rounds", rc);
            goto out;
        }
    }
    int max_round = 0;
    for (int j = 0; j < k; j++)
        if (nr[j] && r[j][nr[j] - 1].round > max_round) max_round = r[j][nr[j] - 1].round;

    printf("test accuracy (%%) by round\n%5s", "round");
    for (int j = 0; j < k; j++) {
        char h[32];
        snprintf(h, sizeof h, "run %" PRId64, ids[j]);
        printf("  %10s", h);
    }
    printf("\n");
    int cursor[MAX_COMPARE] = {0};
    for (int round = 1; round <= max_round; round++) {
        char line[64 + 12 * MAX_COMPARE];
        int len = snprintf(line, sizeof line, "%5d", round), any = 0;
        for (int j = 0; j < k; j++) {
            /* rounds come sorted, so one cursor per run walks them in step */
            while (cursor[j] < nr[j] && r[j][cursor[j]].round < round) cursor[j]++;
            double acc = NAN;
            if (cursor[j] < nr[j] && r[j][cursor[j]].round == round) acc = r[j][cursor[j]].test_accuracy;
            any |= !isnan(acc);
            char a[32];
            len += snprintf(line + len, sizeof line - (size_t)len, "  %10s", pct(a, sizeof a, acc));
        }
        if (any) printf("%s\n", line);  /* skip rounds no run evaluated */
    }

    printf("\n%10s  %-24s  %9s  %9s  %10s  %8s  %8s\n", "run", "name", "final acc", "best acc", "best round",
           "to 97%", "to 99%");
    for (int j = 0; j < k; j++) {
        double best = NAN;
        int best_round = 0;
        for (int i = 0; i < nr[j]; i++)
            if (!isnan(r[j][i].test_accuracy) && (isnan(best) || r[j][i].test_accuracy > best)) {
                best = r[j][i].test_accuracy;
                best_round = r[j][i].round;
            }
        char h[32], fa[32], ba[32], br[16], r97[16], r99[16];
        snprintf(h, sizeof h, "run %" PRId64, ids[j]);
        int t97 = round_to_reach(r[j], nr[j], 0.97), t99 = round_to_reach(r[j], nr[j], 0.99);
        snprintf(br, sizeof br, best_round ? "%d" : "-", best_round);
        snprintf(r97, sizeof r97, t97 ? "%d" : "-", t97);
        snprintf(r99, sizeof r99, t99 ? "%d" : "-", t99);
        printf("%10s  %-24s  %9s  %9s  %10s  %8s  %8s\n", h, info[j].name, pct(fa, sizeof fa, info[j].final_accuracy),
               pct(ba, sizeof ba, best), br, r97, r99);
    }
    status = 0;
out:
    for (int j = 0; j < got; j++) {
        fed_run_info_free(&info[j]);
        free(r[j]);
    }
    fed_store_close(s);
    return status;
}

int cmd_runs(int argc, char **argv) {
    if (argc < 3) {
        usage(stderr);
        return 2;
    }
    const char *sub = argv[2];
    if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0 || strcmp(sub, "help") == 0) {
        usage(stdout);
        return 0;
    }
    const char *db = "federate.db";
    int with_clients = 0;
    const char *pos[MAX_COMPARE + 1];
    int npos = 0, rc;
    if (strcmp(sub, "list") == 0) {
        const arg_spec specs[] = {
            {"db", ARG_STRING, &db, "experiment store (default ./federate.db)", NO_RANGE, NULL},
            ARG_END,
        };
        rc = args_parse("runs list", "[--db PATH]", specs, argc, argv, 3, pos, 0, &npos);
        if (rc) return rc > 0 ? 0 : 2;
        return runs_list(db);
    }
    if (strcmp(sub, "show") == 0) {
        const arg_spec specs[] = {
            {"db", ARG_STRING, &db, "experiment store (default ./federate.db)", NO_RANGE, NULL},
            {"clients", ARG_FLAG, &with_clients, "also list each client of the last round", NO_RANGE, NULL},
            ARG_END,
        };
        rc = args_parse("runs show", "ID [--db PATH] [--clients]", specs, argc, argv, 3, pos, 1, &npos);
        if (rc) return rc > 0 ? 0 : 2;
        int64_t id;
        if (npos != 1) {
            fprintf(stderr, "federate runs show: expected a run id (see federate runs show --help)\n");
            return 2;
        }
        if (parse_id(pos[0], &id)) return 2;
        return runs_show(db, id, with_clients);
    }
    if (strcmp(sub, "compare") == 0) {
        const arg_spec specs[] = {
            {"db", ARG_STRING, &db, "experiment store (default ./federate.db)", NO_RANGE, NULL},
            ARG_END,
        };
        rc = args_parse("runs compare", "ID ID [ID...] [--db PATH]", specs, argc, argv, 3, pos, MAX_COMPARE, &npos);
        if (rc) return rc > 0 ? 0 : 2;
        if (npos < 2) {
            fprintf(stderr, "federate runs compare: expected at least two run ids (see federate runs compare --help)\n");
            return 2;
        }
        int64_t ids[MAX_COMPARE];
        for (int i = 0; i < npos; i++)
            if (parse_id(pos[i], &ids[i])) return 2;
        return runs_compare(db, ids, npos);
    }
    fprintf(stderr, "federate runs: unknown subcommand '%s' (expected list, show or compare)\n", sub);
    usage(stderr);
    return 2;
}
