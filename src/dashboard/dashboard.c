/* The live dashboard's server: embedded page and scripts, JSON under /api/ read
 * from the experiment store (one read-only SQLite connection; WAL lets it read
 * while the run writes), the live run's progress (fed by `federate run` or by a
 * run this server started in a background thread), and Prometheus /metrics.
 * Endpoints: docs/dashboard.md. */
#include <arpa/inet.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include "dashboard/assets.h"
#include "federate/dashboard.h"
#include "federate/net.h"
#include "federate/error.h"

#define MAX_BODY (64 * 1024)

enum { LIVE_NONE = 0, LIVE_EXTERNAL = 1, LIVE_BACKGROUND = 2 };

struct fed_dashboard {
    struct MHD_Daemon *d;
    int port, read_only;
    char store_path[1024];
    char host[160];               /* the listen address as given, for Host checks */
    pthread_mutex_t mu;           /* everything below, and the read connection */
    fed_store *ro;                /* opened lazily (the file may not exist yet) */
    /* the live run */
    int kind, active;
    int64_t run_id, baseline_id, resume_id;
    fed_config cfg;
    char status[16], error[512];
    int round, clients_done, clients_total;
    fed_round_metrics last;
    double last_acc, last_loss;   /* of the last evaluated round */
    int have_last;
    int64_t rounds_completed, bytes_up, bytes_down;
    double dur_sum, started;
    volatile int *ext_stop;
    int stop_asked;
    /* a run started from the page */
    pthread_t th;
    int th_joinable;
    volatile int bg_stop;
};

typedef struct conn {
    char *body;
    size_t len;
    int too_big;
} conn;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static json_t *num_or_null(double v) { return isfinite(v) ? json_real(v) : json_null(); }

/* ---- responses --------------------------------------------------------------------- */

static enum MHD_Result send_buf(struct MHD_Connection *c, unsigned status, const char *ctype, const void *data,
                                size_t len, int persistent) {
    struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)data,
                                                             persistent ? MHD_RESPMEM_PERSISTENT : MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", ctype);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    enum MHD_Result ok = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result send_json(struct MHD_Connection *c, unsigned status, json_t *j) {
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!s) return send_buf(c, 500, "application/json", "{\"error\":\"out of memory\"}", 25, 1);
    enum MHD_Result r = send_buf(c, status, "application/json", s, strlen(s), 0);
    free(s);
    return r;
}

