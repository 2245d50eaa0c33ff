/* Splitting a data set among clients: IID; Dirichlet label skew (Hsu, Qi, Brown 2019,
 * "Measuring the Effects of Non-Identical Data Distribution", §3); pathological shards
 * (McMahan et al. 2017, "Communication-Efficient Learning", §3: sort by label, S shards
 * per client); quantity skew (log-normal sizes, as in Li et al. 2022, NIID-Bench §4).
 * Also the per-client IDX folders that `federate partition` writes and runs read. */
#include "federate/partition.h"
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include "federate/error.h"
#include "federate/rng.h"

/* ---- random streams ------------------------------------------------------------
 * Every draw comes from (seed, round 0, id, FED_RNG_PARTITION). The id's high word
 * says what the stream is for, so client 3's shuffle, class 3's Dirichlet draw and
 * the scheme-wide shuffle never share numbers; client k's stream is exactly
 * (seed, 0, k, FED_RNG_PARTITION). Nothing else (thread count, call order) matters. */
enum { STREAM_CLIENT = 0, STREAM_CLASS = 1, STREAM_SCHEME = 2 };

static void part_rng(fed_rng *r, uint64_t seed, uint32_t role, uint64_t index) {
    fed_rng_init(r, seed, 0, ((uint64_t)role << 32) | (index & 0xffffffffu), FED_RNG_PARTITION);
}

static const char *const scheme_names[] = {"iid", "dirichlet", "shards", "quantity"};
#define NSCHEMES ((int)(sizeof scheme_names / sizeof scheme_names[0]))

int fed_partition_scheme_from_name(const char *name, int *scheme) {
    if (!name || !scheme) return fed_error(FED_EINVAL, "fed_partition_scheme_from_name: NULL argument");
    for (int i = 0; i < NSCHEMES; i++)
        if (strcmp(name, scheme_names[i]) == 0) {
            *scheme = i;
            return 0;
        }
    return fed_error(FED_ENOTFOUND, "unknown partition scheme '%s' (known: iid, dirichlet, shards, quantity)", name);
}

const char *fed_partition_scheme_name(int scheme) {
    return scheme >= 0 && scheme < NSCHEMES ? scheme_names[scheme] : "unknown";
}

void fed_partition_opts_default(fed_partition_opts *o) {
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->scheme = FED_PART_IID;
    o->num_clients = 10;
    o->alpha = 0.5;
    o->shards_per_client = 2;
    o->quantity_sigma = 1.0;
    o->local_test_fraction = 0.0;
    o->seed = 0;
}

void fed_partition_free(fed_partition *p) {
    if (!p) return;
    for (int k = 0; k < p->num_clients; k++) {
        if (p->train) free(p->train[k]);
        if (p->test) free(p->test[k]);
    }
    free(p->train);
    free(p->test);
    free(p->train_n);
    free(p->test_n);
    free(p->label_counts);
    memset(p, 0, sizeof *p);
}

/* Allocates the per-client arrays of p (lists themselves come later). */
static int partition_alloc(fed_partition *p, int k, int classes) {
    memset(p, 0, sizeof *p);
    p->train = calloc((size_t)k, sizeof *p->train);
    p->test = calloc((size_t)k, sizeof *p->test);
    p->train_n = calloc((size_t)k, sizeof *p->train_n);
    p->test_n = calloc((size_t)k, sizeof *p->test_n);
    p->label_counts = calloc((size_t)k * (size_t)classes, sizeof *p->label_counts);
    p->num_clients = k;
    p->num_classes = classes;
    if (!p->train || !p->test || !p->train_n || !p->test_n || !p->label_counts) {
        fed_partition_free(p);
        return fed_error(FED_ENOMEM, "partition: cannot allocate lists for %d clients", k);
    }
    return 0;
}

/* ---- the schemes: each fills owner[i] = client of example i --------------------- */

/* Indices grouped by label, in index order within a label (a stable counting sort).
 * start has classes + 1 entries: class c is sorted[start[c] .. start[c+1]). */
static int sort_by_label(const fed_dataset *d, uint32_t *sorted, size_t *start) {
    int C = d->num_classes;
    size_t *fill = calloc((size_t)C, sizeof *fill);
    if (!fill) return fed_error(FED_ENOMEM, "partition: out of memory");
    memset(start, 0, ((size_t)C + 1) * sizeof *start);
    for (int i = 0; i < d->n; i++) start[d->y[i] + 1]++;
    for (int c = 0; c < C; c++) start[c + 1] += start[c];
    for (int i = 0; i < d->n; i++) {
        int c = d->y[i];
        sorted[start[c] + fill[c]++] = (uint32_t)i;
    }
    free(fill);
    return 0;
}

static uint32_t *iota(size_t n) {
    uint32_t *v = malloc((n ? n : 1) * sizeof *v);
    if (v)
        for (size_t i = 0; i < n; i++) v[i] = (uint32_t)i;
    return v;
}

