/* Secure aggregation: the server learns the sum of the clients' vectors and nothing
 * else, even when clients drop out (Bonawitz et al., CCS 2017), optionally over a
 * sparse k-regular Harary graph of neighbours (SecAgg+, Bell et al., CCS 2020).
 * The protocol runs as four stages of byte messages between client and server
 * state machines (five with the active-adversary consistency check), so the same code works in process and over the network;
 * fed_secagg_sum / fed_secagg_mean drive a whole round in process. */
#ifndef FEDERATE_SECAGG_H
#define FEDERATE_SECAGG_H
#include <stddef.h>
#include <stdint.h>

/* ---- Shamir secret sharing of 32-byte secrets over GF(2^61 - 1) ---------- */
/* A secret is cut into 8 32-bit chunks, each shared with its own polynomial of
 * degree t-1; a share is the 8 evaluations at the holder's x (x != 0). */
#define FED_SHAMIR_CHUNKS 8
typedef struct fed_shamir_share {
    uint32_t x;
    uint64_t y[FED_SHAMIR_CHUNKS];
} fed_shamir_share;

/* Shares secret among m holders with distinct non-zero xs[i]; any t reconstruct. */
int fed_shamir_split(const uint8_t secret[32], int t, const uint32_t *xs, int m, fed_shamir_share *out);
/* Reconstructs from the first t of count shares (FED_EINVAL when count < t,
 * FED_EFORMAT when the shares are inconsistent with a 32-byte secret). */
int fed_shamir_combine(const fed_shamir_share *shares, int count, int t, uint8_t secret[32]);

/* ---- Configuration ------------------------------------------------------- */
typedef struct fed_secagg_cfg {
    int n;                  /* clients in the round; protocol ids are 0..n-1 */
    int degree;             /* neighbours per client: <= 0 or >= n-1 means the full graph
                               (classic SecAgg); otherwise an even k for a Harary graph */
    int threshold;          /* t: shares needed to rebuild a secret (a client holds a
                               share of its own secrets too, so 1 <= t <= degree + 1) */
    int ring_bits;          /* R = 2^ring_bits (1..64) when modulus is 0 */
    uint64_t modulus;       /* R >= 2 explicitly (rejection-sampled masks) when not 0 */
    uint64_t round;         /* bound into every derived key and ciphertext */
    uint8_t graph_seed[32]; /* server randomness that permutes ids around the Harary ring */
    int threads;            /* worker threads of the in-process driver and the server */
    /* Active-adversary variant (Bonawitz et al. 2017, Sec. 4.2 / Fig. 4 with the
     * ConsistencyCheck round); 0 (the default) leaves every message as without it.
     * Non-zero: each client signs its stage-0 keys (with the round and the context
     * below) with its long-term Ed25519 key (the server refuses an advertisement
     * whose signature does not verify, a client aborts on a key list carrying one),
     * and a fifth stage runs between the masked input and the unmasking: the server
     * sends every survivor the set U3 of clients whose masked inputs it kept, each
     * signs (round, context, U3), and the unmasking request carries the signatures
     * of the client's neighbours (and its own); a client reveals nothing unless at
     * least t of them are valid signatures on the U3 it signed, from members of U3,
     * and the request is consistent with U3. */
    int consistency;
    /* With consistency: sign_pks[u] is client u's Ed25519 public key (n entries, the
     * PKI every party trusts). Not copied: it must stay valid and unchanged until
     * every client and server made from this configuration is freed. Each client
     * also needs its secret key (fed_secagg_client_set_signing_key). Unused (may be
     * NULL) when consistency is 0. */
    const uint8_t (*sign_pks)[32];
    /* With consistency: the run's context, bound into both signed byte strings (the
     * advertisement's and the one on U3) next to the round, so that a signature
     * from one run does not verify in another that reuses its round number. Every
     * client and the server of a round must use the same 32 bytes (a client given
     * another context signs bytes nobody else checks: its advertisement is refused)
     * and they should differ between runs: fed_secagg_context derives them from
     * public values every party sees (over the network: the run id and the round's
     * graph_seed). fed_secagg_cfg_default sets zeros; unused without consistency. */
    uint8_t context[32];
} fed_secagg_cfg;

/* The context of fed_secagg_cfg.context for a run and round:
 * SHA-256("federate-secagg-context" || run as 8 bytes little-endian || graph_seed),
 * 23 + 8 + 32 bytes hashed. */
