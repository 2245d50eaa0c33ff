/* The experiment store: runs, their per-round and per-client metrics, free-form
 * attributes, the latest checkpoint and the global model of every evaluated
 * round (zstd-compressed, for `federate export --round`), in one SQLite file. Every statement is
 * prepared and bound (no value is ever formatted into SQL); NAN is stored as NULL. */
#include "federate/store.h"
#include "federate/error.h"
#include <errno.h>
#include <math.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <zstd.h>

/* Bump when the schema changes, and teach open_schema() to migrate from the old one. */
#define SCHEMA_VERSION 5
#define STR_(x) #x
#define STR(x) STR_(x)

struct fed_store {
    sqlite3 *db;
    char *path;
    int readonly;
    int64_t version;   /* schema version of the file (a read-only v1 file stays v1) */
};

/* v3: the global model after each evaluated round; raw_len is the size of the
 * safetensors bytes before compression. */
#define ROUND_MODELS_SQL                                                                                             \
    "CREATE TABLE IF NOT EXISTS round_models("                                                                      \
    " run_id INTEGER NOT NULL, round INTEGER NOT NULL, raw_len INTEGER NOT NULL, model BLOB,"                        \
    " PRIMARY KEY(run_id, round));"

/* v5: request nonces a networked coordinator has seen, per client, with the
 * request's timestamp (replay protection that survives a restart). */
#define NONCES_SQL                                                                                                   \
    "CREATE TABLE IF NOT EXISTS nonces("                                                                            \
    " client INTEGER NOT NULL, nonce BLOB NOT NULL, ts INTEGER NOT NULL,"                                           \
    " PRIMARY KEY(client, nonce)) WITHOUT ROWID;"                                                                   \
    "CREATE INDEX IF NOT EXISTS nonces_ts ON nonces(ts);"

static const char schema_sql[] =
    "CREATE TABLE IF NOT EXISTS runs("
    " id INTEGER PRIMARY KEY, name TEXT NOT NULL, status TEXT NOT NULL,"
    " started TEXT NOT NULL, ended TEXT, config_yaml TEXT);"
    "CREATE TABLE IF NOT EXISTS run_attrs("
    " run_id INTEGER NOT NULL, key TEXT NOT NULL, value TEXT,"
    " PRIMARY KEY(run_id, key));"
    "CREATE TABLE IF NOT EXISTS rounds("
    " run_id INTEGER NOT NULL, round INTEGER NOT NULL,"
    " test_accuracy REAL, test_loss REAL, train_loss_mean REAL, train_loss_std REAL,"
    " local_accuracy REAL, selected INTEGER, finished INTEGER, dropped INTEGER,"
    " bytes_up INTEGER, bytes_down INTEGER, wall_s REAL,"
    " epsilon REAL, clip REAL, sim_time_s REAL,"
    " PRIMARY KEY(run_id, round));"
    "CREATE TABLE IF NOT EXISTS clients("
    " run_id INTEGER NOT NULL, round INTEGER NOT NULL, client INTEGER NOT NULL,"
    " dropped INTEGER, num_examples INTEGER, steps INTEGER, train_loss REAL,"
    " local_accuracy REAL, bytes_up INTEGER, bytes_down INTEGER,"
    " PRIMARY KEY(run_id, round, client));"
    "CREATE TABLE IF NOT EXISTS checkpoints("
    " run_id INTEGER PRIMARY KEY, round INTEGER NOT NULL, model BLOB, state BLOB);"
    ROUND_MODELS_SQL
    NONCES_SQL
    "PRAGMA user_version = " STR(SCHEMA_VERSION) ";";

/* ---- errors ---------------------------------------------------------------- */

static int map_sqlite(int src) {
    switch (src & 0xff) {
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT: return FED_EFORMAT;
    case SQLITE_NOMEM: return FED_ENOMEM;
    case SQLITE_TOOBIG: return FED_ERANGE;
    case SQLITE_MISUSE: return FED_EINTERNAL;
    case SQLITE_CONSTRAINT:
    case SQLITE_MISMATCH:
    case SQLITE_RANGE: return FED_EINVAL;
    default: return FED_EIO;
    }
}

/* "PATH: what: SQLite's message" with the code mapped from SQLite's. Called right
 * after the failing call so sqlite3_errmsg still describes it. */
__attribute__((format(printf, 3, 4))) static int db_fail(const fed_store *s, int src, const char *fmt, ...) {
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    const char *msg = s && s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(src);
    return fed_error(map_sqlite(src), "%s: %s: %s", s ? s->path : "?", what, msg);
}

static int check_store(const fed_store *s, int write) {
    if (!s) return fed_error(FED_EINVAL, "experiment store: NULL handle");
    if (write && s->readonly) return fed_error(FED_ESTATE, "%s: the experiment store is open read-only", s->path);
    return 0;
}

/* ---- small helpers --------------------------------------------------------- */

static int prepare(fed_store *s, sqlite3_stmt **st, const char *sql, const char *what) {
    int rc = sqlite3_prepare_v2(s->db, sql, -1, st, NULL);
    if (rc != SQLITE_OK) return db_fail(s, rc, "%s", what);
    return 0;
}

static void bind_real(sqlite3_stmt *st, int i, double v) {
    if (isnan(v)) sqlite3_bind_null(st, i);
    else sqlite3_bind_double(st, i, v);
}

static double col_real(sqlite3_stmt *st, int i) {
    return sqlite3_column_type(st, i) == SQLITE_NULL ? NAN : sqlite3_column_double(st, i);
}

static char *dup_text(sqlite3_stmt *st, int i) {
    const unsigned char *t = sqlite3_column_text(st, i);
    int n = sqlite3_column_bytes(st, i);
    char *out = malloc((size_t)n + 1);
    if (!out) return NULL;
    if (t && n) memcpy(out, t, (size_t)n);
    out[n] = '\0';
    return out;
}