/* Deals perm out in contiguous chunks of the given sizes (summing to n). */
static void deal(const uint32_t *perm, const size_t *sizes, int K, int32_t *owner) {
    size_t pos = 0;
    for (int k = 0; k < K; k++)
        for (size_t j = 0; j < sizes[k]; j++) owner[perm[pos++]] = k;
}

static int scheme_iid(const fed_dataset *d, const fed_partition_opts *o, int32_t *owner) {
    size_t n = (size_t)d->n, K = (size_t)o->num_clients;
    uint32_t *perm = iota(n);
    size_t *sizes = malloc(K * sizeof *sizes);
    if (!perm || !sizes) {
        free(perm);
        free(sizes);
        return fed_error(FED_ENOMEM, "partition: out of memory");
    }
    fed_rng r;
    part_rng(&r, o->seed, STREAM_SCHEME, 0);
    fed_rng_shuffle(&r, perm, n);
    /* Chunk k is [k n / K, (k+1) n / K): sizes differ by at most one. */
    for (size_t k = 0; k < K; k++) sizes[k] = (k + 1) * n / K - k * n / K;
    deal(perm, sizes, (int)K, owner);
    free(perm);
    free(sizes);
    return 0;
}

/* Hsu et al. 2019: for each class, p ~ Dir(alpha 1_K) over the clients (K gamma
 * draws, normalized), and the class's shuffled examples are cut at the rounded
 * cumulative proportions, so the counts sum exactly to the class size. */
static int scheme_dirichlet(const fed_dataset *d, const fed_partition_opts *o, int32_t *owner) {
    int K = o->num_clients, C = d->num_classes;
    uint32_t *sorted = malloc((size_t)d->n * sizeof *sorted);
    size_t *start = malloc(((size_t)C + 1) * sizeof *start);
    double *p = malloc((size_t)K * sizeof *p);
    int rc = 0;
    if (!sorted || !start || !p) {
        rc = fed_error(FED_ENOMEM, "partition: out of memory");
        goto out;
    }
    if ((rc = sort_by_label(d, sorted, start))) goto out;
    for (int c = 0; c < C; c++) {
        size_t nc = start[c + 1] - start[c];
        if (nc == 0) continue;
        uint32_t *cls = sorted + start[c];
        fed_rng r;
        part_rng(&r, o->seed, STREAM_CLASS, (uint64_t)c);
        fed_rng_shuffle(&r, cls, nc);
        double sum = 0.0;
        for (int k = 0; k < K; k++) sum += (p[k] = fed_rng_gamma(&r, o->alpha));
        if (!(sum > 0.0) || !isfinite(sum)) {
            /* Tiny alpha can underflow every draw to 0; the limit of Dir(alpha) as
             * alpha -> 0 puts all mass on one uniformly chosen client. */
            for (int k = 0; k < K; k++) p[k] = 0.0;
            p[fed_rng_below(&r, (uint32_t)K)] = 1.0;
            sum = 1.0;
        }
        double cum = 0.0;
        size_t prev = 0;
        for (int k = 0; k < K; k++) {
            cum += p[k] / sum;
            size_t end = nc;
            if (k < K - 1) {
                double e = floor(cum * (double)nc + 0.5);
                end = e <= (double)prev ? prev : e >= (double)nc ? nc : (size_t)e;
            }
            for (size_t j = prev; j < end; j++) owner[cls[j]] = k;
            prev = end;
        }
    }
out:
    free(sorted);
    free(start);
    free(p);
    return rc;
}

/* McMahan et al. 2017: sort by label, cut into K * S equal shards, shuffle the
 * shard ids and give each client S of them, so most clients see only S labels. */
static int scheme_shards(const fed_dataset *d, const fed_partition_opts *o, int32_t *owner) {
    size_t n = (size_t)d->n, K = (size_t)o->num_clients, S = (size_t)o->shards_per_client;
    size_t total = K * S;
    uint32_t *sorted = malloc(n * sizeof *sorted);
    size_t *start = malloc(((size_t)d->num_classes + 1) * sizeof *start);
    uint32_t *shard = iota(total);
    int rc = 0;
    if (!sorted || !start || !shard) {
        rc = fed_error(FED_ENOMEM, "partition: out of memory");
        goto out;
    }
    if ((rc = sort_by_label(d, sorted, start))) goto out;
    fed_rng r;
    part_rng(&r, o->seed, STREAM_SCHEME, 0);
    fed_rng_shuffle(&r, shard, total);
    for (size_t k = 0; k < K; k++)
        for (size_t j = 0; j < S; j++) {
            size_t s = shard[k * S + j];
            /* Shard s is [s n / total, (s+1) n / total): equal up to one example. */
            for (size_t i = s * n / total; i < (s + 1) * n / total; i++) owner[sorted[i]] = (int32_t)k;
        }
out:
    free(sorted);
    free(start);
    free(shard);
    return rc;
}

/* Quantity skew: client k's size is proportional to exp(sigma z_k), z_k ~ N(0, 1),
 * with at least one example each; which examples is IID. */
