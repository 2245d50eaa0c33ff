/* Update codec chains (include/federate/compress.h): the spec parser, the frame
 * and record layout, and encode/decode of a chain sparsifier -> value coder ->
 * zstd, with error feedback (e = x + residual; residual = e - decode(encode(e)),
 * Karimireddy et al. 2019, Alg. 2) and delta frames for downloading the model. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>
#include "compress_internal.h"
#include "federate/compress.h"
#include "federate/error.h"
#include "federate/rng.h"

struct fed_codec {
    fc_stage sparse; /* id 0, FC_TOPK or FC_RANDK */
    fc_stage value;  /* FC_F32, FC_QUANT, FC_QSGD or FC_SIGN */
    fc_stage zstd;   /* id 0 or FC_ZSTD */
    char spec[256];
};

/* ---- spec parsing ----------------------------------------------------------- */

static const char *const stage_names[] = {"topk", "randk", "q8", "q4", "q2", "qsgd", "sign", "f32", "none", "zstd", NULL};
#define STAGE_LIST "topk, randk, q8, q4, q2, qsgd, sign, f32 (or none), zstd"

static size_t edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 31 || lb > 31) return 99;
    size_t d[32][32];
    for (size_t i = 0; i <= la; i++) d[i][0] = i;
    for (size_t j = 0; j <= lb; j++) d[0][j] = j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            size_t sub = d[i - 1][j - 1] + (tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]));
            size_t del = d[i - 1][j] + 1, ins = d[i][j - 1] + 1;
            d[i][j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
    return d[la][lb];
}

/* "; did you mean 'x'?" for the nearest allowed name within distance 2, else "". */
static void suggest(const char *word, const char *const *allowed, char *out, size_t cap) {
    size_t best = 3;
    const char *pick = NULL;
    for (int i = 0; allowed[i]; i++) {
        size_t d = edit_distance(word, allowed[i]);
        if (d < best && d < strlen(allowed[i])) {
            best = d;
            pick = allowed[i];
        }
    }
    if (pick) snprintf(out, cap, "; did you mean '%s'?", pick);
    else out[0] = '\0';
}

static int is_stage_name(const char *s) {
    for (int i = 0; stage_names[i]; i++)
        if (!strcmp(s, stage_names[i])) return 1;
    return 0;
}

static int parse_u64(const char *v, uint64_t lo, uint64_t hi, uint64_t *out) {
    if (!*v || *v == '-' || *v == '+' || isspace((unsigned char)*v)) return -1;
    errno = 0;
    char *end;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || *end || x < lo || x > hi) return -1;
    *out = x;
    return 0;
}

/* topk/randk amount: a fraction in (0, 1] ("0.01", "1e-3", "1%") or a count >= 1. */
static int parse_amount(fc_stage *st, const char *key, const char *v, const char *tok) {
    int is_frac = key ? !strcmp(key, "frac") : (strpbrk(v, ".eE%") != NULL);
    if (is_frac) {
        char *end;
        errno = 0;
        double f = strtod(v, &end);
        if (end != v && *end == '%' && end[1] == '\0') {
            f /= 100;
            end++;
        }
        if (errno || end == v || *end || !(f > 0 && f <= 1))
            return fed_error(FED_EINVAL, "codec spec: '%s': fraction '%s' must be a number in (0, 1]", tok, v);
        st->frac = f;
        st->count = 0;
        return 0;
    }
    uint64_t k;
    if (parse_u64(v, 1, UINT64_MAX, &k))
        return fed_error(FED_EINVAL, "codec spec: '%s': count '%s' must be an integer >= 1 (or a fraction like 0.01)", tok,
                         v);
    st->count = k;
    st->frac = 0;
    return 0;
}

static int bad_param(const char *tok, const char *key, const char *stage, const char *const *allowed, const char *list) {
    char hint[64];
    suggest(key, allowed, hint, sizeof hint);
    if (!allowed[0])
        return fed_error(FED_EINVAL, "codec spec: '%s': %s takes no parameters (got '%s')", tok, stage, key);
    return fed_error(FED_EINVAL, "codec spec: '%s': unknown parameter '%s' for %s (allowed: %s)%s", tok, key, stage, list,
                     hint);
}

