/* federate bench secagg: one in-process secure aggregation round (Bonawitz et al.
 * 2017, or SecAgg+ over a Harary graph; --consistency: the active-adversary
 * variant) on random vectors, timed per party.
 * federate secagg-params: the SecAgg+ degree and threshold for a threat model. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "args.h"
#include "common.h"
#include "federate/secagg.h"

/* The lead adds these to cli/common.h and the command tables in cli/federate.c / cli/cmd_bench.c. */
int cmd_bench_secagg(int argc, char **argv);
int cmd_secagg_params(int argc, char **argv);

static const char *const graphs[] = {"full", "harary", NULL};

typedef struct bench_in {
    uint64_t seed, mask, in_mask; /* mask: the ring's; in_mask: an input element's */
} bench_in;

static int bench_input(void *ctx, int client, uint64_t *x, size_t L) {
    const bench_in *b = ctx;
    fed_rng r;
    fed_rng_init(&r, b->seed, 0, (uint64_t)client, FED_RNG_USER);
    for (size_t i = 0; i < L; i++) x[i] = fed_rng_u64(&r) & b->in_mask;
    return 0;
}

int cmd_bench_secagg(int argc, char **argv) {
    int clients = 100, length = 100000, threads = 1, ring_bits = 0, bits = 16, drop_stage = 2, threshold = 0, consistency = 0;
    double dropout = 0, adv = 0.05;
    const char *graph = "full";
    uint64_t seed = 1;
    const arg_spec specs[] = {
        {"clients", ARG_INT, &clients, "clients in the round (default 100)", 2, 1 << 20, NULL},
        {"length", ARG_INT, &length, "ring elements per input (default 100000)", 1, 1 << 28, NULL},
        {"dropout", ARG_FLOAT, &dropout, "fraction of clients that drop out (default 0)", 0, 0.95, NULL},
        {"drop-stage", ARG_INT, &drop_stage, "stage they drop before: 2 = after sharing keys, before the masked "
                                            "input, so the server must rebuild their pair masks (default 2); "
                                            "3 = after the masked input (with --consistency: after its signature "
                                            "on U3); 5 = after the masked input, before that signature", 0, 5, NULL},
        {"consistency", ARG_FLAG, &consistency, "the active-adversary variant: signed key advertisements and the "
                                                "consistency check round before unmasking", NO_RANGE, NULL},
        {"graph", ARG_STRING, &graph, "full (SecAgg) or harary (SecAgg+) (default full)", NO_RANGE, graphs},
        {"threads", ARG_INT, &threads, "threads for the simulated clients and the server (default 1)", 1, 256, NULL},
        {"adversarial-fraction", ARG_FLOAT, &adv, "harary: adversarial fraction for the (k, t) choice (default 0.05)",
         0, 0.99, NULL},
        {"threshold", ARG_INT, &threshold, "full graph: Shamir threshold (default n/2 + 1, at most the survivors)", 0,
         1 << 20, NULL},
        {"bits", ARG_INT, &bits, "bits per input element, as the encoder's `bits` (default 16)", 1, 52, NULL},
        {"ring-bits", ARG_INT, &ring_bits, "ring Z_{2^b} (default: the smallest that holds the sum of N inputs, "
                                           "bits + ceil(log2 N), as in a run)", 1, 64, NULL},
        {"seed", ARG_U64, &seed, "input seed (default 1)", NO_RANGE, NULL},
        ARG_END,
    };
    int rc = args_parse("bench secagg", "[FLAGS]", specs, argc, argv, 3, NULL, 0, NULL);
    if (rc) return rc > 0 ? 0 : 2;
    if (drop_stage == 4) {
        fprintf(stderr, "federate bench secagg: --drop-stage 4 is not a stage (0..3, or 5 for the consistency check)\n");
        return 2;
    }
    if (!ring_bits) {
        fed_secagg_enc enc;
        fed_secagg_enc_default(&enc);
        enc.bits = bits;
        if ((rc = fed_secagg_enc_ring_bits(&enc, clients, &ring_bits)))
            return cli_fail("bench secagg", "ring", rc);
    }
    fed_secagg_cfg cfg;
    if ((rc = fed_secagg_cfg_default(&cfg, clients))) return cli_fail("bench secagg", "configuration", rc);
    cfg.ring_bits = ring_bits;
    cfg.threads = threads;
    int ndrop = (int)floor(dropout * clients + 0.5);
    if (strcmp(graph, "harary") == 0) {
        if ((rc = fed_secagg_cfg_plus(&cfg, adv, dropout, 0)))
            return cli_fail("bench secagg", "no SecAgg+ parameters for this threat model", rc);
    } else {
        int t = threshold ? threshold : clients / 2 + 1;
        if (!threshold && t > clients - ndrop) t = clients - ndrop;
        cfg.threshold = t < 1 ? 1 : t;
    }
    if ((rc = fed_secagg_cfg_check(&cfg))) return cli_fail("bench secagg", "configuration", rc);
    cfg.consistency = consistency; /* the driver makes the clients' signing keys */
    /* exactly ndrop clients drop, chosen by a seeded shuffle */
    uint8_t *drop = malloc((size_t)clients), *inc = malloc((size_t)clients);
    uint32_t *perm = malloc((size_t)clients * sizeof *perm);
    uint64_t *sum = malloc((size_t)length * sizeof *sum), *x = malloc((size_t)length * sizeof *x);
    uint64_t *plain = calloc((size_t)length, sizeof *plain);
    int status = 1;
    if (!drop || !inc || !perm || !sum || !x || !plain) {
        fprintf(stderr, "federate bench secagg: out of memory\n");
        goto out;
    }
    fed_rng r;
    fed_rng_init(&r, seed, 0, 0, FED_RNG_DROPOUT_CLIENT);
    for (int i = 0; i < clients; i++) perm[i] = (uint32_t)i;
    fed_rng_shuffle(&r, perm, (size_t)clients);
    for (int i = 0; i < clients; i++) drop[perm[i]] = i < ndrop ? (uint8_t)drop_stage : 4;
    int in_bits = bits < ring_bits ? bits : ring_bits; /* inputs of `bits` bits, each below the ring */
    bench_in bi = {seed, ring_bits == 64 ? ~0ULL : (1ULL << ring_bits) - 1, (1ULL << in_bits) - 1};
    fed_secagg_stats st;
    rc = fed_secagg_sim_run(&cfg, (size_t)length, bench_input, &bi, drop, sum, inc, &st);
    if (rc) {
        cli_fail("bench secagg", "round failed", rc);
        goto out;
    }
    for (int u = 0; u < clients; u++) {
        if (!inc[u]) continue;
        bench_input(&bi, u, x, (size_t)length);
        for (int i = 0; i < length; i++) plain[i] += x[i];
    }
    int exact = 1;
    for (int i = 0; i < length; i++) exact &= (plain[i] & bi.mask) == sum[i];
    printf("client_ms: %.1f\n", st.client_ms);
    printf("server_ms: %.1f\n", st.server_ms);
    printf("bytes_per_client: %.0f\n", st.bytes_per_client);
    printf("exact: %s\n", exact ? "yes" : "no");
    printf("ring_bits: %d\n", ring_bits);
    double prg = 0;
    if (fed_secagg_prg_rate(ring_bits, &prg) == 0) printf("prg_gb_per_s: %.2f\n", prg / 1e9);
    printf("graph: %s\ndegree: %d\nthreshold: %d\n", graph, cfg.degree > 0 ? cfg.degree : clients - 1, cfg.threshold);
    printf("survivors: %d\n", st.survivors);
    printf("server_cpu_ms: %.1f\n", st.server_cpu_ms);
    for (int s = 0; s < 4; s++) printf("client_stage%d_ms: %.1f\n", s, st.client_stage_ms[s]);
    for (int s = 0; s < 4; s++) printf("server_stage%d_ms: %.1f\n", s, st.server_stage_ms[s]);
    for (int s = 0; s < 4; s++) printf("client_stage%d_bytes_up: %.0f\n", s, st.stage_bytes_up[s]);
    for (int s = 0; s < 4; s++) printf("client_stage%d_bytes_down: %.0f\n", s, st.stage_bytes_down[s]);
    if (consistency) {
        printf("consistency: yes\n");
        printf("client_check_ms: %.1f\n", st.client_check_ms);
        printf("server_check_ms: %.1f\n", st.server_check_ms);
        printf("client_check_bytes_up: %.0f\n", st.check_bytes_up);
        printf("client_check_bytes_down: %.0f\n", st.check_bytes_down);
    }
    status = exact ? 0 : 1;
out:
    free(drop);
    free(inc);
    free(perm);
    free(sum);
    free(x);
    free(plain);
    return status;
}

