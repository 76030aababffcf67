/* test_loader_errors.c - every malformed checkpoint gets its negative status and a message naming the
   file and the tensor or field, and never crashes; positive controls prove the unmodified tiny models
   load and run. Header-level cases are driven both through fm_st_parse (src/safetensors.h) on
   in-memory images and through fm_context_open on a checkpoint directory. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "falconmamba.h"
#include "safetensors.h"
#include "test_util.h"
#include "tiny_model.h"

/* ---- helpers ----------------------------------------------------------------------------------- */

static char g_sentinel_obj;
#define SENTINEL ((fm_context *)(void *)&g_sentinel_obj)

/* A substring list; an entry starting with '@' means "<dir>/<rest of the entry>". */
#define SUBS(...) ((const char *const[]){__VA_ARGS__, NULL})

static void check_msg(const char *what, const char *dir, const char *msg, const char *const *subs) {
    if (!msg[0]) fail_msg("%s: empty error message", what);
    for (; subs && *subs; subs++) {
        char want[2048];
        if ((*subs)[0] == '@') snprintf(want, sizeof want, "%s/%s", dir, *subs + 1);
        else snprintf(want, sizeof want, "%s", *subs);
        if (!strstr(msg, want)) fail_msg("%s: message \"%s\" lacks \"%s\"", what, msg, want);
    }
}

static fm_context_params params(fm_weight_type wt) {
    fm_context_params p;
    fm_context_params_init(&p);
    p.n_threads = 1;
    p.weight_type = wt;
    return p;
}

/* fm_context_open(dir) must fail with want_st and a message holding every entry of subs; the output
   pointer must be left untouched. */
static void expect_open(const char *what, const char *dir, fm_status want_st, const char *const *subs) {
    fm_context_params p = params(FM_WEIGHTS_AUTO);
    fm_context *ctx = SENTINEL;
    fm_status st = fm_context_open(dir, &p, &ctx);
    if (st == FM_OK) {
        if (ctx != SENTINEL) fm_context_close(ctx);
        fail_msg("%s: fm_context_open succeeded, expected %s", what, fm_status_string(want_st));
    }
    if (st != want_st)
        fail_msg("%s: expected %s, got %s: \"%s\"", what, fm_status_string(want_st), fm_status_string(st),
                 fm_last_error());
    if (ctx != SENTINEL) fail_msg("%s: output pointer changed on failure", what);
    check_msg(what, dir, fm_last_error(), subs);
}

/* Write m to a fresh directory, expect the failure, clean up (m is freed). */
static void expect_model_error(const char *what, fm_tm_model *m, fm_status want_st, const char *const *subs) {
    assert_non_null(m);
    char *dir = fm_tm_write_tmp(m);
    assert_non_null(dir);
    expect_open(what, dir, want_st, subs);
    fm_test_rmtree(dir);
    free(dir);
    fm_tm_free(m);
}

static fm_tm_model *tiny(const char *dtype, int tied, int n_shards) {
    fm_tm_options o;
    fm_tm_options_init(&o);
    o.dtype = dtype;
    o.tied = tied;
    o.n_shards = n_shards;
    fm_tm_model *m = fm_tm_create(&o);
    assert_non_null(m);
    return m;
}

static fm_tm_model *tiny_default(void) { return tiny("F32", 1, 0); }

static fm_tm_tensor *must_find(fm_tm_model *m, const char *name) {
    fm_tm_tensor *t = fm_tm_find(m, name);
    if (!t) fail_msg("test bug: tiny model has no tensor %s", name);
    return t;
}

static void set_config(fm_tm_model *m, const char *key, cJSON *value) {
    cJSON_DeleteItemFromObjectCaseSensitive(m->config, key);
    if (value) cJSON_AddItemToObject(m->config, key, value);
}

/* Expect fm_st_parse(buf, size) to fail with want_st and the substrings (plus the buffer's name). */
static void expect_parse(const char *what, const uint8_t *buf, size_t size, fm_status want_st,
                         const char *const *subs) {
    fm_st_file *f = NULL;
    fm_status st = fm_st_parse(buf, size, "mem.safetensors", &f);
    if (st == FM_OK) {
        fm_st_close(f);
        if (want_st != FM_OK) fail_msg("%s: fm_st_parse succeeded, expected %s", what, fm_status_string(want_st));
        return;
    }
    if (st != want_st)
        fail_msg("%s: expected %s, got %s: \"%s\"", what, fm_status_string(want_st), fm_status_string(st),
                 fm_last_error());
    if (f != NULL) fail_msg("%s: output changed on failure", what);
    check_msg(what, "", fm_last_error(), subs);
    if (strncmp(fm_last_error(), "mem.safetensors: ", 17) != 0)
        fail_msg("%s: message does not start with the file name: \"%s\"", what, fm_last_error());
}

/* A directory with a valid config.json and the given bytes as model.safetensors. */
static char *dir_with_weights(const uint8_t *img, size_t n) {
    fm_tm_model *m = tiny_default();
    m->write_weights = 0;
    char *dir = fm_tm_write_tmp(m);
    fm_tm_free(m);
    assert_non_null(dir);
    assert_int_equal(fm_test_write_file(dir, "model.safetensors", img, n), 0);
    return dir;
}

/* A sparse file of `size` bytes at dir/name whose first bytes are `head`. */
static void write_sparse(const char *dir, const char *name, const void *head, size_t head_len, off_t size) {
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, head, head_len), (ssize_t)head_len);
    assert_int_equal(ftruncate(fd, size), 0);
    assert_int_equal(close(fd), 0);
}

static void put_le64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* ---- header-level cases: fm_st_parse on memory and fm_context_open on a directory --------------- */

typedef struct header_case {
    const char *what;
    const char *header;
    size_t data_len; /* zero bytes after the header */
    fm_status st;
    const char *subs[4];
} header_case;

