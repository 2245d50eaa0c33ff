/* In-process secure aggregation rounds: n client state machines and one server
 * exchange the real byte messages, clients computing side by side on a thread
 * pool, the server taking messages in id order (so the result does not depend
 * on the thread count). Drop-outs follow a per-client stage schedule. */
#include <stdlib.h>
#include <sodium.h>
#include "federate/crypto.h"
#include "federate/error.h"
#include "federate/pool.h"
#include "federate/rng.h"
#include "secagg_internal.h"

void fed_secagg_drop_schedule(int n, const double p[4], uint64_t seed, uint64_t round, uint8_t *drop_at) {
    fed_rng r;
    fed_rng_init(&r, seed, round, 0, FED_RNG_DROPOUT_CLIENT);
    for (int u = 0; u < n; u++) {
        drop_at[u] = 4;
        for (int s = 0; s < 4; s++) {
            double x = fed_rng_uniform(&r);
            if (drop_at[u] == 4 && p && x < p[s]) drop_at[u] = (uint8_t)s;
        }
    }
}

typedef struct simc {
    fed_secagg_client *c;
    uint8_t *in, *out;
    size_t in_len, out_len;
    int alive;
    double ms[5]; /* per stage kind: 0..3 as in the stats, 4 the consistency check */
    double up[5], down[5]; /* bytes sent and received, per stage kind */
} simc;

typedef struct sim {
    const fed_secagg_cfg *cfg;
    size_t L;
    fed_secagg_input_fn input;
    void *ctx;
    const uint8_t *drop_at;
    simc *cl;
    const int *batch;
    int stage;       /* stage index (as the server's) */
    int kind;        /* 0 advertise, 1 share keys, 2 masked input, 3 unmask, 4 consistency check */
    const uint8_t (*sign_sk)[64]; /* consistency: each client's signing key */
    uint64_t **xbuf; /* one input buffer per worker */
    int *rc;
} sim;

static void client_task(void *p, size_t task, int worker) {
    sim *S = p;
    int u = S->batch[task];
    simc *c = &S->cl[u];
    double t0 = sa_cpu_ms();
    int rc = 0;
    switch (S->kind) {
    case 0:
        rc = fed_secagg_client_new(&c->c, S->cfg, (uint32_t)u);
        if (!rc && S->sign_sk) rc = fed_secagg_client_set_signing_key(c->c, S->sign_sk[u]);
        if (!rc) rc = fed_secagg_client_advertise(c->c, &c->out, &c->out_len);
        break;
    case 1: rc = fed_secagg_client_share_keys(c->c, c->in, c->in_len, &c->out, &c->out_len); break;
    case 2: {
        double ti = sa_cpu_ms();
        int irc = S->input(S->ctx, u, S->xbuf[worker], S->L);
        t0 += sa_cpu_ms() - ti; /* producing the input is not the protocol's cost */
        if (irc) {
            S->rc[task] = irc;
            rc = irc;
            break;
        }
        rc = fed_secagg_client_masked_input(c->c, c->in, c->in_len, S->xbuf[worker], S->L, &c->out, &c->out_len);
        break;
    }
    case 4: rc = fed_secagg_client_consistency(c->c, c->in, c->in_len, &c->out, &c->out_len); break;
    default: rc = fed_secagg_client_unmask(c->c, c->in, c->in_len, &c->out, &c->out_len); break;
    }
    c->ms[S->kind] += sa_cpu_ms() - t0;
    if (rc) c->alive = 0; /* the client gave up (refused or could not go on): a drop-out */
}

static void wipe_keys(uint8_t (*sk)[64], int n) {
    if (sk) sodium_memzero(sk, (size_t)n * 64);
    free(sk);
}

/* The stage index before whose message a client with drop_at value v stops
 * (nst: never). */
static int drop_stage(int v, int consistency, int nst) {
    if (v == FED_SECAGG_DROP_CHECK) return 3;
    if (v <= 2) return v;
    if (v == 3) return consistency ? 4 : 3;
    return nst;
}