int cmd_secagg_params(int argc, char **argv) {
    int clients = 0, semi_malicious = 0;
    double adv = -1, drop = -1;
    const arg_spec specs[] = {
        {"clients", ARG_INT, &clients, "clients in the round (required)", 1, 1000000, NULL},
        {"adversarial-fraction", ARG_FLOAT, &adv, "fraction of clients that may collude with the server (required)", 0,
         0.999999, NULL},
        {"dropout-fraction", ARG_FLOAT, &drop, "fraction of clients that may drop out (required)", 0, 0.999999, NULL},
        {"semi-malicious", ARG_FLAG, &semi_malicious, "semi-malicious server instead of semi-honest", NO_RANGE, NULL},
        ARG_END,
    };
    int rc = args_parse("secagg-params", "--clients N --adversarial-fraction A --dropout-fraction D [--semi-malicious]",
                        specs, argc, argv, 2, NULL, 0, NULL);
    if (rc) return rc > 0 ? 0 : 2;
    if (clients < 1) {
        fprintf(stderr, "federate secagg-params: --clients is required\n");
        return 2;
    }
    if (adv < 0) {
        fprintf(stderr, "federate secagg-params: --adversarial-fraction is required\n");
        return 2;
    }
    if (drop < 0) {
        fprintf(stderr, "federate secagg-params: --dropout-fraction is required\n");
        return 2;
    }
    int k, t;
    if ((rc = fed_secagg_harary_params(clients, adv, drop, semi_malicious, &k, &t)))
        return cli_fail("secagg-params", "no parameters", rc);
    printf("degree: %d\nthreshold: %d\n", k, t);
    return 0;
}
