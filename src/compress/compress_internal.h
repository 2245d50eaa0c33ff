/* Internals of the update codecs (include/federate/compress.h): the parsed
 * stages, the record layout and the value coders / sparsifiers shared by
 * codec.c, quant.c and sparse.c. */
#ifndef FEDERATE_COMPRESS_INTERNAL_H
#define FEDERATE_COMPRESS_INTERNAL_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the wire format is written for little-endian hosts");

/* Codec ids on the wire: append-only. */
enum { FC_F32 = 1, FC_QUANT = 2, FC_QSGD = 3, FC_SIGN = 4, FC_TOPK = 5, FC_RANDK = 6, FC_ZSTD = 7 };
enum { FC_IDX_VARINT = 0, FC_IDX_BITMAP = 1, FC_IDX_SEEDED = 2 };
#define FC_VERSION 1
#define FC_FRAME_HDR 16
#define FC_REC_HDR 32
#define FC_QSGD_MAX_LEVELS 32767u

typedef struct fc_stage {
    int id;                /* 0: stage absent */
    /* quant */
    int bits, absmax;
    uint32_t block;
    /* qsgd */
    uint32_t levels;
    uint64_t bucket;
    /* topk / randk: frac > 0, else count */
    double frac;
    uint64_t count;
    /* zstd */
    int level;
} fc_stage;

/* A record as read from the wire (payload points into the frame). */
typedef struct fc_rec {
    uint8_t id, ver, a, b;
    uint32_t c;
    uint64_t count, aux, plen;
    const uint8_t *payload;
} fc_rec;

static inline void fc_put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void fc_put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static inline uint32_t fc_get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint64_t fc_get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static inline float fc_getf(const uint8_t *p) { float v; memcpy(&v, p, 4); return v; }
static inline void fc_putf(uint8_t *p, float v) { memcpy(p, &v, 4); }

/* Keys of the per-element uniform stream: u(i) = hash(i, k0, k1 ^ hi(i)). */
typedef struct fc_keys {
    uint32_t k0, k1;
} fc_keys;

/* ---- value coders (quant.c) ---- */
/* Exact payload size for m values; SIZE_MAX when it would overflow. */
size_t fc_value_payload_size(const fc_stage *s, size_t m);
/* Record fields a, b, c, aux for this stage. */
void fc_value_fields(const fc_stage *s, uint8_t *a, uint8_t *b, uint32_t *c, uint64_t *aux);
/* Writes exactly fc_value_payload_size bytes. v must be finite. */
int fc_value_encode(const fc_stage *s, fc_keys keys, const float *v, size_t m, uint8_t *payload);
/* Validates the record (its count is m) and decodes into out[0..m). */
int fc_value_decode(const fc_rec *r, float *out, size_t m);
/* 1 if every value is finite. */
int fc_all_finite(const float *x, size_t n);

/* ---- sparsifiers (sparse.c) ---- */
/* k for a stage and a length n (1 <= k <= n when n > 0). */
size_t fc_sparse_k(const fc_stage *s, size_t n);
/* Indices of the k largest |e|, increasing; ties broken by lower index. */
int fc_topk_select(const float *e, size_t n, size_t k, size_t *idx);
/* k distinct indices in [0, n), increasing, drawn from key (Floyd's algorithm). */
int fc_randk_draw(uint64_t key, size_t n, size_t k, size_t *idx);
/* Index coding: sizes, writers and a validating reader. */
size_t fc_idx_varint_size(const size_t *idx, size_t k);
void fc_idx_varint_write(const size_t *idx, size_t k, uint8_t *p);
void fc_idx_bitmap_write(const size_t *idx, size_t k, size_t n, uint8_t *p);
int fc_idx_read(int coding, const uint8_t *p, size_t plen, size_t n, size_t k, size_t *idx);

#endif
