/* file_util.h - small file helpers for the loader. */
#ifndef FM_FILE_UTIL_H
#define FM_FILE_UTIL_H

#include <stddef.h>

#include "falconmamba.h"

/* Read a whole (small) file into a NUL-terminated malloc'ed buffer; refuse files over max_bytes.
   Returns FM_ERR_IO if it cannot be opened/read. */
fm_status fm_read_file(const char *path, size_t max_bytes, char **buf_out, size_t *len_out);

/* 1 if [end, text + len) holds only JSON whitespace (or NUL padding). */
int fm_only_whitespace(const char *end, const char *text, size_t len);

/* 1 if path exists (any type). */
int fm_path_exists(const char *path);

/* malloc'ed "dir/name". NULL on out of memory. */
char *fm_path_join(const char *dir, const char *name);

#endif
