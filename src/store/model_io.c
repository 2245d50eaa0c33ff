/* Models to and from safetensors under their PyTorch state_dict names, through
 * the public model API only. BatchNorm's num_batches_tracked lives in the model
 * as a float but is an int64 on disk, as torch writes it. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "federate/error.h"
#include "federate/model.h"
#include "federate/safetensors.h"

/* Data of tensor ti inside the model's flat buffers. The model API hands out
 * buffers only through a non-const accessor; we only read through it here. */
static const float *tensor_src(const fed_model *m, const fed_tensor_info *ti) {
    const float *base = ti->is_buffer ? fed_model_buffers((fed_model *)m) : fed_model_params_const(m);
    return base + ti->offset;
}

/* The model's tensors as safetensors entries, pointing into the model except for
 * int64 tensors, which are converted into *ints (free with free_tensors). */
typedef struct {
    int n;
    fed_st_tensor *ts;
    int64_t **ints;
} model_tensors;

static void free_tensors(model_tensors *mt) {
    if (mt->ints)
        for (int i = 0; i < mt->n; i++) free(mt->ints[i]);
    free(mt->ints);
    free(mt->ts);
}

static int collect_tensors(const fed_model *m, model_tensors *mt) {
    int n = fed_model_num_tensors(m);
    mt->n = n;
    mt->ts = calloc(n > 0 ? (size_t)n : 1, sizeof *mt->ts);
    mt->ints = calloc(n > 0 ? (size_t)n : 1, sizeof *mt->ints);
    if (!mt->ts || !mt->ints) return fed_error(FED_ENOMEM, "model %s: cannot allocate the tensor list", fed_model_name(m));
    for (int i = 0; i < n; i++) {
        const fed_tensor_info *ti = fed_model_tensor(m, i);
        fed_st_tensor *t = &mt->ts[i];
        snprintf(t->name, sizeof t->name, "%s", ti->name);
        t->dtype = ti->dtype;
        t->ndim = ti->ndim;
        for (int d = 0; d < ti->ndim && d < 4; d++) t->shape[d] = ti->shape[d];
        t->numel = ti->numel;
        const float *src = tensor_src(m, ti);
        if (ti->dtype == FED_DTYPE_I64) {
            int64_t *v = malloc((ti->numel ? ti->numel : 1) * sizeof *v);
            if (!v) return fed_error(FED_ENOMEM, "model %s: cannot allocate %s", fed_model_name(m), ti->name);
            for (size_t k = 0; k < ti->numel; k++) v[k] = (int64_t)llrintf(src[k]);
            mt->ints[i] = v;
            t->data = v;
        } else {
            t->data = src;
        }
    }
    return 0;
}

int fed_model_serialize(const fed_model *m, void **buf, size_t *len) {
    if (!m || !buf || !len) return fed_error(FED_EINVAL, "fed_model_serialize: NULL argument");
    model_tensors mt = {0};
    int rc = collect_tensors(m, &mt);
    const char *meta[] = {"format", "pt", "federate_model", fed_model_name(m)};
    if (!rc) rc = fed_st_serialize(mt.ts, mt.n, meta, 2, buf, len);
    free_tensors(&mt);
    return rc;
}

int fed_model_save(const fed_model *m, const char *path) {
    if (!m || !path) return fed_error(FED_EINVAL, "fed_model_save: NULL argument");
    model_tensors mt = {0};
    int rc = collect_tensors(m, &mt);
    const char *meta[] = {"format", "pt", "federate_model", fed_model_name(m)};
    if (!rc) rc = fed_st_write(path, mt.ts, mt.n, meta, 2);
    free_tensors(&mt);
    return rc;
}

/* Checks that f holds exactly the model's tensors, then copies them in. Nothing
 * is written to the model until everything has been validated. */
static int load_from(fed_model *m, const fed_st_file *f) {
    int n = fed_model_num_tensors(m);
    for (int i = 0; i < n; i++) {
        const fed_tensor_info *ti = fed_model_tensor(m, i);
        const fed_st_tensor *t = fed_st_find(f, ti->name);
        if (!t) return fed_error(FED_ESHAPE, "model %s: tensor \"%s\" missing from the file", fed_model_name(m), ti->name);
        if (t->dtype != ti->dtype)
            return fed_error(FED_ESHAPE, "model %s: tensor \"%s\" has dtype %s in the file, %s in the model",
                             fed_model_name(m), ti->name, t->dtype == FED_DTYPE_I64 ? "I64" : "F32",
                             ti->dtype == FED_DTYPE_I64 ? "I64" : "F32");
        int same = t->ndim == ti->ndim && t->numel == ti->numel;
        for (int d = 0; same && d < ti->ndim; d++) same = t->shape[d] == ti->shape[d];
        if (!same) {
            char fs[128] = "", ms[128] = "";
            for (int d = 0; d < t->ndim; d++)
                snprintf(fs + strlen(fs), sizeof fs - strlen(fs), "%s%lld", d ? "," : "", (long long)t->shape[d]);
            for (int d = 0; d < ti->ndim; d++)
                snprintf(ms + strlen(ms), sizeof ms - strlen(ms), "%s%lld", d ? "," : "", (long long)ti->shape[d]);
            return fed_error(FED_ESHAPE, "model %s: tensor \"%s\" has shape [%s] in the file, [%s] in the model",
                             fed_model_name(m), ti->name, fs, ms);
        }
    }
    /* Every model tensor matched a distinct file name, so equal counts mean no
     * extras; otherwise name the first file tensor the model lacks. */
    if (fed_st_count(f) != n) {
        for (int i = 0; i < fed_st_count(f); i++) {
            const fed_st_tensor *t = fed_st_get(f, i);
            if (!fed_model_find_tensor(m, t->name))
                return fed_error(FED_ESHAPE, "model %s: unexpected tensor \"%s\" in the file", fed_model_name(m),
                                 t->name);
        }
        return fed_error(FED_EINTERNAL, "model %s: tensor count mismatch", fed_model_name(m));
    }

    float *params = fed_model_params(m), *buffers = fed_model_buffers(m);
    for (int i = 0; i < n; i++) {
        const fed_tensor_info *ti = fed_model_tensor(m, i);
        const fed_st_tensor *t = fed_st_find(f, ti->name);
        float *dst = (ti->is_buffer ? buffers : params) + ti->offset;
        if (ti->dtype == FED_DTYPE_I64) {
            const int64_t *src = t->data;
            for (size_t k = 0; k < ti->numel; k++) dst[k] = (float)src[k];
        } else if (ti->numel) {
            memcpy(dst, t->data, ti->numel * sizeof(float));
        }
    }
    return 0;
}

int fed_model_load_buffer(fed_model *m, const void *buf, size_t len) {
    if (!m) return fed_error(FED_EINVAL, "fed_model_load_buffer: model is NULL");
    fed_st_file *f;
    int rc = fed_st_parse(buf, len, &f);
    if (rc) return rc;
    rc = load_from(m, f);
    fed_st_close(f);
    return rc;
}

int fed_model_load(fed_model *m, const char *path) {
    if (!m || !path) return fed_error(FED_EINVAL, "fed_model_load: NULL argument");
    fed_st_file *f;
    int rc = fed_st_open(path, &f);
    if (rc) return rc;
    rc = load_from(m, f);
    if (rc) {
        char detail[900];
        snprintf(detail, sizeof detail, "%s", fed_last_error());
        fed_error(rc, "%s: %s", path, detail);
    }
    fed_st_close(f);
    return rc;
}
