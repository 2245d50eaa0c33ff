/* federate certs / keygen / enroll: the credentials of a test federation. TLS
 * certificates (a CA, the server's, one per client), each client's Ed25519
 * signing key, and the coordinator's allow-list of enrolled public keys. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "args.h"
#include "common.h"
#include "federate/net.h"

/* The lead adds these to cli/common.h. */
int cmd_certs(int argc, char **argv);
int cmd_keygen(int argc, char **argv);
int cmd_enroll(int argc, char **argv);

int cmd_certs(int argc, char **argv) {
    const char *out = NULL, *host = NULL;
    int clients = 0, days = 30;
    const arg_spec specs[] = {
        {"out", ARG_STRING, &out, "directory for the PEM files (required)", NO_RANGE, NULL},
        {"clients", ARG_INT, &clients, "client certificates to make (default 0)", 0, 100000, NULL},
        {"host", ARG_STRING, &host, "extra names of the server (besides localhost, 127.0.0.1, ::1): DNS names or IP addresses, comma-separated", NO_RANGE, NULL},
        {"days", ARG_INT, &days, "validity in days (default 30)", 1, 3650, NULL},
        ARG_END,
    };
    int rc = args_parse("certs", "--out DIR [--clients N] [--host NAME|IP[,...]]", specs, argc, argv, 2, NULL, 0, NULL);
    if (rc) return rc > 0 ? 0 : 2;
    if (!out) {
        fprintf(stderr, "federate certs: --out is required (the output directory)\n");
        return 2;
    }
    if ((rc = fed_certs_make(out, clients, host, days))) return cli_fail("certs", "cannot make certificates", rc);
    printf("ca: %s/ca.pem\n", out);
    printf("server_cert: %s/server.pem\n", out);
    printf("server_key: %s/server-key.pem\n", out);
    printf("client_certs: %d\n", clients);
    return 0;
}

int cmd_keygen(int argc, char **argv) {
    const char *out = NULL;
    const arg_spec specs[] = {
        {"out", ARG_STRING, &out, "secret key file to write (required); the public key goes to FILE.pub", NO_RANGE, NULL},
        ARG_END,
    };
    int rc = args_parse("keygen", "--out FILE", specs, argc, argv, 2, NULL, 0, NULL);
    if (rc) return rc > 0 ? 0 : 2;
    if (!out) {
        fprintf(stderr, "federate keygen: --out is required (the key file)\n");
        return 2;
    }
    uint8_t pk[FED_SIGN_PUBLICKEYBYTES], sk[FED_SIGN_SECRETKEYBYTES];
    if ((rc = fed_sign_keypair(pk, sk))) return cli_fail("keygen", "cannot make a key", rc);
    rc = fed_keyfile_write(out, sk);
    fed_crypto_wipe(sk, sizeof sk);
    if (rc) return cli_fail("keygen", "cannot write the key", rc);
    char hex[2 * FED_SIGN_PUBLICKEYBYTES + 1], pub[1200];
    fed_hex_encode(hex, pk, sizeof pk);
    snprintf(pub, sizeof pub, "%s.pub", out);
    FILE *f = fopen(pub, "w");
    if (!f || fprintf(f, "%s\n", hex) < 0 || fclose(f)) {
        fprintf(stderr, "federate keygen: cannot write %s\n", pub);
        return 1;
    }
    printf("key: %s\n", out);
    printf("public_key: %s\n", hex);
    return 0;
}

int cmd_enroll(int argc, char **argv) {
    const char *db = "clients.db", *pkarg = NULL, *export = NULL;
    int id = -1;
    const arg_spec specs[] = {
        {"db", ARG_STRING, &db, "the coordinator's allow-list (default ./clients.db)", NO_RANGE, NULL},
        {"id", ARG_INT, &id, "client id (required)", 0, 99999, NULL},
        {"public-key", ARG_STRING, &pkarg, "64 hex digits, or a .pub / key file (required)", NO_RANGE, NULL},
        {"export", ARG_STRING, &export,
         "write every enrolled key to FILE (\"ID HEX\" lines: the clients' --peer-keys file) instead of enrolling",
         NO_RANGE, NULL},
        ARG_END,
    };
    int rc = args_parse("enroll", "--db PATH --id ID --public-key HEX|FILE | --db PATH --export FILE", specs, argc, argv,
                        2, NULL, 0, NULL);
    if (rc) return rc > 0 ? 0 : 2;
    if (export) {
        if (id >= 0 || pkarg) {
            fprintf(stderr, "federate enroll: --export writes the enrolled keys; it takes no --id or --public-key\n");
            return 2;
        }
        /* opening would create an empty allow-list: a mistyped --db must not export no keys */
        if (access(db, R_OK) != 0) {
            fprintf(stderr, "federate enroll: --export: no allow-list at %s (--db PATH names the one `federate enroll` "
                            "wrote)\n", db);
            return 1;
        }
        fed_allowlist *a = NULL;
        int count = 0;
        if ((rc = fed_allowlist_open(&a, db))) return cli_fail("enroll", "cannot open the allow-list", rc);
        rc = fed_allowlist_export(a, export, &count);
        fed_allowlist_close(a);
        if (rc) return cli_fail("enroll", "cannot export the keys", rc);
        printf("exported: %d\n", count);
        printf("peer_keys: %s\n", export);
        return 0;
    }
    if (id < 0 || !pkarg) {
        fprintf(stderr, "federate enroll: --id and --public-key are required\n");
        return 2;
    }
    uint8_t pk[FED_SIGN_PUBLICKEYBYTES];
    if ((rc = fed_public_key_parse(pkarg, pk))) return cli_fail("enroll", "bad --public-key", rc);
    fed_allowlist *a = NULL;
    if ((rc = fed_allowlist_open(&a, db))) return cli_fail("enroll", "cannot open the allow-list", rc);
    rc = fed_allowlist_enroll(a, id, pk);
    fed_allowlist_close(a);
    if (rc) return cli_fail("enroll", "cannot enroll", rc);
    char hex[2 * FED_SIGN_PUBLICKEYBYTES + 1];
    fed_hex_encode(hex, pk, sizeof pk);
    printf("enrolled: %d\n", id);
    printf("public_key: %s\n", hex);
    return 0;
}
