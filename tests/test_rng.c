/* Counter-based RNG (src/core/rng.c): Philox4x32-10 known answers from Random123,
 * the addressing contract (same address -> same stream, any field changed ->
 * another stream) and the moments of every distribution the framework samples. */
#include "check.h"
#include "federate/rng.h"
#include <math.h>
#include <stdint.h>
#include <string.h>

#define N_DRAWS 1000000

/* Random123's kat_vectors for philox4x32 10: counter, key -> first block. */
static void check_known_answers(void) {
    static const uint32_t kat[3][10] = {
        {0, 0, 0, 0, 0, 0, 0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u},
        {0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu,
         0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu},
        {0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u, 0xa4093822u, 0x299f31d0u,
         0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u},
    };
    for (int v = 0; v < 3; v++) {
        fed_rng r;
        fed_rng_init(&r, 0, 0, 0, FED_RNG_USER);
        memcpy(r.ctr, kat[v], sizeof r.ctr);
        memcpy(r.key, kat[v] + 4, sizeof r.key);
        r.pos = 4;
        for (int i = 0; i < 4; i++) CHECK_EQ_INT(fed_rng_u32(&r), kat[v][6 + i]);
    }
    /* The block counter carries into the next word instead of wrapping in place. */
    fed_rng a, b;
    fed_rng_init(&a, 5, 6, 7, FED_RNG_USER);
    b = a;
    a.ctr[0] = 0xffffffffu;
    b.ctr[0] = 0;
    b.ctr[1] += 1;
    for (int i = 0; i < 4; i++) fed_rng_u32(&a); /* block 0xffffffff */
    for (int i = 0; i < 8; i++) CHECK_EQ_INT(fed_rng_u32(&a), fed_rng_u32(&b));
}

static void first_words(uint64_t seed, uint64_t round, uint64_t client, uint32_t purpose, uint32_t out[8]) {
    fed_rng r;
    fed_rng_init(&r, seed, round, client, purpose);
    for (int i = 0; i < 8; i++) out[i] = fed_rng_u32(&r);
}

static int same8(const uint32_t a[8], const uint32_t b[8]) { return memcmp(a, b, 8 * sizeof *a) == 0; }

static void check_addressing(void) {
    /* Same address: same sequence, across every kind of draw. */
    fed_rng a, b;
    fed_rng_init(&a, 42, 3, 17, FED_RNG_SHUFFLE);
    fed_rng_init(&b, 42, 3, 17, FED_RNG_SHUFFLE);
    for (int i = 0; i < 10000; i++) {
        CHECK_EQ_INT(fed_rng_u32(&a), fed_rng_u32(&b));
        double x = fed_rng_uniform(&a), y = fed_rng_uniform(&b);
        CHECK(memcmp(&x, &y, sizeof x) == 0);
        float f = fed_rng_normal(&a), g = fed_rng_normal(&b);
        CHECK(memcmp(&f, &g, sizeof f) == 0);
        CHECK_EQ_INT(fed_rng_below(&a, 1000), fed_rng_below(&b, 1000));
    }
    /* Re-initialising restarts the stream (including the Box-Muller spare). */
    fed_rng_init(&a, 42, 3, 17, FED_RNG_SHUFFLE);
    fed_rng_normal(&a);
    fed_rng_init(&a, 42, 3, 17, FED_RNG_SHUFFLE);
    fed_rng_init(&b, 42, 3, 17, FED_RNG_SHUFFLE);
    CHECK(fed_rng_normal(&a) == fed_rng_normal(&b));

    /* Changing any one field changes the stream; also nearby and high-bit values. */
    uint32_t base[8], other[8];
    first_words(42, 3, 17, FED_RNG_SHUFFLE, base);
    uint64_t seeds[] = {0, 41, 43, 42ull | (1ull << 40), 42ull ^ (1ull << 63)};
    for (size_t i = 0; i < sizeof seeds / sizeof *seeds; i++) {
        first_words(seeds[i], 3, 17, FED_RNG_SHUFFLE, other);
        CHECK(!same8(base, other));
    }
    uint64_t rounds[] = {0, 2, 4, 3ull | (1ull << 32), 3ull | (1ull << 63)};
    for (size_t i = 0; i < sizeof rounds / sizeof *rounds; i++) {
        first_words(42, rounds[i], 17, FED_RNG_SHUFFLE, other);
        CHECK(!same8(base, other));
    }
    uint64_t clients[] = {0, 16, 18, 17ull | (1ull << 32), 17ull | (1ull << 63)};
    for (size_t i = 0; i < sizeof clients / sizeof *clients; i++) {
        first_words(42, 3, clients[i], FED_RNG_SHUFFLE, other);
        CHECK(!same8(base, other));
    }
    uint32_t purposes[] = {FED_RNG_INIT, FED_RNG_DROPOUT, FED_RNG_NOISE, FED_RNG_USER, FED_RNG_USER + 1};
    for (size_t i = 0; i < sizeof purposes / sizeof *purposes; i++) {
        first_words(42, 3, 17, purposes[i], other);
        CHECK(!same8(base, other));
    }
    /* Swapping round and client must not give the same stream either. */
    uint32_t x[8], y[8];
    first_words(1, 2, 3, FED_RNG_USER, x);
    first_words(1, 3, 2, FED_RNG_USER, y);
    CHECK(!same8(x, y));
    /* No two of a grid of small structured addresses share their first words. */
    enum { G = 6 };
    static uint32_t grid[G * G * G * 2][8];
    int m = 0;
    for (uint64_t s = 0; s < G; s++)
        for (uint64_t rd = 0; rd < G; rd++)
            for (uint64_t c = 0; c < G; c++)
                for (uint32_t p = 1; p <= 2; p++) first_words(s, rd, c, p, grid[m++]);
    for (int i = 0; i < m; i++)
        for (int j = i + 1; j < m; j++) CHECK(grid[i][0] != grid[j][0] || !same8(grid[i], grid[j]));
}