static int scheme_quantity(const fed_dataset *d, const fed_partition_opts *o, int32_t *owner) {
    size_t n = (size_t)d->n;
    int K = o->num_clients;
    uint32_t *perm = iota(n);
    size_t *sizes = malloc((size_t)K * sizeof *sizes);
    double *w = malloc((size_t)K * sizeof *w);
    int rc = 0;
    if (!perm || !sizes || !w) {
        rc = fed_error(FED_ENOMEM, "partition: out of memory");
        goto out;
    }
    fed_rng r;
    part_rng(&r, o->seed, STREAM_SCHEME, 0);
    double top = -INFINITY;
    for (int k = 0; k < K; k++) {
        w[k] = o->quantity_sigma * fed_rng_normal_d(&r);
        if (w[k] > top) top = w[k];
    }
    /* Subtracting the largest log-weight keeps exp() finite for any sigma. */
    double sum = 0.0;
    for (int k = 0; k < K; k++) sum += (w[k] = exp(w[k] - top));
    size_t extra = n - (size_t)K, prev = 0;
    double cum = 0.0;
    for (int k = 0; k < K; k++) {
        cum += w[k] / sum;
        size_t end = extra;
        if (k < K - 1) {
            double e = floor(cum * (double)extra + 0.5);
            end = e <= (double)prev ? prev : e >= (double)extra ? extra : (size_t)e;
        }
        sizes[k] = 1 + end - prev;
        prev = end;
    }
    fed_rng_shuffle(&r, perm, n);
    deal(perm, sizes, K, owner);
out:
    free(perm);
    free(sizes);
    free(w);
    return rc;
}

/* ---- lists, the at-least-one rule, the local test split ------------------------- */

/* Max-heap of clients by (size desc, index asc): "the largest client" is then a
 * deterministic choice even with ties, and cheap when thousands of clients are empty. */
static int heap_before(const size_t *len, uint32_t a, uint32_t b) {
    return len[a] > len[b] || (len[a] == len[b] && a < b);
}

static void heap_down(uint32_t *h, size_t n, size_t i, const size_t *len) {
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && heap_before(len, h[l], h[m])) m = l;
        if (r < n && heap_before(len, h[r], h[m])) m = r;
        if (m == i) return;
        uint32_t t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

/* Dirichlet draws with small alpha leave some clients with nothing; each empty
 * client (in index order) takes the last example (highest index) of the currently
 * largest client. Needs n >= K, which guarantees the largest has two or more. */
static void fill_empty(uint32_t **lists, size_t *len, int K) {
    size_t empties = 0;
    for (int k = 0; k < K; k++) empties += len[k] == 0;
    if (!empties) return;
    uint32_t *h = malloc((size_t)K * sizeof *h);
    if (h) {
        size_t hn = 0;
        for (int k = 0; k < K; k++)
            if (len[k] > 1) h[hn++] = (uint32_t)k;
        for (size_t i = hn / 2; i-- > 0;) heap_down(h, hn, i, len);
        for (int k = 0; k < K && hn; k++) {
            if (len[k]) continue;
            uint32_t big = h[0];
            lists[k][len[k]++] = lists[big][--len[big]];
            if (len[big] < 2) h[0] = h[--hn];
            heap_down(h, hn, 0, len);
        }
        free(h);
        return;
    }
    /* Out of memory for the heap: the same choices by linear scans. */
    for (int k = 0; k < K; k++) {
        if (len[k]) continue;
        int big = 0;
        for (int j = 1; j < K; j++)
            if (len[j] > len[big]) big = j;
        if (len[big] < 2) return;
        lists[k][len[k]++] = lists[big][--len[big]];
    }
}

static int build(const fed_dataset *d, const fed_partition_opts *o, const int32_t *owner, fed_partition *out) {
    int K = o->num_clients, C = d->num_classes, rc;
    if ((rc = partition_alloc(out, K, C))) return rc;
    uint32_t **lists = calloc((size_t)K, sizeof *lists);
    size_t *len = calloc((size_t)K, sizeof *len);
    size_t *cnt = calloc((size_t)K, sizeof *cnt);
    if (!lists || !len || !cnt) goto nomem;
    for (int i = 0; i < d->n; i++) cnt[owner[i]]++;
    for (int k = 0; k < K; k++)
        if (!(lists[k] = malloc((cnt[k] ? cnt[k] : 1) * sizeof **lists))) goto nomem;
    for (int i = 0; i < d->n; i++) lists[owner[i]][len[owner[i]]++] = (uint32_t)i;
    fill_empty(lists, len, K);
    for (int k = 0; k < K; k++) {
        size_t nk = len[k];
        if (nk == 0) {
            rc = fed_error(FED_EINTERNAL, "partition: client %d has no examples", k);
            goto fail;
        }
        fed_rng r;
        part_rng(&r, o->seed, STREAM_CLIENT, (uint64_t)k);
        fed_rng_shuffle(&r, lists[k], nk);
        /* The last floor(f n_k) go to the local test list; at least one trains. */
        size_t nt = (size_t)floor(o->local_test_fraction * (double)nk);
        if (nt > nk - 1) nt = nk - 1;
        size_t ntr = nk - nt;
        out->train[k] = malloc(ntr * sizeof **out->train);
        out->test[k] = malloc((nt ? nt : 1) * sizeof **out->test);
        if (!out->train[k] || !out->test[k]) goto nomem;
        memcpy(out->train[k], lists[k], ntr * sizeof **out->train);
        if (nt) memcpy(out->test[k], lists[k] + ntr, nt * sizeof **out->test);
        out->train_n[k] = ntr;
        out->test_n[k] = nt;
        int32_t *lc = out->label_counts + (size_t)k * (size_t)C;
        for (size_t j = 0; j < ntr; j++) lc[d->y[out->train[k][j]]]++;
    }
    rc = 0;
    goto done;
nomem:
    rc = fed_error(FED_ENOMEM, "partition: out of memory for %d clients", K);
fail:
    fed_partition_free(out);
done:
    if (lists)
        for (int k = 0; k < K; k++) free(lists[k]);
    free(lists);
    free(len);
    free(cnt);
    return rc;
}