static void copy_text(char *dst, size_t cap, sqlite3_stmt *st, int i) {
    const unsigned char *t = sqlite3_column_text(st, i);
    snprintf(dst, cap, "%s", t ? (const char *)t : "");
}

static void now_iso8601(char out[32]) {
    time_t t = time(NULL);
    struct tm tm;
    if (!gmtime_r(&t, &tm) || !strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm)) snprintf(out, 32, "1970-01-01T00:00:00Z");
}

static int exec(fed_store *s, const char *sql, const char *what) {
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK) return db_fail(s, rc, "%s", what);
    return 0;
}

/* IMMEDIATE takes the write lock up front, so a busy database waits out
 * busy_timeout here instead of failing half-way through a batch. */
static int begin(fed_store *s, const char *what) { return exec(s, "BEGIN IMMEDIATE", what); }
static int commit(fed_store *s, const char *what) { return exec(s, "COMMIT", what); }
static void rollback(fed_store *s) {
    if (!sqlite3_get_autocommit(s->db)) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

/* Runs a statement expected to return at most one integer; *found says whether it did. */
static int query_int(fed_store *s, sqlite3_stmt *st, int64_t *v, int *found, const char *what) {
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *v = sqlite3_column_int64(st, 0);
        *found = 1;
        return 0;
    }
    *found = 0;
    if (rc == SQLITE_DONE) return 0;
    return db_fail(s, rc, "%s", what);
}

static int run_exists(fed_store *s, int64_t run_id) {
    sqlite3_stmt *st;
    int rc = prepare(s, &st, "SELECT 1 FROM runs WHERE id = ?", "cannot look up a run");
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, run_id);
    int64_t one;
    int found;
    rc = query_int(s, st, &one, &found, "cannot look up a run");
    sqlite3_finalize(st);
    if (rc) return rc;
    if (!found) return fed_error(FED_ENOTFOUND, "%s: no run %lld", s->path, (long long)run_id);
    return 0;
}

/* ---- open / close ---------------------------------------------------------- */

static int read_user_version(fed_store *s, int64_t *version) {
    sqlite3_stmt *st;
    /* The first read of the file: a file that is not a database fails here. */
    int rc = sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL);
    if (rc != SQLITE_OK) return db_fail(s, rc, "cannot read the file as an SQLite database");
    int found;
    rc = query_int(s, st, version, &found, "cannot read the file as an SQLite database");
    sqlite3_finalize(st);
    if (!rc && !found) *version = 0;
    return rc;
}

static int count_objects(fed_store *s, int64_t *n) {
    sqlite3_stmt *st;
    int rc = prepare(s, &st, "SELECT count(*) FROM sqlite_master", "cannot read the schema");
    if (rc) return rc;
    int found;
    rc = query_int(s, st, n, &found, "cannot read the schema");
    sqlite3_finalize(st);
    return rc;
}

/* Creates or checks the schema inside one transaction, so two processes opening a
 * fresh file at once cannot both create it, and a crash leaves none or all of it. */
static int open_schema(fed_store *s) {
    int64_t version = 0, objects = 0;
    int rc = read_user_version(s, &version);
    if (rc) return rc;
    if (version > SCHEMA_VERSION)
        return fed_error(FED_EUNSUPPORTED, "%s: experiment store schema version %lld is newer than this federate's (%d)",
                         s->path, (long long)version, SCHEMA_VERSION);
    s->version = SCHEMA_VERSION;
    if (version == SCHEMA_VERSION) return 0;
    if ((rc = begin(s, "cannot create the schema"))) return rc;
    if ((rc = read_user_version(s, &version))) goto fail;
    if (version == 0) {
        if ((rc = count_objects(s, &objects))) goto fail;
        if (objects > 0) {
            rc = fed_error(FED_EFORMAT, "%s: an SQLite database, but not a federate experiment store", s->path);
            goto fail;
        }
        if ((rc = exec(s, schema_sql, "cannot create the schema"))) goto fail;
    } else {
        /* upgrades run one after the other: a v1 file goes through v2 to v3 */
        if (version == 1) {
            /* v2: per-round privacy spent, clip used and simulated time */
            if ((rc = exec(s,
                           "ALTER TABLE rounds ADD COLUMN epsilon REAL;"
                           "ALTER TABLE rounds ADD COLUMN clip REAL;"
                           "ALTER TABLE rounds ADD COLUMN sim_time_s REAL;"
                           "PRAGMA user_version = 2;",
                           "cannot upgrade the schema from version 1")))
                goto fail;
            version = 2;
        }
        if (version == 2) {
            /* v3: per-round global models */
            if ((rc = exec(s, ROUND_MODELS_SQL "PRAGMA user_version = 3;", "cannot upgrade the schema from version 2")))
                goto fail;
            version = 3;
        }
        if (version == 3) {
            /* v4: bytes each client downloaded */
            if ((rc = exec(s, "ALTER TABLE clients ADD COLUMN bytes_down INTEGER; PRAGMA user_version = 4;",
                           "cannot upgrade the schema from version 3")))
                goto fail;
            version = 4;
        }
        if (version == 4) {
            /* v5: nonces seen by a coordinator */
            if ((rc = exec(s, NONCES_SQL "PRAGMA user_version = 5;", "cannot upgrade the schema from version 4")))
                goto fail;
        }
    }
    if ((rc = commit(s, "cannot create the schema"))) goto fail;
    return 0;
fail:
    rollback(s);
    return rc;
}

/* A read-only store never writes, so it only checks that the schema is ours. */
static int check_schema_readonly(fed_store *s) {
    int64_t version = 0;
    int rc = read_user_version(s, &version);
    if (rc) return rc;
    if (version > SCHEMA_VERSION)
        return fed_error(FED_EUNSUPPORTED, "%s: experiment store schema version %lld is newer than this federate's (%d)",
                         s->path, (long long)version, SCHEMA_VERSION);
    if (version < 1) return fed_error(FED_EFORMAT, "%s: not a federate experiment store", s->path);
    s->version = version;
    return 0;
}

