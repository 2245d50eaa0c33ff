/* Mask generation: ChaCha20 (RFC 8439), always libsodium's crypto_stream_chacha20_ietf:
 * no hand-written cipher, however fast, in this project.
 * A 32-byte seed expands into ring elements. For R = 2^b with b <= 32, element i is
 * bits [i b, i b + b) of the keystream (least significant bit first), so a b-bit
 * ring draws b bits of keystream per element, not 32; for b = 32 that is the
 * keystream's little-endian words. R = 2^b above 2^32 uses 64-bit words. Other R:
 * words are masked to ceil(log2 R) bits and rejected when >= R, so masks are
 * exactly uniform. Output is made and added in blocks that stay in L1, so n
 * streams of length L never take more than the accumulator. */
#include <sodium.h>
#include <time.h>
#include "federate/error.h"
#include "secagg_internal.h"
#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#define BLK 2048 /* 8 KiB of 32-bit words per ChaCha20 call */
/* 32-bit-or-smaller rings take 4096 elements a call: 512 b bytes, whole 512-byte
 * runs of libsodium's 8-block loop, starting on a block when off is a multiple of
 * 4096 (the server's and the client's chunks are). */
#define BLKP 4096
static const uint8_t zeros[BLKP * 4 + 64];
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

size_t sa_ring_wire_bytes(const sa_ring *r, size_t L) {
    return r->kind == SA_K32 ? (L * (size_t)r->bits + 7) / 8 : L * (size_t)r->ws;
}

size_t sa_ring_wire_off(const sa_ring *r, size_t off) {
    return r->kind == SA_K32 ? off / 16 * 2 * (size_t)r->bits : off * (size_t)r->ws;
}

void sa_pack32(uint8_t *restrict dst, const uint32_t *restrict a, size_t L, int b) {
    if (b == 32) {
        memcpy(dst, a, L * 4);
        return;
    }
    uint64_t w = 0; /* at most 7 + 31 pending bits */
    int n = 0;
    for (size_t i = 0; i < L; i++) {
        w |= (uint64_t)a[i] << n;
        for (n += b; n >= 8; n -= 8) {
            *dst++ = (uint8_t)w;
            w >>= 8;
        }
    }
    if (n) *dst = (uint8_t)w;
}

void sa_unpack_add32(uint32_t *restrict a, const uint8_t *src, size_t avail, size_t m, int b, int neg) {
    size_t j = 0;
    if (b == 32) {
        for (; j < m; j++) a[j] = neg ? a[j] - sa_get32(src + 4 * j) : a[j] + sa_get32(src + 4 * j);
        return;
    }
#if defined(__AVX512F__) || defined(__AVX2__)
    /* W elements (W = 16 or 8) take W b / 8 bytes, at most W 32-bit words. Lane e
     * of a window of those words holds bits from word q = e b / 32, shifted down
     * by s = e b % 32, or-ed with word q + 1 shifted up by 32 - s (a shift by 32
     * gives 0). Word q + 1 past the window wraps to another word of it: that only
     * happens when the element ends inside word q, so it lands on bits above b.
     * Bits above b are left in the lane: the accumulators wrap mod 2^32 and are
     * reduced mod 2^b at the end. */
#if defined(__AVX512F__)
    enum { W = 16 };
#else
    enum { W = 8 };
#endif
    uint32_t q0[W], q1[W], sr[W], sl[W];
    for (size_t e = 0; e < W; e++) {
        size_t bit = e * (size_t)b;
        q0[e] = (uint32_t)(bit / 32);
        q1[e] = (uint32_t)((bit / 32 + 1) % W);
        sr[e] = (uint32_t)(bit % 32);
        sl[e] = 32 - sr[e];
    }
    const size_t gb = W * (size_t)b / 8; /* bytes per W elements */
#if defined(__AVX512F__)
    const __m512i Q0 = _mm512_loadu_si512(q0), Q1 = _mm512_loadu_si512(q1);
    const __m512i SR = _mm512_loadu_si512(sr), SL = _mm512_loadu_si512(sl);
    for (; j + W <= m && j / W * gb + 64 <= avail; j += W) {
        __m512i w = _mm512_loadu_si512(src + j / W * gb);
        __m512i v = _mm512_or_si512(_mm512_srlv_epi32(_mm512_permutexvar_epi32(Q0, w), SR),
                                    _mm512_sllv_epi32(_mm512_permutexvar_epi32(Q1, w), SL));
        __m512i x = _mm512_loadu_si512(a + j);
        _mm512_storeu_si512(a + j, neg ? _mm512_sub_epi32(x, v) : _mm512_add_epi32(x, v));
    }
#else
    const __m256i Q0 = _mm256_loadu_si256((const __m256i *)q0), Q1 = _mm256_loadu_si256((const __m256i *)q1);
    const __m256i SR = _mm256_loadu_si256((const __m256i *)sr), SL = _mm256_loadu_si256((const __m256i *)sl);
    for (; j + W <= m && j / W * gb + 32 <= avail; j += W) {
        __m256i w = _mm256_loadu_si256((const __m256i *)(src + j / W * gb));
        __m256i v = _mm256_or_si256(_mm256_srlv_epi32(_mm256_permutevar8x32_epi32(w, Q0), SR),
                                    _mm256_sllv_epi32(_mm256_permutevar8x32_epi32(w, Q1), SL));
        __m256i x = _mm256_loadu_si256((const __m256i *)(a + j));
        _mm256_storeu_si256((__m256i *)(a + j), neg ? _mm256_sub_epi32(x, v) : _mm256_add_epi32(x, v));
    }
#endif
#endif
    for (; j < m; j++) {
        size_t bit = j * (size_t)b, byte = bit >> 3;
        uint64_t w = 0;
        if (avail - byte >= 8) memcpy(&w, src + byte, 8);
        else memcpy(&w, src + byte, avail - byte);
        uint32_t v = (uint32_t)(w >> (bit & 7));
        a[j] = neg ? a[j] - v : a[j] + v;
    }
}

