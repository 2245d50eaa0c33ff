/* libFuzzer entry point for the safetensors reader, which parses bytes uploaded
 * over the network. Build (jansson is linked uninstrumented, which is fine):
 *   clang -std=c17 -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Iinclude \
 *     src/core/error.c src/store/safetensors.c tests/fuzz/fuzz_safetensors.c -ljansson -o fuzz_st
 *   ./fuzz_st -max_total_time=60 tests/fuzz/corpus/safetensors */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "federate/error.h"
#include "federate/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fed_st_file *f = NULL;
    int rc = fed_st_parse(data, size, &f);
    if (rc == 0) {
        /* Touch every byte the parser claims is valid, so overreads show up. */
        volatile uint8_t sink = 0;
        for (int i = 0; i < fed_st_count(f); i++) {
            const fed_st_tensor *t = fed_st_get(f, i);
            size_t es = t->dtype == FED_DTYPE_I64 ? 8 : 4;
            const uint8_t *p = t->data;
            for (size_t k = 0; k < t->numel * es; k++) sink ^= p[k];
            if (fed_st_find(f, t->name) == NULL) __builtin_trap();
        }
        (void)sink;
        (void)fed_st_metadata(f, "format");
        /* What we parsed must serialize and parse back. */
        void *buf;
        size_t len;
        int n = fed_st_count(f);
        fed_st_tensor ts[64];
        if (n <= 64) {
            for (int i = 0; i < n; i++) ts[i] = *fed_st_get(f, i);
            if (fed_st_serialize(ts, n, NULL, 0, &buf, &len) != 0) __builtin_trap();
            fed_st_file *g = NULL;
            if (fed_st_parse(buf, len, &g) != 0 || fed_st_count(g) != n) __builtin_trap();
            for (int i = 0; i < n; i++) {
                const fed_st_tensor *a = fed_st_get(f, i), *b = fed_st_get(g, i);
                size_t nb = a->numel * (a->dtype == FED_DTYPE_I64 ? 8 : 4);
                if (strcmp(a->name, b->name) || a->numel != b->numel || memcmp(a->data, b->data, nb)) __builtin_trap();
            }
            fed_st_close(g);
            free(buf);
        }
        fed_st_close(f);
    } else if (rc != FED_EFORMAT || f != NULL || fed_last_error()[0] == '\0') {
        __builtin_trap();
    }
    return 0;
}
