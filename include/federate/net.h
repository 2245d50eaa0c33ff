/* The networked deployment: a coordinator (HTTP/1.1 over TLS with
 * libmicrohttpd) that is one more implementation of the fed_transport seam, a
 * client daemon (libcurl) that trains on its own data folder with the same
 * fed_client_fit the simulator runs, Ed25519 request signatures checked against
 * an allow-list of enrolled keys, and the GnuTLS certificates of a test
 * federation. The wire protocol is docs/protocol.md. */
#ifndef FEDERATE_NET_H
#define FEDERATE_NET_H
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include "federate/compress.h"
#include "federate/config.h"
#include "federate/crypto.h"
#include "federate/fl.h"
#include "federate/safetensors.h"

#define FED_PROTOCOL_VERSION 1

/* ---- keys and the allow-list ------------------------------------------- */

/* A key file holds one Ed25519 secret key as text ("federate-ed25519-secret-key"
 * then 128 hex digits), mode 0600. */
int fed_keyfile_write(const char *path, const uint8_t sk[FED_SIGN_SECRETKEYBYTES]);
int fed_keyfile_read(const char *path, uint8_t sk[FED_SIGN_SECRETKEYBYTES], uint8_t pk[FED_SIGN_PUBLICKEYBYTES]);
/* A public key given as 64 hex digits or as a key/public-key file; FED_EFORMAT otherwise. */
int fed_public_key_parse(const char *hex_or_path, uint8_t pk[FED_SIGN_PUBLICKEYBYTES]);

/* The enrolled clients (SQLite table fed_enrolled: client id -> public key). */
typedef struct fed_allowlist fed_allowlist;
int fed_allowlist_open(fed_allowlist **out, const char *path);
void fed_allowlist_close(fed_allowlist *a);
/* Adds or replaces client id's key. */
int fed_allowlist_enroll(fed_allowlist *a, int client, const uint8_t pk[FED_SIGN_PUBLICKEYBYTES]);
/* FED_ENOTFOUND when the client is not enrolled. */
int fed_allowlist_get(fed_allowlist *a, int client, uint8_t pk[FED_SIGN_PUBLICKEYBYTES]);
int fed_allowlist_count(fed_allowlist *a);
/* Writes every enrolled key to path as a peer-keys file (below), by client id;
 * *count (may be NULL) gets how many. */
int fed_allowlist_export(fed_allowlist *a, const char *path, int *count);

/* Pinned peer keys (`federate client --peer-keys FILE`): the federation's enrolled
 * Ed25519 public keys, which a client receives from the federation's operator out
 * of band (`federate enroll --export FILE` writes it) so that secure aggregation's
 * consistency check never takes keys from the coordinator. Text, one line
 * "CLIENT_ID HEX64" per client; blank lines and lines starting with '#' are
 * ignored; a client id may appear once. */
typedef struct fed_peer_keys fed_peer_keys;
/* FED_EFORMAT (naming the line) on a malformed line, a duplicate id or no key at all. */
int fed_peer_keys_read(fed_peer_keys **out, const char *path);
void fed_peer_keys_free(fed_peer_keys *k);
/* FED_ENOTFOUND when the file has no key for client. */
int fed_peer_keys_get(const fed_peer_keys *k, int client, uint8_t pk[FED_SIGN_PUBLICKEYBYTES]);
int fed_peer_keys_count(const fed_peer_keys *k);
/* The file's path, as given to fed_peer_keys_read (for messages). */
const char *fed_peer_keys_path(const fed_peer_keys *k);

/* The text a request signature covers (docs/protocol.md, "Signatures"):
 * "federate-v1\nMETHOD\nPATH\nRUN\nROUND\nCLIENT\nTIMESTAMP\nNONCE\nSHA256HEX(body)".
 * Returns its length, or a negative FED_E* code if buf is too small. */
int fed_net_signed_text(char *buf, size_t size, const char *method, const char *path, int64_t run, int round,
                        int client, int64_t timestamp, const char *nonce_hex, const void *body, size_t body_len);
/* The same with the body's SHA-256 already computed (the coordinator hashes an
 * upload while it arrives). */
int fed_net_signed_text_hashed(char *buf, size_t size, const char *method, const char *path, int64_t run, int round,
                               int client, int64_t timestamp, const char *nonce_hex, const uint8_t body_sha256[FED_SHA256_BYTES]);

/* ---- model and update bodies --------------------------------------------- */

/* A safetensors body with the model's state_dict names: parameter tensors hold
 * params (the global model, or a client's delta), buffer tensors hold buffers,
 * and control (SCAFFOLD's c or delta_c, may be NULL) goes under "control.NAME".
 * meta: key/value pairs for __metadata__ (nmeta pairs). */
