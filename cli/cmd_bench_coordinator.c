/* federate bench coordinator: a load generator for the networked deployment.
 * Spawns `federate server` (a separate process, so its CPU time is its own)
 * and plays N enrolled clients from this one process with libcurl's multi
 * interface: one persistent connection each, every request Ed25519-signed as in
 * docs/protocol.md. Clients skip training (or, with --train-s, wait as long as
 * local training would take before they upload) and upload a random update of
 * the model's size. Checks through /metrics, /api/rounds and /api/clients that
 * every update was accepted exactly once, and reports the coordinator's CPU
 * time per accepted update and, with --wire-baseline, the protocol's share of
 * a round beyond the bytes on the wire (docs/deploy.md, "Benchmarks"). */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sqlite3.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>
#include <arpa/inet.h>
#include "args.h"
#include "common.h"
#include "federate/net.h"

/* The lead adds this to cli/common.h and `federate bench coordinator` to cli/cmd_bench.c. */
int cmd_bench_coordinator(int argc, char **argv);

extern char **environ;

#define BC "bench coordinator"
#define TRAIN_N 600

enum { S_REGISTER, S_TASK, S_MODEL, S_TRAIN, S_RESULT, S_EVAL, S_HOLD, S_DONE };

typedef struct bclient {
    int id;
    CURL *e;
    struct curl_slist *hdrs;
    uint8_t sk[FED_SIGN_SECRETKEYBYTES];
    int state, kind;          /* kind of the current task: 1 fit, 2 evaluate */
    int64_t run;
    int round;
    char *buf;                /* small response bodies (JSON) */
    size_t len, cap;
    int64_t down_bytes;
    char eval_body[128];
    int accepted, rejected, errors;
    double ready_at;          /* S_TRAIN: when its emulated local training ends */
} bclient;

typedef struct bench {
    int n, rounds, tls;
    const char *model;
    char base[128];           /* http(s)://127.0.0.1:PORT */
    char ca[600];
    const fed_model *proto;
    /* the round's update body: the same random update for every client (see docs/deploy.md) */
    void **bodies;            /* per round 1..rounds */
    size_t *body_len;
    char (*body_hash)[2 * FED_SHA256_BYTES + 1];
    pid_t pid;
    double t_win0, t_win1, cpu_win0, cpu_win1;
    double cpu_u0, cpu_u1;
    double self0, self1;      /* this process's CPU time: the clients' side of the protocol */
    int server_sockets;
    int64_t accepted, rejected, errors, finished;
    int holding;
    double train_s, train_spread;   /* emulated local training: train_s * (1 +- spread) per client */
    int training;                   /* clients in S_TRAIN */
} bench;

