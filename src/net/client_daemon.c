/* The client daemon (libcurl): registers with the coordinator, long-polls for
 * tasks, trains on its own data folder only with fed_client_fit (the function
 * the simulator's workers call), and uploads its signed update. Transient
 * failures are retried with exponential backoff; a coordinator that restarts
 * is found again. Protocol: docs/protocol.md. */
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "federate/error.h"
#include "federate/net.h"
#include "federate/pool.h"
#include "secagg_relay.h"

typedef struct buf {
    char *p;
    size_t len, cap;
} buf;

typedef struct daemon_s {
    const fed_client_opts *o;
    volatile int *stop;
    CURL *curl;
    uint8_t sk[FED_SIGN_SECRETKEYBYTES], pk[FED_SIGN_PUBLICKEYBYTES];
    fed_peer_keys *peers;     /* --peer-keys (NULL without) */
    char base[512];
    /* own data: train examples then test examples, raw pixels / 255 */
    fed_dataset raw;
    size_t ntrain, ntest;
    int32_t label_counts[10];
    /* set up from the coordinator's config */
    char *cfg_yaml;
    fed_config cfg;
    fed_federation fed;
    fed_pipeline pipe;
    int have_pipe;
    fed_client_state *state;
    int64_t state_run;
    /* compressed uploads: the run's codec, and error feedback's residual kept
     * on this client's disk (never sent) */
    fed_codec *codec;
    fed_client_state *resid;
    int64_t resid_run;
    /* download_compression: the codec, and the last copy of the global model
     * this client decoded (the base of the next delta frame), on its disk */
    fed_codec *down_codec;
    fed_client_state *down;
    char down_dir[1300];
    int64_t down_run;
    char extra_hdr[200];      /* one more request header for the next request, or "" */
    fed_model *model;
    size_t n, nb;
    float *global, *gbuf, *control, *delta, *delta_c, *bufs;
    int long_poll;
} daemon_s;

static void say(const daemon_s *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(const daemon_s *d, const char *fmt, ...) {
    if (d->o->quiet) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "federate client %d: ", d->o->id);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

static size_t on_body(char *p, size_t sz, size_t nm, void *ud) {
    buf *b = ud;
    size_t n = sz * nm;
    if (b->len + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 65536;
        while (nc < b->len + n + 1) nc *= 2;
        char *q = realloc(b->p, nc);
        if (!q) return 0;
        b->p = q;
        b->cap = nc;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
    return n;
}

typedef struct hdrs {
    int zstd;
} hdrs;

static size_t on_header(char *p, size_t sz, size_t nm, void *ud) {
    hdrs *h = ud;
    size_t n = sz * nm;
    if (n >= 17 && strncasecmp(p, "Content-Encoding:", 17) == 0 && memmem(p, n, "zstd", 4)) h->zstd = 1;
    return n;
}

/* One signed request. Returns the HTTP status, or a negative FED_E* code when no
 * answer came (connection refused, timeout, TLS failure). */
static int request(daemon_s *d, const char *method, const char *path, int64_t run, int round, const void *body,
                   size_t len, const char *encoding, double timeout_s, buf *out, hdrs *oh) {
    uint8_t nonce[16], sig[FED_SIGN_BYTES];
    char nonce_hex[33], sig_hex[2 * FED_SIGN_BYTES + 1], text[1024], h[10][200];
    fed_crypto_random(nonce, sizeof nonce);
    fed_hex_encode(nonce_hex, nonce, sizeof nonce);
    int64_t ts = (int64_t)time(NULL);
    int tl = fed_net_signed_text(text, sizeof text, method, path, run, round, d->o->id, ts, nonce_hex, body, len);
    if (tl < 0) return tl;
    fed_sign_detached(sig, text, (size_t)tl, d->sk);
    fed_hex_encode(sig_hex, sig, sizeof sig);
    int nh = 0;
    snprintf(h[nh++], sizeof h[0], "X-Federate-Client: %d", d->o->id);
    snprintf(h[nh++], sizeof h[0], "X-Federate-Timestamp: %" PRId64, ts);
    snprintf(h[nh++], sizeof h[0], "X-Federate-Nonce: %s", nonce_hex);
    snprintf(h[nh++], sizeof h[0], "X-Federate-Signature: %s", sig_hex);
    snprintf(h[nh++], sizeof h[0], "X-Federate-Run: %" PRId64, run);
    snprintf(h[nh++], sizeof h[0], "X-Federate-Round: %d", round);
    if (encoding) snprintf(h[nh++], sizeof h[0], "Content-Encoding: %s", encoding);
    snprintf(h[nh++], sizeof h[0], "Accept-Encoding: zstd");
    if (d->extra_hdr[0]) snprintf(h[nh++], sizeof h[0], "%s", d->extra_hdr);
    struct curl_slist *sl = NULL;
    for (int i = 0; i < nh; i++) sl = curl_slist_append(sl, h[i]);
    sl = curl_slist_append(sl, "Expect:");
    if (body) sl = curl_slist_append(sl, "Content-Type: application/octet-stream");
    char url[700];
    snprintf(url, sizeof url, "%s%s", d->base, path);
    CURL *c = d->curl;
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, sl);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(timeout_s * 1000));
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, oh);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    if (d->o->ca_file) curl_easy_setopt(c, CURLOPT_CAINFO, d->o->ca_file);
    if (d->o->cert_file) {
        curl_easy_setopt(c, CURLOPT_SSLCERT, d->o->cert_file);
        curl_easy_setopt(c, CURLOPT_SSLKEY, d->o->cert_key_file ? d->o->cert_key_file : d->o->cert_file);
    }
    if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    out->len = 0;
    if (out->p) out->p[0] = '\0';
    oh->zstd = 0;
    CURLcode cc = curl_easy_perform(c);
    curl_slist_free_all(sl);
    if (cc != CURLE_OK) return fed_error(FED_EIO, "%s %s: %s", method, url, curl_easy_strerror(cc));
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    return (int)status;
}