int fed_secagg_context(uint8_t out[32], uint64_t run, const uint8_t graph_seed[32]);

/* Full graph, t = floor(n/2) + 1, R = 2^32, one thread, random graph seed. */
int fed_secagg_cfg_default(fed_secagg_cfg *cfg, int n);
/* SecAgg+ degree k and threshold t for n clients of which a fraction adv may be
 * adversarial and a fraction drop may drop out, with statistical security 2^-40
 * and failure probability 2^-20 (the method of Google's production code,
 * fcp/secagg/server/graph_parameter_finder.cc). semi_malicious selects the
 * semi-malicious server threat model. FED_ERANGE when infeasible. */
int fed_secagg_harary_params(int n, double adv, double drop, int semi_malicious, int *degree, int *threshold);
/* Sets cfg->degree/threshold from fed_secagg_harary_params, or the full graph with
 * the matching threshold when the finder needs k >= n - 1. */
int fed_secagg_cfg_plus(fed_secagg_cfg *cfg, double adv, double drop, int semi_malicious);
int fed_secagg_cfg_check(const fed_secagg_cfg *cfg);

/* ---- Client state machine ------------------------------------------------ */
typedef struct fed_secagg_client fed_secagg_client;
int fed_secagg_client_new(fed_secagg_client **out, const fed_secagg_cfg *cfg, uint32_t id);
void fed_secagg_client_free(fed_secagg_client *c);
/* With cfg->consistency: the client's long-term Ed25519 secret key (libsodium's
 * 64-byte form; its public half must be cfg->sign_pks[id]), copied and wiped at
 * free. Call before advertise; without it advertise fails (FED_ESTATE).
 * FED_EINVAL when consistency is off or the key does not match sign_pks[id]. */
int fed_secagg_client_set_signing_key(fed_secagg_client *c, const uint8_t sk[64]);
/* Each step reads the server's message for this client and writes the client's
 * next message into *out (malloc'd, the caller frees). A step that fails leaves
 * no message: the client has dropped out (or refused, e.g. when asked to reveal
 * both shares of one peer). */
int fed_secagg_client_advertise(fed_secagg_client *c, uint8_t **out, size_t *out_len);
int fed_secagg_client_share_keys(fed_secagg_client *c, const uint8_t *in, size_t in_len, uint8_t **out,
                                 size_t *out_len);
/* x: L ring elements, each < R. */
int fed_secagg_client_masked_input(fed_secagg_client *c, const uint8_t *in, size_t in_len, const uint64_t *x,
                                   size_t L, uint8_t **out, size_t *out_len);
/* With cfg->consistency only, between masked_input and unmask: reads the server's
 * U3, checks it has at least t members (itself among them) and answers with its
 * signature on (round, context, U3). unmask then also checks the forwarded
 * signatures (see fed_secagg_cfg.consistency) and fails, revealing nothing, when
 * they fall short. */
int fed_secagg_client_consistency(fed_secagg_client *c, const uint8_t *in, size_t in_len, uint8_t **out,
                                  size_t *out_len);
int fed_secagg_client_unmask(fed_secagg_client *c, const uint8_t *in, size_t in_len, uint8_t **out,
                             size_t *out_len);

/* ---- Server state machine ------------------------------------------------ */
typedef struct fed_secagg_server fed_secagg_server;
int fed_secagg_server_new(fed_secagg_server **out, const fed_secagg_cfg *cfg, size_t L);
void fed_secagg_server_free(fed_secagg_server *s);
/* Stage now collecting client messages: 0 advertise, 1 share keys, 2 masked
 * input, 3 unmasking, 4 done, -1 failed. With cfg->consistency there is one more:
 * 3 consistency check (signatures on U3), 4 unmasking, 5 done (see
 * fed_secagg_stage_count / fed_secagg_stage_is_consistency). */
int fed_secagg_server_stage(const fed_secagg_server *s);
/* Stages of a round: 4, or 5 with cfg->consistency (the server's "done" index). */
int fed_secagg_stage_count(const fed_secagg_cfg *cfg);
/* 1 when stage index s is the consistency check under cfg (s == 3 with it on). */
int fed_secagg_stage_is_consistency(const fed_secagg_cfg *cfg, int s);
/* Takes client from's message for the current stage. A malformed, inconsistent,
 * duplicate or unexpected message is refused with an error code and the sender
 * is dropped from the round (at the unmasking stage: its answer is ignored); the round goes on. */
