/* Certificates for a test federation with the GnuTLS x509 API: a self-signed
 * CA, a server certificate for the loopback names, and one client certificate
 * per client, all ECDSA P-256. For a real deployment, use your own PKI. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "federate/error.h"
#include "federate/net.h"

#define G(call)                                                                                  \
    do {                                                                                         \
        int g_ = (call);                                                                         \
        if (g_ < 0) {                                                                            \
            rc = fed_error(FED_EINTERNAL, "certs: %s: %s", #call, gnutls_strerror(g_));          \
            goto out;                                                                            \
        }                                                                                        \
    } while (0)

static int write_pem(const char *dir, const char *name, const gnutls_datum_t *d, int secret) {
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, secret ? 0600 : 0644);
    if (fd < 0) return fed_error(FED_EIO, "certs: %s: %s", path, strerror(errno));
    ssize_t w = write(fd, d->data, d->size);
    int cr = close(fd);
    if (w != (ssize_t)d->size || cr) return fed_error(FED_EIO, "certs: writing %s failed", path);
    return 0;
}

static int export_pair(const char *dir, const char *base, gnutls_x509_crt_t crt, gnutls_x509_privkey_t key) {
    gnutls_datum_t c = {0}, k = {0};
    int rc = 0;
    char name[300];
    G(gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &c));
    G(gnutls_x509_privkey_export2(key, GNUTLS_X509_FMT_PEM, &k));
    snprintf(name, sizeof name, "%s.pem", base);
    if ((rc = write_pem(dir, name, &c, 0))) goto out;
    snprintf(name, sizeof name, "%s-key.pem", base);
    rc = write_pem(dir, name, &k, 1);
out:
    gnutls_free(c.data);
    if (k.data) {
        memset(k.data, 0, k.size);
        gnutls_free(k.data);
    }
    return rc;
}

/* One more name of the server: an IPv4 or IPv6 address (optionally in [ ])
 * becomes an IP address SAN (the 4 or 16 bytes, RFC 5280 4.2.1.6: clients
 * connecting to https://10.0.0.2:PORT check the address against these, never
 * against DNS names), anything else a DNS name SAN. */
static int host_kind(const char *h, unsigned char ip[16], unsigned *iplen) {
    char tmp[300];
    size_t l = strlen(h);
    if (l == 0 || l >= sizeof tmp) return fed_error(FED_EINVAL, "certs: --host '%.60s' is empty or too long", h);
    if (inet_pton(AF_INET, h, ip) == 1) { *iplen = 4; return 1; }
    if (h[0] == '[' && h[l - 1] == ']') { memcpy(tmp, h + 1, l - 2); tmp[l - 2] = '\0'; }
    else snprintf(tmp, sizeof tmp, "%s", h);
    if (inet_pton(AF_INET6, tmp, ip) == 1) { *iplen = 16; return 1; }
    for (size_t i = 0; i < l; i++)
        if (!isalnum((unsigned char)h[i]) && h[i] != '-' && h[i] != '.' && !(i == 0 && h[i] == '*'))
            return fed_error(FED_EINVAL, "certs: --host '%.60s' is neither an IP address nor a DNS name (character '%c')", h, h[i]);
    return 0;
}

/* Adds every comma-separated name of hosts as a SAN. */
static int add_hosts(gnutls_x509_crt_t crt, const char *hosts) {
    int rc = 0;
    const char *p = hosts;
    while (p && *p) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        char h[300];
        if (l >= sizeof h) return fed_error(FED_EINVAL, "certs: --host name too long");
        memcpy(h, p, l);
        h[l] = '\0';
        unsigned char ip[16];
        unsigned iplen = 0;
        int k = host_kind(h, ip, &iplen);
        if (k < 0) return k;
        if (k == 1) G(gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_IPADDRESS, ip, iplen, GNUTLS_FSAN_APPEND));
        else G(gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_DNSNAME, h, (unsigned)l, GNUTLS_FSAN_APPEND));
        p = e ? e + 1 : NULL;
    }
out:
    return rc;
}

