/* safetensors.h - a strict, bounds-checked reader for one .safetensors file (memory-mapped). */
#ifndef FM_SAFETENSORS_H
#define FM_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "falconmamba.h"

#define FM_ST_MAX_DIMS 8

typedef enum fm_st_dtype {
    FM_ST_BOOL, FM_ST_U8, FM_ST_I8, FM_ST_F8_E4M3, FM_ST_F8_E5M2, FM_ST_I16, FM_ST_U16, FM_ST_F16,
    FM_ST_BF16, FM_ST_I32, FM_ST_U32, FM_ST_F32, FM_ST_F64, FM_ST_I64, FM_ST_U64
} fm_st_dtype;

typedef struct fm_st_tensor {
    char *name;
    fm_st_dtype dtype;
    int n_dims;
    int64_t shape[FM_ST_MAX_DIMS];
    uint64_t n_elems;
    const uint8_t *data; /* inside the mapping; may be unaligned */
    uint64_t n_bytes;
} fm_st_tensor;

typedef struct fm_st_file {
    char *path;         /* for messages */
    void *map;          /* NULL when parsing a caller's buffer */
    size_t map_size;
    fm_st_tensor *tensors; /* sorted by name */
    size_t n_tensors;
} fm_st_file;

/* Map and parse the file at path. */
fm_status fm_st_open(const char *path, fm_st_file **out);

/* Parse an in-memory image of a safetensors file (which must outlive the result). `name` is used
   in messages. This is the entry point the fuzzer drives. */
fm_status fm_st_parse(const uint8_t *buf, size_t size, const char *name, fm_st_file **out);

const fm_st_tensor *fm_st_find(const fm_st_file *f, const char *name);

void fm_st_close(fm_st_file *f);

const char *fm_st_dtype_name(fm_st_dtype t);

#endif
