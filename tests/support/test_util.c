/* test_util.c - fixture loading and filesystem helpers for the tests. */
#define _DEFAULT_SOURCE
#include "test_util.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *fm_test_fixtures_dir(void) {
    const char *d = getenv("FM_FIXTURES");
    return d && *d ? d : "tests/reference/cases";
}

static int cmp_name(const void *a, const void *b) { return strcmp((const char *)a, (const char *)b); }

size_t fm_test_list_cases(char names[][64], size_t cap) {
    DIR *d = opendir(fm_test_fixtures_dir());
    if (!d) return 0;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < cap) {
        if (e->d_name[0] == '.') continue;
        char p[2048];
        snprintf(p, sizeof p, "%s/%s/expected.json", fm_test_fixtures_dir(), e->d_name);
        if (access(p, R_OK) != 0) continue;
        snprintf(names[n++], 64, "%.63s", e->d_name);
    }
    closedir(d);
    qsort(names, n, 64, cmp_name);
    return n;
}

void *fm_test_read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)len + 1);
    if (buf && fread(buf, 1, (size_t)len, f) != (size_t)len) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) {
        buf[len] = 0;
        if (n) *n = (size_t)len;
    }
    return buf;
}

static int32_t *int_array(const cJSON *a, size_t *n) {
    *n = (size_t)cJSON_GetArraySize(a);
    int32_t *v = malloc((*n ? *n : 1) * sizeof *v);
    size_t i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, a) v[i++] = (int32_t)e->valuedouble;
    return v;
}

int fm_test_load_case(const char *name, fm_ref_case *c) {
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", name);
    snprintf(c->dir, sizeof c->dir, "%s/%s", fm_test_fixtures_dir(), name);
    char path[1100];
    snprintf(path, sizeof path, "%s/expected.json", c->dir);
    char *text = fm_test_read_file(path, NULL);
    if (!text) return -1;
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!root) return -1;
    snprintf(c->dtype, sizeof c->dtype, "%s", cJSON_GetObjectItem(root, "dtype")->valuestring);
    const cJSON *prompts = cJSON_GetObjectItem(root, "prompts");
    c->n_prompts = (size_t)cJSON_GetArraySize(prompts);
    c->prompts = calloc(c->n_prompts, sizeof *c->prompts);
    size_t i = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, prompts) {
        fm_ref_prompt *rp = &c->prompts[i++];
        rp->tokens = int_array(cJSON_GetObjectItem(p, "tokens"), &rp->n);
        const cJSON *rows = cJSON_GetObjectItem(p, "logits");
        const cJSON *row0 = cJSON_GetArrayItem(rows, 0);
        c->n_vocab = cJSON_GetArraySize(row0);
        rp->logits = malloc(rp->n * (size_t)c->n_vocab * sizeof(float));
        size_t k = 0;
        const cJSON *row, *v;
        cJSON_ArrayForEach(row, rows) cJSON_ArrayForEach(v, row) rp->logits[k++] = (float)v->valuedouble;
    }
    const cJSON *g = cJSON_GetObjectItem(root, "greedy");
    c->greedy_prompt = (int)cJSON_GetObjectItem(g, "prompt")->valuedouble;
    c->greedy = int_array(cJSON_GetObjectItem(g, "tokens"), &c->n_greedy);
    cJSON_Delete(root);
    return 0;
}

void fm_test_free_case(fm_ref_case *c) {
    for (size_t i = 0; i < c->n_prompts; i++) {
        free(c->prompts[i].tokens);
        free(c->prompts[i].logits);
    }
    free(c->prompts);
    free(c->greedy);
    memset(c, 0, sizeof *c);
}

char *fm_test_mkdtemp(void) {
    const char *t = getenv("TMPDIR");
    char tmpl[1024];
    snprintf(tmpl, sizeof tmpl, "%s/fmtest-XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(tmpl)) return NULL;
    return strdup(tmpl);
}

void fm_test_rmtree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char p[2048];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) fm_test_rmtree(p);
        else unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

int fm_test_write_file(const char *dir, const char *name, const void *data, size_t n) {
    char p[2048];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (!f) return -1;
    size_t w = fwrite(data, 1, n, f);
    return (fclose(f) == 0 && w == n) ? 0 : -1;
}

int fm_test_copy_dir(const char *src, const char *dst) {
    DIR *d = opendir(src);
    if (!d) return -1;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d)) && rc == 0) {
        char p[2048];
        snprintf(p, sizeof p, "%s/%s", src, e->d_name);
        struct stat sb;
        if (stat(p, &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
        size_t n;
        void *buf = fm_test_read_file(p, &n);
        if (!buf) rc = -1;
        else rc = fm_test_write_file(dst, e->d_name, buf, n);
        free(buf);
    }
    closedir(d);
    return rc;
}

int32_t fm_test_argmax(const float *v, size_t n) {
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return (int32_t)best;
}

void fm_test_compare(const float *a, const float *b, size_t n, double *max_err, double *max_ref) {
    double e = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (isnan(d)) e = INFINITY; /* a NaN anywhere fails every tolerance */
        else if (d > e) e = d;
        if (fabs((double)b[i]) > r) r = fabs((double)b[i]);
    }
    *max_err = e;
    *max_ref = r;
}