static enum MHD_Result send_error(struct MHD_Connection *c, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static enum MHD_Result send_error(struct MHD_Connection *c, unsigned status, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return send_json(c, status, json_pack("{s:s}", "error", msg));
}

/* ---- the store (called with d->mu held) ---------------------------------------------- */

static fed_store *store_ro(fed_dashboard *d) {
    if (!d->ro && fed_store_open_readonly(&d->ro, d->store_path)) d->ro = NULL;
    return d->ro;
}

static int64_t newest_run_id(fed_dashboard *d) {
    fed_store *s = store_ro(d);
    fed_run_info *runs = NULL;
    int n = 0;
    int64_t id = 0;
    if (s && fed_store_list_runs(s, &runs, &n) == 0) {
        for (int i = 0; i < n; i++) {
            if (runs[i].id > id) id = runs[i].id;
            fed_run_info_free(&runs[i]);
        }
        free(runs);
    }
    return id;
}

/* The driver does not hand out its run id before the end, so the live run is
 * the first run recorded after it was announced (with its name). */
static void resolve_live_id(fed_dashboard *d) {
    if (!d->active || d->run_id) return;
    if (d->resume_id) {
        d->run_id = d->resume_id;
        return;
    }
    fed_store *s = store_ro(d);
    fed_run_info *runs = NULL;
    int n = 0;
    if (!s || fed_store_list_runs(s, &runs, &n)) return;
    int64_t best = 0;
    for (int i = 0; i < n; i++) {
        if (runs[i].id > d->baseline_id && strcmp(runs[i].name, d->cfg.name) == 0 && (!best || runs[i].id < best))
            best = runs[i].id;
        fed_run_info_free(&runs[i]);
    }
    free(runs);
    d->run_id = best;
}

static json_t *run_info_json(const fed_run_info *r) {
    return json_pack("{s:I, s:s, s:s, s:s, s:s?, s:i, s:o}", "id", (json_int_t)r->id, "name", r->name, "status",
                     r->status, "started", r->started, "ended", r->ended[0] ? r->ended : NULL, "rounds_done",
                     r->rounds_done, "final_accuracy", num_or_null(r->final_accuracy));
}

/* Every config key with its value, typed. */
static json_t *config_json(const fed_config *cfg) {
    json_t *o = json_object();
    size_t nk = 0;
    const fed_config_key *keys = fed_config_keys(&nk);
    char buf[1024];
    for (size_t i = 0; i < nk; i++) {
        if (fed_config_format_value(cfg, &keys[i], buf, sizeof buf)) continue;
        json_t *v;
        switch (keys[i].type) {
        case FED_CONFIG_INT: v = json_integer(strtoll(buf, NULL, 10)); break;
        case FED_CONFIG_U64: v = json_integer((json_int_t)strtoull(buf, NULL, 10)); break;
        case FED_CONFIG_DOUBLE: v = num_or_null(strtod(buf, NULL)); break;
        case FED_CONFIG_BOOL: v = json_boolean(strcmp(buf, "true") == 0); break;
        default: v = json_string(buf);
        }
        json_object_set_new(o, keys[i].name, v);
    }
    return o;
}

static json_t *round_json(const fed_round_metrics *m) {
    return json_pack("{s:i, s:o, s:o, s:o, s:o, s:o, s:i, s:i, s:i, s:I, s:I, s:f, s:o, s:o, s:o}", "round", m->round,
                     "test_accuracy", num_or_null(m->test_accuracy), "test_loss", num_or_null(m->test_loss),
                     "train_loss_mean", num_or_null(m->train_loss_mean), "train_loss_std", num_or_null(m->train_loss_std),
                     "local_accuracy", num_or_null(m->local_accuracy), "selected", m->selected, "finished", m->finished,
                     "dropped", m->dropped, "bytes_up", (json_int_t)m->bytes_up, "bytes_down", (json_int_t)m->bytes_down,
                     "wall_s", isfinite(m->wall_s) ? m->wall_s : 0.0, "epsilon", num_or_null(m->epsilon), "clip",
                     num_or_null(m->clip), "sim_time_s", num_or_null(m->sim_time_s));
}

static int parse_id(const char *s, size_t len, int64_t *out) {
    if (len == 0 || len > 18) return -1;
    int64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

static json_t *live_json(fed_dashboard *d);

/* GET /api/runs/ID[/rounds|/clients] (d->mu held). */
static enum MHD_Result h_run(struct MHD_Connection *c, fed_dashboard *d, int64_t id, const char *rest) {
    fed_store *s = store_ro(d);
    if (!s) return send_error(c, 404, "no run %" PRId64 ": the store %s does not exist yet", id, d->store_path);
    fed_run_info info;
    memset(&info, 0, sizeof info);
    if (fed_store_get_run(s, id, &info)) return send_error(c, 404, "no run %" PRId64 " in %s", id, d->store_path);
    json_t *j = NULL;
    if (!*rest) {
        j = run_info_json(&info);
        fed_config cfg;
        fed_config_default(&cfg);
        if (info.config_yaml && fed_config_load_string(&cfg, info.config_yaml, strlen(info.config_yaml)) == 0) {
            json_object_set_new(j, "config", config_json(&cfg));
            json_object_set_new(j, "num_rounds", json_integer(cfg.num_rounds));
            json_object_set_new(j, "target_epsilon", cfg.dp_target_epsilon > 0 ? json_real(cfg.dp_target_epsilon) : json_null());
        }
        json_object_set_new(j, "config_yaml", json_string(info.config_yaml ? info.config_yaml : ""));
        static const char *const texts[] = {"privacy", "budget", "error", "confusion"};
        for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
            char *v = NULL;
            if (fed_store_run_get_text(s, id, texts[i], &v) == 0 && v) {
                json_t *parsed = i == 3 ? json_loads(v, 0, NULL) : NULL;
                json_object_set_new(j, texts[i], parsed ? parsed : json_string(v));
            }
            free(v);
        }
        json_object_set_new(j, "live", json_boolean(d->active && d->run_id == id));
    } else if (strcmp(rest, "/rounds") == 0) {
        fed_round_metrics *r = NULL;
        int n = 0;
        if (fed_store_get_rounds(s, id, &r, &n) == 0) {
            j = json_array();
            for (int i = 0; i < n; i++) json_array_append_new(j, round_json(&r[i]));
        }
        free(r);
    } else if (strcmp(rest, "/clients") == 0) {
        const char *rs = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "round");
        int64_t round = 0;
        if (rs && parse_id(rs, strlen(rs), &round)) {
            fed_run_info_free(&info);
            return send_error(c, 400, "round must be a round number, not '%.40s'", rs);
        }
        if (rs) {
            fed_client_metrics *cm = NULL;
            int n = 0;
            if (fed_store_get_clients(s, id, (int)round, &cm, &n) == 0) {
                j = json_array();
                for (int i = 0; i < n; i++)
                    json_array_append_new(j, json_pack("{s:i, s:i, s:b, s:I, s:I, s:o, s:o, s:I, s:I}", "round", cm[i].round,
                                                       "client", cm[i].client, "dropped", cm[i].dropped, "num_examples",
                                                       (json_int_t)cm[i].num_examples, "steps", (json_int_t)cm[i].steps,
                                                       "train_loss", num_or_null(cm[i].train_loss), "local_accuracy",
                                                       num_or_null(cm[i].local_accuracy), "bytes_up",
                                                       (json_int_t)cm[i].bytes_up, "bytes_down",
                                                       (json_int_t)cm[i].bytes_down));
            }
            free(cm);
        } else {
            /* participation over the whole run: per client, rounds selected,
             * dropped, and the latest local accuracy */
            fed_round_metrics *r = NULL;
            int nr = 0;
            if (fed_store_get_rounds(s, id, &r, &nr) == 0) {
                json_t *by = json_object();
                for (int i = 0; i < nr; i++) {
                    fed_client_metrics *cm = NULL;
                    int n = 0;
                    if (fed_store_get_clients(s, id, r[i].round, &cm, &n)) continue;
                    for (int k = 0; k < n; k++) {
                        char key[24];
                        snprintf(key, sizeof key, "%d", cm[k].client);
                        json_t *e = json_object_get(by, key);
                        if (!e) {
                            e = json_pack("{s:i, s:i, s:i, s:i, s:I, s:n, s:n}", "client", cm[k].client, "selected", 0,
                                          "dropped", 0, "last_round", 0, "num_examples", (json_int_t)cm[k].num_examples,
                                          "local_accuracy", "train_loss");
                            json_object_set_new(by, key, e);
                        }
                        json_object_set_new(e, "selected", json_integer(json_integer_value(json_object_get(e, "selected")) + 1));
                        if (cm[k].dropped)
                            json_object_set_new(e, "dropped", json_integer(json_integer_value(json_object_get(e, "dropped")) + 1));
                        json_object_set_new(e, "last_round", json_integer(cm[k].round));
                        if (isfinite(cm[k].local_accuracy)) json_object_set_new(e, "local_accuracy", json_real(cm[k].local_accuracy));
                        if (isfinite(cm[k].train_loss)) json_object_set_new(e, "train_loss", json_real(cm[k].train_loss));
                    }
                    free(cm);
                }
                j = json_array();
                const char *key;
                json_t *v;
                json_object_foreach(by, key, v) json_array_append(j, v);
                json_decref(by);
            }
            free(r);
        }
    } else {
        fed_run_info_free(&info);
        return send_error(c, 404, "no such endpoint: GET /api/runs/%" PRId64 "%.60s", id, rest);
    }
    fed_run_info_free(&info);
    if (!j) return send_error(c, 500, "reading run %" PRId64 ": %s", id, fed_last_error());
    return send_json(c, 200, j);
}