/* One parameter (key may be NULL for a bare value) of stage st named `name`. */
static int apply_param(fc_stage *st, const char *name, const char *key, const char *val, const char *tok) {
    uint64_t u;
    switch (st->id) {
    case FC_TOPK:
    case FC_RANDK: {
        static const char *const allowed[] = {"frac", "k", NULL};
        if (key && strcmp(key, "frac") && strcmp(key, "k")) return bad_param(tok, key, name, allowed, "frac, k");
        return parse_amount(st, key, val, tok);
    }
    case FC_QUANT: {
        static const char *const allowed[] = {"block", "scale", NULL};
        static const char *const modes[] = {"minmax", "absmax", NULL};
        if (!key && (!strcmp(val, "minmax") || !strcmp(val, "absmax"))) key = "scale";
        if (!key) {
            char hint[64];
            suggest(val, modes, hint, sizeof hint);
            return fed_error(FED_EINVAL, "codec spec: '%s': bare value '%s' for %s (write block=N, scale=minmax or scale=absmax)%s",
                             tok, val, name, hint);
        }
        if (!strcmp(key, "block")) {
            if (parse_u64(val, 0, 1u << 30, &u))
                return fed_error(FED_EINVAL, "codec spec: '%s': block '%s' must be an integer in [0, 2^30] (0 = one scale for the vector)",
                                 tok, val);
            st->block = (uint32_t)u;
            return 0;
        }
        if (!strcmp(key, "scale")) {
            if (strcmp(val, "minmax") && strcmp(val, "absmax")) {
                char hint[64];
                suggest(val, modes, hint, sizeof hint);
                return fed_error(FED_EINVAL, "codec spec: '%s': scale '%s' (allowed: minmax, absmax)%s", tok, val, hint);
            }
            st->absmax = !strcmp(val, "absmax");
            return 0;
        }
        return bad_param(tok, key, name, allowed, "block, scale");
    }
    case FC_QSGD: {
        static const char *const allowed[] = {"levels", "bucket", NULL};
        if (!key || !strcmp(key, "levels")) {
            if (parse_u64(val, 1, FC_QSGD_MAX_LEVELS, &u))
                return fed_error(FED_EINVAL, "codec spec: '%s': levels '%s' must be an integer in [1, %u]", tok, val,
                                 FC_QSGD_MAX_LEVELS);
            st->levels = (uint32_t)u;
            return 0;
        }
        if (!strcmp(key, "bucket")) {
            if (parse_u64(val, 0, 1ull << 40, &u))
                return fed_error(FED_EINVAL, "codec spec: '%s': bucket '%s' must be an integer >= 0 (0 = whole vector)", tok,
                                 val);
            st->bucket = u;
            return 0;
        }
        return bad_param(tok, key, name, allowed, "levels, bucket");
    }
    case FC_ZSTD: {
        static const char *const allowed[] = {"level", NULL};
        if (key && strcmp(key, "level")) return bad_param(tok, key, name, allowed, "level");
        char *end;
        errno = 0;
        long l = strtol(val, &end, 10);
        /* negative levels trade ratio for speed; below -7 they barely compress */
        if (errno || end == val || *end || l < -7 || l > 19)
            return fed_error(FED_EINVAL, "codec spec: '%s': zstd level '%s' must be an integer in [-7, 19]", tok, val);
        st->level = (int)l;
        return 0;
    }
    default: {
        static const char *const none[] = {NULL};
        return bad_param(tok, key ? key : val, name, none, "");
    }
    }
}

static void trim(char **s) {
    while (isspace((unsigned char)**s)) (*s)++;
    char *e = *s + strlen(*s);
    while (e > *s && isspace((unsigned char)e[-1])) *--e = '\0';
}

/* Shortest %g that reads back as the same double. */
static void fmt_double(char *out, size_t cap, double x) {
    for (int p = 6; p <= 17; p++) {
        snprintf(out, cap, "%.*g", p, x);
        if (strtod(out, NULL) == x) return;
    }
}

static void canonical(fed_codec *c) {
    char *o = c->spec;
    size_t cap = sizeof c->spec, w = 0;
    char num[40];
    if (c->sparse.id) {
        const char *nm = c->sparse.id == FC_TOPK ? "topk" : "randk";
        if (c->sparse.frac > 0) {
            fmt_double(num, sizeof num, c->sparse.frac);
            w += (size_t)snprintf(o + w, cap - w, "%s:frac=%s", nm, num);
        } else {
            w += (size_t)snprintf(o + w, cap - w, "%s:k=%llu", nm, (unsigned long long)c->sparse.count);
        }
    }
    const fc_stage *v = &c->value;
    const char *sep = w ? "," : "";
    if (v->id == FC_QUANT)
        w += (size_t)snprintf(o + w, cap - w, "%sq%d:block=%u:scale=%s", sep, v->bits, v->block,
                              v->absmax ? "absmax" : "minmax");
    else if (v->id == FC_QSGD)
        w += (size_t)snprintf(o + w, cap - w, "%sqsgd:levels=%u:bucket=%llu", sep, v->levels,
                              (unsigned long long)v->bucket);
    else if (v->id == FC_SIGN)
        w += (size_t)snprintf(o + w, cap - w, "%ssign", sep);
    else if (!c->sparse.id && !c->zstd.id)
        w += (size_t)snprintf(o + w, cap - w, "f32");
    if (c->zstd.id) snprintf(o + w, cap - w, "%szstd:level=%d", w ? "," : "", c->zstd.level);
}