static const header_case k_header_cases[] = {
    {"not JSON", "{not json", 16, FM_ERR_FORMAT, {"header is not valid JSON"}},
    {"truncated JSON", "{\"a\":{\"dtype\":\"F32\"", 16, FM_ERR_FORMAT, {"header is not valid JSON"}},
    {"binary header", "\x01\x02\x03\x04", 16, FM_ERR_FORMAT, {"header is not valid JSON"}},
    {"JSON array", "[1,2]", 16, FM_ERR_FORMAT, {"header must be a JSON object"}},
    {"JSON string", "\"abc\"", 16, FM_ERR_FORMAT, {"header must be a JSON object"}},
    {"JSON number", "12345678", 16, FM_ERR_FORMAT, {"header must be a JSON object"}},
    {"trailing garbage", "{} x", 16, FM_ERR_FORMAT, {"trailing bytes after the JSON header"}},
    {"second object", "{}{}", 16, FM_ERR_FORMAT, {"trailing bytes after the JSON header"}},
    {"trailing brace", "{}}", 16, FM_ERR_FORMAT, {"trailing bytes after the JSON header"}},
    {"entry not an object", "{\"a\":5}", 16, FM_ERR_FORMAT, {"tensor 'a': entry is not an object"}},
    {"entry is a list", "{\"a\":[\"F32\",[2],[0,8]]}", 16, FM_ERR_FORMAT, {"tensor 'a': entry is not an object"}},
    {"dtype missing", "{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 16, FM_ERR_FORMAT,
     {"tensor 'a': 'dtype' missing or not a string"}},
    {"dtype not a string", "{\"a\":{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]}}", 16, FM_ERR_FORMAT,
     {"tensor 'a': 'dtype' missing or not a string"}},
    {"unknown dtype", "{\"a\":{\"dtype\":\"F7\",\"shape\":[2],\"data_offsets\":[0,8]}}", 16, FM_ERR_FORMAT,
     {"tensor 'a': unknown dtype 'F7'"}},
    {"lower-case dtype", "{\"a\":{\"dtype\":\"f32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 16, FM_ERR_FORMAT,
     {"tensor 'a': unknown dtype 'f32'"}},
    {"shape missing", "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 16, FM_ERR_FORMAT,
     {"tensor 'a': 'shape' missing or not a list"}},
    {"shape not a list", "{\"a\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", 16, FM_ERR_FORMAT,
     {"tensor 'a': 'shape' missing or not a list"}},
    {"negative dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 16, FM_ERR_FORMAT,
     {"tensor 'a': shape entries must be non-negative integers"}},
    {"fractional dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 16, FM_ERR_FORMAT,
     {"tensor 'a': shape entries must be non-negative integers"}},
    {"string dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", 16, FM_ERR_FORMAT,
     {"tensor 'a': shape entries must be non-negative integers"}},
    {"dim 1e300", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1e300],\"data_offsets\":[0,8]}}", 16, FM_ERR_FORMAT,
     {"tensor 'a': shape entries must be non-negative integers"}},
    {"9 dims", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,2],\"data_offsets\":[0,8]}}", 16, FM_ERR_FORMAT,
     {"tensor 'a': 9 dimensions (at most 8)"}},
    {"shape overflow", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", 16,
     FM_ERR_FORMAT, {"tensor 'a': shape overflows"}},
    {"data_offsets missing", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 16, FM_ERR_FORMAT,
     {"tensor 'a': 'data_offsets' must be [begin, end]"}},
    {"data_offsets one entry", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8]}}", 16, FM_ERR_FORMAT,
     {"tensor 'a': 'data_offsets' must be [begin, end]"}},
    {"data_offsets three entries", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,16]}}", 16,
     FM_ERR_FORMAT, {"tensor 'a': 'data_offsets' must be [begin, end]"}},
    {"negative offset", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", 16, FM_ERR_FORMAT,
     {"tensor 'a': 'data_offsets' must be [begin, end]"}},
    {"fractional offset", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0.5,8.5]}}", 16, FM_ERR_FORMAT,
     {"tensor 'a': 'data_offsets' must be [begin, end]"}},
    {"offsets as strings", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[\"0\",\"8\"]}}", 16,
     FM_ERR_FORMAT, {"tensor 'a': 'data_offsets' must be [begin, end]"}},
    {"begin > end", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 16, FM_ERR_FORMAT,
     {"tensor 'a': data_offsets [8, 4] outside the data section (16 bytes)"}},
    {"end beyond data", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}", 16, FM_ERR_FORMAT,
     {"tensor 'a': data_offsets [8, 24] outside the data section (16 bytes)"}},
    {"end far beyond data", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[9007199254740984,9007199254740992]}}",
     16, FM_ERR_FORMAT, {"tensor 'a': data_offsets [9007199254740984, 9007199254740992] outside the data section"}},
    {"size mismatch", "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 16, FM_ERR_FORMAT,
     {"tensor 'a': 8 bytes of data but dtype F32 x shape needs 12"}},
    {"size mismatch bf16", "{\"a\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[0,16]}}", 16, FM_ERR_FORMAT,
     {"tensor 'a': 16 bytes of data but dtype BF16 x shape needs 12"}},
    {"overlap", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
     16, FM_ERR_FORMAT, {"tensors 'a' and 'b' overlap in the data section"}},
    {"same bytes twice", "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                         "\"y\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]}}",
     16, FM_ERR_FORMAT, {"overlap in the data section", "'x'", "'y'"}},
    {"nested overlap", "{\"a\":{\"dtype\":\"U8\",\"shape\":[16],\"data_offsets\":[0,16]},"
                       "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[10,12]}}",
     16, FM_ERR_FORMAT, {"tensors 'a' and 'b' overlap in the data section"}},
    {"duplicate name", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                       "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
     16, FM_ERR_FORMAT, {"tensor 'a' appears twice in the header"}},
    {"metadata not an object", "{\"__metadata__\":[1]}", 16, FM_ERR_FORMAT, {"'__metadata__' must be an object"}},
    /* accepted */
    {"empty header", "{}", 0, FM_OK, {NULL}},
    {"padded header", "{}      ", 0, FM_OK, {NULL}},
    {"8 dims", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,2],\"data_offsets\":[0,8]}}", 8, FM_OK, {NULL}},
    {"empty tensors share offsets",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],"
     "\"data_offsets\":[0,8]},\"c\":{\"dtype\":\"F32\",\"shape\":[2,0],\"data_offsets\":[8,8]}}",
     8, FM_OK, {NULL}},
    {"scalar", "{\"s\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[0,8]}}", 8, FM_OK, {NULL}},
};

static void test_header_cases_in_memory(void **state) {
    (void)state;
    uint8_t zeros[64] = {0};
    for (size_t i = 0; i < sizeof k_header_cases / sizeof k_header_cases[0]; i++) {
        const header_case *c = &k_header_cases[i];
        size_t n;
        uint8_t *img = fm_tm_raw_image(c->header, zeros, c->data_len, &n);
        assert_non_null(img);
        expect_parse(c->what, img, n, c->st, c->subs);
        free(img);
    }
}

static void test_header_cases_through_context(void **state) {
    (void)state;
    uint8_t zeros[64] = {0};
    for (size_t i = 0; i < sizeof k_header_cases / sizeof k_header_cases[0]; i++) {
        const header_case *c = &k_header_cases[i];
        if (c->st == FM_OK) continue;
        size_t n;
        uint8_t *img = fm_tm_raw_image(c->header, zeros, c->data_len, &n);
        assert_non_null(img);
        char *dir = dir_with_weights(img, n);
        free(img);
        expect_open(c->what, dir, c->st, c->subs);
        check_msg(c->what, dir, fm_last_error(), SUBS("@model.safetensors: "));
        fm_test_rmtree(dir);
        free(dir);
    }
}

static void test_accepted_header_contents(void **state) {
    (void)state;
    const char *h = "{\"__metadata__\":{\"format\":\"pt\"},\"w\":{\"dtype\":\"BF16\",\"shape\":[2,3],"
                    "\"data_offsets\":[8,20]},\"v\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}  ";
    uint8_t data[20];
    for (int i = 0; i < 20; i++) data[i] = (uint8_t)i;
    size_t n;
    uint8_t *img = fm_tm_raw_image(h, data, sizeof data, &n);
    fm_st_file *f = NULL;
    assert_int_equal(fm_st_parse(img, n, "mem", &f), FM_OK);
    assert_int_equal(f->n_tensors, 2); /* __metadata__ is not a tensor */
    const fm_st_tensor *w = fm_st_find(f, "w"), *v = fm_st_find(f, "v");
    assert_non_null(w);
    assert_non_null(v);
    assert_null(fm_st_find(f, "__metadata__"));
    assert_null(fm_st_find(f, "x"));
    assert_int_equal(w->dtype, FM_ST_BF16);
    assert_int_equal(w->n_dims, 2);
    assert_int_equal(w->shape[0], 2);
    assert_int_equal(w->shape[1], 3);
    assert_int_equal(w->n_elems, 6);
    assert_int_equal(w->n_bytes, 12);
    assert_ptr_equal(w->data, img + 8 + strlen(h) + 8);
    assert_ptr_equal(v->data, img + 8 + strlen(h));
    assert_int_equal(v->dtype, FM_ST_F32);
    assert_string_equal(fm_st_dtype_name(w->dtype), "BF16");
    fm_st_close(f);
    free(img);
}

/* ---- byte-level cases ---------------------------------------------------------------------------- */

static void test_short_buffers(void **state) {
    (void)state;
    uint8_t buf[8] = {2, 0, 0, 0, 0, 0, 0, 0};
    char msg[64];
    for (size_t n = 0; n < 8; n++) {
        snprintf(msg, sizeof msg, "mem.safetensors: %zu bytes is too short for a safetensors file", n);
        expect_parse("short buffer", n ? buf : NULL, n, FM_ERR_FORMAT, SUBS(msg));
    }
    /* exactly 8 bytes claiming an empty header */
    memset(buf, 0, sizeof buf);
    expect_parse("8 bytes, header length 0", buf, 8, FM_ERR_FORMAT, SUBS("header is empty"));
}

