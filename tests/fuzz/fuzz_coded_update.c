/* libFuzzer entry point for a compressed upload as the coordinator parses it
 * (docs/protocol.md, "Compressed updates"): a safetensors body whose parameters
 * travel as one U8 codec frame, unpacked and decoded against the model and the
 * run's codec. The first byte picks the codec. Built and run by
 * tests/fuzz/run.sh; seeds in tests/fuzz/corpus/coded_update (real bodies). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "federate/compress.h"
#include "federate/error.h"
#include "federate/model.h"
#include "federate/net.h"
#include "federate/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const specs[] = {"q8", "q4,zstd", "topk:0.25,q8,zstd", "qsgd:levels=16,zstd", "sign"};
#define NSPECS (sizeof specs / sizeof specs[0])
static fed_model *proto;
static fed_codec *codecs[NSPECS];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!proto) {
        fed_model_opts o;
        fed_model_opts_default(&o);
        o.in_c = 1, o.in_h = 4, o.in_w = 4, o.num_classes = 3;
        o.hidden[0] = 5, o.n_hidden = 1;
        if (fed_model_create(&proto, "mlp", &o)) __builtin_trap();
        for (size_t i = 0; i < NSPECS; i++)
            if (fed_codec_new(&codecs[i], specs[i])) __builtin_trap();
    }
    if (!size) return 0;
    size_t n = fed_model_num_params(proto);
    float *params = malloc(n * sizeof(float));
    if (!params) __builtin_trap();
    const fed_codec *c = codecs[data[0] % NSPECS];
    fed_st_file *f = NULL;
    int coded = 0;
    if (fed_net_unpack_update(proto, c, data + 1, size - 1, 0, params, NULL, NULL, &f, &coded) == 0) {
        for (size_t i = 0; i < n; i++)
            if (params[i] != params[i] || params[i] - params[i] != 0) __builtin_trap();   /* accepted values are finite */
        fed_st_close(f);
    }
    free(params);
    return 0;
}
