/* Client identity: Ed25519 key files, and the coordinator's allow-list of
 * enrolled public keys in SQLite. Nonce and round checks live with the
 * coordinator's state (coordinator.c); the signed text is in wire.c. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>
#include "federate/error.h"
#include "federate/net.h"

#define KEY_MAGIC "federate-ed25519-secret-key"

int fed_keyfile_write(const char *path, const uint8_t sk[FED_SIGN_SECRETKEYBYTES]) {
    char hex[2 * FED_SIGN_SECRETKEYBYTES + 1];
    fed_hex_encode(hex, sk, FED_SIGN_SECRETKEYBYTES);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        fed_crypto_wipe(hex, sizeof hex);
        return fed_error(FED_EIO, "key file %s: %s", path, strerror(errno));
    }
    fchmod(fd, 0600);
    char text[sizeof KEY_MAGIC + sizeof hex + 4];
    int n = snprintf(text, sizeof text, "%s\n%s\n", KEY_MAGIC, hex);
    ssize_t w = write(fd, text, (size_t)n);
    int cr = close(fd);
    fed_crypto_wipe(hex, sizeof hex);
    fed_crypto_wipe(text, sizeof text);
    if (w != n || cr) return fed_error(FED_EIO, "key file %s: write failed", path);
    return 0;
}

static int read_small(const char *path, char *buf, size_t size) {
    FILE *f = fopen(path, "rb");
    if (!f) return fed_error(FED_EIO, "key file %s: %s", path, strerror(errno));
    size_t n = fread(buf, 1, size - 1, f);
    int big = fgetc(f) != EOF;
    fclose(f);
    buf[n] = '\0';
    if (big) return fed_error(FED_EFORMAT, "key file %s: too large to be a key", path);
    return 0;
}

int fed_keyfile_read(const char *path, uint8_t sk[FED_SIGN_SECRETKEYBYTES], uint8_t pk[FED_SIGN_PUBLICKEYBYTES]) {
    char buf[512];
    int rc = read_small(path, buf, sizeof buf);
    if (rc) return rc;
    char *p = buf;
    if (strncmp(p, KEY_MAGIC, strlen(KEY_MAGIC)) != 0) {
        fed_crypto_wipe(buf, sizeof buf);
        return fed_error(FED_EFORMAT, "key file %s: does not start with '%s' (made by `federate keygen`)", path, KEY_MAGIC);
    }
    p += strlen(KEY_MAGIC);
    while (*p == '\n' || *p == '\r' || *p == ' ') p++;
    char hex[2 * FED_SIGN_SECRETKEYBYTES + 1];
    size_t n = 0;
    while (n < sizeof hex - 1 && p[n] && p[n] != '\n' && p[n] != '\r') n++;
    memcpy(hex, p, n);
    hex[n] = '\0';
    rc = fed_hex_decode(sk, FED_SIGN_SECRETKEYBYTES, hex);
    fed_crypto_wipe(buf, sizeof buf);
    fed_crypto_wipe(hex, sizeof hex);
    if (rc) return fed_error(FED_EFORMAT, "key file %s: the key is not 128 hex digits", path);
    return fed_sign_sk_to_pk(pk, sk);
}

int fed_public_key_parse(const char *s, uint8_t pk[FED_SIGN_PUBLICKEYBYTES]) {
    if (!s) return fed_error(FED_EINVAL, "no public key given");
    if (strlen(s) == 2 * FED_SIGN_PUBLICKEYBYTES && fed_hex_decode(pk, FED_SIGN_PUBLICKEYBYTES, s) == 0) return 0;
    struct stat st;
    if (stat(s, &st) != 0)
        return fed_error(FED_EFORMAT, "public key '%.80s' is neither 64 hex digits nor a readable file", s);
    char buf[512];
    int rc = read_small(s, buf, sizeof buf);
    if (rc) return rc;
    if (strncmp(buf, KEY_MAGIC, strlen(KEY_MAGIC)) == 0) {
        uint8_t sk[FED_SIGN_SECRETKEYBYTES];
        fed_crypto_wipe(buf, sizeof buf);
        rc = fed_keyfile_read(s, sk, pk);
        fed_crypto_wipe(sk, sizeof sk);
        return rc;
    }
    /* a .pub file: 64 hex digits, maybe after "public_key: " */
    char *p = strstr(buf, "public_key:");
    p = p ? p + strlen("public_key:") : buf;
    while (*p == ' ') p++;
    char hex[2 * FED_SIGN_PUBLICKEYBYTES + 1];
    size_t n = 0;
    while (n < sizeof hex - 1 && p[n] && p[n] != '\n' && p[n] != '\r' && p[n] != ' ') n++;
    memcpy(hex, p, n);
    hex[n] = '\0';
    if (n != 2 * FED_SIGN_PUBLICKEYBYTES || fed_hex_decode(pk, FED_SIGN_PUBLICKEYBYTES, hex))
        return fed_error(FED_EFORMAT, "public key file %s: expected 64 hex digits", s);
    return 0;
}