static void test_header_length_beyond_buffer(void **state) {
    (void)state;
    uint8_t buf[100];
    memset(buf, ' ', sizeof buf);
    put_le64(buf, 1000);
    expect_parse("header 1000 > 100", buf, sizeof buf, FM_ERR_FORMAT,
                 SUBS("header length 1000 exceeds the file size 100 (truncated file?)"));
    put_le64(buf, 93); /* one more than there is */
    expect_parse("header 93 > 92", buf, sizeof buf, FM_ERR_FORMAT, SUBS("header length 93 exceeds the file size 100"));
    put_le64(buf, UINT64_MAX);
    expect_parse("header 2^64-1", buf, sizeof buf, FM_ERR_FORMAT,
                 SUBS("header length 18446744073709551615 exceeds the file size 100"));
    put_le64(buf, UINT64_MAX - 7); /* would wrap around if 8 were added to it */
    expect_parse("header 2^64-8", buf, sizeof buf, FM_ERR_FORMAT, SUBS("exceeds the file size 100"));
    put_le64(buf, 1ull << 63);
    expect_parse("header 2^63", buf, sizeof buf, FM_ERR_FORMAT, SUBS("exceeds the file size 100"));
    put_le64(buf, 1);
    expect_parse("header 1 byte", buf, sizeof buf, FM_ERR_FORMAT, SUBS("header is empty"));
    /* a header of exactly the remaining bytes, all spaces: not JSON */
    put_le64(buf, 92);
    expect_parse("header of spaces", buf, sizeof buf, FM_ERR_FORMAT, SUBS("header is not valid JSON"));
}

/* The 100 MB limit, on a sparse file big enough that the claim fits in it. */
static void test_header_over_100mb(void **state) {
    (void)state;
    const uint64_t hlen = 100ull * 1024 * 1024 + 1;
    uint8_t head[9];
    put_le64(head, hlen);
    head[8] = '{';
    fm_tm_model *m = tiny_default();
    m->write_weights = 0;
    char *dir = fm_tm_write_tmp(m);
    fm_tm_free(m);
    assert_non_null(dir);
    write_sparse(dir, "model.safetensors", head, sizeof head, (off_t)(8 + hlen));
    expect_open("100 MB header", dir, FM_ERR_FORMAT,
                SUBS("@model.safetensors: header length 104857601 exceeds the 100 MB limit"));
    /* and fm_st_open directly */
    char path[2048];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    fm_st_file *f = NULL;
    assert_int_equal(fm_st_open(path, &f), FM_ERR_FORMAT);
    assert_null(f);
    assert_non_null(strstr(fm_last_error(), "exceeds the 100 MB limit"));
    /* a claim beyond the file, in a real file */
    put_le64(head, 5000);
    write_sparse(dir, "model.safetensors", head, sizeof head, 4000);
    expect_open("header beyond file", dir, FM_ERR_FORMAT,
                SUBS("@model.safetensors: header length 5000 exceeds the file size 4000"));
    fm_test_rmtree(dir);
    free(dir);
}

static void test_short_files(void **state) {
    (void)state;
    const uint8_t bytes[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    for (size_t n = 0; n < 8; n++) {
        char *dir = dir_with_weights(bytes, n);
        char msg[64];
        snprintf(msg, sizeof msg, "@model.safetensors: %zu bytes is too short", n);
        expect_open("short file", dir, FM_ERR_FORMAT, SUBS(msg));
        fm_test_rmtree(dir);
        free(dir);
    }
}

static void test_truncated_model_file(void **state) {
    (void)state;
    fm_tm_model *m = tiny_default();
    char *dir = fm_tm_write_tmp(m);
    assert_non_null(dir);
    size_t full;
    uint8_t *img = fm_tm_image(m, -1, &full);
    assert_non_null(img);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | img[i];
    free(img);
    /* one byte short: the last tensor in the header ends beyond the data */
    const fm_tm_tensor *last = &m->tensors[m->n_tensors - 1];
    char msg[256];
    assert_int_equal(fm_tm_truncate(dir, "model.safetensors", full - 1), 0);
    snprintf(msg, sizeof msg, "tensor '%s': data_offsets", last->name);
    expect_open("truncated by 1", dir, FM_ERR_FORMAT, SUBS("@model.safetensors: ", msg, "outside the data section"));
    /* cut inside the header */
    assert_int_equal(fm_tm_truncate(dir, "model.safetensors", (size_t)hlen / 2), 0);
    expect_open("truncated in header", dir, FM_ERR_FORMAT, SUBS("@model.safetensors: header length", "exceeds the file size"));
    /* cut right after the header: the first tensor has no data */
    fm_tm_model *m2 = tiny_default();
    assert_int_equal(fm_tm_write(m2, dir), 0);
    assert_int_equal(fm_tm_truncate(dir, "model.safetensors", 8 + (size_t)hlen), 0);
    snprintf(msg, sizeof msg, "tensor '%s': data_offsets", m2->tensors[0].name);
    expect_open("no data section", dir, FM_ERR_FORMAT, SUBS(msg, "outside the data section (0 bytes)"));
    fm_tm_free(m2);
    fm_test_rmtree(dir);
    free(dir);
    fm_tm_free(m);
}

/* ---- tensor-level errors in a real checkpoint -------------------------------------------------- */

static void test_corrupt_offsets_in_checkpoint(void **state) {
    (void)state;
    const char *name = "backbone.layers.1.mixer.D";
    fm_tm_model *m = tiny_default();
    fm_tm_tensor *t = must_find(m, name);
    t->override_offsets = 1;
    t->begin = 1u << 30;
    t->end = (1u << 30) + t->n_bytes;
    expect_model_error("offsets beyond data", m, FM_ERR_FORMAT,
                       SUBS("@model.safetensors: tensor 'backbone.layers.1.mixer.D': data_offsets [1073741824,",
                            "outside the data section"));

    m = tiny_default();
    t = must_find(m, name);
    t->override_offsets = 1;
    t->begin = 64;
    t->end = 0;
    expect_model_error("begin > end", m, FM_ERR_FORMAT, SUBS("tensor 'backbone.layers.1.mixer.D': data_offsets [64, 0]"));

    /* overlap: D gets the offsets of the tensor before it */
    m = tiny_default();
    t = must_find(m, name);
    t->override_offsets = 1;
    t->begin = 0;
    t->end = t->n_bytes;
    expect_model_error("overlap in checkpoint", m, FM_ERR_FORMAT,
                       SUBS("@model.safetensors: tensors '", "overlap in the data section", name));

    /* dtype string changed, bytes not: byte count disagrees */
    m = tiny_default();
    t = must_find(m, "backbone.layers.0.mixer.x_proj.weight");
    strcpy(t->dtype, "BF16");
    expect_model_error("dtype string changed", m, FM_ERR_FORMAT,
                       SUBS("@model.safetensors: tensor 'backbone.layers.0.mixer.x_proj.weight': 1152 bytes of data "
                            "but dtype BF16 x shape needs 576"));

    m = tiny_default();
    t = must_find(m, "backbone.norm_f.weight");
    strcpy(t->dtype, "F7");
    expect_model_error("unknown dtype in checkpoint", m, FM_ERR_FORMAT,
                       SUBS("@model.safetensors: tensor 'backbone.norm_f.weight': unknown dtype 'F7'"));

    m = tiny_default();
    t = must_find(m, "backbone.layers.0.norm.weight");
    assert_int_equal(fm_tm_set_raw_entry(t, "\"oops\""), 0);
    expect_model_error("entry not an object", m, FM_ERR_FORMAT,
                       SUBS("@model.safetensors: tensor 'backbone.layers.0.norm.weight': entry is not an object"));

    m = tiny_default();
    t = must_find(m, "backbone.layers.0.norm.weight");
    assert_int_equal(fm_tm_set_raw_entry(t, "{\"dtype\":\"F32\",\"shape\":[16],\"data_offsets\":[0,64],"
                                            "\"shape\":[17]}"), 0);
    /* duplicate keys inside an entry: cJSON returns the first; the tensor then overlaps the embeddings */
    expect_model_error("raw entry overlapping", m, FM_ERR_FORMAT, SUBS("@model.safetensors: ", "overlap"));

    m = tiny_default();
    assert_non_null(fm_tm_add(m, "backbone.layers.0.mixer.D", "F32", 1, (int64_t[]){32}));
    expect_model_error("duplicate tensor", m, FM_ERR_FORMAT,
                       SUBS("@model.safetensors: tensor 'backbone.layers.0.mixer.D' appears twice in the header"));

    m = tiny_default();
    assert_non_null(fm_tm_add(m, "extra.deep", "F32", 9, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 1, 1}));
    expect_model_error(">8 dims in checkpoint", m, FM_ERR_FORMAT,
                       SUBS("@model.safetensors: tensor 'extra.deep': 9 dimensions (at most 8)"));

    m = tiny_default();
    assert_int_equal(fm_tm_set_text(&m->header_text, "{\"a\": 1"), 0);
    expect_model_error("custom header", m, FM_ERR_FORMAT, SUBS("@model.safetensors: header is not valid JSON"));
}

