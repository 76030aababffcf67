/* error.c - status strings and the thread-local last-error message. */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define FM_ERROR_CAP 1024

static _Thread_local char g_error[FM_ERROR_CAP];

static void set_message(const char *fmt, va_list ap) {
    vsnprintf(g_error, sizeof g_error, fmt, ap);
}

fm_status fm_error(fm_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    set_message(fmt, ap);
    va_end(ap);
    return status;
}

void fm_error_from_backend(int status, const char *fmt, ...) {
    (void)status;
    va_list ap;
    va_start(ap, fmt);
    set_message(fmt, ap);
    va_end(ap);
}

void fm_error_clear(void) { g_error[0] = '\0'; }

FM_API const char *fm_last_error(void) { return g_error; }

FM_API const char *fm_status_string(fm_status s) {
    switch (s) {
    case FM_OK: return "FM_OK";
    case FM_ERR_INVALID_ARGUMENT: return "FM_ERR_INVALID_ARGUMENT";
    case FM_ERR_OUT_OF_MEMORY: return "FM_ERR_OUT_OF_MEMORY";
    case FM_ERR_IO: return "FM_ERR_IO";
    case FM_ERR_FORMAT: return "FM_ERR_FORMAT";
    case FM_ERR_UNSUPPORTED: return "FM_ERR_UNSUPPORTED";
    case FM_ERR_BACKEND: return "FM_ERR_BACKEND";
    case FM_ERR_BUFFER_TOO_SMALL: return "FM_ERR_BUFFER_TOO_SMALL";
    case FM_ERR_STATE_MISMATCH: return "FM_ERR_STATE_MISMATCH";
    case FM_ERR_CANCELLED: return "FM_ERR_CANCELLED";
    case FM_ERR_INVALID_TOKEN: return "FM_ERR_INVALID_TOKEN";
    case FM_ERR_INTERNAL: return "FM_ERR_INTERNAL";
    }
    return "FM_STATUS_UNKNOWN";
}

#define FM_STR2(x) #x
#define FM_STR(x) FM_STR2(x)
FM_API const char *fm_version(void) {
    return FM_STR(FM_VERSION_MAJOR) "." FM_STR(FM_VERSION_MINOR) "." FM_STR(FM_VERSION_PATCH);
}
