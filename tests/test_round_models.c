/* Per-round models in the experiment store (schema v3): a v2 and a v1 file open
 * read-only as they are and are upgraded in place when opened for writing;
 * round models round-trip, a missing round names the rounds that exist,
 * truncation drops later ones, a damaged row is an error. And the report
 * module's exports on top: the final and a given round's model, and for an
 * unknown run, an empty run, damaged bytes or an unwritable path a clear error
 * with no file left behind. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "check.h"
#include <sqlite3.h>
#include "federate/error.h"
#include "federate/model.h"
#include "federate/report.h"
#include "federate/safetensors.h"
#include "federate/store.h"

static char dir[64];

static unsigned char *pattern(size_t n, int seed) {
    unsigned char *b = malloc(n ? n : 1);
    CHECK(b != NULL);
    for (size_t i = 0; i < n; i++) b[i] = (unsigned char)(i % 5 == 0 ? 0 : (i * 13 + (size_t)seed) & 0xff);
    return b;
}

static int64_t user_version(const char *path) {
    sqlite3 *db;
    CHECK(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
    sqlite3_stmt *st;
    CHECK(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(st) == SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static void exec_sql(const char *path, const char *sql) {
    sqlite3 *db;
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        fprintf(stderr, "sql: %s\n", err);
        exit(1);
    }
    sqlite3_close(db);
}

static const char v1_tables[] =
    "CREATE TABLE runs(id INTEGER PRIMARY KEY, name TEXT NOT NULL, status TEXT NOT NULL,"
    " started TEXT NOT NULL, ended TEXT, config_yaml TEXT);"
    "CREATE TABLE run_attrs(run_id INTEGER NOT NULL, key TEXT NOT NULL, value TEXT, PRIMARY KEY(run_id, key));"
    "CREATE TABLE clients(run_id INTEGER NOT NULL, round INTEGER NOT NULL, client INTEGER NOT NULL,"
    " dropped INTEGER, num_examples INTEGER, steps INTEGER, train_loss REAL,"
    " local_accuracy REAL, bytes_up INTEGER, PRIMARY KEY(run_id, round, client));"
    "CREATE TABLE checkpoints(run_id INTEGER PRIMARY KEY, round INTEGER NOT NULL, model BLOB, state BLOB);"
    "INSERT INTO runs VALUES(1, 'old', 'finished', '2026-01-01', NULL, 'seed: 1');";

/* An older store: read-only it stays as it is (no round models), opened for
 * writing it becomes v3 with its rows kept and round models working. */
static void test_upgrade(int from) {
    char path[160], sql[2048];
    snprintf(path, sizeof path, "%s/v%d.db", dir, from);
    snprintf(sql, sizeof sql,
             "%s CREATE TABLE rounds(run_id INTEGER NOT NULL, round INTEGER NOT NULL,"
             " test_accuracy REAL, test_loss REAL, train_loss_mean REAL, train_loss_std REAL,"
             " local_accuracy REAL, selected INTEGER, finished INTEGER, dropped INTEGER,"
             " bytes_up INTEGER, bytes_down INTEGER, wall_s REAL%s, PRIMARY KEY(run_id, round));"
             "INSERT INTO rounds(run_id, round, test_accuracy, test_loss, selected) VALUES(1, 1, 0.9, 0.3, 10);"
             "PRAGMA user_version = %d;",
             v1_tables, from >= 2 ? ", epsilon REAL, clip REAL, sim_time_s REAL" : "", from);
    exec_sql(path, sql);

    fed_store *ro;
    CHECK_OK(fed_store_open_readonly(&ro, path));
    int *rounds = NULL, n = -1;
    CHECK_OK(fed_store_round_model_rounds(ro, 1, &rounds, &n));
    CHECK_EQ_INT(n, 0);
    free(rounds);
    void *buf;
    size_t len;
    CHECK_EQ_INT(fed_store_load_round_model(ro, 1, 1, &buf, &len), FED_ENOTFOUND);
    CHECK(strstr(fed_last_error(), "round 1") != NULL);
    fed_round_metrics *r;
    CHECK_OK(fed_store_get_rounds(ro, 1, &r, &n));
    CHECK_EQ_INT(n, 1);
    CHECK(r[0].test_accuracy == 0.9 && isnan(r[0].epsilon));
    free(r);
    CHECK_EQ_INT(fed_store_save_round_model(ro, 1, 1, "x", 1), FED_ESTATE);
    fed_store_close(ro);
    CHECK_EQ_INT(user_version(path), from);

    fed_store *rw;
    CHECK_OK(fed_store_open(&rw, path));
    CHECK_EQ_INT(user_version(path), 5);
    unsigned char *m = pattern(5000, from);
    CHECK_OK(fed_store_save_round_model(rw, 1, 1, m, 5000));
    CHECK_OK(fed_store_load_round_model(rw, 1, 1, &buf, &len));
    CHECK_EQ_INT(len, 5000);
    CHECK(memcmp(buf, m, 5000) == 0);
    free(buf);
    free(m);
    CHECK_OK(fed_store_get_rounds(rw, 1, &r, &n));
    CHECK_EQ_INT(n, 1);
    CHECK(r[0].test_accuracy == 0.9 && r[0].selected == 10);
    free(r);
    fed_store_close(rw);
    /* reopening a v3 file changes nothing */
    CHECK_OK(fed_store_open(&rw, path));
    CHECK_OK(fed_store_round_model_rounds(rw, 1, &rounds, &n));
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(rounds[0], 1);
    free(rounds);
    fed_store_close(rw);
    unlink(path);
}