static int store_open(fed_store **out, const char *path, int readonly) {
    if (!out) return fed_error(FED_EINVAL, "experiment store: NULL output pointer");
    *out = NULL;
    if (!path || !*path) return fed_error(FED_EINVAL, "experiment store: empty database path");
    if (readonly) {
        /* SQLite's "unable to open database file" does not say why; a missing file
         * is the common case, so name it. */
        struct stat sb;
        if (stat(path, &sb) != 0)
            return fed_error(FED_EIO, "%s: %s", path, strerror(errno));
        if (S_ISDIR(sb.st_mode)) return fed_error(FED_EIO, "%s: is a directory, not an experiment store", path);
    }
    fed_store *s = calloc(1, sizeof *s);
    if (!s) return fed_error(FED_ENOMEM, "%s: out of memory", path);
    s->path = strdup(path);
    s->readonly = readonly;
    if (!s->path) {
        free(s);
        return fed_error(FED_ENOMEM, "%s: out of memory", path);
    }
    int flags = readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    int rc = sqlite3_open_v2(path, &s->db, flags, NULL);
    if (rc != SQLITE_OK) {
        rc = db_fail(s, rc, "cannot open");
        goto fail;
    }
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, 5000);
    if (readonly) {
        if ((rc = check_schema_readonly(s))) goto fail;
    } else {
        /* WAL lets a `federate runs` reader look at a run while it trains; with WAL,
         * synchronous=NORMAL stays consistent after a crash and saves an fsync per
         * commit (a power cut may lose the last commits, never corrupt the file). */
        /* refuse someone else's database before switching its journal mode */
        int64_t version = 0, objects = 0;
        if ((rc = read_user_version(s, &version))) goto fail;
        if (version == 0 && (rc = count_objects(s, &objects))) goto fail;
        if (objects > 0) {
            rc = fed_error(FED_EFORMAT, "%s: an SQLite database, but not a federate experiment store", path);
            goto fail;
        }
        if ((rc = exec(s, "PRAGMA journal_mode=WAL", "cannot switch to WAL mode"))) goto fail;
        if ((rc = exec(s, "PRAGMA synchronous=NORMAL", "cannot set synchronous mode"))) goto fail;
        if ((rc = open_schema(s))) goto fail;
    }
    *out = s;
    return 0;
fail:
    fed_store_close(s);
    return rc;
}

int fed_store_open(fed_store **out, const char *path) { return store_open(out, path, 0); }

int fed_store_open_readonly(fed_store **out, const char *path) { return store_open(out, path, 1); }

void fed_store_close(fed_store *s) {
    if (!s) return;
    sqlite3_close_v2(s->db);
    free(s->path);
    free(s);
}

const char *fed_store_path(const fed_store *s) { return s ? s->path : ""; }

/* ---- runs ------------------------------------------------------------------ */

int fed_store_run_begin(fed_store *s, const char *name, const char *config_yaml, int64_t *run_id) {
    int rc = check_store(s, 1);
    if (rc) return rc;
    if (!run_id) return fed_error(FED_EINVAL, "%s: run_begin: NULL run_id", s->path);
    char now[32];
    now_iso8601(now);
    sqlite3_stmt *st;
    if ((rc = prepare(s, &st, "INSERT INTO runs(name, status, started, ended, config_yaml) VALUES(?, 'running', ?, NULL, ?)",
                      "cannot record a new run")))
        return rc;
    sqlite3_bind_text(st, 1, name ? name : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, now, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, config_yaml ? config_yaml : "", -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc != SQLITE_DONE) rc = db_fail(s, rc, "cannot record a new run");
    else {
        *run_id = sqlite3_last_insert_rowid(s->db);
        rc = 0;
    }
    sqlite3_finalize(st);
    return rc;
}

static int valid_status(const char *st) {
    static const char *const ok[] = {"running", "finished", "failed", "interrupted"};
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
        if (strcmp(st, ok[i]) == 0) return 1;
    return 0;
}

int fed_store_run_set_status(fed_store *s, int64_t run_id, const char *status) {
    int rc = check_store(s, 1);
    if (rc) return rc;
    if (!status || !valid_status(status))
        return fed_error(FED_EINVAL, "%s: invalid run status '%s' (expected running, finished, failed or interrupted)",
                         s->path, status ? status : "(null)");
    char now[32];
    now_iso8601(now);
    sqlite3_stmt *st;
    if ((rc = prepare(s, &st, "UPDATE runs SET status = ?, ended = ? WHERE id = ?", "cannot update the run status")))
        return rc;
    sqlite3_bind_text(st, 1, status, -1, SQLITE_STATIC);
    /* a resumed run is running again: it has no end yet */
    if (strcmp(status, "running") == 0) sqlite3_bind_null(st, 2);
    else sqlite3_bind_text(st, 2, now, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, run_id);
    rc = sqlite3_step(st);
    if (rc != SQLITE_DONE) rc = db_fail(s, rc, "cannot update the status of run %lld", (long long)run_id);
    else if (sqlite3_changes(s->db) == 0) rc = fed_error(FED_ENOTFOUND, "%s: no run %lld", s->path, (long long)run_id);
    else rc = 0;
    sqlite3_finalize(st);
    return rc;
}