static void sleep_s(double s) {
    struct timespec t = {(time_t)s, (long)((s - floor(s)) * 1e9)};
    nanosleep(&t, NULL);
}

/* request() with retries: transport failures and 5xx are retried with
 * exponential backoff (0.25 s doubling up to 5 s, jittered) up to max_retries
 * times (0 = until stopped). */
static int call(daemon_s *d, const char *method, const char *path, int64_t run, int round, const void *body,
                size_t len, const char *enc, double timeout_s, buf *out, hdrs *oh) {
    double wait = 0.25;
    for (int attempt = 0;; attempt++) {
        int st = request(d, method, path, run, round, body, len, enc, timeout_s, out, oh);
        if (st >= 200 && st < 500) return st;
        if (d->stop && *d->stop) return st < 0 ? st : fed_error(FED_EIO, "stopped");
        if (d->o->max_retries > 0 && attempt >= d->o->max_retries) {
            if (st >= 500) return fed_error(FED_EIO, "%s %s: HTTP %d after %d retries", method, path, st, attempt);
            return st;
        }
        if (attempt == 0 || attempt % 10 == 0)
            say(d, "%s %s failed (%s); retrying", method, path, st < 0 ? fed_last_error() : "server error");
        sleep_s(wait * (0.5 + fed_crypto_uniform()));
        wait = wait * 2 > 5 ? 5 : wait * 2;
    }
}

static const char *err_text(const buf *b) {
    static _Thread_local char msg[600];
    json_t *j = b->len ? json_loadb(b->p, b->len, 0, NULL) : NULL;
    const char *e = j ? json_string_value(json_object_get(j, "error")) : NULL;
    snprintf(msg, sizeof msg, "%s", e ? e : (b->len ? b->p : "(no body)"));
    json_decref(j);
    return msg;
}

/* ---- local data ------------------------------------------------------------------- */

static int load_data(daemon_s *d) {
    char img[1100], lbl[1100];
    fed_dataset tr = {0}, te = {0};
    snprintf(img, sizeof img, "%s/train-images-idx3-ubyte", d->o->data_dir);
    snprintf(lbl, sizeof lbl, "%s/train-labels-idx1-ubyte", d->o->data_dir);
    int rc = fed_idx_read(img, lbl, &tr);
    if (rc) return rc;
    snprintf(img, sizeof img, "%s/test-images-idx3-ubyte", d->o->data_dir);
    snprintf(lbl, sizeof lbl, "%s/test-labels-idx1-ubyte", d->o->data_dir);
    if (access(img, R_OK) == 0 && (rc = fed_idx_read(img, lbl, &te))) {
        fed_dataset_free(&tr);
        return rc;
    }
    size_t es = fed_dataset_example_size(&tr);
    if (te.n && fed_dataset_example_size(&te) != es) {
        fed_dataset_free(&tr);
        fed_dataset_free(&te);
        return fed_error(FED_EFORMAT, "%s: train and test images differ in size", d->o->data_dir);
    }
    fed_dataset *r = &d->raw;
    *r = tr;
    r->n = tr.n + te.n;
    r->x = malloc(((size_t)r->n * es + 1) * sizeof(float));
    r->y = malloc(((size_t)r->n + 1) * sizeof(int32_t));
    if (!r->x || !r->y) {
        fed_dataset_free(&tr);
        fed_dataset_free(&te);
        return fed_error(FED_ENOMEM, "client data: out of memory");
    }
    memcpy(r->x, tr.x, (size_t)tr.n * es * sizeof(float));
    memcpy(r->y, tr.y, (size_t)tr.n * sizeof(int32_t));
    if (te.n) {
        memcpy(r->x + (size_t)tr.n * es, te.x, (size_t)te.n * es * sizeof(float));
        memcpy(r->y + tr.n, te.y, (size_t)te.n * sizeof(int32_t));
    }
    d->ntrain = (size_t)tr.n;
    d->ntest = (size_t)te.n;
    for (int i = 0; i < tr.n; i++)
        if (tr.y[i] >= 0 && tr.y[i] < 10) d->label_counts[tr.y[i]]++;
    r->num_classes = 10;
    fed_dataset_free(&tr);
    fed_dataset_free(&te);
    return 0;
}

/* The per-channel mean/std fed_dataset_load normalizes with (and so the
 * simulator on `federate partition` folders). */
