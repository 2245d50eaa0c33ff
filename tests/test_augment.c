/* Augmentation: off means a copy; every flip is the image or its mirror; every crop
 * is the image shifted by at most pad with zeros shifted in, or each channel's fill
 * value when one is given (the data set's normalized black); rotations at known
 * angles move pixels where they should; the same stream address repeats itself. */
#include <string.h>
#include "check.h"
#include "federate/data.h"
#include "federate/error.h"

#define C 2
#define H 5
#define W 6
#define N (C * H * W)

/* Distinct non-zero values, so a shifted image cannot match by accident. */
static void fill(float *x) {
    for (int i = 0; i < N; i++) x[i] = 1.0f + (float)i * 0.25f;
}

static float at(const float *x, int ch, int y, int xx) { return x[(ch * H + y) * W + xx]; }

static int is_mirror(const float *in, const float *out) {
    for (int ch = 0; ch < C; ch++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                if (at(out, ch, y, x) != at(in, ch, y, W - 1 - x)) return 0;
    return 1;
}

/* out[y][x] == in[y + sy][x + sx], fill[ch] (0 without) where that is outside. */
static int is_shift_fill(const float *in, const float *out, int sy, int sx, const float *fill) {
    for (int ch = 0; ch < C; ch++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                int yy = y + sy, xx = x + sx;
                float want = yy >= 0 && yy < H && xx >= 0 && xx < W ? at(in, ch, yy, xx) : fill ? fill[ch] : 0.0f;
                if (at(out, ch, y, x) != want) return 0;
            }
    return 1;
}

static int is_shift(const float *in, const float *out, int sy, int sx) { return is_shift_fill(in, out, sy, sx, NULL); }

int main(void) {
    float in[N], out[N], out2[N];
    fill(in);
    fed_rng r;
    fed_rng_init(&r, 1, 0, 0, FED_RNG_AUGMENT);

    /* Off: a bit-exact copy, and no draws taken from the stream. */
    {
        fed_augment off = {0, 0, 0.0f, NULL};
        fed_rng before = r;
        fed_augment_apply(&off, in, out, C, H, W, &r);
        CHECK(memcmp(in, out, sizeof in) == 0);
        CHECK(memcmp(&before, &r, sizeof r) == 0);
        fed_augment_apply(NULL, in, out, C, H, W, &r);
        CHECK(memcmp(in, out, sizeof in) == 0);
        fed_augment neg = {-3, 0, -10.0f, NULL};   /* negative means off too */
        fed_augment_apply(&neg, in, out, C, H, W, &r);
        CHECK(memcmp(in, out, sizeof in) == 0);
        fed_augment on = {2, 1, 20.0f, NULL};
        fed_augment_apply(&on, in, out, C, H, W, NULL);   /* no stream: no augmentation */
        CHECK(memcmp(in, out, sizeof in) == 0);
    }

    /* Flip: each output is the image or its mirror, each about half the time. */
    {
        fed_augment flip = {0, 1, 0.0f, NULL};
        int mirrored = 0, same = 0;
        for (int t = 0; t < 400; t++) {
            fed_augment_apply(&flip, in, out, C, H, W, &r);
            if (memcmp(in, out, sizeof in) == 0) same++;
            else if (is_mirror(in, out)) mirrored++;
            else CHECK(!"flip produced something other than identity or mirror");
        }
        CHECK(same > 150 && mirrored > 150);
        /* Mirroring twice is the identity. */
        for (int t = 0; !is_mirror(in, out); t++) {
            CHECK(t < 100);
            fed_augment_apply(&flip, in, out, C, H, W, &r);
        }
        for (int t = 0; !is_mirror(out, out2); t++) {
            CHECK(t < 100);
            fed_augment_apply(&flip, out, out2, C, H, W, &r);
        }
        CHECK(memcmp(in, out2, sizeof in) == 0);
    }

    /* Crop after padding by 2: the content shifts by (sy, sx) in [-2, 2]^2, all 25
     * shifts occur, the same shift for every channel (checked by is_shift). */
    {
        fed_augment crop = {2, 0, 0.0f, NULL};
        int seen[5][5] = {{0}};
        for (int t = 0; t < 2000; t++) {
            fed_augment_apply(&crop, in, out, C, H, W, &r);
            int found = 0;
            for (int sy = -2; sy <= 2; sy++)
                for (int sx = -2; sx <= 2; sx++)
                    if (is_shift(in, out, sy, sx)) {
                        found++;
                        seen[sy + 2][sx + 2]++;
                    }
            CHECK_EQ_INT(found, 1);
        }
        for (int i = 0; i < 5; i++)
            for (int j = 0; j < 5; j++) CHECK(seen[i][j] > 40);
        CHECK(seen[2][2] < 2000);
        /* A pad wider than the image can blank it entirely, but never crashes. */
        fed_augment wide = {W + 3, 0, 0.0f, NULL};
        for (int t = 0; t < 200; t++) fed_augment_apply(&wide, in, out, C, H, W, &r);
    }

    /* A fill value per channel: shifted-in pixels and rotated-in corners take it. The
     * data sets' black is (0 - mean) / std. */
    {
        const float fv[C] = {-0.5f, -2.0f};
        fed_augment crop = {2, 0, 0.0f, fv};
        int shifted = 0;
        for (int t = 0; t < 200; t++) {
            fed_augment_apply(&crop, in, out, C, H, W, &r);
            int found = 0;
            for (int sy = -2; sy <= 2; sy++)
                for (int sx = -2; sx <= 2; sx++) found += is_shift_fill(in, out, sy, sx, fv);
            CHECK_EQ_INT(found, 1);
            shifted += !is_shift_fill(in, out, 0, 0, fv);
        }
        CHECK(shifted > 150);
        fed_augment rot = {0, 0, 45.0f, fv};
        int corners = 0;
        for (int t = 0; t < 50; t++) {
            fed_augment_apply(&rot, in, out, C, H, W, &r);
            for (int ch = 0; ch < C; ch++) corners += at(out, ch, 0, 0) == fv[ch];
        }
        CHECK(corners > 0);
        float black[3];
        CHECK_OK(fed_dataset_black("mnist", black, 3));
        CHECK_NEAR(black[0], -0.1307 / 0.3081, 1e-6);
        CHECK_OK(fed_dataset_black("cifar10", black, 3));
        CHECK_NEAR(black[2], -0.4465 / 0.2616, 1e-6);
        CHECK_EQ_INT(fed_dataset_black("cifar10", black, 1), FED_EINVAL);   /* no room for three channels */
        CHECK_EQ_INT(fed_dataset_black("imagenet", black, 3), FED_ENOTFOUND);
    }

    /* Rotation at fixed angles. */
    {
        /* 0 degrees is exact. */
        fed_augment_rotate(in, out, C, H, W, 0.0f);
        CHECK(memcmp(in, out, sizeof in) == 0);
        /* +90 turns counter-clockwise as displayed: on a 3x3, the right-middle pixel
         * goes to the top-middle, the top-middle to the left-middle. */
        float sq[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, rot[9], rot2[9];
        const float ccw[9] = {3, 6, 9, 2, 5, 8, 1, 4, 7};
        fed_augment_rotate(sq, rot, 1, 3, 3, 90.0f);
        for (int i = 0; i < 9; i++) CHECK(rot[i] == ccw[i]);
        fed_augment_rotate(sq, rot, 1, 3, 3, -90.0f);
        fed_augment_rotate(rot, rot2, 1, 3, 3, 90.0f);
        CHECK(memcmp(sq, rot2, sizeof sq) == 0);
        /* 180 on an even-sized image reverses it, exactly (center between pixels). */
        float ev[16], ev2[16];
        for (int i = 0; i < 16; i++) ev[i] = (float)(i + 1);
        fed_augment_rotate(ev, ev2, 1, 4, 4, 180.0f);
        for (int i = 0; i < 16; i++) CHECK(ev2[i] == ev[15 - i]);
        /* 45 degrees: the center pixel stays, corners of a 3x3 fall outside and blend
         * with the zero fill, and the result is the bilinear mix there. */
        fed_augment_rotate(sq, rot, 1, 3, 3, 45.0f);
        CHECK_NEAR(rot[4], 5.0f, 1e-6);
        /* Top-middle samples the source at (y, x) = (1 - s, 1 + s), s = sin 45:
         * between pixels 2, 3, 5, 6. */
        double s = 0.70710678118654752, ax = s, ay = 1 - s;
        double want = (1 - ay) * ((1 - ax) * 2 + ax * 3) + ay * ((1 - ax) * 5 + ax * 6);
        CHECK_NEAR(rot[1], want, 1e-5);
        /* Top-left samples (1 - 2s, 1): above the image, so it mixes pixel 2 with the
         * zero fill. */
        CHECK_NEAR(rot[0], (2 - 2 * s) * 2, 1e-5);
    }

    /* Random rotation: a tiny range is close to identity; the center of an odd-sized
     * image never moves; channels share one angle (channel 1 = 3 * channel 0 stays so). */
    {
        fed_augment tiny = {0, 0, 1e-3f, NULL};
        fed_augment_apply(&tiny, in, out, C, H, W, &r);
        for (int ch = 0; ch < C; ch++)
            for (int y = 1; y < H - 1; y++)
                for (int x = 1; x < W - 1; x++) CHECK_NEAR(at(out, ch, y, x), at(in, ch, y, x), 1e-3);
        float a[2 * 7 * 7], b[2 * 7 * 7];
        for (int i = 0; i < 49; i++) {
            a[i] = (float)((i * 13) % 17);
            a[49 + i] = 3.0f * a[i];
        }
        fed_augment rot = {0, 0, 40.0f, NULL};
        int changed = 0;
        for (int t = 0; t < 50; t++) {
            fed_augment_apply(&rot, a, b, 2, 7, 7, &r);
            CHECK(b[24] == a[24] && b[49 + 24] == a[49 + 24]);
            for (int i = 0; i < 49; i++) CHECK_NEAR(b[49 + i], 3.0f * b[i], 1e-4);
            if (memcmp(a, b, sizeof a)) changed++;
        }
        CHECK(changed > 45);
    }

    /* Determinism: the same address gives the same sequence of augmentations, another
     * address a different one. */
    {
        fed_augment all = {2, 1, 15.0f, NULL};
        fed_rng r1, r2, r3;
        fed_rng_init(&r1, 42, 3, 7, FED_RNG_AUGMENT);
        fed_rng_init(&r2, 42, 3, 7, FED_RNG_AUGMENT);
        fed_rng_init(&r3, 42, 3, 8, FED_RNG_AUGMENT);
        int differ = 0;
        for (int t = 0; t < 20; t++) {
            float o1[N], o2[N], o3[N];
            fed_augment_apply(&all, in, o1, C, H, W, &r1);
            fed_augment_apply(&all, in, o2, C, H, W, &r2);
            fed_augment_apply(&all, in, o3, C, H, W, &r3);
            CHECK(memcmp(o1, o2, sizeof o1) == 0);
            if (memcmp(o1, o3, sizeof o1)) differ++;
        }
        CHECK(differ > 15);
    }

    TEST_PASS("test_augment");
}
