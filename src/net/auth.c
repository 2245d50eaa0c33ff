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

int fed_allowlist_export(fed_allowlist *a, const char *path, int *count) {
    if (count) *count = 0;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(a->db, "SELECT client, public_key FROM fed_enrolled ORDER BY client", -1, &st, NULL) !=
        SQLITE_OK)
        return fed_error(FED_EIO, "allow-list: %s", sqlite3_errmsg(a->db));
    FILE *f = fopen(path, "w");
    if (!f) {
        int rc = fed_error(FED_EIO, "peer keys %s: %s", path, strerror(errno));
        sqlite3_finalize(st);
        return rc;
    }
    int n = 0, rc = 0, r;
    fprintf(f, "# federate peer keys: CLIENT_ID ED25519_PUBLIC_KEY (federate client --peer-keys)\n");
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        int client = sqlite3_column_int(st, 0);
        const char *hex = (const char *)sqlite3_column_text(st, 1);
        uint8_t pk[FED_SIGN_PUBLICKEYBYTES];
        if (!hex || fed_hex_decode(pk, sizeof pk, hex)) {
            rc = fed_error(FED_EFORMAT, "allow-list: client %d has a damaged key", client);
            break;
        }
        char h[2 * FED_SIGN_PUBLICKEYBYTES + 1];
        fed_hex_encode(h, pk, sizeof pk);
        fprintf(f, "%d %s\n", client, h);
        n++;
    }
    if (!rc && r != SQLITE_DONE) rc = fed_error(FED_EIO, "allow-list: %s", sqlite3_errmsg(a->db));
    sqlite3_finalize(st);
    if (fclose(f) && !rc) rc = fed_error(FED_EIO, "peer keys %s: write failed", path);
    if (!rc && count) *count = n;
    return rc;
}

/* ---- pinned peer keys ----------------------------------------------------------- */

struct fed_peer_keys {
    int n;
    int *id;                                 /* ascending */
    uint8_t (*pk)[FED_SIGN_PUBLICKEYBYTES];
    char *path;
};

void fed_peer_keys_free(fed_peer_keys *k) {
    if (!k) return;
    free(k->id);
    free(k->pk);
    free(k->path);
    free(k);
}

static int find_peer(const fed_peer_keys *k, int client) {
    int lo = 0, hi = k->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        if (k->id[mid] == client) return mid;
        if (k->id[mid] < client) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

int fed_peer_keys_read(fed_peer_keys **out, const char *path) {
    *out = NULL;
    if (!path) return fed_error(FED_EINVAL, "peer keys: no file given");
    FILE *f = fopen(path, "r");
    if (!f) return fed_error(FED_EIO, "peer keys %s: %s", path, strerror(errno));
    fed_peer_keys *k = calloc(1, sizeof *k);
    int cap = 0, rc = 0, line = 0;
    char buf[512];
    if (!k || !(k->path = strdup(path))) {
        rc = fed_error(FED_ENOMEM, "peer keys: out of memory");
        goto out;
    }
    while (fgets(buf, sizeof buf, f)) {
        line++;
        size_t l = strlen(buf);
        if (l == sizeof buf - 1 && buf[l - 1] != '\n') {
            rc = fed_error(FED_EFORMAT, "peer keys %s line %d: too long", path, line);
            goto out;
        }
        while (l && (buf[l - 1] == '\n' || buf[l - 1] == '\r' || buf[l - 1] == ' ' || buf[l - 1] == '\t')) buf[--l] = 0;
        char *p = buf;
        while (*p == ' ' || *p == '\t') p++;
        if (!*p || *p == '#') continue;
        char *end;
        errno = 0;
        long id = strtol(p, &end, 10);
        if (end == p || errno || id < 0 || id > (1L << 30) || (*end != ' ' && *end != '\t')) {
            rc = fed_error(FED_EFORMAT, "peer keys %s line %d: expected \"CLIENT_ID HEX\" with a client id >= 0", path,
                           line);
            goto out;
        }
        while (*end == ' ' || *end == '\t') end++;
        uint8_t pk[FED_SIGN_PUBLICKEYBYTES];
        if (strlen(end) != 2 * FED_SIGN_PUBLICKEYBYTES || fed_hex_decode(pk, sizeof pk, end)) {
            rc = fed_error(FED_EFORMAT, "peer keys %s line %d: client %ld's key is not 64 hex digits", path, line, id);
            goto out;
        }
        if (k->n == cap) {
            int nc = cap ? 2 * cap : 64;
            int *ni = realloc(k->id, (size_t)nc * sizeof *ni);
            if (ni) k->id = ni;
            uint8_t (*np)[FED_SIGN_PUBLICKEYBYTES] = ni ? realloc(k->pk, (size_t)nc * sizeof *np) : NULL;
            if (!ni || !np) {
                rc = fed_error(FED_ENOMEM, "peer keys: out of memory");
                goto out;
            }
            k->pk = np;
            cap = nc;
        }
        /* insert in order (the file is usually sorted: this is an append) */
        int at = k->n;
        while (at > 0 && k->id[at - 1] > id) at--;
        if (at > 0 && k->id[at - 1] == id) {
            rc = fed_error(FED_EFORMAT, "peer keys %s line %d: client %ld appears twice", path, line, id);
            goto out;
        }
        memmove(k->id + at + 1, k->id + at, (size_t)(k->n - at) * sizeof *k->id);
        memmove(k->pk + at + 1, k->pk + at, (size_t)(k->n - at) * sizeof *k->pk);
        k->id[at] = (int)id;
        memcpy(k->pk[at], pk, sizeof pk);
        k->n++;
    }
    if (ferror(f)) rc = fed_error(FED_EIO, "peer keys %s: read failed", path);
    else if (!k->n) rc = fed_error(FED_EFORMAT, "peer keys %s: no keys (one line \"CLIENT_ID HEX\" per client)", path);
out:
    fclose(f);
    if (rc) {
        fed_peer_keys_free(k);
        return rc;
    }
    *out = k;
    return 0;
}

int fed_peer_keys_get(const fed_peer_keys *k, int client, uint8_t pk[FED_SIGN_PUBLICKEYBYTES]) {
    int i = k ? find_peer(k, client) : -1;
    if (i < 0) return fed_error(FED_ENOTFOUND, "peer keys %s: no key for client %d", k ? k->path : "(none)", client);
    memcpy(pk, k->pk[i], FED_SIGN_PUBLICKEYBYTES);
    return 0;
}

int fed_peer_keys_count(const fed_peer_keys *k) { return k ? k->n : 0; }

const char *fed_peer_keys_path(const fed_peer_keys *k) { return k ? k->path : ""; }
