/* The virtual clock and device profiles of a simulated federation. A client's
 * time in a round is download + latency + compute (samples / speed) + upload +
 * latency; a synchronous round lasts as long as its slowest aggregated client.
 * Default profiles model phones, with orders of magnitude from FedScale's device
 * traces (Lai et al., "FedScale", ICML 2022: AI-Benchmark compute speeds and
 * MobiPerf bandwidths): a few hundred samples/s, uplinks of MB/s. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "federate/error.h"
#include "federate/rng.h"
#include "federate/sim.h"

enum { RNG_PROFILE = FED_RNG_USER + 30, RNG_PHASE = FED_RNG_USER + 31, RNG_FAIL = FED_RNG_USER + 32,
       RNG_MARKOV = FED_RNG_USER + 35 };

static const double MED_SPEED = 300, MED_UP = 3e6, MED_DOWN = 1e7, MED_LAT = 0.1;

int fed_device_profiles(const fed_config *cfg, int num_clients, fed_device *dev) {
    int file = !strcmp(cfg->device_profiles, "file");
    if (file) {
        int rc = fed_device_profiles_load(cfg->device_profiles_file, num_clients, dev);
        if (rc) return rc;
    }
    for (int i = 0; i < num_clients; i++) {
        fed_rng r;
        fed_rng_init(&r, cfg->seed, 0, (uint64_t)i, RNG_PROFILE);
        fed_device *d = &dev[i];
        if (!file) {
            d->speed = MED_SPEED; d->up = MED_UP; d->down = MED_DOWN; d->latency = MED_LAT;
            d->availability = cfg->availability;
            d->failure = cfg->failure_probability;
        }
        if (!strcmp(cfg->device_profiles, "uniform")) {
            d->speed = 100 + 900 * fed_rng_uniform(&r);
            d->up = 1e6 + 9e6 * fed_rng_uniform(&r);
            d->down = d->up * (2 + 3 * fed_rng_uniform(&r));
            d->latency = 0.02 + 0.28 * fed_rng_uniform(&r);
        } else if (!strcmp(cfg->device_profiles, "lognormal")) {
            double s = cfg->device_spread;
            d->speed = MED_SPEED * exp(s * fed_rng_normal_d(&r));
            d->up = MED_UP * exp(s * fed_rng_normal_d(&r));
            d->down = MED_DOWN * exp(s * fed_rng_normal_d(&r));
            d->latency = MED_LAT * exp(0.5 * s * fed_rng_normal_d(&r));
        }
        fed_rng_init(&r, cfg->seed, 0, (uint64_t)i, RNG_PHASE);
        d->phase = fed_rng_uniform(&r);
    }
    return 0;
}

/* One number of a CSV field; *end past it. */
static int field(const char *path, int line, int col, const char *name, char **p, double lo, double hi, int lo_open,
                 double *v) {
    char *s = *p, *e;
    while (*s == ' ' || *s == '\t') s++;
    errno = 0;
    double x = strtod(s, &e);
    if (e == s || errno == ERANGE || !isfinite(x))
        return fed_error(FED_EFORMAT, "%s:%d: column %d (%s): not a number", path, line, col, name);
    if ((lo_open ? !(x > lo) : !(x >= lo)) || !(x <= hi))
        return fed_error(FED_EINVAL, "%s:%d: column %d (%s): %g is out of range %s%g, %g]", path, line, col, name, x,
                         lo_open ? "(" : "[", lo, hi);
    while (*e == ' ' || *e == '\t' || *e == '\r' || *e == '\n') e++;
    if (*e == ',') e++;
    else if (*e) return fed_error(FED_EFORMAT, "%s:%d: column %d (%s): unexpected '%c'", path, line, col, name, *e);
    *p = e;
    *v = x;
    return 0;
}