static void test_each_required_tensor_missing(void **state) {
    (void)state;
    fm_tm_options o;
    fm_tm_options_init(&o);
    o.tied = 0;
    o.use_bias = 1;
    fm_tm_model *proto = fm_tm_create(&o);
    assert_non_null(proto);
    for (size_t i = 0; i < proto->n_tensors; i++) {
        const char *name = proto->tensors[i].name;
        fm_tm_model *m = fm_tm_create(&o);
        assert_int_equal(fm_tm_remove(m, name), 0);
        char msg[256];
        snprintf(msg, sizeof msg, "required tensor '%s' is missing", name);
        expect_model_error(name, m, FM_ERR_FORMAT, SUBS(msg));
    }
    fm_tm_free(proto);
}

static void test_named_missing_tensors(void **state) {
    (void)state;
    fm_tm_model *m = tiny_default();
    assert_int_equal(fm_tm_remove(m, "backbone.layers.1.mixer.A_log"), 0);
    expect_model_error("A_log missing", m, FM_ERR_FORMAT,
                       SUBS("required tensor 'backbone.layers.1.mixer.A_log' is missing"));

    m = tiny("BF16", 0, 0);
    assert_int_equal(fm_tm_remove(m, "lm_head.weight"), 0);
    expect_model_error("untied without lm_head", m, FM_ERR_FORMAT, SUBS("required tensor 'lm_head.weight' is missing"));

    /* a tied checkpoint whose config says untied */
    m = tiny_default();
    set_config(m, "tie_word_embeddings", cJSON_CreateFalse());
    expect_model_error("config untied, no lm_head", m, FM_ERR_FORMAT,
                       SUBS("required tensor 'lm_head.weight' is missing"));

    /* config asks for biases the checkpoint lacks */
    m = tiny_default();
    set_config(m, "use_bias", cJSON_CreateTrue());
    expect_model_error("use_bias without biases", m, FM_ERR_FORMAT,
                       SUBS("required tensor 'backbone.layers.0.mixer.in_proj.bias' is missing"));

    /* config has more layers than the checkpoint */
    m = tiny_default();
    set_config(m, "num_hidden_layers", cJSON_CreateNumber(3));
    expect_model_error("extra layer", m, FM_ERR_FORMAT,
                       SUBS("required tensor 'backbone.layers.2.norm.weight' is missing"));
}

static void test_wrong_shapes(void **state) {
    (void)state;
    fm_tm_model *m = tiny_default();
    assert_int_equal(fm_tm_retype(must_find(m, "backbone.layers.0.mixer.in_proj.weight"), NULL, 2, (int64_t[]){64, 17}), 0);
    expect_model_error("in_proj [64,17]", m, FM_ERR_FORMAT,
                       SUBS("model.safetensors: tensor 'backbone.layers.0.mixer.in_proj.weight' has shape [64, 17] "
                            "but the config implies [64, 16]"));

    m = tiny_default(); /* transposed */
    assert_int_equal(fm_tm_retype(must_find(m, "backbone.layers.1.mixer.out_proj.weight"), NULL, 2, (int64_t[]){32, 16}), 0);
    expect_model_error("out_proj transposed", m, FM_ERR_FORMAT,
                       SUBS("tensor 'backbone.layers.1.mixer.out_proj.weight' has shape [32, 16] but the config implies "
                            "[16, 32]"));

    m = tiny_default(); /* conv weight without its middle 1 */
    assert_int_equal(fm_tm_retype(must_find(m, "backbone.layers.0.mixer.conv1d.weight"), NULL, 2, (int64_t[]){32, 4}), 0);
    expect_model_error("conv1d 2-D", m, FM_ERR_FORMAT,
                       SUBS("tensor 'backbone.layers.0.mixer.conv1d.weight' has shape [32, 4] but the config implies "
                            "[32, 1, 4]"));

    m = tiny_default(); /* vector as a matrix */
    assert_int_equal(fm_tm_retype(must_find(m, "backbone.layers.0.mixer.D"), NULL, 2, (int64_t[]){1, 32}), 0);
    expect_model_error("D as [1,32]", m, FM_ERR_FORMAT,
                       SUBS("tensor 'backbone.layers.0.mixer.D' has shape [1, 32] but the config implies [32]"));

    m = tiny_default(); /* scalar */
    assert_int_equal(fm_tm_retype(must_find(m, "backbone.norm_f.weight"), NULL, 0, NULL), 0);
    expect_model_error("norm_f scalar", m, FM_ERR_FORMAT,
                       SUBS("tensor 'backbone.norm_f.weight' has shape [] but the config implies [16]"));

    m = tiny_default(); /* 8-D */
    assert_int_equal(fm_tm_retype(must_find(m, "backbone.layers.1.mixer.A_log"), NULL, 8,
                                  (int64_t[]){32, 4, 1, 1, 1, 1, 1, 1}), 0);
    expect_model_error("A_log 8-D", m, FM_ERR_FORMAT,
                       SUBS("tensor 'backbone.layers.1.mixer.A_log' has shape [32, 4, 1, 1, 1, 1, 1, 1] but the config "
                            "implies [32, 4]"));

    m = tiny_default(); /* the config disagrees with every tensor: the first one checked is reported */
    set_config(m, "hidden_size", cJSON_CreateNumber(20));
    expect_model_error("config hidden 20", m, FM_ERR_FORMAT,
                       SUBS("tensor 'backbone.embeddings.weight' has shape [24, 16] but the config implies [24, 20]"));

    m = tiny_default(); /* dt_rank from "auto" (ceil(16/16) = 1) vs a checkpoint with rank 2 */
    set_config(m, "time_step_rank", cJSON_CreateString("auto"));
    assert_int_equal(fm_tm_retype(must_find(m, "backbone.layers.0.mixer.x_proj.weight"), NULL, 2, (int64_t[]){10, 32}), 0);
    expect_model_error("x_proj with rank 2", m, FM_ERR_FORMAT,
                       SUBS("tensor 'backbone.layers.0.mixer.x_proj.weight' has shape [10, 32] but the config implies "
                            "[9, 32]"));
}

