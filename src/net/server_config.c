/* server.yaml: an ordinary run config (every top-level key is a fed_config
 * key, see docs/config.md) plus a `server:` mapping with the coordinator's own
 * settings (listen address, certificates, deadlines, limits). The run config
 * alone is what the store records, so a resumed run is the same run. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>
#include "federate/error.h"
#include "federate/net.h"

void fed_server_opts_default(fed_server_opts *so) {
    memset(so, 0, sizeof *so);
    snprintf(so->listen, sizeof so->listen, "127.0.0.1:8443");
    snprintf(so->cert, sizeof so->cert, "certs/server.pem");
    snprintf(so->key, sizeof so->key, "certs/server-key.pem");
    snprintf(so->store, sizeof so->store, "federate.db");
    snprintf(so->allow_list, sizeof so->allow_list, "clients.db");
    so->round_timeout = 60;
    so->round_retries = 2;
    so->over_selection = 0;
    so->register_timeout = 600;
    so->max_body_bytes = 64ll << 20;
    so->max_update_norm = 0;
    so->long_poll = 20;
    so->autostart = 1;
}

typedef struct skey {
    const char *name;
    int type;          /* 0 string, 1 double, 2 int, 3 bool, 4 int64 */
    size_t off, size;
    double min, max;
} skey;

#define SF(f) offsetof(fed_server_opts, f), sizeof(((fed_server_opts *)0)->f)
static const skey skeys[] = {
    {"listen", 0, SF(listen), 0, 0},
    {"cert", 0, SF(cert), 0, 0},
    {"key", 0, SF(key), 0, 0},
    {"store", 0, SF(store), 0, 0},
    {"allow_list", 0, SF(allow_list), 0, 0},
    {"token_file", 0, SF(token_file), 0, 0},
    {"model_out", 0, SF(model_out), 0, 0},
    {"port_file", 0, SF(port_file), 0, 0},
    {"client_ca", 0, SF(client_ca), 0, 0},
    {"round_timeout", 1, SF(round_timeout), 0.1, 1e6},
    {"round_retries", 2, SF(round_retries), 0, 1000},
    {"over_selection", 1, SF(over_selection), 0, 10},
    {"register_timeout", 1, SF(register_timeout), 0.1, 1e7},
    {"max_body_bytes", 4, SF(max_body_bytes), 1024, 1e12},
    {"max_update_norm", 1, SF(max_update_norm), 0, 1e12},
    {"long_poll", 2, SF(long_poll), 1, 3600},
    {"autostart", 3, SF(autostart), 0, 0},
    {"min_registered", 2, SF(min_registered), 0, 1e9},
};

static int set_server_key(fed_server_opts *so, const char *path, int line, const char *key, const char *val) {
    const skey *k = NULL;
    for (size_t i = 0; i < sizeof skeys / sizeof skeys[0]; i++)
        if (strcmp(skeys[i].name, key) == 0) k = &skeys[i];
    if (!k) {
        char list[400] = "";
        size_t o = 0;
        for (size_t i = 0; i < sizeof skeys / sizeof skeys[0]; i++)
            o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", i ? ", " : "", skeys[i].name);
        return fed_error(FED_EINVAL, "%s: line %d: unknown key 'server.%.60s' (known: %s)", path, line, key, list);
    }
    char *field = (char *)so + k->off;
    char *end = NULL;
    errno = 0;
    switch (k->type) {
    case 0:
        if (strlen(val) >= k->size)
            return fed_error(FED_EINVAL, "%s: line %d: server.%s is longer than %zu bytes", path, line, key, k->size - 1);
        memcpy(field, val, strlen(val) + 1);
        return 0;
    case 1: {
        double v = strtod(val, &end);
        if (!*val || *end || errno || !isfinite(v) || v < k->min || v > k->max)
            return fed_error(FED_EINVAL, "%s: line %d: server.%s: '%.60s' is not a number in [%g, %g]", path, line, key,
                             val, k->min, k->max);
        memcpy(field, &v, sizeof v);
        return 0;
    }
    case 2:
    case 4: {
        long long v = strtoll(val, &end, 10);
        if (!*val || *end || errno || v < k->min || v > k->max)
            return fed_error(FED_EINVAL, "%s: line %d: server.%s: '%.60s' is not an integer in [%g, %g]", path, line,
                             key, val, k->min, k->max);
        if (k->type == 2) {
            int iv = (int)v;
            memcpy(field, &iv, sizeof iv);
        } else {
            int64_t lv = v;
            memcpy(field, &lv, sizeof lv);
        }
        return 0;
    }
    default: {
        int v = -1;
        if (!strcasecmp(val, "true") || !strcasecmp(val, "yes") || !strcasecmp(val, "on") || !strcmp(val, "1")) v = 1;
        if (!strcasecmp(val, "false") || !strcasecmp(val, "no") || !strcasecmp(val, "off") || !strcmp(val, "0")) v = 0;
        if (v < 0) return fed_error(FED_EINVAL, "%s: line %d: server.%s: '%.60s' is not true/false", path, line, key, val);
        memcpy(field, &v, sizeof v);
        return 0;
    }
    }
}