int fed_device_profiles_load(const char *path, int num_clients, fed_device *dev) {
    FILE *f = fopen(path, "r");
    if (!f) return fed_error(FED_EIO, "device_profiles_file %s: %s", path, strerror(errno));
    char *seen = calloc((size_t)num_clients, 1);
    if (!seen) { fclose(f); return fed_error(FED_ENOMEM, "device profiles: out of memory"); }
    char buf[1024];
    int line = 0, rc = 0, rows = 0;
    static const char *names[] = {"client", "speed", "up", "down", "latency", "availability", "failure"};
    while (!rc && fgets(buf, sizeof buf, f)) {
        line++;
        size_t len = strlen(buf);
        if (len == sizeof buf - 1 && buf[len - 1] != '\n') {
            rc = fed_error(FED_EFORMAT, "%s:%d: line longer than %zu bytes", path, line, sizeof buf - 2);
            break;
        }
        char *p = buf;
        while (*p == ' ' || *p == '\t') p++;
        if (*p == '#' || *p == '\n' || *p == '\r' || !*p) continue;
        if (!strncmp(p, "client", 6)) continue;   /* header */
        double v[7] = {0, 0, 0, 0, 0, 1, 0};
        int ncol = 0;
        static const double lo[7] = {0, 0, 0, 0, 0, 0, 0}, hi[7] = {1e9, 1e15, 1e15, 1e15, 1e6, 1, 0.99};
        static const int open[7] = {0, 1, 1, 1, 0, 1, 0};
        while (*p && *p != '\n' && *p != '\r' && ncol < 7) {
            if ((rc = field(path, line, ncol + 1, names[ncol], &p, lo[ncol], hi[ncol], open[ncol], &v[ncol]))) break;
            ncol++;
        }
        if (rc) break;
        if (*p && *p != '\n' && *p != '\r') {
            rc = fed_error(FED_EFORMAT, "%s:%d: more than 7 columns (client,speed,up,down,latency,availability,failure)",
                           path, line);
            break;
        }
        if (ncol < 5) {
            rc = fed_error(FED_EFORMAT, "%s:%d: %d columns, need at least 5 (client,speed,up,down,latency)", path, line,
                           ncol);
            break;
        }
        if (v[0] != floor(v[0]) || v[0] >= num_clients) {
            rc = fed_error(FED_EINVAL, "%s:%d: client %g is not an id in [0, %d)", path, line, v[0], num_clients);
            break;
        }
        int id = (int)v[0];
        if (seen[id]) {
            rc = fed_error(FED_EINVAL, "%s:%d: client %d has a second row", path, line, id);
            break;
        }
        seen[id] = 1;
        rows++;
        dev[id] = (fed_device){v[1], v[2], v[3], v[4], v[5], 0, v[6]};
    }
    if (!rc && ferror(f)) rc = fed_error(FED_EIO, "device_profiles_file %s: read error", path);
    if (!rc && rows < num_clients) {
        int miss = 0;
        while (seen[miss]) miss++;
        rc = fed_error(FED_EINVAL, "%s: %d of %d clients have a profile; client %d has none", path, rows, num_clients,
                       miss);
    }
    free(seen);
    fclose(f);
    return rc;
}

int fed_device_online(const fed_device *d, double period_s, double t) {
    if (d->availability >= 1) return 1;
    double x = t / period_s + d->phase;
    x -= floor(x);
    return x < d->availability;
}

double fed_device_next_online(const fed_device *d, double period_s, double t) {
    if (fed_device_online(d, period_s, t)) return t;
    double x = t / period_s + d->phase;
    x -= floor(x);
    double next = t + (1.0 - x) * period_s;
    /* guard against rounding leaving us a hair before the on edge */
    for (int i = 0; i < 4 && !fed_device_online(d, period_s, next); i++) next = nextafter(next, INFINITY) + 1e-9 * period_s;
    return next;
}

double fed_task_samples(long n, int batch, long steps) {
    if (n <= 0 || batch <= 0 || steps <= 0) return 0;
    long per_epoch = (n + batch - 1) / batch;
    long full = steps / per_epoch, rem = steps % per_epoch;
    double part = (double)rem * batch;
    if (part > (double)n) part = (double)n;
    return (double)full * (double)n + part;
}

long fed_task_steps(long n, int batch, int epochs, long max_steps) {
    if (n <= 0 || batch <= 0) return 0;
    long per_epoch = (n + batch - 1) / batch;
    long all = per_epoch * (long)epochs;
    return max_steps > 0 && max_steps < all ? max_steps : all;
}

