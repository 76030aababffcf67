/* test_util.h - helpers shared by the test programs: fixtures, temp dirs, file writing. */
#ifndef FM_TEST_UTIL_H
#define FM_TEST_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* One prompt of a reference case: its tokens and transformers' logits for every position. */
typedef struct fm_ref_prompt {
    int32_t *tokens;
    size_t n;
    float *logits; /* n * n_vocab */
} fm_ref_prompt;

typedef struct fm_ref_case {
    char name[64];
    char dir[1024];
    char dtype[16];
    int n_vocab;
    fm_ref_prompt *prompts;
    size_t n_prompts;
    int greedy_prompt;   /* index into prompts */
    int32_t *greedy;     /* transformers' greedy continuation */
    size_t n_greedy;
} fm_ref_case;

/* Directory of the reference cases ($FM_FIXTURES, else tests/reference/cases relative to cwd). */
const char *fm_test_fixtures_dir(void);

/* Names of the case directories (sorted); returns the count, fills up to cap names. */
size_t fm_test_list_cases(char names[][64], size_t cap);

/* Load <fixtures>/<name>/expected.json; 0 on success. */
int fm_test_load_case(const char *name, fm_ref_case *out);
void fm_test_free_case(fm_ref_case *c);

/* A fresh empty directory under $TMPDIR (or /tmp); caller frees the string and may call
   fm_test_rmtree on it. */
char *fm_test_mkdtemp(void);
void fm_test_rmtree(const char *dir);

/* Write bytes to dir/name; 0 on success. */
int fm_test_write_file(const char *dir, const char *name, const void *data, size_t n);

/* Copy every regular file of src_dir into dst_dir; 0 on success. */
int fm_test_copy_dir(const char *src_dir, const char *dst_dir);

/* Read a whole file (malloc'ed); NULL on failure. */
void *fm_test_read_file(const char *path, size_t *n);

/* argmax over n floats (first maximum). */
int32_t fm_test_argmax(const float *v, size_t n);

/* max |a - b| over n floats and max |b|. */
void fm_test_compare(const float *a, const float *b, size_t n, double *max_abs_err, double *max_abs_ref);

#endif
