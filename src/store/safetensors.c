/* safetensors reader and writer (https://github.com/huggingface/safetensors): an
 * 8-byte little-endian header length N, N bytes of JSON, then the data region.
 * The reader parses bytes uploaded over the network, so it trusts nothing in them. */
#include "federate/safetensors.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "federate/error.h"

/* Data is stored and handed out in host byte order, which the format defines as
 * little-endian: this module only supports little-endian hosts (x86_64, aarch64). */
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "federate's safetensors module assumes a little-endian host"
#endif

/* A header larger than this is rejected before it is parsed: a hostile length
 * field must not make us allocate or scan gigabytes (the reference uses 100 MB). */
#define FED_ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000)
#define FED_ST_MAX_DIMS 8
_Static_assert(sizeof(size_t) == 8, "offsets are 64-bit; 32-bit hosts are not supported");
#define FED_ST_NAME_MAX ((int)sizeof(((fed_st_tensor *)0)->name))

struct fed_st_file {
    int n;
    fed_st_tensor *tensors;
    unsigned char *data;  /* owned; every tensor starts at an 8-byte-aligned offset */
    int nmeta;
    char **meta;          /* 2 * nmeta strings: key, value, key, value, ... */
};

static size_t dtype_size(int dtype) {
    switch (dtype) {
    case FED_DTYPE_F32: return 4;
    case FED_DTYPE_I64: return 8;
    case FED_DTYPE_U8: return 1;
    default: return 0;
    }
}

static const char *dtype_name(int dtype) {
    switch (dtype) {
    case FED_DTYPE_F32: return "F32";
    case FED_DTYPE_I64: return "I64";
    case FED_DTYPE_U8: return "U8";
    default: return NULL;
    }
}

void fed_st_close(fed_st_file *f) {
    if (!f) return;
    for (int i = 0; i < 2 * f->nmeta; i++) free(f->meta[i]);
    free(f->meta);
    free(f->tensors);
    free(f->data);
    free(f);
}

int fed_st_count(const fed_st_file *f) { return f ? f->n : 0; }

const fed_st_tensor *fed_st_get(const fed_st_file *f, int i) {
    if (!f || i < 0 || i >= f->n) return NULL;
    return &f->tensors[i];
}

