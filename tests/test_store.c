/* The experiment store: runs, rounds (NAN as NULL), client batches, attributes,
 * checkpoint round trips with binary blobs, truncation, ordering, reopening the
 * file, and the errors for a garbage file, a missing file and a missing run. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "check.h"
#include <sqlite3.h>
#include "federate/error.h"
#include "federate/store.h"

static char dir[64], db[128];

static fed_round_metrics round_of(int r) {
    fed_round_metrics m;
    memset(&m, 0, sizeof m);
    m.round = r;
    /* even rounds are not evaluated */
    m.test_accuracy = r % 2 ? 0.5 + 0.01 * r : NAN;
    m.test_loss = r % 2 ? 1.0 / r : NAN;
    m.train_loss_mean = 2.0 / r;
    m.train_loss_std = 0.1 * r;
    m.local_accuracy = NAN;
    m.selected = 10;
    m.finished = 9;
    m.dropped = 1;
    m.bytes_up = (int64_t)r << 33;  /* beyond 32 bits */
    m.bytes_down = 1000 + r;
    m.wall_s = 0.25 * r;
    m.epsilon = 0.125 * r;
    m.clip = NAN;
    m.sim_time_s = 3.5 * r;
    return m;
}

static void check_round(const fed_round_metrics *a, int r) {
    fed_round_metrics e = round_of(r);
    CHECK_EQ_INT(a->round, r);
    if (r % 2) {
        CHECK(a->test_accuracy == e.test_accuracy);
        CHECK(a->test_loss == e.test_loss);
    } else {
        CHECK(isnan(a->test_accuracy));
        CHECK(isnan(a->test_loss));
    }
    CHECK(a->train_loss_mean == e.train_loss_mean);
    CHECK(a->train_loss_std == e.train_loss_std);
    CHECK(isnan(a->local_accuracy));
    CHECK(a->epsilon == e.epsilon);
    CHECK(isnan(a->clip));
    CHECK(a->sim_time_s == e.sim_time_s);
    CHECK_EQ_INT(a->selected, 10);
    CHECK_EQ_INT(a->finished, 9);
    CHECK_EQ_INT(a->dropped, 1);
    CHECK_EQ_INT(a->bytes_up, e.bytes_up);
    CHECK_EQ_INT(a->bytes_down, e.bytes_down);
    CHECK(a->wall_s == e.wall_s);
}

/* A blob with zero bytes inside, so a strlen anywhere would truncate it. */
static unsigned char *pattern(size_t n, int seed) {
    unsigned char *b = malloc(n ? n : 1);
    CHECK(b != NULL);
    for (size_t i = 0; i < n; i++) b[i] = (unsigned char)(i % 7 == 0 ? 0 : (i * 31 + (size_t)seed) & 0xff);
    return b;
}

static void check_checkpoint(fed_store *s, int64_t run, int want_round, size_t mlen, int mseed, size_t slen, int sseed) {
    int round = -1;
    void *model, *state;
    size_t ml, sl;
    CHECK_OK(fed_store_load_checkpoint(s, run, &round, &model, &ml, &state, &sl));
    CHECK_EQ_INT(round, want_round);
    CHECK_EQ_INT(ml, mlen);
    CHECK_EQ_INT(sl, slen);
    unsigned char *em = pattern(mlen, mseed), *es = pattern(slen, sseed);
    CHECK(memcmp(model, em, mlen) == 0);
    CHECK(memcmp(state, es, slen) == 0);
    free(em); free(es); free(model); free(state);
}

