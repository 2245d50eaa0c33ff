/* Gaussian and Laplace mechanisms: reproducibility of the seeded source, the
 * distribution of both sources (moments and a Kolmogorov-Smirnov distance), snapping,
 * rejection of bad inputs, and the time to noise a 1.66M-parameter update. */
#include "federate/dp.h"
#include "federate/error.h"
#include "check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static double normal_cdf(double x) { return 0.5 * erfc(-x / sqrt(2.0)); }
static double laplace_cdf(double x) { return x < 0 ? 0.5 * exp(x) : 1.0 - 0.5 * exp(-x); }

/* Kolmogorov-Smirnov distance of x (sorted in place) / scale from cdf. */
static double ks(float *x, size_t n, double scale, double (*cdf)(double)) {
    qsort(x, n, sizeof *x, cmp_float);
    double d = 0;
    for (size_t i = 0; i < n; i++) {
        double f = cdf(x[i] / scale);
        d = fmax(d, fmax(fabs(f - (double)i / n), fabs(f - (double)(i + 1) / n)));
    }
    return d;
}

/* mean, variance and kurtosis of x[0..n) */
static void moments(const float *x, size_t n, double *mean, double *var, double *kurt) {
    double s = 0, s2 = 0, s4 = 0;
    for (size_t i = 0; i < n; i++) s += x[i];
    double m = s / n;
    for (size_t i = 0; i < n; i++) {
        double d = x[i] - m;
        s2 += d * d;
        s4 += d * d * d * d;
    }
    *mean = m;
    *var = s2 / n;
    *kurt = (s4 / n) / (*var * *var);
}

static void test_names(void) {
    int s = -1;
    CHECK(strcmp(fed_dp_noise_source_name(FED_DP_NOISE_SEEDED), "seeded") == 0);
    CHECK(strcmp(fed_dp_noise_source_name(FED_DP_NOISE_SECURE), "secure") == 0);
    CHECK(fed_dp_noise_source_name(7) == NULL);
    CHECK_OK(fed_dp_noise_source_from_name("secure", &s));
    CHECK_EQ_INT(s, FED_DP_NOISE_SECURE);
    CHECK_OK(fed_dp_noise_source_from_name("seeded", &s));
    CHECK_EQ_INT(s, FED_DP_NOISE_SEEDED);
    CHECK_EQ_INT(fed_dp_noise_source_from_name("Secure", &s), FED_EINVAL);
    CHECK(strstr(fed_last_error(), "Secure") != NULL);
    CHECK_EQ_INT(fed_dp_noise_source_from_name(NULL, &s), FED_EINVAL);
}

/* The seeded source is the FED_RNG_NOISE stream of its address, whatever the block
 * size, and different addresses give different noise. */
static void test_seeded_reproducible(void) {
    enum { N = 10007 };
    static float a[N], b[N], c[N], ref[N];
    fed_dp_noise ns;
    CHECK_OK(fed_dp_noise_init(&ns, FED_DP_NOISE_SEEDED, 42, 3, 17));
    CHECK_OK(fed_dp_gaussian(&ns, a, N, 0.7));
    fed_rng r;
    fed_rng_init(&r, 42, 3, 17, FED_RNG_NOISE);
    fed_rng_fill_normal(&r, ref, N, 0.0f, 0.7f);
    CHECK(memcmp(a, ref, sizeof a) == 0);
    /* in two pieces of even length: the same numbers (an odd piece would leave a spare
     * normal in the stream and shift the rest, as fed_rng_fill_normal does) */
    CHECK_OK(fed_dp_noise_init(&ns, FED_DP_NOISE_SEEDED, 42, 3, 17));
    CHECK_OK(fed_dp_gaussian(&ns, b, 5000, 0.7));
    CHECK_OK(fed_dp_gaussian(&ns, b + 5000, N - 5000, 0.7));
    CHECK(memcmp(a, b, sizeof a) == 0);
    /* another client, round or seed: other numbers */
    const uint64_t addr[3][3] = {{42, 3, 18}, {42, 4, 17}, {43, 3, 17}};
    for (int k = 0; k < 3; k++) {
        memset(c, 0, sizeof c);
        CHECK_OK(fed_dp_noise_init(&ns, FED_DP_NOISE_SEEDED, addr[k][0], addr[k][1], addr[k][2]));
        CHECK_OK(fed_dp_gaussian(&ns, c, N, 0.7));
        int same = 0;
        for (int i = 0; i < N; i++) same += c[i] == a[i];
        CHECK(same < 10);
    }
    /* Laplace too is a function of the address */
    memset(a, 0, sizeof a);
    memset(b, 0, sizeof b);
    CHECK_OK(fed_dp_noise_init(&ns, FED_DP_NOISE_SEEDED, 1, 2, 3));
    CHECK_OK(fed_dp_laplace(&ns, a, N, 2.0));
    CHECK_OK(fed_dp_noise_init(&ns, FED_DP_NOISE_SEEDED, 1, 2, 3));
    CHECK_OK(fed_dp_laplace(&ns, b, N, 2.0));
    CHECK(memcmp(a, b, sizeof a) == 0);
    /* noise is added to what is there */
    for (int i = 0; i < N; i++) c[i] = (float)i;
    CHECK_OK(fed_dp_noise_init(&ns, FED_DP_NOISE_SEEDED, 42, 3, 17));
    CHECK_OK(fed_dp_gaussian(&ns, c, N, 0.7));
    for (int i = 0; i < N; i++) CHECK_NEAR(c[i], (float)i + ref[i], 1e-3 * (1 + i));
}

