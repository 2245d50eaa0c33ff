/* What travels on the wire besides JSON: models and updates as safetensors
 * bodies under the model's state_dict names (so any safetensors library reads
 * them), optionally zstd-compressed, and the canonical text a request
 * signature covers. docs/protocol.md describes both byte for byte. */
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>
#include "federate/error.h"
#include "federate/net.h"
#include "federate/vec.h"

int fed_net_signed_text(char *buf, size_t size, const char *method, const char *path, int64_t run, int round,
                        int client, int64_t timestamp, const char *nonce_hex, const void *body, size_t body_len) {
    uint8_t h[FED_SHA256_BYTES];
    int rc = fed_sha256(h, body_len ? body : "", body_len);
    if (rc) return rc;
    return fed_net_signed_text_hashed(buf, size, method, path, run, round, client, timestamp, nonce_hex, h);
}

int fed_net_signed_text_hashed(char *buf, size_t size, const char *method, const char *path, int64_t run, int round,
                               int client, int64_t timestamp, const char *nonce_hex, const uint8_t h[FED_SHA256_BYTES]) {
    char hx[2 * FED_SHA256_BYTES + 1];
    fed_hex_encode(hx, h, FED_SHA256_BYTES);
    int n = snprintf(buf, size, "federate-v1\n%s\n%s\n%" PRId64 "\n%d\n%d\n%" PRId64 "\n%s\n%s", method, path, run,
                     round, client, timestamp, nonce_hex, hx);
    if (n < 0 || (size_t)n >= size) return fed_error(FED_ERANGE, "signed text: buffer of %zu bytes too small", size);
    return n;
}

/* ---- safetensors bodies --------------------------------------------------- */

/* params NULL: the parameter tensors are left out and frame (flen bytes) goes
 * in as the one U8 tensor ftname (FED_NET_CODEC_TENSOR, FED_NET_MODEL_TENSOR) instead. */
static int pack(const fed_model *proto, const float *params, const char *ftname, const uint8_t *frame, size_t flen,
                const float *buffers, const float *control, const char *const *meta, int nmeta, void **buf, size_t *len) {
    int nt = fed_model_num_tensors(proto);
    int total = nt + (control ? nt : 0) + 1;
    fed_st_tensor *ts = calloc((size_t)(total > 0 ? total : 1), sizeof *ts);
    int64_t **ints = calloc((size_t)(total > 0 ? total : 1), sizeof *ints);
    int rc = 0, n = 0;
    if (!ts || !ints) { rc = fed_error(FED_ENOMEM, "pack: out of memory"); goto out; }
    for (int pass = 0; pass < (control ? 2 : 1) && !rc; pass++) {
        for (int i = 0; i < nt; i++) {
            const fed_tensor_info *ti = fed_model_tensor(proto, i);
            if (pass == 1 && ti->is_buffer) continue;   /* control vectors cover parameters only */
            if (pass == 0 && !ti->is_buffer && !params) continue;   /* in the codec frame */
            fed_st_tensor *t = &ts[n];
            if (pass == 0) snprintf(t->name, sizeof t->name, "%s", ti->name);
            else snprintf(t->name, sizeof t->name, "control.%s", ti->name);
            t->dtype = ti->dtype;
            t->ndim = ti->ndim;
            for (int d = 0; d < ti->ndim && d < 4; d++) t->shape[d] = ti->shape[d];
            t->numel = ti->numel;
            const float *src = pass == 1 ? control + ti->offset : (ti->is_buffer ? buffers : params) + ti->offset;
            if (ti->dtype == FED_DTYPE_I64) {
                int64_t *v = malloc((ti->numel ? ti->numel : 1) * sizeof *v);
                if (!v) { rc = fed_error(FED_ENOMEM, "pack: out of memory"); break; }
                for (size_t k = 0; k < ti->numel; k++) v[k] = (int64_t)llrintf(src[k]);
                ints[n] = v;
                t->data = v;
            } else {
                t->data = src;
            }
            n++;
        }
    }
    if (!rc && !params) {
        fed_st_tensor *t = &ts[n++];
        snprintf(t->name, sizeof t->name, "%s", ftname);
        t->dtype = FED_DTYPE_U8;
        t->ndim = 1;
        t->shape[0] = (int64_t)flen;
        t->numel = flen;
        t->data = frame;
    }
    if (!rc) rc = fed_st_serialize(ts, n, meta, nmeta, buf, len);
out:
    if (ints)
        for (int i = 0; i < total; i++) free(ints[i]);
    free(ints);
    free(ts);
    return rc;
}