/* ---- allow-list ------------------------------------------------------------- */

struct fed_allowlist {
    sqlite3 *db;
};

int fed_allowlist_open(fed_allowlist **out, const char *path) {
    fed_allowlist *a = calloc(1, sizeof *a);
    if (!a) return fed_error(FED_ENOMEM, "allow-list: out of memory");
    if (sqlite3_open_v2(path, &a->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL) != SQLITE_OK) {
        int rc = fed_error(FED_EIO, "allow-list %s: %s", path, a->db ? sqlite3_errmsg(a->db) : "cannot open");
        sqlite3_close(a->db);
        free(a);
        return rc;
    }
    sqlite3_busy_timeout(a->db, 5000);
    char *err = NULL;
    if (sqlite3_exec(a->db,
                     "CREATE TABLE IF NOT EXISTS fed_enrolled (client INTEGER PRIMARY KEY, public_key TEXT NOT NULL, "
                     "enrolled TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ','now')))",
                     NULL, NULL, &err) != SQLITE_OK) {
        int rc = fed_error(FED_EIO, "allow-list %s: %s", path, err ? err : "cannot create the table");
        sqlite3_free(err);
        sqlite3_close(a->db);
        free(a);
        return rc;
    }
    *out = a;
    return 0;
}

void fed_allowlist_close(fed_allowlist *a) {
    if (!a) return;
    sqlite3_close(a->db);
    free(a);
}

int fed_allowlist_enroll(fed_allowlist *a, int client, const uint8_t pk[FED_SIGN_PUBLICKEYBYTES]) {
    if (client < 0) return fed_error(FED_EINVAL, "client id %d is negative", client);
    char hex[2 * FED_SIGN_PUBLICKEYBYTES + 1];
    fed_hex_encode(hex, pk, FED_SIGN_PUBLICKEYBYTES);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(a->db, "INSERT OR REPLACE INTO fed_enrolled (client, public_key) VALUES (?, ?)", -1, &st,
                           NULL) != SQLITE_OK)
        return fed_error(FED_EIO, "allow-list: %s", sqlite3_errmsg(a->db));
    sqlite3_bind_int(st, 1, client);
    sqlite3_bind_text(st, 2, hex, -1, SQLITE_TRANSIENT);
    int r = sqlite3_step(st);
    sqlite3_finalize(st);
    if (r != SQLITE_DONE) return fed_error(FED_EIO, "allow-list: %s", sqlite3_errmsg(a->db));
    return 0;
}

int fed_allowlist_get(fed_allowlist *a, int client, uint8_t pk[FED_SIGN_PUBLICKEYBYTES]) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(a->db, "SELECT public_key FROM fed_enrolled WHERE client = ?", -1, &st, NULL) != SQLITE_OK)
        return fed_error(FED_EIO, "allow-list: %s", sqlite3_errmsg(a->db));
    sqlite3_bind_int(st, 1, client);
    int rc;
    if (sqlite3_step(st) == SQLITE_ROW) {
        const char *hex = (const char *)sqlite3_column_text(st, 0);
        rc = hex && fed_hex_decode(pk, FED_SIGN_PUBLICKEYBYTES, hex) == 0
                 ? 0
                 : fed_error(FED_EFORMAT, "allow-list: client %d has a damaged key", client);
    } else {
        rc = fed_error(FED_ENOTFOUND, "client %d is not enrolled", client);
    }
    sqlite3_finalize(st);
    return rc;
}

int fed_allowlist_count(fed_allowlist *a) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(a->db, "SELECT count(*) FROM fed_enrolled", -1, &st, NULL) != SQLITE_OK) return 0;
    int n = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
    sqlite3_finalize(st);
    return n;
}