static void test_round_models(void) {
    char path[160];
    snprintf(path, sizeof path, "%s/runs.db", dir);
    fed_store *s;
    CHECK_OK(fed_store_open(&s, path));
    CHECK_EQ_INT(user_version(path), 5);
    int64_t a, b;
    CHECK_OK(fed_store_run_begin(s, "a", "seed: 1\n", &a));
    CHECK_OK(fed_store_run_begin(s, "b", "seed: 2\n", &b));
    for (int r = 1; r <= 3; r++) {
        unsigned char *m = pattern(1000u * (size_t)r + 7, r);
        CHECK_OK(fed_store_save_round_model(s, a, r, m, 1000u * (size_t)r + 7));
        free(m);
    }
    /* replacing a round (a resumed run redoes it) */
    unsigned char *m2 = pattern(333, 99);
    CHECK_OK(fed_store_save_round_model(s, a, 2, m2, 333));
    for (int r = 1; r <= 3; r++) {
        void *buf;
        size_t len;
        CHECK_OK(fed_store_load_round_model(s, a, r, &buf, &len));
        size_t want = r == 2 ? 333 : 1000u * (size_t)r + 7;
        unsigned char *e = r == 2 ? m2 : pattern(want, r);
        CHECK_EQ_INT(len, want);
        CHECK(memcmp(buf, e, want) == 0);
        if (e != m2) free(e);
        free(buf);
    }
    free(m2);
    void *buf = (void *)1;
    size_t len = 1;
    CHECK_EQ_INT(fed_store_load_round_model(s, a, 5, &buf, &len), FED_ENOTFOUND);
    CHECK(buf == NULL && len == 0);
    CHECK(strstr(fed_last_error(), "round 5") && strstr(fed_last_error(), "1, 2, 3"));
    CHECK_EQ_INT(fed_store_load_round_model(s, b, 1, &buf, &len), FED_ENOTFOUND);
    CHECK(strstr(fed_last_error(), "none") != NULL);
    CHECK_EQ_INT(fed_store_load_round_model(s, 77, 1, &buf, &len), FED_ENOTFOUND);
    CHECK_EQ_INT(fed_store_save_round_model(s, 77, 1, "x", 1), FED_ENOTFOUND);
    CHECK_EQ_INT(fed_store_save_round_model(s, a, 1, NULL, 0), FED_EINVAL);
    CHECK_EQ_INT(fed_store_save_round_model(s, a, -1, "x", 1), FED_EINVAL);

    CHECK_OK(fed_store_truncate(s, a, 2));
    int *rounds, n;
    CHECK_OK(fed_store_round_model_rounds(s, a, &rounds, &n));
    CHECK_EQ_INT(n, 2);
    CHECK(rounds[0] == 1 && rounds[1] == 2);
    free(rounds);
    fed_store_close(s);

    /* a damaged row: an error, not a crash or a huge allocation */
    exec_sql(path, "UPDATE round_models SET model = x'00112233' WHERE round = 1;"
                   "UPDATE round_models SET raw_len = 1000000000000 WHERE round = 2;");
    CHECK_OK(fed_store_open_readonly(&s, path));
    CHECK_EQ_INT(fed_store_load_round_model(s, a, 1, &buf, &len), FED_EFORMAT);
    CHECK_EQ_INT(fed_store_load_round_model(s, a, 2, &buf, &len), FED_EFORMAT);
    fed_store_close(s);
    unlink(path);
}

static int count_files(const char *d) {
    DIR *dp = opendir(d);
    CHECK(dp != NULL);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dp)))
        if (e->d_name[0] != '.') n++;
    closedir(dp);
    return n;
}

