/* What travels on the wire besides JSON: models and updates as safetensors
 * bodies under the model's state_dict names (so any safetensors library reads
 * them), optionally zstd-compressed, and the canonical text a request
 * signature covers. docs/protocol.md describes both byte for byte. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>
#include "federate/error.h"
#include "federate/net.h"

int fed_net_signed_text(char *buf, size_t size, const char *method, const char *path, int64_t run, int round,
                        int client, int64_t timestamp, const char *nonce_hex, const void *body, size_t body_len) {
    uint8_t h[FED_SHA256_BYTES];
    char hx[2 * FED_SHA256_BYTES + 1];
    int rc = fed_sha256(h, body_len ? body : "", body_len);
    if (rc) return rc;
    fed_hex_encode(hx, h, sizeof h);
    int n = snprintf(buf, size, "federate-v1\n%s\n%s\n%" PRId64 "\n%d\n%d\n%" PRId64 "\n%s\n%s", method, path, run,
                     round, client, timestamp, nonce_hex, hx);
    if (n < 0 || (size_t)n >= size) return fed_error(FED_ERANGE, "signed text: buffer of %zu bytes too small", size);
    return n;
}

/* ---- safetensors bodies --------------------------------------------------- */

int fed_net_pack(const fed_model *proto, const float *params, const float *buffers, const float *control,
                 const char *const *meta, int nmeta, void **buf, size_t *len) {
    int nt = fed_model_num_tensors(proto);
    int total = nt + (control ? nt : 0);
    fed_st_tensor *ts = calloc((size_t)(total > 0 ? total : 1), sizeof *ts);
    int64_t **ints = calloc((size_t)(total > 0 ? total : 1), sizeof *ints);
    int rc = 0, n = 0;
    if (!ts || !ints) { rc = fed_error(FED_ENOMEM, "pack: out of memory"); goto out; }
    for (int pass = 0; pass < (control ? 2 : 1) && !rc; pass++) {
        for (int i = 0; i < nt; i++) {
            const fed_tensor_info *ti = fed_model_tensor(proto, i);
            if (pass == 1 && ti->is_buffer) continue;   /* control vectors cover parameters only */
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
    if (!rc) rc = fed_st_serialize(ts, n, meta, nmeta, buf, len);
out:
    if (ints)
        for (int i = 0; i < total; i++) free(ints[i]);
    free(ints);
    free(ts);
    return rc;
}

static int check_tensor(const fed_tensor_info *ti, const fed_st_tensor *t, const char *name) {
    if (!t) return fed_error(FED_ESHAPE, "tensor '%s' is missing", name);
    if (t->dtype != ti->dtype)
        return fed_error(FED_ESHAPE, "tensor '%s' has dtype %s, expected %s", name, t->dtype == FED_DTYPE_I64 ? "I64" : "F32",
                         ti->dtype == FED_DTYPE_I64 ? "I64" : "F32");
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

int fed_net_unpack(const fed_model *proto, const void *buf, size_t len, int want_control, float *params,
                   float *buffers, float *control, fed_st_file **fout) {
    if (fout) *fout = NULL;
    fed_st_file *f = NULL;
    int rc = fed_st_parse(buf, len, &f);
    if (rc) return rc;
    int nt = fed_model_num_tensors(proto), expect = 0;
    for (int pass = 0; pass < (want_control ? 2 : 1) && !rc; pass++) {
        for (int i = 0; i < nt && !rc; i++) {
            const fed_tensor_info *ti = fed_model_tensor(proto, i);
            if (pass == 1 && ti->is_buffer) continue;
            char name[160];
            if (pass == 0) snprintf(name, sizeof name, "%s", ti->name);
            else snprintf(name, sizeof name, "control.%s", ti->name);
            const fed_st_tensor *t = fed_st_find(f, name);
            if ((rc = check_tensor(ti, t, name))) break;
            expect++;
            float *dst = pass == 1 ? control + ti->offset : (ti->is_buffer ? buffers : params) + ti->offset;
            if (ti->dtype == FED_DTYPE_I64) {
                const int64_t *v = t->data;
                for (size_t k = 0; k < ti->numel; k++) dst[k] = (float)v[k];
            } else {
                memcpy(dst, t->data, ti->numel * sizeof(float));
                for (size_t k = 0; k < ti->numel; k++)
                    if (!isfinite(dst[k])) {
                        rc = fed_error(FED_ERANGE, "tensor '%s' holds a non-finite value (%s) at element %zu", name,
                                       isnan(dst[k]) ? "NaN" : "Inf", k);
                        break;
                    }
            }
        }
    }
    if (!rc && fed_st_count(f) != expect) {
        for (int i = 0; i < fed_st_count(f); i++) {
            const char *nm = fed_st_get(f, i)->name;
            const char *base = strncmp(nm, "control.", 8) == 0 && want_control ? nm + 8 : nm;
            int known = 0;
            for (int j = 0; j < nt && !known; j++) known = strcmp(fed_model_tensor(proto, j)->name, base) == 0;
            if (!known) { rc = fed_error(FED_ESHAPE, "unexpected tensor '%s' (not a tensor of model %s)", nm, fed_model_name(proto)); break; }
        }
        if (!rc) rc = fed_error(FED_ESHAPE, "body holds %d tensors, expected %d", fed_st_count(f), expect);
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