double fed_device_task_time(const fed_device *d, double down_bytes, double samples, double up_bytes) {
    return down_bytes / d->down + d->latency + samples / d->speed + up_bytes / d->up + d->latency;
}

long fed_device_steps_within(const fed_device *d, double budget_s, double down_bytes, double up_bytes, long n,
                             int batch) {
    double left = budget_s - fed_device_task_time(d, down_bytes, 0, up_bytes);
    if (!(left > 0) || n <= 0 || batch <= 0) return 0;
    double samples = floor(left * d->speed * (1 + 1e-12));
    long per_epoch = (n + batch - 1) / batch;
    double full = floor(samples / (double)n);
    if (full > 1e12) full = 1e12;
    double rest = samples - full * (double)n;
    long rem = (long)floor(rest / batch);
    if (rem >= per_epoch) rem = per_epoch - 1;
    return (long)full * per_epoch + rem;
}

/* ---- availability models ------------------------------------------------ */

enum { AV_ALWAYS, AV_PERIODIC, AV_MARKOV, AV_TRACE };

/* One client's Markov on/off chain, generated lazily in order from its own
 * stream. The toggle times kept are a window of the whole sequence: when it
 * grows past MARKOV_WINDOW the older half is dropped, and a query before the
 * window regenerates the sequence from t = 0 (same stream, same numbers), so
 * an answer never depends on which queries came before it. */
typedef struct markov_chain {
    int started;
    int on0;               /* state at t = 0 */
    fed_rng rng;           /* the stream after the last toggle generated */
    long dropped;          /* toggles dropped before t[0] (for the parity) */
    double floor_t;        /* time of the last dropped toggle (0 if none) */
    double last_t;         /* time of the last toggle generated (0 if none) */
    int last_on;           /* state from last_t on */
    double *t;             /* toggles in the window, ascending */
    int n, cap;
} markov_chain;

enum { MARKOV_WINDOW = 4096 };

typedef struct fed_avail {
    int kind;
    int num_clients;
    /* markov */
    uint64_t seed;
    double mean_on, mean_off;
    markov_chain *chain;
    /* trace: client c's merged intervals are iv[2 off[c] .. 2 off[c+1]) */
    double period;
    int *off;
    double *iv;
} fed_avail;

static void avail_free(fed_avail *a) {
    if (!a) return;
    if (a->chain)
        for (int i = 0; i < a->num_clients; i++) free(a->chain[i].t);
    free(a->chain); free(a->off); free(a->iv);
    free(a);
}

static void markov_restart(const fed_avail *a, markov_chain *m, int client) {
    fed_rng_init(&m->rng, a->seed, 0, (uint64_t)client, RNG_MARKOV);
    m->on0 = fed_rng_uniform(&m->rng) < a->mean_on / (a->mean_on + a->mean_off);
    m->started = 1;
    m->dropped = 0;
    m->floor_t = m->last_t = 0;
    m->last_on = m->on0;
    m->n = 0;
}

/* Generates toggles until one lies beyond t (0 or FED_ENOMEM). */
static int markov_extend(const fed_avail *a, markov_chain *m, double t) {
    while (m->n == 0 || m->t[m->n - 1] <= t) {
        if (m->n == m->cap) {
            if (m->cap >= MARKOV_WINDOW) {
                /* drop the older half: the clock only moves forward */
                int h = m->n / 2;
                m->floor_t = m->t[h - 1];
                m->dropped += h;
                memmove(m->t, m->t + h, (size_t)(m->n - h) * sizeof *m->t);
                m->n -= h;
            } else {
                int cap = m->cap ? 2 * m->cap : 16;
                double *nt = realloc(m->t, (size_t)cap * sizeof *nt);
                if (!nt) return fed_error(FED_ENOMEM, "availability: out of memory");
                m->t = nt;
                m->cap = cap;
            }
        }
        /* exponential sojourn in the current state (memoryless, so the first
         * one, from t = 0, has the same law) */
        double mean = m->last_on ? a->mean_on : a->mean_off;
        double next = m->last_t - mean * log1p(-fed_rng_uniform(&m->rng));
        m->t[m->n++] = next;
        m->last_t = next;
        m->last_on = !m->last_on;
    }
    return 0;
}