int fed_codec_new(fed_codec **out, const char *spec) {
    if (!out) return fed_error(FED_EINVAL, "fed_codec_new: out is NULL");
    *out = NULL;
    if (!spec) spec = "";
    size_t sl = strlen(spec);
    if (sl > 200) return fed_error(FED_EINVAL, "codec spec: %zu characters is too long (at most 200)", sl);
    fed_codec *c = calloc(1, sizeof *c);
    if (!c) return fed_error(FED_ENOMEM, "codec: out of memory");
    c->value.id = FC_F32;
    char copy[256];
    memcpy(copy, spec, sl + 1);
    char *all = copy;
    trim(&all);
    int rc = 0, kind = -1; /* 0 sparsifier, 1 value coder, 2 zstd */
    fc_stage *cur = NULL;
    const char *cur_name = NULL;
    char *save = NULL;
    if (*all == '\0') goto done;
    /* strtok would merge empty tokens; walk the commas by hand. */
    for (char *tok = all; tok; tok = save) {
        char *comma = strchr(tok, ',');
        save = comma ? comma + 1 : NULL;
        if (comma) *comma = '\0';
        trim(&tok);
        char tokcopy[256];
        snprintf(tokcopy, sizeof tokcopy, "%s", tok);
        if (!*tok) { rc = fed_error(FED_EINVAL, "codec spec '%s': empty stage (stages: " STAGE_LIST ")", spec); goto fail; }
        size_t nl = strcspn(tok, ":=");
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)(nl < 63 ? nl : 63), tok);
        if (tok[nl] == '=' && !is_stage_name(name)) {
            /* key=value continuing the previous stage */
            if (!cur) { rc = fed_error(FED_EINVAL, "codec spec: '%s': a parameter before any stage (stages: " STAGE_LIST ")", tok); goto fail; }
            tok[nl] = '\0';
            if ((rc = apply_param(cur, cur_name, tok, tok + nl + 1, tokcopy))) goto fail;
            continue;
        }
        if (!is_stage_name(name)) {
            char hint[64];
            suggest(name, stage_names, hint, sizeof hint);
            rc = fed_error(FED_EINVAL, "codec spec: unknown stage '%s' (allowed: " STAGE_LIST ")%s", name, hint);
            goto fail;
        }
        if (tok[nl] == '=') { rc = fed_error(FED_EINVAL, "codec spec: '%s': write %s:KEY=VALUE", tok, name); goto fail; }
        int k;
        fc_stage st = {0};
        if (!strcmp(name, "topk") || !strcmp(name, "randk")) {
            k = 0;
            st.id = name[0] == 't' ? FC_TOPK : FC_RANDK;
            st.frac = 0.01;
        } else if (!strcmp(name, "zstd")) {
            k = 2;
            st.id = FC_ZSTD;
            st.level = 3;
        } else {
            k = 1;
            if (name[0] == 'q' && isdigit((unsigned char)name[1])) {
                st.id = FC_QUANT;
                st.bits = name[1] - '0';
            } else if (!strcmp(name, "qsgd")) {
                st.id = FC_QSGD;
                st.levels = 16;
                st.bucket = 512;
            } else if (!strcmp(name, "sign")) {
                st.id = FC_SIGN;
            } else {
                st.id = FC_F32;
            }
        }
        if (k <= kind) {
            const char *why = k == kind ? (k == 0   ? "only one sparsifier (topk or randk) per chain"
                                           : k == 1 ? "only one value coder (q8, q4, q2, qsgd, sign, f32) per chain"
                                                    : "zstd appears twice")
                                        : k == 0 ? "the sparsifier must come first"
                                                 : "the value coder must come before zstd";
            rc = fed_error(FED_EINVAL, "codec spec '%s': stage '%s' out of order: %s (order: sparsifier, value coder, zstd)",
                           spec, name, why);
            goto fail;
        }
        kind = k;
        cur = k == 0 ? &c->sparse : k == 1 ? &c->value : &c->zstd;
        *cur = st;
        cur_name = stage_names[0];
        for (int i = 0; stage_names[i]; i++)
            if (!strcmp(stage_names[i], name)) cur_name = stage_names[i];
        /* parameters after ':' */
        char *p = tok[nl] == ':' ? tok + nl + 1 : NULL;
        while (p) {
            char *colon = strchr(p, ':');
            if (colon) *colon = '\0';
            trim(&p);
            if (!*p) { rc = fed_error(FED_EINVAL, "codec spec: '%s': empty parameter", tokcopy); goto fail; }
            char *eq = strchr(p, '=');
            if (eq) {
                *eq = '\0';
                char *key = p, *val = eq + 1;
                trim(&key);
                trim(&val);
                rc = apply_param(cur, cur_name, key, val, tokcopy);
            } else {
                rc = apply_param(cur, cur_name, NULL, p, tokcopy);
            }
            if (rc) goto fail;
            p = colon ? colon + 1 : NULL;
        }
    }