static void test_unsupported_dtypes(void **state) {
    (void)state;
    static const struct {
        const char *tensor, *dtype;
    } cases[] = {
        {"backbone.layers.0.mixer.D", "I32"},
        {"backbone.embeddings.weight", "I32"},
        {"backbone.layers.1.mixer.in_proj.weight", "F64"},
        {"backbone.layers.0.mixer.A_log", "U8"},
        {"backbone.norm_f.weight", "F8_E4M3"},
        {"backbone.layers.0.mixer.conv1d.bias", "I64"},
        {"backbone.layers.1.mixer.dt_proj.weight", "BOOL"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fm_tm_model *m = tiny_default();
        fm_tm_tensor *t = must_find(m, cases[i].tensor);
        assert_int_equal(fm_tm_retype(t, cases[i].dtype, t->n_dims, t->shape), 0);
        char msg[256];
        snprintf(msg, sizeof msg, "model.safetensors: tensor '%s' has dtype %s (supported: F32, F16, BF16)",
                 cases[i].tensor, cases[i].dtype);
        expect_model_error(cases[i].dtype, m, FM_ERR_UNSUPPORTED, SUBS(msg));
    }
}

/* ---- sharded checkpoints ----------------------------------------------------------------------- */

static void test_sharded_index_errors(void **state) {
    (void)state;
    fm_tm_model *m = tiny("F32", 1, 3);
    char shard2[96];
    fm_tm_shard_name(m, 2, shard2, sizeof shard2);
    assert_int_equal(fm_tm_set_text(&m->index_text, "{\"weight_map\": {"), 0);
    expect_model_error("index not JSON", m, FM_ERR_FORMAT, SUBS("model.safetensors.index.json: malformed JSON"));

    m = tiny("F32", 1, 3);
    assert_int_equal(fm_tm_set_text(&m->index_text, "{\"metadata\": {\"total_size\": 10}}"), 0);
    expect_model_error("weight_map missing", m, FM_ERR_FORMAT,
                       SUBS("model.safetensors.index.json: 'weight_map' missing or not an object"));

    m = tiny("F32", 1, 3);
    assert_int_equal(fm_tm_set_text(&m->index_text, "{\"weight_map\": [\"a\"]}"), 0);
    expect_model_error("weight_map a list", m, FM_ERR_FORMAT, SUBS("'weight_map' missing or not an object"));

    m = tiny("F32", 1, 3);
    assert_int_equal(fm_tm_set_text(&m->index_text, "[1]"), 0);
    expect_model_error("index a list", m, FM_ERR_FORMAT, SUBS("'weight_map' missing or not an object"));

    m = tiny("F32", 1, 3);
    assert_int_equal(fm_tm_set_text(&m->index_text, "{\"weight_map\": {\"backbone.norm_f.weight\": 3}}"), 0);
    expect_model_error("shard name not a string", m, FM_ERR_FORMAT,
                       SUBS("model.safetensors.index.json: weight_map['backbone.norm_f.weight'] is not a file name"));

    m = tiny("F32", 1, 3);
    assert_int_equal(fm_tm_set_text(&m->index_text, "{\"weight_map\": {}}"), 0);
    expect_model_error("empty weight_map", m, FM_ERR_FORMAT,
                       SUBS("required tensor 'backbone.embeddings.weight' is missing"));

    /* a listed tensor the shard does not hold */
    m = tiny("F32", 1, 3);
    fm_tm_tensor *t = must_find(m, "backbone.layers.1.mixer.A_log");
    t->omit_from_file = 1;
    char shard[96], msg[512];
    fm_tm_shard_name(m, t->shard, shard, sizeof shard);
    snprintf(msg, sizeof msg,
             "model.safetensors.index.json: tensor 'backbone.layers.1.mixer.A_log' is listed in %s but that file "
             "does not contain it",
             shard);
    expect_model_error("listed but absent", m, FM_ERR_FORMAT, SUBS(msg));

    /* a tensor in its shard but not in the index */
    m = tiny("F32", 1, 3);
    must_find(m, "backbone.layers.0.mixer.dt_proj.bias")->omit_from_index = 1;
    expect_model_error("absent from index", m, FM_ERR_FORMAT,
                       SUBS("required tensor 'backbone.layers.0.mixer.dt_proj.bias' is missing"));

    /* the index lists a tensor twice */
    m = tiny("F32", 1, 3);
    {
        char *idx = fm_tm_index_json(m);
        assert_non_null(idx);
        char *brace = strstr(idx, "\"weight_map\"");
        assert_non_null(brace);
        brace = strchr(brace, '{');
        char buf[16384];
        snprintf(buf, sizeof buf, "%.*s\"backbone.norm_f.weight\": \"%s\", %s", (int)(brace + 1 - idx), idx, shard2,
                 brace + 1);
        free(idx);
        assert_int_equal(fm_tm_set_text(&m->index_text, buf), 0);
    }
    expect_model_error("listed twice", m, FM_ERR_FORMAT,
                       SUBS("model.safetensors.index.json: tensor 'backbone.norm_f.weight' listed twice"));

    /* a bad shard is named by its path */
    m = tiny("F32", 1, 3);
    t = must_find(m, "backbone.norm_f.weight");
    t->override_offsets = 1;
    t->begin = 0;
    t->end = 1u << 20;
    snprintf(msg, sizeof msg, "@%s: tensor 'backbone.norm_f.weight': data_offsets [0, 1048576]", shard2);
    expect_model_error("bad shard", m, FM_ERR_FORMAT, SUBS(msg));
}

static void test_shard_file_missing(void **state) {
    (void)state;
    fm_tm_model *m = tiny("F32", 1, 3);
    char shard1[96];
    fm_tm_shard_name(m, 1, shard1, sizeof shard1);
    char *dir = fm_tm_write_tmp(m);
    assert_non_null(dir);
    fm_tm_free(m);
    char path[2048], msg[256];
    snprintf(path, sizeof path, "%s/%s", dir, shard1);
    assert_int_equal(remove(path), 0);
    snprintf(msg, sizeof msg, "@%s: cannot open", shard1);
    expect_open("shard missing", dir, FM_ERR_IO, SUBS(msg));
    /* a shard that is a directory */
    assert_int_equal(mkdir(path, 0755), 0);
    snprintf(msg, sizeof msg, "@%s: not a regular file", shard1);
    expect_open("shard is a directory", dir, FM_ERR_IO, SUBS(msg));
    fm_test_rmtree(dir);
    free(dir);
    /* the index names a shard that never existed */
    m = tiny("F32", 1, 3);
    assert_int_equal(fm_tm_set_text(&m->index_text, "{\"weight_map\": {\"backbone.norm_f.weight\": "
                                                    "\"model-00009-of-00009.safetensors\"}}"),
                     0);
    expect_model_error("unknown shard", m, FM_ERR_IO, SUBS("@model-00009-of-00009.safetensors: cannot open"));
}

/* Shard names that leave the checkpoint directory are refused, even when the target exists. */
static void test_shard_path_traversal(void **state) {
    (void)state;
    char *outer = fm_test_mkdtemp();
    assert_non_null(outer);
    char inner[1024];
    snprintf(inner, sizeof inner, "%s/ckpt", outer);
    assert_int_equal(mkdir(inner, 0755), 0);
    char sub[2048];
    snprintf(sub, sizeof sub, "%s/sub", inner);
    assert_int_equal(mkdir(sub, 0755), 0);

    /* a complete single-file checkpoint image, placed where a traversal would find it */
    fm_tm_model *m = tiny_default();
    size_t n;
    uint8_t *img = fm_tm_image(m, -1, &n);
    assert_non_null(img);
    assert_int_equal(fm_test_write_file(outer, "w.safetensors", img, n), 0);
    assert_int_equal(fm_test_write_file(sub, "w.safetensors", img, n), 0);
    free(img);
    m->write_weights = 0;
    assert_int_equal(fm_tm_write(m, inner), 0);

    char abs_path[2048];
    snprintf(abs_path, sizeof abs_path, "%s/w.safetensors", outer);
    const char *bad[] = {"../w.safetensors", abs_path, "sub/w.safetensors", "..", ".", "", "sub\\w.safetensors",
                         "./w.safetensors"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cJSON *idx = cJSON_CreateObject(), *map = cJSON_CreateObject();
        for (size_t k = 0; k < m->n_tensors; k++) cJSON_AddStringToObject(map, m->tensors[k].name, bad[i]);
        cJSON_AddItemToObject(idx, "weight_map", map);
        char *text = cJSON_PrintUnformatted(idx);
        cJSON_Delete(idx);
        assert_int_equal(fm_test_write_file(inner, "model.safetensors.index.json", text, strlen(text)), 0);
        free(text);
        char msg[2300];
        snprintf(msg, sizeof msg, "= '%s' is not a file in the checkpoint directory", bad[i]);
        expect_open(bad[i], inner, FM_ERR_FORMAT, SUBS("model.safetensors.index.json: weight_map['", msg));
    }
    fm_tm_free(m);
    fm_test_rmtree(outer);
    free(outer);
}

/* ---- directory-level errors -------------------------------------------------------------------- */

static void test_no_weights(void **state) {
    (void)state;
    fm_tm_model *m = tiny_default();
    m->write_weights = 0;
    char *dir = fm_tm_write_tmp(m);
    assert_non_null(dir);
    char msg[2100];
    snprintf(msg, sizeof msg, "%s: neither model.safetensors nor model.safetensors.index.json found", dir);
    expect_open("no weights", dir, FM_ERR_IO, SUBS(msg));
    /* model.safetensors as a directory */
    char path[2048];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    assert_int_equal(mkdir(path, 0755), 0);
    expect_open("weights are a directory", dir, FM_ERR_IO, SUBS("@model.safetensors: not a regular file"));
    fm_test_rmtree(dir);
    free(dir);
    fm_tm_free(m);
}

static void test_bad_directory(void **state) {
    (void)state;
    expect_open("nonexistent dir", "/nonexistent/fm-test-dir", FM_ERR_IO,
                SUBS("/nonexistent/fm-test-dir/config.json: cannot open"));
    fm_context *ctx = SENTINEL;
    assert_int_equal(fm_context_open(NULL, NULL, &ctx), FM_ERR_INVALID_ARGUMENT);
    assert_ptr_equal(ctx, SENTINEL);
    assert_int_equal(fm_context_open("/tmp", NULL, NULL), FM_ERR_INVALID_ARGUMENT);
}

/* ---- config.json through fm_context_open ------------------------------------------------------- */

static void test_config_errors(void **state) {
    (void)state;
    fm_tm_model *m = tiny_default();
    m->write_config = 0;
    expect_model_error("config missing", m, FM_ERR_IO, SUBS("@config.json: cannot open"));

    m = tiny_default();
    assert_int_equal(fm_tm_set_text(&m->config_text, "{\"hidden_size\": 16,"), 0);
    expect_model_error("config not JSON", m, FM_ERR_FORMAT, SUBS("config.json: malformed JSON near byte"));

    m = tiny_default();
    assert_int_equal(fm_tm_set_text(&m->config_text, "[]"), 0);
    expect_model_error("config a list", m, FM_ERR_FORMAT, SUBS("config.json: top level must be a JSON object"));

    m = tiny_default();
    assert_int_equal(fm_tm_set_text(&m->config_text, ""), 0);
    expect_model_error("config empty", m, FM_ERR_FORMAT, SUBS("config.json: malformed JSON"));

    m = tiny_default();
    set_config(m, "model_type", cJSON_CreateString("llama"));
    expect_model_error("llama", m, FM_ERR_UNSUPPORTED, SUBS("config.json: model_type 'llama' is not supported"));

    m = tiny_default();
    set_config(m, "model_type", NULL);
    set_config(m, "architectures", NULL);
    expect_model_error("no model_type", m, FM_ERR_UNSUPPORTED,
                       SUBS("config.json: neither 'model_type' nor a known 'architectures' entry"));

    m = tiny_default();
    set_config(m, "hidden_size", NULL);
    expect_model_error("hidden_size missing", m, FM_ERR_FORMAT, SUBS("config.json: field 'hidden_size' missing"));

    m = tiny_default();
    set_config(m, "hidden_size", cJSON_CreateString("16"));
    expect_model_error("hidden_size string", m, FM_ERR_FORMAT,
                       SUBS("config.json: field 'hidden_size' must be an integer"));

    m = tiny_default();
    set_config(m, "hidden_size", cJSON_CreateNumber(-16));
    expect_model_error("hidden_size negative", m, FM_ERR_FORMAT,
                       SUBS("config.json: field 'hidden_size' = -16 is out of range [1, 65536]"));

    m = tiny_default();
    set_config(m, "hidden_size", cJSON_CreateNumber(1e15));
    expect_model_error("hidden_size huge", m, FM_ERR_FORMAT,
                       SUBS("config.json: field 'hidden_size' = 1000000000000000 is out of range [1, 65536]"));

    m = tiny_default();
    set_config(m, "hidden_act", cJSON_CreateString("gelu"));
    expect_model_error("gelu", m, FM_ERR_UNSUPPORTED, SUBS("config.json: hidden_act must be \"silu\""));

    m = tiny_default();
    set_config(m, "vocab_size", cJSON_CreateNumber(0));
    expect_model_error("vocab 0", m, FM_ERR_FORMAT, SUBS("config.json: field 'vocab_size' = 0 is out of range"));

    m = tiny_default();
    set_config(m, "use_conv_bias", cJSON_CreateNumber(1));
    expect_model_error("use_conv_bias 1", m, FM_ERR_FORMAT,
                       SUBS("config.json: field 'use_conv_bias' must be true or false"));

    /* config errors come before weight errors */
    m = tiny_default();
    m->write_weights = 0;
    set_config(m, "hidden_act", cJSON_CreateString("relu"));
    expect_model_error("config before weights", m, FM_ERR_UNSUPPORTED, SUBS("hidden_act"));

    /* config.json that is a directory, and one over the size limit */
    m = tiny_default();
    m->write_config = 0;
    char *dir = fm_tm_write_tmp(m);
    fm_tm_free(m);
    assert_non_null(dir);
    char path[2048];
    snprintf(path, sizeof path, "%s/config.json", dir);
    assert_int_equal(mkdir(path, 0755), 0);
    expect_open("config is a directory", dir, FM_ERR_IO, SUBS("@config.json: not a regular file"));
    assert_int_equal(rmdir(path), 0);
    write_sparse(dir, "config.json", "{", 1, (off_t)65 * 1024 * 1024);
    expect_open("config too large", dir, FM_ERR_FORMAT, SUBS("@config.json: ", "larger than the"));
    fm_test_rmtree(dir);
    free(dir);
}

/* ---- positive controls ------------------------------------------------------------------------- */

static fm_context *open_ok(const char *dir, fm_weight_type wt) {
    fm_context_params p = params(wt);
    fm_context *ctx = NULL;
    fm_status st = fm_context_open(dir, &p, &ctx);
    if (st != FM_OK) fail_msg("%s: fm_context_open -> %s: %s", dir, fm_status_string(st), fm_last_error());
    assert_non_null(ctx);
    return ctx;
}

static const int32_t k_tokens[] = {1, 5, 3, 7, 2, 23, 0, 11};
#define N_TOKENS (sizeof k_tokens / sizeof k_tokens[0])

/* logits for k_tokens, n rows of n_vocab (malloc'ed) */
static float *run_tokens(fm_context *ctx) {
    size_t V = (size_t)fm_n_vocab(ctx);
    float *out = malloc(N_TOKENS * V * sizeof *out);
    assert_non_null(out);
    fm_session *s = NULL;
    assert_int_equal(fm_session_open(ctx, NULL, &s), FM_OK);
    fm_status st = fm_session_feed(s, k_tokens, N_TOKENS, out);
    if (st != FM_OK) fail_msg("feed -> %s: %s", fm_status_string(st), fm_last_error());
    fm_session_close(s);
    return out;
}

/* logits must be finite, vary over the vocabulary and over positions */
static void check_logits_sane(const char *what, const float *l, size_t V) {
    for (size_t i = 0; i < N_TOKENS * V; i++)
        if (!isfinite(l[i])) fail_msg("%s: logit %zu is %g", what, i, (double)l[i]);
    int varies_v = 0, varies_t = 0;
    for (size_t i = 1; i < V; i++) varies_v |= l[i] != l[0];
    for (size_t t = 1; t < N_TOKENS; t++) varies_t |= l[t * V] != l[0];
    if (!varies_v || !varies_t) fail_msg("%s: logits are constant", what);
}

typedef struct variant {
    const char *name, *dtype, *model_type;
    int tied, n_shards, use_bias, use_conv_bias, d_conv, n_layer;
} variant;

static const variant k_variants[] = {
    {"f32 tied", "F32", "falcon_mamba", 1, 0, 0, 1, 4, 2},
    {"f32 untied", "F32", "falcon_mamba", 0, 0, 0, 1, 4, 2},
    {"bf16 tied", "BF16", "falcon_mamba", 1, 0, 0, 1, 4, 2},
    {"bf16 untied", "BF16", "falcon_mamba", 0, 0, 0, 1, 4, 2},
    {"f16 tied", "F16", "falcon_mamba", 1, 0, 0, 1, 4, 2},
    {"f16 untied", "F16", "falcon_mamba", 0, 0, 0, 1, 4, 2},
    {"f32 sharded 3", "F32", "falcon_mamba", 0, 3, 0, 1, 4, 2},
    {"bf16 sharded 1", "BF16", "falcon_mamba", 1, 1, 0, 1, 4, 2},
    {"mamba f32", "F32", "mamba", 1, 0, 0, 1, 4, 2},
    {"mamba bf16 untied sharded", "BF16", "mamba", 0, 2, 0, 1, 4, 1},
    {"biases", "F32", "falcon_mamba", 0, 0, 1, 1, 4, 2},
    {"no conv bias", "F16", "falcon_mamba", 1, 0, 0, 0, 3, 3},
    {"conv kernel 2", "F32", "falcon_mamba", 1, 0, 0, 1, 2, 1},
};

static void test_positive_controls(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof k_variants / sizeof k_variants[0]; i++) {
        const variant *v = &k_variants[i];
        fm_tm_options o;
        fm_tm_options_init(&o);
        o.dtype = v->dtype;
        o.model_type = v->model_type;
        o.tied = v->tied;
        o.n_shards = v->n_shards;
        o.use_bias = v->use_bias;
        o.use_conv_bias = v->use_conv_bias;
        o.d_conv = v->d_conv;
        o.n_layer = v->n_layer;
        fm_tm_model *m = fm_tm_create(&o);
        assert_non_null(m);
        char *dir = fm_tm_write_tmp(m);
        assert_non_null(dir);
        if (v->n_shards) {
            char path[2048];
            snprintf(path, sizeof path, "%s/model.safetensors", dir);
            assert_false(access(path, F_OK) == 0); /* really the sharded form */
        }
        fm_context *ctx = open_ok(dir, FM_WEIGHTS_AUTO);
        fm_model_info info;
        memset(&info, 0, sizeof info);
        info.struct_size = sizeof info;
        assert_int_equal(fm_context_info(ctx, &info), FM_OK);
        assert_string_equal(info.model_type, v->model_type);
        assert_int_equal(info.n_layer, o.n_layer);
        assert_int_equal(info.d_model, o.d_model);
        assert_int_equal(info.d_inner, o.d_inner);
        assert_int_equal(info.d_state, o.d_state);
        assert_int_equal(info.d_conv, o.d_conv);
        assert_int_equal(info.dt_rank, o.dt_rank);
        assert_int_equal(info.n_vocab, o.vocab);
        assert_int_equal(info.tied_embeddings, o.tied);
        uint64_t n_params = 0;
        for (size_t k = 0; k < m->n_tensors; k++) n_params += m->tensors[k].n_bytes / fm_tm_dtype_size(m->tensors[k].dtype);
        assert_int_equal(info.n_params, n_params);
        assert_int_equal(fm_n_vocab(ctx), o.vocab);
        assert_int_equal(fm_token_bos(ctx), 1);
        assert_int_equal(fm_token_eos(ctx), 2);
        float *l = run_tokens(ctx);
        check_logits_sane(v->name, l, (size_t)o.vocab);
        free(l);
        fm_context_close(ctx);
        fm_test_rmtree(dir);
        free(dir);
        fm_tm_free(m);
    }
}