static void apply32(int b, uint32_t *restrict acc, size_t off, size_t len, const sa_stream *st, size_t ns) {
    uint32_t words[BLKP + 16];
    uint8_t *buf = (uint8_t *)words;
    /* the packed path's vector loads may read past the keystream made: give them
     * defined bytes (their values never reach an element) */
    memset(words, 0, sizeof words);
    for (size_t s = 0; s < ns; s++) {
        for (size_t i = 0; i < len; i += BLKP) {
            size_t m = len - i < BLKP ? len - i : BLKP;
            /* elements off + i.. start at byte (off + i) / 16 * 2b of the stream */
            size_t start = (off + i) / 16 * 2 * (size_t)b, skip = start % 64;
            size_t bytes = (skip + (m * (size_t)b + 7) / 8 + 63) & ~(size_t)63;
            crypto_stream_chacha20_ietf_xor_ic(buf, zeros, bytes, nonce_mask, (uint32_t)(start / 64), st[s].seed);
            sa_unpack_add32(acc + i, buf + skip, sizeof words - skip, m, b, st[s].sign < 0);
        }
    }
    sodium_memzero(words, sizeof words);
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
    if (r->kind == SA_K32) apply32(r->bits, (uint32_t *)acc, off, len, st, ns);
    else if (r->kind == SA_K64) apply64((uint64_t *)acc, off, len, st, ns);
    else applymod(r, (uint64_t *)acc, len, st, ns);
}

int fed_secagg_prg_rate(int ring_bits, double *bytes_per_s) {
    if (!bytes_per_s) return fed_error(FED_EINVAL, "secagg prg rate: NULL");
    fed_secagg_cfg c = {0};
    c.n = 2;
    c.ring_bits = ring_bits;
    sa_ring r;
    int rc = sa_ring_init(&r, &c);
    if (rc) return rc;
    enum { NS = 32, CH = 4096 };
    const size_t L = (size_t)1 << 20;
    sa_stream st[NS];
    for (int i = 0; i < NS; i++) {
        memset(st[i].seed, i + 1, 32);
        st[i].sign = i % 2 ? -1 : 1;
    }
    uint64_t acc[CH] = {0}; /* room for 64-bit elements */
    double t0 = sa_wall_ms();
    for (size_t off = 0; off < L; off += CH) sa_prg_apply(&r, acc, off, CH, st, NS);
    double s = (sa_wall_ms() - t0) / 1000;
    double per = r.kind == SA_K32 ? r.bits / 8.0 : 8.0;
    *bytes_per_s = s > 0 ? (double)NS * (double)L * per / s : 0;
    sodium_memzero(st, sizeof st);
    return 0;
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

void sa_ring_add_wire(const sa_ring *r, void *acc, const uint8_t *src, size_t avail, size_t len) {
    if (r->kind == SA_K32) {
        sa_unpack_add32(acc, src, avail, len, r->bits, 0);
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