done:
    canonical(c);
    *out = c;
    return 0;
fail:
    free(c);
    return rc;
}

void fed_codec_free(fed_codec *c) { free(c); }

const char *fed_codec_spec(const fed_codec *c) { return c ? c->spec : ""; }

int fed_codec_is_lossless(const fed_codec *c) { return c && !c->sparse.id && c->value.id == FC_F32; }

/* ---- records ------------------------------------------------------------ */

static uint8_t *put_rec(uint8_t *p, uint8_t id, uint8_t a, uint8_t b, uint32_t cc, uint64_t count, uint64_t aux,
                        uint64_t plen) {
    p[0] = id;
    p[1] = FC_VERSION;
    p[2] = a;
    p[3] = b;
    fc_put32(p + 4, cc);
    fc_put64(p + 8, count);
    fc_put64(p + 16, aux);
    fc_put64(p + 24, plen);
    return p + FC_REC_HDR;
}

static const char *rec_name(int id) {
    static const char *const names[] = {"?", "f32", "quant", "qsgd", "sign", "topk", "randk", "zstd"};
    return id >= 1 && id <= 7 ? names[id] : "unknown";
}

static int read_rec(const uint8_t *p, size_t avail, fc_rec *r) {
    if (avail < FC_REC_HDR)
        return fed_error(FED_EFORMAT, "codec: truncated frame: a stage record needs %d bytes, %zu left", FC_REC_HDR, avail);
    r->id = p[0];
    r->ver = p[1];
    r->a = p[2];
    r->b = p[3];
    r->c = fc_get32(p + 4);
    r->count = fc_get64(p + 8);
    r->aux = fc_get64(p + 16);
    r->plen = fc_get64(p + 24);
    r->payload = p + FC_REC_HDR;
    if (r->id < FC_F32 || r->id > FC_ZSTD) return fed_error(FED_EFORMAT, "codec: unknown stage id %u", r->id);
    if (r->ver != FC_VERSION)
        return fed_error(FED_EFORMAT, "codec: %s record version %u not supported (this build reads %d)", rec_name(r->id),
                         r->ver, FC_VERSION);
    if (r->plen > avail - FC_REC_HDR)
        return fed_error(FED_EFORMAT, "codec: truncated frame: %s payload of %llu bytes, %zu left", rec_name(r->id),
                         (unsigned long long)r->plen, avail - FC_REC_HDR);
    return 0;
}

/* Largest body (records after zstd) a frame of n values can need: bounds the
 * decompressed size a peer may claim. */
static uint64_t body_cap(size_t n) { return 2 * FC_REC_HDR + 16 + 12 * (uint64_t)n; }