static int normalization(const char *name, int c, float *mean, float *std) {
    if (strcmp(name, "mnist") == 0 && c == 1) { mean[0] = 0.1307f; std[0] = 0.3081f; return 0; }
    if (strcmp(name, "fashion-mnist") == 0 && c == 1) { mean[0] = 0.2860f; std[0] = 0.3530f; return 0; }
    if (strcmp(name, "cifar10") == 0 && c == 3) {
        const float m[3] = {0.4914f, 0.4822f, 0.4465f}, s[3] = {0.2470f, 0.2435f, 0.2616f};
        memcpy(mean, m, sizeof m);
        memcpy(std, s, sizeof s);
        return 0;
    }
    return fed_error(FED_EINVAL, "data set '%s' does not match images with %d channel(s)", name, c);
}

static void teardown(daemon_s *d) {
    fed_client_state_close(d->state);
    d->state = NULL;
    fed_client_state_close(d->resid);
    d->resid = NULL;
    fed_codec_free(d->codec);
    d->codec = NULL;
    fed_client_state_close(d->down);
    d->down = NULL;
    fed_codec_free(d->down_codec);
    d->down_codec = NULL;
    if (d->have_pipe) fed_pipeline_free(&d->pipe);
    d->have_pipe = 0;
    fed_model_free(d->model);
    d->model = NULL;
    fed_federation_free(&d->fed);
    free(d->global); free(d->gbuf); free(d->control); free(d->delta); free(d->delta_c); free(d->bufs);
    d->global = d->gbuf = d->control = d->delta = d->delta_c = d->bufs = NULL;
}

/* Builds the local federation (this client's lists only), model and pipeline from
 * the coordinator's config. */
static int setup(daemon_s *d, const char *yaml) {
    if (d->cfg_yaml && strcmp(d->cfg_yaml, yaml) == 0) return 0;
    teardown(d);
    free(d->cfg_yaml);
    d->cfg_yaml = strdup(yaml);
    if (!d->cfg_yaml) return fed_error(FED_ENOMEM, "out of memory");
    fed_config_default(&d->cfg);
    int rc = fed_config_load_string(&d->cfg, yaml, strlen(yaml));
    if (rc) return rc;
    fed_config *cfg = &d->cfg;
    if (d->o->id >= cfg->num_clients)
        return fed_error(FED_EINVAL, "client id %d is outside the federation's %d clients", d->o->id, cfg->num_clients);
    fed_federation *f = &d->fed;
    memset(f, 0, sizeof *f);
    /* a private copy, normalized for this run's data set */
    size_t es = fed_dataset_example_size(&d->raw);
    f->train = d->raw;
    f->train.x = malloc(((size_t)d->raw.n * es + 1) * sizeof(float));
    f->train.y = malloc(((size_t)d->raw.n + 1) * sizeof(int32_t));
    if (!f->train.x || !f->train.y) return fed_error(FED_ENOMEM, "out of memory");
    memcpy(f->train.x, d->raw.x, (size_t)d->raw.n * es * sizeof(float));
    memcpy(f->train.y, d->raw.y, (size_t)d->raw.n * sizeof(int32_t));
    float mean[3], std[3];
    if ((rc = normalization(cfg->dataset, d->raw.c, mean, std))) return rc;
    fed_dataset_normalize(&f->train, mean, std);
    int K = cfg->num_clients, id = d->o->id;
    fed_partition *p = &f->part;
    p->num_clients = K;
    p->num_classes = 10;
    p->train = calloc((size_t)K, sizeof *p->train);
    p->test = calloc((size_t)K, sizeof *p->test);
    p->train_n = calloc((size_t)K, sizeof *p->train_n);
    p->test_n = calloc((size_t)K, sizeof *p->test_n);
    p->label_counts = calloc((size_t)K * 10, sizeof *p->label_counts);
    if (!p->train || !p->test || !p->train_n || !p->test_n || !p->label_counts) return fed_error(FED_ENOMEM, "out of memory");
    p->train[id] = malloc((d->ntrain + 1) * sizeof(uint32_t));
    p->test[id] = malloc((d->ntest + 1) * sizeof(uint32_t));
    if (!p->train[id] || !p->test[id]) return fed_error(FED_ENOMEM, "out of memory");
    for (size_t i = 0; i < d->ntrain; i++) p->train[id][i] = (uint32_t)i;
    for (size_t i = 0; i < d->ntest; i++) p->test[id][i] = (uint32_t)(d->ntrain + i);
    p->train_n[id] = d->ntrain;
    p->test_n[id] = d->ntest;
    memcpy(p->label_counts + (size_t)id * 10, d->label_counts, sizeof d->label_counts);
    f->num_clients = K;

    fed_model_opts mo;
    fed_model_opts_default(&mo);
    mo.in_c = d->raw.c;
    mo.in_h = d->raw.h;
    mo.in_w = d->raw.w;
    mo.num_classes = 10;
    if (strcmp(cfg->model, "mlp") == 0) {
        int h = fed_config_hidden(cfg, mo.hidden);
        if (h < 0) return h;
        mo.n_hidden = h;
    }
    if (strcmp(cfg->norm, "group") == 0) mo.norm = FED_NORM_GROUP;
    if ((rc = fed_model_create(&d->model, cfg->model, &mo))) return rc;
    fed_model_set_fast_kernels(d->model, strcmp(cfg->kernels, "reference") != 0);
    d->n = fed_model_num_params(d->model);
    d->nb = fed_model_num_buffers(d->model);
    if (cfg->compression[0] && !cfg->sa_enabled) {
        /* the update leaves as the codec's frame (encoded in do_fit, decoded by
         * the coordinator), so the pipeline here stops before the compress stage */
        fed_config plain = *cfg;
        plain.compression[0] = '\0';
        if ((rc = fed_pipeline_build(&plain, &d->pipe))) return rc;
        d->have_pipe = 1;
        if ((rc = fed_codec_new(&d->codec, cfg->compression))) return rc;
    } else {
        if ((rc = fed_pipeline_build(cfg, &d->pipe))) return rc;
        d->have_pipe = 1;
    }
    if (cfg->download_compression[0] && (rc = fed_codec_new(&d->down_codec, cfg->download_compression))) return rc;
    d->global = malloc(d->n * sizeof(float));
    d->control = malloc(d->n * sizeof(float));
    d->delta = malloc(d->n * sizeof(float));
    d->delta_c = malloc(d->n * sizeof(float));
    d->gbuf = malloc((d->nb + 1) * sizeof(float));
    d->bufs = malloc((d->nb + 1) * sizeof(float));
    if (!d->global || !d->control || !d->delta || !d->delta_c || !d->gbuf || !d->bufs)
        return fed_error(FED_ENOMEM, "out of memory for a model of %zu parameters", d->n);
    return 0;
}