const fed_st_tensor *fed_st_find(const fed_st_file *f, const char *name) {
    if (!f || !name) return NULL;
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

const char *fed_st_metadata(const fed_st_file *f, const char *key) {
    if (!f || !key) return NULL;
    for (int i = 0; i < f->nmeta; i++)
        if (strcmp(f->meta[2 * i], key) == 0) return f->meta[2 * i + 1];
    return NULL;
}

/* ---- reading ---------------------------------------------------------------- */

/* Where one tensor's bytes lie in the data region, kept while checking coverage. */
typedef struct {
    uint64_t begin, end;
    int index;
} st_span;

static int span_cmp(const void *a, const void *b) {
    const st_span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static int parse_metadata(fed_st_file *f, json_t *meta) {
    if (!json_is_object(meta))
        return fed_error(FED_EFORMAT, "safetensors: \"__metadata__\" is not an object");
    size_t n = json_object_size(meta);
    f->meta = calloc(2 * n + 1, sizeof *f->meta);
    if (!f->meta) return fed_error(FED_ENOMEM, "safetensors: cannot allocate metadata");
    const char *key;
    json_t *val;
    json_object_foreach(meta, key, val) {
        if (!json_is_string(val))
            return fed_error(FED_EFORMAT, "safetensors: metadata \"%.100s\" is not a string", key);
        char *k = strdup(key), *v = strdup(json_string_value(val));
        if (!k || !v) {
            free(k);
            free(v);
            return fed_error(FED_ENOMEM, "safetensors: cannot allocate metadata");
        }
        f->meta[2 * f->nmeta] = k;
        f->meta[2 * f->nmeta + 1] = v;
        f->nmeta++;
    }
    return 0;
}

/* Reads a JSON integer in [0, INT64_MAX]; jansson rejects integers that overflow
 * long long at parse time, and reals such as 2.0 are not json integers. */
static int get_nonneg_int(json_t *v, uint64_t *out) {
    if (!json_is_integer(v)) return -1;
    json_int_t x = json_integer_value(v);
    if (x < 0) return -1;
    *out = (uint64_t)x;
    return 0;
}

/* Validates one header entry into t (everything but data) and its span. */
static int parse_entry(const char *name, json_t *e, fed_st_tensor *t, st_span *span) {
    if (name[0] == '\0') return fed_error(FED_EFORMAT, "safetensors: empty tensor name");
    if (strlen(name) >= (size_t)FED_ST_NAME_MAX)
        return fed_error(FED_EFORMAT, "safetensors: tensor name \"%.60s...\" is longer than %d bytes", name,
                         FED_ST_NAME_MAX - 1);
    if (!json_is_object(e)) return fed_error(FED_EFORMAT, "safetensors: tensor \"%s\": entry is not an object", name);
    memset(t, 0, sizeof *t);
    strcpy(t->name, name);

    const char *key;
    json_t *val;
    json_object_foreach(e, key, val) {
        if (strcmp(key, "dtype") && strcmp(key, "shape") && strcmp(key, "data_offsets"))
            return fed_error(FED_EFORMAT, "safetensors: tensor \"%s\": unknown field \"%.60s\"", name, key);
    }

    json_t *dt = json_object_get(e, "dtype");
    if (!json_is_string(dt)) return fed_error(FED_EFORMAT, "safetensors: tensor \"%s\": dtype missing or not a string", name);
    const char *ds = json_string_value(dt);
    if (strcmp(ds, "F32") == 0) t->dtype = FED_DTYPE_F32;
    else if (strcmp(ds, "I64") == 0) t->dtype = FED_DTYPE_I64;
    else if (strcmp(ds, "U8") == 0) t->dtype = FED_DTYPE_U8;
    else return fed_error(FED_EFORMAT, "safetensors: tensor \"%s\": unsupported dtype \"%.20s\" (F32, I64 or U8)", name, ds);

    json_t *sh = json_object_get(e, "shape");
    if (!json_is_array(sh)) return fed_error(FED_EFORMAT, "safetensors: tensor \"%s\": shape missing or not an array", name);
    size_t nd = json_array_size(sh);
    if (nd > FED_ST_MAX_DIMS)
        return fed_error(FED_EFORMAT, "safetensors: tensor \"%s\": %zu dimensions (at most %d)", name, nd, FED_ST_MAX_DIMS);
    t->ndim = (int)nd;
    size_t numel = 1;
    for (size_t d = 0; d < nd; d++) {
        uint64_t v;
        if (get_nonneg_int(json_array_get(sh, d), &v))
            return fed_error(FED_EFORMAT, "safetensors: tensor \"%s\": shape[%zu] is not a non-negative integer", name, d);
        if (__builtin_mul_overflow(numel, (size_t)v, &numel))
            return fed_error(FED_EFORMAT, "safetensors: tensor \"%s\": element count overflows", name);
        t->shape[d] = (int64_t)v;
    }
    size_t nbytes;
    if (__builtin_mul_overflow(numel, dtype_size(t->dtype), &nbytes))
        return fed_error(FED_EFORMAT, "safetensors: tensor \"%s\": byte size overflows", name);
    t->numel = numel;

    json_t *off = json_object_get(e, "data_offsets");
    if (!json_is_array(off) || json_array_size(off) != 2)
        return fed_error(FED_EFORMAT, "safetensors: tensor \"%s\": data_offsets missing or not [begin, end]", name);
    uint64_t b, en;
    if (get_nonneg_int(json_array_get(off, 0), &b) || get_nonneg_int(json_array_get(off, 1), &en))
        return fed_error(FED_EFORMAT, "safetensors: tensor \"%s\": data_offsets are not non-negative integers", name);
    if (en < b)
        return fed_error(FED_EFORMAT, "safetensors: tensor \"%s\": data_offsets end %llu < begin %llu", name,
                         (unsigned long long)en, (unsigned long long)b);
    if (en - b != (uint64_t)nbytes)
        return fed_error(FED_EFORMAT, "safetensors: tensor \"%s\": %llu data bytes but shape and dtype need %zu", name,
                         (unsigned long long)(en - b), nbytes);
    span->begin = b;
    span->end = en;
    return 0;
}

/* Parses header (hlen bytes) and data region (dlen bytes) into a new file. */
static int parse_parts(const unsigned char *header, size_t hlen, const unsigned char *data, size_t dlen,
                       fed_st_file **out) {
    json_error_t jerr;
    /* Duplicate names would make "which tensor is conv1.weight" ambiguous. */
    json_t *root = json_loadb((const char *)header, hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return fed_error(FED_EFORMAT, "safetensors: header JSON invalid at byte %d of the header: %s",
                         jerr.position, jerr.text);
    int rc = 0;
    st_span *spans = NULL;
    fed_st_file *f = NULL;
    if (!json_is_object(root)) {
        rc = fed_error(FED_EFORMAT, "safetensors: header is not a JSON object");
        goto done;
    }
    size_t nent = json_object_size(root);
    if (nent > INT32_MAX) {
        rc = fed_error(FED_EFORMAT, "safetensors: too many header entries");
        goto done;
    }
    f = calloc(1, sizeof *f);
    spans = calloc(nent + 1, sizeof *spans);
    if (f) f->tensors = calloc(nent + 1, sizeof *f->tensors);
    if (!f || !spans || !f->tensors) {
        rc = fed_error(FED_ENOMEM, "safetensors: cannot allocate %zu header entries", nent);
        goto done;
    }

    const char *key;
    json_t *val;
    /* jansson keeps insertion order, so tensors come back in header order. */
    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) {
            if ((rc = parse_metadata(f, val))) goto done;
            continue;
        }
        if ((rc = parse_entry(key, val, &f->tensors[f->n], &spans[f->n]))) goto done;
        spans[f->n].index = f->n;
        f->n++;
    }

    /* The tensors must tile the data region exactly: no overlap (two tensors
     * aliasing bytes) and no holes (bytes no tensor owns, a place to smuggle data). */
    qsort(spans, (size_t)f->n, sizeof *spans, span_cmp);
    uint64_t expect = 0;
    for (int i = 0; i < f->n; i++) {
        const char *nm = f->tensors[spans[i].index].name;
        if (spans[i].begin < expect) {
            rc = fed_error(FED_EFORMAT, "safetensors: tensor \"%s\": data [%llu, %llu) overlaps the previous tensor", nm,
                           (unsigned long long)spans[i].begin, (unsigned long long)spans[i].end);
            goto done;
        }
        if (spans[i].begin > expect) {
            rc = fed_error(FED_EFORMAT, "safetensors: tensor \"%s\": data begins at %llu, leaving a hole at %llu", nm,
                           (unsigned long long)spans[i].begin, (unsigned long long)expect);
            goto done;
        }
        if (spans[i].end > dlen) {
            rc = fed_error(FED_EFORMAT, "safetensors: tensor \"%s\": data ends at %llu, past the %zu-byte data region",
                           nm, (unsigned long long)spans[i].end, dlen);
            goto done;
        }
        expect = spans[i].end;
    }
    if (expect != dlen) {
        rc = fed_error(FED_EFORMAT, "safetensors: data region is %zu bytes but tensors cover %llu", dlen,
                       (unsigned long long)expect);
        goto done;
    }

    /* The data region follows a header of arbitrary length, so tensors in the
     * input may sit at any alignment: copy each to an 8-byte-aligned offset of
     * our own block so callers can read float/int64 arrays directly. */
    size_t total = 8; /* never 0: keeps data non-NULL for empty tensors */
    for (int i = 0; i < f->n; i++) total += (f->tensors[i].numel * dtype_size(f->tensors[i].dtype) + 7) & ~(size_t)7;
    f->data = malloc(total);
    if (!f->data) {
        rc = fed_error(FED_ENOMEM, "safetensors: cannot allocate %zu bytes of tensor data", total);
        goto done;
    }
    size_t pos = 0;
    for (int i = 0; i < f->n; i++) {
        const st_span *s = &spans[i];
        fed_st_tensor *t = &f->tensors[s->index];
        size_t nb = (size_t)(s->end - s->begin);
        if (nb) memcpy(f->data + pos, data + s->begin, nb);
        t->data = f->data + pos;
        pos += (nb + 7) & ~(size_t)7;
    }

done:
    json_decref(root);
    free(spans);
    if (rc) fed_st_close(f);
    else *out = f;
    return rc;
}

static uint64_t read_le64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

int fed_st_parse(const void *buf, size_t len, fed_st_file **out) {
    if (!out) return fed_error(FED_EINVAL, "fed_st_parse: out is NULL");
    *out = NULL;
    if (!buf && len) return fed_error(FED_EINVAL, "fed_st_parse: buf is NULL");
    const unsigned char *p = buf;
    if (len < 8) return fed_error(FED_EFORMAT, "safetensors: %zu bytes, shorter than the 8-byte header length", len);
    uint64_t n = read_le64(p);
    if (n > FED_ST_MAX_HEADER)
        return fed_error(FED_EFORMAT, "safetensors: header length %llu exceeds the %llu-byte limit",
                         (unsigned long long)n, (unsigned long long)FED_ST_MAX_HEADER);
    if (n > len - 8)
        return fed_error(FED_EFORMAT, "safetensors: header length %llu runs past the end of the %zu-byte input",
                         (unsigned long long)n, len);
    return parse_parts(p + 8, (size_t)n, p + 8 + n, len - 8 - (size_t)n, out);
}

int fed_st_open(const char *path, fed_st_file **out) {
    if (!path || !out) return fed_error(FED_EINVAL, "fed_st_open: NULL argument");
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) return fed_error(FED_EIO, "%s: cannot open: %s", path, strerror(errno));
    int rc = 0;
    unsigned char *buf = NULL;
    long size = -1;
    if (fseek(fp, 0, SEEK_END) == 0) size = ftell(fp);
    if (size < 0 || fseek(fp, 0, SEEK_SET) != 0) {
        rc = fed_error(FED_EIO, "%s: cannot determine the file size: %s", path, strerror(errno));
        goto done;
    }
    buf = malloc(size ? (size_t)size : 1);
    if (!buf) {
        rc = fed_error(FED_ENOMEM, "%s: cannot allocate %ld bytes", path, size);
        goto done;
    }
    if (fread(buf, 1, (size_t)size, fp) != (size_t)size) {
        rc = fed_error(FED_EIO, "%s: short read", path);
        goto done;
    }
    rc = fed_st_parse(buf, (size_t)size, out);
    if (rc) {
        /* Prefix the detail with the file name so the message says where. */
        char detail[900];
        snprintf(detail, sizeof detail, "%s", fed_last_error());
        fed_error(rc, "%s: %s", path, detail);
    }
done:
    free(buf);
    fclose(fp);
    return rc;
}