/* Records after the optional zstd one: [sparsifier] value. ids gets the chain. */
static int decode_body(const uint8_t *b, size_t blen, size_t n, int nrec, float *out, int *ids) {
    fc_rec r1, r2;
    int rc = read_rec(b, blen, &r1);
    if (rc) return rc;
    size_t used = FC_REC_HDR + (size_t)r1.plen;
    if (r1.id == FC_ZSTD) return fed_error(FED_EFORMAT, "codec: zstd record inside a zstd frame");
    if (r1.id != FC_TOPK && r1.id != FC_RANDK) {
        if (nrec != 1) return fed_error(FED_EFORMAT, "codec: frame header says %d more stages, found 1", nrec);
        ids[0] = 0;
        ids[1] = r1.id == FC_QUANT ? 100 + r1.a : r1.id;
        if ((rc = fc_value_decode(&r1, out, n))) return rc;
        if (used != blen) return fed_error(FED_EFORMAT, "codec: %zu trailing bytes after the last stage", blen - used);
        return 0;
    }
    if (nrec != 2) return fed_error(FED_EFORMAT, "codec: frame header says %d more stages, found a sparsifier and a value coder", nrec);
    if (r1.count != n)
        return fed_error(FED_EFORMAT, "codec: %s record is for %llu values, expected %zu", rec_name(r1.id),
                         (unsigned long long)r1.count, n);
    if (r1.aux > n)
        return fed_error(FED_EFORMAT, "codec: %s record keeps k = %llu of %zu values", rec_name(r1.id),
                         (unsigned long long)r1.aux, n);
    if (r1.b || r1.c) return fed_error(FED_EFORMAT, "codec: %s record has non-zero reserved fields", rec_name(r1.id));
    size_t k = (size_t)r1.aux;
    if ((rc = read_rec(b + used, blen - used, &r2))) return rc;
    used += FC_REC_HDR + (size_t)r2.plen;
    if (r2.id == FC_TOPK || r2.id == FC_RANDK || r2.id == FC_ZSTD)
        return fed_error(FED_EFORMAT, "codec: %s record after a sparsifier (expected a value coder)", rec_name(r2.id));
    if (used != blen) return fed_error(FED_EFORMAT, "codec: %zu trailing bytes after the last stage", blen - used);
    ids[0] = r1.id;
    ids[1] = r2.id == FC_QUANT ? 100 + r2.a : r2.id;
    size_t *idx = malloc((k ? k : 1) * sizeof *idx);
    float *vals = malloc((k ? k : 1) * sizeof *vals);
    if (!idx || !vals) {
        rc = fed_error(FED_ENOMEM, "codec: out of memory decoding %zu values", k);
        goto out;
    }
    if (r1.id == FC_TOPK) {
        rc = fc_idx_read(r1.a, r1.payload, (size_t)r1.plen, n, k, idx);
    } else if (r1.a != FC_IDX_SEEDED || r1.plen != 8) {
        rc = fed_error(FED_EFORMAT, "codec: randk record must carry an 8-byte key (coding 2), got coding %u and %llu bytes",
                       r1.a, (unsigned long long)r1.plen);
    } else {
        rc = fc_randk_draw(fc_get64(r1.payload), n, k, idx);
    }
    if (rc || (rc = fc_value_decode(&r2, vals, k))) goto out;
    if (n) memset(out, 0, n * sizeof *out);
    float scale = r1.id == FC_RANDK && k ? (float)((double)n / (double)k) : 1.0f;
    for (size_t i = 0; i < k; i++) out[idx[i]] = vals[i] * scale;
    if (scale != 1.0f)
        for (size_t i = 0; i < k; i++)
            if (!isfinite(out[idx[i]])) {
                rc = fed_error(FED_EFORMAT, "codec: randk value %zu overflows after scaling by n/k", i);
                break;
            }
out:
    free(idx);
    free(vals);
    return rc;
}

static int codec_ids(const fed_codec *c, int *ids) {
    ids[0] = c->sparse.id;
    ids[1] = c->value.id == FC_QUANT ? 100 + c->value.bits : c->value.id;
    return c->zstd.id;
}

static void chain_name(int zstd, const int *ids, char *out, size_t cap) {
    int v = ids[1];
    const char *vn = v == 108 ? "q8" : v == 104 ? "q4" : v == 102 ? "q2" : v >= 100 ? "q?" : rec_name(v);
    snprintf(out, cap, "%s%s%s%s", ids[0] ? rec_name(ids[0]) : "", ids[0] ? "," : "", vn, zstd ? ",zstd" : "");
}