static json_t *live_json(fed_dashboard *d) {
    resolve_live_id(d);
    json_t *j = json_pack("{s:b, s:s, s:s, s:o, s:i, s:i, s:i, s:i, s:b, s:b}", "active", d->active, "source",
                          d->kind == LIVE_EXTERNAL ? "cli" : d->kind == LIVE_BACKGROUND ? "dashboard" : "none", "status",
                          d->status[0] ? d->status : "idle", "run_id", d->run_id ? json_integer(d->run_id) : json_null(),
                          "round", d->round, "num_rounds", d->kind ? d->cfg.num_rounds : 0, "clients_done", d->clients_done,
                          "clients_total", d->clients_total, "can_start", !d->read_only && !d->active, "read_only",
                          d->read_only);
    if (d->kind) {
        json_object_set_new(j, "name", json_string(d->cfg.name));
        json_object_set_new(j, "target_epsilon", d->cfg.dp_target_epsilon > 0 ? json_real(d->cfg.dp_target_epsilon) : json_null());
        json_object_set_new(j, "elapsed_s", json_real(now_s() - d->started));
    }
    if (d->error[0]) json_object_set_new(j, "error", json_string(d->error));
    json_object_set_new(j, "charts", json_boolean(fed_dash_have_uplot));
    return j;
}

