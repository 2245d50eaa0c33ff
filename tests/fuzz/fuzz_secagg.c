/* libFuzzer entry point for the secure aggregation messages a coordinator takes
 * from clients (fed_secagg_server_receive, behind /v1/secagg/ROUND/STAGE in
 * src/net/secagg_relay.c). Each input runs one small round with real clients;
 * the first byte picks the setup, the stage and the client whose message for
 * that stage is replaced by the rest of the input:
 *   bits 0-1  stage (0 advertise, 1 share keys, 2 masked input, 3 unmasking;
 *             with the consistency check 3 is its signature on U3, see bit 7)
 *   bits 2-4  the client (mod n)
 *   bit 5     setup: 0 classic SecAgg, n = 4, t = 3, R = 2^20 (2^32 with the
 *             check), so masked inputs are packed with padding bits;
 *             1 SecAgg+, n = 5, degree 2, t = 2, R = 1000003
 *   bit 6     0: no consistency check (bit 7 ignored), vectors of 3;
 *             1: the same two setups with the consistency check
 *             (fed_secagg_cfg.consistency: signed advertisements and a fifth
 *             stage), vectors of 2
 *   bit 7     with the check: stage = (bits 0-1 | bit 7 << 2) mod 5, so 4 (the
 *             unmasking) is 0x80 and 0x81-0x83 repeat stages 0-2
 * The others send their own messages and the round runs to its end. Whenever
 * the round succeeds and the replaced message was refused, identical to the
 * real one, a consistency signature or an unmasking answer (the server checks
 * every rebuilt secret), or, with the check, an advertisement (accepted only
 * with its owner's signature on the same keys), the sum must be exactly the
 * included clients' inputs; a sender refused up to the masked input is not in
 * it. With the check, the clients' own unmasking answers (the fuzzed client's
 * real one included) are parsed: no client reveals both shares of one peer,
 * and over all the answers no peer has both its self-mask and its mask-key
 * shares revealed (the server's requests all follow the one U3 it had signed).
 *
 * libsodium's randomness is replaced by a stream restarted for every input, so
 * the clients' keys, and so their messages, are the same in every run: seeds
 * taken from a clean round stay valid. The Ed25519 keys of the check-on setups
 * are the first draws of that stream (fed_sign_keypair, client 0 first). Write
 * the seeds with
 *   FEDERATE_FUZZ_SEEDS=tests/fuzz/corpus/secagg build-fuzz/fuzz_secagg
 * Built and run by tests/fuzz/run.sh. */
#include <sodium.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "federate/crypto.h"
#include "federate/error.h"
#include "federate/secagg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* ---- deterministic randomness (splitmix64): keys stay the same run to run ---- */
static uint64_t rng_state;