static int decode_frame(const fed_codec *c, const uint8_t *buf, size_t len, float *out, size_t n, int *is_delta) {
    if (!buf && len) return fed_error(FED_EINVAL, "codec: decode of a NULL buffer");
    if (!out && n) return fed_error(FED_EINVAL, "codec: decode into a NULL vector");
    if (len < FC_FRAME_HDR)
        return fed_error(FED_EFORMAT, "codec: frame is %zu bytes, shorter than its %d-byte header", len, FC_FRAME_HDR);
    if (memcmp(buf, "FDC", 3)) return fed_error(FED_EFORMAT, "codec: not a federate codec frame (bad magic)");
    if (buf[3] != FC_VERSION)
        return fed_error(FED_EFORMAT, "codec: frame version %u not supported (this build reads %d)", buf[3], FC_VERSION);
    if (buf[4] > 1) return fed_error(FED_EFORMAT, "codec: unknown frame flags 0x%02x", buf[4]);
    int nst = buf[5];
    if (nst < 1 || nst > 3) return fed_error(FED_EFORMAT, "codec: frame has %d stages (1 to 3 allowed)", nst);
    if (buf[6] || buf[7]) return fed_error(FED_EFORMAT, "codec: frame reserved bytes are not zero");
    uint64_t fn = fc_get64(buf + 8);
    if (fn != (uint64_t)n)
        return fed_error(FED_EFORMAT, "codec: frame holds %llu values, expected %zu", (unsigned long long)fn, n);
    *is_delta = buf[4] & 1;
    fc_rec r;
    int rc = read_rec(buf + FC_FRAME_HDR, len - FC_FRAME_HDR, &r);
    if (rc) return rc;
    int ids[2], zstd = 0;
    if (r.id == FC_ZSTD) {
        zstd = 1;
        if (nst < 2) return fed_error(FED_EFORMAT, "codec: zstd record with nothing inside (frame has 1 stage)");
        if (r.count != n)
            return fed_error(FED_EFORMAT, "codec: zstd record is for %llu values, expected %zu", (unsigned long long)r.count,
                             n);
        if (r.b || r.c) return fed_error(FED_EFORMAT, "codec: zstd record has non-zero reserved fields");
        if (r.aux > body_cap(n))
            return fed_error(FED_EFORMAT, "codec: zstd content of %llu bytes is more than %zu values can need (%llu)",
                             (unsigned long long)r.aux, n, (unsigned long long)body_cap(n));
        if (FC_FRAME_HDR + FC_REC_HDR + r.plen != len)
            return fed_error(FED_EFORMAT, "codec: %llu trailing bytes after the zstd frame",
                             (unsigned long long)(len - FC_FRAME_HDR - FC_REC_HDR - r.plen));
        size_t raw = (size_t)r.aux, zl = (size_t)r.plen;
        unsigned long long fcs = ZSTD_getFrameContentSize(r.payload, zl);
        if (fcs == ZSTD_CONTENTSIZE_ERROR || fcs == ZSTD_CONTENTSIZE_UNKNOWN || fcs != raw)
            return fed_error(FED_EFORMAT, "codec: zstd frame header is bad or does not say %zu bytes", raw);
        size_t fl = ZSTD_findFrameCompressedSize(r.payload, zl);
        if (ZSTD_isError(fl) || fl != zl) return fed_error(FED_EFORMAT, "codec: zstd payload is not exactly one zstd frame");
        uint8_t *body = malloc(raw ? raw : 1);
        if (!body) return fed_error(FED_ENOMEM, "codec: out of memory for %zu bytes", raw);
        size_t got = ZSTD_decompress(body, raw, r.payload, zl);
        if (ZSTD_isError(got) || got != raw) {
            rc = fed_error(FED_EFORMAT, "codec: zstd: %s", ZSTD_isError(got) ? ZSTD_getErrorName(got) : "short content");
        } else {
            rc = decode_body(body, raw, n, nst - 1, out, ids);
        }
        free(body);
    } else {
        rc = decode_body(buf + FC_FRAME_HDR, len - FC_FRAME_HDR, n, nst, out, ids);
    }
    if (rc) return rc;
    if (c) {
        int want[2];
        int wz = codec_ids(c, want);
        if (!!wz != zstd || want[0] != ids[0] || want[1] != ids[1]) {
            char got[64], exp[64];
            chain_name(zstd, ids, got, sizeof got);
            chain_name(wz, want, exp, sizeof exp);
            return fed_error(FED_EFORMAT, "codec: frame was encoded as '%s' but the codec is '%s'", got, exp);
        }
    }
    return 0;
}

/* ---- encode --------------------------------------------------------------- */

