/* safetensors.c - parse and validate the 8-byte length + JSON header + data layout.
 *
 * Everything read from the file is checked before use: header length within the file, JSON well
 * formed, every entry with a known dtype, a shape of non-negative integers, data offsets inside the
 * data section, byte size = dtype size x elements, no two tensors overlapping, no duplicate names.
 */
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "file_util.h"

#define MAX_HEADER_BYTES (100u * 1024u * 1024u) /* the format's own limit */

static const struct {
    const char *name;
    fm_st_dtype type;
    unsigned size;
} k_dtypes[] = {
    {"BOOL", FM_ST_BOOL, 1}, {"U8", FM_ST_U8, 1},    {"I8", FM_ST_I8, 1},     {"F8_E4M3", FM_ST_F8_E4M3, 1},
    {"F8_E5M2", FM_ST_F8_E5M2, 1}, {"I16", FM_ST_I16, 2}, {"U16", FM_ST_U16, 2}, {"F16", FM_ST_F16, 2},
    {"BF16", FM_ST_BF16, 2}, {"I32", FM_ST_I32, 4},  {"U32", FM_ST_U32, 4},  {"F32", FM_ST_F32, 4},
    {"F64", FM_ST_F64, 8},   {"I64", FM_ST_I64, 8},  {"U64", FM_ST_U64, 8},
};

const char *fm_st_dtype_name(fm_st_dtype t) {
    for (size_t i = 0; i < sizeof k_dtypes / sizeof k_dtypes[0]; i++)
        if (k_dtypes[i].type == t) return k_dtypes[i].name;
    return "?";
}

static int lookup_dtype(const char *s, fm_st_dtype *t, unsigned *size) {
    for (size_t i = 0; i < sizeof k_dtypes / sizeof k_dtypes[0]; i++)
        if (strcmp(k_dtypes[i].name, s) == 0) {
            *t = k_dtypes[i].type;
            *size = k_dtypes[i].size;
            return 1;
        }
    return 0;
}

static int is_uint(const cJSON *v) {
    return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble == floor(v->valuedouble) &&
           v->valuedouble <= 9007199254740992.0; /* 2^53: exact in a double */
}