int fed_partition_make(const fed_dataset *d, const fed_partition_opts *o, fed_partition *out) {
    if (!out) return fed_error(FED_EINVAL, "fed_partition_make: NULL output");
    memset(out, 0, sizeof *out);
    if (!d || !o || !d->y) return fed_error(FED_EINVAL, "fed_partition_make: NULL argument");
    if (d->n < 1) return fed_error(FED_EINVAL, "partition: the data set is empty");
    if (d->num_classes < 1) return fed_error(FED_EINVAL, "partition: num_classes %d must be >= 1", d->num_classes);
    for (int i = 0; i < d->n; i++)
        if (d->y[i] < 0 || d->y[i] >= d->num_classes)
            return fed_error(FED_EINVAL, "partition: example %d has label %d outside [0, %d)", i, (int)d->y[i],
                             d->num_classes);
    if (o->num_clients < 1 || o->num_clients > d->n)
        return fed_error(FED_EINVAL, "partition: num_clients %d must be in [1, %d] (one example per client at least)",
                         o->num_clients, d->n);
    if (!(o->local_test_fraction >= 0.0 && o->local_test_fraction < 1.0))
        return fed_error(FED_EINVAL, "partition: local_test_fraction %g must be in [0, 1)", o->local_test_fraction);
    switch (o->scheme) {
    case FED_PART_IID: break;
    case FED_PART_DIRICHLET:
        if (!(o->alpha > 0.0) || !isfinite(o->alpha))
            return fed_error(FED_EINVAL, "partition: dirichlet alpha %g must be finite and > 0", o->alpha);
        break;
    case FED_PART_SHARDS:
        if (o->shards_per_client < 1)
            return fed_error(FED_EINVAL, "partition: shards_per_client %d must be >= 1", o->shards_per_client);
        if ((long long)o->num_clients * o->shards_per_client > d->n)
            return fed_error(FED_EINVAL,
                             "partition: num_clients * shards_per_client = %d * %d = %lld shards cannot be cut "
                             "from %d examples",
                             o->num_clients, o->shards_per_client,
                             (long long)o->num_clients * o->shards_per_client, d->n);
        break;
    case FED_PART_QUANTITY:
        if (!(o->quantity_sigma >= 0.0) || !isfinite(o->quantity_sigma))
            return fed_error(FED_EINVAL, "partition: quantity_sigma %g must be finite and >= 0", o->quantity_sigma);
        break;
    default:
        return fed_error(FED_EINVAL, "partition: unknown scheme %d (known: 0 iid, 1 dirichlet, 2 shards, 3 quantity)",
                         o->scheme);
    }
    int32_t *owner = malloc((size_t)d->n * sizeof *owner);
    if (!owner) return fed_error(FED_ENOMEM, "partition: out of memory for %d examples", d->n);
    int rc;
    switch (o->scheme) {
    case FED_PART_IID: rc = scheme_iid(d, o, owner); break;
    case FED_PART_DIRICHLET: rc = scheme_dirichlet(d, o, owner); break;
    case FED_PART_SHARDS: rc = scheme_shards(d, o, owner); break;
    default: rc = scheme_quantity(d, o, owner); break;
    }
    if (!rc) rc = build(d, o, owner, out);
    free(owner);
    return rc;
}

/* ---- per-client folders --------------------------------------------------------- */

/* The mean/std fed_dataset_load normalizes each named data set with. */
typedef struct dataset_norm {
    const char *name;
    int c;
    float mean[3], std[3];
} dataset_norm;

static const dataset_norm known_norms[] = {
    {"mnist", 1, {0.1307f}, {0.3081f}},
    {"fashion-mnist", 1, {0.2860f}, {0.3530f}},
    {"cifar10", 3, {0.4914f, 0.4822f, 0.4465f}, {0.2470f, 0.2435f, 0.2616f}},
};

