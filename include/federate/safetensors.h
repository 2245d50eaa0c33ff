/* safetensors files and buffers: an 8-byte little-endian header length, a JSON
 * header {name: {dtype, shape, data_offsets}} and raw little-endian data. Models
 * are written with their PyTorch state_dict names so torch loads them directly. */
#ifndef FEDERATE_SAFETENSORS_H
#define FEDERATE_SAFETENSORS_H
#include <stddef.h>
#include <stdint.h>
#include "federate/model.h"

typedef struct fed_st_tensor {
    char name[128];
    int dtype;            /* FED_DTYPE_F32, FED_DTYPE_I64 or FED_DTYPE_U8 */
    int ndim;
    int64_t shape[8];
    size_t numel;
    const void *data;     /* numel elements of dtype, host byte order */
} fed_st_tensor;

/* A parsed file/buffer. Tensors' data point into it. */
typedef struct fed_st_file fed_st_file;

int fed_st_open(const char *path, fed_st_file **out);
/* Parses an in-memory buffer (copied); errors say which byte/key is wrong. */
int fed_st_parse(const void *buf, size_t len, fed_st_file **out);
void fed_st_close(fed_st_file *f);
int fed_st_count(const fed_st_file *f);
const fed_st_tensor *fed_st_get(const fed_st_file *f, int i);
const fed_st_tensor *fed_st_find(const fed_st_file *f, const char *name);
/* Metadata string ("__metadata__" entry) for key, or NULL. */
const char *fed_st_metadata(const fed_st_file *f, const char *key);

/* Serializes tensors (+ optional metadata key/value pairs, nmeta of them) into a
 * malloc'd buffer. */
int fed_st_serialize(const fed_st_tensor *t, int n, const char *const *meta_kv, int nmeta,
                     void **buf, size_t *len);
int fed_st_write(const char *path, const fed_st_tensor *t, int n, const char *const *meta_kv, int nmeta);

/* A model's parameters and buffers under their state_dict names. */
int fed_model_save(const fed_model *m, const char *path);
int fed_model_serialize(const fed_model *m, void **buf, size_t *len);
/* Loads into an existing model of the same architecture: every tensor of the
 * model must be present with the same shape and dtype (extra tensors are an
 * error too); errors name the tensor. */
int fed_model_load(fed_model *m, const char *path);
int fed_model_load_buffer(fed_model *m, const void *buf, size_t len);

#endif
