/* libFuzzer entry point for the run configuration parser (YAML through libyaml,
 * then key, type and range checks): configs arrive from users and, through the
 * dashboard's form and a coordinator's files, from other machines. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "federate/config.h"
#include "federate/error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fed_config c, before;
    fed_config_default(&c);
    memcpy(&before, &c, sizeof c);
    int rc = fed_config_load_string(&c, (const char *)data, size);
    /* a failed load leaves the config untouched */
    if (rc && memcmp(&c, &before, sizeof c) != 0) __builtin_trap();
    if (rc == 0) (void)fed_config_validate(&c);
    return 0;
}