static int encode_impl(const fed_codec *c, const fed_codec_ctx *ctx, const float *x, const float *prev, size_t n,
                       float *residual, uint8_t **buf, size_t *len) {
    if (!buf || !len) return fed_error(FED_EINVAL, "codec: encode needs buf and len");
    *buf = NULL;
    *len = 0;
    if (!c) return fed_error(FED_EINVAL, "codec: encode with a NULL codec");
    if (!x && n) return fed_error(FED_EINVAL, "codec: encode of a NULL vector");
    if (n > ((size_t)1 << 40)) return fed_error(FED_EINVAL, "codec: %zu values is too many", n);
    fed_codec_ctx zero = {0};
    if (!ctx) ctx = &zero;
    fed_rng rng;
    fed_rng_init(&rng, ctx->seed, ctx->round, ctx->client, FED_RNG_QUANT);
    fc_keys keys;
    keys.k0 = fed_rng_u32(&rng);
    keys.k1 = fed_rng_u32(&rng);
    uint64_t rkey = fed_rng_u64(&rng);

    int rc = 0;
    float *ebuf = NULL, *vals = NULL;
    size_t *idx = NULL;
    uint8_t *out = NULL, *body = NULL;
    const float *e = x;
    if (residual || prev) {
        ebuf = malloc((n ? n : 1) * sizeof *ebuf);
        if (!ebuf) { rc = fed_error(FED_ENOMEM, "codec: out of memory for %zu values", n); goto fail; }
        if (prev && residual)
            for (size_t i = 0; i < n; i++) ebuf[i] = (x[i] - prev[i]) + residual[i];
        else if (prev)
            for (size_t i = 0; i < n; i++) ebuf[i] = x[i] - prev[i];
        else
            for (size_t i = 0; i < n; i++) ebuf[i] = x[i] + residual[i];
        e = ebuf;
    }
    if (!fc_all_finite(e, n)) {
        size_t i = 0;
        while (i < n && isfinite(e[i]) && fabsf(e[i]) < 0x1p127f) i++;
        rc = fed_error(FED_EINVAL, "codec: value %zu (%g) is not finite or beyond 2^127%s", i, i < n ? e[i] : 0.0,
                       residual ? " (after adding the residual)" : "");
        goto fail;
    }
    const float *v = e;
    size_t m = n, k = 0, sp_len = 0;
    int coding = 0;
    if (c->sparse.id) {
        k = fc_sparse_k(&c->sparse, n);
        idx = malloc((k ? k : 1) * sizeof *idx);
        vals = malloc((k ? k : 1) * sizeof *vals);
        if (!idx || !vals) { rc = fed_error(FED_ENOMEM, "codec: out of memory for %zu indices", k); goto fail; }
        if (c->sparse.id == FC_TOPK) {
            if ((rc = fc_topk_select(e, n, k, idx))) goto fail;
            size_t vl = fc_idx_varint_size(idx, k), bl = (n + 7) / 8;
            coding = vl <= bl ? FC_IDX_VARINT : FC_IDX_BITMAP;
            sp_len = vl <= bl ? vl : bl;
        } else {
            if ((rc = fc_randk_draw(rkey, n, k, idx))) goto fail;
            coding = FC_IDX_SEEDED;
            sp_len = 8;
        }
        for (size_t i = 0; i < k; i++) vals[i] = e[idx[i]];
        if (c->sparse.id == FC_RANDK && k) {
            /* the receiver scales by n/k: that must stay a float */
            double lim = 0x1p127 / ((double)n / (double)k);
            for (size_t i = 0; i < k; i++)
                if (fabs((double)vals[i]) >= lim) {
                    rc = fed_error(FED_EINVAL, "codec: randk value %zu (%g) overflows float once scaled by n/k", idx[i],
                                   vals[i]);
                    goto fail;
                }
        }
        v = vals;
        m = k;
    }
    size_t vp_len = fc_value_payload_size(&c->value, m);
    size_t body_len = (c->sparse.id ? FC_REC_HDR + sp_len : 0) + FC_REC_HDR + vp_len;
    int nst = (c->sparse.id ? 1 : 0) + 1 + (c->zstd.id ? 1 : 0);
    size_t zbound = c->zstd.id ? ZSTD_compressBound(body_len) : 0;
    size_t cap = c->zstd.id ? FC_FRAME_HDR + FC_REC_HDR + zbound : FC_FRAME_HDR + body_len;
    out = malloc(cap);
    body = c->zstd.id ? malloc(body_len) : out + FC_FRAME_HDR;
    if (!out || !body) { rc = fed_error(FED_ENOMEM, "codec: out of memory for %zu bytes", cap); goto fail; }
    memcpy(out, "FDC", 3);
    out[3] = FC_VERSION;
    out[4] = prev ? 1 : 0;
    out[5] = (uint8_t)nst;
    out[6] = out[7] = 0;
    fc_put64(out + 8, n);
    uint8_t *p = body;
    if (c->sparse.id) {
        p = put_rec(p, (uint8_t)c->sparse.id, (uint8_t)coding, 0, 0, n, k, sp_len);
        if (coding == FC_IDX_VARINT) fc_idx_varint_write(idx, k, p);
        else if (coding == FC_IDX_BITMAP) fc_idx_bitmap_write(idx, k, n, p);
        else fc_put64(p, rkey);
        p += sp_len;
    }
    uint8_t a, b;
    uint32_t cc;
    uint64_t aux;
    fc_value_fields(&c->value, &a, &b, &cc, &aux);
    p = put_rec(p, (uint8_t)c->value.id, a, b, cc, m, aux, vp_len);
    if ((rc = fc_value_encode(&c->value, keys, v, m, p))) goto fail;
    size_t total = FC_FRAME_HDR + body_len;
    if (c->zstd.id) {
        size_t zl = ZSTD_compress(out + FC_FRAME_HDR + FC_REC_HDR, zbound, body, body_len, c->zstd.level);
        if (ZSTD_isError(zl)) { rc = fed_error(FED_EINTERNAL, "codec: zstd: %s", ZSTD_getErrorName(zl)); goto fail; }
        put_rec(out + FC_FRAME_HDR, FC_ZSTD, (uint8_t)(int8_t)c->zstd.level, 0, 0, n, body_len, zl);
        total = FC_FRAME_HDR + FC_REC_HDR + zl;
    }
    if (residual) {
        /* what was sent, exactly as the receiver will see it; the residual is
         * only written once nothing can fail */
        int ids[2];
        float *d = ebuf == e ? malloc((n ? n : 1) * sizeof *d) : NULL;
        if (!d) { rc = fed_error(FED_ENOMEM, "codec: out of memory for %zu values", n); goto fail; }
        if ((rc = decode_body(body, body_len, n, nst - (c->zstd.id ? 1 : 0), d, ids))) {
            free(d);
            goto fail;
        }
        for (size_t i = 0; i < n; i++) residual[i] = e[i] - d[i];
        free(d);
    }
    if (c->zstd.id) {
        free(body);
        uint8_t *shrunk = realloc(out, total);
        if (shrunk) out = shrunk;
    }
    *len = total;
    *buf = out;
    free(ebuf);
    free(vals);
    free(idx);
    return 0;
fail:
    if (c->zstd.id) free(body);
    free(out);
    free(ebuf);
    free(vals);
    free(idx);
    *len = 0;
    return rc;
}