static double proc_cpu(pid_t pid, double *user) {
    char p[64], b[1024];
    snprintf(p, sizeof p, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(p, "r");
    if (!f) return NAN;
    size_t n = fread(b, 1, sizeof b - 1, f);
    fclose(f);
    b[n] = '\0';
    const char *s = strrchr(b, ')');
    unsigned long long ut = 0, st = 0;
    /* after the command name: state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
    if (!s || sscanf(s + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2) return NAN;
    double tck = (double)sysconf(_SC_CLK_TCK);
    if (user) *user = (double)ut / tck;
    return (double)(ut + st) / tck;
}

static int count_sockets(pid_t pid) {
    char p[64], l[128], t[128];
    snprintf(p, sizeof p, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(p);
    if (!d) return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        snprintf(l, sizeof l, "%s/%.20s", p, de->d_name);
        ssize_t k = readlink(l, t, sizeof t - 1);
        if (k > 0) {
            t[k] = '\0';
            n += strncmp(t, "socket:", 7) == 0;
        }
    }
    closedir(d);
    return n - 1;   /* less the listening socket */
}

static size_t on_data(char *p, size_t sz, size_t nm, void *ud) {
    bclient *c = ud;
    size_t n = sz * nm;
    c->down_bytes += (int64_t)n;
    if (c->state == S_MODEL) return n;   /* the model body is only counted: clients skip training */
    if (c->len + n + 1 > c->cap) {
        size_t nc = c->cap ? 2 * c->cap : 4096;
        while (nc < c->len + n + 1) nc *= 2;
        char *nb = realloc(c->buf, nc);
        if (!nb) return 0;
        c->buf = nb, c->cap = nc;
    }
    memcpy(c->buf + c->len, p, n);
    c->len += n;
    c->buf[c->len] = '\0';
    return n;
}

/* The signed text of docs/protocol.md with the body's hash given (the round's
 * body is the same for every client, so its SHA-256 is computed once; checked
 * against fed_net_signed_text at start-up). */
static int signed_text(char *t, size_t size, const char *method, const char *path, int64_t run, int round, int client,
                       int64_t ts, const char *nonce, const char *hash) {
    int l = snprintf(t, size, "federate-v1\n%s\n%s\n%" PRId64 "\n%d\n%d\n%" PRId64 "\n%s\n%s", method, path, run, round,
                     client, ts, nonce, hash);
    return l < 0 || (size_t)l >= size ? FED_EINVAL : l;
}

static void hash_hex(char out[2 * FED_SHA256_BYTES + 1], const void *b, size_t n) {
    uint8_t h[FED_SHA256_BYTES];
    fed_sha256(h, b, n);
    fed_hex_encode(out, h, sizeof h);
}

static int start_req(bench *B, CURLM *m, bclient *c, int state, const char *method, const char *path, const void *body,
                     size_t blen, const char *hash) {
    char nonce_hex[33], sig_hex[2 * FED_SIGN_BYTES + 1], text[1024], h[160], hh[2 * FED_SHA256_BYTES + 1];
    uint8_t nonce[16], sig[FED_SIGN_BYTES];
    fed_crypto_random_fast(nonce, sizeof nonce);
    fed_hex_encode(nonce_hex, nonce, sizeof nonce);
    if (!hash) {
        hash_hex(hh, body ? body : "", body ? blen : 0);
        hash = hh;
    }
    int64_t ts = (int64_t)time(NULL);
    int tl = signed_text(text, sizeof text, method, path, c->run, c->round, c->id, ts, nonce_hex, hash);
    if (tl < 0) return tl;
    fed_sign_detached(sig, text, (size_t)tl, c->sk);
    fed_hex_encode(sig_hex, sig, sizeof sig);
    curl_slist_free_all(c->hdrs);
    c->hdrs = NULL;
    struct curl_slist *s = NULL;
#define ADD(...) (snprintf(h, sizeof h, __VA_ARGS__), s = curl_slist_append(s, h))
    ADD("X-Federate-Client: %d", c->id);
    ADD("X-Federate-Timestamp: %" PRId64, ts);
    ADD("X-Federate-Nonce: %s", nonce_hex);
    ADD("X-Federate-Signature: %s", sig_hex);
    ADD("X-Federate-Run: %" PRId64, c->run);
    ADD("X-Federate-Round: %d", c->round);
    ADD("Expect:");   /* no 100-continue round trip before uploads */
    if (body) ADD("Content-Type: %s", state == S_RESULT ? "application/octet-stream" : "application/json");
#undef ADD
    if (!s) return fed_error(FED_ENOMEM, "out of memory");
    c->hdrs = s;
    char url[256];
    snprintf(url, sizeof url, "%s%s", B->base, path);
    curl_multi_remove_handle(m, c->e);
    curl_easy_setopt(c->e, CURLOPT_URL, url);
    curl_easy_setopt(c->e, CURLOPT_HTTPHEADER, s);
    if (body) {
        curl_easy_setopt(c->e, CURLOPT_POST, 1L);
        curl_easy_setopt(c->e, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c->e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
    } else {
        curl_easy_setopt(c->e, CURLOPT_HTTPGET, 1L);
    }
    c->state = state;
    c->len = 0;
    if (c->buf) c->buf[0] = '\0';
    return curl_multi_add_handle(m, c->e) == CURLM_OK ? 0 : fed_error(FED_EIO, "curl_multi_add_handle failed");
}

static int start_register(bench *B, CURLM *m, bclient *c) {
    static const char body[] = "{\"protocol\": 1, \"train_examples\": 600, \"test_examples\": 0}";
    c->run = 0, c->round = 0;
    return start_req(B, m, c, S_REGISTER, "POST", "/v1/register", body, sizeof body - 1, NULL);
}
static int start_task(bench *B, CURLM *m, bclient *c) {
    c->run = 0, c->round = 0;
    return start_req(B, m, c, S_TASK, "GET", "/v1/task", NULL, 0, NULL);
}

static double self_cpu(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_sec +
           1e-6 * (double)ru.ru_stime.tv_usec;
}

static void sample_window(bench *B, int end) {
    double u = 0, cpu = proc_cpu(B->pid, &u);
    if (!end) B->self0 = self_cpu();
    else B->self1 = self_cpu();
    if (!end) {
        B->t_win0 = cli_now(), B->cpu_win0 = cpu, B->cpu_u0 = u;
        B->server_sockets = count_sockets(B->pid);
    } else {
        B->t_win1 = cli_now(), B->cpu_win1 = cpu, B->cpu_u1 = u;
    }
}

/* One finished transfer: the client's next step. */
static int step(bench *B, CURLM *m, bclient *c, CURLcode cc) {
    long code = 0;
    curl_easy_getinfo(c->e, CURLINFO_RESPONSE_CODE, &code);
    if (cc != CURLE_OK) {
        if (++c->errors > 5) {
            fprintf(stderr, "federate " BC ": client %d: %s (giving up)\n", c->id, curl_easy_strerror(cc));
            c->state = S_DONE;
            B->finished++;
            return 0;
        }
        B->errors++;
        fprintf(stderr, "federate " BC ": client %d: %s (retrying)\n", c->id, curl_easy_strerror(cc));
        return c->state == S_REGISTER ? start_register(B, m, c) : start_task(B, m, c);
    }
    switch (c->state) {
    case S_REGISTER:
        if (code != 200) {
            fprintf(stderr, "federate " BC ": client %d: register answered %ld: %.300s\n", c->id, code, c->buf ? c->buf : "");
            c->state = S_DONE;
            B->finished++;
            return 0;
        }
        return start_task(B, m, c);
    case S_TASK: {
        if (code == 204) return start_task(B, m, c);
        if (code == 409) return start_register(B, m, c);
        json_t *j = code == 200 ? json_loads(c->buf ? c->buf : "", 0, NULL) : NULL;
        const char *kind = j ? json_string_value(json_object_get(j, "kind")) : NULL;
        if (!kind) {
            fprintf(stderr, "federate " BC ": client %d: task answered %ld: %.300s\n", c->id, code, c->buf ? c->buf : "");
            json_decref(j);
            B->errors++;
            return start_task(B, m, c);
        }
        if (strcmp(kind, "finish") == 0) {
            json_decref(j);
            c->state = S_DONE;
            B->finished++;
            return 0;
        }
        c->kind = strcmp(kind, "fit") == 0 ? 1 : 2;
        c->run = (int64_t)json_integer_value(json_object_get(j, "run_id"));
        c->round = (int)json_integer_value(json_object_get(j, "round"));
        json_decref(j);
        if (c->kind == 1 && c->round == 1 && B->t_win0 == 0) sample_window(B, 0);
        if (c->kind == 1 && c->round == B->rounds && B->t_win1 == 0) sample_window(B, 1);
        if (c->kind == 1 && (c->round < 1 || c->round > B->rounds)) {
            fprintf(stderr, "federate " BC ": client %d: a task for round %d of %d\n", c->id, c->round, B->rounds);
            c->state = S_DONE;
            B->finished++;
            return 0;
        }
        return start_req(B, m, c, S_MODEL, "GET", "/v1/model", NULL, 0, NULL);
    }
    case S_MODEL:
        if (code != 200) {
            fprintf(stderr, "federate " BC ": client %d: model answered %ld: %.300s\n", c->id, code, c->buf ? c->buf : "");
            B->errors++;
            return start_task(B, m, c);
        }
        if (c->kind == 1 && B->train_s > 0) {
            /* client i trains for train_s * (1 + spread * u_i), u_i spread evenly over [-1, 1] */
            double u = B->n > 1 ? 2.0 * c->id / (B->n - 1) - 1.0 : 0.0;
            c->ready_at = cli_now() + B->train_s * (1.0 + B->train_spread * u);
            c->state = S_TRAIN;
            B->training++;
            return 0;
        }
        if (c->kind == 1)
            return start_req(B, m, c, S_RESULT, "POST", "/v1/result", B->bodies[c->round], B->body_len[c->round],
                             B->body_hash[c->round]);
        snprintf(c->eval_body, sizeof c->eval_body, "{\"loss\": 2.3, \"accuracy\": 0.1, \"num_examples\": 0}");
        return start_req(B, m, c, S_EVAL, "POST", "/v1/evaluation", c->eval_body, strlen(c->eval_body), NULL);
    case S_RESULT:
    case S_EVAL:
        if (code == 200 && c->state == S_RESULT) c->accepted++, B->accepted++;
        else if (code != 200) {
            c->rejected++, B->rejected++;
            fprintf(stderr, "federate " BC ": client %d round %d: upload answered %ld: %.300s\n", c->id, c->round, code,
                    c->buf ? c->buf : "");
        }
        if (c->state == S_RESULT && c->round == B->rounds) {
            /* hold: the counters are read before the coordinator says finish and exits */
            c->state = S_HOLD;
            B->holding++;
            return 0;
        }
        return start_task(B, m, c);
    }
    return 0;
}

/* ---- the monitoring requests (plain blocking curl) ---------------------------- */

static size_t to_buf(char *p, size_t sz, size_t nm, void *ud) {
    bclient *c = ud;
    c->state = S_TASK;
    return on_data(p, sz, nm, ud);
}

static char *get(bench *B, const char *path) {
    bclient tmp = {0};
    CURL *e = curl_easy_init();
    if (!e) return NULL;
    char url[256];
    snprintf(url, sizeof url, "%s%s", B->base, path);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, to_buf);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &tmp);
    curl_easy_setopt(e, CURLOPT_TIMEOUT, 30L);
    if (B->tls) curl_easy_setopt(e, CURLOPT_CAINFO, B->ca);
    long code = 0;
    if (curl_easy_perform(e) != CURLE_OK || (curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code), code != 200)) {
        free(tmp.buf);
        tmp.buf = NULL;
    }
    curl_easy_cleanup(e);
    if (tmp.buf == NULL) return NULL;
    return tmp.buf;
}