static int open_state(daemon_s *d, int64_t run) {
    if (d->state && d->state_run == run) return 0;
    fed_client_state_close(d->state);
    d->state = NULL;
    char dir[1200], sub[1300];
    if (d->o->state_dir) snprintf(dir, sizeof dir, "%s", d->o->state_dir);
    else snprintf(dir, sizeof dir, "%s/.federate-state", d->o->data_dir);
    if (mkdir(dir, 0700) && errno != EEXIST) return fed_error(FED_EIO, "cannot create state directory %s: %s", dir, strerror(errno));
    snprintf(sub, sizeof sub, "%s/run_%" PRId64, dir, run);
    int rc = fed_client_state_open(&d->state, sub, d->n, d->cfg.checkpoint_every + 1);
    if (!rc) d->state_run = run;
    return rc;
}

/* Error feedback's residual, per run, next to SCAFFOLD's state. */
static int open_resid(daemon_s *d, int64_t run) {
    if (d->resid && d->resid_run == run) return 0;
    fed_client_state_close(d->resid);
    d->resid = NULL;
    char dir[1200], sub[1300];
    if (d->o->state_dir) snprintf(dir, sizeof dir, "%s", d->o->state_dir);
    else snprintf(dir, sizeof dir, "%s/.federate-state", d->o->data_dir);
    if (mkdir(dir, 0700) && errno != EEXIST) return fed_error(FED_EIO, "cannot create state directory %s: %s", dir, strerror(errno));
    snprintf(sub, sizeof sub, "%s/run_%" PRId64 "_residual", dir, run);
    int rc = fed_client_state_open(&d->resid, sub, d->n, d->cfg.checkpoint_every + 1);
    if (!rc) d->resid_run = run;
    return rc;
}

/* The last decoded copy of the global model, per run, next to the residual. */
static int open_down(daemon_s *d, int64_t run) {
    if (d->down && d->down_run == run) return 0;
    fed_client_state_close(d->down);
    d->down = NULL;
    char dir[1200], sub[1300];
    if (d->o->state_dir) snprintf(dir, sizeof dir, "%s", d->o->state_dir);
    else snprintf(dir, sizeof dir, "%s/.federate-state", d->o->data_dir);
    if (mkdir(dir, 0700) && errno != EEXIST) return fed_error(FED_EIO, "cannot create state directory %s: %s", dir, strerror(errno));
    snprintf(sub, sizeof sub, "%s/run_%" PRId64 "_download", dir, run);
    int rc = fed_client_state_open(&d->down, sub, d->n, d->cfg.checkpoint_every + 1);
    if (!rc) d->down_run = run;
    snprintf(d->down_dir, sizeof d->down_dir, "%s", sub);
    return rc;
}

/* The update as the run's codec frame, exactly as the simulator's compress
 * stage encodes it (same stream address, same residual), so the coordinator
 * decodes the values the simulation would aggregate. */
static int encode_update(daemon_s *d, int64_t run, int round, const float *delta, uint8_t **frame, size_t *flen) {
    float *res = NULL;
    int rc = 0;
    if (d->cfg.compression_error_feedback) {
        if ((rc = open_resid(d, run))) return rc;
        if (!(res = malloc(d->n * sizeof(float)))) return fed_error(FED_ENOMEM, "out of memory");
        if ((rc = fed_client_state_get(d->resid, d->o->id, round, res))) goto out;
    }
    fed_codec_ctx cc = {d->cfg.seed, (uint64_t)round, (uint64_t)d->o->id};
    if ((rc = fed_codec_encode(d->codec, &cc, delta, d->n, res, frame, flen))) goto out;
    if (res && (rc = fed_client_state_put(d->resid, d->o->id, round, res))) {
        free(*frame);
        *frame = NULL;
    }
out:
    free(res);
    return rc;
}

/* ---- the loop ------------------------------------------------------------------------ */