static void check_distribution(int source, int laplace, double scale) {
    enum { N = 200000 };
    static float x[N];
    memset(x, 0, sizeof x);
    fed_dp_noise ns;
    CHECK_OK(fed_dp_noise_init(&ns, source, 7, 1, 2));
    if (laplace) CHECK_OK(fed_dp_laplace(&ns, x, N, scale));
    else CHECK_OK(fed_dp_gaussian(&ns, x, N, scale));
    double m, v, k;
    moments(x, N, &m, &v, &k);
    double want_var = laplace ? 2 * scale * scale : scale * scale;
    double want_kurt = laplace ? 6.0 : 3.0;
    /* tolerances ~5 standard errors */
    CHECK_NEAR(m / sqrt(want_var), 0.0, 5.0 / sqrt(N));
    CHECK_CLOSE(v, want_var, laplace ? 0.03 : 0.016, 0);
    CHECK_NEAR(k, want_kurt, laplace ? 0.6 : 0.06);
    double d = ks(x, N, scale, laplace ? laplace_cdf : normal_cdf);
    /* KS critical value at 1e-4 is ~2.0/sqrt(N) = 0.0045 */
    CHECK(d < 0.0045);
}

static void test_distributions(void) {
    for (int src = 0; src < 2; src++)
        for (int lap = 0; lap < 2; lap++) check_distribution(src, lap, lap ? 0.3 : 2.5);
}

static void test_secure(void) {
    float a[5] = {0}, b[5] = {0};
    fed_dp_noise ns;
    CHECK_OK(fed_dp_noise_init(&ns, FED_DP_NOISE_SECURE, 42, 3, 17));
    /* odd lengths use half of the last Box-Muller pair */
    CHECK_OK(fed_dp_gaussian(&ns, a, 1, 1.0));
    CHECK(a[0] != 0 && a[1] == 0);
    CHECK_OK(fed_dp_gaussian(&ns, a, 5, 1.0));
    CHECK_OK(fed_dp_gaussian(&ns, b, 5, 1.0));
    CHECK(memcmp(a, b, sizeof a) != 0); /* not reproducible, by design */
    for (int i = 0; i < 5; i++) CHECK(isfinite(a[i]) && a[i] != 0);
    double g, l;
    CHECK_OK(fed_dp_sample_normal(&ns, &g));
    CHECK_OK(fed_dp_sample_laplace(&ns, &l));
    CHECK(isfinite(g) && isfinite(l));
    /* scalar draws are standard: mean |N(0,1)| = sqrt(2/pi), mean |Laplace(0,1)| = 1 */
    double sg = 0, sl = 0;
    for (int i = 0; i < 20000; i++) {
        CHECK_OK(fed_dp_sample_normal(&ns, &g));
        CHECK_OK(fed_dp_sample_laplace(&ns, &l));
        sg += fabs(g);
        sl += fabs(l);
    }
    CHECK_NEAR(sg / 20000, sqrt(2 / 3.14159265358979), 0.02);
    CHECK_NEAR(sl / 20000, 1.0, 0.04);
    /* seeded scalar draws follow the address */
    fed_dp_noise s1, s2;
    CHECK_OK(fed_dp_noise_init(&s1, FED_DP_NOISE_SEEDED, 5, 0, FED_DP_CLIENT_CLIP_COUNT));
    CHECK_OK(fed_dp_noise_init(&s2, FED_DP_NOISE_SEEDED, 5, 0, FED_DP_CLIENT_CLIP_COUNT));
    CHECK_OK(fed_dp_sample_normal(&s1, &g));
    CHECK_OK(fed_dp_sample_normal(&s2, &l));
    CHECK(g == l);
}