static int64_t metric(const char *text, const char *name) {
    size_t l = strlen(name);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, name, l) == 0 && p[l] == ' ') return (int64_t)strtod(p + l + 1, NULL);
    return -1;
}
static int64_t metric_sum(const char *text, const char *prefix) {
    size_t l = strlen(prefix);
    int64_t s = 0;
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, prefix, l) == 0 && p[l] == '{') {
            const char *sp = strchr(p, ' ');
            if (sp) s += (int64_t)strtod(sp + 1, NULL);
        }
    return s;
}

/* ---- the wire baseline: the same bytes over plain TCP, thread per connection --- */

typedef struct wire_job {
    int fd;
    size_t down, up;
    int ok;
    double cpu;               /* the serving thread's CPU seconds */
} wire_job;

static const char zeros[1 << 16];
static char sink[1 << 16];

static int xfer(int fd, size_t n, int send_it) {
    while (n) {
        size_t k = n < sizeof zeros ? n : sizeof zeros;
        ssize_t r = send_it ? send(fd, zeros, k, MSG_NOSIGNAL) : recv(fd, sink, k, 0);
        if (r <= 0) {
            if (r < 0 && errno == EINTR) continue;
            return -1;
        }
        n -= (size_t)r;
    }
    return 0;
}
static void *wire_server(void *a) {
    wire_job *j = a;
    j->ok = xfer(j->fd, j->down, 1) == 0 && xfer(j->fd, j->up, 0) == 0;
    close(j->fd);
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    j->cpu = (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
    return NULL;
}
typedef struct wire_cli {
    struct sockaddr_in addr;
    size_t down, up;
    int ok;
} wire_cli;
static void *wire_client(void *a) {
    wire_cli *w = a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    w->ok = fd >= 0 && connect(fd, (struct sockaddr *)&w->addr, sizeof w->addr) == 0 && xfer(fd, w->down, 0) == 0 &&
            xfer(fd, w->up, 1) == 0;
    if (fd >= 0) close(fd);
    return NULL;
}

/* Seconds to move n x (down + up) bytes over n concurrent loopback TCP connections;
 * *server_cpu: CPU seconds of the serving side (a thread per connection, like the coordinator). */
static double wire_baseline(int n, size_t down, size_t up, double *server_cpu) {
    *server_cpu = NAN;
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, n + 16) ||
        getsockname(ls, (struct sockaddr *)&a, &al)) {
        if (ls >= 0) close(ls);
        return NAN;
    }
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setstacksize(&at, 256 << 10);
    pthread_t *ct = calloc((size_t)n, sizeof *ct), *st = calloc((size_t)n, sizeof *st);
    wire_cli *wc = calloc((size_t)n, sizeof *wc);
    wire_job *wj = calloc((size_t)n, sizeof *wj);
    double dt = NAN;
    if (!ct || !st || !wc || !wj) goto out;
    double t0 = cli_now();
    int started = 0, accepted = 0, ok = 1;
    for (; started < n; started++) {
        wc[started] = (wire_cli){a, down, up, 0};
        if (pthread_create(&ct[started], &at, wire_client, &wc[started])) break;
    }
    for (; accepted < started; accepted++) {
        int fd = accept(ls, NULL, NULL);
        if (fd < 0) break;
        wj[accepted] = (wire_job){fd, down, up, 0, 0};
        if (pthread_create(&st[accepted], &at, wire_server, &wj[accepted])) {
            close(fd);
            break;
        }
    }
    for (int i = 0; i < started; i++) pthread_join(ct[i], NULL), ok &= wc[i].ok;
    double cpu = 0;
    for (int i = 0; i < accepted; i++) pthread_join(st[i], NULL), ok &= wj[i].ok, cpu += wj[i].cpu;
    if (ok && started == n && accepted == n) dt = cli_now() - t0, *server_cpu = cpu;
