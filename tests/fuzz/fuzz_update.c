/* libFuzzer entry point for what a coordinator parses from the network: an
 * upload body (optionally a zstd frame, as clients may compress) checked
 * against the model, and a client's public key in hex. Built and run by
 * tests/fuzz/run.sh (a short run in `make test`, a long one in `make fuzz`). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "federate/error.h"
#include "federate/model.h"
#include "federate/net.h"
#include "federate/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static fed_model *proto;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!proto) {
        fed_model_opts o;
        fed_model_opts_default(&o);
        o.in_c = 1, o.in_h = 4, o.in_w = 4, o.num_classes = 3;
        o.hidden[0] = 5, o.n_hidden = 1;
        if (fed_model_create(&proto, "mlp", &o)) __builtin_trap();
    }
    size_t n = fed_model_num_params(proto);
    float *params = malloc(n * sizeof(float)), *control = malloc(n * sizeof(float));
    if (!params || !control) __builtin_trap();
    /* first byte: 0 plain body, 1 zstd frame, 2 with a control variate, 3 a key */
    int mode = size ? data[0] % 4 : 0;
    const uint8_t *body = size ? data + 1 : data;
    size_t len = size ? size - 1 : 0;
    if (mode == 1) {
        void *out = NULL;
        size_t out_len = 0;
        if (fed_net_zstd_decompress(body, len, 1 << 20, &out, &out_len) == 0) {
            if (out_len > (1 << 20)) __builtin_trap();
            (void)fed_net_unpack(proto, out, out_len, 0, params, NULL, NULL, NULL);
            free(out);
        }
    } else if (mode == 3) {
        char key[200];
        size_t k = len < sizeof key - 1 ? len : sizeof key - 1;
        memcpy(key, body, k);
        key[k] = '\0';
        if (!memchr(key, '/', k)) {   /* paths are read as key files: keep to strings */
            uint8_t pk[FED_SIGN_PUBLICKEYBYTES];
            (void)fed_public_key_parse(key, pk);
        }
    } else {
        fed_st_file *f = NULL;
        if (fed_net_unpack(proto, body, len, mode == 2, params, NULL, mode == 2 ? control : NULL, &f) == 0) {
            for (size_t i = 0; i < n; i++)
                if (params[i] != params[i]) __builtin_trap();   /* accepted values are finite */
            fed_st_close(f);
        }
    }
    free(params);
    free(control);
    return 0;
}