/* Tolerated oddities: unknown extra tensors, mixed dtypes per tensor, no __metadata__. */
static void test_tolerated_extras(void **state) {
    (void)state;
    fm_tm_model *m = tiny("BF16", 1, 0);
    assert_non_null(fm_tm_add(m, "backbone.layers.0.mixer.extra", "I32", 1, (int64_t[]){3}));
    assert_non_null(fm_tm_add(m, "lm_head.weight", "F32", 2, (int64_t[]){24, 16})); /* ignored: tied */
    fm_tm_tensor *t = must_find(m, "backbone.norm_f.weight");
    assert_int_equal(fm_tm_retype(t, "F32", t->n_dims, t->shape), 0);
    assert_int_equal(fm_tm_set_text(&m->metadata_json, NULL), 0);
    char *dir = fm_tm_write_tmp(m);
    assert_non_null(dir);
    fm_context *ctx = open_ok(dir, FM_WEIGHTS_AUTO);
    float *l = run_tokens(ctx);
    check_logits_sane("extras", l, 24);
    free(l);
    fm_context_close(ctx);
    /* both forms present: the single file wins, so a broken index is never read */
    assert_int_equal(fm_test_write_file(dir, "model.safetensors.index.json", "garbage", 7), 0);
    ctx = open_ok(dir, FM_WEIGHTS_AUTO);
    fm_context_close(ctx);
    fm_test_rmtree(dir);
    free(dir);
    fm_tm_free(m);
}

