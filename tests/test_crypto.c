/* The libsodium wrappers: Ed25519 against RFC 8032's first test vector, SHA-256
 * against FIPS 180's "abc", tampering detected, hex round trip and refusal. */
#include <string.h>
#include "check.h"
#include "federate/crypto.h"
#include "federate/error.h"

int main(void) {
    /* RFC 8032 section 7.1, TEST 1: empty message */
    uint8_t seed[32], pk_expect[32], sig_expect[64], sk[64], pk[32], sig[64];
    CHECK_OK(fed_hex_decode(seed, 32, "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"));
    CHECK_OK(fed_hex_decode(pk_expect, 32, "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"));
    CHECK_OK(fed_hex_decode(sig_expect, 64,
                            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
                            "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"));
    memcpy(sk, seed, 32);
    memcpy(sk + 32, pk_expect, 32);
    CHECK_OK(fed_sign_sk_to_pk(pk, sk));
    CHECK(memcmp(pk, pk_expect, 32) == 0);
    CHECK_OK(fed_sign_detached(sig, "", 0, sk));
    CHECK(memcmp(sig, sig_expect, 64) == 0);
    CHECK_OK(fed_sign_verify(sig, "", 0, pk));
    sig[5] ^= 1;
    CHECK(fed_sign_verify(sig, "", 0, pk) == FED_EFORMAT);

    uint8_t kpk[32], ksk[64], s2[64];
    CHECK_OK(fed_sign_keypair(kpk, ksk));
    CHECK_OK(fed_sign_detached(s2, "round 3", 7, ksk));
    CHECK_OK(fed_sign_verify(s2, "round 3", 7, kpk));
    CHECK(fed_sign_verify(s2, "round 4", 7, kpk) != 0);

    uint8_t h[32], h_expect[32];
    CHECK_OK(fed_sha256(h, "abc", 3));
    CHECK_OK(fed_hex_decode(h_expect, 32, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
    CHECK(fed_crypto_memcmp(h, h_expect, 32) == 0);
    char hex[65];
    fed_hex_encode(hex, h, 32);
    CHECK(strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0);
    CHECK(fed_hex_decode(h, 32, "zz") == FED_EFORMAT);
    CHECK(fed_hex_decode(h, 1, "0g") == FED_EFORMAT);

    uint8_t r1[32] = {0}, r2[32] = {0};
    CHECK_OK(fed_crypto_random(r1, 32));
    CHECK_OK(fed_crypto_random(r2, 32));
    CHECK(memcmp(r1, r2, 32) != 0);
    double u = fed_crypto_uniform();
    CHECK(u >= 0 && u < 1);
    fed_crypto_wipe(r1, 32);
    for (int i = 0; i < 32; i++) CHECK(r1[i] == 0);
    TEST_PASS("crypto");
}