/* Toggles in the window at or before t: [0, n]. */
static int upper_bound(const double *x, int n, double t) {
    int lo = 0, hi = n;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (x[mid] <= t) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* State at t, and in *next the first toggle after t. */
static int markov_state(const fed_avail *a, int client, double t, double *next) {
    markov_chain *m = &a->chain[client];
    if (!m->started || t < m->floor_t) markov_restart(a, m, client);
    if (markov_extend(a, m, t)) {
        /* out of memory: answer "online" rather than stall the clock */
        *next = INFINITY;
        return 1;
    }
    int k = upper_bound(m->t, m->n, t);
    *next = m->t[k];
    return m->on0 ^ (int)((m->dropped + k) & 1);
}

/* trace: online at t when t mod period lies in one of the client's intervals */
static int trace_online(const fed_avail *a, int c, double t, int *idx) {
    int lo = a->off[c], hi = a->off[c + 1];
    *idx = -1;
    if (lo == hi) return 1;
    double x = fmod(t, a->period);   /* exact */
    /* the last interval starting at or before x */
    int l = lo, h = hi;
    while (l < h) {
        int mid = l + (h - l) / 2;
        if (a->iv[2 * mid] <= x) l = mid + 1;
        else h = mid;
    }
    *idx = l;   /* the first interval starting after x (may be hi) */
    return l > lo && x < a->iv[2 * (l - 1) + 1];
}

int fed_sysim_online(fed_sysim *s, int client, double t) {
    if (!(t > 0)) t = 0;
    fed_avail *a = s->avail;
    if (!a || a->kind == AV_ALWAYS) return 1;
    if (a->kind == AV_PERIODIC) return fed_device_online(&s->dev[client], s->period, t);
    if (a->kind == AV_MARKOV) {
        double next;
        return markov_state(a, client, t, &next);
    }
    int idx;
    return trace_online(a, client, t, &idx);
}

/* Moves a computed edge time forward by ulps until the model agrees (the
 * edge was computed as t + (edge - t mod period), which may round a hair low). */
static double settle(fed_sysim *s, int client, double x, int want_online) {
    for (int i = 0; i < 64 && fed_sysim_online(s, client, x) != want_online; i++)
        x = nextafter(x, INFINITY) + (i > 8 ? 1e-12 * fabs(x) : 0);
    return x;
}

double fed_sysim_next_online(fed_sysim *s, int client, double t) {
    if (!(t > 0)) t = 0;
    fed_avail *a = s->avail;
    if (!a || a->kind == AV_ALWAYS) return t;
    if (a->kind == AV_PERIODIC) return fed_device_next_online(&s->dev[client], s->period, t);
    if (a->kind == AV_MARKOV) {
        /* off now: the next toggle turns it on (a zero-length on sojourn is
         * skipped by asking again from there) */
        for (;;) {
            double next;
            if (markov_state(a, client, t, &next)) return t;
            if (!isfinite(next)) return INFINITY;
            t = next;
        }
    }
    int idx;
    if (trace_online(a, client, t, &idx)) return t;
    double x = fmod(t, a->period), e;
    if (idx < a->off[client + 1]) e = t + (a->iv[2 * idx] - x);
    else e = t + (a->period - x) + a->iv[2 * a->off[client]];   /* the next cycle's first */
    return settle(s, client, e, 1);
}

double fed_sysim_next_offline(fed_sysim *s, int client, double t) {
    if (!(t > 0)) t = 0;
    fed_avail *a = s->avail;
    if (!a || a->kind == AV_ALWAYS) return INFINITY;
    if (a->kind == AV_PERIODIC) {
        const fed_device *d = &s->dev[client];
        if (d->availability >= 1) return INFINITY;
        if (!fed_device_online(d, s->period, t)) return t;
        double x = t / s->period + d->phase;
        x -= floor(x);
        return settle(s, client, t + (d->availability - x) * s->period, 0);
    }
    if (a->kind == AV_MARKOV) {
        for (;;) {
            double next;
            if (!markov_state(a, client, t, &next)) return t;
            if (!isfinite(next)) return INFINITY;
            t = next;
        }
    }
    int idx, lo = a->off[client], hi = a->off[client + 1];
    if (!trace_online(a, client, t, &idx)) return t;
    if (lo == hi) return INFINITY;
    /* merged intervals: on through the end of this one, unless it reaches the
     * period's end and the first starts at 0 (on across the wrap) */
    if (hi - lo == 1 && a->iv[2 * lo] == 0 && a->iv[2 * lo + 1] >= a->period) return INFINITY;
    double x = fmod(t, a->period), end = a->iv[2 * (idx - 1) + 1];
    double e = t + (end - x);
    if (end >= a->period && a->iv[2 * lo] == 0) e = t + (a->period - x) + a->iv[2 * lo + 1];
    return settle(s, client, e, 0);
}

typedef struct trace_row { int client; double start, end; } trace_row;

static int cmp_row(const void *p, const void *q) {
    const trace_row *x = p, *y = q;
    if (x->client != y->client) return x->client < y->client ? -1 : 1;
    if (x->start != y->start) return x->start < y->start ? -1 : 1;
    return (x->end > y->end) - (x->end < y->end);
}

/* Reads availability_trace: client,start_s,end_s rows (see sim.h). */
static int trace_load(const char *path, int num_clients, fed_avail *a) {
    FILE *f = fopen(path, "r");
    if (!f) return fed_error(FED_EIO, "availability_trace %s: %s", path, strerror(errno));
    static const char *names[] = {"client", "start_s", "end_s"};
    trace_row *rows = NULL;
    size_t nrows = 0, cap = 0;
    char buf[1024];
    int line = 0, rc = 0;
    while (!rc && fgets(buf, sizeof buf, f)) {
        line++;
        size_t len = strlen(buf);
        if (len == sizeof buf - 1 && buf[len - 1] != '\n') {
            rc = fed_error(FED_EFORMAT, "%s:%d: line longer than %zu bytes", path, line, sizeof buf - 2);
            break;
        }
        char *p = buf;
        while (*p == ' ' || *p == '\t') p++;
        if (*p == '#' || *p == '\n' || *p == '\r' || !*p) continue;
        if (!strncmp(p, "client", 6)) continue;   /* header */
        double v[3];
        static const double lo[3] = {0, 0, 0}, hi[3] = {1e9, 1e15, 1e15};
        static const int open[3] = {0, 0, 1};
        int ncol = 0;
        while (*p && *p != '\n' && *p != '\r' && ncol < 3) {
            if ((rc = field(path, line, ncol + 1, names[ncol], &p, lo[ncol], hi[ncol], open[ncol], &v[ncol]))) break;
            ncol++;
        }
        if (rc) break;
        if (*p && *p != '\n' && *p != '\r') {
            rc = fed_error(FED_EFORMAT, "%s:%d: more than 3 columns (client,start_s,end_s)", path, line);
            break;
        }
        if (ncol < 3) {
            rc = fed_error(FED_EFORMAT, "%s:%d: %d column%s, need 3 (client,start_s,end_s)", path, line, ncol,
                           ncol == 1 ? "" : "s");
            break;
        }
        if (v[0] != floor(v[0]) || v[0] >= num_clients) {
            rc = fed_error(FED_EINVAL, "%s:%d: column 1 (client): %g is not a client id in [0, %d)", path, line, v[0],
                           num_clients);
            break;
        }
        if (!(v[2] > v[1])) {
            rc = fed_error(FED_EINVAL, "%s:%d: end_s %g is not after start_s %g", path, line, v[2], v[1]);
            break;
        }
        if (nrows == cap) {
            size_t nc = cap ? 2 * cap : 256;
            trace_row *nr = realloc(rows, nc * sizeof *nr);
            if (!nr) { rc = fed_error(FED_ENOMEM, "availability_trace %s: out of memory", path); break; }
            rows = nr;
            cap = nc;
        }
        rows[nrows++] = (trace_row){(int)v[0], v[1], v[2]};
    }
    if (!rc && ferror(f)) rc = fed_error(FED_EIO, "availability_trace %s: read error", path);
    fclose(f);
    if (!rc && nrows == 0) rc = fed_error(FED_EFORMAT, "%s: no intervals (rows client,start_s,end_s)", path);
    if (!rc) {
        a->off = calloc((size_t)num_clients + 1, sizeof *a->off);
        a->iv = malloc(2 * nrows * sizeof *a->iv);
        if (!a->off || !a->iv) rc = fed_error(FED_ENOMEM, "availability_trace %s: out of memory", path);
    }
    if (!rc) {
        qsort(rows, nrows, sizeof *rows, cmp_row);
        /* merge each client's overlapping or touching intervals */
        size_t m = 0;
        a->period = 0;
        for (size_t i = 0; i < nrows; i++) {
            trace_row *r = &rows[i];
            if (r->end > a->period) a->period = r->end;
            if (m > 0 && rows[i - 1].client == r->client && r->start <= a->iv[2 * (m - 1) + 1]) {
                if (r->end > a->iv[2 * (m - 1) + 1]) a->iv[2 * (m - 1) + 1] = r->end;
                continue;
            }
            a->iv[2 * m] = r->start;
            a->iv[2 * m + 1] = r->end;
            a->off[r->client + 1]++;
            m++;
        }
        for (int c = 0; c < num_clients; c++) a->off[c + 1] += a->off[c];
    }
    free(rows);
    return rc;
}

static int avail_new(fed_avail **out, const fed_config *cfg, int num_clients) {
    *out = NULL;
    const char *k = cfg->availability_model[0] ? cfg->availability_model : "periodic";
    int kind = !strcmp(k, "always") ? AV_ALWAYS : !strcmp(k, "periodic") ? AV_PERIODIC
             : !strcmp(k, "markov") ? AV_MARKOV : !strcmp(k, "trace") ? AV_TRACE : -1;
    if (kind < 0)
        return fed_error(FED_EINVAL, "key 'availability_model': '%s' is not always, periodic, markov or trace", k);
    fed_avail *a = calloc(1, sizeof *a);
    if (!a) return fed_error(FED_ENOMEM, "availability: out of memory");
    a->kind = kind;
    a->num_clients = num_clients;
    a->seed = cfg->seed;
    int rc = 0;
    if (kind == AV_MARKOV) {
        a->mean_on = cfg->availability_mean_on_s;
        a->mean_off = cfg->availability_mean_off_s;
        if (!(a->mean_on > 0) || !(a->mean_off > 0) || !isfinite(a->mean_on) || !isfinite(a->mean_off))
            rc = fed_error(FED_EINVAL, "availability_model markov needs availability_mean_on_s and "
                                       "availability_mean_off_s > 0 (got %g and %g)", a->mean_on, a->mean_off);
        else if (!(a->chain = calloc((size_t)num_clients, sizeof *a->chain)))
            rc = fed_error(FED_ENOMEM, "availability: out of memory");
    } else if (kind == AV_TRACE) {
        if (!cfg->availability_trace[0])
            rc = fed_error(FED_EINVAL, "availability_model trace needs availability_trace (a CSV path)");
        else
            rc = trace_load(cfg->availability_trace, num_clients, a);
    }
    if (rc) { avail_free(a); return rc; }
    *out = a;
    return 0;
}

/* ---- the simulated system of a run ------------------------------------- */

int fed_sysim_new(fed_sysim **out, const fed_config *cfg, fed_selector *sel, int num_clients, double model_bytes) {
    *out = NULL;
    fed_sysim *s = calloc(1, sizeof *s);
    if (!s) return fed_error(FED_ENOMEM, "simulated system: out of memory");
    s->enabled = strcmp(cfg->device_profiles, "none") != 0;
    s->num_clients = num_clients;
    s->period = cfg->availability_period_s > 0 ? cfg->availability_period_s : 3600;
    s->deadline = cfg->round_deadline_s;
    s->over = cfg->over_selection;
    s->failure = cfg->failure_probability;
    s->seed = cfg->seed;
    s->model_bytes = model_bytes;
    s->dev = calloc((size_t)num_clients, sizeof *s->dev);
    s->speeds = calloc((size_t)num_clients, sizeof *s->speeds);
    if (!s->dev || !s->speeds) { fed_sysim_free(s); return fed_error(FED_ENOMEM, "simulated system: out of memory"); }
    int rc = fed_device_profiles(cfg, num_clients, s->dev);
    if (!rc) rc = avail_new(&s->avail, cfg, num_clients);
    if (rc) { fed_sysim_free(s); return rc; }
    for (int i = 0; i < num_clients; i++) s->speeds[i] = s->dev[i].speed;
    if (sel) {
        sel->speed = s->enabled ? s->speeds : NULL;
        sel->oort_alpha = cfg->oort_alpha;
        sel->oort_epsilon = cfg->oort_epsilon;
        sel->poc_candidates = cfg->poc_candidates;
    }
    *out = s;
    return 0;
}

void fed_sysim_free(fed_sysim *s) {
    if (!s) return;
    free(s->dev); free(s->speeds); free(s->skip); free(s->time);
    avail_free(s->avail);
    free(s);
}

int fed_sysim_capacity(const fed_sysim *s, int k) {
    if (!s || !s->enabled || !(s->over > 0)) return k;
    double c = ceil((double)k * (1.0 + s->over) - 1e-9);
    return c > s->num_clients ? s->num_clients : (int)c;
}

static int ensure(fed_sysim *s, int k) {
    if (k <= s->cap) return 0;
    unsigned char *sk = realloc(s->skip, (size_t)k);
    if (sk) s->skip = sk;
    double *t = realloc(s->time, (size_t)k * sizeof *t);
    if (t) s->time = t;
    if (!sk || !t) return fed_error(FED_ENOMEM, "simulated system: out of memory");
    s->cap = k;
    return 0;
}

int fed_sysim_select(fed_sysim *s, fed_selector *sel, const fed_federation *fed, uint64_t seed, int round, int k,
                     int *out, int *kout) {
    if (!s || !s->enabled) {
        *kout = k;
        return fed_select_clients(sel, fed, seed, round, k, out);
    }
    int N = s->num_clients;
    unsigned char *ok = malloc((size_t)N);
    if (!ok) return fed_error(FED_ENOMEM, "simulated system: out of memory");
    int n = 0;
    for (int i = 0; i < N; i++) n += ok[i] = (unsigned char)fed_sysim_online(s, i, s->now);
    if (n == 0) {
        /* nobody online: the server waits for the first device to come on */
        double t = INFINITY;
        for (int i = 0; i < N; i++) {
            double x = fed_sysim_next_online(s, i, s->now);
            if (x < t) t = x;
        }
        if (isfinite(t)) {
            s->now = t;
            for (int i = 0; i < N; i++) n += ok[i] = (unsigned char)fed_sysim_online(s, i, s->now);
        }
    }
    int want = fed_sysim_capacity(s, k);
    if (want > n) want = n;
    int rc = n > 0 ? fed_select_clients_among(sel, fed, seed, round, want, ok, out)
                   : fed_error(FED_ESTATE, "round %d: no simulated device is ever online", round);
    free(ok);
    *kout = rc ? 0 : want;
    return rc;
}

int fed_sysim_plan(fed_sysim *s, const fed_federation *fed, fed_task *tasks, int k) {
    if (!s || !s->enabled) return 0;
    int rc = ensure(s, k);
    if (rc) return rc;
    for (int i = 0; i < k; i++) {
        fed_task *t = &tasks[i];
        const fed_device *d = &s->dev[t->client];
        s->skip[i] = 0;
        fed_rng r;
        fed_rng_init(&r, s->seed, (uint64_t)t->round, (uint64_t)t->client, RNG_FAIL);
        if (d->failure > 0 && fed_rng_uniform(&r) < d->failure) s->skip[i] = 1;
        long n = (long)fed->part.train_n[t->client];
        if (!s->skip[i] && s->deadline > 0) {
            long steps = fed_task_steps(n, t->ins.batch_size, t->ins.local_epochs, t->ins.max_steps);
            /* upload: the raw update (compression only makes it faster) */
            double up = s->model_bytes;
            double full = fed_device_task_time(d, s->model_bytes, fed_task_samples(n, t->ins.batch_size, steps), up);
            if (full > s->deadline) {
                long fit = fed_device_steps_within(d, s->deadline, s->model_bytes, up, n, t->ins.batch_size);
                if (fit < 1) s->skip[i] = 2;
                else t->ins.max_steps = fit;
            }
        }
        if (s->skip[i]) t->ins.max_steps = 1;   /* its work is thrown away: keep it cheap */
    }
    return 0;
}

typedef struct fin { double t; int client, slot; } fin;

static int cmp_fin(const void *a, const void *b) {
    const fin *x = a, *y = b;
    if (x->t != y->t) return x->t < y->t ? -1 : 1;
    return (x->client > y->client) - (x->client < y->client);
}

int fed_sysim_finish(fed_sysim *s, fed_selector *sel, const fed_federation *fed, const fed_task *tasks,
                     fed_result *res, int k, int target, double *round_s) {
    *round_s = NAN;
    if (!s || !s->enabled) {
        for (int i = 0; i < k; i++)
            if (res[i].status == FED_RESULT_OK) fed_selector_observe(sel, res[i].client, res[i].train_loss, NAN);
        return 0;
    }
    fin *f = malloc((size_t)(k + 1) * sizeof *f);
    if (!f) return fed_error(FED_ENOMEM, "simulated system: out of memory");
    int m = 0;
    for (int i = 0; i < k; i++) {
        fed_result *r = &res[i];
        s->time[i] = NAN;
        if (r->status != FED_RESULT_OK) continue;
        if (s->skip[i]) {
            r->status = FED_RESULT_DROPPED;
            continue;
        }
        const fed_device *d = &s->dev[r->client];
        long n = (long)fed->part.train_n[r->client];
        double down = r->bytes_down > 0 ? (double)r->bytes_down : s->model_bytes;
        double t = fed_device_task_time(d, down, fed_task_samples(n, tasks[i].ins.batch_size, r->steps),
                                        (double)r->bytes_up);
        s->time[i] = t;
        fed_selector_observe(sel, r->client, r->train_loss, t);
        if (s->deadline > 0 && t > s->deadline * (1 + 1e-9)) {
            r->status = FED_RESULT_LATE;
            continue;
        }
        f[m++] = (fin){t, r->client, i};
    }
    qsort(f, (size_t)m, sizeof *f, cmp_fin);
    int keep = m < target ? m : target;
    for (int j = keep; j < m; j++) res[f[j].slot].status = FED_RESULT_LATE;
    double dur = keep > 0 ? f[keep - 1].t : 0;
    /* a round that waited for someone who never came lasts until its deadline */
    if (s->deadline > 0 && keep < target) dur = s->deadline;
    free(f);
    s->now += dur;
    *round_s = dur;
    return 0;
}

size_t fed_sysim_state_size(const fed_sysim *s, const fed_selector *sel) {
    (void)s;
    return 1 + 2 * (size_t)(sel ? sel->num_clients : 0);
}

static int64_t bits(double x) {
    int64_t w;
    memcpy(&w, &x, sizeof w);
    return w;
}

static double unbits(int64_t w) {
    double x;
    memcpy(&x, &w, sizeof x);
    return x;
}

void fed_sysim_state_get(const fed_sysim *s, const fed_selector *sel, int64_t *words) {
    words[0] = bits(s ? s->now : 0.0);
    int N = sel ? sel->num_clients : 0;
    for (int i = 0; i < N; i++) {
        words[1 + i] = bits(sel->loss[i]);
        words[1 + N + i] = bits(sel->duration[i]);
    }
}

int fed_sysim_state_set(fed_sysim *s, fed_selector *sel, const int64_t *words, size_t len) {
    if (len != fed_sysim_state_size(s, sel))
        return fed_error(FED_EFORMAT, "checkpoint: the simulated system's state has %zu words, expected %zu", len,
                         fed_sysim_state_size(s, sel));
    if (s) s->now = unbits(words[0]);
    int N = sel ? sel->num_clients : 0;
    for (int i = 0; i < N; i++) {
        sel->loss[i] = unbits(words[1 + i]);
        sel->duration[i] = unbits(words[1 + N + i]);
    }
    return 0;
}

double fed_staleness_weight(const char *kind, double a, double b, long tau) {
    if (tau < 0 || !kind) return NAN;
    if (!strcmp(kind, "constant")) return 1.0;
    if (!strcmp(kind, "polynomial")) return pow(1.0 + (double)tau, -a);
    if (!strcmp(kind, "hinge")) return (double)tau <= b ? 1.0 : 1.0 / (a * ((double)tau - b) + 1.0);
    return NAN;
}