static void compare_rel(const char *what, const float *a, const float *b, size_t n, double tol) {
    double err = 0, mx = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > err) err = d;
        if (fabs((double)b[i]) > mx) mx = fabs((double)b[i]);
    }
    if (!(mx > 0) || !(err <= tol * mx)) fail_msg("%s: max |diff| %g vs max |ref| %g (tol %g relative)", what, err, mx, tol);
}

/* A half-precision checkpoint gives the same logits whether its matrices stay half or are widened. */
static void test_f32_weights_match_auto(void **state) {
    (void)state;
    const char *dtypes[] = {"BF16", "F16"};
    for (size_t i = 0; i < 2; i++) {
        fm_tm_model *m = tiny(dtypes[i], 0, 0);
        char *dir = fm_tm_write_tmp(m);
        assert_non_null(dir);
        fm_context *a = open_ok(dir, FM_WEIGHTS_AUTO), *f = open_ok(dir, FM_WEIGHTS_F32);
        fm_model_info ia, iff;
        memset(&ia, 0, sizeof ia);
        memset(&iff, 0, sizeof iff);
        ia.struct_size = iff.struct_size = sizeof ia;
        assert_int_equal(fm_context_info(a, &ia), FM_OK);
        assert_int_equal(fm_context_info(f, &iff), FM_OK);
        if (!(iff.weight_bytes > ia.weight_bytes))
            fail_msg("%s: F32 weights take %llu bytes, AUTO %llu: not widened?", dtypes[i],
                     (unsigned long long)iff.weight_bytes, (unsigned long long)ia.weight_bytes);
        assert_int_equal(ia.n_params, iff.n_params);
        float *la = run_tokens(a), *lf = run_tokens(f);
        check_logits_sane(dtypes[i], la, 24);
        compare_rel(dtypes[i], la, lf, N_TOKENS * 24, 1e-5);
        free(la);
        free(lf);
        fm_context_close(a);
        fm_context_close(f);
        fm_test_rmtree(dir);
        free(dir);
        fm_tm_free(m);
    }
}

/* The same weights, single-file or sharded, give bit-identical logits; another seed does not. */
static void test_sharded_matches_single(void **state) {
    (void)state;
    float *l[3];
    for (int k = 0; k < 3; k++) {
        fm_tm_options o;
        fm_tm_options_init(&o);
        o.tied = 0;
        o.n_shards = k == 1 ? 4 : 0;
        o.seed = k == 2 ? 2 : 1;
        fm_tm_model *m = fm_tm_create(&o);
        char *dir = fm_tm_write_tmp(m);
        assert_non_null(dir);
        fm_context *ctx = open_ok(dir, FM_WEIGHTS_AUTO);
        l[k] = run_tokens(ctx);
        fm_context_close(ctx);
        fm_test_rmtree(dir);
        free(dir);
        fm_tm_free(m);
    }
    assert_memory_equal(l[0], l[1], N_TOKENS * 24 * sizeof(float));
    assert_memory_not_equal(l[0], l[2], N_TOKENS * 24 * sizeof(float));
    for (int k = 0; k < 3; k++) free(l[k]);
}

