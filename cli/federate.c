/* federate: the command-line tool. Dispatches to one file per subcommand. */
#include <stdio.h>
#include <string.h>
#include "common.h"

typedef struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"run", cmd_run, "simulate a federation from a YAML config (the main job)"},
    {"dashboard", cmd_dashboard, "web dashboard: live and past runs, start a simulation from a form"},
    {"export", cmd_export, "a run's global model (final or after a round) as PyTorch-loadable safetensors"},
    {"report", cmd_report, "a self-contained HTML report of a run for reviewers"},
    {"plot", cmd_plot, "PNG and SVG plots of runs: accuracy, loss, confusion, clients, privacy"},
    {"server", cmd_server, "coordinator of a networked federation (TLS, signed uploads)"},
    {"client", cmd_client, "client daemon of a networked federation"},
    {"certs", cmd_certs, "TLS certificates (CA, server, clients) for a test federation"},
    {"keygen", cmd_keygen, "a client's Ed25519 signing key"},
    {"enroll", cmd_enroll, "enroll a client's public key with the coordinator"},
    {"partition", cmd_partition, "split a data set into per-client folders"},
    {"runs", cmd_runs, "list, show and compare runs in the experiment store"},
    {"train", cmd_train, "train a model centrally (the baseline for federated runs)"},
    {"evaluate", cmd_evaluate, "evaluate saved weights: accuracy and confusion matrix"},
    {"privacy", cmd_privacy, "epsilon of DP-SGD / DP-FedAvg settings, or the noise for a target epsilon"},
    {"secagg-params", cmd_secagg_params, "SecAgg+ neighbourhood degree and Shamir threshold for a threat model"},
    {"bench", cmd_bench, "benchmarks: bench train | aggregate | compress | secagg"},
    {NULL, NULL, NULL},
};

static void usage(FILE *out) {
    fprintf(out, "federate %s: privacy-preserving federated learning\n\nusage: federate COMMAND [FLAGS]\n\ncommands:\n",
            FEDERATE_VERSION);
    for (const command *c = commands; c->name; c++) fprintf(out, "  %-14s %s\n", c->name, c->summary);
    fprintf(out, "\nfederate COMMAND --help shows a command's flags.\n");
}

int main(int argc, char **argv) {
    fed_blas_single_thread();
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("federate %s\n", FEDERATE_VERSION);
        return 0;
    }
    for (const command *c = commands; c->name; c++)
        if (strcmp(c->name, argv[1]) == 0) return c->fn(argc, argv);
    fprintf(stderr, "federate: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