static enum MHD_Result h_get(struct MHD_Connection *c, fed_dashboard *d, const char *url) {
    if (strcmp(url, "/api/live") == 0) {
        pthread_mutex_lock(&d->mu);
        json_t *j = live_json(d);
        pthread_mutex_unlock(&d->mu);
        return send_json(c, 200, j);
    }
    if (strcmp(url, "/api/config/keys") == 0) {
        fed_config def;
        fed_config_default(&def);
        json_t *defaults = config_json(&def);
        size_t nk = 0;
        const fed_config_key *keys = fed_config_keys(&nk);
        json_t *a = json_array();
        for (size_t i = 0; i < nk; i++) {
            json_t *ch = json_null();
            if (keys[i].choices) {
                ch = json_array();
                for (int k = 0; keys[i].choices[k]; k++) json_array_append_new(ch, json_string(keys[i].choices[k]));
            }
            json_t *def_v = json_object_get(defaults, keys[i].name);
            json_array_append_new(a, json_pack("{s:s, s:s, s:o, s:O?, s:s}", "name", keys[i].name, "type",
                                               fed_config_type_name(keys[i].type), "choices", ch, "default", def_v,
                                               "help", keys[i].help ? keys[i].help : ""));
        }
        json_decref(defaults);
        return send_json(c, 200, a);
    }
    if (strcmp(url, "/api/runs") == 0) {
        pthread_mutex_lock(&d->mu);
        fed_store *s = store_ro(d);
        json_t *a = json_array();
        fed_run_info *runs = NULL;
        int n = 0;
        if (s && fed_store_list_runs(s, &runs, &n) == 0) {
            for (int i = 0; i < n; i++) {
                json_array_append_new(a, run_info_json(&runs[i]));
                fed_run_info_free(&runs[i]);
            }
            free(runs);
        }
        pthread_mutex_unlock(&d->mu);
        return send_json(c, 200, a);
    }
    if (strncmp(url, "/api/runs/", 10) == 0) {
        const char *p = url + 10, *slash = strchr(p, '/');
        size_t il = slash ? (size_t)(slash - p) : strlen(p);
        int64_t id;
        if (parse_id(p, il, &id)) return send_error(c, 400, "run id must be a number, not '%.*s'", (int)(il > 40 ? 40 : il), p);
        pthread_mutex_lock(&d->mu);
        enum MHD_Result r = h_run(c, d, id, p + il);
        pthread_mutex_unlock(&d->mu);
        return r;
    }
    return send_error(c, 404, "no such endpoint: GET %.100s (see docs/dashboard.md)", url);
}

/* ---- /metrics ------------------------------------------------------------------------- */

