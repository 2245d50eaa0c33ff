/* System-aware selection: power-of-choice takes the highest-loss candidates,
 * oort explores untried clients, then prefers high utility and penalizes slow
 * clients, speed selection favours fast devices, availability restricts who can
 * be picked, and every selector is deterministic in (seed, round). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "federate/federate.h"

enum { N = 20 };

static fed_federation fake(size_t *train_n) {
    fed_federation f;
    memset(&f, 0, sizeof f);
    f.num_clients = N;
    f.part.num_clients = N;
    f.part.train_n = train_n;
    return f;
}

static int has(const int *v, int k, int x) {
    for (int i = 0; i < k; i++) if (v[i] == x) return 1;
    return 0;
}

static void test_power_of_choice(void) {
    size_t n[N];
    for (int i = 0; i < N; i++) n[i] = 100;
    fed_federation f = fake(n);
    fed_selector s;
    CHECK_OK(fed_selector_init(&s, "power-of-choice", N));
    s.poc_candidates = N;   /* every client a candidate: exactly the top-k losses */
    for (int i = 0; i < N; i++) fed_selector_observe(&s, i, (double)((i * 7) % N), NAN);
    int out[4];
    CHECK_OK(fed_select_clients(&s, &f, 1, 1, 4, out));
    /* losses (i*7)%20: 19 at i=17, 18 at i=14, 17 at i=11, 16 at i=8 */
    CHECK(has(out, 4, 17) && has(out, 4, 14) && has(out, 4, 11) && has(out, 4, 8));
    /* an unknown loss goes first */
    s.loss[3] = NAN;
    CHECK_OK(fed_select_clients(&s, &f, 1, 2, 4, out));
    CHECK(has(out, 4, 3) && has(out, 4, 17) && has(out, 4, 14) && has(out, 4, 11));
    /* with d = 2k candidates, picks are a high-loss subset of a random sample:
     * over many rounds the mean loss of picks beats uniform's 9.5 */
    s.poc_candidates = 0;
    s.loss[3] = 3 * 7 % N;
    double sum = 0;
    int cnt = 0;
    for (int r = 1; r <= 200; r++) {
        CHECK_OK(fed_select_clients(&s, &f, 2, r, 4, out));
        for (int i = 0; i < 4; i++) sum += s.loss[out[i]], cnt++;
    }
    CHECK(sum / cnt > 12);
    /* deterministic */
    int a[4], b[4];
    CHECK_OK(fed_select_clients(&s, &f, 9, 7, 4, a));
    CHECK_OK(fed_select_clients(&s, &f, 9, 7, 4, b));
    CHECK(memcmp(a, b, sizeof a) == 0);
    fed_selector_free(&s);
}

static void test_oort(void) {
    size_t n[N];
    double speed[N];
    for (int i = 0; i < N; i++) n[i] = 100, speed[i] = 100 + 10 * i;
    fed_federation f = fake(n);
    fed_selector s;
    CHECK_OK(fed_selector_init(&s, "oort", N));
    s.speed = speed;
    s.oort_alpha = 2;
    s.oort_epsilon = 0.9;
    int out[5];
    /* nothing explored: every pick explores */
    CHECK_OK(fed_select_clients(&s, &f, 3, 1, 5, out));
    for (int i = 0; i < 5; i++) CHECK(isnan(s.loss[out[i]]));
    /* explore: unexplored clients keep being tried while there are some */
    for (int i = 0; i < 10; i++) fed_selector_observe(&s, i, 1.0 + i, 10.0);
    CHECK_OK(fed_select_clients(&s, &f, 3, 2, 5, out));
    int unexplored = 0;
    for (int i = 0; i < 5; i++) unexplored += out[i] >= 10;
    CHECK(unexplored >= 4);   /* epsilon 0.9 * 0.98: round(4.4) = 4 explore */
    /* exploit only (epsilon 0): the highest utility n * loss, all equally fast */
    s.oort_epsilon = 0;
    for (int i = 0; i < N; i++) fed_selector_observe(&s, i, 1.0 + i, 10.0);
    for (int i = 0; i < N; i++) s.last_selected[i] = 1;
    CHECK_OK(fed_select_clients(&s, &f, 3, 2, 5, out));
    for (int i = 0; i < 5; i++) CHECK(out[i] >= 15);
    /* a slow client is penalized (T / t)^alpha: client 19 takes 10x the median */
    s.duration[19] = 100.0;
    for (int i = 0; i < N; i++) s.last_selected[i] = 1;
    CHECK_OK(fed_select_clients(&s, &f, 3, 2, 5, out));
    CHECK(!has(out, 5, 19));
    CHECK(has(out, 5, 14));
    /* deterministic */
    s.oort_epsilon = 0.5;
    for (int i = 10; i < N; i++) s.loss[i] = NAN;
    int a[5], b[5];
    memcpy(a, out, sizeof a);
    int ls[N];
    memcpy(ls, s.last_selected, sizeof ls);
    CHECK_OK(fed_select_clients(&s, &f, 4, 3, 5, a));
    memcpy(s.last_selected, ls, sizeof ls);
    CHECK_OK(fed_select_clients(&s, &f, 4, 3, 5, b));
    CHECK(memcmp(a, b, sizeof a) == 0);
    fed_selector_free(&s);
}

static void test_speed_and_availability(void) {
    size_t n[N];
    double speed[N];
    for (int i = 0; i < N; i++) n[i] = 100, speed[i] = i < 10 ? 10 : 1000;
    fed_federation f = fake(n);
    fed_selector s;
    CHECK_OK(fed_selector_init(&s, "speed", N));
    s.speed = speed;
    int fast = 0, out[4];
    for (int r = 1; r <= 100; r++) {
        CHECK_OK(fed_select_clients(&s, &f, 5, r, 4, out));
        for (int i = 0; i < 4; i++) fast += out[i] >= 10;
    }
    CHECK(fast > 360);   /* p(fast) ~ 0.99 per pick */
    /* only eligible clients, for every selector */
    const char *kinds[] = {"uniform", "speed", "oort", "power-of-choice", "capability"};
    unsigned char ok[N];
    for (int i = 0; i < N; i++) ok[i] = i % 3 == 0;   /* 7 eligible */
    double cap[N];
    for (int i = 0; i < N; i++) cap[i] = 1;
    f.capability = cap;
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        fed_selector t;
        CHECK_OK(fed_selector_init(&t, kinds[k], N));
        t.speed = speed;
        for (int r = 1; r <= 20; r++) {
            CHECK_OK(fed_select_clients_among(&t, &f, 6, r, 4, ok, out));
            for (int i = 0; i < 4; i++) {
                CHECK(out[i] % 3 == 0);
                if (i) CHECK(out[i] > out[i - 1]);
            }
            for (int i = 0; i < 4; i++) fed_selector_observe(&t, out[i], 1.0 + out[i], 1.0);
        }
        CHECK_EQ_INT(fed_select_clients_among(&t, &f, 6, 21, 8, ok, out), FED_EINVAL);
        fed_selector_free(&t);
    }
    fed_selector_free(&s);
    CHECK_EQ_INT(fed_selector_init(&s, "fastest", N), FED_EINVAL);
    CHECK(strstr(fed_last_error(), "power-of-choice") != NULL);
}

int main(void) {
    test_power_of_choice();
    test_oort();
    test_speed_and_availability();
    TEST_PASS("test_select_sys");
}