int fed_secagg_sim_run(const fed_secagg_cfg *cfg_in, size_t L, fed_secagg_input_fn input, void *ctx,
                       const uint8_t *drop_at, uint64_t *sum_out, uint8_t *included, fed_secagg_stats *stats) {
    if (!cfg_in) return fed_error(FED_EINVAL, "secagg sim: no configuration");
    fed_secagg_cfg cfgv = *cfg_in;
    const fed_secagg_cfg *cfg = &cfgv;
    uint8_t (*sign_pk)[32] = NULL, (*sign_sk)[64] = NULL;
    if (cfgv.consistency) {
        /* the driver plays the PKI: a fresh Ed25519 key pair per client */
        if (cfgv.n < 1 || cfgv.n > (1 << 24)) return fed_secagg_cfg_check(cfg_in);
        sign_pk = malloc((size_t)cfgv.n * 32);
        sign_sk = malloc((size_t)cfgv.n * 64);
        if (!sign_pk || !sign_sk) {
            free(sign_pk);
            free(sign_sk);
            return fed_error(FED_ENOMEM, "secagg sim: %d signing keys", cfgv.n);
        }
        for (int u = 0; u < cfgv.n; u++) {
            int krc = fed_sign_keypair(sign_pk[u], sign_sk[u]);
            if (krc) {
                free(sign_pk);
                wipe_keys(sign_sk, cfgv.n);
                return krc;
            }
        }
        cfgv.sign_pks = (const uint8_t (*)[32])sign_pk;
    }
    int rc = fed_secagg_cfg_check(cfg);
    if (rc) {
        free(sign_pk);
        wipe_keys(sign_sk, cfgv.n);
        return rc;
    }
    if (!input || (!sum_out && L)) {
        free(sign_pk);
        wipe_keys(sign_sk, cfgv.n);
        return fed_error(FED_EINVAL, "secagg sim: no input function or output");
    }
    int n = cfg->n, threads = cfg->threads < 1 ? 1 : cfg->threads;
    if (stats) memset(stats, 0, sizeof *stats);
    fed_secagg_server *srv = NULL;
    fed_pool *pool = NULL;
    simc *cl = calloc((size_t)n, sizeof *cl);
    int *batch = malloc((size_t)n * sizeof *batch), *rcs = calloc((size_t)n, sizeof *rcs);
    uint64_t **xbuf = calloc((size_t)threads, sizeof *xbuf);
    double server_ms[5] = {0}, server_cpu = 0, c0 = 0; /* per stage kind, as simc.ms */
    int nst = fed_secagg_stage_count(cfg);
    if (!cl || !batch || !rcs || !xbuf) {
        rc = fed_error(FED_ENOMEM, "secagg sim: %d clients", n);
        goto out;
    }
    for (int w = 0; w < threads; w++)
        if (!(xbuf[w] = malloc((L ? L : 1) * sizeof **xbuf))) {
            rc = fed_error(FED_ENOMEM, "secagg sim: input buffers");
            goto out;
        }
    if ((rc = fed_pool_new(&pool, threads))) goto out;
    double t0 = sa_wall_ms();
    c0 = sa_proc_cpu_ms();
    rc = fed_secagg_server_new(&srv, cfg, L);
    server_ms[0] += sa_wall_ms() - t0;
    server_cpu += sa_proc_cpu_ms() - c0;
    if (rc) goto out;
    for (int u = 0; u < n; u++) cl[u].alive = 1;
    sim S = {cfg, L, input, ctx, drop_at, cl, batch, 0, 0, (const uint8_t (*)[64])sign_sk, xbuf, rcs};
    /* stage-2 messages are large: a batch at a time keeps memory near the server's own */
    int B = 8 * threads;
    for (int stage = 0; stage < nst && !rc; stage++) {
        S.stage = stage;
        int kind = fed_secagg_stage_is_consistency(cfg, stage) ? 4 : stage == nst - 1 ? 3 : stage;
        S.kind = kind;
        for (int lo = 0; lo < n && !rc; lo += B) {
            int hi = lo + B < n ? lo + B : n, m = 0;
            t0 = sa_wall_ms();
            c0 = sa_proc_cpu_ms();
            for (int u = lo; u < hi; u++) {
                if (!cl[u].alive) continue;
                if (drop_at && drop_stage(drop_at[u], cfg->consistency, nst) <= stage) {
                    cl[u].alive = 0;
                    continue;
                }
                if (stage > 0 && fed_secagg_server_message(srv, (uint32_t)u, &cl[u].in, &cl[u].in_len)) {
                    cl[u].alive = 0; /* the server has dropped it */
                    continue;
                }
                cl[u].down[kind] += (double)cl[u].in_len;
                batch[m++] = u;
            }
            server_ms[kind] += sa_wall_ms() - t0;
            server_cpu += sa_proc_cpu_ms() - c0;
            memset(rcs, 0, (size_t)m * sizeof *rcs);
            fed_pool_run(pool, (size_t)m, client_task, &S);
            for (int i = 0; i < m && !rc; i++)
                if (rcs[i]) rc = fed_error(rcs[i], "secagg sim: input function failed for client %d", batch[i]);
            t0 = sa_wall_ms();
            c0 = sa_proc_cpu_ms();
            for (int i = 0; i < m; i++) {
                simc *c = &cl[batch[i]];
                if (c->alive && c->out && !rc) {
                    c->up[kind] += (double)c->out_len;
                    if (fed_secagg_server_receive(srv, (uint32_t)batch[i], c->out, c->out_len)) c->alive = 0;
                }
                free(c->in);
                free(c->out);
                c->in = c->out = NULL;
            }
            server_ms[kind] += sa_wall_ms() - t0;
            server_cpu += sa_proc_cpu_ms() - c0;
        }
        if (rc) break;
        t0 = sa_wall_ms();
        c0 = sa_proc_cpu_ms();
        rc = fed_secagg_server_finish_stage(srv);
        server_ms[kind] += sa_wall_ms() - t0;
        server_cpu += sa_proc_cpu_ms() - c0;
    }
    if (rc) goto out;
    if ((rc = fed_secagg_server_result(srv, sum_out, included))) goto out;
    if (stats) {
        uint8_t *inc = calloc((size_t)n, 1);
        if (inc) {
            fed_secagg_server_result(srv, sum_out, inc);
            for (int u = 0; u < n; u++) stats->survivors += inc[u];
            free(inc);
        }
        int fin = 0;
        for (int u = 0; u < n; u++) {
            if (!cl[u].alive) continue;
            fin++;
            for (int s = 0; s < 4; s++) stats->client_stage_ms[s] += cl[u].ms[s];
            stats->client_check_ms += cl[u].ms[4];
            for (int s = 0; s < 5; s++) stats->client_ms += cl[u].ms[s];
            for (int s = 0; s < 5; s++) stats->bytes_per_client += cl[u].up[s] + cl[u].down[s];
            for (int s = 0; s < 4; s++) {
                stats->stage_bytes_up[s] += cl[u].up[s];
                stats->stage_bytes_down[s] += cl[u].down[s];
            }
            stats->check_bytes_up += cl[u].up[4];
            stats->check_bytes_down += cl[u].down[4];
        }
        stats->finished = fin;
        if (fin) {
            for (int s = 0; s < 4; s++) stats->client_stage_ms[s] /= fin;
            stats->client_check_ms /= fin;
            stats->client_ms /= fin;
            stats->bytes_per_client /= fin;
            for (int s = 0; s < 4; s++) {
                stats->stage_bytes_up[s] /= fin;
                stats->stage_bytes_down[s] /= fin;
            }
            stats->check_bytes_up /= fin;
            stats->check_bytes_down /= fin;
        }
        for (int s = 0; s < 4; s++) stats->server_stage_ms[s] = server_ms[s];
        stats->server_check_ms = server_ms[4];
        for (int s = 0; s < 5; s++) stats->server_ms += server_ms[s];
        stats->server_cpu_ms = server_cpu;
    }
out:
    if (cl)
        for (int u = 0; u < n; u++) {
            fed_secagg_client_free(cl[u].c);
            free(cl[u].in);
            free(cl[u].out);
        }
    if (xbuf)
        for (int w = 0; w < threads; w++) free(xbuf[w]);
    free(xbuf);
    free(cl);
    free(batch);
    free(rcs);
    fed_secagg_server_free(srv);
    fed_pool_free(pool);
    free(sign_pk);
    wipe_keys(sign_sk, n);
    return rc;
}

typedef struct arr_ctx {
    const uint64_t *const *x;
} arr_ctx;

static int arr_input(void *ctx, int client, uint64_t *x, size_t L) {
    const arr_ctx *a = ctx;
    if (!a->x[client]) return fed_error(FED_EINVAL, "secagg: no input for client %d", client);
    memcpy(x, a->x[client], L * sizeof *x);
    return 0;
}

int fed_secagg_sum(const fed_secagg_cfg *cfg, const uint64_t *const *inputs, size_t L, const uint8_t *drop_at,
                   uint64_t *sum_out, uint8_t *included, fed_secagg_stats *stats) {
    if (!inputs) return fed_error(FED_EINVAL, "secagg: no inputs");
    arr_ctx a = {inputs};
    return fed_secagg_sim_run(cfg, L, arr_input, &a, drop_at, sum_out, included, stats);
}
