/* Internals shared by the secure aggregation files: the ring and its mask PRG,
 * the neighbour graph, key derivation and the wire format of the four stages. */
#ifndef FEDERATE_SECAGG_INTERNAL_H
#define FEDERATE_SECAGG_INTERNAL_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "federate/secagg.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "secagg masks assume a little-endian host"
#endif

/* ---- ring Z_R ---- */
enum { SA_K32 = 0, SA_K64 = 1, SA_KMOD = 2 };
typedef struct sa_ring {
    uint64_t R;     /* 0 means 2^64 */
    uint64_t mask;  /* R - 1 for powers of two; (2^bits - 1) for rejection sampling */
    int bits;       /* ceil(log2 R) */
    int kind;       /* SA_K32: power of two <= 2^32, uint32 accumulators wrapping mod 2^32;
                       SA_K64: power of two > 2^32, uint64 wrapping; SA_KMOD: general R */
    int es;         /* accumulator element size, 4 or 8 */
    int ws;         /* keystream / wire word size of SA_K64 and SA_KMOD: 4 when R <= 2^32, else 8
                       (SA_K32 elements are packed in bits bits) */
} sa_ring;
int sa_ring_init(sa_ring *r, const fed_secagg_cfg *cfg);

/* One mask stream: PRG(seed) added with sign +1 or -1. */
typedef struct sa_stream {
    uint8_t seed[32];
    int sign;
} sa_stream;
/* acc[0..len) (element positions off..off+len of the streams) += sum of
 * sign * PRG(seed). For SA_K32/SA_K64 off must be a multiple of 16; SA_KMOD
 * needs off = 0 and len = L (rejection sampling cannot seek). */
void sa_prg_apply(const sa_ring *r, void *acc, size_t off, size_t len, const sa_stream *st, size_t ns);
/* Reduces a wrapping accumulator mod R (no-op for SA_KMOD). */
void sa_ring_reduce(const sa_ring *r, void *acc, size_t len);
/* mod-R acc += the len elements at src in wire format; avail is how many bytes
 * may be read from src (at least sa_ring_wire_bytes(r, len)). */
void sa_ring_add_wire(const sa_ring *r, void *acc, const uint8_t *src, size_t avail, size_t len);
/* Wire format of ring elements: SA_K32 rings pack each element in exactly b bits,
 * element i at bits [i b, i b + b) least significant first, the last byte padded
 * with zero bits; SA_K64 and SA_KMOD elements are little-endian words of ws bytes.
 * sa_ring_wire_bytes: the bytes of L elements; sa_ring_wire_off: the byte where
 * element off starts (off a multiple of 16 for SA_K32). */
size_t sa_ring_wire_bytes(const sa_ring *r, size_t L);
size_t sa_ring_wire_off(const sa_ring *r, size_t off);
/* Packs L elements, each < 2^b (1 <= b <= 32), into sa_ring_wire_bytes bytes. */
void sa_pack32(uint8_t *restrict dst, const uint32_t *restrict a, size_t L, int b);
/* a[j] += (or -=, when neg) element j of the packed b-bit string at src, for j < m;
 * src has avail readable bytes, at least (m b + 7) / 8. Bits above b may be left
 * in the 32-bit sums: the caller reduces mod 2^b once at the end. */
void sa_unpack_add32(uint32_t *restrict a, const uint8_t *src, size_t avail, size_t m, int b, int neg);
/* Uniform element stream from a seed (for permutations etc.). */
typedef struct sa_xof {
    uint8_t key[32];
    uint32_t buf[16];
    uint32_t ic;
    int pos;
} sa_xof;
void sa_xof_init(sa_xof *x, const uint8_t key[32], const char *domain);
uint32_t sa_xof_u32(sa_xof *x);
uint32_t sa_xof_below(sa_xof *x, uint32_t n);

/* ---- Shamir internals: Lagrange coefficients at 0 for points xs, reused across
 * secrets whose shares sit at the same points ---- */
int sa_shamir_lagrange(const uint32_t *xs, int t, uint64_t *lam);
int sa_shamir_combine_lam(const fed_shamir_share *sh, int t, const uint64_t *lam, uint8_t secret[32]);

/* ---- graph ---- */
typedef struct sa_graph {
    int n, k, full;
    uint32_t *perm; /* ring position -> id */
    uint32_t *pos;  /* id -> ring position */
} sa_graph;
int sa_graph_init(sa_graph *g, int n, int k, const uint8_t seed[32]);
void sa_graph_free(sa_graph *g);
int sa_graph_is_nbr(const sa_graph *g, uint32_t u, uint32_t v);
/* Neighbours of u (not u itself), ascending; returns the count. out holds k. */
int sa_graph_nbrs(const sa_graph *g, uint32_t u, uint32_t *out);
int sa_graph_degree(const sa_graph *g);

/* ---- keys ---- */
/* Seed of the pairwise mask between u and v from X25519(sk, pk_other). */
int sa_pair_seed(uint8_t seed[32], const uint8_t sk[32], const uint8_t pk_other[32], uint64_t round, uint32_t u,
                 uint32_t v);
/* AEAD key for shares between u and v. */
int sa_enc_key(uint8_t key[32], const uint8_t sk[32], const uint8_t pk_other[32], uint64_t round, uint32_t u,
               uint32_t v);