static int do_register(daemon_s *d, buf *b, hdrs *h) {
    json_t *lc = json_array();
    for (int i = 0; i < 10; i++) json_array_append_new(lc, json_integer(d->label_counts[i]));
    json_t *j = json_pack("{s:i, s:I, s:I, s:o}", "protocol", FED_PROTOCOL_VERSION, "train_examples",
                          (json_int_t)d->ntrain, "test_examples", (json_int_t)d->ntest, "label_counts", lc);
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!s) return fed_error(FED_ENOMEM, "out of memory");
    int st = call(d, "POST", "/v1/register", 0, 0, s, strlen(s), NULL, d->o->timeout_s, b, h);
    free(s);
    if (st < 0) return st;
    if (st != 200) return fed_error(st == 401 || st == 403 ? FED_ESTATE : FED_EIO, "registration refused (HTTP %d): %s", st, err_text(b));
    json_t *r = json_loadb(b->p, b->len, 0, NULL);
    const char *yaml = r ? json_string_value(json_object_get(r, "config")) : NULL;
    json_t *lp = r ? json_object_get(r, "long_poll") : NULL;
    d->long_poll = json_is_integer(lp) ? (int)json_integer_value(lp) : 20;
    int rc = yaml ? setup(d, yaml) : fed_error(FED_EFORMAT, "registration answer lacks the config");
    json_decref(r);
    if (rc) {
        /* permanent: this client cannot take part in this federation as configured */
        char msg[900];
        snprintf(msg, sizeof msg, "%s", fed_last_error());
        free(d->cfg_yaml);
        d->cfg_yaml = NULL;
        return fed_error(FED_ESTATE, "cannot train with the coordinator's config: %s", msg);
    }
    if (!rc) say(d, "registered (%zu training, %zu test examples)", d->ntrain, d->ntest);
    return rc;
}

/* GET /v1/model. For a fit task with download_compression the client names the
 * copy it holds (its last decoded model before this round, as the simulator's
 * client looks it up, or "none") and gets a codec frame: a delta against that
 * copy, or the full model when the coordinator's reference differs (a client
 * that lost its state). What the frame decodes to becomes its copy for round. */
static int fetch_model(daemon_s *d, int64_t run, int round, int want_control, int fit, buf *b, hdrs *h) {
    int rc = 0, found = 0;
    float *base = NULL;
    char hex[2 * FED_SHA256_BYTES + 1] = "";
    if (fit && d->down_codec) {
        uint8_t hash[FED_SHA256_BYTES];
        if ((rc = open_down(d, run))) return rc;
        if (!(base = malloc(d->n * sizeof(float)))) return fed_error(FED_ENOMEM, "out of memory");
        if (fed_client_state_find(d->down, d->o->id, round, base, &found)) {
            say(d, "round %d: %s; asking for the full model", round, fed_last_error());
            found = 0;
        }
        if (found && (rc = fed_sha256(hash, base, d->n * sizeof(float)))) goto out;
        if (found) fed_hex_encode(hex, hash, sizeof hash);
        snprintf(d->extra_hdr, sizeof d->extra_hdr, "%s: %s", FED_NET_MODEL_BASE_HEADER, found ? hex : "none");
    }
    int st = call(d, "GET", "/v1/model", run, round, NULL, 0, NULL, d->o->timeout_s, b, h);
    d->extra_hdr[0] = '\0';
    if (st < 0) { rc = st; goto out; }
    if (st != 200) { rc = fed_error(FED_ESTATE, "model for round %d refused (HTTP %d): %s", round, st, err_text(b)); goto out; }
    void *plain = NULL;
    size_t plen = b->len;
    if (h->zstd && (rc = fed_net_zstd_decompress(b->p, b->len, (size_t)1 << 34, &plain, &plen))) goto out;
    int coded = 0;
    rc = fed_net_unpack_model(d->model, d->down_codec, plain ? plain : b->p, plen, want_control, found ? base : NULL,
                              found ? hex : NULL, d->global, d->gbuf, d->control, NULL, &coded);
    free(plain);
    if (!rc && coded && fit && fed_client_state_put(d->down, d->o->id, round, d->global)) {
        /* a damaged file (killed while writing it): start it again; the next
         * download then names no copy and gets the full model */
        char path[1400];
        snprintf(path, sizeof path, "%s/client_%06d.state", d->down_dir, d->o->id);   /* fed_client_state's file */
        say(d, "round %d: %s; starting the model copy again", round, fed_last_error());
        unlink(path);
        rc = fed_client_state_put(d->down, d->o->id, round, d->global);
    }
out:
    d->extra_hdr[0] = '\0';
    free(base);
    return rc;
}

/* The secure aggregation stages' requests go through call() too (signed, retried). */
typedef struct sa_ctx {
    daemon_s *d;
    buf *b;
    hdrs *h;
} sa_ctx;

static int sa_call(void *ctx, const char *method, const char *path, int64_t run, int round, const void *body, size_t len,
                   double timeout_s, const uint8_t **resp, size_t *resp_len) {
    sa_ctx *s = ctx;
    int st = call(s->d, method, path, run, round, body, len, NULL, timeout_s, s->b, s->h);
    *resp = (const uint8_t *)s->b->p;
    *resp_len = s->b->len;
    return st;
}

