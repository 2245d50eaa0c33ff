/* The mask PRG: its words are libsodium's ChaCha20 keystream, streams resume at any offset,
 * rejection sampling stays below R, pairwise masks derived from the two ends
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
    free(y);
}

int main(void) {
    CHECK(sodium_init() >= 0);
    stream_is_chacha20();
    rejection_sampling();
    pair_masks_cancel();
    masked_looks_uniform();
    TEST_PASS("test_secagg_prg");
}