int fed_net_pack(const fed_model *proto, const float *params, const float *buffers, const float *control,
                 const char *const *meta, int nmeta, void **buf, size_t *len) {
    if (!params) return fed_error(FED_EINVAL, "pack: no parameters");
    return pack(proto, params, NULL, NULL, 0, buffers, control, meta, nmeta, buf, len);
}

int fed_net_pack_coded(const fed_model *proto, const uint8_t *frame, size_t frame_len, const float *buffers,
                       const float *control, const char *const *meta, int nmeta, void **buf, size_t *len) {
    if (!frame || !frame_len) return fed_error(FED_EINVAL, "pack: empty codec frame");
    return pack(proto, NULL, FED_NET_CODEC_TENSOR, frame, frame_len, buffers, control, meta, nmeta, buf, len);
}

int fed_net_pack_model_coded(const fed_model *proto, const uint8_t *frame, size_t frame_len, const float *buffers,
                             const float *control, const char *const *meta, int nmeta, void **buf, size_t *len) {
    if (!frame || !frame_len) return fed_error(FED_EINVAL, "pack: empty codec frame");
    return pack(proto, NULL, FED_NET_MODEL_TENSOR, frame, frame_len, buffers, control, meta, nmeta, buf, len);
}

static const char *dtype_str(int dtype) {
    return dtype == FED_DTYPE_I64 ? "I64" : dtype == FED_DTYPE_U8 ? "U8" : "F32";
}

static int check_tensor(const fed_tensor_info *ti, const fed_st_tensor *t, const char *name) {
    if (!t) return fed_error(FED_ESHAPE, "tensor '%s' is missing", name);
    if (t->dtype != ti->dtype)
        return fed_error(FED_ESHAPE, "tensor '%s' has dtype %s, expected %s", name, dtype_str(t->dtype), dtype_str(ti->dtype));
    int same = t->ndim == ti->ndim;
    for (int d = 0; same && d < ti->ndim; d++) same = t->shape[d] == ti->shape[d];
    if (!same) {
        char got[96] = "", want[96] = "";
        size_t o = 0, w = 0;
        for (int d = 0; d < t->ndim && o < sizeof got - 24; d++)
            o += (size_t)snprintf(got + o, sizeof got - o, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
        for (int d = 0; d < ti->ndim && w < sizeof want - 24; d++)
            w += (size_t)snprintf(want + w, sizeof want - w, "%s%lld", d ? ", " : "", (long long)ti->shape[d]);
        return fed_error(FED_ESHAPE, "tensor '%s' has shape [%s], expected [%s]", name, got, want);
    }
    return 0;
}

/* ---- a body read in place ---------------------------------------------------
 * The coordinator's hot path: fed_st_parse copies the whole data region (an
 * upload of megabytes) into a block of its own, which fed_net_unpack_update
 * then copied again into the result. A view checks the header exactly as the
 * reader does (src/store/safetensors.c: header length bound, JSON without
 * duplicate keys, known dtypes, shapes, offsets that tile the data region with
 * no overlap and no hole, string metadata) but leaves the data where it is:
 * tensors point into the caller's buffer, at any alignment (read with memcpy). */

#define VIEW_MAX_HEADER ((uint64_t)100 * 1000 * 1000)

typedef struct tset {
    fed_st_tensor *t;
    int n;
    fed_st_file *meta;        /* the metadata, as a file of no tensors (or NULL: none) */
} tset;

typedef struct vspan {
    uint64_t begin, end;
    int index;
} vspan;

static int vspan_cmp(const void *a, const void *b) {
    const vspan *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static void tset_free(tset *s) {
    free(s->t);
    fed_st_close(s->meta);
    memset(s, 0, sizeof *s);
}

static const fed_st_tensor *tset_find(const tset *s, const char *name) {
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->t[i].name, name) == 0) return &s->t[i];
    return NULL;
}

