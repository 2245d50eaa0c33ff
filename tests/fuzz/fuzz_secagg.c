/* libFuzzer entry point for the secure aggregation messages a coordinator takes
 * from clients (fed_secagg_server_receive, behind /v1/secagg/ROUND/STAGE in
 * src/net/secagg_relay.c). Each input runs one small round with real clients;
 * the first byte picks the setup, the stage and the client whose message for
 * that stage is replaced by the rest of the input:
 *   bits 0-1  stage (0 advertise, 1 share keys, 2 masked input, 3 unmasking)
 *   bits 2-4  the client (mod n)
 *   bit 5     setup: 0 classic SecAgg, n = 4, t = 3, R = 2^32;
 *             1 SecAgg+, n = 5, degree 2, t = 2, R = 1000003
 * The others send their own messages and the round runs to its end. Whenever
 * the round succeeds and the replaced message was refused, identical to the
 * real one, or an unmasking answer (the server checks every rebuilt secret),
 * the sum must be exactly the included clients' inputs.
 *
 * libsodium's randomness is replaced by a stream restarted for every input, so
 * the clients' keys, and so their messages, are the same in every run: seeds
 * taken from a clean round stay valid. Write them with
 *   FEDERATE_FUZZ_SEEDS=tests/fuzz/corpus/secagg build-fuzz/fuzz_secagg
 * Built and run by tests/fuzz/run.sh. */
#include <sodium.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
#define L 3
#define MAXN 5

typedef struct setup {
    int n, degree, threshold, ring_bits;
    uint64_t modulus;
} setup;
static const setup setups[2] = {{4, 0, 3, 32, 0}, {5, 2, 2, 0, 1000003}};

/* Runs a round in which client who's stage-`stage` message is msg (NULL: its
 * own). real/real_len, when not NULL, receive a copy of its own message. */
static void run_round(const setup *su, int stage, int who, const uint8_t *msg, size_t len, uint8_t **real,
                      size_t *real_len) {
    rng_state = 0x5eca9;
    fed_secagg_cfg cfg;
    if (fed_secagg_cfg_default(&cfg, su->n)) __builtin_trap();
    cfg.degree = su->degree;
    cfg.threshold = su->threshold;
    cfg.ring_bits = su->ring_bits;
    cfg.modulus = su->modulus;
    cfg.round = 7;
    cfg.threads = 1;
    memset(cfg.graph_seed, 0x42, sizeof cfg.graph_seed);
    if (fed_secagg_cfg_check(&cfg)) __builtin_trap();
    uint64_t R_mask = su->modulus ? 0 : (su->ring_bits == 64 ? ~0ull : (1ull << su->ring_bits) - 1);
    uint64_t x[MAXN][L];
    for (int u = 0; u < su->n; u++)
        for (int i = 0; i < L; i++) {
            uint64_t v = 1000u * (uint64_t)u + 17u * (uint64_t)i + 3u;
            x[u][i] = su->modulus ? v % su->modulus : v & R_mask;
        }
    fed_secagg_server *srv;
    fed_secagg_client *cl[MAXN] = {0};
    int alive[MAXN];
    if (fed_secagg_server_new(&srv, &cfg, L)) __builtin_trap();
    for (int u = 0; u < su->n; u++) {
        if (fed_secagg_client_new(&cl[u], &cfg, (uint32_t)u)) __builtin_trap();
        alive[u] = 1;
    }
    int rc = 0, fuzz_rc = 0, same = 0;
    for (int s = 0; s < 4 && !rc; s++) {
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
            case 2: crc = fed_secagg_client_masked_input(cl[u], in, in_len, x[u], L, &out, &out_len); break;
            default: crc = fed_secagg_client_unmask(cl[u], in, in_len, &out, &out_len); break;
            }
            free(in);
            if (crc) { /* a client refusing what the server sent (a peer's bad shares): it leaves */
                alive[u] = 0;
                continue;
            }
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
    if (!rc) {
        uint64_t sum[L];
        uint8_t inc[MAXN], off[MAXN];
        if (fed_secagg_server_result(srv, sum, inc) || fed_secagg_server_offenders(srv, off)) __builtin_trap();
        if (msg && fuzz_rc && stage < 3 && inc[who]) __builtin_trap(); /* a refused sender is out of the sum */
        if (!msg || fuzz_rc || same || stage == 3)
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

/* FEDERATE_FUZZ_SEEDS=DIR: writes each stage's real message, as an input for
 * this target, for client 1 of each setup, and exits. */
static void write_seeds(const char *dir) {
    for (int su = 0; su < 2; su++)
        for (int stage = 0; stage < 4; stage++) {
            uint8_t *m = NULL;
            size_t len = 0;
            run_round(&setups[su], stage, 1, NULL, 0, &m, &len);
            char path[4096];
            snprintf(path, sizeof path, "%s/setup%d_stage%d.bin", dir, su, stage);
            FILE *f = fopen(path, "wb");
            uint8_t b = (uint8_t)(stage | 1 << 2 | su << 5);
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
    const setup *su = &setups[(data[0] >> 5) & 1];
    int stage = data[0] & 3, who = ((data[0] >> 2) & 7) % su->n;
    run_round(su, stage, who, data + 1, size - 1, NULL, NULL);
    return 0;
}