static int do_fit(daemon_s *d, json_t *t, int64_t run, int round, buf *b, hdrs *h) {
    fed_task task;
    memset(&task, 0, sizeof task);
    task.round = round;
    task.client = d->o->id;
    task.ins.local_epochs = (int)json_integer_value(json_object_get(t, "local_epochs"));
    task.ins.batch_size = (int)json_integer_value(json_object_get(t, "batch_size"));
    task.ins.lr = (float)json_number_value(json_object_get(t, "lr"));
    task.ins.max_steps = (long)json_integer_value(json_object_get(t, "max_steps"));
    task.ins.prox_mu = (float)json_number_value(json_object_get(t, "prox_mu"));
    task.ins.scaffold = json_is_true(json_object_get(t, "scaffold"));
    task.ins.want_loss_before = json_is_true(json_object_get(t, "want_loss_before"));
    task.ins.dpsgd_clip = (float)json_number_value(json_object_get(t, "dpsgd_clip"));
    task.ins.dpsgd_noise = (float)json_number_value(json_object_get(t, "dpsgd_noise"));
    task.ins.update_clip = (float)json_number_value(json_object_get(t, "update_clip"));
    task.ins.local_noise = (float)json_number_value(json_object_get(t, "local_noise"));
    task.ins.secure_noise = json_is_true(json_object_get(t, "secure_noise"));
    task.ins.dpsgd_sum = json_is_true(json_object_get(t, "dpsgd_sum"));
    if (task.ins.local_epochs < 1 || task.ins.batch_size < 1 || !(task.ins.lr > 0))
        return fed_error(FED_EFORMAT, "task for round %d has bad local_epochs/batch_size/lr", round);
    /* --min-noise-multiplier: the update leaves this client only with the distributed
     * DP share it adds itself. Checked here, before training that would be wasted, and
     * again on the secure aggregation setup, where the noise is actually sized. */
    double floor_z = d->o->min_noise_multiplier;
    if (floor_z > 0 && (!d->cfg.sa_enabled ||
                        (strcmp(d->cfg.dp_mode, "distributed") && strcmp(d->cfg.dp_mode, "distributed-dp-sgd"))))
        return fed_error(FED_ERANGE, "refused: the run has privacy.mode %s%s, and this client's "
                                     "--min-noise-multiplier %g needs privacy.mode distributed or distributed-dp-sgd "
                                     "under secure aggregation",
                         d->cfg.dp_mode, d->cfg.sa_enabled ? "" : " without secure aggregation", floor_z);
    if (floor_z > 0 && d->cfg.dp_noise_multiplier < floor_z)
        return fed_error(FED_ERANGE, "refused: the run's privacy.noise_multiplier %g is below this client's "
                                     "--min-noise-multiplier %g", d->cfg.dp_noise_multiplier, floor_z);
    /* the consistency check: refused before training when this client could not take
     * part (checked again on the protocol's setup, which is what counts) */
    int check = d->cfg.sa_enabled && d->cfg.sa_consistency;
    if (check && !d->peers)
        return fed_error(FED_ESTATE, "refused: the run's secure aggregation has the consistency check "
                                     "(secure_aggregation.consistency_check), and this client has no --peer-keys: the "
                                     "check means nothing if the coordinator supplies the keys");
    if (!check && d->o->require_consistency)
        return fed_error(FED_ESTATE, "refused: the run has %s, and this client's --require-consistency needs secure "
                                     "aggregation with the consistency check",
                         d->cfg.sa_enabled ? "secure aggregation without the consistency check" : "no secure aggregation");
    int rc = fetch_model(d, run, round, task.ins.scaffold, 1, b, h);
    if (rc) return rc;
    if (task.ins.scaffold && (rc = open_state(d, run))) return rc;
    fed_client_env env = {0};
    env.cfg = &d->cfg;
    env.fed = &d->fed;
    env.pipeline = &d->pipe;
    env.state = d->state;
    fed_result res;
    memset(&res, 0, sizeof res);
    res.delta = d->delta;
    res.delta_c = task.ins.scaffold ? d->delta_c : NULL;
    res.buffers = d->nb ? d->bufs : NULL;
    double t0 = (double)clock() / CLOCKS_PER_SEC;
    if ((rc = fed_client_fit(&env, d->model, &task, d->global, d->gbuf, task.ins.scaffold ? d->control : NULL, &res)))
        return rc;
    char ne[32], steps[32], lr[32], lb[40], tl[40], ta[40], un[40], rs[16], cs[16];
    snprintf(ne, sizeof ne, "%ld", res.num_examples);
    snprintf(steps, sizeof steps, "%ld", res.steps);
    snprintf(lr, sizeof lr, "%.9g", (double)res.lr);
    if (isnan(res.loss_before)) snprintf(lb, sizeof lb, "nan");
    else snprintf(lb, sizeof lb, "%.17g", res.loss_before);
    snprintf(tl, sizeof tl, "%.17g", res.train_loss);
    if (isnan(res.train_accuracy)) snprintf(ta, sizeof ta, "nan");
    else snprintf(ta, sizeof ta, "%.17g", res.train_accuracy);
    snprintf(un, sizeof un, "%.17g", res.update_norm);
    /* secure aggregation: the result carries the metadata only (a zero update, not
     * even its norm); the update itself goes masked through the protocol below */
    int secure = d->cfg.sa_enabled;
    float *zeros = NULL;
    if (secure) {
        snprintf(un, sizeof un, "0");
        if (!(zeros = calloc(d->n, sizeof *zeros))) return fed_error(FED_ENOMEM, "out of memory");
    }
    snprintf(rs, sizeof rs, "%d", round);
    snprintf(cs, sizeof cs, "%d", d->o->id);
    const char *meta[] = {"num_examples", ne, "steps", steps, "lr", lr, "loss_before", lb, "train_loss", tl,
                          "train_accuracy", ta, "update_norm", un, "round", rs, "client", cs,
                          "compression", d->codec ? fed_codec_spec(d->codec) : ""};
    void *body = NULL, *z = NULL;
    size_t len = 0, zlen = 0;
    if (d->codec && !secure) {
        uint8_t *frame = NULL;
        size_t flen = 0;
        rc = encode_update(d, run, round, res.delta, &frame, &flen);
        if (!rc) rc = fed_net_pack_coded(d->model, frame, flen, res.buffers, res.delta_c, meta, 10, &body, &len);
        free(frame);
    } else {
        rc = fed_net_pack(d->model, secure ? zeros : res.delta, res.buffers, res.delta_c, meta, 9, &body, &len);
    }
    free(zeros);
    if (rc) return rc;
    if ((d->o->compress || secure) && fed_net_zstd_compress(body, len, &z, &zlen) == 0) {
        free(body);
        body = z;
        len = zlen;
    }
    int st = call(d, "POST", "/v1/result", run, round, body, len, z ? "zstd" : NULL, d->o->timeout_s, b, h);
    free(body);
    if (st < 0) return st;
    if (st == 200) say(d, "round %d: %ld steps, loss %.4f, update uploaded (%zu bytes, %.1f s cpu)", round, res.steps,
                       res.train_loss, len, (double)clock() / CLOCKS_PER_SEC - t0);
    else return fed_error(FED_ESTATE, "update refused (HTTP %d): %s", st, err_text(b));
    if (secure) {
        /* the round's protocol begins once the coordinator has closed the fit phase */
        json_t *dl = json_object_get(t, "deadline_s");
        double wait = (json_is_number(dl) ? json_number_value(dl) : 60.0) * 4 + 2.0 * d->long_poll + 60;
        sa_ctx sc = {d, b, h};
        fed_secagg_daemon_keys keys = {d->sk, d->peers, d->o->require_consistency};
        /* record level: what one of this client's records can move its input by, which
         * the announced mechanism must cover */
        double unit = task.ins.dpsgd_sum ? (double)task.ins.lr * task.ins.dpsgd_clip / task.ins.batch_size : 0;
        rc = fed_secagg_daemon_round(sa_call, &sc, d->o->id, run, round, res.delta, d->n, res.num_examples, d->long_poll,
                                     wait, d->o->min_noise_multiplier, unit, &keys, d->o->quiet);
        /* not remembered as a failed task: a restarted coordinator hands it out again */
        if (rc) say(d, "round %d: secure aggregation: %s", round, fed_last_error());
    }
    return 0;
}