static enum MHD_Result h_metrics(struct MHD_Connection *c, fed_dashboard *d) {
    size_t cap = 8192, o = 0;
    char *s = malloc(cap);
    if (!s) return MHD_NO;
#define P(...) o += (size_t)snprintf(s + o, o < cap ? cap - o : 0, __VA_ARGS__)
#define G(name, help, type, fmt, v) P("# HELP " name " " help "\n# TYPE " name " " type "\n" name " " fmt "\n", v)
/* Prometheus spells a missing value NaN */
#define GF(name, help, v)                                                                              \
    do {                                                                                               \
        double v_ = (v);                                                                               \
        char t_[40];                                                                                   \
        if (isfinite(v_)) snprintf(t_, sizeof t_, "%.6g", v_);                                         \
        else snprintf(t_, sizeof t_, "NaN");                                                           \
        G(name, help, "gauge", "%s", t_);                                                              \
    } while (0)
    pthread_mutex_lock(&d->mu);
    const fed_round_metrics *m = &d->last;
    int h = d->have_last;
    G("federate_run_active", "1 while a run is in progress.", "gauge", "%d", d->active);
    G("federate_round", "Current round of the live run.", "gauge", "%d", d->round);
    G("federate_rounds_completed_total", "Rounds completed by the live run(s).", "counter", "%" PRId64, d->rounds_completed);
    GF("federate_test_accuracy", "Global model's test accuracy after the last evaluated round (fraction).",
       h ? d->last_acc : NAN);
    GF("federate_test_loss", "Global model's test loss after the last evaluated round.", h ? d->last_loss : NAN);
    GF("federate_train_loss", "Mean training loss of the last round's finished clients.", h ? m->train_loss_mean : NAN);
    G("federate_bytes_up_total", "Update bytes sent by clients.", "counter", "%" PRId64, d->bytes_up);
    G("federate_bytes_down_total", "Model bytes sent to clients.", "counter", "%" PRId64, d->bytes_down);
    GF("federate_epsilon", "Privacy spent so far (epsilon at privacy.delta); NaN without DP.", h ? m->epsilon : NAN);
    G("federate_epsilon_budget", "privacy.target_epsilon (0: no budget).", "gauge", "%.6g", d->cfg.dp_target_epsilon);
    G("federate_clients_selected", "Clients selected in the last round.", "gauge", "%d", h ? m->selected : 0);
    G("federate_clients_finished", "Clients that finished the last round.", "gauge", "%d", h ? m->finished : 0);
    G("federate_clients_dropped", "Clients that dropped out of the last round.", "gauge", "%d", h ? m->dropped : 0);
    P("# HELP federate_round_duration_seconds Wall time of rounds.\n# TYPE federate_round_duration_seconds summary\n");
    P("federate_round_duration_seconds_sum %.6f\nfederate_round_duration_seconds_count %" PRId64 "\n", d->dur_sum,
      d->rounds_completed);
    G("federate_last_round_duration_seconds", "Wall time of the last round.", "gauge", "%.6f", h ? m->wall_s : 0.0);
    pthread_mutex_unlock(&d->mu);
#undef GF
#undef G
#undef P
    enum MHD_Result r = send_buf(c, 200, "text/plain; version=0.0.4", s, o < cap ? o : cap - 1, 0);
    free(s);
    return r;
}

/* ---- starting and stopping runs ------------------------------------------------------- */

static void live_reset(fed_dashboard *d, int kind, const fed_config *cfg, int64_t resume) {
    d->kind = kind;
    d->active = 1;
    d->cfg = *cfg;
    d->run_id = 0;
    d->resume_id = resume;
    d->baseline_id = newest_run_id(d);
    snprintf(d->status, sizeof d->status, "running");
    d->error[0] = '\0';
    d->round = 0;
    d->clients_done = d->clients_total = 0;
    d->have_last = 0;
    d->last_acc = d->last_loss = NAN;
    d->stop_asked = 0;
    d->started = now_s();
}

static void on_round_locked(fed_dashboard *d, const fed_round_report *r) {
    d->last = r->m;
    d->have_last = 1;
    if (isfinite(r->m.test_accuracy)) d->last_acc = r->m.test_accuracy;
    if (isfinite(r->m.test_loss)) d->last_loss = r->m.test_loss;
    d->round = r->m.round;
    d->rounds_completed++;
    d->bytes_up += r->m.bytes_up;
    d->bytes_down += r->m.bytes_down;
    if (isfinite(r->m.wall_s)) d->dur_sum += r->m.wall_s;
    d->clients_done = d->clients_total = 0;
    if (r->run_id > 0 && d->active) d->run_id = r->run_id;   /* the driver says which run it is */
    resolve_live_id(d);
}

static void on_end_locked(fed_dashboard *d, int rc, const fed_run_result *res, const char *err) {
    resolve_live_id(d);
    if (rc == 0 && res && res->run_id) d->run_id = res->run_id;
    d->active = 0;
    snprintf(d->status, sizeof d->status, "%s", rc ? "failed" : res && res->stopped ? "interrupted" : "finished");
    if (rc) snprintf(d->error, sizeof d->error, "%.40s%s%.440s", fed_strerror(rc), err && *err ? ": " : "", err ? err : "");
}

void fed_dashboard_live_begin(fed_dashboard *d, const fed_config *cfg, int64_t resume_run, volatile int *stop) {
    if (!d || !cfg) return;
    pthread_mutex_lock(&d->mu);
    live_reset(d, LIVE_EXTERNAL, cfg, resume_run);
    d->ext_stop = stop;
    pthread_mutex_unlock(&d->mu);
}