static void free_tensors(fm_st_file *f) {
    for (size_t i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
    free(f->tensors);
    f->tensors = NULL;
    f->n_tensors = 0;
}

void fm_st_close(fm_st_file *f) {
    if (!f) return;
    free_tensors(f);
    if (f->map) munmap(f->map, f->map_size);
    free(f->path);
    free(f);
}

static int cmp_by_name(const void *a, const void *b) {
    return strcmp(((const fm_st_tensor *)a)->name, ((const fm_st_tensor *)b)->name);
}

static int cmp_by_offset(const void *a, const void *b) {
    const fm_st_tensor *x = *(const fm_st_tensor *const *)a, *y = *(const fm_st_tensor *const *)b;
    if (x->data != y->data) return x->data < y->data ? -1 : 1;
    return x->n_bytes < y->n_bytes ? -1 : x->n_bytes > y->n_bytes;
}

static fm_status parse_entry(const cJSON *e, const char *file, const uint8_t *data, uint64_t data_size,
                             fm_st_tensor *t) {
    const char *name = e->string;
    if (!cJSON_IsObject(e)) return fm_error(FM_ERR_FORMAT, "%s: tensor '%s': entry is not an object", file, name);
    const cJSON *jd = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *jo = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(jd)) return fm_error(FM_ERR_FORMAT, "%s: tensor '%s': 'dtype' missing or not a string", file, name);
    unsigned esize;
    if (!lookup_dtype(jd->valuestring, &t->dtype, &esize))
        return fm_error(FM_ERR_FORMAT, "%s: tensor '%s': unknown dtype '%s'", file, name, jd->valuestring);
    if (!cJSON_IsArray(js)) return fm_error(FM_ERR_FORMAT, "%s: tensor '%s': 'shape' missing or not a list", file, name);
    int nd = cJSON_GetArraySize(js);
    if (nd > FM_ST_MAX_DIMS)
        return fm_error(FM_ERR_FORMAT, "%s: tensor '%s': %d dimensions (at most %d)", file, name, nd, FM_ST_MAX_DIMS);
    t->n_dims = nd;
    uint64_t n = 1;
    int i = 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, js) {
        if (!is_uint(d)) return fm_error(FM_ERR_FORMAT, "%s: tensor '%s': shape entries must be non-negative integers", file, name);
        uint64_t dim = (uint64_t)d->valuedouble;
        if (dim != 0 && n > UINT64_MAX / 8 / dim)
            return fm_error(FM_ERR_FORMAT, "%s: tensor '%s': shape overflows", file, name);
        n *= dim;
        t->shape[i++] = (int64_t)dim;
    }
    t->n_elems = n;
    if (!cJSON_IsArray(jo) || cJSON_GetArraySize(jo) != 2 || !is_uint(cJSON_GetArrayItem(jo, 0)) ||
        !is_uint(cJSON_GetArrayItem(jo, 1)))
        return fm_error(FM_ERR_FORMAT, "%s: tensor '%s': 'data_offsets' must be [begin, end]", file, name);
    uint64_t begin = (uint64_t)cJSON_GetArrayItem(jo, 0)->valuedouble;
    uint64_t end = (uint64_t)cJSON_GetArrayItem(jo, 1)->valuedouble;
    if (begin > end || end > data_size)
        return fm_error(FM_ERR_FORMAT,
                        "%s: tensor '%s': data_offsets [%llu, %llu] outside the data section (%llu bytes)", file,
                        name, (unsigned long long)begin, (unsigned long long)end, (unsigned long long)data_size);
    if (end - begin != n * esize)
        return fm_error(FM_ERR_FORMAT, "%s: tensor '%s': %llu bytes of data but dtype %s x shape needs %llu", file,
                        name, (unsigned long long)(end - begin), jd->valuestring, (unsigned long long)(n * esize));
    t->data = data + begin;
    t->n_bytes = end - begin;
    return FM_OK;
}

static fm_status parse_header(const char *json, size_t len, const char *file, const uint8_t *data,
                              uint64_t data_size, fm_st_file *f) {
    const char *end = NULL;
    cJSON *root = fm_json_parse(json, len, &end);
    if (!root) return fm_error(FM_ERR_FORMAT, "%s: header is not valid JSON", file);
    /* Anything after the JSON value must be padding (the writer pads with spaces). */
    if (!fm_only_whitespace(end, json, len)) {
        cJSON_Delete(root);
        return fm_error(FM_ERR_FORMAT, "%s: trailing bytes after the JSON header", file);
    }
    fm_status st = FM_OK;
    if (!cJSON_IsObject(root)) {
        st = fm_error(FM_ERR_FORMAT, "%s: header must be a JSON object", file);
        goto done;
    }
    size_t count = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, root) count++;
    f->tensors = calloc(count ? count : 1, sizeof *f->tensors);
    if (!f->tensors) {
        st = fm_error(FM_ERR_OUT_OF_MEMORY, "%s: out of memory for %zu tensor entries", file, count);
        goto done;
    }
    cJSON_ArrayForEach(e, root) {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (!cJSON_IsObject(e)) {
                st = fm_error(FM_ERR_FORMAT, "%s: '__metadata__' must be an object", file);
                goto done;
            }
            continue;
        }
        fm_st_tensor *t = &f->tensors[f->n_tensors];
        if ((st = parse_entry(e, file, data, data_size, t))) goto done;
        t->name = strdup(e->string);
        if (!t->name) {
            st = fm_error(FM_ERR_OUT_OF_MEMORY, "%s: out of memory", file);
            goto done;
        }
        f->n_tensors++;
    }
    qsort(f->tensors, f->n_tensors, sizeof *f->tensors, cmp_by_name);
    for (size_t i = 1; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i - 1].name, f->tensors[i].name) == 0) {
            st = fm_error(FM_ERR_FORMAT, "%s: tensor '%s' appears twice in the header", file, f->tensors[i].name);
            goto done;
        }
    /* No two tensors may share bytes (empty tensors occupy nothing). */
    if (f->n_tensors > 1) {
        const fm_st_tensor **by_off = malloc(f->n_tensors * sizeof *by_off);
        if (!by_off) {
            st = fm_error(FM_ERR_OUT_OF_MEMORY, "%s: out of memory", file);
            goto done;
        }
        for (size_t i = 0; i < f->n_tensors; i++) by_off[i] = &f->tensors[i];
        qsort(by_off, f->n_tensors, sizeof *by_off, cmp_by_offset);
        const fm_st_tensor *prev = NULL;
        for (size_t i = 0; i < f->n_tensors && st == FM_OK; i++) {
            const fm_st_tensor *t = by_off[i];
            if (t->n_bytes == 0) continue;
            if (prev && t->data < prev->data + prev->n_bytes)
                st = fm_error(FM_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap in the data section", file,
                              prev->name, t->name);
            prev = t;
        }
        free(by_off);
    }