static void check_everything(fed_store *s, int64_t a, int64_t b) {
    /* newest first */
    fed_run_info *runs;
    int n;
    CHECK_OK(fed_store_list_runs(s, &runs, &n));
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_INT(runs[0].id, b);
    CHECK_EQ_INT(runs[1].id, a);
    CHECK(strcmp(runs[1].name, "alpha") == 0);
    CHECK(strcmp(runs[0].name, "beta") == 0);
    CHECK(strcmp(runs[1].status, "finished") == 0);
    CHECK(strcmp(runs[0].status, "running") == 0);
    CHECK(strcmp(runs[0].ended, "") == 0);
    CHECK(strlen(runs[1].ended) == 20 && runs[1].ended[10] == 'T' && runs[1].ended[19] == 'Z');
    CHECK(strlen(runs[1].started) == 20 && runs[1].started[19] == 'Z');
    CHECK(strcmp(runs[1].config_yaml, "seed: 1\nrounds: 5\n") == 0);
    CHECK(strcmp(runs[0].config_yaml, "") == 0);
    /* run a: rounds 1..4 after truncation; 3 is the last evaluated */
    CHECK_EQ_INT(runs[1].rounds_done, 4);
    CHECK(runs[1].final_accuracy == round_of(3).test_accuracy);
    CHECK_EQ_INT(runs[0].rounds_done, 0);
    CHECK(isnan(runs[0].final_accuracy));
    for (int i = 0; i < n; i++) fed_run_info_free(&runs[i]);
    free(runs);

    fed_run_info info;
    CHECK_OK(fed_store_get_run(s, a, &info));
    CHECK_EQ_INT(info.id, a);
    CHECK_EQ_INT(info.rounds_done, 4);
    fed_run_info_free(&info);
    fed_run_info_free(&info);  /* twice is harmless */

    fed_round_metrics *rounds;
    CHECK_OK(fed_store_get_rounds(s, a, &rounds, &n));
    CHECK_EQ_INT(n, 4);
    for (int i = 0; i < n; i++) check_round(&rounds[i], i + 1);
    free(rounds);
    CHECK_OK(fed_store_get_rounds(s, b, &rounds, &n));
    CHECK_EQ_INT(n, 0);
    free(rounds);

    fed_client_metrics *cm;
    CHECK_OK(fed_store_get_clients(s, a, 2, &cm, &n));
    CHECK_EQ_INT(n, 3);
    for (int i = 0; i < n; i++) {
        CHECK_EQ_INT(cm[i].client, i);  /* ordered by client, though written 2, 0, 1 */
        CHECK_EQ_INT(cm[i].round, 2);
        CHECK_EQ_INT(cm[i].num_examples, 600 + i);
        CHECK_EQ_INT(cm[i].steps, 12);
        CHECK_EQ_INT(cm[i].bytes_up, (int64_t)5 << 32);
        CHECK_EQ_INT(cm[i].bytes_down, 7000 + i);
        CHECK_EQ_INT(cm[i].dropped, i == 2);
        if (i == 2) CHECK(isnan(cm[i].train_loss));
        else CHECK(cm[i].train_loss == 0.5 + i);
        CHECK(isnan(cm[i].local_accuracy));
    }
    free(cm);
    /* truncated away */
    CHECK_OK(fed_store_get_clients(s, a, 5, &cm, &n));
    CHECK_EQ_INT(n, 0);
    free(cm);

    char *v;
    CHECK_OK(fed_store_run_get_text(s, a, "confusion", &v));
    CHECK(strcmp(v, "[[1,0],[0,1]]") == 0);
    free(v);

    check_checkpoint(s, a, 4, 100000, 4, 0, 0);
    check_checkpoint(s, b, 1, 1, 9, 3, 8);
}

/* A store written by schema version 1 (before per-round epsilon, clip and
 * simulated time) opens read-only as it is and is upgraded in place when
 * opened for writing, keeping its rounds. */
