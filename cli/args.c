/* Flag parsing for the federate CLI: --name value and --name=value, typed and
 * range-checked, with a did-you-mean for unknown flags. */
#include "args.h"
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63) return 99;
    size_t d[64][64];
    for (size_t i = 0; i <= la; i++) d[i][0] = i;
    for (size_t j = 0; j <= lb; j++) d[0][j] = j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            size_t sub = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            size_t del = d[i - 1][j] + 1, ins = d[i][j - 1] + 1;
            d[i][j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
    return d[la][lb];
}

static const char *type_word(int t) {
    switch (t) {
    case ARG_INT: case ARG_U64: return "N";
    case ARG_FLOAT: return "X";
    case ARG_FLAG: return "";
    default: return "VALUE";
    }
}

void args_help(const char *cmd, const char *usage, const arg_spec *specs) {
    printf("usage: federate %s %s\n\n", cmd, usage);
    for (const arg_spec *s = specs; s->name; s++) {
        char left[64];
        snprintf(left, sizeof left, "--%s %s", s->name, type_word(s->type));
        printf("  %-26s %s", left, s->help);
        if (s->choices) {
            printf(" (");
            for (int i = 0; s->choices[i]; i++) printf("%s%s", i ? "|" : "", s->choices[i]);
            printf(")");
        }
        printf("\n");
    }
    printf("  %-26s %s\n", "--help", "show this help");
}

static int set_value(const char *cmd, const arg_spec *s, const char *v) {
    char *end = NULL;
    errno = 0;
    switch (s->type) {
    case ARG_INT: {
        long x = strtol(v, &end, 10);
        if (!*v || *end || errno) {
            fprintf(stderr, "federate %s: invalid value '%s' for --%s: expected an integer\n", cmd, v, s->name);
            return -1;
        }
        if (s->min <= s->max && (x < s->min || x > s->max)) {
            fprintf(stderr, "federate %s: --%s %ld is out of range [%g, %g]\n", cmd, s->name, x, s->min, s->max);
            return -1;
        }
        *(int *)s->dest = (int)x;
        return 0;
    }
    case ARG_U64: {
        if (*v == '-') {
            fprintf(stderr, "federate %s: invalid value '%s' for --%s: expected a non-negative integer\n", cmd, v,
                    s->name);
            return -1;
        }
        unsigned long long x = strtoull(v, &end, 10);
        if (!*v || *end || errno) {
            fprintf(stderr, "federate %s: invalid value '%s' for --%s: expected a non-negative integer\n", cmd, v,
                    s->name);
            return -1;
        }
        *(uint64_t *)s->dest = (uint64_t)x;
        return 0;
    }
    case ARG_FLOAT: {
        double x = strtod(v, &end);
        if (!*v || *end || errno || !isfinite(x)) {
            fprintf(stderr, "federate %s: invalid value '%s' for --%s: expected a number\n", cmd, v, s->name);
            return -1;
        }
        if (s->min <= s->max && (x < s->min || x > s->max)) {
            fprintf(stderr, "federate %s: --%s %g is out of range [%g, %g]\n", cmd, s->name, x, s->min, s->max);
            return -1;
        }
        *(double *)s->dest = x;
        return 0;
    }
    case ARG_STRING: {
        if (s->choices) {
            int ok = 0;
            for (int i = 0; s->choices[i]; i++) ok |= strcmp(s->choices[i], v) == 0;
            if (!ok) {
                fprintf(stderr, "federate %s: invalid value '%s' for --%s: expected one of ", cmd, v, s->name);
                for (int i = 0; s->choices[i]; i++) fprintf(stderr, "%s%s", i ? ", " : "", s->choices[i]);
                fprintf(stderr, "\n");
                return -1;
            }
        }
        *(const char **)s->dest = v;
        return 0;
    }
    case ARG_STRLIST: {
        const char **list = s->dest;
        int i = 0;
        while (list[i] && i < 32) i++;
        if (i >= 32) {
            fprintf(stderr, "federate %s: too many --%s flags (at most 32)\n", cmd, s->name);
            return -1;
        }
        list[i] = v;
        list[i + 1] = NULL;
        return 0;
    }
    default: return -1;
    }
}

int args_parse(const char *cmd, const char *usage, const arg_spec *specs, int argc, char **argv, int first,
               const char **pos, int max_pos, int *npos) {
    int np = 0;
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            args_help(cmd, usage, specs);
            return 1;
        }
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            if (np >= max_pos) {
                fprintf(stderr, "federate %s: unexpected argument '%s' (see federate %s --help)\n", cmd, a, cmd);
                return -1;
            }
            pos[np++] = a;
            continue;
        }
        char name[64];
        const char *eq = strchr(a + 2, '=');
        size_t len = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        if (len >= sizeof name) len = sizeof name - 1;
        memcpy(name, a + 2, len);
        name[len] = '\0';
        const arg_spec *s = NULL;
        for (const arg_spec *t = specs; t->name; t++)
            if (strcmp(t->name, name) == 0) { s = t; break; }
        if (!s) {
            const char *best = NULL;
            size_t bd = 99;
            for (const arg_spec *t = specs; t->name; t++) {
                size_t d = edit_distance(name, t->name);
                if (d < bd) { bd = d; best = t->name; }
            }
            if (best && bd <= 3)
                fprintf(stderr, "federate %s: unknown flag --%s (did you mean --%s?)\n", cmd, name, best);
            else
                fprintf(stderr, "federate %s: unknown flag --%s (see federate %s --help)\n", cmd, name, cmd);
            return -1;
        }
        if (s->type == ARG_FLAG) {
            if (eq) {
                fprintf(stderr, "federate %s: --%s takes no value\n", cmd, s->name);
                return -1;
            }
            *(int *)s->dest = 1;
            continue;
        }
        const char *v = eq ? eq + 1 : NULL;
        if (!v) {
            if (i + 1 >= argc) {
                fprintf(stderr, "federate %s: --%s needs a value\n", cmd, s->name);
                return -1;
            }
            v = argv[++i];
        }
        if (set_value(cmd, s, v)) return -1;
    }
    if (npos) *npos = np;
    return 0;
}
