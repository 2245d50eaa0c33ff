/* Download compression in the simulated federation: clients receive the global
 * model as codec frames (deltas against their last decoded copy), bytes_down
 * counts the frames, training still works, and the result does not depend on
 * the thread count. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "check.h"
#include "federate/federate.h"

static char dir[256];

static void base(fed_config *c, const char *codec, int threads) {
    fed_config_default(c);
    c->num_clients = 20;
    c->clients_per_round = 5;
    c->num_rounds = 3;
    snprintf(c->model, sizeof c->model, "mlp");
    snprintf(c->hidden, sizeof c->hidden, "32");
    c->local_epochs = 1;
    c->batch_size = 20;
    c->learning_rate = 0.1;
    c->seed = 9;
    c->threads = threads;
    snprintf(c->download_compression, sizeof c->download_compression, "%s", codec);
    snprintf(c->state_dir, sizeof c->state_dir, "%s/state%d", dir, threads);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/federate-dl-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    fed_config c;
    fed_run_result raw, q1, q2;
    base(&c, "", 1);
    CHECK_OK(fed_run(&c, NULL, &raw));
    base(&c, "q8,zstd", 1);
    CHECK_OK(fed_run(&c, NULL, &q1));
    base(&c, "q8,zstd", 2);
    CHECK_OK(fed_run(&c, NULL, &q2));
    printf("bytes_down raw %lld, q8+zstd %lld; accuracy %.4f vs %.4f\n", (long long)raw.bytes_down,
           (long long)q1.bytes_down, raw.final_accuracy, q1.final_accuracy);
    CHECK(q1.bytes_down * 3 < raw.bytes_down);          /* 8-bit codes of deltas, zstd on top */
    CHECK(fabs(q1.final_accuracy - raw.final_accuracy) < 0.02);
    CHECK(q1.final_accuracy == q2.final_accuracy);      /* thread count does not matter */
    CHECK(q1.bytes_down == q2.bytes_down);
    fed_run_result_free(&raw);
    fed_run_result_free(&q1);
    fed_run_result_free(&q2);
    /* a bad chain is refused naming the key */
    base(&c, "q9", 1);
    CHECK(fed_config_validate(&c) == FED_EINVAL);
    CHECK(strstr(fed_last_error(), "download_compression") != NULL);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    TEST_PASS("fl_download");
}