out:
    pthread_attr_destroy(&at);
    close(ls);
    free(ct), free(st), free(wc), free(wj);
    return dt;
}

/* ---- set-up ------------------------------------------------------------------------ */

static int write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return fed_error(FED_EIO, "%s: %s", path, strerror(errno));
    int bad = fputs(text, f) < 0;
    bad |= fclose(f) != 0;
    return bad ? fed_error(FED_EIO, "%s: write failed", path) : 0;
}

static void raise_fd_limit(void) {
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
        r.rlim_cur = r.rlim_max;
        setrlimit(RLIMIT_NOFILE, &r);
    }
}

int cmd_bench_coordinator(int argc, char **argv) {
    int n = 100, rounds = 3, tls = 0, keep = 0, baseline = 0, long_poll = 20;
    const char *model = "mlp", *hidden = "32", *dir_arg = NULL, *server_bin = NULL;
    double timeout = 600, train_s = 0, train_spread = 0.2;
    static const char *const models[] = {"mlp", "cnn", "cnn-dp", NULL};
    const arg_spec specs[] = {
        {"clients", ARG_INT, &n, "simulated clients, all selected every round (default 100)", 1, 100000, NULL},
        {"rounds", ARG_INT, &rounds, "rounds; the last one also evaluates and is not timed (default 3)", 2, 10000, NULL},
        {"model", ARG_STRING, &model, "model of the federation (default mlp)", NO_RANGE, models},
        {"hidden", ARG_STRING, &hidden, "mlp hidden sizes (default 32)", NO_RANGE, NULL},
        {"tls", ARG_FLAG, &tls, "serve over TLS with a test CA (default plain HTTP on loopback)", NO_RANGE, NULL},
        {"wire-baseline", ARG_FLAG, &baseline, "also time the same bytes over plain TCP and report the protocol's share",
         NO_RANGE, NULL},
        {"train-s", ARG_FLOAT, &train_s,
         "emulate local training: each client waits this long between its download and its upload (default 0)", 0, 3600,
         NULL},
        {"train-spread", ARG_FLOAT, &train_spread, "with --train-s: client times spread evenly over train-s * (1 +- this) "
         "(default 0.2)", 0, 0.99, NULL},
        {"long-poll", ARG_INT, &long_poll, "server.long_poll seconds (default 20)", 1, 600, NULL},
        {"timeout", ARG_FLOAT, &timeout, "give up after this many seconds (default 600)", 1, 86400, NULL},
        {"dir", ARG_STRING, &dir_arg, "work folder (default a fresh one under $TMPDIR, removed afterwards)", NO_RANGE, NULL},
        {"keep", ARG_FLAG, &keep, "keep the work folder (server.log, server.db)", NO_RANGE, NULL},
        {"server-bin", ARG_STRING, &server_bin, "federate binary that serves (default this one)", NO_RANGE, NULL},
        ARG_END,
    };
    int rc = args_parse(BC, "[--clients N] [--rounds R] [--model mlp|cnn] [FLAGS]", specs, argc, argv, 3, NULL, 0, NULL);
    if (rc) return rc > 0 ? 0 : 2;
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && (rlim_t)(2 * n + 64) > rl.rlim_cur)
        fprintf(stderr, "federate " BC ": warning: %d clients need about %d file descriptors; the limit is %llu\n", n,
                2 * n + 64, (unsigned long long)rl.rlim_cur);
    if ((rc = fed_crypto_init())) return cli_fail(BC, "crypto", rc);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "federate " BC ": curl_global_init failed\n");
        return 1;
    }
    bench B = {0};
    B.n = n, B.rounds = rounds, B.tls = tls, B.model = model, B.pid = -1;
    B.train_s = train_s, B.train_spread = train_spread;
    bclient *cl = calloc((size_t)n, sizeof *cl);
    fed_model *proto = NULL;
    fed_allowlist *al = NULL;
    CURLM *m = NULL;
    int status = 1, spawned = 0;
    double t_start = cli_now();
    char dir[512], path[700], self[PATH_MAX];
    B.bodies = calloc((size_t)rounds + 1, sizeof *B.bodies);
    B.body_len = calloc((size_t)rounds + 1, sizeof *B.body_len);
    B.body_hash = calloc((size_t)rounds + 1, sizeof *B.body_hash);
    if (!cl || !B.bodies || !B.body_len || !B.body_hash) { fprintf(stderr, "federate " BC ": out of memory\n"); goto out; }
    if (dir_arg) {
        snprintf(dir, sizeof dir, "%s", dir_arg);
        if (mkdir(dir, 0700) && errno != EEXIST) { fprintf(stderr, "federate " BC ": %s: %s\n", dir, strerror(errno)); goto out; }
    } else {
        const char *tmp = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/federate-bench-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(dir)) { fprintf(stderr, "federate " BC ": mkdtemp: %s\n", strerror(errno)); goto out; }
    }
    /* the model the clients upload updates of (MNIST-shaped, like the coordinator's) */
    if (cli_model_for(BC, model, 1, 28, 28, 10, strcmp(model, "mlp") == 0 ? hidden : NULL, "batch", &proto)) goto out;
    B.proto = proto;
    size_t np = fed_model_num_params(proto), nb = fed_model_num_buffers(proto);
    {
        float *d = malloc(np * sizeof(float)), *bf = calloc(nb ? nb : 1, sizeof(float));
        if (!d || !bf) { free(d), free(bf); fprintf(stderr, "federate " BC ": out of memory\n"); goto out; }
        for (int r = 1; r <= rounds; r++) {
            fed_rng g;
            fed_rng_init(&g, 1, (uint64_t)r, 0, FED_RNG_USER);
            fed_rng_fill_normal(&g, d, np, 0, 1e-3f);
            double nrm = fed_vec_norm2(d, np);
            char nrms[40];
            snprintf(nrms, sizeof nrms, "%.17g", nrm);
            const char *meta[] = {"num_examples", "600", "steps", "30", "lr", "0.1", "loss_before", "nan",
                                  "train_loss", "0.5", "train_accuracy", "nan", "update_norm", nrms};
            if ((rc = fed_net_pack(proto, d, nb ? bf : NULL, NULL, meta, 7, &B.bodies[r], &B.body_len[r]))) {
                free(d), free(bf);
                cli_fail(BC, "packing an update", rc);
                goto out;
            }
            hash_hex(B.body_hash[r], B.bodies[r], B.body_len[r]);
        }
        free(d), free(bf);
    }
    {   /* the precomputed-hash signed text is the library's */
        char a[1024], b[1024];
        int la = fed_net_signed_text(a, sizeof a, "POST", "/v1/result", 3, 1, 7, 1700000000, "00112233445566778899aabbccddeeff",
                                     B.bodies[1], B.body_len[1]);
        int lb = signed_text(b, sizeof b, "POST", "/v1/result", 3, 1, 7, 1700000000, "00112233445566778899aabbccddeeff",
                             B.body_hash[1]);
        if (la < 0 || la != lb || memcmp(a, b, (size_t)la)) {
            fprintf(stderr, "federate " BC ": internal error: signed text differs from fed_net_signed_text\n");
            goto out;
        }
    }
    /* keys and the allow-list */
    snprintf(path, sizeof path, "%s/clients.db", dir);
    unlink(path);
    if ((rc = fed_allowlist_open(&al, path))) { cli_fail(BC, "allow-list", rc); goto out; }
    fed_allowlist_close(al);   /* created the table */
    al = NULL;
    {
        /* one transaction for all keys (fed_allowlist_enroll commits each: a thousand fsyncs);
         * the table is the documented one (docs/protocol.md, "Identities") */
        sqlite3 *db = NULL;
        sqlite3_stmt *ins = NULL;
        int bad = sqlite3_open(path, &db) != SQLITE_OK || sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK ||
                  sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO fed_enrolled (client, public_key) VALUES (?, ?)", -1, &ins,
                                     NULL) != SQLITE_OK;
        for (int i = 0; i < n && !bad; i++) {
            uint8_t pk[FED_SIGN_PUBLICKEYBYTES];
            char hex[2 * FED_SIGN_PUBLICKEYBYTES + 1];
            cl[i].id = i;
            if ((rc = fed_sign_keypair(pk, cl[i].sk))) { bad = 1; break; }
            fed_hex_encode(hex, pk, sizeof pk);
            bad = sqlite3_bind_int(ins, 1, i) != SQLITE_OK || sqlite3_bind_text(ins, 2, hex, -1, SQLITE_TRANSIENT) != SQLITE_OK ||
                  sqlite3_step(ins) != SQLITE_DONE || sqlite3_reset(ins) != SQLITE_OK;
        }
        sqlite3_finalize(ins);
        bad |= !db || sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK;
        if (bad) fprintf(stderr, "federate " BC ": enrolling the keys in %s: %s\n", path, db ? sqlite3_errmsg(db) : "cannot open");
        sqlite3_close(db);
        if (bad) goto out;
    }
    /* read back through the library: what the coordinator will see */
    if ((rc = fed_allowlist_open(&al, path))) { cli_fail(BC, "allow-list", rc); goto out; }
    if (fed_allowlist_count(al) != n) { fprintf(stderr, "federate " BC ": the allow-list holds %d keys, not %d\n", fed_allowlist_count(al), n); goto out; }
    fed_allowlist_close(al);
    al = NULL;
    if (tls) {
        if ((rc = fed_certs_make(dir, 0, NULL, 2))) { cli_fail(BC, "certificates", rc); goto out; }
        snprintf(B.ca, sizeof B.ca, "%s/ca.pem", dir);
    }
    {
        char yaml[4096];
        snprintf(yaml, sizeof yaml,
                 "name: bench-coordinator\nseed: 1\ndataset: mnist\nnum_clients: %d\nclients_per_round: %d\n"
                 "min_clients: 1\nnum_rounds: %d\nmodel: %s\n%s%s%slocal_epochs: 1\nbatch_size: 20\nlearning_rate: 0.1\n"
                 "strategy: fedavg\nthreads: 1\nevaluation_every: %d\n"
                 "server:\n  listen: 127.0.0.1:0\n  store: %s/server.db\n  allow_list: %s/clients.db\n"
                 "  port_file: %s/port\n  cert: %s/server.pem\n  key: %s/server-key.pem\n  round_timeout: %.0f\n"
                 "  round_retries: 0\n  register_timeout: %.0f\n  long_poll: %d\n",
                 n, n, rounds, model, strcmp(model, "mlp") == 0 ? "hidden: \"" : "", strcmp(model, "mlp") == 0 ? hidden : "",
                 strcmp(model, "mlp") == 0 ? "\"\n" : "", rounds + 1000000, dir, dir, dir, dir, dir, timeout, timeout,
                 long_poll);
        snprintf(path, sizeof path, "%s/server.yaml", dir);
        if ((rc = write_text(path, yaml))) { cli_fail(BC, "server.yaml", rc); goto out; }
    }
    /* the coordinator: its own process */
    if (server_bin) snprintf(self, sizeof self, "%s", server_bin);
    else {
        ssize_t k = readlink("/proc/self/exe", self, sizeof self - 1);
        if (k <= 0) { fprintf(stderr, "federate " BC ": cannot find this binary (give --server-bin)\n"); goto out; }
        self[k] = '\0';
    }
    {
        char cfgp[700], outp[700], logp[700];
        snprintf(cfgp, sizeof cfgp, "%s/server.yaml", dir);
        snprintf(outp, sizeof outp, "%s/server.out", dir);
        snprintf(logp, sizeof logp, "%s/server.log", dir);
        char *sargv[] = {self, "server", "--config", cfgp, tls ? NULL : "--insecure-plaintext", NULL};
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 1, outp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        posix_spawn_file_actions_addopen(&fa, 2, logp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int e = posix_spawn(&B.pid, self, &fa, NULL, sargv, environ);
        posix_spawn_file_actions_destroy(&fa);
        if (e) { fprintf(stderr, "federate " BC ": cannot start %s server: %s\n", self, strerror(e)); goto out; }
        spawned = 1;
    }
    int port = 0;
    snprintf(path, sizeof path, "%s/port", dir);
    for (int i = 0; i < 600 && !port; i++) {
        FILE *f = fopen(path, "r");
        if (f) {
            if (fscanf(f, "%d", &port) != 1) port = 0;
            fclose(f);
        }
        if (!port) {
            int st;
            if (waitpid(B.pid, &st, WNOHANG) == B.pid) {
                spawned = 0;
                fprintf(stderr, "federate " BC ": the coordinator exited at start (see %s/server.log)\n", dir);
                keep = 1;
                goto out;
            }
            nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
        }
    }
    if (!port) { fprintf(stderr, "federate " BC ": the coordinator did not start\n"); keep = 1; goto out; }
    double t_served = cli_now();
    snprintf(B.base, sizeof B.base, "%s://127.0.0.1:%d", tls ? "https" : "http", port);
    /* the clients */
    m = curl_multi_init();
    if (!m) goto out;
    curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, (long)n + 16);
    for (int i = 0; i < n; i++) {
        bclient *c = &cl[i];
        if (!(c->e = curl_easy_init())) { fprintf(stderr, "federate " BC ": curl_easy_init failed\n"); goto out; }
        curl_easy_setopt(c->e, CURLOPT_PRIVATE, c);
        curl_easy_setopt(c->e, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(c->e, CURLOPT_WRITEDATA, c);
        curl_easy_setopt(c->e, CURLOPT_TIMEOUT, (long)(long_poll + timeout));
        curl_easy_setopt(c->e, CURLOPT_CONNECTTIMEOUT, 60L);
        curl_easy_setopt(c->e, CURLOPT_NOSIGNAL, 1L);
        if (tls) curl_easy_setopt(c->e, CURLOPT_CAINFO, B.ca);
        if ((rc = start_register(&B, m, c))) { cli_fail(BC, "request", rc); goto out; }
    }
    double give_up = cli_now() + timeout;
    int stage = 0;   /* 0 running, 1 counters read, releasing the held clients */
    char *metrics = NULL, *rounds_json = NULL, *clients_json = NULL;
    while (B.finished < n) {
        int running = 0;
        curl_multi_perform(m, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left))) {
            if (msg->msg != CURLMSG_DONE) continue;
            bclient *c = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&c);
            CURLcode cc = msg->data.result;
            curl_multi_remove_handle(m, msg->easy_handle);
            if (c && (rc = step(&B, m, c, cc))) { cli_fail(BC, "request", rc); goto out; }
        }
        if (B.training > 0) {
            double now = cli_now();
            for (int i = 0; i < n; i++) {
                bclient *c = &cl[i];
                if (c->state != S_TRAIN || now < c->ready_at) continue;
                B.training--;
                if ((rc = start_req(&B, m, c, S_RESULT, "POST", "/v1/result", B.bodies[c->round], B.body_len[c->round],
                                    B.body_hash[c->round]))) { cli_fail(BC, "request", rc); goto out; }
            }
        }
        if (stage == 0 && B.holding + B.finished >= n) {
            /* every client delivered its last update: wait for the run to end, read the counters, let them go */
            for (int i = 0; i < 600; i++) {
                char *st = get(&B, "/api/status");
                int fin = st && strstr(st, "\"phase\":\"finished\"");
                int failed = st && (strstr(st, "\"phase\":\"failed\"") || strstr(st, "\"phase\":\"stopped\""));
                free(st);
                if (fin || failed) break;
                nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
            }
            metrics = get(&B, "/metrics");
            rounds_json = get(&B, "/api/rounds");
            clients_json = get(&B, "/api/clients");
            for (int i = 0; i < n; i++)
                if (cl[i].state == S_HOLD && (rc = start_task(&B, m, &cl[i]))) { cli_fail(BC, "request", rc); goto out; }
            stage = 1;
        }
        if (cli_now() > give_up) {
            fprintf(stderr, "federate " BC ": timed out after %.0f s (%" PRId64 " updates accepted)\n", timeout, B.accepted);
            keep = 1;
            goto out;
        }
        if (B.finished < n) curl_multi_poll(m, NULL, 0, B.training > 0 ? 2 : 100, NULL);
    }
    int st = 0;
    waitpid(B.pid, &st, 0);
    spawned = 0;
    double wall = cli_now() - t_start;
    if (!metrics || !rounds_json || !clients_json) {
        fprintf(stderr, "federate " BC ": could not read the coordinator's /metrics and /api (see %s/server.log)\n", dir);
        keep = 1;
        goto out_free;
    }
    /* exactly once: the coordinator's counters, each round's clients, each client's count */
    int64_t m_acc = metric(metrics, "federate_updates_accepted_total");
    int64_t m_rej = metric_sum(metrics, "federate_updates_rejected_total");
    int64_t m_rounds = metric(metrics, "federate_rounds_completed_total");
    json_t *jr = json_loads(rounds_json, 0, NULL), *jc = json_loads(clients_json, 0, NULL);
    int64_t per_round = 0, dropped = 0;
    double round_s = 0;
    int timed = 0;
    size_t i;
    json_t *v;
    json_array_foreach(jr, i, v) {
        per_round += json_integer_value(json_object_get(v, "finished"));
        dropped += json_integer_value(json_object_get(v, "dropped"));
        int r = (int)json_integer_value(json_object_get(v, "round"));
        if (r < rounds) round_s += json_real_value(json_object_get(v, "wall_s")), timed++;
    }
    int wrong_clients = 0;
    json_array_foreach(jc, i, v) {
        if (json_integer_value(json_object_get(v, "accepted")) != rounds) wrong_clients++;
    }
    int nrj = jr ? (int)json_array_size(jr) : 0, ncj = jc ? (int)json_array_size(jc) : 0;
    json_decref(jr);
    json_decref(jc);
    int64_t expected = (int64_t)n * rounds;
    int64_t lost = expected - (m_acc < B.accepted ? m_acc : B.accepted);
    int ok = m_acc == expected && B.accepted == expected && per_round == expected && dropped == 0 && m_rej == 0 &&
             B.rejected == 0 && wrong_clients == 0 && nrj == rounds && ncj == n && m_rounds == rounds &&
             WIFEXITED(st) && WEXITSTATUS(st) == 0;
    double win_s = B.t_win1 - B.t_win0, cpu = B.cpu_win1 - B.cpu_win0, cpu_u = B.cpu_u1 - B.cpu_u0;
    int64_t win_updates = (int64_t)n * (rounds - 1);
    printf("clients: %d\n", n);
    printf("rounds: %d\n", rounds);
    printf("model: %s\n", model);
    printf("params: %zu\n", np);
    printf("update_bytes: %zu\n", B.body_len[1]);
    printf("transport: %s\n", tls ? "https" : "http");
    printf("server_connections: %d\n", B.server_sockets);
    printf("updates_accepted: %" PRId64 "\n", m_acc);
    printf("updates_rejected: %" PRId64 "\n", m_rej + B.rejected);
    printf("updates_lost: %" PRId64 "\n", lost < 0 ? 0 : lost);
    printf("updates_double_counted: %" PRId64 "\n", m_acc > expected ? m_acc - expected : 0);
    printf("clients_with_wrong_count: %d\n", wrong_clients);
    printf("request_errors: %" PRId64 "\n", B.errors);
    printf("round_s: %.3f\n", timed ? round_s / timed : NAN);
    printf("coordinator_cpu_s: %.2f\n", cpu);
    printf("overhead_ms_per_update: %.3f\n", win_updates > 0 ? 1000.0 * cpu / (double)win_updates : NAN);
    printf("overhead_user_ms_per_update: %.3f\n", win_updates > 0 ? 1000.0 * cpu_u / (double)win_updates : NAN);
    printf("client_cpu_ms_per_update: %.3f\n", win_updates > 0 ? 1000.0 * (B.self1 - B.self0) / (double)win_updates : NAN);
    printf("updates_per_s: %.0f\n", win_s > 0 ? (double)win_updates / win_s : NAN);
    if (baseline) {
        /* each client downloads the packed global model and uploads an update: both the update's size */
        double wcpu, w = wire_baseline(n, B.body_len[1], B.body_len[1], &wcpu);
        double rs = timed ? round_s / timed : NAN;
        /* the coordinator's CPU beyond what serving the same bytes over bare TCP costs */
        printf("wire_server_cpu_ms_per_update: %.3f\n", 1000.0 * wcpu / n);
        printf("overhead_beyond_wire_ms_per_update: %.3f\n",
               win_updates > 0 ? 1000.0 * cpu / (double)win_updates - 1000.0 * wcpu / n : NAN);
        printf("wire_s: %.3f\n", w);
        if (train_s > 0) {
            /* On the round's critical path: every download (sent at once when the
             * round opens), the slowest client's training and its one upload;
             * the other uploads overlap with training that is still going on. */
            double train_max = train_s * (1.0 + (n > 1 ? train_spread : 0.0));
            double crit_wire = w / 2 + w / (2.0 * n);
            printf("train_s_max: %.3f\n", train_max);
            printf("critical_wire_s: %.3f\n", crit_wire);
            printf("protocol_overhead_pct: %.1f\n", 100.0 * (rs - train_max - crit_wire) / rs);
        } else {
            printf("protocol_overhead_pct: %.1f\n", 100.0 * (rs - w) / rs);
        }
    }
    printf("setup_s: %.1f\n", t_served - t_start);
    printf("wall_s: %.1f\n", wall);
    if (!ok) {
        fprintf(stderr, "federate " BC ": FAILED: expected %" PRId64 " accepted updates (%d clients x %d rounds); coordinator "
                        "counted %" PRId64 ", clients saw %" PRId64 ", rounds list %" PRId64 ", %" PRId64 " dropped, %d clients "
                        "with a wrong count, coordinator exit status %d (see %s/server.log)\n",
                expected, n, rounds, m_acc, B.accepted, per_round, dropped, wrong_clients,
                WIFEXITED(st) ? WEXITSTATUS(st) : -1, dir);
        keep = 1;
    } else status = 0;