static int nonneg(json_t *v, uint64_t *out) {
    if (!json_is_integer(v) || json_integer_value(v) < 0) return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int view_entry(const char *name, json_t *e, fed_st_tensor *t, vspan *sp) {
    if (!name[0]) return fed_error(FED_EFORMAT, "safetensors: empty tensor name");
    if (strlen(name) >= sizeof t->name)
        return fed_error(FED_EFORMAT, "safetensors: tensor name \"%.60s...\" is longer than %zu bytes", name, sizeof t->name - 1);
    if (!json_is_object(e)) return fed_error(FED_EFORMAT, "safetensors: tensor \"%s\": entry is not an object", name);
    memset(t, 0, sizeof *t);
    strcpy(t->name, name);
    const char *key;
    json_t *val;
    json_object_foreach(e, key, val) {
        if (strcmp(key, "dtype") && strcmp(key, "shape") && strcmp(key, "data_offsets"))
            return fed_error(FED_EFORMAT, "safetensors: tensor \"%s\": unknown field \"%.60s\"", name, key);
    }
    const char *ds = json_string_value(json_object_get(e, "dtype"));
    size_t es = 0;
    if (!ds) return fed_error(FED_EFORMAT, "safetensors: tensor \"%s\": dtype missing or not a string", name);
    if (strcmp(ds, "F32") == 0) t->dtype = FED_DTYPE_F32, es = 4;
    else if (strcmp(ds, "I64") == 0) t->dtype = FED_DTYPE_I64, es = 8;
    else if (strcmp(ds, "U8") == 0) t->dtype = FED_DTYPE_U8, es = 1;
    else return fed_error(FED_EFORMAT, "safetensors: tensor \"%s\": unsupported dtype \"%.20s\" (F32, I64 or U8)", name, ds);
    json_t *sh = json_object_get(e, "shape");
    if (!json_is_array(sh)) return fed_error(FED_EFORMAT, "safetensors: tensor \"%s\": shape missing or not an array", name);
    size_t nd = json_array_size(sh), numel = 1, nbytes;
    if (nd > 8) return fed_error(FED_EFORMAT, "safetensors: tensor \"%s\": %zu dimensions (at most 8)", name, nd);
    t->ndim = (int)nd;
    for (size_t d = 0; d < nd; d++) {
        uint64_t v;
        if (nonneg(json_array_get(sh, d), &v))
            return fed_error(FED_EFORMAT, "safetensors: tensor \"%s\": shape[%zu] is not a non-negative integer", name, d);
        if (__builtin_mul_overflow(numel, (size_t)v, &numel))
            return fed_error(FED_EFORMAT, "safetensors: tensor \"%s\": element count overflows", name);
        t->shape[d] = (int64_t)v;
    }
    if (__builtin_mul_overflow(numel, es, &nbytes))
        return fed_error(FED_EFORMAT, "safetensors: tensor \"%s\": byte size overflows", name);
    t->numel = numel;
    json_t *off = json_object_get(e, "data_offsets");
    uint64_t b, en;
    if (!json_is_array(off) || json_array_size(off) != 2)
        return fed_error(FED_EFORMAT, "safetensors: tensor \"%s\": data_offsets missing or not [begin, end]", name);
    if (nonneg(json_array_get(off, 0), &b) || nonneg(json_array_get(off, 1), &en))
        return fed_error(FED_EFORMAT, "safetensors: tensor \"%s\": data_offsets are not non-negative integers", name);
    if (en < b || en - b != (uint64_t)nbytes)
        return fed_error(FED_EFORMAT, "safetensors: tensor \"%s\": data_offsets [%llu, %llu) do not hold the %zu bytes of its "
                         "shape and dtype", name, (unsigned long long)b, (unsigned long long)en, nbytes);
    sp->begin = b;
    sp->end = en;
    return 0;
}

/* Checks buf as a safetensors body and points s's tensors into it. */
static int view_parse(const void *buf, size_t len, tset *s) {
    memset(s, 0, sizeof *s);
    const unsigned char *p = buf;
    if (!buf || len < 8) return fed_error(FED_EFORMAT, "safetensors: %zu bytes, shorter than the 8-byte header length", len);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | p[i];
    if (hl > VIEW_MAX_HEADER)
        return fed_error(FED_EFORMAT, "safetensors: header length %llu exceeds the %llu-byte limit", (unsigned long long)hl,
                         (unsigned long long)VIEW_MAX_HEADER);
    if (hl > len - 8)
        return fed_error(FED_EFORMAT, "safetensors: header length %llu runs past the end of the %zu-byte input",
                         (unsigned long long)hl, len);
    const unsigned char *data = p + 8 + hl;
    size_t dlen = len - 8 - (size_t)hl;
    json_error_t je;
    json_t *root = json_loadb((const char *)p + 8, (size_t)hl, JSON_REJECT_DUPLICATES, &je);
    if (!root) return fed_error(FED_EFORMAT, "safetensors: header JSON invalid at byte %d of the header: %s", je.position, je.text);
    int rc = 0;
    vspan *sp = NULL;
    json_t *meta = NULL;
    const char **kv = NULL;
    void *mb = NULL;
    if (!json_is_object(root)) { rc = fed_error(FED_EFORMAT, "safetensors: header is not a JSON object"); goto out; }
    size_t ne = json_object_size(root);
    s->t = calloc(ne + 1, sizeof *s->t);
    sp = calloc(ne + 1, sizeof *sp);
    if (!s->t || !sp) { rc = fed_error(FED_ENOMEM, "safetensors: cannot allocate %zu header entries", ne); goto out; }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) { meta = val; continue; }
        if ((rc = view_entry(key, val, &s->t[s->n], &sp[s->n]))) goto out;
        sp[s->n].index = s->n;
        s->n++;
    }
    qsort(sp, (size_t)s->n, sizeof *sp, vspan_cmp);
    uint64_t pos = 0;
    for (int i = 0; i < s->n; i++) {
        const char *nm = s->t[sp[i].index].name;
        if (sp[i].begin < pos) { rc = fed_error(FED_EFORMAT, "safetensors: tensor \"%s\": data overlaps the previous tensor", nm); goto out; }
        if (sp[i].begin > pos) {
            rc = fed_error(FED_EFORMAT, "safetensors: tensor \"%s\": data begins at %llu, leaving a hole at %llu", nm,
                           (unsigned long long)sp[i].begin, (unsigned long long)pos);
            goto out;
        }
        if (sp[i].end > dlen) {
            rc = fed_error(FED_EFORMAT, "safetensors: tensor \"%s\": data ends at %llu, past the %zu-byte data region", nm,
                           (unsigned long long)sp[i].end, dlen);
            goto out;
        }
        pos = sp[i].end;
        s->t[sp[i].index].data = data + sp[i].begin;
    }
    if (pos != dlen) {
        rc = fed_error(FED_EFORMAT, "safetensors: data region is %zu bytes but tensors cover %llu", dlen, (unsigned long long)pos);
        goto out;
    }
    if (meta) {
        if (!json_is_object(meta)) { rc = fed_error(FED_EFORMAT, "safetensors: \"__metadata__\" is not an object"); goto out; }
        size_t nm = json_object_size(meta), i = 0;
        kv = calloc(2 * nm + 1, sizeof *kv);
        if (!kv) { rc = fed_error(FED_ENOMEM, "safetensors: cannot allocate metadata"); goto out; }
        json_object_foreach(meta, key, val) {
            if (!json_is_string(val)) { rc = fed_error(FED_EFORMAT, "safetensors: metadata \"%.100s\" is not a string", key); goto out; }
            kv[2 * i] = key;
            kv[2 * i + 1] = json_string_value(val);
            i++;
        }
        /* the metadata as a file of its own (a few hundred bytes), for fed_st_metadata */
        size_t ml = 0;
        if ((rc = fed_st_serialize(NULL, 0, kv, (int)nm, &mb, &ml)) || (rc = fed_st_parse(mb, ml, &s->meta))) goto out;
    }
