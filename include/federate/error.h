/* Error codes and the per-thread "last error" detail.
 * Every function that can fail returns 0 or a negative FED_E* code; the detail
 * (which file, which key, which byte) is kept per thread for fed_last_error(). */
#ifndef FEDERATE_ERROR_H
#define FEDERATE_ERROR_H

/* Append-only: values are part of the ABI. */
enum fed_error {
    FED_OK = 0,
    FED_EINVAL = -1,     /* bad argument or configuration value */
    FED_ENOMEM = -2,     /* allocation failed */
    FED_EIO = -3,        /* read/write failed, missing file */
    FED_EFORMAT = -4,    /* malformed or corrupt input data */
    FED_ESHAPE = -5,     /* tensor shape/name/dtype mismatch */
    FED_ENOTFOUND = -6,  /* unknown name (model, dataset, key, run) */
    FED_ERANGE = -7,     /* value out of the allowed range */
    FED_EUNSUPPORTED = -8,
    FED_EINTERNAL = -9,
    FED_ESTATE = -10,    /* call not valid in the object's current state */
};

const char *fed_strerror(int code);
/* Detail of the last error set on this thread ("" if none). */
const char *fed_last_error(void);
/* Sets the detail and returns code, so callers can `return fed_error(FED_EIO, ...)`. */
int fed_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void fed_clear_error(void);

#endif