static const dataset_norm *find_norm(const char *name) {
    for (size_t i = 0; i < sizeof known_norms / sizeof known_norms[0]; i++)
        if (name && strcmp(name, known_norms[i].name) == 0) return &known_norms[i];
    return NULL;
}

static const char *const file_names[2][2] = {
    {"train-images-idx3-ubyte", "train-labels-idx1-ubyte"},
    {"test-images-idx3-ubyte", "test-labels-idx1-ubyte"},
};

static int join(char *buf, size_t size, const char *dir, const char *a, const char *b) {
    int n = b ? snprintf(buf, size, "%s/%s/%s", dir, a, b) : snprintf(buf, size, "%s/%s", dir, a);
    if (n < 0 || (size_t)n >= size) return fed_error(FED_EINVAL, "partition: path too long under '%s'", dir);
    return 0;
}

/* mkdir -p: the CLI's --out may name a folder whose parents do not exist yet. */
static int make_dirs(const char *path) {
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) return fed_error(FED_EINVAL, "partition: bad output directory '%s'", path);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0') continue;
        char saved = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
            int e = errno;
            buf[i] = saved;
            return fed_error(FED_EIO, "partition: cannot create directory '%s': %s", path, strerror(e));
        }
        buf[i] = saved;
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return fed_error(FED_EIO, "partition: '%s' exists and is not a directory", path);
    return 0;
}

/* Writes one client's train or test list. Multi-channel images are stored as one
 * channel of height c*h (CHW is contiguous, so the bytes are the same and IDX3
 * stays three-dimensional); partition.json keeps the real shape. */
static int write_split(const fed_dataset *d, const uint32_t *idx, size_t n, const dataset_norm *nm,
                       const char *dir, const char *client, int split) {
    size_t hw = (size_t)d->h * (size_t)d->w, es = (size_t)d->c * hw;
    fed_dataset t = {0};
    t.n = (int)n;
    t.c = 1;
    t.h = d->c * d->h;
    t.w = d->w;
    t.num_classes = d->num_classes;
    t.x = malloc((n * es > 0 ? n * es : 1) * sizeof *t.x);
    t.y = malloc((n ? n : 1) * sizeof *t.y);
    if (!t.x || !t.y) {
        free(t.x);
        free(t.y);
        return fed_error(FED_ENOMEM, "partition: out of memory writing %s", client);
    }
    for (size_t j = 0; j < n; j++) {
        const float *src = d->x + (size_t)idx[j] * es;
        float *dst = t.x + j * es;
        t.y[j] = d->y[idx[j]];
        for (int c = 0; c < d->c; c++) {
            float s = nm ? nm->std[c] : 1.0f, m = nm ? nm->mean[c] : 0.0f;
            for (size_t i = 0; i < hw; i++) dst[(size_t)c * hw + i] = src[(size_t)c * hw + i] * s + m;
        }
    }
    char img[4096], lbl[4096];
    int rc = join(img, sizeof img, dir, client, file_names[split][0]);
    if (!rc) rc = join(lbl, sizeof lbl, dir, client, file_names[split][1]);
    if (!rc && (rc = fed_idx_write(&t, img, lbl))) {
        char inner[512];
        snprintf(inner, sizeof inner, "%s", fed_last_error());
        rc = fed_error(rc, "partition: writing %s/%s: %s", client, file_names[split][0], inner);
    }
    free(t.x);
    free(t.y);
    return rc;
}

static json_t *int_array(const int32_t *v, int n) {
    json_t *a = json_array();
    for (int i = 0; a && i < n; i++) json_array_append_new(a, json_integer(v[i]));
    return a;
}