static uint64_t next64(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static const char *det_name(void) { return "federate-fuzz"; }
static uint32_t det_random(void) { return (uint32_t)next64(); }
static void det_stir(void) {}
static uint32_t det_uniform(const uint32_t upper) {
    if (upper < 2) return 0;
    uint32_t min = (uint32_t)-upper % upper, r;
    do r = det_random();
    while (r < min);
    return r % upper;
}
static void det_buf(void *const buf, const size_t size) {
    uint8_t *p = buf;
    for (size_t i = 0; i < size; i += 8) {
        uint64_t v = next64();
        memcpy(p + i, &v, size - i < 8 ? size - i : 8);
    }
}
static int det_close(void) { return 0; }
static randombytes_implementation det = {det_name, det_random, det_stir, det_uniform, det_buf, det_close};

/* ---- one round ---- */
#define MAXL 3
#define MAXN 5
#define HDR 16                            /* every message's header (src/secagg/secagg_internal.h) */
#define SHARE_WIRE (4 + 8 * FED_SHAMIR_CHUNKS) /* owner id and a Shamir share */

typedef struct setup {
    int n, degree, threshold, ring_bits;
    uint64_t modulus;
    int consistency, L;
} setup;
/* index: selector bit 5 | bit 6 << 1; 0 and 1 are the setups of the first seeds */
static const setup setups[4] = {
    {4, 0, 3, 20, 0, 0, 3},
    {5, 2, 2, 0, 1000003, 0, 3},
    {4, 0, 3, 32, 0, 1, 2},
    {5, 2, 2, 0, 1000003, 1, 2},
};

static uint32_t get32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

/* A client's own unmasking answer: HDR, nb, nb self-mask shares, ns, ns mask-key
 * shares (each led by its owner). Marks the owners in b / s; traps on a malformed
 * answer (the client wrote it) or on a client revealing both shares of one peer. */
static void note_reveal(const setup *su, const uint8_t *m, size_t len, uint8_t *b, uint8_t *s) {
    if (len < HDR + 4) __builtin_trap();
    uint32_t nb = get32(m + HDR);
    if (nb > (uint32_t)su->n || len < HDR + 8 + (size_t)nb * SHARE_WIRE) __builtin_trap();
    uint32_t ns = get32(m + HDR + 4 + (size_t)nb * SHARE_WIRE);
    if (ns > (uint32_t)su->n || len != HDR + 8 + ((size_t)nb + ns) * SHARE_WIRE) __builtin_trap();
    uint8_t mine_b[MAXN] = {0};
    for (uint32_t i = 0; i < nb; i++) {
        uint32_t v = get32(m + HDR + 4 + (size_t)i * SHARE_WIRE);
        if (v >= (uint32_t)su->n) __builtin_trap();
        mine_b[v] = b[v] = 1;
    }
    for (uint32_t i = 0; i < ns; i++) {
        uint32_t v = get32(m + HDR + 8 + ((size_t)nb + i) * SHARE_WIRE);
        if (v >= (uint32_t)su->n || mine_b[v]) __builtin_trap(); /* both shares of v from one client */
        s[v] = 1;
    }
}

/* Runs a round in which client who's stage-`stage` message is msg (NULL: its
 * own). real/real_len, when not NULL, receive a copy of its own message. */
static void run_round(const setup *su, int stage, int who, const uint8_t *msg, size_t len, uint8_t **real,
                      size_t *real_len) {
    rng_state = 0x5eca9;
    const int L = su->L;
    /* with the check: the PKI, the first draws of the stream (none without it, so
     * the rounds of the first setups are as they were) */
    static uint8_t pk[MAXN][FED_SIGN_PUBLICKEYBYTES], sk[MAXN][FED_SIGN_SECRETKEYBYTES];
    if (su->consistency)
        for (int u = 0; u < su->n; u++)
            if (fed_sign_keypair(pk[u], sk[u])) __builtin_trap();
    fed_secagg_cfg cfg;
    if (fed_secagg_cfg_default(&cfg, su->n)) __builtin_trap();
    cfg.degree = su->degree;
    cfg.threshold = su->threshold;
    cfg.ring_bits = su->ring_bits;
    cfg.modulus = su->modulus;
    cfg.round = 7;
    cfg.threads = 1;
    cfg.consistency = su->consistency;
    cfg.sign_pks = su->consistency ? (const uint8_t (*)[32])pk : NULL;
    memset(cfg.graph_seed, 0x42, sizeof cfg.graph_seed);
    if (fed_secagg_cfg_check(&cfg)) __builtin_trap();
    const int stages = fed_secagg_stage_count(&cfg);
    if (stages != (su->consistency ? 5 : 4) || stage < 0 || stage >= stages) __builtin_trap();
    uint64_t R_mask = su->modulus ? 0 : (su->ring_bits == 64 ? ~0ull : (1ull << su->ring_bits) - 1);
    uint64_t x[MAXN][MAXL];
    for (int u = 0; u < su->n; u++)
        for (int i = 0; i < L; i++) {
            uint64_t v = 1000u * (uint64_t)u + 17u * (uint64_t)i + 3u;
            x[u][i] = su->modulus ? v % su->modulus : v & R_mask;
        }
    fed_secagg_server *srv;
    fed_secagg_client *cl[MAXN] = {0};
    int alive[MAXN];
    if (fed_secagg_server_new(&srv, &cfg, (size_t)L)) __builtin_trap();
    for (int u = 0; u < su->n; u++) {
        if (fed_secagg_client_new(&cl[u], &cfg, (uint32_t)u)) __builtin_trap();
        if (su->consistency && fed_secagg_client_set_signing_key(cl[u], sk[u])) __builtin_trap();
        alive[u] = 1;
    }
    uint8_t rev_b[MAXN] = {0}, rev_s[MAXN] = {0}; /* peers whose self-mask / mask-key shares were revealed */
    int rc = 0, fuzz_rc = 0, same = 0;
    for (int s = 0; s < stages && !rc; s++) {
        if (fed_secagg_server_stage(srv) != s) __builtin_trap();
        const int check = fed_secagg_stage_is_consistency(&cfg, s);
        if (check != (su->consistency && s == 3)) __builtin_trap();
        for (int u = 0; u < su->n; u++) {
            if (!alive[u]) continue;
            uint8_t *in = NULL, *out = NULL;
            size_t in_len = 0, out_len = 0;
            if (s > 0 && fed_secagg_server_message(srv, (uint32_t)u, &in, &in_len)) {
                alive[u] = 0;
                continue;
            }
            int crc;
            switch (s) {
            case 0: crc = fed_secagg_client_advertise(cl[u], &out, &out_len); break;
            case 1: crc = fed_secagg_client_share_keys(cl[u], in, in_len, &out, &out_len); break;
            case 2: crc = fed_secagg_client_masked_input(cl[u], in, in_len, x[u], (size_t)L, &out, &out_len); break;
            default:
                crc = check ? fed_secagg_client_consistency(cl[u], in, in_len, &out, &out_len)
                            : fed_secagg_client_unmask(cl[u], in, in_len, &out, &out_len);
                break;
            }
            free(in);
            if (crc) { /* a client refusing what the server sent (a peer's bad shares): it leaves */
                if (out) __builtin_trap(); /* a client that refuses says nothing */
                alive[u] = 0;
                continue;
            }
            if (su->consistency && s == stages - 1) note_reveal(su, out, out_len, rev_b, rev_s);
            int src;
            if (s == stage && u == who) {
                if (real) {
                    if (!(*real = malloc(out_len ? out_len : 1))) __builtin_trap();
                    memcpy(*real, out, out_len);
                    *real_len = out_len;
                }
                if (msg) {
                    same = len == out_len && memcmp(msg, out, len) == 0;
                    src = fuzz_rc = fed_secagg_server_receive(srv, (uint32_t)u, msg, len);
                    if (fuzz_rc && !fed_last_error()[0]) __builtin_trap();
                } else {
                    src = fed_secagg_server_receive(srv, (uint32_t)u, out, out_len);
                }
            } else {
                src = fed_secagg_server_receive(srv, (uint32_t)u, out, out_len);
            }
            free(out);
            if (src) alive[u] = 0;
        }
        rc = fed_secagg_server_finish_stage(srv);
    }
    if (rc && fed_secagg_server_stage(srv) != -1) __builtin_trap();
    if (!rc) {
        if (fed_secagg_server_stage(srv) != stages) __builtin_trap();
        uint64_t sum[MAXL];
        uint8_t inc[MAXN], off[MAXN];
        if (fed_secagg_server_result(srv, sum, inc) || fed_secagg_server_offenders(srv, off)) __builtin_trap();
        if (msg && fuzz_rc && stage < 3 && inc[who]) __builtin_trap(); /* a refused sender is out of the sum */
        /* with the check, no peer's self-mask and mask key both came out of the round */
        if (su->consistency)
            for (int v = 0; v < su->n; v++)
                if (rev_b[v] && rev_s[v]) __builtin_trap();
        if (!msg || fuzz_rc || same || stage >= 3 || (su->consistency && stage == 0))
            for (int i = 0; i < L; i++) {
                uint64_t want = 0;
                for (int u = 0; u < su->n; u++)
                    if (inc[u]) want = su->modulus ? (want + x[u][i]) % su->modulus : (want + x[u][i]) & R_mask;
                if (sum[i] != want) __builtin_trap();
            }
    }
    for (int u = 0; u < su->n; u++) fed_secagg_client_free(cl[u]);
    fed_secagg_server_free(srv);
}

/* The selector byte of (setup index, stage, client); see the top of the file. */
static uint8_t selector(int su, int stage, int who) {
    return (uint8_t)((stage & 3) | who << 2 | (su & 1) << 5 | (su >> 1) << 6 | (stage >> 2) << 7);
}

/* FEDERATE_FUZZ_SEEDS=DIR: writes each stage's real message, as an input for
 * this target, for client 1 of each setup, and exits. The first setups' files
 * (setup1_*) are byte for byte the first seeds; setup0_* were rewritten when
 * its ring became 2^20. */
static void write_seeds(const char *dir) {
    for (int su = 0; su < 4; su++)
        for (int stage = 0; stage < (setups[su].consistency ? 5 : 4); stage++) {
            uint8_t *m = NULL;
            size_t len = 0;
            run_round(&setups[su], stage, 1, NULL, 0, &m, &len);
            char path[4096];
            snprintf(path, sizeof path, "%s/setup%d_stage%d.bin", dir, su, stage);
            FILE *f = fopen(path, "wb");
            uint8_t b = selector(su, stage, 1);
            if (!f || fwrite(&b, 1, 1, f) != 1 || fwrite(m, 1, len, f) != len || fclose(f)) {
                fprintf(stderr, "fuzz_secagg: cannot write %s\n", path);
                exit(1);
            }
            free(m);
        }
    exit(0);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    /* before sodium_init, which the library calls first thing */
    if (randombytes_set_implementation(&det) || sodium_init() < 0) __builtin_trap();
    const char *dir = getenv("FEDERATE_FUZZ_SEEDS");
    if (dir) write_seeds(dir);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!size) return 0;
    int idx = (data[0] >> 5) & 3;
    const setup *su = &setups[idx];
    int stage = data[0] & 3, who = ((data[0] >> 2) & 7) % su->n;
    if (su->consistency) stage = (stage | (data[0] >> 7) << 2) % 5; /* bit 7 only counts with the check */
    run_round(su, stage, who, data + 1, size - 1, NULL, NULL);
    return 0;
}
