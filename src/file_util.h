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

struct cJSON;
/* cJSON_ParseWithLengthOpts(text, len, end, 0) under a process-wide lock. cJSON's parser writes its
   global error record (the one cJSON_GetErrorPtr reads) on every call, whatever the arguments, so
   two threads parsing at once race on it; every parse in the library goes through here. *end is the
   position where parsing stopped (success) or failed. The lock does not cover cJSON calls the host
   program makes itself. */
struct cJSON *fm_json_parse(const char *text, size_t len, const char **end);

/* Drop the pages wholly inside [p, p + n) of a read-only file mapping from this process's resident
   set (MADV_DONTNEED; the page cache keeps them). Used once a tensor has been copied or converted
   out of the mapped checkpoint, so that loading does not hold the file and the copy at once. */
void fm_release_mapped(const void *p, size_t n);

/* 1 if path exists (any type). */
int fm_path_exists(const char *path);

/* malloc'ed "dir/name". NULL on out of memory. */
char *fm_path_join(const char *dir, const char *name);

#endif