out:
    free(mb);
    free(kv);
    free(sp);
    json_decref(root);
    if (rc) tset_free(s);
    return rc;
}

/* A parsed file's tensors as a set (the data stays the file's). */
static int tset_of_file(const fed_st_file *f, tset *s) {
    memset(s, 0, sizeof *s);
    int n = fed_st_count(f);
    if (!(s->t = calloc((size_t)n + 1, sizeof *s->t))) return fed_error(FED_ENOMEM, "out of memory");
    for (int i = 0; i < n; i++) s->t[i] = *fed_st_get(f, i);
    s->n = n;
    return 0;
}

/* The tensors of a parsed body into params/buffers/control. coded: the
 * parameters are in the codec frame tensor ftname (decoded by the caller), so
 * parameter tensors are not expected and the frame's tensor is. */
static int unpack_tensors(const fed_model *proto, const tset *f, int coded, const char *ftname, int want_control,
                          float *params, float *buffers, float *control) {
    int rc = 0;
    int nt = fed_model_num_tensors(proto), expect = coded ? 1 : 0;
    for (int pass = 0; pass < (want_control ? 2 : 1) && !rc; pass++) {
        for (int i = 0; i < nt && !rc; i++) {
            const fed_tensor_info *ti = fed_model_tensor(proto, i);
            if (pass == 1 && ti->is_buffer) continue;
            if (pass == 0 && !ti->is_buffer && coded) continue;
            char name[160];
            if (pass == 0) snprintf(name, sizeof name, "%s", ti->name);
            else snprintf(name, sizeof name, "control.%s", ti->name);
            const fed_st_tensor *t = tset_find(f, name);
            if ((rc = check_tensor(ti, t, name))) break;
            expect++;
            float *dst = pass == 1 ? control + ti->offset : (ti->is_buffer ? buffers : params) + ti->offset;
            if (ti->dtype == FED_DTYPE_I64) {
                const unsigned char *v = t->data;   /* any alignment */
                for (size_t k = 0; k < ti->numel; k++) {
                    int64_t x;
                    memcpy(&x, v + 8 * k, sizeof x);
                    dst[k] = (float)x;
                }
            } else {
                memcpy(dst, t->data, ti->numel * sizeof(float));
                /* the vectorized test first; the element is looked for only in a bad tensor */
                int bad = !fed_vec_all_finite(dst, ti->numel);
                for (size_t k = 0; bad && k < ti->numel; k++)
                    if (!isfinite(dst[k])) {
                        rc = fed_error(FED_ERANGE, "tensor '%s' holds a non-finite value (%s) at element %zu", name,
                                       isnan(dst[k]) ? "NaN" : "Inf", k);
                        break;
                    }
            }
        }
    }
    if (!rc && f->n != expect) {
        for (int i = 0; i < f->n; i++) {
            const char *nm = f->t[i].name;
            const char *base = strncmp(nm, "control.", 8) == 0 && want_control ? nm + 8 : nm;
            int known = 0, param = 0;
            for (int j = 0; j < nt && !known; j++)
                if (strcmp(fed_model_tensor(proto, j)->name, base) == 0) known = 1, param = !fed_model_tensor(proto, j)->is_buffer;
            if (coded && known && param && base == nm) {
                rc = fed_error(FED_ESHAPE, "unexpected tensor '%s': with '%s' the parameters travel in the codec frame only",
                               nm, ftname);
                break;
            }
            if (!known && !(coded && strcmp(nm, ftname) == 0)) {
                rc = fed_error(FED_ESHAPE, "unexpected tensor '%s' (not a tensor of model %s)", nm, fed_model_name(proto));
                break;
            }
        }
        if (!rc) rc = fed_error(FED_ESHAPE, "body holds %d tensors, expected %d", f->n, expect);
    }
    return rc;
}