int fed_codec_encode(const fed_codec *c, const fed_codec_ctx *ctx, const float *x, size_t n, float *residual,
                     uint8_t **buf, size_t *len) {
    return encode_impl(c, ctx, x, NULL, n, residual, buf, len);
}

int fed_codec_decode(const fed_codec *c, const uint8_t *buf, size_t len, float *out, size_t n) {
    int delta = 0;
    int rc = decode_frame(c, buf, len, out, n, &delta);
    if (rc) return rc;
    if (delta)
        return fed_error(FED_EFORMAT, "codec: frame is a delta against a previous model (decode it with fed_codec_decode_model)");
    return 0;
}

int fed_codec_encode_model(const fed_codec *c, const fed_codec_ctx *ctx, const float *current, const float *previous,
                           size_t n, float *residual, uint8_t **buf, size_t *len) {
    return encode_impl(c, ctx, current, previous, n, residual, buf, len);
}

int fed_codec_frame_is_delta(const uint8_t *buf, size_t len) {
    if (!buf || len < FC_FRAME_HDR || memcmp(buf, "FDC", 3) || buf[3] != FC_VERSION || buf[4] > 1)
        return fed_error(FED_EFORMAT, "codec: not a federate codec frame");
    return buf[4] & 1;
}

int fed_codec_decode_model(const fed_codec *c, const uint8_t *buf, size_t len, const float *previous, float *out,
                           size_t n) {
    int delta = fed_codec_frame_is_delta(buf, len);
    if (delta < 0) return delta;
    if (!delta) return decode_frame(c, buf, len, out, n, &delta);
    if (!previous && n) return fed_error(FED_EINVAL, "codec: a delta frame needs the previous copy of the model");
    float *d = malloc((n ? n : 1) * sizeof *d);
    if (!d) return fed_error(FED_ENOMEM, "codec: out of memory for %zu values", n);
    int rc = decode_frame(c, buf, len, d, n, &delta);
    if (!rc)
        for (size_t i = 0; i < n; i++) out[i] = previous[i] + d[i];
    free(d);
    return rc;
}
