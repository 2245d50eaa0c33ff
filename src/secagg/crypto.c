/* libsodium behind federate/crypto.h: the one place outside the secure
 * aggregation protocol that touches sodium.h, so every cryptographic call in
 * the project goes to a reviewed library and none is hand-written. */
#include <gnutls/crypto.h>
#include <sodium.h>
#include <string.h>
#include "federate/crypto.h"
#include "federate/error.h"

int fed_crypto_init(void) {
    /* sodium_init is thread-safe and returns 1 when already initialized */
    if (sodium_init() < 0) return fed_error(FED_EINTERNAL, "crypto: libsodium failed to initialize");
    return 0;
}

int fed_crypto_random(void *buf, size_t n) {
    int rc = fed_crypto_init();
    if (rc) return rc;
    randombytes_buf(buf, n);
    return 0;
}

int fed_crypto_random_fast(void *buf, size_t n) {
    unsigned char seed[randombytes_SEEDBYTES];
    int rc = fed_crypto_init();
    if (rc) return rc;
    randombytes_buf(seed, sizeof seed);
    randombytes_buf_deterministic(buf, n, seed);
    sodium_memzero(seed, sizeof seed);
    return 0;
}

double fed_crypto_uniform(void) {
    uint64_t v = 0;
    if (fed_crypto_random(&v, sizeof v)) return 0.0;
    return (double)(v >> 11) * (1.0 / 9007199254740992.0);
}

void fed_crypto_wipe(void *buf, size_t n) {
    if (buf && n) sodium_memzero(buf, n);
}

int fed_sign_keypair(uint8_t pk[FED_SIGN_PUBLICKEYBYTES], uint8_t sk[FED_SIGN_SECRETKEYBYTES]) {
    int rc = fed_crypto_init();
    if (rc) return rc;
    if (crypto_sign_keypair(pk, sk) != 0) return fed_error(FED_EINTERNAL, "crypto: key generation failed");
    return 0;
}

int fed_sign_sk_to_pk(uint8_t pk[FED_SIGN_PUBLICKEYBYTES], const uint8_t sk[FED_SIGN_SECRETKEYBYTES]) {
    int rc = fed_crypto_init();
    if (rc) return rc;
    if (crypto_sign_ed25519_sk_to_pk(pk, sk) != 0) return fed_error(FED_EFORMAT, "crypto: bad secret key");
    return 0;
}

int fed_sign_detached(uint8_t sig[FED_SIGN_BYTES], const void *msg, size_t len,
                      const uint8_t sk[FED_SIGN_SECRETKEYBYTES]) {
    int rc = fed_crypto_init();
    if (rc) return rc;
    if (crypto_sign_detached(sig, NULL, msg, len, sk) != 0) return fed_error(FED_EINTERNAL, "crypto: signing failed");
    return 0;
}

int fed_sign_verify(const uint8_t sig[FED_SIGN_BYTES], const void *msg, size_t len,
                    const uint8_t pk[FED_SIGN_PUBLICKEYBYTES]) {
    int rc = fed_crypto_init();
    if (rc) return rc;
    if (crypto_sign_verify_detached(sig, msg, len, pk) != 0)
        return fed_error(FED_EFORMAT, "crypto: signature does not verify");
    return 0;
}

int fed_sha256(uint8_t out[FED_SHA256_BYTES], const void *msg, size_t len) {
    int rc = fed_crypto_init();
    if (rc) return rc;
    /* GnuTLS (nettle) uses the CPU's SHA extensions: 5-7x libsodium's portable
     * SHA-256, which bounded the coordinator's cost per signed upload */
    if (gnutls_hash_fast(GNUTLS_DIG_SHA256, msg, len, out) != 0)
        return fed_error(FED_EINTERNAL, "crypto: SHA-256 failed");
    return 0;
}

int fed_sha256_init(fed_sha256_ctx *c) {
    c->h = NULL;
    gnutls_hash_hd_t h;
    if (gnutls_hash_init(&h, GNUTLS_DIG_SHA256) != 0) return fed_error(FED_EINTERNAL, "crypto: SHA-256 init failed");
    c->h = h;
    return 0;
}

int fed_sha256_update(fed_sha256_ctx *c, const void *msg, size_t len) {
    if (!c->h) return fed_error(FED_EINVAL, "crypto: SHA-256 context not initialized");
    if (len && gnutls_hash((gnutls_hash_hd_t)c->h, msg, len) != 0) return fed_error(FED_EINTERNAL, "crypto: SHA-256 failed");
    return 0;
}

int fed_sha256_final(fed_sha256_ctx *c, uint8_t out[FED_SHA256_BYTES]) {
    if (!c->h) return fed_error(FED_EINVAL, "crypto: SHA-256 context not initialized");
    gnutls_hash_deinit((gnutls_hash_hd_t)c->h, out);
    c->h = NULL;
    return 0;
}

void fed_sha256_abort(fed_sha256_ctx *c) {
    if (c && c->h) gnutls_hash_deinit((gnutls_hash_hd_t)c->h, NULL);
    if (c) c->h = NULL;
}

void fed_hex_encode(char *hex, const void *bin, size_t n) { sodium_bin2hex(hex, 2 * n + 1, bin, n); }

int fed_hex_decode(void *bin, size_t n, const char *hex) {
    size_t got = 0;
    const char *end = NULL;
    if (!hex || strlen(hex) != 2 * n || sodium_hex2bin(bin, n, hex, 2 * n, NULL, &got, &end) != 0 || got != n)
        return fed_error(FED_EFORMAT, "hex: expected %zu hex digits", 2 * n);
    return 0;
}

int fed_crypto_memcmp(const void *a, const void *b, size_t n) { return sodium_memcmp(a, b, n) == 0 ? 0 : 1; }