int fed_net_unpack(const fed_model *proto, const void *buf, size_t len, int want_control, float *params,
                   float *buffers, float *control, fed_st_file **fout) {
    if (fout) *fout = NULL;
    fed_st_file *f = NULL;
    int rc = fed_st_parse(buf, len, &f);
    if (rc) return rc;
    tset ts;
    if (!(rc = tset_of_file(f, &ts))) rc = unpack_tensors(proto, &ts, 0, NULL, want_control, params, buffers, control);
    tset_free(&ts);
    if (rc || !fout) fed_st_close(f);
    else *fout = f;
    return rc;
}

int fed_net_unpack_update(const fed_model *proto, const fed_codec *codec, const void *buf, size_t len, int want_control,
                          float *params, float *buffers, float *control, fed_st_file **fout, int *coded) {
    if (fout) *fout = NULL;
    *coded = 0;
    tset ts;
    int rc = view_parse(buf, len, &ts);   /* in place: the body is copied once, into params */
    if (rc) return rc;
    const tset *f = &ts;
    const fed_st_tensor *ft = tset_find(f, FED_NET_CODEC_TENSOR);
    *coded = ft != NULL;
    if (ft && !codec)
        rc = fed_error(FED_ESHAPE, "tensor '%s': this run has no compression configured; send the parameter tensors as F32",
                       FED_NET_CODEC_TENSOR);
    else if (ft && (ft->dtype != FED_DTYPE_U8 || ft->ndim != 1 || ft->numel == 0))
        rc = fed_error(FED_ESHAPE, "tensor '%s' must be a non-empty 1-D U8 tensor (the codec frame), not %s with %d dimension(s)",
                       FED_NET_CODEC_TENSOR, dtype_str(ft->dtype), ft->ndim);
    if (!rc) rc = unpack_tensors(proto, f, *coded, FED_NET_CODEC_TENSOR, want_control, params, buffers, control);
    if (!rc && ft) {
        size_t n = fed_model_num_params(proto);
        int drc = fed_codec_decode(codec, ft->data, ft->numel, params, n);
        if (drc) {
            char msg[600];
            snprintf(msg, sizeof msg, "%s", fed_last_error());
            rc = fed_error(FED_EFORMAT, "tensor '%s': bad codec frame (%zu bytes) for compression '%s': %s",
                           FED_NET_CODEC_TENSOR, ft->numel, fed_codec_spec(codec), msg);
        }
        for (size_t k = 0; !rc && k < n; k++)
            if (!isfinite(params[k]))
                rc = fed_error(FED_ERANGE, "tensor '%s': the decoded update holds a non-finite value (%s) at element %zu",
                               FED_NET_CODEC_TENSOR, isnan(params[k]) ? "NaN" : "Inf", k);
    }
    if (!rc && fout) {
        *fout = ts.meta;   /* the metadata only: the tensors were the caller's bytes */
        ts.meta = NULL;
    }
    tset_free(&ts);
    return rc;
}