static void test_upgrade_v1(void) {
    char path[160];
    snprintf(path, sizeof path, "%s/v1.db", dir);
    sqlite3 *db1;
    CHECK(sqlite3_open(path, &db1) == SQLITE_OK);
    CHECK(sqlite3_exec(db1,
                       "CREATE TABLE runs(id INTEGER PRIMARY KEY, name TEXT NOT NULL, status TEXT NOT NULL,"
                       " started TEXT NOT NULL, ended TEXT, config_yaml TEXT);"
                       "CREATE TABLE run_attrs(run_id INTEGER NOT NULL, key TEXT NOT NULL, value TEXT,"
                       " PRIMARY KEY(run_id, key));"
                       "CREATE TABLE rounds(run_id INTEGER NOT NULL, round INTEGER NOT NULL,"
                       " test_accuracy REAL, test_loss REAL, train_loss_mean REAL, train_loss_std REAL,"
                       " local_accuracy REAL, selected INTEGER, finished INTEGER, dropped INTEGER,"
                       " bytes_up INTEGER, bytes_down INTEGER, wall_s REAL, PRIMARY KEY(run_id, round));"
                       "CREATE TABLE clients(run_id INTEGER NOT NULL, round INTEGER NOT NULL, client INTEGER NOT NULL,"
                       " dropped INTEGER, num_examples INTEGER, steps INTEGER, train_loss REAL,"
                       " local_accuracy REAL, bytes_up INTEGER, PRIMARY KEY(run_id, round, client));"
                       "CREATE TABLE checkpoints(run_id INTEGER PRIMARY KEY, round INTEGER NOT NULL, model BLOB,"
                       " state BLOB);"
                       "INSERT INTO runs VALUES(1, 'old', 'finished', '2026-01-01', NULL, 'seed: 1');"
                       "INSERT INTO rounds VALUES(1, 1, 0.9, 0.3, 0.5, 0.1, NULL, 10, 10, 0, 100, 200, 1.5);"
                       "PRAGMA user_version = 1;",
                       NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db1);
    fed_store *ro;
    CHECK_OK(fed_store_open_readonly(&ro, path));
    fed_round_metrics *r;
    int n;
    CHECK_OK(fed_store_get_rounds(ro, 1, &r, &n));
    CHECK_EQ_INT(n, 1);
    CHECK(r[0].test_accuracy == 0.9 && isnan(r[0].epsilon) && isnan(r[0].sim_time_s));
    free(r);
    fed_store_close(ro);
    fed_store *rw;
    CHECK_OK(fed_store_open(&rw, path));
    fed_round_metrics m = round_of(2);
    CHECK_OK(fed_store_add_round(rw, 1, &m));
    CHECK_OK(fed_store_get_rounds(rw, 1, &r, &n));
    CHECK_EQ_INT(n, 2);
    CHECK(r[0].test_accuracy == 0.9 && isnan(r[0].epsilon));
    check_round(&r[1], 2);
    free(r);
    fed_store_close(rw);
    unlink(path);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/federate-store-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    snprintf(db, sizeof db, "%s/runs.db", dir);

    fed_store_close(NULL);
    test_upgrade_v1();

    fed_store *s;
    CHECK_OK(fed_store_open(&s, db));
    int64_t a, b;
    CHECK_OK(fed_store_run_begin(s, "alpha", "seed: 1\nrounds: 5\n", &a));
    CHECK_OK(fed_store_run_begin(s, "beta", NULL, &b));
    CHECK(b > a);

    for (int r = 1; r <= 5; r++) {
        fed_round_metrics m = round_of(r);
        CHECK_OK(fed_store_add_round(s, a, &m));
    }
    /* a redone round replaces the old row */
    fed_round_metrics junk = round_of(2);
    junk.selected = 99;
    CHECK_OK(fed_store_add_round(s, a, &junk));
    junk = round_of(2);
    CHECK_OK(fed_store_add_round(s, a, &junk));

    for (int r = 1; r <= 5; r++) {
        fed_client_metrics c[3];
        int order[3] = {2, 0, 1};
        for (int k = 0; k < 3; k++) {
            int i = order[k];
            memset(&c[k], 0, sizeof c[k]);
            c[k].round = r;
            c[k].client = i;
            c[k].dropped = i == 2;
            c[k].num_examples = 600 + i;
            c[k].steps = 12;
            c[k].train_loss = i == 2 ? NAN : 0.5 + i;
            c[k].local_accuracy = NAN;
            c[k].bytes_up = (int64_t)5 << 32;
            c[k].bytes_down = 7000 + i;
        }
        CHECK_OK(fed_store_add_clients(s, a, c, 3));
    }
    CHECK_OK(fed_store_add_clients(s, a, NULL, 0));

    CHECK_OK(fed_store_run_set_text(s, a, "confusion", "[[0]]"));
    CHECK_OK(fed_store_run_set_text(s, a, "confusion", "[[1,0],[0,1]]"));
    char *v = (char *)1;
    CHECK_EQ_INT(fed_store_run_get_text(s, a, "nope", &v), FED_ENOTFOUND);
    CHECK(v == NULL);

    /* checkpoints: only the latest is kept, blobs come back byte for byte */
    CHECK_EQ_INT(fed_store_load_checkpoint(s, a, &(int){0}, &(void *){0}, &(size_t){0}, &(void *){0}, &(size_t){0}),
                 FED_ENOTFOUND);
    for (int r = 1; r <= 4; r++) {
        unsigned char *m = pattern(100000, r);
        CHECK_OK(fed_store_save_checkpoint(s, a, r, m, 100000, NULL, 0));
        free(m);
    }
    {
        unsigned char *m = pattern(1, 9), *st = pattern(3, 8);
        CHECK_OK(fed_store_save_checkpoint(s, b, 1, m, 1, st, 3));
        free(m); free(st);
    }

    /* a resumed run redoes the rounds after its checkpoint */
    CHECK_OK(fed_store_truncate(s, a, 4));

    CHECK_OK(fed_store_run_set_status(s, a, "failed"));
    CHECK_OK(fed_store_run_set_status(s, a, "running"));
    fed_run_info info;
    CHECK_OK(fed_store_get_run(s, a, &info));
    CHECK(strcmp(info.status, "running") == 0 && info.ended[0] == '\0');
    fed_run_info_free(&info);
    CHECK_OK(fed_store_run_set_status(s, a, "finished"));
    CHECK_EQ_INT(fed_store_run_set_status(s, a, "bogus"), FED_EINVAL);

    check_everything(s, a, b);

    /* a missing run */
    int64_t none = b + 100;
    CHECK_EQ_INT(fed_store_get_run(s, none, &info), FED_ENOTFOUND);
    CHECK(strstr(fed_last_error(), db) != NULL);
    fed_run_info_free(&info);
    fed_round_metrics m1 = round_of(1);
    CHECK_EQ_INT(fed_store_add_round(s, none, &m1), FED_ENOTFOUND);
    CHECK_EQ_INT(fed_store_run_set_status(s, none, "finished"), FED_ENOTFOUND);
    CHECK_EQ_INT(fed_store_run_set_text(s, none, "k", "v"), FED_ENOTFOUND);
    CHECK_EQ_INT(fed_store_run_get_text(s, none, "k", &v), FED_ENOTFOUND);
    CHECK_EQ_INT(fed_store_save_checkpoint(s, none, 1, "x", 1, NULL, 0), FED_ENOTFOUND);
    fed_client_metrics c1 = {.round = 1, .client = 0};
    CHECK_EQ_INT(fed_store_add_clients(s, none, &c1, 1), FED_ENOTFOUND);
    CHECK_EQ_INT(fed_store_truncate(s, none, 0), FED_ENOTFOUND);
    fed_round_metrics *rounds;
    int n;
    CHECK_EQ_INT(fed_store_get_rounds(s, none, &rounds, &n), FED_ENOTFOUND);
    /* the failed calls left no transaction open */
    CHECK_OK(fed_store_run_set_text(s, b, "after", "errors"));
    fed_store_close(s);

    /* reopen and read everything back, read-write and read-only */
    CHECK_OK(fed_store_open(&s, db));
    check_everything(s, a, b);
    fed_store_close(s);
    CHECK_OK(fed_store_open_readonly(&s, db));
    check_everything(s, a, b);
    CHECK_EQ_INT(fed_store_run_set_status(s, a, "failed"), FED_ESTATE);
    CHECK(strcmp(fed_store_path(s), db) == 0);
    fed_store_close(s);

    /* read-only never creates a file */
    char missing[160];
    snprintf(missing, sizeof missing, "%s/missing.db", dir);
    CHECK_EQ_INT(fed_store_open_readonly(&s, missing), FED_EIO);
    CHECK(s == NULL);
    CHECK(strstr(fed_last_error(), missing) != NULL);
    CHECK(access(missing, F_OK) != 0);

    /* a file that is not a database */
    char garbage[160];
    snprintf(garbage, sizeof garbage, "%s/garbage.db", dir);
    FILE *f = fopen(garbage, "wb");
    CHECK(f != NULL);
    for (int i = 0; i < 4096; i++) fputc((i * 131 + 7) & 0xff, f);
    fclose(f);
    CHECK_EQ_INT(fed_store_open(&s, garbage), FED_EFORMAT);
    CHECK(s == NULL);
    CHECK(strstr(fed_last_error(), garbage) != NULL);
    CHECK_EQ_INT(fed_store_open_readonly(&s, garbage), FED_EFORMAT);
    CHECK(strstr(fed_last_error(), garbage) != NULL);

    /* a directory is not a store either */
    CHECK(fed_store_open(&s, dir) != 0);
    CHECK(s == NULL);

    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    TEST_PASS("test_store");
}