void fed_dashboard_live_client(fed_dashboard *d, int round, int done, int total) {
    if (!d) return;
    pthread_mutex_lock(&d->mu);
    d->round = round > d->round ? round : d->round;
    d->clients_done = done;
    d->clients_total = total;
    pthread_mutex_unlock(&d->mu);
}

void fed_dashboard_live_round(fed_dashboard *d, const fed_config *cfg, const fed_round_report *r) {
    (void)cfg;
    if (!d || !r) return;
    pthread_mutex_lock(&d->mu);
    on_round_locked(d, r);
    pthread_mutex_unlock(&d->mu);
}

void fed_dashboard_live_end(fed_dashboard *d, int rc, const fed_run_result *res) {
    if (!d) return;
    pthread_mutex_lock(&d->mu);
    on_end_locked(d, rc, res, rc ? fed_last_error() : NULL);
    d->ext_stop = NULL;
    pthread_mutex_unlock(&d->mu);
}

int fed_dashboard_stop_requested(const fed_dashboard *d) { return d ? d->stop_asked : 0; }

static void bg_on_client(void *ctx, int round, int done, int total) { fed_dashboard_live_client(ctx, round, done, total); }
static void bg_on_round(void *ctx, const fed_config *cfg, const fed_round_report *r) { fed_dashboard_live_round(ctx, cfg, r); }

static void *bg_main(void *arg) {
    fed_dashboard *d = arg;
    fed_config cfg;
    pthread_mutex_lock(&d->mu);
    cfg = d->cfg;
    pthread_mutex_unlock(&d->mu);
    fed_store *st = NULL;
    fed_run_result res;
    memset(&res, 0, sizeof res);
    int rc = fed_store_open(&st, d->store_path);
    if (rc == 0) {
        fed_run_opts ro;
        memset(&ro, 0, sizeof ro);
        ro.store = st;
        ro.on_round = bg_on_round;
        ro.on_client = bg_on_client;
        ro.ctx = d;
        ro.stop = &d->bg_stop;
        rc = fed_run(&cfg, &ro, &res);
    }
    char err[512];
    snprintf(err, sizeof err, "%s", rc ? fed_last_error() : "");
    fed_store_close(st);
    pthread_mutex_lock(&d->mu);
    on_end_locked(d, rc, &res, err);
    pthread_mutex_unlock(&d->mu);
    fed_run_result_free(&res);
    return NULL;
}

/* A JSON object of config keys (nested objects are sections: {"privacy": {"mode": ...}}). */
static int apply_json(fed_config *cfg, json_t *o, const char *prefix) {
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) {
        char name[128], val[128];
        if ((size_t)snprintf(name, sizeof name, "%s%s%s", prefix, *prefix ? "." : "", key) >= sizeof name)
            return fed_error(FED_EINVAL, "config key '%.60s...' is too long", name);
        /* where a run reads and writes files is the server's business */
        if (strcmp(name, "data_root") == 0 || strcmp(name, "data_dir") == 0 || strcmp(name, "state_dir") == 0)
            return fed_error(FED_EINVAL, "key '%s' cannot be set from the dashboard (the server chooses paths)", name);
        int rc;
        switch (json_typeof(v)) {
        case JSON_OBJECT:
            if (*prefix) return fed_error(FED_EINVAL, "key '%s': sections do not nest", name);
            if ((rc = apply_json(cfg, v, name))) return rc;
            continue;
        case JSON_STRING: rc = fed_config_set(cfg, name, json_string_value(v)); break;
        case JSON_INTEGER:
            snprintf(val, sizeof val, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
            rc = fed_config_set(cfg, name, val);
            break;
        case JSON_REAL:
            snprintf(val, sizeof val, "%.17g", json_real_value(v));
            rc = fed_config_set(cfg, name, val);
            break;
        case JSON_TRUE: rc = fed_config_set(cfg, name, "true"); break;
        case JSON_FALSE: rc = fed_config_set(cfg, name, "false"); break;
        default: return fed_error(FED_EINVAL, "key '%s': expected a string, number or boolean", name);
        }
        if (rc) return rc;
    }
    return 0;
}