int fed_net_unpack_model(const fed_model *proto, const fed_codec *codec, const void *buf, size_t len, int want_control,
                         const float *base, const char *base_hex, float *params, float *buffers, float *control,
                         fed_st_file **fout, int *coded) {
    if (fout) *fout = NULL;
    *coded = 0;
    fed_st_file *f = NULL;
    int rc = fed_st_parse(buf, len, &f);
    if (rc) return rc;
    tset ts;
    if ((rc = tset_of_file(f, &ts))) {
        fed_st_close(f);
        return rc;
    }
    const fed_st_tensor *ft = fed_st_find(f, FED_NET_MODEL_TENSOR);
    *coded = ft != NULL;
    if (ft && !codec)
        rc = fed_error(FED_ESHAPE, "tensor '%s': a compressed model, but this run has no download_compression", FED_NET_MODEL_TENSOR);
    else if (ft && (ft->dtype != FED_DTYPE_U8 || ft->ndim != 1 || ft->numel == 0))
        rc = fed_error(FED_ESHAPE, "tensor '%s' must be a non-empty 1-D U8 tensor (the codec frame), not %s with %d dimension(s)",
                       FED_NET_MODEL_TENSOR, dtype_str(ft->dtype), ft->ndim);
    if (!rc) rc = unpack_tensors(proto, &ts, *coded, FED_NET_MODEL_TENSOR, want_control, params, buffers, control);
    tset_free(&ts);
    if (!rc && ft) {
        size_t n = fed_model_num_params(proto);
        int delta = fed_codec_frame_is_delta(ft->data, ft->numel);
        const char *said = fed_st_metadata(f, "base_sha256");
        if (delta < 0) {
            rc = fed_error(FED_EFORMAT, "tensor '%s': not a codec frame", FED_NET_MODEL_TENSOR);
        } else if (delta && (!base || !base_hex)) {
            rc = fed_error(FED_ESTATE, "tensor '%s': a delta frame, but this client holds no copy of the model", FED_NET_MODEL_TENSOR);
        } else if (delta && (!said || strcmp(said, base_hex) != 0)) {
            rc = fed_error(FED_ESTATE, "tensor '%s': a delta against copy %.64s, but this client holds %.64s", FED_NET_MODEL_TENSOR,
                           said ? said : "(none named)", base_hex);
        } else if (fed_codec_decode_model(codec, ft->data, ft->numel, delta ? base : NULL, params, n)) {
            char msg[600];
            snprintf(msg, sizeof msg, "%s", fed_last_error());
            rc = fed_error(FED_EFORMAT, "tensor '%s': bad codec frame (%zu bytes) for download_compression '%s': %s",
                           FED_NET_MODEL_TENSOR, ft->numel, fed_codec_spec(codec), msg);
        }
        for (size_t k = 0; !rc && k < n; k++)
            if (!isfinite(params[k]))
                rc = fed_error(FED_ERANGE, "tensor '%s': the decoded model holds a non-finite value at element %zu",
                               FED_NET_MODEL_TENSOR, k);
    }
    if (rc || !fout) fed_st_close(f);
    else *fout = f;
    return rc;
}