static int write_json(const fed_dataset *d, const fed_partition *p, const fed_partition_opts *o, const char *name,
                      const char *dir) {
    json_t *root = json_object();
    json_object_set_new(root, "version", json_integer(1));
    json_object_set_new(root, "dataset", json_string(name));
    if (o) {
        json_object_set_new(root, "scheme", json_string(fed_partition_scheme_name(o->scheme)));
        if (o->scheme == FED_PART_DIRICHLET) json_object_set_new(root, "alpha", json_real(o->alpha));
        if (o->scheme == FED_PART_SHARDS)
            json_object_set_new(root, "shards_per_client", json_integer(o->shards_per_client));
        if (o->scheme == FED_PART_QUANTITY) json_object_set_new(root, "quantity_sigma", json_real(o->quantity_sigma));
        json_object_set_new(root, "local_test_fraction", json_real(o->local_test_fraction));
        /* JSON integers are signed 64-bit; larger seeds are kept exactly as text. */
        if (o->seed <= (uint64_t)INT64_MAX) {
            json_object_set_new(root, "seed", json_integer((json_int_t)o->seed));
        } else {
            char s[32];
            snprintf(s, sizeof s, "%llu", (unsigned long long)o->seed);
            json_object_set_new(root, "seed", json_string(s));
        }
    } else {
        json_object_set_new(root, "scheme", json_string("unknown"));
    }
    json_object_set_new(root, "num_clients", json_integer(p->num_clients));
    json_object_set_new(root, "num_classes", json_integer(d->num_classes));
    json_t *shape = json_array();
    json_array_append_new(shape, json_integer(d->c));
    json_array_append_new(shape, json_integer(d->h));
    json_array_append_new(shape, json_integer(d->w));
    json_object_set_new(root, "shape", shape);
    size_t tot_train = 0, tot_test = 0;
    json_t *clients = json_array();
    for (int k = 0; k < p->num_clients; k++) {
        char cname[32];
        snprintf(cname, sizeof cname, "client_%05d", k);
        json_t *c = json_object();
        json_object_set_new(c, "name", json_string(cname));
        json_object_set_new(c, "train", json_integer((json_int_t)p->train_n[k]));
        json_object_set_new(c, "test", json_integer((json_int_t)p->test_n[k]));
        json_object_set_new(c, "label_counts",
                            int_array(p->label_counts + (size_t)k * (size_t)p->num_classes, p->num_classes));
        json_array_append_new(clients, c);
        tot_train += p->train_n[k];
        tot_test += p->test_n[k];
    }
    json_object_set_new(root, "total_train", json_integer((json_int_t)tot_train));
    json_object_set_new(root, "total_test", json_integer((json_int_t)tot_test));
    json_object_set_new(root, "clients", clients);

    char path[4096], tmp[4096];
    int rc = join(path, sizeof path, dir, "partition.json", NULL);
    if (!rc) rc = join(tmp, sizeof tmp, dir, "partition.json.tmp", NULL);
    /* Write then rename, so a reader never sees half a partition.json. */
    if (!rc && (!root || json_dump_file(root, tmp, JSON_INDENT(2)) != 0))
        rc = fed_error(FED_EIO, "partition: cannot write '%s'", tmp);
    if (!rc && rename(tmp, path) != 0) rc = fed_error(FED_EIO, "partition: cannot rename to '%s': %s", path, strerror(errno));
    json_decref(root);
    return rc;
}

int fed_partition_write_dirs_named(const fed_dataset *d, const fed_partition *p, const fed_partition_opts *o,
                                   const char *dataset_name, const char *dir) {
    if (!d || !p || !dir || !d->x || !d->y) return fed_error(FED_EINVAL, "fed_partition_write_dirs: NULL argument");
    if (!dataset_name || !*dataset_name) dataset_name = "unknown";
    if (p->num_clients < 1 || !p->train || !p->test || !p->train_n || !p->test_n || !p->label_counts)
        return fed_error(FED_EINVAL, "partition: nothing to write (no clients)");
    if (p->num_clients > 99999)
        return fed_error(FED_EINVAL, "partition: %d clients do not fit the five-digit folder names", p->num_clients);
    if (d->c < 1 || d->h < 1 || d->w < 1 || p->num_classes != d->num_classes)
        return fed_error(FED_EINVAL, "partition: data set shape or classes do not match the partition");
    const dataset_norm *nm = find_norm(dataset_name);
    if (nm && nm->c != d->c)
        return fed_error(FED_EINVAL, "partition: data set '%s' has %d channel(s) but the data has %d", dataset_name,
                         nm->c, d->c);
    for (int k = 0; k < p->num_clients; k++) {
        if (p->train_n[k] < 1) return fed_error(FED_EINVAL, "partition: client %d has no training examples", k);
        for (int s = 0; s < 2; s++) {
            const uint32_t *l = s ? p->test[k] : p->train[k];
            size_t n = s ? p->test_n[k] : p->train_n[k];
            for (size_t j = 0; j < n; j++)
                if (l[j] >= (uint32_t)d->n)
                    return fed_error(FED_EINVAL, "partition: client %d lists example %u of a %d-example data set", k,
                                     l[j], d->n);
        }
    }
    int rc = make_dirs(dir);
    if (rc) return rc;
    for (int k = 0; k < p->num_clients; k++) {
        char client[32], cdir[4096];
        snprintf(client, sizeof client, "client_%05d", k);
        if ((rc = join(cdir, sizeof cdir, dir, client, NULL))) return rc;
        if (mkdir(cdir, 0777) != 0 && errno != EEXIST)
            return fed_error(FED_EIO, "partition: cannot create '%s': %s", cdir, strerror(errno));
        if ((rc = write_split(d, p->train[k], p->train_n[k], nm, dir, client, 0))) return rc;
        /* An empty local test list writes no test files (partition.json says 0);
         * ones left by an earlier partition into the same folder are removed. */
        if (p->test_n[k]) {
            if ((rc = write_split(d, p->test[k], p->test_n[k], nm, dir, client, 1))) return rc;
        } else {
            for (int f = 0; f < 2; f++) {
                char stale[4096];
                if (!join(stale, sizeof stale, dir, client, file_names[1][f])) remove(stale);
            }
        }
    }
    return write_json(d, p, o, dataset_name, dir);
}