static void check_uniform(void) {
    fed_rng r;
    fed_rng_init(&r, 7, 0, 0, FED_RNG_USER);
    double s = 0, s2 = 0, mn = 1, mx = 0;
    for (int i = 0; i < N_DRAWS; i++) {
        double u = fed_rng_uniform(&r);
        CHECK(u >= 0.0 && u < 1.0);
        s += u;
        s2 += u * u;
        if (u < mn) mn = u;
        if (u > mx) mx = u;
    }
    double mean = s / N_DRAWS, var = s2 / N_DRAWS - mean * mean;
    /* 5 standard errors: sd(mean) = 2.9e-4, sd(var) = 7.5e-5. */
    CHECK_NEAR(mean, 0.5, 1.5e-3);
    CHECK_NEAR(var, 1.0 / 12.0, 4e-4);
    CHECK(mn < 1e-4 && mx > 1 - 1e-4);

    s = s2 = 0;
    for (int i = 0; i < N_DRAWS; i++) {
        float u = fed_rng_uniformf(&r);
        CHECK(u >= 0.0f && u < 1.0f);
        s += u;
        s2 += (double)u * u;
    }
    mean = s / N_DRAWS;
    var = s2 / N_DRAWS - mean * mean;
    CHECK_NEAR(mean, 0.5, 1.5e-3);
    CHECK_NEAR(var, 1.0 / 12.0, 4e-4);

    float buf[1000];
    fed_rng_fill_uniform(&r, buf, 1000, -3.0f, 5.0f);
    s = 0;
    for (int i = 0; i < 1000; i++) {
        CHECK(buf[i] >= -3.0f && buf[i] <= 5.0f);
        s += buf[i];
    }
    CHECK_NEAR(s / 1000, 1.0, 5 * 8 / sqrt(12.0 * 1000));
}

static void check_normal(void) {
    fed_rng r;
    fed_rng_init(&r, 8, 0, 0, FED_RNG_USER);
    for (int kind = 0; kind < 2; kind++) {
        double s = 0, s2 = 0, s4 = 0;
        long within1 = 0;
        for (int i = 0; i < N_DRAWS; i++) {
            double z = kind ? fed_rng_normal_d(&r) : (double)fed_rng_normal(&r);
            CHECK(isfinite(z));
            s += z;
            s2 += z * z;
            s4 += z * z * z * z;
            within1 += fabs(z) < 1.0;
        }
        double mean = s / N_DRAWS, var = s2 / N_DRAWS - mean * mean;
        /* 5 standard errors: sd(mean) = 1e-3, sd(var) = 1.4e-3, sd(E z^4) = 9.8e-3. */
        CHECK_NEAR(mean, 0.0, 5e-3);
        CHECK_NEAR(var, 1.0, 7e-3);
        CHECK_NEAR(s4 / N_DRAWS, 3.0, 5e-2);
        CHECK_NEAR((double)within1 / N_DRAWS, 0.682689492, 2.5e-3);
    }
    float buf[10000];
    fed_rng_fill_normal(&r, buf, 10000, 2.0f, 0.5f);
    double s = 0, s2 = 0;
    for (int i = 0; i < 10000; i++) {
        s += buf[i];
        s2 += (double)buf[i] * buf[i];
    }
    double mean = s / 10000;
    CHECK_NEAR(mean, 2.0, 5 * 0.5 / 100);
    CHECK_NEAR(s2 / 10000 - mean * mean, 0.25, 0.02);
}

