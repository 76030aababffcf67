/* error.h - the thread-local error message behind fm_last_error(). */
#ifndef FM_ERROR_H
#define FM_ERROR_H

#include "falconmamba.h"

/* Record a message for fm_last_error() and return status, so callers can write
   `return fm_error(FM_ERR_FORMAT, "...", ...);`. */
fm_status fm_error(fm_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Same as fm_error but with the signature the backend vtable expects. */
void fm_error_from_backend(int status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

void fm_error_clear(void);

#endif