int fed_partition_write_dirs(const fed_dataset *d, const fed_partition *p, const fed_partition_opts *o,
                             const char *dir) {
    return fed_partition_write_dirs_named(d, p, o, "unknown", dir);
}

/* Reads and checks DIR/partition.json. */
static int load_json(const char *dir, json_t **root) {
    struct stat st;
    if (stat(dir, &st) != 0)
        return fed_error(FED_EIO, "partition directory '%s': %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return fed_error(FED_EIO, "partition directory '%s' is not a directory", dir);
    char path[4096];
    int rc = join(path, sizeof path, dir, "partition.json", NULL);
    if (rc) return rc;
    if (stat(path, &st) != 0)
        return fed_error(FED_EIO, "partition directory '%s' has no partition.json (written by `federate partition`)",
                         dir);
    json_error_t err;
    *root = json_load_file(path, 0, &err);
    if (!*root)
        return fed_error(FED_EFORMAT, "%s: line %d column %d: %s", path, err.line, err.column, err.text);
    if (!json_is_object(*root)) {
        json_decref(*root);
        *root = NULL;
        return fed_error(FED_EFORMAT, "%s: not a JSON object", path);
    }
    return 0;
}

int fed_partition_dir_dataset(const char *dir, char *buf, size_t size) {
    if (!dir || !buf || !size) return fed_error(FED_EINVAL, "fed_partition_dir_dataset: NULL argument");
    json_t *root = NULL;
    int rc = load_json(dir, &root);
    if (rc) return rc;
    const char *s = json_string_value(json_object_get(root, "dataset"));
    if (!s) rc = fed_error(FED_EFORMAT, "%s/partition.json: no \"dataset\" string", dir);
    else if (strlen(s) >= size) rc = fed_error(FED_ERANGE, "%s/partition.json: dataset name too long", dir);
    else memcpy(buf, s, strlen(s) + 1);
    json_decref(root);
    return rc;
}

static int get_int(json_t *obj, const char *key, long long lo, long long hi, long long *v, const char *dir,
                   const char *where) {
    json_t *j = json_object_get(obj, key);
    if (!json_is_integer(j))
        return fed_error(FED_EFORMAT, "%s/partition.json: %s\"%s\" is missing or not an integer", dir, where, key);
    *v = json_integer_value(j);
    if (*v < lo || *v > hi)
        return fed_error(FED_EFORMAT, "%s/partition.json: %s\"%s\" = %lld is outside [%lld, %lld]", dir, where, key,
                         *v, lo, hi);
    return 0;
}

/* Reads one client's train or test files into data at example offset off. */
static int read_split(const char *dir, const char *client, int split, size_t expect, fed_dataset *data, size_t off) {
    char img[4096], lbl[4096];
    int rc = join(img, sizeof img, dir, client, file_names[split][0]);
    if (!rc) rc = join(lbl, sizeof lbl, dir, client, file_names[split][1]);
    if (rc) return rc;
    fed_dataset t = {0};
    if ((rc = fed_idx_read(img, lbl, &t))) {
        char inner[700];
        snprintf(inner, sizeof inner, "%s", fed_last_error());
        return fed_error(rc, "partition %s: %s (%s, %s): %s", dir, client, file_names[split][0],
                         file_names[split][1], inner);
    }
    size_t es = (size_t)data->c * (size_t)data->h * (size_t)data->w;
    if ((size_t)t.n != expect)
        rc = fed_error(FED_EFORMAT, "partition %s: %s/%s holds %d examples but partition.json lists %zu", dir, client,
                       file_names[split][1], t.n, expect);
    else if ((size_t)t.c * (size_t)t.h * (size_t)t.w != es)
        rc = fed_error(FED_EFORMAT, "partition %s: %s/%s has %dx%dx%d images but partition.json says %dx%dx%d", dir,
                       client, file_names[split][0], t.c, t.h, t.w, data->c, data->h, data->w);
    for (int i = 0; !rc && i < t.n; i++)
        if (t.y[i] < 0 || t.y[i] >= data->num_classes)
            rc = fed_error(FED_EFORMAT, "partition %s: %s/%s: label %d of example %d is outside [0, %d)", dir,
                           client, file_names[split][1], (int)t.y[i], i, data->num_classes);
    if (!rc) {
        memcpy(data->x + off * es, t.x, expect * es * sizeof *t.x);
        memcpy(data->y + off, t.y, expect * sizeof *t.y);
    }
    fed_dataset_free(&t);
    return rc;
}

int fed_partition_read_dirs(const char *dir, fed_dataset *data, fed_partition *out) {
    if (!data || !out || !dir) return fed_error(FED_EINVAL, "fed_partition_read_dirs: NULL argument");
    memset(data, 0, sizeof *data);
    memset(out, 0, sizeof *out);
    json_t *root = NULL;
    int rc = load_json(dir, &root);
    if (rc) return rc;
    long long K = 0, C = 0, version = 0, shape[3] = {0, 0, 0};
    size_t *ntrain = NULL, *ntest = NULL;
    if ((rc = get_int(root, "version", 1, 1, &version, dir, ""))) goto out;
    if ((rc = get_int(root, "num_clients", 1, 99999, &K, dir, ""))) goto out;
    if ((rc = get_int(root, "num_classes", 1, 1 << 20, &C, dir, ""))) goto out;
    const char *name = json_string_value(json_object_get(root, "dataset"));
    json_t *js = json_object_get(root, "shape");
    json_t *clients = json_object_get(root, "clients");
    if (!name) {
        rc = fed_error(FED_EFORMAT, "%s/partition.json: no \"dataset\" string", dir);
        goto out;
    }
    if (!json_is_array(js) || json_array_size(js) != 3) {
        rc = fed_error(FED_EFORMAT, "%s/partition.json: \"shape\" must be [channels, height, width]", dir);
        goto out;
    }
    for (int i = 0; i < 3; i++) {
        json_t *e = json_array_get(js, (size_t)i);
        shape[i] = json_is_integer(e) ? json_integer_value(e) : 0;
        if (shape[i] < 1 || shape[i] > 1 << 16) {
            rc = fed_error(FED_EFORMAT, "%s/partition.json: \"shape\" entries must be integers in [1, 65536]", dir);
            goto out;
        }
    }
    if (shape[0] * shape[1] * shape[2] > 1 << 24) {
        rc = fed_error(FED_EFORMAT, "%s/partition.json: images of %lldx%lldx%lld are too large", dir, shape[0],
                       shape[1], shape[2]);
        goto out;
    }
    if (!json_is_array(clients) || (long long)json_array_size(clients) != K) {
        rc = fed_error(FED_EFORMAT, "%s/partition.json: \"clients\" must list %lld clients", dir, K);
        goto out;
    }
    const dataset_norm *nm = find_norm(name);
    if (nm && nm->c != shape[0]) {
        rc = fed_error(FED_EFORMAT, "%s/partition.json: data set '%s' has %d channel(s), shape says %lld", dir, name,
                       nm->c, shape[0]);
        goto out;
    }
    ntrain = calloc((size_t)K, sizeof *ntrain);
    ntest = calloc((size_t)K, sizeof *ntest);
    if (!ntrain || !ntest) {
        rc = fed_error(FED_ENOMEM, "partition: out of memory");
        goto out;
    }
    long long total = 0;
    for (long long k = 0; k < K; k++) {
        char where[64];
        snprintf(where, sizeof where, "clients[%lld].", k);
        json_t *c = json_array_get(clients, (size_t)k);
        long long a = 0, b = 0;
        if ((rc = get_int(c, "train", 1, INT_MAX, &a, dir, where))) goto out;
        if ((rc = get_int(c, "test", 0, INT_MAX, &b, dir, where))) goto out;
        ntrain[k] = (size_t)a;
        ntest[k] = (size_t)b;
        total += a + b;
        if (total > INT_MAX) {
            rc = fed_error(FED_EFORMAT, "%s/partition.json: more than %d examples in all", dir, INT_MAX);
            goto out;
        }
    }
    data->n = (int)total;
    data->c = (int)shape[0];
    data->h = (int)shape[1];
    data->w = (int)shape[2];
    data->num_classes = (int)C;
    size_t es = (size_t)(shape[0] * shape[1] * shape[2]);
    data->x = malloc(((size_t)total * es > 0 ? (size_t)total * es : 1) * sizeof *data->x);
    data->y = malloc(((size_t)total ? (size_t)total : 1) * sizeof *data->y);
    if (!data->x || !data->y) {
        rc = fed_error(FED_ENOMEM, "partition: out of memory for %lld examples", total);
        goto out;
    }
    if ((rc = partition_alloc(out, (int)K, (int)C))) goto out;
    size_t off = 0;
    for (int k = 0; k < (int)K; k++) {
        char client[32];
        snprintf(client, sizeof client, "client_%05d", k);
        /* Client k's lists index exactly the examples read from its own folder. */
        for (int s = 0; s < 2; s++) {
            size_t n = s ? ntest[k] : ntrain[k];
            uint32_t *l = malloc((n ? n : 1) * sizeof *l);
            if (!l) {
                rc = fed_error(FED_ENOMEM, "partition: out of memory");
                goto out;
            }
            if (s) out->test[k] = l, out->test_n[k] = n;
            else out->train[k] = l, out->train_n[k] = n;
            if (n && (rc = read_split(dir, client, s, n, data, off))) goto out;
            for (size_t j = 0; j < n; j++) l[j] = (uint32_t)(off + j);
            if (!s)
                for (size_t j = 0; j < n; j++) out->label_counts[(size_t)k * (size_t)C + (size_t)data->y[off + j]]++;
            off += n;
        }
    }
    if (nm) fed_dataset_normalize(data, nm->mean, nm->std);
out:
    free(ntrain);
    free(ntest);
    json_decref(root);
    if (rc) {
        fed_dataset_free(data);
        memset(data, 0, sizeof *data);
        fed_partition_free(out);
    }
    return rc;
}
