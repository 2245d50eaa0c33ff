/* The cryptographic primitives other modules may use, all from libsodium: a
 * CSPRNG (deployed DP noise, keys), Ed25519 signatures (client authentication),
 * SHA-256 (what a signature covers), hex encoding, and wiping secrets. Only
 * src/secagg/ includes sodium.h; everything else goes through this header. */
#ifndef FEDERATE_CRYPTO_H
#define FEDERATE_CRYPTO_H
#include <stddef.h>
#include <stdint.h>

#define FED_SIGN_PUBLICKEYBYTES 32
#define FED_SIGN_SECRETKEYBYTES 64
#define FED_SIGN_BYTES 64
#define FED_SHA256_BYTES 32

/* Initializes libsodium; safe to call many times and from many threads.
 * Every function below calls it, so callers need not. */
int fed_crypto_init(void);

/* n bytes from the operating system's CSPRNG. */
int fed_crypto_random(void *buf, size_t n);
/* n bytes of ChaCha20 keystream under a fresh 32-byte key from the OS CSPRNG
 * (then wiped): as unpredictable as fed_crypto_random and about 10x faster for
 * large n (the kernel hands out 256 bytes a call). For DP noise. */
int fed_crypto_random_fast(void *buf, size_t n);
/* Uniform double in [0, 1) with 53 random bits, from the CSPRNG. */
double fed_crypto_uniform(void);

/* Overwrites n bytes with zeros in a way the compiler cannot elide. */
void fed_crypto_wipe(void *buf, size_t n);

/* Ed25519. */
int fed_sign_keypair(uint8_t pk[FED_SIGN_PUBLICKEYBYTES], uint8_t sk[FED_SIGN_SECRETKEYBYTES]);
/* Public key of a secret key (the last 32 bytes of an Ed25519 secret key). */
int fed_sign_sk_to_pk(uint8_t pk[FED_SIGN_PUBLICKEYBYTES], const uint8_t sk[FED_SIGN_SECRETKEYBYTES]);
int fed_sign_detached(uint8_t sig[FED_SIGN_BYTES], const void *msg, size_t len,
                      const uint8_t sk[FED_SIGN_SECRETKEYBYTES]);
/* 0 if sig is a valid signature of msg by pk, FED_EFORMAT otherwise. */
int fed_sign_verify(const uint8_t sig[FED_SIGN_BYTES], const void *msg, size_t len,
                    const uint8_t pk[FED_SIGN_PUBLICKEYBYTES]);

int fed_sha256(uint8_t out[FED_SHA256_BYTES], const void *msg, size_t len);
/* SHA-256 over data that arrives in pieces (an upload hashed while it is
 * received): init, update any number of times, then final (which also releases
 * the context) or abort. A context is used by one thread at a time. */
typedef struct fed_sha256_ctx {
    void *h;
} fed_sha256_ctx;
int fed_sha256_init(fed_sha256_ctx *c);
int fed_sha256_update(fed_sha256_ctx *c, const void *msg, size_t len);
int fed_sha256_final(fed_sha256_ctx *c, uint8_t out[FED_SHA256_BYTES]);
void fed_sha256_abort(fed_sha256_ctx *c);

/* Lower-case hex of n bytes into hex (2n + 1 bytes, NUL-terminated). */
void fed_hex_encode(char *hex, const void *bin, size_t n);
/* Decodes exactly n bytes from a hex string of length 2n; FED_EFORMAT otherwise. */
int fed_hex_decode(void *bin, size_t n, const char *hex);

/* Constant-time comparison: 0 when equal. */
int fed_crypto_memcmp(const void *a, const void *b, size_t n);

#endif
