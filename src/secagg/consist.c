/* The active-adversary variant's signatures (Bonawitz et al. CCS 2017, Sec. 4.2):
 * what a stage-0 advertisement and a consistency-check signature cover (signed and
 * verified with federate/crypto.h's Ed25519), the per-run context, and the stage numbering with and without the extra stage. */
#include <stdlib.h>
#include "federate/crypto.h"
#include "federate/error.h"
#include "secagg_internal.h"

void sa_adv_tbs(uint8_t out[SA_ADV_TBS], uint64_t round, const uint8_t context[32], uint32_t id,
                const uint8_t c_pk[32], const uint8_t s_pk[32]) {
    memcpy(out, "FSAa", 4);
    sa_put64(out + 4, round);
    memcpy(out + 12, context, 32);
    sa_put32(out + 44, id);
    memcpy(out + 48, c_pk, 32);
    memcpy(out + 80, s_pk, 32);
}

uint8_t *sa_u3_tbs(uint64_t round, const uint8_t context[32], const uint8_t *ids_wire, uint32_t m, size_t *len) {
    size_t l = SA_U3_TBS_HEAD + (size_t)m * 4;
    uint8_t *p = malloc(l);
    if (!p) return NULL;
    memcpy(p, "FSAu", 4);
    sa_put64(p + 4, round);
    memcpy(p + 12, context, 32);
    sa_put32(p + 44, m);
    if (m) memcpy(p + SA_U3_TBS_HEAD, ids_wire, (size_t)m * 4);
    *len = l;
    return p;
}

int fed_secagg_context(uint8_t out[32], uint64_t run, const uint8_t graph_seed[32]) {
    static const char label[] = "federate-secagg-context"; /* 23 bytes, no NUL */
    uint8_t buf[sizeof label - 1 + 8 + 32];
    if (!out || !graph_seed) return fed_error(FED_EINVAL, "secagg context: no output or graph seed");
    memcpy(buf, label, sizeof label - 1);
    for (int i = 0; i < 8; i++) buf[sizeof label - 1 + i] = (uint8_t)(run >> (8 * i));
    memcpy(buf + sizeof label - 1 + 8, graph_seed, 32);
    return fed_sha256(out, buf, sizeof buf);
}

int fed_secagg_stage_count(const fed_secagg_cfg *cfg) { return cfg && cfg->consistency ? 5 : 4; }

int fed_secagg_stage_is_consistency(const fed_secagg_cfg *cfg, int s) { return cfg && cfg->consistency && s == 3; }
