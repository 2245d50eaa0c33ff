/* Mask generation: ChaCha20 (RFC 8439), always libsodium's crypto_stream_chacha20_ietf:
 * no hand-written cipher, however fast, in this project.
 * keyed by a 32-byte seed expands into ring elements. For R = 2^b the keystream
 * words are used directly (wrapping 32- or 64-bit arithmetic, reduced by a mask at
 * the end); for other R, words are masked to ceil(log2 R) bits and rejected when
 * >= R, so masks are exactly uniform. Output is made and added in blocks that stay
 * in L1, so n streams of length L never take more than the accumulator. */
#include <sodium.h>
#include <time.h>
#include "federate/error.h"
#include "secagg_internal.h"

#define BLK 2048 /* 8 KiB of 32-bit words per ChaCha20 call */
static const uint8_t zeros[BLK * 4];
static const uint8_t nonce_mask[12] = {'f', 'e', 'd', '-', 's', 'a', '-', 'm', 'a', 's', 'k', 0};


int sa_ring_init(sa_ring *r, const fed_secagg_cfg *cfg) {
    memset(r, 0, sizeof *r);
    if (cfg->modulus) {
        uint64_t R = cfg->modulus;
        if (R < 2) return fed_error(FED_EINVAL, "secagg: modulus must be >= 2");
        r->R = R;
        int bits = 64 - __builtin_clzll(R - 1);
        if (R == 2) bits = 1;
        r->bits = bits;
        if ((R & (R - 1)) == 0) {
            r->mask = R - 1;
            r->kind = bits <= 32 ? SA_K32 : SA_K64;
        } else {
            r->mask = bits == 64 ? ~0ULL : ((1ULL << bits) - 1);
            r->kind = SA_KMOD;
        }
    } else {
        int b = cfg->ring_bits;
        if (b < 1 || b > 64) return fed_error(FED_EINVAL, "secagg: ring_bits %d outside 1..64", b);
        r->bits = b;
        r->R = b == 64 ? 0 : (1ULL << b);
        r->mask = b == 64 ? ~0ULL : (1ULL << b) - 1;
        r->kind = b <= 32 ? SA_K32 : SA_K64;
    }
    r->es = r->kind == SA_K32 ? 4 : 8;
    r->ws = r->bits <= 32 ? 4 : 8;
    return 0;
}

static void apply32(uint32_t *restrict acc, size_t off, size_t len, const sa_stream *st, size_t ns) {
    uint32_t buf[BLK];
    for (size_t s = 0; s < ns; s++) {
        size_t i = 0;
        for (; i < len; i += BLK) {
            size_t m = len - i < BLK ? len - i : BLK;
            size_t bytes = (m * 4 + 63) & ~(size_t)63;
            crypto_stream_chacha20_ietf_xor_ic((uint8_t *)buf, zeros, bytes, nonce_mask, (uint32_t)((off + i) / 16),
                                               st[s].seed);
            uint32_t *restrict a = acc + i;
            if (st[s].sign > 0)
                for (size_t j = 0; j < m; j++) a[j] += buf[j];
            else
                for (size_t j = 0; j < m; j++) a[j] -= buf[j];
        }
    }
    sodium_memzero(buf, sizeof buf);
}

static void apply64(uint64_t *restrict acc, size_t off, size_t len, const sa_stream *st, size_t ns) {
    uint64_t buf[BLK / 2];
    for (size_t s = 0; s < ns; s++) {
        size_t i = 0;
        for (; i < len; i += BLK / 2) {
            size_t m = len - i < BLK / 2 ? len - i : BLK / 2;
            size_t bytes = (m * 8 + 63) & ~(size_t)63;
            crypto_stream_chacha20_ietf_xor_ic((uint8_t *)buf, zeros, bytes, nonce_mask, (uint32_t)((off + i) / 8),
                                               st[s].seed);
            uint64_t *restrict a = acc + i;
            if (st[s].sign > 0)
                for (size_t j = 0; j < m; j++) a[j] += buf[j];
            else
                for (size_t j = 0; j < m; j++) a[j] -= buf[j];
        }
    }
    sodium_memzero(buf, sizeof buf);
}

static inline uint64_t addmod(uint64_t a, uint64_t b, uint64_t R) {
    uint64_t s = a + b;
    return (s < a || s >= R) ? s - R : s;
}

static void applymod(const sa_ring *r, uint64_t *acc, size_t len, const sa_stream *st, size_t ns) {
    uint8_t buf[BLK * 4];
    int w8 = r->bits > 32;
    size_t per = w8 ? BLK / 2 : BLK;
    for (size_t s = 0; s < ns; s++) {
        uint32_t ic = 0;
        size_t i = 0, have = 0, used = 0;
        while (i < len) {
            if (used == have) {
                crypto_stream_chacha20_ietf_xor_ic(buf, zeros, sizeof buf, nonce_mask, ic, st[s].seed);
                ic += sizeof buf / 64;
                have = per;
                used = 0;
            }
            uint64_t v = w8 ? sa_get64(buf + 8 * used) : sa_get32(buf + 4 * used);
            used++;
            v &= r->mask;
            if (v >= r->R) continue;
            acc[i] = addmod(acc[i], st[s].sign > 0 ? v : (v ? r->R - v : 0), r->R);
            i++;
        }
    }
    sodium_memzero(buf, sizeof buf);
}

void sa_prg_apply(const sa_ring *r, void *acc, size_t off, size_t len, const sa_stream *st, size_t ns) {
    if (r->kind == SA_K32) apply32((uint32_t *)acc, off, len, st, ns);
    else if (r->kind == SA_K64) apply64((uint64_t *)acc, off, len, st, ns);
    else applymod(r, (uint64_t *)acc, len, st, ns);
}