static int do_evaluate(daemon_s *d, int64_t run, int round, buf *b, hdrs *h) {
    int rc = fetch_model(d, run, round, 0, 0, b, h);
    if (rc) return rc;
    fed_client_env env = {0};
    env.cfg = &d->cfg;
    env.fed = &d->fed;
    fed_eval_res e;
    if ((rc = fed_client_evaluate(&env, d->model, d->o->id, d->global, d->gbuf, &e))) return rc;
    json_t *j = json_pack("{s:f, s:f, s:I}", "loss", isnan(e.loss) ? 0.0 : e.loss, "accuracy",
                          isnan(e.accuracy) ? 0.0 : e.accuracy, "num_examples", (json_int_t)e.num_examples);
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!s) return fed_error(FED_ENOMEM, "out of memory");
    int st = call(d, "POST", "/v1/evaluation", run, round, s, strlen(s), NULL, d->o->timeout_s, b, h);
    free(s);
    if (st < 0) return st;
    if (st != 200) return fed_error(FED_ESTATE, "evaluation refused (HTTP %d): %s", st, err_text(b));
    return 0;
}

static int parse_base(daemon_s *d) {
    const char *s = d->o->server;
    if (!s) return fed_error(FED_EINVAL, "--server is required (https://HOST:PORT)");
    int https = strncmp(s, "https://", 8) == 0, http = strncmp(s, "http://", 7) == 0;
    if (!https && !http) return fed_error(FED_EINVAL, "--server '%s' must start with https://", s);
    if (http) {
        if (!d->o->insecure_plaintext)
            return fed_error(FED_EINVAL, "--server '%s' is plaintext HTTP; use https:// (or --insecure-plaintext on loopback)", s);
        const char *host = s + 7;
        if (strncmp(host, "127.", 4) && strncmp(host, "localhost", 9) && strncmp(host, "[::1]", 5))
            return fed_error(FED_EINVAL, "--insecure-plaintext is allowed only for a loopback server, not %s", s);
    }
    size_t l = strlen(s);
    while (l && s[l - 1] == '/') l--;
    if (l >= sizeof d->base) return fed_error(FED_EINVAL, "--server: URL too long");
    memcpy(d->base, s, l);
    d->base[l] = '\0';
    return 0;
}