/* ---- writing ---------------------------------------------------------------- */

static int check_tensor(const fed_st_tensor *t, int i, size_t *nbytes) {
    if (!memchr(t->name, '\0', sizeof t->name) || t->name[0] == '\0')
        return fed_error(FED_EINVAL, "safetensors: tensor %d has an empty or unterminated name", i);
    if (strcmp(t->name, "__metadata__") == 0)
        return fed_error(FED_EINVAL, "safetensors: \"__metadata__\" is reserved and cannot name a tensor");
    size_t es = dtype_size(t->dtype);
    if (!es) return fed_error(FED_EINVAL, "safetensors: tensor \"%s\": unknown dtype %d", t->name, t->dtype);
    if (t->ndim < 0 || t->ndim > FED_ST_MAX_DIMS)
        return fed_error(FED_EINVAL, "safetensors: tensor \"%s\": ndim %d out of [0, %d]", t->name, t->ndim,
                         FED_ST_MAX_DIMS);
    size_t numel = 1;
    for (int d = 0; d < t->ndim; d++) {
        if (t->shape[d] < 0 || __builtin_mul_overflow(numel, (size_t)t->shape[d], &numel))
            return fed_error(FED_EINVAL, "safetensors: tensor \"%s\": bad shape[%d] = %lld", t->name, d,
                             (long long)t->shape[d]);
    }
    if (numel != t->numel)
        return fed_error(FED_EINVAL, "safetensors: tensor \"%s\": numel %zu does not match its shape (%zu)", t->name,
                         t->numel, numel);
    if (__builtin_mul_overflow(numel, es, nbytes))
        return fed_error(FED_EINVAL, "safetensors: tensor \"%s\": too large", t->name);
    if (*nbytes && !t->data) return fed_error(FED_EINVAL, "safetensors: tensor \"%s\": data is NULL", t->name);
    return 0;
}