static enum MHD_Result h_start(struct MHD_Connection *c, fed_dashboard *d, const conn *cn) {
    json_error_t jerr;
    json_t *j = json_loadb(cn->body ? cn->body : "", cn->len, 0, &jerr);
    if (!j || !json_is_object(j)) {
        json_decref(j);
        return send_error(c, 400, "the body must be a JSON object of config keys (%s)", j ? "not an object" : jerr.text);
    }
    json_t *inner = json_object_get(j, "config");
    fed_config cfg;
    fed_config_default(&cfg);
    snprintf(cfg.name, sizeof cfg.name, "dashboard");
    int rc = apply_json(&cfg, json_is_object(inner) ? inner : j, "");
    json_decref(j);
    if (!rc) rc = fed_config_validate(&cfg);
    if (rc) return send_error(c, 400, "%s", fed_last_error());
    pthread_mutex_lock(&d->mu);
    if (d->active) {
        pthread_mutex_unlock(&d->mu);
        return send_error(c, 409, "a run is in progress (stop it first: POST /api/runs/ID/stop)");
    }
    if (d->th_joinable) {
        /* the previous background run has finished (inactive): reap it */
        pthread_join(d->th, NULL);
        d->th_joinable = 0;
    }
    live_reset(d, LIVE_BACKGROUND, &cfg, 0);
    d->bg_stop = 0;
    d->ext_stop = &d->bg_stop;
    if (pthread_create(&d->th, NULL, bg_main, d)) {
        d->active = 0;
        snprintf(d->status, sizeof d->status, "failed");
        pthread_mutex_unlock(&d->mu);
        return send_error(c, 500, "cannot start a thread for the run");
    }
    d->th_joinable = 1;
    json_t *out = json_pack("{s:b, s:s, s:i}", "started", 1, "name", cfg.name, "num_rounds", cfg.num_rounds);
    pthread_mutex_unlock(&d->mu);
    return send_json(c, 202, out);
}

static enum MHD_Result h_stop(struct MHD_Connection *c, fed_dashboard *d, int64_t id) {
    pthread_mutex_lock(&d->mu);
    resolve_live_id(d);
    if (!d->active || d->run_id != id) {
        int64_t live = d->active ? d->run_id : 0;
        pthread_mutex_unlock(&d->mu);
        if (live) return send_error(c, 409, "run %" PRId64 " is not the run in progress (that is run %" PRId64 ")", id, live);
        return send_error(c, 409, "run %" PRId64 " is not in progress", id);
    }
    if (d->ext_stop) *d->ext_stop = 1;
    d->stop_asked = 1;
    snprintf(d->status, sizeof d->status, "stopping");
    pthread_mutex_unlock(&d->mu);
    return send_json(c, 200, json_pack("{s:I, s:b}", "run_id", (json_int_t)id, "stopping", 1));
}

/* Browsers send simple cross-site POSTs without asking; a JSON content type
 * forces a CORS preflight this server never answers, and Origin, when present,
 * must name this server. */
static const char *check_post(struct MHD_Connection *c) {
    const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
    if (!ct || strncmp(ct, "application/json", 16) != 0) return "POST bodies must be Content-Type: application/json";
    const char *origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
    const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host");
    if (origin) {
        const char *o = strncmp(origin, "http://", 7) == 0 ? origin + 7 : NULL;
        if (!o || !host || strcmp(o, host) != 0) return "cross-origin requests are refused";
    }
    return NULL;
}

static enum MHD_Result h_post(struct MHD_Connection *c, fed_dashboard *d, const char *url, const conn *cn) {
    if (d->read_only) return send_error(c, 403, "this dashboard is read-only (--read-only)");
    const char *why = check_post(c);
    if (why) return send_error(c, 403, "%s", why);
    if (strcmp(url, "/api/runs") == 0) return h_start(c, d, cn);
    if (strncmp(url, "/api/runs/", 10) == 0) {
        const char *p = url + 10, *slash = strchr(p, '/');
        int64_t id;
        if (slash && strcmp(slash, "/stop") == 0 && parse_id(p, (size_t)(slash - p), &id) == 0) return h_stop(c, d, id);
    }
    return send_error(c, 404, "no such endpoint: POST %.100s (see docs/dashboard.md)", url);
}