out_free:
    free(metrics), free(rounds_json), free(clients_json);
out:
    if (spawned) {
        kill(B.pid, SIGKILL);
        waitpid(B.pid, NULL, 0);
    }
    for (int i = 0; cl && i < n; i++) {
        if (cl[i].e) {
            if (m) curl_multi_remove_handle(m, cl[i].e);
            curl_easy_cleanup(cl[i].e);
        }
        curl_slist_free_all(cl[i].hdrs);
        free(cl[i].buf);
        fed_crypto_wipe(cl[i].sk, sizeof cl[i].sk);
    }
    if (m) curl_multi_cleanup(m);
    free(cl);
    fed_allowlist_close(al);
    fed_model_free(proto);
    for (int r = 0; B.bodies && r <= rounds; r++) free(B.bodies[r]);
    free(B.bodies), free(B.body_len), free(B.body_hash);
    if (!keep && !dir_arg) {
        static const char *const files[] = {"server.yaml", "server.db", "server.db-wal", "server.db-shm", "clients.db",
                                            "clients.db-wal", "clients.db-shm", "port", "server.out", "server.log",
                                            "ca.pem", "ca-key.pem", "server.pem", "server-key.pem", NULL};
        for (int k = 0; files[k]; k++) {
            snprintf(path, sizeof path, "%s/%s", dir, files[k]);
            unlink(path);
        }
        rmdir(dir);
    } else if (status) {
        fprintf(stderr, "federate " BC ": work folder kept: %s\n", dir);
    }
    curl_global_cleanup();
    return status;
}