int fed_net_pack(const fed_model *proto, const float *params, const float *buffers, const float *control,
                 const char *const *meta, int nmeta, void **buf, size_t *len);
/* The reverse, checking every tensor's name, dtype and shape against proto (no
 * missing or extra tensor; control tensors required iff want_control) and that
 * every value is finite. Errors name the tensor. f (may be NULL) receives the
 * parsed file for its metadata; close it with fed_st_close. */
int fed_net_unpack(const fed_model *proto, const void *buf, size_t len, int want_control, float *params,
                   float *buffers, float *control, fed_st_file **f);

/* A compressed update (docs/protocol.md, "Compressed updates"): the parameter
 * tensors are replaced by one 1-D U8 tensor of this name holding the codec
 * frame (include/federate/compress.h) of the flat update, parameters in the
 * model's tensor order; buffers and control tensors stay F32 as above. */
#define FED_NET_CODEC_TENSOR "federate.update"
int fed_net_pack_coded(const fed_model *proto, const uint8_t *frame, size_t frame_len, const float *buffers,
                       const float *control, const char *const *meta, int nmeta, void **buf, size_t *len);
/* An upload either way: with FED_NET_CODEC_TENSOR (*coded = 1) the frame is
 * decoded with codec (NULL: refused, the run has no compression; otherwise the
 * frame's stages must be codec's) into params, and the decoded values must be
 * finite; without it, as fed_net_unpack. A bad frame is FED_EFORMAT naming
 * what is wrong; tensor errors FED_ESHAPE; non-finite values FED_ERANGE.
 * The body is read in place (checked as fed_st_parse checks it, never copied
 * but into params/buffers/control); *f, when asked for, holds the body's
 * metadata only (fed_st_metadata; NULL when it has none). */
int fed_net_unpack_update(const fed_model *proto, const fed_codec *codec, const void *buf, size_t len, int want_control,
                          float *params, float *buffers, float *control, fed_st_file **f, int *coded);

/* A compressed download (docs/protocol.md, "Compressed downloads"): with
 * download_compression the global model's parameters travel as the frame of
 * fed_codec_encode_model (full, or a delta against the copy the client holds)
 * in one 1-D U8 tensor of this name; buffers and control tensors stay F32.
 * A client asks for it with the request header FED_NET_MODEL_BASE_HEADER:
 * "none", or the SHA-256 (64 hex digits) of the n float32 values (little-endian
 * bytes) of the copy it holds. */
#define FED_NET_MODEL_TENSOR "federate.model"
#define FED_NET_MODEL_BASE_HEADER "X-Federate-Model-Base"
int fed_net_pack_model_coded(const fed_model *proto, const uint8_t *frame, size_t frame_len, const float *buffers,
                             const float *control, const char *const *meta, int nmeta, void **buf, size_t *len);
/* A model body either way: with FED_NET_MODEL_TENSOR (*coded = 1) the frame is
 * decoded with codec (NULL: refused; its stages must be codec's) into params;
 * a delta frame needs base (the client's copy) and base_hex (its hash), which
 * must equal the body's metadata base_sha256 (FED_ESTATE otherwise); without
 * the tensor, as fed_net_unpack. */
int fed_net_unpack_model(const fed_model *proto, const fed_codec *codec, const void *buf, size_t len, int want_control,
                         const float *base, const char *base_hex, float *params, float *buffers, float *control,
                         fed_st_file **f, int *coded);

/* zstd frames; decompression refuses more than max_out bytes. */
int fed_net_zstd_compress(const void *in, size_t len, void **out, size_t *out_len);
int fed_net_zstd_decompress(const void *in, size_t len, size_t max_out, void **out, size_t *out_len);

/* ---- listening addresses -------------------------------------------------- */

/* "HOST:PORT" (IPv4, [IPv6] or localhost; port 0 = any free one) into a4 or a6
 * (*is6 says which) and whether it is a loopback address. `what` names the
 * setting in error messages ("server.listen", "dashboard address"). */
int fed_net_parse_listen(const char *what, const char *s, struct sockaddr_in6 *a6, struct sockaddr_in *a4, int *is6,
                         int *loopback);

/* ---- the coordinator ------------------------------------------------------ */

