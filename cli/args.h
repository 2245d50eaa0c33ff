/* Table-driven command-line flags: each subcommand lists its flags once, and the
 * parser, the error messages (which name the flag) and --help come from the list. */
#ifndef FEDERATE_CLI_ARGS_H
#define FEDERATE_CLI_ARGS_H
#include <stdint.h>

enum arg_type { ARG_INT, ARG_U64, ARG_FLOAT, ARG_STRING, ARG_FLAG, ARG_STRLIST };

typedef struct arg_spec {
    const char *name;      /* without the leading "--" */
    int type;
    void *dest;            /* int*, uint64_t*, double*, const char**, int* (flag) */
    const char *help;
    double min, max;       /* for numbers; min > max means unchecked */
    const char *const *choices;  /* for strings: NULL-terminated allowed values, or NULL */
} arg_spec;

#define ARG_END {0, 0, 0, 0, 0, 0, 0}
#define NO_RANGE 1, 0

/* Parses argv[first..argc). Positional arguments are stored in pos (up to
 * max_pos of them). Returns 0, 1 when --help was printed, or -1 after printing
 * an error that names the flag. Repeated ARG_STRLIST flags collect into a
 * NULL-terminated array of up to 32 values. */
int args_parse(const char *cmd, const char *usage, const arg_spec *specs, int argc, char **argv, int first,
               const char **pos, int max_pos, int *npos);
void args_help(const char *cmd, const char *usage, const arg_spec *specs);

#endif
