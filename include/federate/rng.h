/* Counter-based random streams (Philox4x32-10, Salmon et al. SC'11).
 * A stream is addressed by (seed, round, client, purpose): the same address gives
 * the same numbers whatever thread draws them, which makes results bit-identical
 * for any thread count. Not for keys, masks or deployed DP noise (use libsodium). */
#ifndef FEDERATE_RNG_H
#define FEDERATE_RNG_H
#include <stdint.h>
#include <stddef.h>

/* Purposes: append-only. */
enum fed_rng_purpose {
    FED_RNG_INIT = 1,      /* parameter initialization */
    FED_RNG_SHUFFLE = 2,   /* batch order */
    FED_RNG_DROPOUT = 3,
    FED_RNG_AUGMENT = 4,
    FED_RNG_SELECT = 5,    /* client selection */
    FED_RNG_PARTITION = 6,
    FED_RNG_DROPOUT_CLIENT = 7, /* simulated client drop-out */
    FED_RNG_NOISE = 8,     /* simulated DP noise */
    FED_RNG_QUANT = 9,     /* stochastic rounding */
    FED_RNG_SPLIT = 10,    /* train/test splits */
    FED_RNG_USER = 100,
};

typedef struct fed_rng {
    uint32_t key[2];
    uint32_t ctr[4];
    uint32_t buf[4];
    int pos;              /* next unused word in buf (4 = empty) */
    int has_spare;
    float spare;          /* second Box-Muller output */
} fed_rng;

void fed_rng_init(fed_rng *r, uint64_t seed, uint64_t round, uint64_t client, uint32_t purpose);
uint32_t fed_rng_u32(fed_rng *r);
uint64_t fed_rng_u64(fed_rng *r);
/* n words, the same as n calls of fed_rng_u32 (eight counters per call). */
void fed_rng_fill_u32(fed_rng *r, uint32_t *out, size_t n);
/* Uniform in [0, 1). */
double fed_rng_uniform(fed_rng *r);
float fed_rng_uniformf(fed_rng *r);
/* Uniform integer in [0, n) without modulo bias (Lemire). n >= 1. */
uint32_t fed_rng_below(fed_rng *r, uint32_t n);
/* Standard normal. */
float fed_rng_normal(fed_rng *r);
double fed_rng_normal_d(fed_rng *r);
/* Gamma(shape, 1) (Marsaglia-Tsang), for Dirichlet sampling. */
double fed_rng_gamma(fed_rng *r, double shape);
/* Fisher-Yates shuffle of idx[0..n). */
void fed_rng_shuffle(fed_rng *r, uint32_t *idx, size_t n);
/* Fill with N(mean, std) / U(lo, hi). */
void fed_rng_fill_normal(fed_rng *r, float *x, size_t n, float mean, float std);
void fed_rng_fill_uniform(fed_rng *r, float *x, size_t n, float lo, float hi);

#endif