int fed_store_run_set_text(fed_store *s, int64_t run_id, const char *key, const char *value) {
    int rc = check_store(s, 1);
    if (rc) return rc;
    if (!key || !*key) return fed_error(FED_EINVAL, "%s: run attribute with an empty key", s->path);
    sqlite3_stmt *st;
    /* the EXISTS guard makes "no such run" visible as zero changes, in one statement */
    if ((rc = prepare(s, &st,
                      "INSERT OR REPLACE INTO run_attrs(run_id, key, value) "
                      "SELECT ?1, ?2, ?3 WHERE EXISTS(SELECT 1 FROM runs WHERE id = ?1)",
                      "cannot record a run attribute")))
        return rc;
    sqlite3_bind_int64(st, 1, run_id);
    sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, value ? value : "", -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc != SQLITE_DONE) rc = db_fail(s, rc, "cannot record attribute '%s' of run %lld", key, (long long)run_id);
    else if (sqlite3_changes(s->db) == 0) rc = fed_error(FED_ENOTFOUND, "%s: no run %lld", s->path, (long long)run_id);
    else rc = 0;
    sqlite3_finalize(st);
    return rc;
}

int fed_store_run_get_text(fed_store *s, int64_t run_id, const char *key, char **value) {
    int rc = check_store(s, 0);
    if (rc) return rc;
    if (!key || !value) return fed_error(FED_EINVAL, "%s: run_get_text: NULL key or value", s->path);
    *value = NULL;
    sqlite3_stmt *st;
    if ((rc = prepare(s, &st, "SELECT value FROM run_attrs WHERE run_id = ? AND key = ?", "cannot read a run attribute")))
        return rc;
    sqlite3_bind_int64(st, 1, run_id);
    sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *value = dup_text(st, 0);
        rc = *value ? 0 : fed_error(FED_ENOMEM, "%s: out of memory reading attribute '%s'", s->path, key);
    } else if (rc == SQLITE_DONE) {
        sqlite3_finalize(st);
        if ((rc = run_exists(s, run_id))) return rc;
        return fed_error(FED_ENOTFOUND, "%s: run %lld has no attribute '%s'", s->path, (long long)run_id, key);
    } else {
        rc = db_fail(s, rc, "cannot read attribute '%s' of run %lld", key, (long long)run_id);
    }
    sqlite3_finalize(st);
    return rc;
}

/* ---- metrics --------------------------------------------------------------- */

int fed_store_add_round(fed_store *s, int64_t run_id, const fed_round_metrics *m) {
    int rc = check_store(s, 1);
    if (rc) return rc;
    if (!m) return fed_error(FED_EINVAL, "%s: add_round: NULL metrics", s->path);
    if (m->round < 0) return fed_error(FED_EINVAL, "%s: add_round: negative round %d", s->path, m->round);
    sqlite3_stmt *st;
    /* OR REPLACE: a resumed run redoes the rounds after its checkpoint */
    if ((rc = prepare(s, &st,
                      "INSERT OR REPLACE INTO rounds(run_id, round, test_accuracy, test_loss, train_loss_mean,"
                      " train_loss_std, local_accuracy, selected, finished, dropped, bytes_up, bytes_down, wall_s,"
                      " epsilon, clip, sim_time_s) "
                      "SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16 "
                      "WHERE EXISTS(SELECT 1 FROM runs WHERE id = ?1)",
                      "cannot record a round")))
        return rc;
    sqlite3_bind_int64(st, 1, run_id);
    sqlite3_bind_int(st, 2, m->round);
    bind_real(st, 3, m->test_accuracy);
    bind_real(st, 4, m->test_loss);
    bind_real(st, 5, m->train_loss_mean);
    bind_real(st, 6, m->train_loss_std);
    bind_real(st, 7, m->local_accuracy);
    sqlite3_bind_int(st, 8, m->selected);
    sqlite3_bind_int(st, 9, m->finished);
    sqlite3_bind_int(st, 10, m->dropped);
    sqlite3_bind_int64(st, 11, m->bytes_up);
    sqlite3_bind_int64(st, 12, m->bytes_down);
    bind_real(st, 13, m->wall_s);
    bind_real(st, 14, m->epsilon);
    bind_real(st, 15, m->clip);
    bind_real(st, 16, m->sim_time_s);
    rc = sqlite3_step(st);
    if (rc != SQLITE_DONE) rc = db_fail(s, rc, "cannot record round %d of run %lld", m->round, (long long)run_id);
    else if (sqlite3_changes(s->db) == 0) rc = fed_error(FED_ENOTFOUND, "%s: no run %lld", s->path, (long long)run_id);
    else rc = 0;
    sqlite3_finalize(st);
    return rc;
}