int fed_secagg_server_receive(fed_secagg_server *s, uint32_t from, const uint8_t *msg, size_t len);
/* Closes the current stage. FED_ESTATE (round failed, with a message) when fewer
 * than t clients remain or a secret cannot be rebuilt. Closing the unmasking
 * stage (the last) unmasks. */
int fed_secagg_server_finish_stage(fed_secagg_server *s);
/* The server's message to client `to` opening the current stage (after a
 * finish_stage); FED_ESTATE when that client is no longer in the round. */
int fed_secagg_server_message(fed_secagg_server *s, uint32_t to, uint8_t **out, size_t *out_len);
/* After the unmasking stage closed: the sum mod R of the included clients' inputs, and
 * included[u] = 1 for each client whose input is in it (n bytes, may be NULL). */
int fed_secagg_server_result(const fed_secagg_server *s, uint64_t *sum, uint8_t *included);
/* Clients refused so far for bad messages (offender[u] = 1, n bytes). */
int fed_secagg_server_offenders(const fed_secagg_server *s, uint8_t *offender);

/* ---- In-process rounds --------------------------------------------------- */
typedef struct fed_secagg_stats {
    double client_ms;          /* one client's compute over all stages (CPU time, mean) */
    double client_stage_ms[4];
    double server_ms;          /* server compute, all stages (wall time) */
    double server_stage_ms[4]; /* per stage: receiving + closing it */
    double server_cpu_ms;      /* server CPU time summed over its threads: wall time on an
                                  idle machine is about this / threads */
    double bytes_per_client;   /* up + down, mean over clients that finished */
    int survivors;             /* inputs in the sum */
    int finished;              /* clients that sent all their messages (four, or five) */
    double client_check_ms;    /* with cfg->consistency: the check stage (also in client_ms) */
    double server_check_ms;    /* and the server's (also in server_ms); 0 without it */
    double stage_bytes_up[4];  /* per stage, mean over clients that finished: what one sent */
    double stage_bytes_down[4]; /* and received (the server's message opening the stage) */
    double check_bytes_up;     /* with cfg->consistency: the check stage's (also in */
    double check_bytes_down;   /* bytes_per_client); 0 without it */
} fed_secagg_stats;

/* drop_at[u] in 0..4: client u stops before sending its stage drop_at[u] message
 * (0 advertise, 1 share keys, 2 masked input, 3 unmasking answer; 4 = never
 * drops), with or without the consistency check. FED_SECAGG_DROP_CHECK: it stops
 * after its masked input and before its consistency signature (without the
 * check: before its unmasking answer, as 3). Larger values: never drops.
 * Draws a schedule: client drops at stage s with probability
 * p[s] given that it reached s; stream (seed, round, FED_RNG_DROPOUT_CLIENT).
 * It never draws FED_SECAGG_DROP_CHECK. */
#define FED_SECAGG_DROP_CHECK 5
void fed_secagg_drop_schedule(int n, const double p[4], uint64_t seed, uint64_t round, uint8_t *drop_at);

/* Fills x (L ring elements < R) with client u's input. */
typedef int (*fed_secagg_input_fn)(void *ctx, int client, uint64_t *x, size_t L);
/* One round with cfg->n simulated clients (cfg->threads threads; the result does
 * not depend on it). With cfg->consistency the driver generates every client's
 * Ed25519 key pair itself (cfg->sign_pks is ignored) and runs the check stage.
 * drop_at may be NULL. sum_out: L elements; included: n bytes
 * or NULL; stats may be NULL. */
int fed_secagg_sim_run(const fed_secagg_cfg *cfg, size_t L, fed_secagg_input_fn input, void *ctx,
                       const uint8_t *drop_at, uint64_t *sum_out, uint8_t *included, fed_secagg_stats *stats);
/* Same, from an array of n input vectors. */
int fed_secagg_sum(const fed_secagg_cfg *cfg, const uint64_t *const *inputs, size_t L, const uint8_t *drop_at,
                   uint64_t *sum_out, uint8_t *included, fed_secagg_stats *stats);