static void check_below(void) {
    fed_rng r;
    fed_rng_init(&r, 9, 0, 0, FED_RNG_USER);
    /* Chi-square over 7 buckets, 700000 draws: 6 degrees of freedom, P(X > 30) ~ 4e-5. */
    enum { K = 7, DRAWS = 700000 };
    long counts[K] = {0};
    for (int i = 0; i < DRAWS; i++) {
        uint32_t v = fed_rng_below(&r, K);
        CHECK(v < K);
        counts[v]++;
    }
    double chi2 = 0, expect = (double)DRAWS / K;
    for (int k = 0; k < K; k++) chi2 += (counts[k] - expect) * (counts[k] - expect) / expect;
    CHECK(chi2 < 30.0);

    for (int i = 0; i < 1000; i++) CHECK_EQ_INT(fed_rng_below(&r, 1), 0);
    /* Bounds where rejection matters most (threshold near 2^31) and the largest n. */
    uint32_t ns[] = {2, 3, 1000, 0x80000001u, 0xfffffffeu, 0xffffffffu};
    for (size_t j = 0; j < sizeof ns / sizeof *ns; j++) {
        int upper = 0;
        for (int i = 0; i < 20000; i++) {
            uint32_t v = fed_rng_below(&r, ns[j]);
            CHECK(v < ns[j]);
            upper += v >= ns[j] / 2;
        }
        /* Half the draws in the upper half (5 sd of a binomial(20000, ~0.5) = 354). */
        if (ns[j] > 3) CHECK(upper > 10000 - 360 && upper < 10000 + 360);
    }
}

static void check_gamma(void) {
    fed_rng r;
    fed_rng_init(&r, 10, 0, 0, FED_RNG_USER);
    double shapes[] = {0.3, 1.0, 5.0};
    enum { DRAWS = 400000 };
    for (size_t j = 0; j < sizeof shapes / sizeof *shapes; j++) {
        double a = shapes[j], s = 0, s2 = 0;
        for (int i = 0; i < DRAWS; i++) {
            double g = fed_rng_gamma(&r, a);
            CHECK(isfinite(g) && g >= 0.0);
            s += g;
            s2 += g * g;
        }
        double mean = s / DRAWS, var = s2 / DRAWS - mean * mean;
        /* Gamma(a, 1): mean a, variance a; 5 standard errors on the mean. */
        CHECK_NEAR(mean, a, 5 * sqrt(a / DRAWS));
        CHECK_CLOSE(var, a, 0.03, 0);
    }
    /* Degenerate and invalid shapes answer at once instead of looping forever. */
    CHECK(fed_rng_gamma(&r, 0.0) == 0.0);
    CHECK(isnan(fed_rng_gamma(&r, -1.0)));
    CHECK(isnan(fed_rng_gamma(&r, -1e300)));
    CHECK(isnan(fed_rng_gamma(&r, NAN)));
}

static void check_shuffle(void) {
    fed_rng r;
    fed_rng_init(&r, 11, 0, 0, FED_RNG_SHUFFLE);
    enum { N = 10007 };
    static uint32_t idx[N], seen[N];
    for (uint32_t i = 0; i < N; i++) idx[i] = i;
    fed_rng_shuffle(&r, idx, N);
    memset(seen, 0, sizeof seen);
    int moved = 0;
    for (uint32_t i = 0; i < N; i++) {
        CHECK(idx[i] < N);
        seen[idx[i]]++;
        moved += idx[i] != i;
    }
    for (uint32_t i = 0; i < N; i++) CHECK_EQ_INT(seen[i], 1);
    CHECK(moved > N - 10);

    /* Same address, same order; n = 0 and 1 are no-ops. */
    static uint32_t again[N];
    for (uint32_t i = 0; i < N; i++) again[i] = i;
    fed_rng_init(&r, 11, 0, 0, FED_RNG_SHUFFLE);
    fed_rng_shuffle(&r, again, N);
    CHECK(memcmp(idx, again, sizeof idx) == 0);
    uint32_t one = 5;
    fed_rng_shuffle(&r, &one, 1);
    CHECK_EQ_INT(one, 5);
    fed_rng_shuffle(&r, NULL, 0);

    /* All 6 orders of 3 elements equally likely: chi-square, 5 dof, P(X > 30) ~ 1.5e-5. */
    long perm[6] = {0};
    enum { T = 60000 };
    for (int t = 0; t < T; t++) {
        uint32_t v[3] = {0, 1, 2};
        fed_rng_shuffle(&r, v, 3);
        perm[v[0] * 2 + (v[1] > v[2])]++;
    }
    double chi2 = 0;
    for (int k = 0; k < 6; k++) chi2 += (perm[k] - T / 6.0) * (perm[k] - T / 6.0) / (T / 6.0);
    CHECK(chi2 < 30.0);
}

int main(void) {
    check_known_answers();
    check_addressing();
    check_uniform();
    check_normal();
    check_below();
    check_gamma();
    check_shuffle();
    TEST_PASS("test_rng");
}