int fed_store_add_clients(fed_store *s, int64_t run_id, const fed_client_metrics *c, int n) {
    int rc = check_store(s, 1);
    if (rc) return rc;
    if (n < 0 || (n > 0 && !c)) return fed_error(FED_EINVAL, "%s: add_clients: bad batch (%d clients)", s->path, n);
    if (n == 0) return 0;
    /* one transaction: one fsync for the whole round instead of one per client */
    if ((rc = begin(s, "cannot record client metrics"))) return rc;
    sqlite3_stmt *st = NULL;
    if ((rc = run_exists(s, run_id))) goto fail;
    if ((rc = prepare(s, &st,
                      "INSERT OR REPLACE INTO clients(run_id, round, client, dropped, num_examples, steps,"
                      " train_loss, local_accuracy, bytes_up, bytes_down) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      "cannot record client metrics")))
        goto fail;
    for (int i = 0; i < n; i++) {
        const fed_client_metrics *x = &c[i];
        sqlite3_bind_int64(st, 1, run_id);
        sqlite3_bind_int(st, 2, x->round);
        sqlite3_bind_int(st, 3, x->client);
        sqlite3_bind_int(st, 4, x->dropped);
        sqlite3_bind_int64(st, 5, x->num_examples);
        sqlite3_bind_int64(st, 6, x->steps);
        bind_real(st, 7, x->train_loss);
        bind_real(st, 8, x->local_accuracy);
        sqlite3_bind_int64(st, 9, x->bytes_up);
        sqlite3_bind_int64(st, 10, x->bytes_down);
        int r = sqlite3_step(st);
        if (r != SQLITE_DONE) {
            rc = db_fail(s, r, "cannot record client %d of round %d of run %lld", x->client, x->round,
                         (long long)run_id);
            goto fail;
        }
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    st = NULL;
    if ((rc = commit(s, "cannot record client metrics"))) goto fail;
    return 0;
fail:
    sqlite3_finalize(st);
    rollback(s);
    return rc;
}

int fed_store_truncate(fed_store *s, int64_t run_id, int round) {
    int rc = check_store(s, 1);
    if (rc) return rc;
    /* Checkpoints are left alone: the driver truncates back to its checkpoint. */
    static const char *const sql[] = {
        "DELETE FROM rounds WHERE run_id = ? AND round > ?",
        "DELETE FROM clients WHERE run_id = ? AND round > ?",
        "DELETE FROM round_models WHERE run_id = ? AND round > ?",
    };
    if ((rc = begin(s, "cannot truncate a run"))) return rc;
    if ((rc = run_exists(s, run_id))) goto fail;
    for (size_t i = 0; i < sizeof sql / sizeof *sql; i++) {
        sqlite3_stmt *st;
        if ((rc = prepare(s, &st, sql[i], "cannot truncate a run"))) goto fail;
        sqlite3_bind_int64(st, 1, run_id);
        sqlite3_bind_int(st, 2, round);
        int r = sqlite3_step(st);
        if (r != SQLITE_DONE) rc = db_fail(s, r, "cannot truncate run %lld after round %d", (long long)run_id, round);
        sqlite3_finalize(st);
        if (rc) goto fail;
    }
    if ((rc = commit(s, "cannot truncate a run"))) goto fail;
    return 0;
fail:
    rollback(s);
    return rc;
}

/* ---- checkpoints ----------------------------------------------------------- */

/* A zero-length blob must stay a blob: sqlite3_bind_blob with a NULL pointer binds NULL. */
static int bind_bytes(sqlite3_stmt *st, int i, const void *p, size_t len) {
    if (len == 0) return sqlite3_bind_zeroblob(st, i, 0);
    return sqlite3_bind_blob64(st, i, p, (sqlite3_uint64)len, SQLITE_STATIC);
}

int fed_store_save_checkpoint(fed_store *s, int64_t run_id, int round, const void *model, size_t model_len,
                              const void *state, size_t state_len) {
    int rc = check_store(s, 1);
    if (rc) return rc;
    if ((model_len && !model) || (state_len && !state))
        return fed_error(FED_EINVAL, "%s: save_checkpoint: NULL buffer with a non-zero length", s->path);
    /* One transaction replaces the old row: a crash (even kill -9) at any point
     * leaves either the previous checkpoint or this one, never a mix. */
    if ((rc = begin(s, "cannot save a checkpoint"))) return rc;
    sqlite3_stmt *st = NULL;
    if ((rc = run_exists(s, run_id))) goto fail;
    if ((rc = prepare(s, &st, "INSERT OR REPLACE INTO checkpoints(run_id, round, model, state) VALUES(?, ?, ?, ?)",
                      "cannot save a checkpoint")))
        goto fail;
    sqlite3_bind_int64(st, 1, run_id);
    sqlite3_bind_int(st, 2, round);
    int r = bind_bytes(st, 3, model, model_len);
    if (r == SQLITE_OK) r = bind_bytes(st, 4, state, state_len);
    if (r != SQLITE_OK) {
        rc = db_fail(s, r, "cannot save the checkpoint of run %lld (%zu + %zu bytes)", (long long)run_id, model_len,
                     state_len);
        goto fail;
    }
    r = sqlite3_step(st);
    if (r != SQLITE_DONE) {
        rc = db_fail(s, r, "cannot save the checkpoint of run %lld at round %d", (long long)run_id, round);
        goto fail;
    }
    sqlite3_finalize(st);
    st = NULL;
    if ((rc = commit(s, "cannot save a checkpoint"))) goto fail;
    return 0;
fail:
    sqlite3_finalize(st);
    rollback(s);
    return rc;
}

static int copy_blob(fed_store *s, sqlite3_stmt *st, int i, void **out, size_t *len) {
    const void *p = sqlite3_column_blob(st, i);
    size_t n = (size_t)sqlite3_column_bytes(st, i);
    /* never NULL on success, so callers can free() without a special case */
    void *buf = malloc(n ? n : 1);
    if (!buf) return fed_error(FED_ENOMEM, "%s: out of memory loading a %zu-byte checkpoint", s->path, n);
    if (n) memcpy(buf, p, n);
    *out = buf;
    *len = n;
    return 0;
}

int fed_store_load_checkpoint(fed_store *s, int64_t run_id, int *round, void **model, size_t *model_len,
                              void **state, size_t *state_len) {
    int rc = check_store(s, 0);
    if (rc) return rc;
    if (model) *model = NULL;
    if (state) *state = NULL;
    if (model_len) *model_len = 0;
    if (state_len) *state_len = 0;
    if ((model && !model_len) || (state && !state_len))
        return fed_error(FED_EINVAL, "%s: load_checkpoint: a buffer without its length", s->path);
    sqlite3_stmt *st;
    if ((rc = prepare(s, &st, "SELECT round, model, state FROM checkpoints WHERE run_id = ?", "cannot load a checkpoint")))
        return rc;
    sqlite3_bind_int64(st, 1, run_id);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW) {
        if (round) *round = sqlite3_column_int(st, 0);
        if (model) rc = copy_blob(s, st, 1, model, model_len);
        if (!rc && state) rc = copy_blob(s, st, 2, state, state_len);
        if (rc && model) {
            free(*model);
            *model = NULL;
            *model_len = 0;
        }
    } else if (r == SQLITE_DONE) {
        rc = fed_error(FED_ENOTFOUND, "%s: run %lld has no checkpoint", s->path, (long long)run_id);
    } else {
        rc = db_fail(s, r, "cannot load the checkpoint of run %lld", (long long)run_id);
    }
    sqlite3_finalize(st);
    return rc;
}

/* ---- queries --------------------------------------------------------------- */

#define RUN_COLUMNS                                                                                                  \
    "SELECT id, name, status, started, COALESCE(ended, ''), config_yaml,"                                           \
    " (SELECT MAX(round) FROM rounds r WHERE r.run_id = runs.id),"                                                  \
    " (SELECT test_accuracy FROM rounds r WHERE r.run_id = runs.id AND test_accuracy IS NOT NULL"                   \
    "  ORDER BY round DESC LIMIT 1) FROM runs "

static int read_run(fed_store *s, sqlite3_stmt *st, fed_run_info *info) {
    memset(info, 0, sizeof *info);
    info->id = sqlite3_column_int64(st, 0);
    copy_text(info->name, sizeof info->name, st, 1);
    copy_text(info->status, sizeof info->status, st, 2);
    copy_text(info->started, sizeof info->started, st, 3);
    copy_text(info->ended, sizeof info->ended, st, 4);
    info->rounds_done = sqlite3_column_int(st, 6);
    info->final_accuracy = col_real(st, 7);
    info->config_yaml = dup_text(st, 5);
    if (!info->config_yaml) return fed_error(FED_ENOMEM, "%s: out of memory reading run %lld", s->path, (long long)info->id);
    return 0;
}

int fed_store_get_run(fed_store *s, int64_t run_id, fed_run_info *info) {
    if (info) memset(info, 0, sizeof *info);  /* fed_run_info_free is safe after a failure */
    int rc = check_store(s, 0);
    if (rc) return rc;
    if (!info) return fed_error(FED_EINVAL, "%s: get_run: NULL info", s->path);
    sqlite3_stmt *st;
    if ((rc = prepare(s, &st, RUN_COLUMNS "WHERE id = ?", "cannot read a run"))) return rc;
    sqlite3_bind_int64(st, 1, run_id);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW) rc = read_run(s, st, info);
    else if (r == SQLITE_DONE) rc = fed_error(FED_ENOTFOUND, "%s: no run %lld", s->path, (long long)run_id);
    else rc = db_fail(s, r, "cannot read run %lld", (long long)run_id);
    sqlite3_finalize(st);
    if (rc) fed_run_info_free(info);
    return rc;
}

void fed_run_info_free(fed_run_info *info) {
    if (!info) return;
    free(info->config_yaml);
    info->config_yaml = NULL;
}

/* Grows *buf (of *cap elements of size sz) to hold at least need elements. */
static int grow(void **buf, int *cap, int need, size_t sz) {
    if (need <= *cap) return 0;
    int nc = *cap ? *cap * 2 : 16;
    while (nc < need) nc *= 2;
    void *p = realloc(*buf, (size_t)nc * sz);
    if (!p) return -1;
    *buf = p;
    *cap = nc;
    return 0;
}

int fed_store_list_runs(fed_store *s, fed_run_info **runs, int *n) {
    int rc = check_store(s, 0);
    if (rc) return rc;
    if (!runs || !n) return fed_error(FED_EINVAL, "%s: list_runs: NULL output", s->path);
    *runs = NULL;
    *n = 0;
    sqlite3_stmt *st;
    /* ids only grow (runs are never deleted), so newest first is id descending */
    if ((rc = prepare(s, &st, RUN_COLUMNS "ORDER BY id DESC", "cannot list runs"))) return rc;
    fed_run_info *v = NULL;
    int cnt = 0, cap = 0, r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        if (grow((void **)&v, &cap, cnt + 1, sizeof *v)) {
            rc = fed_error(FED_ENOMEM, "%s: out of memory listing runs", s->path);
            break;
        }
        if ((rc = read_run(s, st, &v[cnt]))) break;
        cnt++;
    }
    if (!rc && r != SQLITE_DONE) rc = db_fail(s, r, "cannot list runs");
    sqlite3_finalize(st);
    if (rc) {
        for (int i = 0; i < cnt; i++) fed_run_info_free(&v[i]);
        free(v);
        return rc;
    }
    *runs = v;
    *n = cnt;
    return 0;
}

int fed_store_get_rounds(fed_store *s, int64_t run_id, fed_round_metrics **rounds, int *n) {
    int rc = check_store(s, 0);
    if (rc) return rc;
    if (!rounds || !n) return fed_error(FED_EINVAL, "%s: get_rounds: NULL output", s->path);
    *rounds = NULL;
    *n = 0;
    if ((rc = run_exists(s, run_id))) return rc;
    sqlite3_stmt *st;
    if ((rc = prepare(s, &st,
                      s->version >= 2
                          ? "SELECT round, test_accuracy, test_loss, train_loss_mean, train_loss_std, local_accuracy,"
                            " selected, finished, dropped, bytes_up, bytes_down, wall_s, epsilon, clip, sim_time_s"
                            " FROM rounds WHERE run_id = ? ORDER BY round"
                          : "SELECT round, test_accuracy, test_loss, train_loss_mean, train_loss_std, local_accuracy,"
                            " selected, finished, dropped, bytes_up, bytes_down, wall_s, NULL, NULL, NULL"
                            " FROM rounds WHERE run_id = ? ORDER BY round",
                      "cannot read rounds")))
        return rc;
    sqlite3_bind_int64(st, 1, run_id);
    fed_round_metrics *v = NULL;
    int cnt = 0, cap = 0, r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        if (grow((void **)&v, &cap, cnt + 1, sizeof *v)) {
            rc = fed_error(FED_ENOMEM, "%s: out of memory reading rounds", s->path);
            break;
        }
        fed_round_metrics *m = &v[cnt++];
        m->round = sqlite3_column_int(st, 0);
        m->test_accuracy = col_real(st, 1);
        m->test_loss = col_real(st, 2);
        m->train_loss_mean = col_real(st, 3);
        m->train_loss_std = col_real(st, 4);
        m->local_accuracy = col_real(st, 5);
        m->selected = sqlite3_column_int(st, 6);
        m->finished = sqlite3_column_int(st, 7);
        m->dropped = sqlite3_column_int(st, 8);
        m->bytes_up = sqlite3_column_int64(st, 9);
        m->bytes_down = sqlite3_column_int64(st, 10);
        m->wall_s = col_real(st, 11);
        m->epsilon = col_real(st, 12);
        m->clip = col_real(st, 13);
        m->sim_time_s = col_real(st, 14);
    }
    if (!rc && r != SQLITE_DONE) rc = db_fail(s, r, "cannot read the rounds of run %lld", (long long)run_id);
    sqlite3_finalize(st);
    if (rc) {
        free(v);
        return rc;
    }
    *rounds = v;
    *n = cnt;
    return 0;
}

