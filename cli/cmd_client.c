/* federate client: a client daemon of a networked federation. Trains only on
 * its own data folder (one client_NNNNN folder of `federate partition`) and
 * sends back only its signed update; reconnects by itself. */
#include <signal.h>
#include <stdlib.h>
#include "args.h"
#include "common.h"
#include "federate/net.h"

/* The lead adds this to cli/common.h. */
int cmd_client(int argc, char **argv);

static volatile int client_stop;
static void on_signal(int sig) { (void)sig; client_stop = 1; }

int cmd_client(int argc, char **argv) {
    fed_client_opts o = {0};
    o.id = -1;
    o.max_retries = 0;
    o.timeout_s = 60;
    const char *server = NULL, *data = NULL, *key = NULL, *ca = NULL, *state = NULL, *cert = NULL, *cert_key = NULL,
               *peer_keys = NULL;
    const arg_spec specs[] = {
        {"server", ARG_STRING, &server, "coordinator URL, https://HOST:PORT (required)", NO_RANGE, NULL},
        {"id", ARG_INT, &o.id, "this client's id: its folder client_NNNNN (required)", 0, 99999, NULL},
        {"data", ARG_STRING, &data, "this client's own data folder (required)", NO_RANGE, NULL},
        {"key", ARG_STRING, &key, "its Ed25519 key file from `federate keygen` (required)", NO_RANGE, NULL},
        {"ca", ARG_STRING, &ca, "CA certificate the server's certificate is checked against", NO_RANGE, NULL},
        {"cert", ARG_STRING, &cert, "TLS client certificate (PEM; when the server sets client_ca)", NO_RANGE, NULL},
        {"cert-key", ARG_STRING, &cert_key, "its private key (PEM)", NO_RANGE, NULL},
        {"state-dir", ARG_STRING, &state, "where SCAFFOLD client state lives (default DATA/.federate-state)", NO_RANGE, NULL},
        {"max-retries", ARG_INT, &o.max_retries, "retries of a failed request before giving up (0 = never give up)", 0, 1000000, NULL},
        {"timeout", ARG_FLOAT, &o.timeout_s, "seconds per request (default 60)", 1, 86400, NULL},
        {"compress", ARG_FLAG, &o.compress, "zstd-compress uploads", NO_RANGE, NULL},
        {"insecure-plaintext", ARG_FLAG, &o.insecure_plaintext, "allow http:// to a loopback server (tests)", NO_RANGE, NULL},
        {"quiet", ARG_FLAG, &o.quiet, "no progress lines", NO_RANGE, NULL},
        {"min-noise-multiplier", ARG_FLOAT, &o.min_noise_multiplier,
         "refuse rounds without privacy.mode distributed or distributed-dp-sgd at this noise multiplier or more (default 0 = trust the "
         "coordinator)", 0, 1e6, NULL},
        {"peer-keys", ARG_STRING, &peer_keys,
         "the federation's enrolled public keys (\"ID HEX\" lines, from its operator: `federate enroll --export`); "
         "needed to take part in secure aggregation's consistency check", NO_RANGE, NULL},
        {"require-consistency", ARG_FLAG, &o.require_consistency,
         "refuse runs without secure aggregation's consistency check (needs --peer-keys)", NO_RANGE, NULL},
        ARG_END,
    };
    int rc = args_parse("client", "--server https://HOST:PORT --id ID --data DIR --key FILE [FLAGS]", specs, argc, argv,
                        2, NULL, 0, NULL);
    if (rc) return rc > 0 ? 0 : 2;
    if (!server || o.id < 0 || !data || !key) {
        fprintf(stderr, "federate client: --server, --id, --data and --key are required\n");
        return 2;
    }
    o.server = server;
    o.data_dir = data;
    o.key_file = key;
    o.ca_file = ca;
    o.state_dir = state;
    o.cert_file = cert;
    o.cert_key_file = cert_key;
    o.peer_keys_file = peer_keys;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);
    rc = fed_client_daemon_run(&o, &client_stop);
    if (rc) return cli_fail("client", "stopped", rc);
    return 0;
}
