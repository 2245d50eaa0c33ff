/* Per-client state vectors on disk (SCAFFOLD's control variates): one file per
 * client holding the last few versions tagged with the round that wrote them,
 * so memory does not grow with the number of clients and a run resumed from a
 * checkpoint reads each client's state as it was at that round. A client is
 * trained by one worker at a time, so files need no locking. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "federate/error.h"
#include "federate/fl.h"

#define MAX_VERSIONS 16

struct fed_client_state {
    char dir[512];
    size_t n;
    int versions;
};

int fed_client_state_open(fed_client_state **out, const char *dir, size_t n, int versions) {
    if (!out || !dir || !n) return fed_error(FED_EINVAL, "fed_client_state_open: bad arguments");
    if (versions < 2) versions = 2;
    if (versions > MAX_VERSIONS) versions = MAX_VERSIONS;
    if (mkdir(dir, 0755) && errno != EEXIST) return fed_error(FED_EIO, "cannot create client state directory %s: %s", dir, strerror(errno));
    fed_client_state *s = calloc(1, sizeof *s);
    if (!s) return fed_error(FED_ENOMEM, "fed_client_state_open: out of memory");
    snprintf(s->dir, sizeof s->dir, "%s", dir);
    s->n = n;
    s->versions = versions;
    *out = s;
    return 0;
}

void fed_client_state_close(fed_client_state *s) {
    if (!s) return;
    free(s);
}

static void path_of(const fed_client_state *s, int client, char *buf, size_t size) {
    snprintf(buf, size, "%s/client_%06d.state", s->dir, client);
}

/* File: int32 rounds[versions], then versions vectors of n floats. */
static int read_rounds(FILE *f, int *rounds, int versions) {
    return fread(rounds, sizeof(int), (size_t)versions, f) == (size_t)versions ? 0 : -1;
}

int fed_client_state_get(fed_client_state *s, int client, int round, float *out) {
    return fed_client_state_find(s, client, round, out, NULL);
}

int fed_client_state_find(fed_client_state *s, int client, int round, float *out, int *found) {
    char path[600];
    path_of(s, client, path, sizeof path);
    if (found) *found = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        memset(out, 0, s->n * sizeof(float));   /* never written: c_i starts at 0 */
        return 0;
    }
    int rounds[MAX_VERSIONS];
    int best = -1;
    if (read_rounds(f, rounds, s->versions) == 0) {
        for (int v = 0; v < s->versions; v++)
            if (rounds[v] > 0 && rounds[v] < round && (best < 0 || rounds[v] > rounds[best])) best = v;
    } else {
        fclose(f);
        return fed_error(FED_EFORMAT, "client state file %s is truncated", path);
    }
    int rc = 0;
    if (best < 0) {
        memset(out, 0, s->n * sizeof(float));
    } else if (found) {
        *found = 1;
    }
    if (best >= 0 && (fseek(f, (long)(s->versions * sizeof(int) + (size_t)best * s->n * sizeof(float)), SEEK_SET) ||
               fread(out, sizeof(float), s->n, f) != s->n)) {
        rc = fed_error(FED_EFORMAT, "client state file %s is truncated", path);
    }
    fclose(f);
    return rc;
}

int fed_client_state_put(fed_client_state *s, int client, int round, const float *v) {
    char path[600];
    path_of(s, client, path, sizeof path);
    int rounds[MAX_VERSIONS] = {0};
    FILE *f = fopen(path, "r+b");
    if (!f) {
        f = fopen(path, "w+b");
        if (!f) return fed_error(FED_EIO, "cannot write client state %s: %s", path, strerror(errno));
        if (fwrite(rounds, sizeof(int), (size_t)s->versions, f) != (size_t)s->versions) {
            fclose(f);
            return fed_error(FED_EIO, "cannot write client state %s", path);
        }
    } else if (read_rounds(f, rounds, s->versions)) {
        fclose(f);
        return fed_error(FED_EFORMAT, "client state file %s is truncated", path);
    }
    /* Redoing a round replaces its version; otherwise the oldest goes. */
    int slot = -1;
    for (int i = 0; i < s->versions; i++)
        if (rounds[i] == round) slot = i;
    if (slot < 0) {
        slot = 0;
        for (int i = 1; i < s->versions; i++)
            if (rounds[i] < rounds[slot]) slot = i;
    }
    rounds[slot] = round;
    int rc = 0;
    if (fseek(f, (long)(s->versions * sizeof(int) + (size_t)slot * s->n * sizeof(float)), SEEK_SET) ||
        fwrite(v, sizeof(float), s->n, f) != s->n || fseek(f, 0, SEEK_SET) ||
        fwrite(rounds, sizeof(int), (size_t)s->versions, f) != (size_t)s->versions)
        rc = fed_error(FED_EIO, "cannot write client state %s", path);
    if (fclose(f) && !rc) rc = fed_error(FED_EIO, "cannot write client state %s", path);
    return rc;
}