int fed_store_get_clients(fed_store *s, int64_t run_id, int round, fed_client_metrics **clients, int *n) {
    int rc = check_store(s, 0);
    if (rc) return rc;
    if (!clients || !n) return fed_error(FED_EINVAL, "%s: get_clients: NULL output", s->path);
    *clients = NULL;
    *n = 0;
    if ((rc = run_exists(s, run_id))) return rc;
    sqlite3_stmt *st;
    if ((rc = prepare(s, &st,
                      s->version >= 4
                          ? "SELECT round, client, dropped, num_examples, steps, train_loss, local_accuracy, bytes_up,"
                            " bytes_down FROM clients WHERE run_id = ? AND round = ? ORDER BY client"
                          : "SELECT round, client, dropped, num_examples, steps, train_loss, local_accuracy, bytes_up,"
                            " 0 FROM clients WHERE run_id = ? AND round = ? ORDER BY client",
                      "cannot read client metrics")))
        return rc;
    sqlite3_bind_int64(st, 1, run_id);
    sqlite3_bind_int(st, 2, round);
    fed_client_metrics *v = NULL;
    int cnt = 0, cap = 0, r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        if (grow((void **)&v, &cap, cnt + 1, sizeof *v)) {
            rc = fed_error(FED_ENOMEM, "%s: out of memory reading client metrics", s->path);
            break;
        }
        fed_client_metrics *c = &v[cnt++];
        c->round = sqlite3_column_int(st, 0);
        c->client = sqlite3_column_int(st, 1);
        c->dropped = sqlite3_column_int(st, 2);
        c->num_examples = (long)sqlite3_column_int64(st, 3);
        c->steps = (long)sqlite3_column_int64(st, 4);
        c->train_loss = col_real(st, 5);
        c->local_accuracy = col_real(st, 6);
        c->bytes_up = sqlite3_column_int64(st, 7);
        c->bytes_down = sqlite3_column_int64(st, 8);
    }
    if (!rc && r != SQLITE_DONE)
        rc = db_fail(s, r, "cannot read the clients of round %d of run %lld", round, (long long)run_id);
    sqlite3_finalize(st);
    if (rc) {
        free(v);
        return rc;
    }
    *clients = v;
    *n = cnt;
    return 0;
}