/* cJSON's nesting limit turns absurdly deep documents into plain parse errors (no stack overflow). */
static void test_deep_nesting(void **state) {
    (void)state;
    const size_t depth = 100000;
    char *h = malloc(2 * depth + 1);
    assert_non_null(h);
    memset(h, '[', depth);
    memset(h + depth, ']', depth);
    h[2 * depth] = '\0';
    size_t n;
    uint8_t *img = fm_tm_raw_image(h, NULL, 0, &n);
    assert_non_null(img);
    expect_parse("deep header", img, n, FM_ERR_FORMAT, SUBS("header is not valid JSON"));
    free(img);
    /* the same document as config.json */
    fm_tm_model *m = tiny_default();
    assert_int_equal(fm_tm_set_text(&m->config_text, h), 0);
    expect_model_error("deep config", m, FM_ERR_FORMAT, SUBS("config.json: malformed JSON"));
    m = tiny("F32", 1, 2);
    assert_int_equal(fm_tm_set_text(&m->index_text, h), 0);
    expect_model_error("deep index", m, FM_ERR_FORMAT, SUBS("model.safetensors.index.json: malformed JSON"));
    free(h);
    /* moderately deep metadata is fine */
    char meta[2048];
    size_t k = 0;
    k += (size_t)snprintf(meta, sizeof meta, "{\"__metadata__\":");
    for (int i = 0; i < 200; i++) k += (size_t)snprintf(meta + k, sizeof meta - k, "{\"a\":");
    k += (size_t)snprintf(meta + k, sizeof meta - k, "1");
    for (int i = 0; i < 201; i++) k += (size_t)snprintf(meta + k, sizeof meta - k, "}");
    assert_true(k < sizeof meta);
    img = fm_tm_raw_image(meta, NULL, 0, &n);
    expect_parse("deep metadata", img, n, FM_OK, SUBS(""));
    free(img);
}

/* The HuggingFace cache layout: every file of the snapshot is a symlink into a blobs directory. */
static void test_symlinked_checkpoint(void **state) {
    (void)state;
    for (int sharded = 0; sharded <= 1; sharded++) {
        fm_tm_model *m = tiny("BF16", 0, sharded ? 2 : 0);
        char *root = fm_test_mkdtemp();
        assert_non_null(root);
        char blobs[1024], snap[1024];
        snprintf(blobs, sizeof blobs, "%s/blobs", root);
        snprintf(snap, sizeof snap, "%s/snapshots", root);
        assert_int_equal(mkdir(blobs, 0755), 0);
        assert_int_equal(mkdir(snap, 0755), 0);
        assert_int_equal(fm_tm_write(m, blobs), 0);
        const char *files[] = {"config.json", "model.safetensors", "model.safetensors.index.json",
                               "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"};
        int linked = 0;
        for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
            char target[2048], link_path[2048], rel[256];
            snprintf(target, sizeof target, "%s/%s", blobs, files[i]);
            if (access(target, F_OK) != 0) continue;
            snprintf(rel, sizeof rel, "../blobs/%s", files[i]);
            snprintf(link_path, sizeof link_path, "%s/%s", snap, files[i]);
            assert_int_equal(symlink(rel, link_path), 0);
            linked++;
        }
        assert_int_equal(linked, sharded ? 4 : 2);
        char with_slash[1100];
        snprintf(with_slash, sizeof with_slash, "%s/", snap);
        fm_context *ctx = open_ok(with_slash, FM_WEIGHTS_AUTO);
        float *l = run_tokens(ctx);
        check_logits_sane("symlinked", l, 24);
        free(l);
        fm_context_close(ctx);
        fm_test_rmtree(root);
        free(root);
        fm_tm_free(m);
    }
}

/* ---- fuzz-ish: mutate every header byte of a valid image ---------------------------------------- */

static int g_parse_ok, g_parse_fail;

/* Parse a private exact-size copy; on success the result must describe bytes inside the buffer. */
static void parse_checked(const uint8_t *src, size_t n) {
    uint8_t *buf = malloc(n ? n : 1);
    assert_non_null(buf);
    if (n) memcpy(buf, src, n);
    fm_st_file *f = NULL;
    fm_status st = fm_st_parse(buf, n, "fuzz.safetensors", &f);
    if (st == FM_OK) {
        g_parse_ok++;
        assert_non_null(f);
        uint64_t hlen = 0;
        for (int i = 7; i >= 0; i--) hlen = hlen << 8 | buf[i];
        assert_true(hlen <= n - 8);
        const uint8_t *data = buf + 8 + hlen, *end = buf + n;
        for (size_t i = 0; i < f->n_tensors; i++) {
            const fm_st_tensor *t = &f->tensors[i];
            assert_true(t->n_dims >= 0 && t->n_dims <= FM_ST_MAX_DIMS);
            assert_true(t->data >= data && t->data <= end);
            assert_true(t->n_bytes <= (uint64_t)(end - t->data));
            uint64_t ne = 1;
            for (int d = 0; d < t->n_dims; d++) ne *= (uint64_t)t->shape[d];
            assert_true(ne == t->n_elems);
            assert_ptr_equal(fm_st_find(f, t->name), t);
            if (i) assert_true(strcmp(f->tensors[i - 1].name, t->name) < 0);
        }
        fm_st_close(f);
    } else {
        g_parse_fail++;
        assert_true(st < 0);
        assert_null(f);
        if (!strstr(fm_last_error(), "fuzz.safetensors"))
            fail_msg("failure message does not name the file: \"%s\"", fm_last_error());
    }
    free(buf);
}

static void test_fuzz_header_bytes(void **state) {
    (void)state;
    fm_tm_options o;
    fm_tm_options_init(&o);
    o.d_model = 8;
    o.d_inner = 8;
    o.d_state = 2;
    o.d_conv = 2;
    o.n_layer = 1;
    o.vocab = 4;
    o.dtype = "BF16";
    fm_tm_model *m = fm_tm_create(&o);
    assert_non_null(m);
    size_t n;
    uint8_t *img = fm_tm_image(m, -1, &n);
    assert_non_null(img);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | img[i];
    parse_checked(img, n);
    assert_int_equal(g_parse_ok, 1); /* the unmodified image parses */

    static const uint8_t values[] = {0x00, 0xff, '"', '}', '9', ',', '-', 0x80};
    uint8_t *mut = malloc(n);
    assert_non_null(mut);
    for (size_t pos = 0; pos < 8 + hlen; pos++) {
        for (size_t v = 0; v < sizeof values; v++) {
            memcpy(mut, img, n);
            if (mut[pos] == values[v]) continue;
            mut[pos] = values[v];
            parse_checked(mut, n);
        }
        memcpy(mut, img, n); /* single bit flips */
        mut[pos] ^= (uint8_t)(1u << (pos % 8));
        parse_checked(mut, n);
    }
    /* every truncation through the header and into the data, then a stride over the rest */
    for (size_t k = 0; k < n; k += k < 8 + hlen + 64 ? 1 : 37) parse_checked(img, k);
    /* random multi-byte mutations (fixed seed) */
    uint64_t s = 12345;
    for (int it = 0; it < 3000; it++) {
        memcpy(mut, img, n);
        int flips = 1 + (int)(s % 4);
        for (int j = 0; j < flips; j++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            size_t pos = (size_t)((s >> 33) % (8 + hlen));
            mut[pos] = (uint8_t)(s >> 25);
        }
        parse_checked(mut, n);
    }
    assert_true(g_parse_fail > 1000); /* the mutations really broke things */
    assert_true(g_parse_ok > 1);      /* ... and some (e.g. padding, digits in data offsets) did not */
    free(mut);
    free(img);
    fm_tm_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_cases_in_memory),
        cmocka_unit_test(test_header_cases_through_context),
        cmocka_unit_test(test_accepted_header_contents),
        cmocka_unit_test(test_short_buffers),
        cmocka_unit_test(test_header_length_beyond_buffer),
        cmocka_unit_test(test_header_over_100mb),
        cmocka_unit_test(test_short_files),
        cmocka_unit_test(test_truncated_model_file),
        cmocka_unit_test(test_corrupt_offsets_in_checkpoint),
        cmocka_unit_test(test_each_required_tensor_missing),
        cmocka_unit_test(test_named_missing_tensors),
        cmocka_unit_test(test_wrong_shapes),
        cmocka_unit_test(test_unsupported_dtypes),
        cmocka_unit_test(test_sharded_index_errors),
        cmocka_unit_test(test_shard_file_missing),
        cmocka_unit_test(test_shard_path_traversal),
        cmocka_unit_test(test_no_weights),
        cmocka_unit_test(test_bad_directory),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_symlinked_checkpoint),
        cmocka_unit_test(test_positive_controls),
        cmocka_unit_test(test_tolerated_extras),
        cmocka_unit_test(test_f32_weights_match_auto),
        cmocka_unit_test(test_sharded_matches_single),
        cmocka_unit_test(test_fuzz_header_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