static int make_cert(gnutls_x509_crt_t *crt, gnutls_x509_privkey_t *key, const char *cn, int is_ca, int is_server,
                     const char *extra_host, gnutls_x509_crt_t issuer, gnutls_x509_privkey_t issuer_key, int days,
                     unsigned serial) {
    int rc = 0;
    *crt = NULL;
    *key = NULL;
    G(gnutls_x509_privkey_init(key));
    G(gnutls_x509_privkey_generate(*key, GNUTLS_PK_ECDSA, GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0));
    G(gnutls_x509_crt_init(crt));
    G(gnutls_x509_crt_set_version(*crt, 3));
    G(gnutls_x509_crt_set_key(*crt, *key));
    unsigned char ser[8];
    fed_crypto_random(ser, sizeof ser);
    ser[0] &= 0x7f;
    ser[7] = (unsigned char)serial;
    G(gnutls_x509_crt_set_serial(*crt, ser, sizeof ser));
    time_t now = time(NULL);
    G(gnutls_x509_crt_set_activation_time(*crt, now - 3600));
    G(gnutls_x509_crt_set_expiration_time(*crt, now + (time_t)days * 86400));
    G(gnutls_x509_crt_set_dn_by_oid(*crt, GNUTLS_OID_X520_ORGANIZATION_NAME, 0, "federate test federation",
                                    (unsigned)strlen("federate test federation")));
    G(gnutls_x509_crt_set_dn_by_oid(*crt, GNUTLS_OID_X520_COMMON_NAME, 0, cn, (unsigned)strlen(cn)));
    G(gnutls_x509_crt_set_basic_constraints(*crt, is_ca, -1));
    unsigned char kid[64];
    size_t kidlen = sizeof kid;
    G(gnutls_x509_crt_get_key_id(*crt, 0, kid, &kidlen));
    G(gnutls_x509_crt_set_subject_key_id(*crt, kid, kidlen));
    if (is_ca) {
        G(gnutls_x509_crt_set_key_usage(*crt, GNUTLS_KEY_KEY_CERT_SIGN | GNUTLS_KEY_CRL_SIGN | GNUTLS_KEY_DIGITAL_SIGNATURE));
        G(gnutls_x509_crt_sign2(*crt, *crt, *key, GNUTLS_DIG_SHA256, 0));
        return 0;
    }
    G(gnutls_x509_crt_set_key_usage(*crt, GNUTLS_KEY_DIGITAL_SIGNATURE | GNUTLS_KEY_KEY_AGREEMENT));
    G(gnutls_x509_crt_set_key_purpose_oid(*crt, is_server ? GNUTLS_KP_TLS_WWW_SERVER : GNUTLS_KP_TLS_WWW_CLIENT, 0));
    if (is_server) {
        G(gnutls_x509_crt_set_subject_alt_name(*crt, GNUTLS_SAN_DNSNAME, "localhost", 9, GNUTLS_FSAN_APPEND));
        unsigned char v4[4] = {127, 0, 0, 1}, v6[16] = {0};
        v6[15] = 1;
        G(gnutls_x509_crt_set_subject_alt_name(*crt, GNUTLS_SAN_IPADDRESS, v4, 4, GNUTLS_FSAN_APPEND));
        G(gnutls_x509_crt_set_subject_alt_name(*crt, GNUTLS_SAN_IPADDRESS, v6, 16, GNUTLS_FSAN_APPEND));
        if (extra_host && *extra_host && (rc = add_hosts(*crt, extra_host))) goto out;
    }
    unsigned char akid[64];
    size_t akidlen = sizeof akid;
    G(gnutls_x509_crt_get_subject_key_id(issuer, akid, &akidlen, NULL));
    G(gnutls_x509_crt_set_authority_key_id(*crt, akid, akidlen));
    G(gnutls_x509_crt_sign2(*crt, issuer, issuer_key, GNUTLS_DIG_SHA256, 0));
    return 0;
out:
    if (*crt) gnutls_x509_crt_deinit(*crt);
    if (*key) gnutls_x509_privkey_deinit(*key);
    *crt = NULL;
    *key = NULL;
    return rc;
}

int fed_certs_make(const char *dir, int nclients, const char *extra_host, int days) {
    if (!dir || nclients < 0 || nclients > 100000 || days < 1)
        return fed_error(FED_EINVAL, "certs: need a directory, 0..100000 clients and at least 1 day");
    if (extra_host) {
        /* checked before anything is written */
        for (const char *p = extra_host; *p;) {
            const char *e = strchr(p, ',');
            size_t l = e ? (size_t)(e - p) : strlen(p);
            char h[300];
            unsigned char ip[16];
            unsigned iplen;
            if (l == 0 || l >= sizeof h) return fed_error(FED_EINVAL, "certs: --host '%.60s': an empty or too long name", extra_host);
            memcpy(h, p, l);
            h[l] = '\0';
            int k = host_kind(h, ip, &iplen);
            if (k < 0) return k;
            if (!e) break;
            p = e + 1;
        }
    }
    if (mkdir(dir, 0755) && errno != EEXIST) return fed_error(FED_EIO, "certs: cannot create %s: %s", dir, strerror(errno));
    gnutls_global_init();
    gnutls_x509_crt_t ca = NULL, crt = NULL;
    gnutls_x509_privkey_t cak = NULL, key = NULL;
    int rc = make_cert(&ca, &cak, "federate test CA", 1, 0, NULL, NULL, NULL, days, 1);
    if (!rc) rc = export_pair(dir, "ca", ca, cak);
    if (!rc) rc = make_cert(&crt, &key, "localhost", 0, 1, extra_host, ca, cak, days, 2);
    if (!rc) rc = export_pair(dir, "server", crt, key);
    for (int i = 0; !rc && i < nclients; i++) {
        if (crt) gnutls_x509_crt_deinit(crt);
        if (key) gnutls_x509_privkey_deinit(key);
        crt = NULL;
        key = NULL;
        char cn[64], base[64];
        snprintf(cn, sizeof cn, "federate client %d", i);
        snprintf(base, sizeof base, "client-%d", i);
        rc = make_cert(&crt, &key, cn, 0, 0, NULL, ca, cak, days, (unsigned)(3 + i));
        if (!rc) rc = export_pair(dir, base, crt, key);
    }
    if (crt) gnutls_x509_crt_deinit(crt);
    if (key) gnutls_x509_privkey_deinit(key);
    if (ca) gnutls_x509_crt_deinit(ca);
    if (cak) gnutls_x509_privkey_deinit(cak);
    gnutls_global_deinit();
    return rc;
}
