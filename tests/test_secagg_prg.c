/* The mask PRG: its words are libsodium's ChaCha20 keystream, streams resume at any offset,
 * b-bit rings use b bits of keystream per element and pack the same way on
 * the wire, rejection sampling stays below R, pairwise masks derived from the two ends
 * cancel, and a masked vector (fixed seeds) passes a chi-square test on its top
 * bits. */
#include <sodium.h>
#include <string.h>
#include "check.h"
#include "federate/error.h"
#include "federate/rng.h"
#include "secagg/secagg_internal.h"

static void ring(sa_ring *r, int bits, uint64_t modulus) {
    fed_secagg_cfg c = {0};
    c.n = 2;
    c.ring_bits = bits;
    c.modulus = modulus;
    CHECK_OK(sa_ring_init(r, &c));
}

static void stream_is_chacha20(void) {
    sa_stream st[3];
    for (int i = 0; i < 3; i++) {
        for (int j = 0; j < 32; j++) st[i].seed[j] = (uint8_t)(i * 77 + j * 13);
        st[i].sign = i == 1 ? -1 : 1;
    }
    /* positions off.. of a stream are the same numbers as a whole-vector pass */
    sa_ring r;
    ring(&r, 32, 0);
    uint32_t whole[3000] = {0}, part[3000] = {0};
    sa_prg_apply(&r, whole, 0, 3000, st, 1);
    sa_prg_apply(&r, part, 0, 1024, st, 1);
    sa_prg_apply(&r, part + 1024, 1024, 3000 - 1024, st, 1);
    CHECK(memcmp(whole, part, sizeof whole) == 0);
    /* and the first words are ChaCha20's keystream itself */
    uint8_t zero[64] = {0}, ks[64];
    static const uint8_t nonce[12] = {'f', 'e', 'd', '-', 's', 'a', '-', 'm', 'a', 's', 'k', 0};
    crypto_stream_chacha20_ietf_xor_ic(ks, zero, 64, nonce, 0, st[0].seed);
    CHECK(memcmp(ks, whole, 64) == 0);
}

static void rejection_sampling(void) {
    const uint64_t mods[] = {3, 1000003, 0x1ffffffffULL + 2, 0xfffffffffffffff1ULL};
    for (size_t m = 0; m < 4; m++) {
        sa_ring r;
        ring(&r, 0, mods[m]);
        CHECK(r.kind == SA_KMOD);
        enum { L = 20000 };
        uint64_t *a = calloc(L, 8), *b = calloc(L, 8);
        sa_stream st = {{7}, 1}, neg = {{7}, -1};
        sa_prg_apply(&r, a, 0, L, &st, 1);
        double mean = 0;
        for (int i = 0; i < L; i++) {
            CHECK(a[i] < mods[m]);
            mean += (double)a[i] / (double)mods[m];
        }
        mean /= L;
        CHECK_NEAR(mean, (double)(mods[m] - 1) / (2.0 * (double)mods[m]), 0.02);
        /* +PRG then -PRG of the same seed is 0 mod R */
        memcpy(b, a, L * 8);
        sa_prg_apply(&r, b, 0, L, &neg, 1);
        for (int i = 0; i < L; i++) CHECK(b[i] == 0);
        free(a);
        free(b);
    }
}

static void pair_masks_cancel(void) {
    enum { N = 5, L = 777 };
    uint8_t sk[N][32], pk[N][32];
    for (int u = 0; u < N; u++) {
        memset(sk[u], 0, 32);
        sk[u][0] = (uint8_t)(u + 1);
        sk[u][31] = 0x40;
        crypto_scalarmult_base(pk[u], sk[u]);
    }
    sa_ring r;
    ring(&r, 32, 0);
    uint32_t acc[L] = {0};
    for (int u = 0; u < N; u++)
        for (int v = 0; v < N; v++) {
            if (u == v) continue;
            sa_stream st;
            uint8_t other[32];
            CHECK_OK(sa_pair_seed(st.seed, sk[u], pk[v], 9, (uint32_t)u, (uint32_t)v));
            CHECK_OK(sa_pair_seed(other, sk[v], pk[u], 9, (uint32_t)v, (uint32_t)u));
            CHECK(memcmp(st.seed, other, 32) == 0);
            st.sign = sa_sign((uint32_t)u, (uint32_t)v);
            sa_prg_apply(&r, acc, 0, L, &st, 1);
        }
    for (int i = 0; i < L; i++) CHECK(acc[i] == 0);
    /* different rounds give different seeds */
    uint8_t s1[32], s2[32];
    CHECK_OK(sa_pair_seed(s1, sk[0], pk[1], 1, 0, 1));
    CHECK_OK(sa_pair_seed(s2, sk[0], pk[1], 2, 0, 1));
    CHECK(memcmp(s1, s2, 32) != 0);
    /* a low-order point is refused */
    uint8_t zero[32] = {0};
    CHECK(sa_pair_seed(s1, sk[0], zero, 1, 0, 1) == FED_EFORMAT);
}

static double chi2_top8(const uint32_t *y, size_t L) {
    double cnt[256] = {0};
    for (size_t i = 0; i < L; i++) cnt[y[i] >> 24]++;
    double e = (double)L / 256, c = 0;
    for (int b = 0; b < 256; b++) c += (cnt[b] - e) * (cnt[b] - e) / e;
    return c;
}