static void test_export(void) {
    char path[160], out[400], outdir[200];
    snprintf(path, sizeof path, "%s/export.db", dir);
    snprintf(outdir, sizeof outdir, "%s/out", dir);
    CHECK(mkdir(outdir, 0700) == 0);
    fed_store *s;
    CHECK_OK(fed_store_open(&s, path));
    int64_t run, empty, bad;
    CHECK_OK(fed_store_run_begin(s, "run", "seed: 1\n", &run));
    CHECK_OK(fed_store_run_begin(s, "empty", "seed: 1\n", &empty));
    CHECK_OK(fed_store_run_begin(s, "bad", "seed: 1\n", &bad));
    fed_model_opts o;
    fed_model_opts_default(&o);
    o.hidden[0] = 8;
    o.n_hidden = 1;
    fed_model *m;
    CHECK_OK(fed_model_create(&m, "mlp", &o));
    void *r1, *r2;
    size_t l1, l2;
    fed_model_init_params(m, 1);
    CHECK_OK(fed_model_serialize(m, &r1, &l1));
    fed_model_init_params(m, 2);
    CHECK_OK(fed_model_serialize(m, &r2, &l2));
    CHECK_OK(fed_store_save_round_model(s, run, 1, r1, l1));
    CHECK_OK(fed_store_save_round_model(s, run, 2, r2, l2));
    CHECK_OK(fed_store_save_round_model(s, bad, 1, "not safetensors", 15));
    fed_round_metrics rm;
    memset(&rm, 0, sizeof rm);
    rm.round = 1;
    rm.test_accuracy = rm.test_loss = rm.train_loss_mean = rm.train_loss_std = rm.local_accuracy = NAN;
    rm.wall_s = rm.epsilon = rm.clip = rm.sim_time_s = NAN;
    CHECK_OK(fed_store_add_round(s, run, &rm));
    rm.round = 2;
    CHECK_OK(fed_store_add_round(s, run, &rm));

    /* final = the newest model: round 2 (no checkpoint) */
    int got = 0;
    snprintf(out, sizeof out, "%s/final.safetensors", outdir);
    CHECK_OK(fed_report_export(s, run, 0, out, &got));
    CHECK_EQ_INT(got, 2);
    fed_model_init_params(m, 7);
    CHECK_OK(fed_model_load(m, out));
    size_t np = fed_model_num_params(m);
    float *loaded = malloc(np * sizeof *loaded);
    CHECK(loaded != NULL);
    memcpy(loaded, fed_model_params(m), np * sizeof *loaded);
    fed_model_init_params(m, 2);
    CHECK(memcmp(loaded, fed_model_params(m), np * sizeof *loaded) == 0);
    free(loaded);
    fed_st_file *f;
    CHECK_OK(fed_st_open(out, &f));
    CHECK(fed_st_find(f, "fc1.weight") != NULL);
    fed_st_close(f);
    /* a newer checkpoint wins over the round models */
    CHECK_OK(fed_store_save_checkpoint(s, run, 3, r1, l1, "st", 2));
    CHECK_OK(fed_report_export(s, run, 0, out, &got));
    CHECK_EQ_INT(got, 3);
    /* a given round: its bytes exactly */
    snprintf(out, sizeof out, "%s/r1.safetensors", outdir);
    CHECK_OK(fed_report_export(s, run, 1, out, &got));
    CHECK_EQ_INT(got, 1);
    FILE *fp = fopen(out, "rb");
    CHECK(fp != NULL);
    unsigned char *back = malloc(l1 + 1);
    CHECK(fread(back, 1, l1 + 1, fp) == l1);
    fclose(fp);
    CHECK(memcmp(back, r1, l1) == 0);
    free(back);
    CHECK_EQ_INT(count_files(outdir), 2);

    /* errors leave nothing behind */
    snprintf(out, sizeof out, "%s/x.safetensors", outdir);
    CHECK_EQ_INT(fed_report_export(s, run, 7, out, &got), FED_ENOTFOUND);
    CHECK(strstr(fed_last_error(), "1, 2") != NULL);
    CHECK_EQ_INT(fed_report_export(s, 99, 0, out, &got), FED_ENOTFOUND);
    CHECK_EQ_INT(fed_report_export(s, empty, 0, out, &got), FED_ENOTFOUND);
    CHECK(strstr(fed_last_error(), "no stored model") != NULL);
    CHECK_EQ_INT(fed_report_export(s, bad, 1, out, &got), FED_EFORMAT);
    CHECK_EQ_INT(fed_report_html(s, empty, out), FED_ENOTFOUND);
    CHECK_EQ_INT(fed_report_html(s, 99, out), FED_ENOTFOUND);
    int64_t ids[2] = {run, empty};
    CHECK_EQ_INT(fed_report_plot(s, &ids[1], 1, outdir, NULL, NULL), FED_ENOTFOUND);
    CHECK_EQ_INT(fed_report_plot(s, ids, 0, outdir, NULL, NULL), FED_EINVAL);
    snprintf(out, sizeof out, "%s/missing/x.safetensors", outdir);
    CHECK_EQ_INT(fed_report_export(s, run, 1, out, &got), FED_EIO);
    CHECK(strstr(fed_last_error(), "missing/x.safetensors") != NULL);
    CHECK_EQ_INT(count_files(outdir), 2);

    /* the html report of a run without metrics still renders */
    snprintf(out, sizeof out, "%s/r.html", outdir);
    CHECK_OK(fed_report_html(s, run, out));
    CHECK_EQ_INT(count_files(outdir), 3);

    free(r1);
    free(r2);
    fed_model_free(m);
    fed_store_close(s);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", outdir);
    CHECK(system(cmd) == 0);
    unlink(path);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/federate-rmodels-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    test_upgrade(1);
    test_upgrade(2);
    test_round_models();
    test_export();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    TEST_PASS("round_models");
}