static void test_snapped(void) {
    enum { N = 100000 };
    static float x[N];
    const double scale = 0.3, bound = 50, lambda = 0.5; /* lambda: power of two >= scale */
    for (int i = 0; i < N; i++) x[i] = (i % 3 == 0) ? 100.0f : 1.25f; /* 100 is clamped */
    fed_dp_noise ns;
    CHECK_OK(fed_dp_noise_init(&ns, FED_DP_NOISE_SEEDED, 9, 0, 0));
    CHECK_OK(fed_dp_laplace_snapped(&ns, x, N, scale, bound));
    double s = 0, s2 = 0;
    int n = 0;
    for (int i = 0; i < N; i++) {
        CHECK(fabs(x[i]) <= bound);
        CHECK(x[i] / lambda == nearbyint(x[i] / lambda)); /* on the grid */
        if (i % 3 == 0) {
            CHECK(x[i] >= bound - 20 * lambda);
            continue;
        }
        s += x[i] - 1.25;
        s2 += (x[i] - 1.25) * (x[i] - 1.25);
        n++;
    }
    /* rounding to the grid adds about lambda^2 / 12 of variance; 1.25 lies midway
     * between grid points, so ties make the mean drift by at most lambda / 2 */
    CHECK_NEAR(s / n, 0.0, lambda / 2 + 0.02);
    CHECK_CLOSE(s2 / n, 2 * scale * scale + lambda * lambda / 12, 0.08, 0);
    /* a power-of-two scale is its own grid */
    float y[4] = {0.1f, 0.2f, 0.3f, 0.4f};
    CHECK_OK(fed_dp_laplace_snapped(&ns, y, 4, 0.25, 10));
    for (int i = 0; i < 4; i++) CHECK(y[i] / 0.25f == nearbyintf(y[i] / 0.25f));
    CHECK_EQ_INT(fed_dp_laplace_snapped(&ns, y, 4, 0.0, 10), FED_EINVAL);
    CHECK_EQ_INT(fed_dp_laplace_snapped(&ns, y, 4, 1.0, 0.5), FED_EINVAL);
    CHECK(strstr(fed_last_error(), "bound") != NULL);
    CHECK_EQ_INT(fed_dp_laplace_snapped(&ns, y, 4, 1.0, 1e15), FED_EINVAL);
}

static void test_bad_inputs(void) {
    float x[4] = {1, 2, 3, 4};
    fed_dp_noise ns;
    CHECK_EQ_INT(fed_dp_noise_init(&ns, 5, 0, 0, 0), FED_EINVAL);
    CHECK_EQ_INT(fed_dp_gaussian(&ns, x, 4, 1.0), FED_EINVAL); /* left unusable */
    CHECK_EQ_INT(fed_dp_noise_init(NULL, 0, 0, 0, 0), FED_EINVAL);
    CHECK_OK(fed_dp_noise_init(&ns, FED_DP_NOISE_SEEDED, 0, 0, 0));
    CHECK_EQ_INT(fed_dp_gaussian(NULL, x, 4, 1.0), FED_EINVAL);
    CHECK_EQ_INT(fed_dp_gaussian(&ns, NULL, 4, 1.0), FED_EINVAL);
    CHECK_EQ_INT(fed_dp_gaussian(&ns, x, 4, -1.0), FED_EINVAL);
    CHECK(strstr(fed_last_error(), "scale") != NULL);
    CHECK_EQ_INT(fed_dp_gaussian(&ns, x, 4, NAN), FED_EINVAL);
    CHECK_EQ_INT(fed_dp_gaussian(&ns, x, 4, INFINITY), FED_EINVAL);
    CHECK_EQ_INT(fed_dp_laplace(&ns, x, 4, -2.0), FED_EINVAL);
    CHECK_EQ_INT(fed_dp_sample_normal(&ns, NULL), FED_EINVAL);
    CHECK_EQ_INT(fed_dp_sample_laplace(NULL, NULL), FED_EINVAL);
    /* no noise, no change, nothing drawn; empty vectors are fine */
    CHECK_OK(fed_dp_gaussian(&ns, x, 4, 0.0));
    CHECK_OK(fed_dp_laplace(&ns, x, 4, 0.0));
    CHECK(x[0] == 1 && x[3] == 4);
    CHECK_OK(fed_dp_gaussian(&ns, NULL, 0, 1.0));
    fed_rng r;
    fed_rng_init(&r, 0, 0, 0, FED_RNG_NOISE);
    CHECK(ns.rng.pos == r.pos && memcmp(ns.rng.ctr, r.ctr, sizeof r.ctr) == 0);
}

/* Not a pass/fail check beyond a generous bound: the figures for the report. */
static void test_timing(void) {
    const size_t n = 1663370; /* the ResNet-ish model size the task names (1.66M) */
    float *x = calloc(n, sizeof *x);
    CHECK(x != NULL);
    const char *what[4] = {"gaussian seeded", "gaussian secure", "laplace seeded", "laplace secure"};
    for (int k = 0; k < 4; k++) {
        fed_dp_noise ns;
        CHECK_OK(fed_dp_noise_init(&ns, k & 1, 1, 2, 3));
        double t0 = now();
        if (k < 2) CHECK_OK(fed_dp_gaussian(&ns, x, n, 1.0));
        else CHECK_OK(fed_dp_laplace(&ns, x, n, 1.0));
        double ms = (now() - t0) * 1e3;
        printf("test_dp_mechanism: %s on %zu floats: %.1f ms\n", what[k], n, ms);
        CHECK(ms >= 0);   /* timings are printed, never asserted */
    }
    free(x);
}

int main(void) {
    test_names();
    test_seeded_reproducible();
    test_distributions();
    test_secure();
    test_snapped();
    test_bad_inputs();
    test_timing();
    TEST_PASS("test_dp_mechanism");
}