/* The mask PRG's speed on the calling thread: expands 32 streams of 2^20 elements
 * of the ring 2^ring_bits (1..64) into one accumulator, in the server's chunks,
 * and sets *bytes_per_s to the keystream consumed per second of wall time
 * (ring_bits / 8 bytes an element up to 32 bits, 8 above). Benchmarks only. */
int fed_secagg_prg_rate(int ring_bits, double *bytes_per_s);

/* ---- Floats <-> ring ----------------------------------------------------- */
typedef struct fed_secagg_enc {
    double clip;       /* coordinates clipped to [-clip, clip] */
    int bits;          /* quantization levels 2^bits (1..52) */
    int ring_bits;     /* 0: bits + ceil(log2 n); else explicit and checked against overflow */
    double weight_max; /* weights lie in [0, weight_max] */
    uint64_t seed;     /* stochastic rounding stream (seed, round, client, FED_RNG_QUANT) */
    uint64_t round;
} fed_secagg_enc;

void fed_secagg_enc_default(fed_secagg_enc *e); /* clip 1, 16 bits, auto ring, weights <= 1 */
/* The ring size for n clients; FED_ERANGE when the sum of n inputs could overflow. */
int fed_secagg_enc_ring_bits(const fed_secagg_enc *e, int n, int *ring_bits);
/* out[0..d): quantized weight/weight_max * clip(x); out[d]: the quantized weight. */
int fed_secagg_encode(const fed_secagg_enc *e, int client, const float *x, size_t d, double weight, uint64_t *out);
/* Weighted mean from the sum of m encoded vectors (d + 1 elements). */
int fed_secagg_decode_mean(const fed_secagg_enc *e, int m, const uint64_t *sum, size_t d, float *mean,
                           double *weight_sum);
/* The round driver's call: k clients with float updates[i] (d floats) and
 * weights[i]; securely sums the encoded updates of the clients that survive
 * drop_at (NULL: none drop) and writes their weighted mean. cfg->n must be k;
 * its ring size is replaced by the encoding's. included: k bytes or NULL. */
int fed_secagg_mean(const fed_secagg_cfg *cfg, const fed_secagg_enc *enc, int k, const float *const *updates,
                    const double *weights, size_t d, const uint8_t *drop_at, float *mean, uint8_t *included,
                    fed_secagg_stats *stats);

/* ---- Distributed DP ------------------------------------------------------ */
struct fed_dp_noise;
/* Adds exact discrete Gaussian noise N_Z(0, sigma2_num / sigma2_den) (the privacy
 * module's fed_dp_discrete_gaussian, from the stream ns: seeded in simulation,
 * secure in deployment) to each of L quantized ring elements, mod 2^ring_bits,
 * before masking. Leave headroom in the ring for the noise and read the decoded
 * sum as signed. */
int fed_secagg_add_dgauss(struct fed_dp_noise *ns, uint64_t *x, size_t L, int ring_bits, uint64_t sigma2_num,
                          uint64_t sigma2_den);

/* The distributed discrete Gaussian mechanism (Kairouz, Liu, Steinke, ICML 2021) on
 * float updates. Each client clips its update to L2 norm clip, scales it so that clip
 * is 2^(bits-1) integer steps, rounds it with conditional stochastic rounding (their
 * Sec. 4: unbiased rounding redrawn until the rounded vector's norm is within l2_bound;
 * rounding toward zero if 1000 draws all miss, which never exceeds it either), adds
 * N_Z(0, sigma2_num / sigma2_den) to every coordinate and reduces mod 2^ring_bits; the
 * sum over the survivors, read as signed, is their noised sum, and the server divides
 * by their count. No randomized rotation: the ring is sized for the worst case. */