/* The `server:` section of server.yaml (docs/protocol.md, "Coordinator settings"). */
typedef struct fed_server_opts {
    char listen[128];          /* listen: HOST:PORT (127.0.0.1:8443; port 0 = any free port) */
    char cert[512], key[512];  /* cert, key: the server's PEM certificate and key */
    char store[512];           /* store: experiment store (federate.db) */
    char allow_list[512];      /* allow_list: enrolled client keys (clients.db) */
    char token_file[512];      /* token_file: bearer token of the management API ("" = no changes allowed) */
    char model_out[512];       /* model_out: final global model as safetensors ("" = none) */
    char port_file[512];       /* port_file: the bound port is written here ("" = none) */
    char client_ca[512];       /* client_ca: require client certificates signed by this CA ("" = not required) */
    double round_timeout;      /* round_timeout: seconds a round waits for results (60) */
    int round_retries;         /* round_retries: extra deadlines while fewer than min_clients reported (2) */
    double over_selection;     /* over_selection: a round closes once ceil(K / (1 + x)) reported (0) */
    double register_timeout;   /* register_timeout: seconds to wait for every client to register (600) */
    int64_t max_body_bytes;    /* max_body_bytes: largest accepted request body (64 MiB) */
    double max_update_norm;    /* max_update_norm: largest accepted L2 norm of an update (0 = off) */
    int long_poll;             /* long_poll: seconds a task request is held open (20) */
    int autostart;             /* autostart: start training once all clients registered (true) */
    int insecure_plaintext;    /* only from the command line; loopback only */
    int min_registered;        /* min_registered: clients registered before round 1 (0 = all num_clients) */
} fed_server_opts;

void fed_server_opts_default(fed_server_opts *so);
/* Reads a run config whose top-level keys are fed_config keys plus a `server:`
 * mapping of the keys above. Relative paths stay as written. */
int fed_server_config_load(const char *path, fed_config *cfg, fed_server_opts *so);

typedef struct fed_coordinator fed_coordinator;
/* Opens the store and allow-list and starts serving (TLS unless insecure_plaintext). */
int fed_coordinator_start(fed_coordinator **out, const fed_config *cfg, const fed_server_opts *so);
int fed_coordinator_port(const fed_coordinator *co);
/* Waits for the clients, runs (or resumes the unfinished run of this config)
 * to the end with the shared round driver, then tells clients to finish.
 * on_round as in fed_run_opts (may be NULL). */
int fed_coordinator_run(fed_coordinator *co, void (*on_round)(void *, const fed_config *, const fed_round_report *),
                        void *ctx, fed_run_result *res);
/* Asks a running coordinator to stop after the current round (async-signal-safe). */
void fed_coordinator_request_stop(fed_coordinator *co);
void fed_coordinator_free(fed_coordinator *co);

/* ---- the client daemon ---------------------------------------------------- */

typedef struct fed_client_opts {
    const char *server;        /* https://HOST:PORT (http:// only with insecure_plaintext) */
    int id;                    /* the client's id: its folder client_NNNNN in the partition */
    const char *data_dir;      /* its own data folder (train-* and test-* IDX files) */
    const char *key_file;      /* its Ed25519 secret key */
    const char *ca_file;       /* CA certificate that signed the server's (NULL = system store) */
    const char *state_dir;     /* where SCAFFOLD state lives (NULL = DATA/.federate-state) */
    const char *cert_file;     /* TLS client certificate and key (NULL = none; needed if the server sets client_ca) */
    const char *cert_key_file;
    int insecure_plaintext;
    int max_retries;           /* consecutive failed attempts before giving up (0 = never) */
    double timeout_s;          /* per request (the long poll adds its own hold) */
    int compress;              /* zstd-compress uploads */
    int threads;               /* BLAS threads for training (1) */
    int quiet;
    /* Refuse rounds whose update would leave this client with less than distributed
     * DP noise of this multiplier (privacy.mode distributed, announced by the
     * coordinator): 0 trusts the coordinator with whatever the run does. */
    double min_noise_multiplier;
    /* Secure aggregation's consistency check: the federation's enrolled public keys,
     * pinned out of band (a peer-keys file, see fed_peer_keys_read); NULL: this
     * client refuses rounds that run the check (keys from the coordinator would
     * make it meaningless). Its own entry must be its key_file's public key. */
    const char *peer_keys_file;
    /* Refuse runs and rounds without secure aggregation's consistency check (needs
     * peer_keys_file). */
    int require_consistency;
} fed_client_opts;

/* Registers, then fetches and runs tasks until the server says the federation
 * finished (returns 0) or *stop is set; reconnects by itself with backoff. */
int fed_client_daemon_run(const fed_client_opts *o, volatile int *stop);

/* ---- certificates ---------------------------------------------------------- */

/* A CA, a server certificate for localhost/127.0.0.1/::1 (plus extra_host if
 * not NULL: comma-separated DNS names and IPv4/IPv6 addresses, an address
 * going in as an IP address SAN) and nclients client certificates, as PEM files in dir: ca.pem,
 * ca-key.pem, server.pem, server-key.pem, client-N.pem, client-N-key.pem. */
int fed_certs_make(const char *dir, int nclients, const char *extra_host, int days);

#endif
