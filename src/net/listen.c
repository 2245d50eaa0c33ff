/* Listening addresses ("HOST:PORT") for the coordinator and the dashboard: an
 * IPv4 address, a bracketed IPv6 address or localhost, port 0 for any free one,
 * and whether the address is loopback (plain-HTTP services refuse anything else
 * unless told otherwise). */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "federate/error.h"
#include "federate/net.h"

int fed_net_parse_listen(const char *what, const char *s, struct sockaddr_in6 *a6, struct sockaddr_in *a4, int *is6,
                         int *loopback) {
    char host[128];
    const char *colon = s ? strrchr(s, ':') : NULL;
    if (!colon) return fed_error(FED_EINVAL, "%s '%s' is not HOST:PORT", what, s ? s : "");
    size_t hl = (size_t)(colon - s);
    if (hl >= sizeof host) return fed_error(FED_EINVAL, "%s '%.60s...': host too long", what, s);
    memcpy(host, s, hl);
    host[hl] = '\0';
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
        memmove(host, host + 1, hl - 2);
        host[hl - 2] = '\0';
    }
    const char *p = colon + 1;
    char *end = NULL;
    long port = *p >= '0' && *p <= '9' ? strtol(p, &end, 10) : -1;
    if (port < 0 || port > 65535 || !end || *end || end - p > 5)
        return fed_error(FED_EINVAL, "%s '%s': the port must be a number in [0, 65535]", what, s);
    if (strcmp(host, "localhost") == 0) snprintf(host, sizeof host, "127.0.0.1");
    memset(a6, 0, sizeof *a6);
    memset(a4, 0, sizeof *a4);
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        *is6 = 0;
        *loopback = (ntohl(a4->sin_addr.s_addr) >> 24) == 127;
        return 0;
    }
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        *is6 = 1;
        *loopback = IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr);
        return 0;
    }
    return fed_error(FED_EINVAL, "%s '%s': the host must be an IP address or localhost", what, s);
}
