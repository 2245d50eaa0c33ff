/* Keeps docs/config.md complete and true: every key in fed_config_keys has a row
 * "| `key` | type | `default` | ..." whose type, default and listed values match the
 * table, and no row documents a key that no longer exists. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "federate/config.h"
#include "federate/error.h"

/* Repository root: $FEDERATE_SOURCE_DIR, else two levels up from this file. */
static const char *source_dir(void) {
    const char *e = getenv("FEDERATE_SOURCE_DIR");
    if (e && *e) return e;
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s", __FILE__);
    char *p = strrchr(buf, '/');
    if (!p) return "..";
    *p = '\0';
    p = strrchr(buf, '/');
    if (!p) return ".";
    *p = '\0';
    return buf;
}

static char *read_all(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s (set FEDERATE_SOURCE_DIR)\n", path);
        exit(1);
    }
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    CHECK(buf != NULL);
    size_t got;
    while ((got = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += got;
        if (len + 1 == cap) {
            cap *= 2;
            char *nb = realloc(buf, cap);
            CHECK(nb != NULL);
            buf = nb;
        }
    }
    fclose(f);
    buf[len] = '\0';
    return buf;
}

/* Trims blanks in place. */
static char *trim(char *s) {
    while (*s == ' ') s++;
    size_t n = strlen(s);
    while (n && s[n - 1] == ' ') s[--n] = '\0';
    return s;
}

static int fail(const char *key, const char *what, const char *row) {
    fprintf(stderr, "docs/config.md, key '%s': %s\n  row: %s\n", key, what, row);
    return 1;
}

int main(void) {
    char path[4200];
    snprintf(path, sizeof path, "%s/docs/config.md", source_dir());
    char *doc = read_all(path);
    size_t n;
    const fed_config_key *keys = fed_config_keys(&n);
    fed_config def;
    fed_config_default(&def);
    int bad = 0;

    for (size_t i = 0; i < n; i++) {
        const fed_config_key *k = &keys[i];
        char tick[80], rowstart[90];
        snprintf(tick, sizeof tick, "`%s`", k->name);
        snprintf(rowstart, sizeof rowstart, "\n| `%s` |", k->name);
        if (!strstr(doc, tick)) {
            fprintf(stderr, "docs/config.md does not mention %s\n", tick);
            bad = 1;
            continue;
        }
        const char *r = strstr(doc, rowstart);
        if (!r) {
            fprintf(stderr, "docs/config.md has no table row for %s\n", tick);
            bad = 1;
            continue;
        }
        r++;
        const char *eol = strchr(r, '\n');
        size_t rl = eol ? (size_t)(eol - r) : strlen(r);
        char row[1024];
        snprintf(row, sizeof row, "%.*s", (int)rl, r);
        if (strstr(r + rl, rowstart)) bad |= fail(k->name, "documented twice", row);

        /* Columns: | key | type | default | allowed | meaning | */
        char cols[1024];
        snprintf(cols, sizeof cols, "%s", row);
        char *col[6] = {0};
        int nc = 0;
        /* Split on '|' but not on the escaped "\|" that separates listed values. */
        char *start = NULL;
        for (char *q = cols; *q && nc < 6; q++) {
            if (*q != '|' || (q > cols && q[-1] == '\\')) continue;
            *q = '\0';
            if (start) col[nc++] = trim(start);
            start = q + 1;
        }
        if (nc < 5) {
            bad |= fail(k->name, "row has fewer than 5 columns", row);
            continue;
        }
        if (strcmp(col[1], fed_config_type_name(k->type))) bad |= fail(k->name, "type column is wrong", row);
        char val[600], want[610];
        CHECK_OK(fed_config_format_value(&def, k, val, sizeof val));
        snprintf(want, sizeof want, "`%s`", val[0] ? val : "\"\"");
        if (strcmp(col[2], want)) {
            char msg[700];
            snprintf(msg, sizeof msg, "default column should be %s", want);
            bad |= fail(k->name, msg, row);
        }
        if (k->choices)
            for (const char *const *ch = k->choices; *ch; ch++) {
                char c[64];
                snprintf(c, sizeof c, "`%s`", *ch);
                if (!strstr(col[3], c)) bad |= fail(k->name, "allowed column misses a value", row);
            }
    }

    /* The reverse: every key-table row (one whose second column is a type) names
     * a real key. Other tables, e.g. of strategies, may start rows with `x` too. */
    for (const char *p = strstr(doc, "\n| `"); p; p = strstr(p + 1, "\n| `")) {
        const char *b = p + 4, *e = strchr(b, '`');
        if (!e) break;
        char name[128], type[32] = "";
        snprintf(name, sizeof name, "%.*s", (int)(e - b), b);
        if (sscanf(e + 1, " | %31[a-z0-9] |", type) != 1) continue;
        int is_type = 0;
        for (int t = FED_CONFIG_INT; t <= FED_CONFIG_BOOL; t++) is_type |= !strcmp(type, fed_config_type_name(t));
        if (is_type && !fed_config_find_key(name)) {
            fprintf(stderr, "docs/config.md documents '%s', which is not a key\n", name);
            bad = 1;
        }
    }
    free(doc);
    CHECK(!bad);
    TEST_PASS("test_config_docs");
}