/* A scalar event's text; plain null-like scalars become "". */
static const char *scalar_text(const yaml_event_t *e) {
    const char *s = (const char *)e->data.scalar.value;
    if (e->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
        (!strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL")))
        return "";
    return s;
}

int fed_server_config_load(const char *path, fed_config *cfg, fed_server_opts *so) {
    FILE *f = fopen(path, "rb");
    if (!f) return fed_error(FED_EIO, "config %s: %s", path, strerror(errno));
    yaml_parser_t p;
    yaml_parser_initialize(&p);
    yaml_parser_set_input_file(&p, f);
    int rc = 0, depth = 0, in_server = 0, want_key = 1, done = 0;
    char key[128] = "", section[128] = "";
    int key_line = 0;
    while (!rc && !done) {
        yaml_event_t e;
        if (!yaml_parser_parse(&p, &e)) {
            rc = fed_error(FED_EFORMAT, "config %s: line %zu column %zu: %s", path, p.problem_mark.line + 1,
                           p.problem_mark.column + 1, p.problem ? p.problem : "YAML syntax error");
            break;
        }
        int line = (int)e.start_mark.line + 1;
        switch (e.type) {
        case YAML_STREAM_END_EVENT: done = 1; break;
        case YAML_MAPPING_START_EVENT:
            if (depth == 0) depth = 1;
            else if (depth == 1 && !want_key) {
                /* server: the coordinator's settings; any other mapping is a run config
                 * section whose keys are the dotted keys SECTION.KEY (docs/config.md) */
                depth = 2, in_server = strcmp(key, "server") == 0, want_key = 1;
                snprintf(section, sizeof section, "%s", key);
            } else rc = fed_error(FED_EINVAL, "config %s: line %d: key '%s' nests too deep (one section level at most)", path, line, key);
            break;
        case YAML_MAPPING_END_EVENT:
            if (depth == 2) depth = 1, in_server = 0, want_key = 1, section[0] = '\0';
            else depth = 0;
            break;
        case YAML_SEQUENCE_START_EVENT:
            rc = fed_error(FED_EINVAL, "config %s: line %d: key '%s' must be a scalar, not a list", path, line, key);
            break;
        case YAML_SCALAR_EVENT:
            if (depth == 0) {
                rc = fed_error(FED_EFORMAT, "config %s: the document is not a mapping of key: value", path);
            } else if (want_key) {
                snprintf(key, sizeof key, "%s", (const char *)e.data.scalar.value);
                key_line = line;
                want_key = 0;
            } else {
                const char *val = scalar_text(&e);
                if (in_server) rc = set_server_key(so, path, key_line, key, val);
                else if (strcmp(key, "server") == 0)
                    rc = fed_error(FED_EINVAL, "config %s: line %d: 'server' must be a mapping of coordinator settings", path, key_line);
                else {
                    char full[300];
                    if (section[0]) snprintf(full, sizeof full, "%s.%s", section, key);
                    else snprintf(full, sizeof full, "%s", key);
                    rc = fed_config_set(cfg, full, val);
                }
                if (rc && !in_server && strcmp(key, "server") != 0) {
                    char inner[800];
                    snprintf(inner, sizeof inner, "%s", fed_last_error());
                    rc = fed_error(rc, "config %s: line %d: %s", path, key_line, inner);
                }
                want_key = 1;
            }
            break;
        default: break;
        }
        yaml_event_delete(&e);
    }
    yaml_parser_delete(&p);
    fclose(f);
    return rc;
}