done:
    cJSON_Delete(root);
    if (st) free_tensors(f);
    return st;
}

static fm_status parse_into(const uint8_t *buf, size_t size, const char *name, fm_st_file *f) {
    if (size < 8) return fm_error(FM_ERR_FORMAT, "%s: %zu bytes is too short for a safetensors file", name, size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | buf[i];
    if (hlen > size - 8)
        return fm_error(FM_ERR_FORMAT, "%s: header length %llu exceeds the file size %zu (truncated file?)", name,
                        (unsigned long long)hlen, size);
    if (hlen > MAX_HEADER_BYTES)
        return fm_error(FM_ERR_FORMAT, "%s: header length %llu exceeds the 100 MB limit", name,
                        (unsigned long long)hlen);
    if (hlen < 2) return fm_error(FM_ERR_FORMAT, "%s: header is empty", name);
    return parse_header((const char *)buf + 8, (size_t)hlen, name, buf + 8 + hlen, size - 8 - hlen, f);
}

fm_status fm_st_parse(const uint8_t *buf, size_t size, const char *name, fm_st_file **out) {
    fm_st_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(name))) {
        free(f);
        return fm_error(FM_ERR_OUT_OF_MEMORY, "%s: out of memory", name);
    }
    fm_status st = parse_into(buf, size, name, f);
    if (st) {
        fm_st_close(f);
        return st;
    }
    *out = f;
    return FM_OK;
}

fm_status fm_st_open(const char *path, fm_st_file **out) {
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC); /* a FIFO must not hang the open */
    if (fd < 0) return fm_error(FM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return fm_error(FM_ERR_IO, "%s: not a regular file", path);
    }
    size_t size = (size_t)sb.st_size;
    if (size < 8) {
        close(fd);
        return fm_error(FM_ERR_FORMAT, "%s: %zu bytes is too short for a safetensors file", path, size);
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int err = errno;
    close(fd);
    if (map == MAP_FAILED) return fm_error(FM_ERR_IO, "%s: cannot map: %s", path, strerror(err));
    fm_st_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        munmap(map, size);
        return fm_error(FM_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    }
    f->map = map;
    f->map_size = size;
    fm_status st = parse_into(map, size, path, f);
    if (st) {
        fm_st_close(f);
        return st;
    }
    *out = f;
    return FM_OK;
}

const fm_st_tensor *fm_st_find(const fm_st_file *f, const char *name) {
    size_t lo = 0, hi = f->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, f->tensors[mid].name);
        if (c == 0) return &f->tensors[mid];
        if (c < 0) hi = mid;
        else lo = mid + 1;
    }
    return NULL;
}
