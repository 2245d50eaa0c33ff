/* `federate report`: one self-contained HTML file about a run for reviewers and
 * compliance (what was trained, how well, on whose updates, what left the
 * clients, what privacy guarantee holds): inline CSS and inline SVG charts, no
 * script, no external resource. Everything read from the store is escaped. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "federate/error.h"
#include "federate/federate.h"
#include "federate/report.h"
#include "report/chart.h"

#define MAX_CLIENT_ROWS 500

static void esc(FILE *f, const char *s) {
    if (!s) return;
    for (; *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&#39;", f); break;
        default:
            if ((unsigned char)*s < 0x20 && *s != '\n' && *s != '\t') fputc('?', f);
            else fputc(*s, f);
        }
    }
}

/* "<td>value</td>" with NAN as a dash. */
static void td_num(FILE *f, const char *fmt, double v) {
    fputs("<td>", f);
    if (isnan(v)) fputs("&ndash;", f);
    else fprintf(f, fmt, v);
    fputs("</td>", f);
}

static void bytes_h(char *buf, size_t cap, double b) {
    const char *u[] = {"B", "KB", "MB", "GB", "TB"};
    int i = 0;
    while (b >= 1000 && i < 4) b /= 1000, i++;
    snprintf(buf, cap, i ? "%.2f %s" : "%.0f %s", b, u[i]);
}

static void kv(FILE *f, const char *k, const char *v) {
    fprintf(f, "<tr><th>%s</th><td>", k);
    esc(f, v);
    fputs("</td></tr>\n", f);
}

static const char css[] =
    "body{font-family:'DejaVu Sans',Helvetica,Arial,sans-serif;margin:2em auto;max-width:1000px;color:#222;"
    "padding:0 1em;line-height:1.4}"
    "h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.8em}"
    "table{border-collapse:collapse;margin:.6em 0;font-size:.9em}"
    "th,td{border:1px solid #ddd;padding:3px 8px;text-align:right}th{background:#f4f4f4}"
    "table.kv th{text-align:left;width:16em}table.kv td{text-align:left}"
    "pre{background:#f7f7f7;border:1px solid #ddd;padding:.8em;overflow:auto;font-size:.85em}"
    ".note{color:#555;font-size:.9em}.bad{color:#b00}.ok{color:#070}"
    "svg{display:block;margin:.6em 0;max-width:100%;height:auto}"
    ".scroll{max-height:420px;overflow:auto}";

typedef struct client_stat {
    int selected, finished;
    double acc_sum, loss_sum;
    int acc_n;
} client_stat;

static void svg_lines(FILE *f, const char *title, const char *ylabel, const series *s, int ns, int from_zero) {
    canvas c;
    canvas_svg_begin(&c, f, 720, 400);
    chart_lines(&c, 720, 400, title, "round", ylabel, s, ns, from_zero);
    canvas_svg_end(&c);
}