static void masked_looks_uniform(void) {
    /* y = x + PRG(b) + sum_v +-PRG(s_uv) with fixed seeds and a very non-uniform x */
    enum { L = 200000 };
    uint32_t *y = malloc(L * 4);
    for (size_t i = 0; i < L; i++) y[i] = (uint32_t)(i % 7);
    sa_ring r;
    ring(&r, 32, 0);
    sa_stream st[4];
    for (int i = 0; i < 4; i++) {
        memset(st[i].seed, 0, 32);
        st[i].seed[0] = (uint8_t)(i + 1);
        st[i].sign = i % 2 ? -1 : 1;
    }
    sa_prg_apply(&r, y, 0, L, st, 4);
    double c = chi2_top8(y, L);
    /* 255 degrees of freedom: mean 255, sd 22.6; 340 is p ~ 3e-4 */
    CHECK(c < 340);
    /* the unmasked input itself fails badly */
    for (size_t i = 0; i < L; i++) y[i] = (uint32_t)(i % 7) << 24;
    CHECK(chi2_top8(y, L) > 10000);
    /* a packed 21-bit ring: the top 8 of its 21 bits, moved to the top of the word */
    ring(&r, 21, 0);
    for (size_t i = 0; i < L; i++) y[i] = (uint32_t)(i % 7);
    sa_prg_apply(&r, y, 0, L, st, 4);
    sa_ring_reduce(&r, y, L);
    for (size_t i = 0; i < L; i++) {
        CHECK(y[i] < (1u << 21));
        y[i] <<= 11;
    }
    CHECK(chi2_top8(y, L) < 340);
    free(y);
}

/* b-bit rings: element i is bits [i b, i b + b) of the raw ChaCha20 keystream,
 * whatever the offset a pass starts at, and packing round-trips exactly. */
static uint32_t ks_bits(const uint8_t *ks, size_t bit, int b) {
    uint64_t v = 0;
    for (int k = 0; k < b; k++) v |= (uint64_t)(ks[(bit + (size_t)k) / 8] >> ((bit + (size_t)k) % 8) & 1) << k;
    return (uint32_t)v;
}

static void packed_streams(void) {
    enum { L = 5000 };
    static const uint8_t nonce[12] = {'f', 'e', 'd', '-', 's', 'a', '-', 'm', 'a', 's', 'k', 0};
    uint8_t *zero = calloc(L * 4 + 64, 1), *ks = malloc(L * 4 + 64);
    uint32_t *whole = malloc(L * 4), *part = malloc(L * 4), *ref = malloc(L * 4);
    sa_stream st = {{0}, 1}, neg = {{0}, -1};
    for (int j = 0; j < 32; j++) st.seed[j] = neg.seed[j] = (uint8_t)(j * 29 + 5);
    crypto_stream_chacha20_ietf_xor_ic(ks, zero, L * 4 + 64, nonce, 0, st.seed);
    fed_rng g;
    fed_rng_init(&g, 5, 0, 0, FED_RNG_USER);
    for (int b = 1; b <= 32; b++) {
        sa_ring r;
        ring(&r, b, 0);
        CHECK(r.kind == SA_K32);
        CHECK(sa_ring_wire_bytes(&r, L) == (L * (size_t)b + 7) / 8);
        uint32_t m = b == 32 ? 0xffffffffu : (1u << b) - 1;
        for (size_t i = 0; i < L; i++) ref[i] = ks_bits(ks, i * (size_t)b, b);
        memset(whole, 0, L * 4);
        sa_prg_apply(&r, whole, 0, L, &st, 1);
        sa_ring_reduce(&r, whole, L);
        CHECK(memcmp(whole, ref, L * 4) == 0);
        /* resuming at a multiple of 16 that is not a 64-byte boundary of the stream */
        size_t cut = 16 * (1 + fed_rng_u32(&g) % (L / 16 - 1));
        memset(part, 0, L * 4);
        sa_prg_apply(&r, part, 0, cut, &st, 1);
        sa_prg_apply(&r, part + cut, cut, L - cut, &st, 1);
        sa_ring_reduce(&r, part, L);
        CHECK(memcmp(part, ref, L * 4) == 0);
        /* +PRG then -PRG of the same seed is 0 mod 2^b */
        sa_prg_apply(&r, part, 0, L, &neg, 1);
        sa_ring_reduce(&r, part, L);
        for (size_t i = 0; i < L; i++) CHECK(part[i] == 0);
        /* pack a length that is not a multiple of 16 into a buffer of exactly its
         * size (an over-read would show under ASan), then add it back */
        size_t n = L - 1 - fed_rng_u32(&g) % 15, nb = sa_ring_wire_bytes(&r, n);
        for (size_t i = 0; i < n; i++) whole[i] = fed_rng_u32(&g) & m;
        uint8_t *w = malloc(nb);
        sa_pack32(w, whole, n, b);
        if ((n * (size_t)b) % 8) CHECK((w[nb - 1] >> (n * (size_t)b % 8)) == 0);
        for (size_t i = 0; i < n; i++) part[i] = 7;
        sa_ring_add_wire(&r, part, w, nb, n);
        sa_ring_reduce(&r, part, n);
        for (size_t i = 0; i < n; i++) CHECK(part[i] == ((whole[i] + 7) & m));
        /* and from an element offset, as the server's sum reads it */
        size_t off = 16 * (fed_rng_u32(&g) % (n / 16)), wo = sa_ring_wire_off(&r, off);
        memset(part, 0, n * 4);
        sa_ring_add_wire(&r, part, w + wo, nb - wo, n - off);
        for (size_t i = off; i < n; i++) CHECK((part[i - off] & m) == whole[i]);
        free(w);
    }
    free(zero);
    free(ks);
    free(whole);
    free(part);
    free(ref);
}

int main(void) {
    CHECK(sodium_init() >= 0);
    stream_is_chacha20();
    rejection_sampling();
    packed_streams();
    pair_masks_cancel();
    masked_looks_uniform();
    TEST_PASS("test_secagg_prg");
}