/* ---- per-round models (schema v3) ------------------------------------------ */

int fed_store_save_round_model(fed_store *s, int64_t run_id, int round, const void *model, size_t len) {
    int rc = check_store(s, 1);
    if (rc) return rc;
    if (!model || !len) return fed_error(FED_EINVAL, "%s: save_round_model: empty model", s->path);
    if (round < 0) return fed_error(FED_EINVAL, "%s: save_round_model: negative round %d", s->path, round);
    size_t cap = ZSTD_compressBound(len);
    void *z = malloc(cap);
    if (!z) return fed_error(FED_ENOMEM, "%s: out of memory compressing a %zu-byte model", s->path, len);
    /* level 1: float weights barely compress, so spend little time trying */
    size_t zlen = ZSTD_compress(z, cap, model, len, 1);
    if (ZSTD_isError(zlen)) {
        free(z);
        return fed_error(FED_EINTERNAL, "%s: cannot compress the model of round %d: %s", s->path, round,
                         ZSTD_getErrorName(zlen));
    }
    sqlite3_stmt *st;
    if ((rc = prepare(s, &st,
                      "INSERT OR REPLACE INTO round_models(run_id, round, raw_len, model) "
                      "SELECT ?1, ?2, ?3, ?4 WHERE EXISTS(SELECT 1 FROM runs WHERE id = ?1)",
                      "cannot save a round's model"))) {
        free(z);
        return rc;
    }
    sqlite3_bind_int64(st, 1, run_id);
    sqlite3_bind_int(st, 2, round);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)len);
    int r = sqlite3_bind_blob64(st, 4, z, (sqlite3_uint64)zlen, SQLITE_STATIC);
    if (r == SQLITE_OK) r = sqlite3_step(st);
    if (r != SQLITE_DONE)
        rc = db_fail(s, r, "cannot save the model of round %d of run %lld", round, (long long)run_id);
    else if (sqlite3_changes(s->db) == 0)
        rc = fed_error(FED_ENOTFOUND, "%s: no run %lld", s->path, (long long)run_id);
    sqlite3_finalize(st);
    free(z);
    return rc;
}