static int build_entry(json_t *root, const fed_st_tensor *t, size_t begin, size_t end) {
    json_t *shape = json_array();
    json_t *offs = json_pack("[II]", (json_int_t)begin, (json_int_t)end);
    json_t *e = NULL;
    int ok = shape && offs;
    for (int d = 0; ok && d < t->ndim; d++) ok = json_array_append_new(shape, json_integer(t->shape[d])) == 0;
    if (ok) {
        /* "o" steals the references, so shape/offs belong to e from here. */
        e = json_pack("{s:s, s:o, s:o}", "dtype", dtype_name(t->dtype), "shape", shape, "data_offsets", offs);
        shape = offs = NULL;
        ok = e != NULL;
    }
    json_decref(shape);
    json_decref(offs);
    if (!ok) return fed_error(FED_ENOMEM, "safetensors: cannot build the header entry for \"%s\"", t->name);
    /* json_object_set_new fails on keys that are not valid UTF-8. */
    if (json_object_set_new(root, t->name, e))
        return fed_error(FED_EINVAL, "safetensors: tensor name \"%s\" is not valid UTF-8", t->name);
    return 0;
}

int fed_st_serialize(const fed_st_tensor *t, int n, const char *const *meta_kv, int nmeta, void **buf, size_t *len) {
    if (!buf || !len || n < 0 || nmeta < 0 || (n && !t) || (nmeta && !meta_kv))
        return fed_error(FED_EINVAL, "fed_st_serialize: bad arguments");
    *buf = NULL;
    *len = 0;
    int rc = 0;
    char *hdr = NULL;
    json_t *root = json_object();
    if (!root) return fed_error(FED_ENOMEM, "safetensors: cannot allocate the header");

    /* The reference writer puts __metadata__ first; jansson keeps insertion order. */
    if (nmeta) {
        json_t *meta = json_object();
        if (!meta || json_object_set_new(root, "__metadata__", meta)) {
            rc = fed_error(FED_ENOMEM, "safetensors: cannot allocate metadata");
            goto done;
        }
        for (int i = 0; i < nmeta; i++) {
            const char *k = meta_kv[2 * i], *v = meta_kv[2 * i + 1];
            if (!k || !v) {
                rc = fed_error(FED_EINVAL, "safetensors: metadata pair %d has a NULL key or value", i);
                goto done;
            }
            json_t *s = json_string(v);
            if (!s || json_object_set_new(meta, k, s)) {
                rc = fed_error(FED_EINVAL, "safetensors: metadata \"%.100s\" is not valid UTF-8", k);
                goto done;
            }
        }
    }

    size_t data_len = 0;
    for (int i = 0; i < n; i++) {
        size_t nb = 0;
        if ((rc = check_tensor(&t[i], i, &nb))) goto done;
        if (json_object_get(root, t[i].name)) {
            rc = fed_error(FED_EINVAL, "safetensors: duplicate tensor name \"%s\"", t[i].name);
            goto done;
        }
        if ((rc = build_entry(root, &t[i], data_len, data_len + nb))) goto done;
        data_len += nb;
    }

    hdr = json_dumps(root, JSON_COMPACT);
    if (!hdr) {
        rc = fed_error(FED_ENOMEM, "safetensors: cannot serialize the header");
        goto done;
    }
    size_t hlen = strlen(hdr);
    /* Pad with spaces so the data region starts 8-byte aligned, as the reference does. */
    size_t padded = (hlen + 7) & ~(size_t)7;
    size_t total = 8 + padded + data_len;
    unsigned char *out = malloc(total);
    if (!out) {
        rc = fed_error(FED_ENOMEM, "safetensors: cannot allocate %zu bytes", total);
        goto done;
    }
    for (int i = 0; i < 8; i++) out[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    memcpy(out + 8, hdr, hlen);
    memset(out + 8 + hlen, ' ', padded - hlen);
    size_t pos = 8 + padded;
    for (int i = 0; i < n; i++) {
        size_t nb = t[i].numel * dtype_size(t[i].dtype);
        if (nb) memcpy(out + pos, t[i].data, nb);
        pos += nb;
    }
    *buf = out;
    *len = total;

done:
    free(hdr);
    json_decref(root);
    return rc;
}

int fed_st_write(const char *path, const fed_st_tensor *t, int n, const char *const *meta_kv, int nmeta) {
    if (!path) return fed_error(FED_EINVAL, "fed_st_write: path is NULL");
    void *buf;
    size_t len;
    int rc = fed_st_serialize(t, n, meta_kv, nmeta, &buf, &len);
    if (rc) return rc;
    /* Write beside the target and rename, so a crash or full disk never leaves a
     * half-written model where a good one was. */
    size_t plen = strlen(path) + 32;
    char *tmp = malloc(plen);
    if (!tmp) {
        free(buf);
        return fed_error(FED_ENOMEM, "%s: cannot allocate a path", path);
    }
    snprintf(tmp, plen, "%s.tmp.%ld", path, (long)getpid());
    FILE *fp = fopen(tmp, "wb");
    if (!fp) {
        rc = fed_error(FED_EIO, "%s: cannot create: %s", tmp, strerror(errno));
    } else {
        int bad = fwrite(buf, 1, len, fp) != len;
        bad |= fclose(fp) != 0;
        if (bad) rc = fed_error(FED_EIO, "%s: write failed: %s", tmp, strerror(errno));
        else if (rename(tmp, path) != 0) rc = fed_error(FED_EIO, "%s: cannot rename into place: %s", path, strerror(errno));
        if (rc) remove(tmp);
    }
    free(tmp);
    free(buf);
    return rc;
}