typedef struct fed_secagg_ddp {
    double clip;                    /* C: L2 clip of one update */
    int bits;                       /* C is 2^(bits-1) integer steps (2..52) */
    double scale;                   /* 2^(bits-1) / C: integer steps per unit */
    double beta;                    /* conditional rounding's beta, exp(-1/2) */
    size_t dim;                     /* d: coordinates of an update */
    double l2_bound2;               /* Delta_2^2: a rounded vector's squared norm never exceeds it
                                       (an integer), min((c + sqrt d)^2, c^2 + d/4 + sqrt(2 ln(1/beta))
                                       (c + sqrt(d)/2)) for c = 2^(bits-1) (Kairouz et al. Thm. 1) */
    uint64_t sigma2_num, sigma2_den;/* each client's noise variance (integer units); num 0: none */
    int min_survivors;              /* the variance is calibrated for this many shares: fewer
                                       survivors and the server does not release the sum */
    uint64_t seed, round;           /* rounding stream (seed, round, client, FED_RNG_QUANT) */
    int noise_source;               /* FED_DP_NOISE_*; seeded noise at (seed, round, client) */
    long records;                   /* record level (fed_secagg_ddp_init_records), 0: user level.
                                       The input is a sum of at most `records` records of L2 norm
                                       <= clip each: no clip of the whole input, one unconditional
                                       randomized rounding, and l2_bound2 is one record's
                                       sensitivity after rounding, (c + sqrt d)^2 */
} fed_secagg_ddp;

/* Fills p for updates of dim coordinates: total noise standard deviation on the sum of
 * min_survivors shares noise_multiplier * clip (in float units), split evenly among
 * them. FED_ERANGE (with the reason) when a share's variance is below 1/4 but not 0
 * (the paper's condition), or too large for the sampler (lower bits). */
int fed_secagg_ddp_init(fed_secagg_ddp *p, double clip, int bits, double noise_multiplier, size_t dim,
                        int min_survivors, int noise_source, uint64_t seed, uint64_t round);
/* Record level (record-level DP-SGD under secure aggregation): each client's input is
 * the sum of its sampled records' clipped contributions, each of L2 norm <= clip, and
 * at most max_records of them (a public bound: the largest client's data). Same noise
 * as fed_secagg_ddp_init, but the input is not clipped as a whole and is rounded
 * coordinate by coordinate with fresh coins, no norm condition. Adding or removing one
 * record moves the pre-rounding input by at most c = 2^(bits-1) steps; with the
 * rounding coins coupled (floor(v + U), U shared), every coordinate of the rounded
 * difference is within 1 of the unrounded one, so the rounded inputs differ by at most
 * c + sqrt(d), whatever the coins. Rényi divergence is jointly quasi-convex, so the
 * mixture over the coins is bounded by the worst coin: l2_bound2 = (c + sqrt d)^2. */
int fed_secagg_ddp_init_records(fed_secagg_ddp *p, double clip, int bits, double noise_multiplier, size_t dim,
                                int min_survivors, long max_records, int noise_source, uint64_t seed,
                                uint64_t round);
/* The ring for n participants: the signed sum n 2^(bits-1) + (noise, k standard
 * deviations with k so that any of the dim coordinates exceeds it with probability
 * below 2^-40; the discrete Gaussian is sigma^2-subgaussian, Canonne et al. 2020)
 * must stay below 2^(ring_bits-1) (record level: n max_records 2^(bits-1) + noise).
 * FED_ERANGE when that needs more than 64 bits. */
int fed_secagg_ddp_ring_bits(const fed_secagg_ddp *p, int n, int *ring_bits);
/* One client's share: out[0..d) ring elements. client names its rounding and noise
 * streams. Secrets (the rounded vector, the noise) wiped. */
int fed_secagg_ddp_encode(const fed_secagg_ddp *p, uint64_t client, const float *x, size_t d, int ring_bits,
                          uint64_t *out);
/* Un-noised rounding only (for tests): the integer vector a client would noise. */
int fed_secagg_ddp_round(const fed_secagg_ddp *p, uint64_t client, const float *x, size_t d, int64_t *out);
/* The noised mean of m shares from their sum mod 2^ring_bits. */
int fed_secagg_ddp_decode_mean(const fed_secagg_ddp *p, int m, const uint64_t *sum, size_t d, int ring_bits,
                               float *mean);
/* The round driver's call: k clients' updates, clients[i] naming client i's streams;
 * securely sums their shares (survivors of drop_at, NULL: none drop) and writes the
 * noised mean. FED_ESTATE, nothing written, when fewer than p->min_survivors survive
 * (the server would not unmask: too little noise). cfg->n must be k; its ring size is
 * replaced. included: k bytes or NULL. */
int fed_secagg_ddp_mean(const fed_secagg_cfg *cfg, const fed_secagg_ddp *p, int k, const float *const *updates,
                        const uint64_t *clients, size_t d, const uint8_t *drop_at, float *mean, uint8_t *included,
                        fed_secagg_stats *stats);

#endif