int fed_store_round_model_rounds(fed_store *s, int64_t run_id, int **rounds, int *n) {
    int rc = check_store(s, 0);
    if (rc) return rc;
    if (!rounds || !n) return fed_error(FED_EINVAL, "%s: round_model_rounds: NULL output", s->path);
    *rounds = NULL;
    *n = 0;
    if ((rc = run_exists(s, run_id))) return rc;
    if (s->version < 3) return 0;  /* an older file opened read-only keeps no per-round models */
    sqlite3_stmt *st;
    if ((rc = prepare(s, &st, "SELECT round FROM round_models WHERE run_id = ? ORDER BY round",
                      "cannot list the rounds' models")))
        return rc;
    sqlite3_bind_int64(st, 1, run_id);
    int *v = NULL, cnt = 0, cap = 0, r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        if (grow((void **)&v, &cap, cnt + 1, sizeof *v)) {
            rc = fed_error(FED_ENOMEM, "%s: out of memory listing the rounds' models", s->path);
            break;
        }
        v[cnt++] = sqlite3_column_int(st, 0);
    }
    if (!rc && r != SQLITE_DONE) rc = db_fail(s, r, "cannot list the models of run %lld", (long long)run_id);
    sqlite3_finalize(st);
    if (rc) {
        free(v);
        return rc;
    }
    *rounds = v;
    *n = cnt;
    return 0;
}

/* "1, 2, 3" or "none", for the error about a round without a model. */
static void rounds_list(fed_store *s, int64_t run_id, char *buf, size_t cap) {
    int *v = NULL, n = 0;
    snprintf(buf, cap, "none");
    if (fed_store_round_model_rounds(s, run_id, &v, &n) || n == 0) {
        free(v);
        return;
    }
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && len + 16 < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%d", i ? ", " : "", v[i]);
    if (len + 16 >= cap) snprintf(buf + len, cap - len, ", ...");
    free(v);
}

int fed_store_load_round_model(fed_store *s, int64_t run_id, int round, void **model, size_t *len) {
    int rc = check_store(s, 0);
    if (rc) return rc;
    if (!model || !len) return fed_error(FED_EINVAL, "%s: load_round_model: NULL output", s->path);
    *model = NULL;
    *len = 0;
    if ((rc = run_exists(s, run_id))) return rc;
    if (s->version < 3)
        return fed_error(FED_ENOTFOUND, "%s: run %lld has no model for round %d (the store predates per-round models)",
                         s->path, (long long)run_id, round);
    sqlite3_stmt *st;
    if ((rc = prepare(s, &st, "SELECT raw_len, model FROM round_models WHERE run_id = ? AND round = ?",
                      "cannot load a round's model")))
        return rc;
    sqlite3_bind_int64(st, 1, run_id);
    sqlite3_bind_int(st, 2, round);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW) {
        sqlite3_int64 raw = sqlite3_column_int64(st, 0);
        const void *z = sqlite3_column_blob(st, 1);
        size_t zlen = (size_t)sqlite3_column_bytes(st, 1);
        unsigned long long fsz = z ? ZSTD_getFrameContentSize(z, zlen) : ZSTD_CONTENTSIZE_ERROR;
        /* the recorded size must match the frame's, so a damaged row cannot ask for a huge buffer */
        if (raw <= 0 || fsz == ZSTD_CONTENTSIZE_ERROR || fsz == ZSTD_CONTENTSIZE_UNKNOWN || fsz != (unsigned long long)raw) {
            rc = fed_error(FED_EFORMAT, "%s: the stored model of round %d of run %lld is damaged", s->path, round,
                           (long long)run_id);
        } else {
            void *buf = malloc((size_t)raw);
            if (!buf) {
                rc = fed_error(FED_ENOMEM, "%s: out of memory loading a %lld-byte model", s->path, (long long)raw);
            } else {
                size_t got = ZSTD_decompress(buf, (size_t)raw, z, zlen);
                if (ZSTD_isError(got) || got != (size_t)raw) {
                    free(buf);
                    rc = fed_error(FED_EFORMAT, "%s: the stored model of round %d of run %lld is damaged", s->path,
                                   round, (long long)run_id);
                } else {
                    *model = buf;
                    *len = got;
                }
            }
        }
    } else if (r == SQLITE_DONE) {
        char avail[256];
        rounds_list(s, run_id, avail, sizeof avail);
        rc = fed_error(FED_ENOTFOUND, "%s: run %lld has no model for round %d (rounds with a model: %s)", s->path,
                       (long long)run_id, round, avail);
    } else {
        rc = db_fail(s, r, "cannot load the model of round %d of run %lld", round, (long long)run_id);
    }
    sqlite3_finalize(st);
    return rc;
}

/* ---- request nonces (schema v5) -------------------------------------------- */

int fed_store_nonce_record(fed_store *s, int client, const void *nonce, size_t len, int64_t ts, int *seen) {
    int rc = check_store(s, 1);
    if (rc) return rc;
    *seen = 0;
    if (!nonce || len < 1 || len > 64) return fed_error(FED_EINVAL, "%s: a nonce is 1..64 bytes, not %zu", s->path, len);
    if (s->version < 5) return fed_error(FED_ESTATE, "%s: schema version %lld has no nonces table", s->path, (long long)s->version);
    sqlite3_stmt *st;
    /* one statement: two requests with the same nonce cannot both get in */
    if ((rc = prepare(s, &st, "INSERT OR IGNORE INTO nonces(client, nonce, ts) VALUES(?, ?, ?)", "cannot record a nonce")))
        return rc;
    sqlite3_bind_int(st, 1, client);
    sqlite3_bind_blob(st, 2, nonce, (int)len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, ts);
    int r = sqlite3_step(st);
    if (r != SQLITE_DONE) rc = db_fail(s, r, "cannot record a nonce of client %d", client);
    else *seen = sqlite3_changes(s->db) == 0;
    sqlite3_finalize(st);
    return rc;
}

int fed_store_nonce_forget(fed_store *s, int64_t before) {
    int rc = check_store(s, 1);
    if (rc) return rc;
    if (s->version < 5) return 0;
    sqlite3_stmt *st;
    if ((rc = prepare(s, &st, "DELETE FROM nonces WHERE ts < ?", "cannot forget old nonces"))) return rc;
    sqlite3_bind_int64(st, 1, before);
    int r = sqlite3_step(st);
    if (r != SQLITE_DONE) rc = db_fail(s, r, "cannot forget old nonces");
    sqlite3_finalize(st);
    return rc;
}