static void write_report(FILE *f, const run_data *d, int64_t id) {
    const fed_config *cfg = &d->cfg;
    char buf[512], b2[64];
    int dp = d->privacy != NULL || strcmp(cfg->dp_mode, "none") != 0;
    double eps = NAN;
    for (int i = d->nr - 1; i >= 0 && isnan(eps); i--) eps = d->rounds[i].epsilon;
    int le = run_data_last_eval(d);

    fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n", f);
    fprintf(f, "<title>federate run %" PRId64 ": ", id);
    esc(f, d->info.name);
    fprintf(f, "</title>\n<style>%s</style>\n</head>\n<body>\n", css);
    fprintf(f, "<h1>federate run %" PRId64 ": ", id);
    esc(f, d->info.name);
    fputs("</h1>\n", f);
    time_t now = time(NULL);
    struct tm tm;
    char gen[32] = "";
    if (gmtime_r(&now, &tm)) strftime(gen, sizeof gen, "%Y-%m-%dT%H:%M:%SZ", &tm);
    fprintf(f, "<p class=\"note\">Report generated %s by federate %s from the experiment store.</p>\n", gen,
            FEDERATE_VERSION);

    /* ---- summary ---- */
    fputs("<h2>Summary</h2>\n<table class=\"kv\">\n", f);
    kv(f, "Status", d->info.status);
    kv(f, "Started", d->info.started);
    kv(f, "Ended", d->info.ended[0] ? d->info.ended : "-");
    if (d->error) {
        fputs("<tr><th>Error</th><td class=\"bad\">", f);
        esc(f, d->error);
        fputs("</td></tr>\n", f);
    }
    snprintf(buf, sizeof buf, "%d", d->nr ? d->rounds[d->nr - 1].round : 0);
    kv(f, "Rounds recorded", buf);
    if (le >= 0) snprintf(buf, sizeof buf, "%.2f%% (round %d)", 100 * d->rounds[le].test_accuracy, d->rounds[le].round);
    else snprintf(buf, sizeof buf, "not evaluated");
    kv(f, "Final test accuracy", buf);
    if (le >= 0) {
        snprintf(buf, sizeof buf, "%.4f", d->rounds[le].test_loss);
        kv(f, "Final test loss", buf);
    }
    if (d->cfg_ok) {
        kv(f, "Data set", cfg->dataset);
        snprintf(buf, sizeof buf, "%s%s%s", cfg->model, cfg->hidden[0] ? ", hidden " : "", cfg->hidden);
        kv(f, "Model", buf);
        kv(f, "Strategy", cfg->strategy);
        snprintf(buf, sizeof buf, "%d clients, %d per round (%s selection), %d local epochs, batch %d, lr %g",
                 cfg->num_clients, fed_config_clients_per_round(cfg), cfg->client_selection, cfg->local_epochs,
                 cfg->batch_size, cfg->learning_rate);
        kv(f, "Federation", buf);
        snprintf(buf, sizeof buf, "%" PRIu64, cfg->seed);
        kv(f, "Seed", buf);
    } else {
        fputs("<tr><th>Configuration</th><td class=\"bad\">the stored configuration does not parse with this "
              "federate; see it verbatim below</td></tr>\n", f);
    }
    kv(f, "Software", "federate " FEDERATE_VERSION);
    fputs("</table>\n", f);

    /* ---- privacy ---- */
    fputs("<h2>Privacy guarantee</h2>\n<table class=\"kv\">\n", f);
    if (dp) {
        kv(f, "Differential privacy", "on");
        kv(f, "Mechanism", d->privacy ? d->privacy : cfg->dp_mode);
        if (!isnan(eps)) snprintf(buf, sizeof buf, "(&epsilon; = %.4f, &delta; = %g)", eps, cfg->dp_delta);
        else snprintf(buf, sizeof buf, "(&epsilon; not recorded, &delta; = %g)", cfg->dp_delta);
        fprintf(f, "<tr><th>Guarantee spent</th><td>%s after %d rounds</td></tr>\n", buf,
                d->nr ? d->rounds[d->nr - 1].round : 0);
        kv(f, "Accountant", "RDP accountant, dp_accounting orders");
        if (cfg->dp_target_epsilon > 0) {
            snprintf(buf, sizeof buf, "%g", cfg->dp_target_epsilon);
            kv(f, "Target epsilon (budget)", buf);
        }
        if (d->budget) kv(f, "Budget note", d->budget);
    } else {
        fputs("<tr><th>Differential privacy</th><td class=\"bad\">off: no formal privacy guarantee for the "
              "clients' data beyond not sharing it</td></tr>\n", f);
    }
    if (cfg->sa_enabled) {
        snprintf(buf, sizeof buf, "on (%s graph, %d-bit quantization, clipping range %g, tolerates a drop-out fraction of %g)",
                 cfg->sa_graph, cfg->sa_bits, cfg->sa_clip, cfg->sa_dropout);
        fputs("<tr><th>Secure aggregation</th><td class=\"ok\">", f);
        esc(f, buf);
        fputs(": the server learned only the sum of the updates</td></tr>\n", f);
    } else {
        kv(f, "Secure aggregation", "off: the server saw each client's update");
    }
    fputs("</table>\n", f);

    /* ---- what left the clients ---- */
    double up = 0, down = 0;
    for (int i = 0; i < d->nr; i++) up += (double)d->rounds[i].bytes_up, down += (double)d->rounds[i].bytes_down;
    fputs("<h2>What left the clients</h2>\n<p>Only model updates left the clients; their training data never did. "
          "Clients reported their example counts, training loss and local test accuracy.</p>\n<table class=\"kv\">\n",
          f);
    kv(f, "Update encoding", cfg->compression[0] ? cfg->compression : "none (raw float32)");
    bytes_h(b2, sizeof b2, up);
    kv(f, "Bytes up (all rounds)", b2);
    bytes_h(b2, sizeof b2, down);
    kv(f, "Bytes down (all rounds)", b2);
    fputs("</table>\n", f);
    if (d->nr > 0) {
        double *cat = malloc(3 * (size_t)d->nr * sizeof *cat);
        if (cat) {
            double *a = cat + d->nr, *b = a + d->nr;
            for (int i = 0; i < d->nr; i++)
                cat[i] = d->rounds[i].round, a[i] = (double)d->rounds[i].bytes_up, b[i] = (double)d->rounds[i].bytes_down;
            canvas c;
            canvas_svg_begin(&c, f, 720, 360);
            chart_bars2(&c, 720, 360, "Bytes per round", "round", "bytes", cat, a, b, d->nr, "up (clients to server)",
                        "down (server to clients)");
            canvas_svg_end(&c);
            free(cat);
        }
    }

    /* ---- curves ---- */
    fputs("<h2>Accuracy and loss</h2>\n", f);
    if (d->nr > 0) {
        double *x = malloc(4 * (size_t)d->nr * sizeof *x);
        if (x) {
            double *acc = x + d->nr, *tl = acc + d->nr, *trl = tl + d->nr;
            for (int i = 0; i < d->nr; i++) {
                x[i] = d->rounds[i].round;
                acc[i] = 100 * d->rounds[i].test_accuracy;
                tl[i] = d->rounds[i].test_loss;
                trl[i] = d->rounds[i].train_loss_mean;
            }
            series sa = {"test accuracy", x, acc, d->nr};
            svg_lines(f, "Test accuracy per round", "test accuracy (%)", &sa, 1, 0);
            series sl[2] = {{"test loss (global model)", x, tl, d->nr}, {"train loss (mean over clients)", x, trl, d->nr}};
            svg_lines(f, "Loss per round", "loss", sl, 2, 1);
            free(x);
        }
        fputs("<div class=\"scroll\"><table>\n<tr><th>round</th><th>test acc (%)</th><th>test loss</th>"
              "<th>train loss (mean &plusmn; sd)</th><th>local acc (%)</th><th>selected</th><th>finished</th>"
              "<th>dropped</th><th>bytes up</th><th>bytes down</th>",
              f);
        if (dp) fputs("<th>&epsilon;</th><th>clip</th>", f);
        fputs("</tr>\n", f);
        for (int i = 0; i < d->nr; i++) {
            const fed_round_metrics *r = &d->rounds[i];
            fprintf(f, "<tr><td>%d</td>", r->round);
            td_num(f, "%.2f", 100 * r->test_accuracy);
            td_num(f, "%.4f", r->test_loss);
            if (isnan(r->train_loss_mean)) fputs("<td>&ndash;</td>", f);
            else fprintf(f, "<td>%.4f &plusmn; %.4f</td>", r->train_loss_mean, r->train_loss_std);
            td_num(f, "%.2f", 100 * r->local_accuracy);
            fprintf(f, "<td>%d</td><td>%d</td><td>%d</td><td>%" PRId64 "</td><td>%" PRId64 "</td>", r->selected,
                    r->finished, r->dropped, r->bytes_up, r->bytes_down);
            if (dp) {
                td_num(f, "%.4f", r->epsilon);
                td_num(f, "%.4g", r->clip);
            }
            fputs("</tr>\n", f);
        }
        fputs("</table></div>\n", f);
    } else {
        fputs("<p>No rounds were recorded.</p>\n", f);
    }

    /* ---- clients ---- */
    fputs("<h2>Clients</h2>\n", f);
    int maxc = -1;
    for (int i = 0; i < d->nr; i++)
        for (int k = 0; k < d->nclients[i]; k++)
            if (d->clients[i][k].client > maxc) maxc = d->clients[i][k].client;
    client_stat *cs = maxc >= 0 ? calloc((size_t)maxc + 1, sizeof *cs) : NULL;
    if (cs) {
        for (int i = 0; i < d->nr; i++)
            for (int k = 0; k < d->nclients[i]; k++) {
                const fed_client_metrics *m = &d->clients[i][k];
                if (m->client < 0) continue;
                client_stat *c = &cs[m->client];
                c->selected++;
                if (!m->dropped) {
                    c->finished++;
                    if (isfinite(m->train_loss)) c->loss_sum += m->train_loss;
                }
                if (isfinite(m->local_accuracy)) c->acc_sum += m->local_accuracy, c->acc_n++;
            }
        int participants = 0;
        double *mean_loss = malloc(((size_t)maxc + 1) * sizeof *mean_loss);
        double lo = INFINITY, hi = -INFINITY;
        int nl = 0;
        for (int c = 0; c <= maxc; c++) {
            if (!cs[c].selected) continue;
            participants++;
            if (cs[c].finished && mean_loss) {
                double v = cs[c].loss_sum / cs[c].finished;
                if (isfinite(v)) {
                    mean_loss[nl++] = v;
                    lo = fmin(lo, v), hi = fmax(hi, v);
                }
            }
        }
        fprintf(f, "<p>%d distinct clients took part", participants);
        if (d->cfg_ok) fprintf(f, " (of %d)", cfg->num_clients);
        fputs(".</p>\n", f);
        if (mean_loss && nl > 0) {
            if (hi - lo < 1e-9) hi = lo + 1e-3;
            canvas c;
            canvas_svg_begin(&c, f, 720, 360);
            chart_histogram(&c, 720, 360, "Distribution of clients' mean train loss", "mean train loss", mean_loss, nl,
                            20, lo, hi);
            canvas_svg_end(&c);
        }
        free(mean_loss);
        fputs("<div class=\"scroll\"><table>\n<tr><th>client</th><th>selected</th><th>finished</th><th>dropped</th>"
              "<th>mean local acc (%)</th><th>mean train loss</th></tr>\n",
              f);
        int rows = 0;
        for (int c = 0; c <= maxc && rows < MAX_CLIENT_ROWS; c++) {
            if (!cs[c].selected) continue;
            rows++;
            fprintf(f, "<tr><td>%d</td><td>%d</td><td>%d</td><td>%d</td>", c, cs[c].selected, cs[c].finished,
                    cs[c].selected - cs[c].finished);
            td_num(f, "%.2f", cs[c].acc_n ? 100 * cs[c].acc_sum / cs[c].acc_n : NAN);
            td_num(f, "%.4f", cs[c].finished ? cs[c].loss_sum / cs[c].finished : NAN);
            fputs("</tr>\n", f);
        }
        fputs("</table></div>\n", f);
        if (participants > rows)
            fprintf(f, "<p class=\"note\">The first %d of %d clients are listed.</p>\n", rows, participants);
        free(cs);
    } else {
        fputs("<p>No client metrics were recorded.</p>\n", f);
    }

    /* ---- confusion ---- */
    fputs("<h2>Confusion matrix of the final model</h2>\n", f);
    if (d->confusion) {
        canvas c;
        canvas_svg_begin(&c, f, 560, 600);
        chart_confusion(&c, 560, 600, "Confusion matrix (rows: true label, columns: predicted)", d->confusion, d->k);
        canvas_svg_end(&c);
    } else {
        fputs("<p>No confusion matrix was recorded.</p>\n", f);
    }

    /* ---- config ---- */
    fputs("<h2>Configuration</h2>\n<p class=\"note\">As stored with the run (YAML).</p>\n<pre>", f);
    esc(f, d->info.config_yaml);
    fputs("</pre>\n</body>\n</html>\n", f);
}

int fed_report_html(fed_store *s, int64_t run_id, const char *path) {
    if (!s || !path || !*path) return fed_error(FED_EINVAL, "report: NULL store or empty output path");
    run_data d;
    int rc = run_data_load(s, run_id, &d);
    if (rc) return rc;
    if (d.nr == 0) {
        run_data_free(&d);
        return fed_error(FED_ENOTFOUND, "%s: run %lld recorded no rounds: nothing to report", fed_store_path(s),
                         (long long)run_id);
    }
    char *html = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&html, &len);
    if (!f) {
        run_data_free(&d);
        return fed_error(FED_ENOMEM, "report: out of memory");
    }
    write_report(f, &d, run_id);
    int bad = ferror(f);
    if (fclose(f) != 0) bad = 1;
    run_data_free(&d);
    if (bad) {
        free(html);
        return fed_error(FED_ENOMEM, "report: out of memory writing the HTML");
    }
    rc = write_whole_file(path, html, len);
    free(html);
    return rc;
}