int fed_client_daemon_run(const fed_client_opts *o, volatile int *stop) {
    daemon_s D;
    memset(&D, 0, sizeof D);
    daemon_s *d = &D;
    d->o = o;
    d->stop = stop;
    d->long_poll = 20;
    int rc;
    if (o->id < 0) return fed_error(FED_EINVAL, "--id must be >= 0");
    if (!o->data_dir) return fed_error(FED_EINVAL, "--data DIR is required");
    if ((rc = parse_base(d))) return rc;
    if ((rc = fed_keyfile_read(o->key_file, d->sk, d->pk))) return rc;
    if (o->require_consistency && !o->peer_keys_file) {
        fed_crypto_wipe(d->sk, sizeof d->sk);
        return fed_error(FED_EINVAL, "--require-consistency needs --peer-keys FILE (the federation's enrolled keys, "
                                     "from its operator)");
    }
    if (o->peer_keys_file) {
        uint8_t mine[FED_SIGN_PUBLICKEYBYTES];
        rc = fed_peer_keys_read(&d->peers, o->peer_keys_file);
        if (!rc && fed_peer_keys_get(d->peers, o->id, mine))
            rc = fed_error(FED_EINVAL, "--peer-keys %s has no key for this client (id %d): is it the federation's "
                                       "file?", o->peer_keys_file, o->id);
        else if (!rc && fed_crypto_memcmp(mine, d->pk, sizeof mine) != 0)
            rc = fed_error(FED_EINVAL, "--peer-keys %s pins a different key for client %d than the public key of "
                                       "--key %s", o->peer_keys_file, o->id, o->key_file);
        if (rc) {
            fed_peer_keys_free(d->peers);
            fed_crypto_wipe(d->sk, sizeof d->sk);
            return rc;
        }
    }
    fed_blas_single_thread();
    if ((rc = load_data(d))) goto out;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    d->curl = curl_easy_init();
    if (!d->curl) { rc = fed_error(FED_EINTERNAL, "curl_easy_init failed"); goto out; }
    buf b = {0};
    hdrs h = {0};
    int registered = 0, failures = 0, skip_round = -1, skip_kind = -1;
    int64_t skip_run = -1;
    while (!(stop && *stop)) {
        if (!registered) {
            rc = do_register(d, &b, &h);
            if (rc == FED_ESTATE) break;        /* refused: not enrolled, bad key */
            if (rc) {
                if (o->max_retries > 0 && ++failures > o->max_retries) break;
                say(d, "cannot register: %s", fed_last_error());
                sleep_s(1);
                continue;
            }
            registered = 1;
            skip_round = skip_kind = -1;
            skip_run = -1;
        }
        int st = call(d, "GET", "/v1/task", 0, 0, NULL, 0, NULL, d->long_poll + o->timeout_s, &b, &h);
        if (st < 0) {
            rc = st;
            if (o->max_retries > 0) break;
            continue;
        }
        failures = 0;
        rc = 0;
        if (st == 204) continue;
        if (st == 409 || st == 401 || st == 403) {
            /* a restarted coordinator forgets registrations */
            say(d, "task request refused (HTTP %d): %s; registering again", st, err_text(&b));
            registered = 0;
            sleep_s(0.5);
            continue;
        }
        if (st != 200) {
            say(d, "task request: HTTP %d: %s", st, err_text(&b));
            sleep_s(1);
            continue;
        }
        json_t *t = json_loadb(b.p, b.len, 0, NULL);
        const char *kind = t ? json_string_value(json_object_get(t, "kind")) : NULL;
        int64_t run = t ? (int64_t)json_integer_value(json_object_get(t, "run_id")) : 0;
        int round = t ? (int)json_integer_value(json_object_get(t, "round")) : 0;
        if (!kind) {
            say(d, "task answer is not understood: %.200s", b.p ? b.p : "");
            json_decref(t);
            sleep_s(1);
            continue;
        }
        if (strcmp(kind, "finish") == 0) {
            const char *ph = json_string_value(json_object_get(t, "phase"));
            if (ph && strcmp(ph, "finished") == 0) {
                say(d, "the federation finished");
                json_decref(t);
                rc = 0;
                break;
            }
            if (ph && strcmp(ph, "failed") == 0) {
                json_decref(t);
                rc = fed_error(FED_ESTATE, "the coordinator's run failed (see its log)");
                break;
            }
            json_decref(t);
            sleep_s(1);
            continue;
        }
        int k = strcmp(kind, "fit") == 0 ? 1 : strcmp(kind, "evaluate") == 0 ? 2 : 0;
        if (k && run == skip_run && round == skip_round && k == skip_kind) {
            /* this task failed or was refused here already: the same inputs give the same result */
            json_decref(t);
            sleep_s(1);
            continue;
        }
        if (k == 1) rc = do_fit(d, t, run, round, &b, &h);
        else if (k == 2) rc = do_evaluate(d, run, round, &b, &h);
        json_decref(t);
        if (rc) {
            say(d, "round %d: %s", round, fed_last_error());
            skip_run = run;
            skip_round = round;
            skip_kind = k;
            rc = 0;
        }
    }
    free(b.p);
out:
    if (d->curl) curl_easy_cleanup(d->curl);
    teardown(d);
    free(d->cfg_yaml);
    fed_dataset_free(&d->raw);
    fed_crypto_wipe(d->sk, sizeof d->sk);
    fed_peer_keys_free(d->peers);
    return rc;
}