/* ---- zstd ------------------------------------------------------------------ */

int fed_net_zstd_compress(const void *in, size_t len, void **out, size_t *out_len) {
    size_t cap = ZSTD_compressBound(len);
    void *b = malloc(cap ? cap : 1);
    if (!b) return fed_error(FED_ENOMEM, "zstd: out of memory");
    size_t r = ZSTD_compress(b, cap, in, len, 3);
    if (ZSTD_isError(r)) {
        free(b);
        return fed_error(FED_EINTERNAL, "zstd: %s", ZSTD_getErrorName(r));
    }
    *out = b;
    *out_len = r;
    return 0;
}

int fed_net_zstd_decompress(const void *in, size_t len, size_t max_out, void **out, size_t *out_len) {
    unsigned long long sz = ZSTD_getFrameContentSize(in, len);
    if (sz == ZSTD_CONTENTSIZE_ERROR) return fed_error(FED_EFORMAT, "body is not a zstd frame");
    if (sz == ZSTD_CONTENTSIZE_UNKNOWN) return fed_error(FED_EFORMAT, "zstd frame does not declare its content size");
    if (sz > max_out)
        return fed_error(FED_ERANGE, "zstd body expands to %llu bytes, more than the limit of %zu", sz, max_out);
    void *b = malloc(sz ? (size_t)sz : 1);
    if (!b) return fed_error(FED_ENOMEM, "zstd: out of memory");
    size_t r = ZSTD_decompress(b, (size_t)sz, in, len);
    if (ZSTD_isError(r) || r != sz) {
        free(b);
        return fed_error(FED_EFORMAT, "zstd body is corrupt: %s", ZSTD_isError(r) ? ZSTD_getErrorName(r) : "short frame");
    }
    *out = b;
    *out_len = (size_t)sz;
    return 0;
}