/* ---- the request handler -------------------------------------------------------------- */

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                               const char *version, const char *upload_data, size_t *upload_size, void **con_cls) {
    (void)version;
    fed_dashboard *d = cls;
    conn *cn = *con_cls;
    if (!cn) {
        cn = calloc(1, sizeof *cn);
        if (!cn) return MHD_NO;
        *con_cls = cn;
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (cn->too_big || cn->len + n > MAX_BODY) {
            cn->too_big = 1;
            return MHD_YES;
        }
        char *nb = realloc(cn->body, cn->len + n + 1);
        if (!nb) return MHD_NO;
        cn->body = nb;
        memcpy(cn->body + cn->len, upload_data, n);
        cn->len += n;
        cn->body[cn->len] = '\0';
        return MHD_YES;
    }
    if (cn->too_big) return send_error(c, 413, "request body exceeds %d bytes", MAX_BODY);
    int is_get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    if (is_get && strcmp(url, "/metrics") == 0) return h_metrics(c, d);
    if (is_get && strncmp(url, "/api/", 5) == 0) return h_get(c, d, url);
    if (strcmp(method, "POST") == 0 && strncmp(url, "/api/", 5) == 0) return h_post(c, d, url, cn);
    if (is_get)
        for (int i = 0; i < fed_dash_nassets; i++)
            if (strcmp(url, fed_dash_assets[i].path) == 0)
                return send_buf(c, 200, fed_dash_assets[i].type, fed_dash_assets[i].data, fed_dash_assets[i].len, 1);
    if (!is_get && strncmp(url, "/api/", 5) != 0) return send_error(c, 405, "method %.20s not allowed on %.100s", method, url);
    return send_error(c, 404, "no such page: %.100s", url);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)cls, (void)c, (void)toe;
    conn *cn = *con_cls;
    if (cn) {
        free(cn->body);
        free(cn);
    }
    *con_cls = NULL;
}

/* ---- start and stop ------------------------------------------------------------------- */


int fed_dashboard_start(fed_dashboard **out, const fed_dashboard_opts *opts) {
    if (!out || !opts || !opts->store) return fed_error(FED_EINVAL, "fed_dashboard_start: NULL argument");
    *out = NULL;
    struct sockaddr_in6 a6;
    struct sockaddr_in a4;
    int is6 = 0, loop = 0, rc;
    if ((rc = fed_net_parse_listen("dashboard address", opts->listen, &a6, &a4, &is6, &loop))) return rc;
    if (!loop && !opts->allow_public)
        return fed_error(FED_EINVAL,
                         "the dashboard serves plain HTTP with no login, so it listens only on loopback; '%s' is not "
                         "(allow it with --dashboard-public, or --public for federate dashboard)",
                         opts->listen);
    if (strlen(opts->store) >= sizeof ((fed_dashboard *)0)->store_path)
        return fed_error(FED_EINVAL, "store path too long: %.60s...", opts->store);
    fed_dashboard *d = calloc(1, sizeof *d);
    if (!d) return fed_error(FED_ENOMEM, "dashboard: out of memory");
    pthread_mutex_init(&d->mu, NULL);
    snprintf(d->store_path, sizeof d->store_path, "%s", opts->store);
    snprintf(d->host, sizeof d->host, "%s", opts->listen);
    d->read_only = opts->read_only;
    fed_config_default(&d->cfg);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ERROR_LOG;
    if (is6) flags |= MHD_USE_IPv6;
    d->d = MHD_start_daemon(flags, 0, NULL, NULL, handler, d, MHD_OPTION_SOCK_ADDR,
                            is6 ? (struct sockaddr *)&a6 : (struct sockaddr *)&a4, MHD_OPTION_NOTIFY_COMPLETED, completed,
                            d, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30, MHD_OPTION_END);
    if (!d->d) {
        pthread_mutex_destroy(&d->mu);
        free(d);
        return fed_error(FED_EIO, "cannot serve the dashboard on %s (address in use?)", opts->listen);
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d->d, MHD_DAEMON_INFO_BIND_PORT);
    d->port = di ? di->port : 0;
    *out = d;
    return 0;
}

int fed_dashboard_port(const fed_dashboard *d) { return d ? d->port : 0; }

void fed_dashboard_free(fed_dashboard *d) {
    if (!d) return;
    pthread_mutex_lock(&d->mu);
    d->bg_stop = 1;
    int join = d->th_joinable;
    d->th_joinable = 0;
    pthread_mutex_unlock(&d->mu);
    if (join) pthread_join(d->th, NULL);
    MHD_stop_daemon(d->d);
    fed_store_close(d->ro);
    pthread_mutex_destroy(&d->mu);
    free(d);
}