void sa_commit(uint8_t out[32], const uint8_t b[32], uint64_t round, uint32_t u);
/* Pairwise mask sign of u's mask with v: + when u < v. */
static inline int sa_sign(uint32_t u, uint32_t v) { return u < v ? 1 : -1; }

/* ---- wire ----
 * Every message opens with a 16-byte header: "FSA", type (u8), the client's id
 * (u32, sender or recipient), the round (u64); integers are little-endian.
 *   C_ADV    c_pk[32] s_pk[32]
 *   S_KEYS   m u32, m x (id u32, c_pk[32], s_pk[32])      neighbours that advertised
 *   C_SHARE  commit[32] = H(b), m u32, m x (to u32, ct[176]) one per S_KEYS entry, same order
 *            ct = nonce[24] || XChaCha20-Poly1305(from, to, b-share[8 x u64], s-share[8 x u64]),
 *            additional data "FSAs" from to round
 *   S_SHARES m u32, m x (from u32, ct[176])                 from neighbours in U1
 *   C_MASKED c u32, c x id u32 (undecryptable shares), L u64, L elements (sa_ring_wire_bytes: b bits each
 *            for R = 2^b <= 2^32, else words of 4 bytes if R <= 2^32, 8 above)
 *   S_REVEAL nb u32, nb x id, ns u32, ns x id               self-mask shares of U2, mask-key shares of U1 \ U2
 *   C_UNMASK nb u32, nb x (id u32, share[8 x u64]), ns u32, ns x (id u32, share[8 x u64])
 * With cfg->consistency (the active-adversary variant) some messages grow and a
 * stage is added between C_MASKED and S_REVEAL (Ed25519 signatures, 64 bytes):
 *   C_ADV    c_pk[32] s_pk[32] sig[64]          sig over "FSAa" round u64 context[32] id u32 c_pk s_pk
 *   S_KEYS   m u32, m x (id u32, c_pk[32], s_pk[32], sig[64])
 *   S_CHECK  m u32, m x id u32                  U3 (masked inputs kept), ascending
 *   C_CHECK  sig[64]                            over "FSAu" round u64 context[32] m u32 (m x id u32)
 *   S_REVEAL as above, then g u32, g x (id u32, sig[64])  C_CHECK signatures of the
 *            recipient and its neighbours, ascending */
#define SA_HDR 16
enum {
    SA_C_ADV = 0, SA_C_SHARE = 1, SA_C_MASKED = 2, SA_C_UNMASK = 3, SA_C_CHECK = 4,
    SA_S_KEYS = 0x10, SA_S_SHARES = 0x11, SA_S_REVEAL = 0x12, SA_S_CHECK = 0x13,
};
#define SA_SIG 64
#define SA_ADV_TBS (4 + 8 + 32 + 4 + 64)
#define SA_U3_TBS_HEAD (4 + 8 + 32 + 4)
/* The bytes a stage-0 signature covers: "FSAa" round context id c_pk s_pk. */
void sa_adv_tbs(uint8_t out[SA_ADV_TBS], uint64_t round, const uint8_t context[32], uint32_t id,
                const uint8_t c_pk[32], const uint8_t s_pk[32]);
/* The bytes a consistency signature covers, "FSAu" round context m U3, from U3 as
 * m little-endian u32 ids (malloc'd, *len set; NULL when out of memory). */
uint8_t *sa_u3_tbs(uint64_t round, const uint8_t context[32], const uint8_t *ids_wire, uint32_t m, size_t *len);
#define SA_PT_LEN (8 + 2 * 8 * FED_SHAMIR_CHUNKS) /* from, to, b-share, s-share */
#define SA_NONCE 24
#define SA_TAG 16
#define SA_CT_LEN (SA_NONCE + SA_PT_LEN + SA_TAG)
#define SA_SHARE_WIRE (4 + 8 * FED_SHAMIR_CHUNKS)

static inline void sa_put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void sa_put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static inline uint32_t sa_get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint64_t sa_get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
void sa_put_hdr(uint8_t *p, int type, uint32_t id, uint64_t round);
/* Checks magic, type, id and round; FED_EFORMAT naming what differs. */
int sa_check_hdr(const uint8_t *p, size_t len, int type, uint32_t id, uint64_t round, const char *who);

/* Cursor over a received message: every read is bounds-checked. */
typedef struct sa_rd {
    const uint8_t *p;
    size_t len, off;
    int bad;
} sa_rd;
static inline uint32_t sa_rd32(sa_rd *r) {
    if (r->bad || r->len - r->off < 4) { r->bad = 1; return 0; }
    uint32_t v = sa_get32(r->p + r->off); r->off += 4; return v;
}
static inline uint64_t sa_rd64(sa_rd *r) {
    if (r->bad || r->len - r->off < 8) { r->bad = 1; return 0; }
    uint64_t v = sa_get64(r->p + r->off); r->off += 8; return v;
}
static inline const uint8_t *sa_rdn(sa_rd *r, size_t n) {
    if (r->bad || r->len - r->off < n) { r->bad = 1; return NULL; }
    const uint8_t *q = r->p + r->off; r->off += n; return q;
}

double sa_cpu_ms(void);
double sa_wall_ms(void);
double sa_proc_cpu_ms(void);

/* Index of v in the ascending array a[0..m), or -1. */
static inline int sa_find_u32(const uint32_t *a, int m, uint32_t v) {
    int lo = 0, hi = m - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        if (a[mid] == v) return mid;
        if (a[mid] < v) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

#endif
