/* Error codes to names, and the per-thread detail of the last failure. */
#include "federate/error.h"
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char last_error[1024];

const char *fed_strerror(int code) {
    switch (code) {
    case FED_OK: return "success";
    case FED_EINVAL: return "invalid argument";
    case FED_ENOMEM: return "out of memory";
    case FED_EIO: return "input/output error";
    case FED_EFORMAT: return "malformed data";
    case FED_ESHAPE: return "shape mismatch";
    case FED_ENOTFOUND: return "not found";
    case FED_ERANGE: return "value out of range";
    case FED_EUNSUPPORTED: return "unsupported";
    case FED_EINTERNAL: return "internal error";
    case FED_ESTATE: return "invalid state";
    default: return "unknown error";
    }
}

const char *fed_last_error(void) { return last_error; }

void fed_clear_error(void) { last_error[0] = '\0'; }

int fed_error(int code, const char *fmt, ...) {
    /* formatted aside first: callers may wrap the previous message, passing
     * fed_last_error() as an argument, and vsnprintf must not overlap its source */
    char msg[sizeof last_error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    memcpy(last_error, msg, sizeof msg);
    return code;
}