void sa_ring_reduce(const sa_ring *r, void *acc, size_t len) {
    if (r->kind == SA_K32) {
        uint32_t *a = acc, m = (uint32_t)r->mask;
        for (size_t i = 0; i < len; i++) a[i] &= m;
    } else if (r->kind == SA_K64) {
        uint64_t *a = acc, m = r->mask;
        for (size_t i = 0; i < len; i++) a[i] &= m;
    }
}

void sa_ring_add_wire(const sa_ring *r, void *acc, const uint8_t *src, size_t len) {
    if (r->kind == SA_K32) {
        uint32_t *restrict a = acc;
        for (size_t i = 0; i < len; i++) a[i] += sa_get32(src + 4 * i);
    } else if (r->kind == SA_K64) {
        uint64_t *restrict a = acc;
        for (size_t i = 0; i < len; i++) a[i] += sa_get64(src + 8 * i);
    } else {
        uint64_t *a = acc;
        for (size_t i = 0; i < len; i++) {
            uint64_t v = r->ws == 4 ? sa_get32(src + 4 * i) : sa_get64(src + 8 * i);
            a[i] = addmod(a[i], v, r->R);
        }
    }
}

void sa_xof_init(sa_xof *x, const uint8_t key[32], const char *domain) {
    crypto_generichash(x->key, 32, (const uint8_t *)domain, strlen(domain), key, 32);
    x->ic = 0;
    x->pos = 16;
}

uint32_t sa_xof_u32(sa_xof *x) {
    if (x->pos == 16) {
        crypto_stream_chacha20_ietf_xor_ic((uint8_t *)x->buf, zeros, 64, nonce_mask, x->ic++, x->key);
        x->pos = 0;
    }
    return x->buf[x->pos++];
}

uint32_t sa_xof_below(sa_xof *x, uint32_t n) { /* Lemire's unbiased bounded draw */
    uint64_t m = (uint64_t)sa_xof_u32(x) * n;
    uint32_t l = (uint32_t)m;
    if (l < n) {
        uint32_t th = (uint32_t)(-n) % n;
        while (l < th) {
            m = (uint64_t)sa_xof_u32(x) * n;
            l = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}

/* ---- key derivation: BLAKE2b over a domain tag, the round, the ordered pair and
 * the X25519 shared point, so keys differ per round, per pair and per purpose. */
static int derive(uint8_t out[32], const char *tag, const uint8_t sk[32], const uint8_t pk[32], uint64_t round,
                  uint32_t u, uint32_t v) {
    uint8_t dh[32];
    if (crypto_scalarmult(dh, sk, pk) != 0) {
        sodium_memzero(dh, sizeof dh);
        return fed_error(FED_EFORMAT, "secagg: public key of client %u is a low-order point", (unsigned)v);
    }
    uint32_t lo = u < v ? u : v, hi = u < v ? v : u;
    crypto_generichash_state h;
    crypto_generichash_init(&h, NULL, 0, 32);
    crypto_generichash_update(&h, (const uint8_t *)tag, strlen(tag) + 1);
    uint8_t meta[16];
    sa_put64(meta, round);
    sa_put32(meta + 8, lo);
    sa_put32(meta + 12, hi);
    crypto_generichash_update(&h, meta, sizeof meta);
    crypto_generichash_update(&h, dh, sizeof dh);
    crypto_generichash_final(&h, out, 32);
    sodium_memzero(dh, sizeof dh);
    sodium_memzero(&h, sizeof h);
    return 0;
}

int sa_pair_seed(uint8_t seed[32], const uint8_t sk[32], const uint8_t pk_other[32], uint64_t round, uint32_t u,
                 uint32_t v) {
    return derive(seed, "federate-secagg-pair-mask", sk, pk_other, round, u, v);
}

int sa_enc_key(uint8_t key[32], const uint8_t sk[32], const uint8_t pk_other[32], uint64_t round, uint32_t u,
               uint32_t v) {
    return derive(key, "federate-secagg-share-key", sk, pk_other, round, u, v);
}

void sa_commit(uint8_t out[32], const uint8_t b[32], uint64_t round, uint32_t u) {
    uint8_t meta[12 + 32];
    sa_put64(meta, round);
    sa_put32(meta + 8, u);
    memcpy(meta + 12, b, 32);
    crypto_generichash(out, 32, meta, sizeof meta, (const uint8_t *)"federate-secagg-commit", 22);
    sodium_memzero(meta, sizeof meta);
}

void sa_put_hdr(uint8_t *p, int type, uint32_t id, uint64_t round) {
    p[0] = 'F';
    p[1] = 'S';
    p[2] = 'A';
    p[3] = (uint8_t)type;
    sa_put32(p + 4, id);
    sa_put64(p + 8, round);
}

int sa_check_hdr(const uint8_t *p, size_t len, int type, uint32_t id, uint64_t round, const char *who) {
    if (!p || len < SA_HDR) return fed_error(FED_EFORMAT, "%s: message of %zu bytes is truncated", who, len);
    if (p[0] != 'F' || p[1] != 'S' || p[2] != 'A') return fed_error(FED_EFORMAT, "%s: bad magic", who);
    if (p[3] != type) return fed_error(FED_EFORMAT, "%s: message type %d, expected %d", who, p[3], type);
    if (sa_get32(p + 4) != id)
        return fed_error(FED_EFORMAT, "%s: message names client %u, expected %u", who, (unsigned)sa_get32(p + 4),
                         (unsigned)id);
    if (sa_get64(p + 8) != round)
        return fed_error(FED_EFORMAT, "%s: message of round %llu, expected %llu", who,
                         (unsigned long long)sa_get64(p + 8), (unsigned long long)round);
    return 0;
}

double sa_cpu_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

double sa_wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

double sa_proc_cpu_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}
