/* Known answers for secure aggregation: the RFC 8439 ChaCha20 block through the
 * libsodium call the mask PRG uses, RFC 7748 X25519 vectors, Shamir
 * reconstruction from any t of n shares (and not from t-1), and the SecAgg+
 * parameters (k, t) = (28, 6) for 100 clients, 5% adversarial, 33% dropout. */
#include <sodium.h>
#include <string.h>
#include "check.h"
#include "federate/error.h"
#include "federate/secagg.h"

static void unhex(uint8_t *out, const char *hex) {
    for (size_t i = 0; hex[2 * i]; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
}

static void chacha_block(void) {
    /* RFC 8439 section 2.3.2: key 00..1f, nonce 000000090000004a00000000, counter 1 */
    uint8_t key[32], nonce[12], zero[64] = {0}, out[64], want[64];
    for (int i = 0; i < 32; i++) key[i] = (uint8_t)i;
    unhex(nonce, "000000090000004a00000000");
    unhex(want, "10f1e7e4d13b5915500fdd1fa32071c4c7d1f4c733c068030422aa9ac3d46c4e"
                "d2826446079faa0914c2d705d98b02a2b5129cd1de164eb9cbd083e8a2503c4e");
    CHECK(crypto_stream_chacha20_ietf_xor_ic(out, zero, 64, nonce, 1, key) == 0);
    CHECK(memcmp(out, want, 64) == 0);
}

static void x25519(void) {
    /* RFC 7748 section 5.2, first two vectors */
    uint8_t k[32], u[32], out[32], want[32];
    unhex(k, "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4");
    unhex(u, "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c");
    unhex(want, "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552");
    CHECK(crypto_scalarmult(out, k, u) == 0);
    CHECK(memcmp(out, want, 32) == 0);
    unhex(k, "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d");
    unhex(u, "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493");
    unhex(want, "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957");
    CHECK(crypto_scalarmult(out, k, u) == 0);
    CHECK(memcmp(out, want, 32) == 0);
    /* section 6.1: Alice and Bob */
    uint8_t a[32], b[32], apk[32], bpk[32], s1[32], s2[32];
    unhex(a, "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
    unhex(b, "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
    unhex(want, "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
    crypto_scalarmult_base(apk, a);
    CHECK(memcmp(apk, want, 32) == 0);
    unhex(want, "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
    crypto_scalarmult_base(bpk, b);
    CHECK(memcmp(bpk, want, 32) == 0);
    unhex(want, "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
    CHECK(crypto_scalarmult(s1, a, bpk) == 0);
    CHECK(crypto_scalarmult(s2, b, apk) == 0);
    CHECK(memcmp(s1, want, 32) == 0 && memcmp(s2, want, 32) == 0);
}

static void shamir(void) {
    enum { N = 9, T = 5 };
    uint8_t secret[32], got[32];
    for (int i = 0; i < 32; i++) secret[i] = (uint8_t)(0xA5 ^ (i * 37));
    memset(secret, 0xff, 8); /* all-ones chunks too */
    uint32_t xs[N];
    for (int i = 0; i < N; i++) xs[i] = (uint32_t)(3 * i + 1);
    fed_shamir_share sh[N], pick[N];
    CHECK_OK(fed_shamir_split(secret, T, xs, N, sh));
    /* every T-subset of the N shares, in a rotated order */
    int subsets = 0;
    for (unsigned mask = 0; mask < (1u << N); mask++) {
        if (__builtin_popcount(mask) != T) continue;
        int c = 0;
        for (int i = 0; i < N; i++)
            if (mask & (1u << i)) pick[c++] = sh[i];
        fed_shamir_share tmp = pick[0];
        memmove(pick, pick + 1, (T - 1) * sizeof *pick);
        pick[T - 1] = tmp;
        CHECK_OK(fed_shamir_combine(pick, T, T, got));
        CHECK(memcmp(got, secret, 32) == 0);
        subsets++;
    }
    CHECK_EQ_INT(subsets, 126);
    /* t - 1 shares: refused, and interpolating them as if t were t-1 gives garbage */
    CHECK(fed_shamir_combine(sh, T - 1, T, got) == FED_EINVAL);
    int rc = fed_shamir_combine(sh, T - 1, T - 1, got);
    CHECK(rc != 0 || memcmp(got, secret, 32) != 0);
    /* a corrupted share is detected (chunk outside 32 bits) or at least changes the secret */
    pick[0] = sh[0];
    for (int i = 1; i < T; i++) pick[i] = sh[i];
    pick[2].y[3] ^= 12345;
    rc = fed_shamir_combine(pick, T, T, got);
    CHECK(rc == FED_EFORMAT || memcmp(got, secret, 32) != 0);
    /* bad arguments */
    CHECK(fed_shamir_split(secret, 0, xs, N, sh) == FED_EINVAL);
    CHECK(fed_shamir_split(secret, N + 1, xs, N, sh) == FED_EINVAL);
    xs[3] = 0;
    CHECK(fed_shamir_split(secret, T, xs, N, sh) == FED_EINVAL);
    pick[1].x = pick[0].x;
    CHECK(fed_shamir_combine(pick, T, T, got) == FED_EFORMAT);
    /* t = 1 and t = n edge cases */
    for (int i = 0; i < N; i++) xs[i] = (uint32_t)(i + 1);
    CHECK_OK(fed_shamir_split(secret, 1, xs, N, sh));
    CHECK_OK(fed_shamir_combine(sh + 4, 1, 1, got));
    CHECK(memcmp(got, secret, 32) == 0);
    CHECK_OK(fed_shamir_split(secret, N, xs, N, sh));
    CHECK_OK(fed_shamir_combine(sh, N, N, got));
    CHECK(memcmp(got, secret, 32) == 0);
}

static void params(void) {
    int k, t;
    CHECK_OK(fed_secagg_harary_params(100, 0.05, 0.33, 0, &k, &t));
    CHECK_EQ_INT(k, 28);
    CHECK_EQ_INT(t, 6);
    /* t stays in (adversarial, surviving] neighbours and k grows with the threat */
    int k2, t2;
    CHECK_OK(fed_secagg_harary_params(100, 0.05, 0.33, 1, &k2, &t2));
    CHECK(k2 > k && t2 > t && t2 <= k2);
    CHECK_OK(fed_secagg_harary_params(1000, 0.05, 0.3, 0, &k, &t));
    CHECK(k % 2 == 0 && k < 200 && t >= 2 && t < k);
    /* infeasible threat models are refused */
    CHECK(fed_secagg_harary_params(100, 0.5, 0.5, 0, &k, &t) == FED_ERANGE);
    CHECK(fed_secagg_harary_params(100, 0.1, 0.45, 1, &k, &t) == FED_ERANGE);
    CHECK(fed_secagg_harary_params(0, 0.1, 0.1, 0, &k, &t) == FED_ERANGE);
    CHECK(fed_secagg_harary_params(10, -0.1, 0.1, 0, &k, &t) == FED_ERANGE);
    /* small rounds fall back to the full graph with a feasible threshold */
    fed_secagg_cfg cfg;
    CHECK_OK(fed_secagg_cfg_default(&cfg, 4));
    CHECK(fed_secagg_harary_params(4, 0.25, 0.25, 0, &k, &t) == FED_ERANGE);
    CHECK_OK(fed_secagg_cfg_plus(&cfg, 0.25, 0.25, 0));
    CHECK_OK(fed_secagg_cfg_check(&cfg));
    CHECK(cfg.degree == 0 && cfg.threshold == 2);
    CHECK_OK(fed_secagg_cfg_default(&cfg, 100));
    CHECK_OK(fed_secagg_cfg_plus(&cfg, 0.05, 0.33, 0));
    CHECK_EQ_INT(cfg.degree, 28);
    CHECK_EQ_INT(cfg.threshold, 6);
    CHECK_OK(fed_secagg_cfg_check(&cfg));
    cfg.degree = 27;
    CHECK(fed_secagg_cfg_check(&cfg) == FED_EINVAL);
    cfg.degree = 28;
    cfg.threshold = 30;
    CHECK(fed_secagg_cfg_check(&cfg) == FED_EINVAL);
}

int main(void) {
    CHECK(sodium_init() >= 0);
    chacha_block();
    x25519();
    shamir();
    params();
    TEST_PASS("test_secagg_kat");
}
