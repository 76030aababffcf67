/* test_tokenizer.c - the tokenizer against the reference data in shared/tokenizers (ground truth
   from the HuggingFace `tokenizers` crate 0.22.2), synthetic tokenizers for the features that the
   real ones do not use (expected values from the same oracle), malformed files, invalid input,
   streaming, speed and thread safety.

   Usage: test_tokenizer TOKENIZERS_DIR [UNPACKED_DIR]
     TOKENIZERS_DIR  shared/tokenizers (texts.jsonl, <name>/tokenizer.json, expected.jsonl)
     UNPACKED_DIR    where <name>/tokenizer.json of the gzipped ones (o200k, qwen3, deepseek_v3)
                     was unpacked; default: TOKENIZERS_DIR
   Environment FM_TOKENIZERS_DIR / FM_TOKENIZERS_UNPACKED are used when no arguments are given;
   FM_FIXTURES (set by ctest) enables the checkpoint-directory test; FM_TEST_NO_TIMING=1 (for valgrind)
   keeps the timing checks from failing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <cjson/cJSON.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include "falconmamba.h"

static const char *g_dir, *g_unpacked;
static int g_no_timing; /* FM_TEST_NO_TIMING=1 (valgrind): report times, do not check them */

/* ---- small helpers ----------------------------------------------------------------------------- */

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (!b || fread(b, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        free(b);
        return NULL;
    }
    fclose(f);
    b[n] = 0;
    if (len) *len = (size_t)n;
    return b;
}

static int write_all(const char *path, const char *s, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    size_t w = fwrite(s, 1, n, f);
    fclose(f);
    return w == n;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Decode the JSON string value of "key" in one JSON line (handles \u0000 and surrogate pairs,
   which cJSON would cut at). Returns a malloc'ed buffer, *len its length; NULL if absent. */
static char *json_str(const char *line, const char *key, size_t *len) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\"", key);
    const char *p = strstr(line, pat);
    if (!p) return NULL;
    p += strlen(pat);
    while (*p == ' ' || *p == ':') p++;
    if (*p != '"') return NULL;
    p++;
    size_t cap = strlen(p) + 1, n = 0;
    char *out = malloc(cap);
    while (*p && *p != '"') {
        if (*p != '\\') {
            out[n++] = *p++;
            continue;
        }
        p++;
        char e = *p++;
        switch (e) {
        case 'n': out[n++] = '\n'; break;
        case 't': out[n++] = '\t'; break;
        case 'r': out[n++] = '\r'; break;
        case 'b': out[n++] = '\b'; break;
        case 'f': out[n++] = '\f'; break;
        case 'u': {
            unsigned cp = (unsigned)strtoul((char[5]){p[0], p[1], p[2], p[3], 0}, NULL, 16);
            p += 4;
            if (cp >= 0xD800 && cp < 0xDC00 && p[0] == '\\' && p[1] == 'u') {
                unsigned lo = (unsigned)strtoul((char[5]){p[2], p[3], p[4], p[5], 0}, NULL, 16);
                p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            if (cp < 0x80) out[n++] = (char)cp;
            else if (cp < 0x800) {
                out[n++] = (char)(0xC0 | (cp >> 6));
                out[n++] = (char)(0x80 | (cp & 0x3F));
            } else if (cp < 0x10000) {
                out[n++] = (char)(0xE0 | (cp >> 12));
                out[n++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                out[n++] = (char)(0x80 | (cp & 0x3F));
            } else {
                out[n++] = (char)(0xF0 | (cp >> 18));
                out[n++] = (char)(0x80 | ((cp >> 12) & 0x3F));
                out[n++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                out[n++] = (char)(0x80 | (cp & 0x3F));
            }
            break;
        }
        default: out[n++] = e; break;
        }
    }
    out[n] = 0;
    *len = n;
    return out;
}

static int32_t *json_ids(const cJSON *o, const char *key, size_t *n) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsArray(a)) return NULL;
    *n = (size_t)cJSON_GetArraySize(a);
    int32_t *v = malloc((*n + 1) * sizeof *v);
    size_t i = 0;
    for (const cJSON *e = a->child; e; e = e->next) v[i++] = (int32_t)e->valuedouble;
    return v;
}

/* Lines of a JSONL file. */
typedef struct lines {
    char *buf;
    char **v;
    size_t n;
} lines;

static int read_lines(const char *path, lines *L) {
    memset(L, 0, sizeof *L);
    L->buf = read_all(path, NULL);
    if (!L->buf) return 0;
    size_t cap = 256;
    L->v = malloc(cap * sizeof *L->v);
    for (char *s = strtok(L->buf, "\n"); s; s = strtok(NULL, "\n")) {
        if (!*s) continue;
        if (L->n == cap) L->v = realloc(L->v, (cap *= 2) * sizeof *L->v);
        L->v[L->n++] = s;
    }
    return 1;
}

static void free_lines(lines *L) {
    free(L->buf);
    free(L->v);
}

static fm_tokenizer *open_named(const char *name) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s/tokenizer.json", g_dir, name);
    if (access(p, R_OK) != 0) snprintf(p, sizeof p, "%s/%s/tokenizer.json", g_unpacked, name);
    fm_tokenizer *tok = NULL;
    fm_status st = fm_tokenizer_open(p, &tok);
    if (st) fprintf(stderr, "open %s: %s\n", p, fm_last_error());
    assert_int_equal(st, FM_OK);
    return tok;
}

static int32_t *encode(const fm_tokenizer *tok, const char *s, size_t n, int special, size_t *count) {
    size_t need = 0;
    fm_status st = fm_tokenizer_encode(tok, s, n, special, NULL, 0, &need);
    if (st != FM_OK && st != FM_ERR_BUFFER_TOO_SMALL) {
        fprintf(stderr, "encode: %s\n", fm_last_error());
        return NULL;
    }
    if (st == FM_OK) assert_int_equal(need, 0);
    int32_t *ids = malloc((need + 1) * sizeof *ids);
    assert_int_equal(fm_tokenizer_encode(tok, s, n, special, ids, need, count), FM_OK);
    assert_int_equal(*count, need);
    return ids;
}

static char *decode(const fm_tokenizer *tok, const int32_t *ids, size_t n, int skip, size_t *len) {
    size_t need = 0;
    fm_status st = fm_tokenizer_decode(tok, ids, n, skip, NULL, 0, &need);
    assert_true(st == FM_OK || st == FM_ERR_BUFFER_TOO_SMALL);
    char *b = malloc(need + 1);
    assert_int_equal(fm_tokenizer_decode(tok, ids, n, skip, b, need + 1, len), FM_OK);
    assert_int_equal(*len, need);
    assert_int_equal(b[need], 0);
    return b;
}

/* Push ids one at a time (a tiny buffer first, to exercise BUFFER_TOO_SMALL), then flush. */
static char *stream(const fm_tokenizer *tok, const int32_t *ids, size_t n, int skip, size_t *len) {
    fm_detokenizer *d;
    assert_int_equal(fm_detokenizer_open(tok, skip, &d), FM_OK);
    size_t cap = 64, total = 0;
    char *acc = malloc(cap);
    char small[4];
    for (size_t i = 0; i <= n; i++) {
        size_t got = 0;
        fm_status st = i < n ? fm_detokenizer_push(d, ids[i], small, sizeof small, &got)
                             : fm_detokenizer_flush(d, small, sizeof small, &got);
        const char *src = small;
        char *big = NULL;
        if (st == FM_ERR_BUFFER_TOO_SMALL) {
            big = malloc(got + 1);
            size_t got2 = 0;
            st = i < n ? fm_detokenizer_push(d, ids[i], big, got, &got2) : fm_detokenizer_flush(d, big, got, &got2);
            assert_int_equal(got2, got);
            src = big;
        }
        assert_int_equal(st, FM_OK);
        while (total + got + 1 > cap) acc = realloc(acc, cap *= 2);
        memcpy(acc + total, src, got);
        total += got;
        free(big);
    }
    fm_detokenizer_close(d);
    acc[total] = 0;
    *len = total;
    return acc;
}

static int ids_eq(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    return na == nb && (na == 0 || !memcmp(a, b, na * sizeof *a));
}

static void dump_ids(const char *what, const int32_t *v, size_t n) {
    fprintf(stderr, "    %s (%zu):", what, n);
    for (size_t i = 0; i < n && i < 40; i++) fprintf(stderr, " %d", v[i]);
    fprintf(stderr, "%s\n", n > 40 ? " ..." : "");
}

/* ---- the reference corpus ------------------------------------------------------------------------ */

static void check_corpus(const char *name) {
    fm_tokenizer *tok = open_named(name);
    char p[4096];
    lines T, E;
    snprintf(p, sizeof p, "%s/texts.jsonl", g_dir);
    assert_true(read_lines(p, &T));
    snprintf(p, sizeof p, "%s/%s/expected.jsonl", g_dir, name);
    assert_true(read_lines(p, &E));
    assert_int_equal(T.n, E.n);
    size_t ok[6] = {0}, bad = 0;
    for (size_t i = 0; i < T.n; i++) {
        size_t tl, dl, dsl;
        char *text = json_str(T.v[i], "text", &tl);
        char *dec = json_str(E.v[i], "decoded", &dl);
        char *decs = json_str(E.v[i], "decoded_skip", &dsl);
        cJSON *e = cJSON_Parse(E.v[i]);
        size_t ne, nes;
        int32_t *want = json_ids(e, "ids", &ne), *want_s = json_ids(e, "ids_special", &nes);
        assert_non_null(text);
        assert_non_null(dec);
        assert_non_null(want);
        size_t n, ns, gl, gsl, sl, ssl;
        int32_t *got = encode(tok, text, tl, 0, &n);
        int32_t *got_s = encode(tok, text, tl, 1, &ns);
        assert_non_null(got);
        assert_non_null(got_s);
        char *gd = decode(tok, want, ne, 0, &gl);
        char *gds = decode(tok, want, ne, 1, &gsl);
        char *st = stream(tok, want, ne, 0, &sl);
        char *sts = stream(tok, want, ne, 1, &ssl);
        int r[6] = {ids_eq(got, n, want, ne), ids_eq(got_s, ns, want_s, nes), gl == dl && !memcmp(gd, dec, dl),
                    gsl == dsl && !memcmp(gds, decs, dsl), sl == dl && !memcmp(st, dec, dl),
                    ssl == dsl && !memcmp(sts, decs, dsl)};
        static const char *what[6] = {"ids", "ids_special", "decoded", "decoded_skip", "stream", "stream_skip"};
        for (int k = 0; k < 6; k++) {
            ok[k] += r[k];
            if (!r[k]) {
                bad++;
                char id[128];
                size_t il;
                char *tid = json_str(T.v[i], "id", &il);
                snprintf(id, sizeof id, "%s", tid ? tid : "?");
                free(tid);
                fprintf(stderr, "  %s %s: %s differs\n", name, id, what[k]);
                if (k == 0) {
                    dump_ids("want", want, ne);
                    dump_ids("got ", got, n);
                }
                if (k == 1) {
                    dump_ids("want", want_s, nes);
                    dump_ids("got ", got_s, ns);
                }
                if (k >= 2)
                    fprintf(stderr, "    want '%s'\n    got  '%s'\n", k % 2 ? decs : dec,
                            k == 2 ? gd : k == 3 ? gds : k == 4 ? st : sts);
            }
        }
        free(text);
        free(dec);
        free(decs);
        free(want);
        free(want_s);
        free(got);
        free(got_s);
        free(gd);
        free(gds);
        free(st);
        free(sts);
        cJSON_Delete(e);
    }
    printf("  %-12s %zu texts: ids %zu, ids_special %zu, decoded %zu, decoded_skip %zu, stream %zu, stream_skip %zu\n",
           name, T.n, ok[0], ok[1], ok[2], ok[3], ok[4], ok[5]);
    free_lines(&T);
    free_lines(&E);
    fm_tokenizer_close(tok);
    assert_int_equal(bad, 0);
}

static void test_falcon(void **s) { (void)s; check_corpus("falcon"); }
static void test_roberta(void **s) { (void)s; check_corpus("roberta"); }
static void test_claude(void **s) { (void)s; check_corpus("claude"); }
static void test_cl100k(void **s) { (void)s; check_corpus("cl100k"); }
static void test_o200k(void **s) { (void)s; check_corpus("o200k"); }
static void test_qwen3(void **s) { (void)s; check_corpus("qwen3"); }
static void test_deepseek_v3(void **s) { (void)s; check_corpus("deepseek_v3"); }

static void test_llamacpp_falcon(void **s) {
    (void)s;
    fm_tokenizer *tok = open_named("falcon");
    char p[4096];
    lines L;
    snprintf(p, sizeof p, "%s/falcon/llamacpp_falcon7b.jsonl", g_dir);
    assert_true(read_lines(p, &L));
    size_t good = 0;
    for (size_t i = 0; i < L.n; i++) {
        size_t tl, ne, n;
        char *text = json_str(L.v[i], "text", &tl);
        cJSON *e = cJSON_Parse(L.v[i]);
        int32_t *want = json_ids(e, "ids", &ne);
        int32_t *got = encode(tok, text, tl, 0, &n);
        if (ids_eq(got, n, want, ne)) good++;
        else {
            fprintf(stderr, "  llamacpp line %zu differs\n", i);
            dump_ids("want", want, ne);
            dump_ids("got ", got, n);
        }
        free(text);
        free(want);
        free(got);
        cJSON_Delete(e);
    }
    printf("  llamacpp_falcon7b: %zu / %zu\n", good, L.n);
    assert_int_equal(good, L.n);
    free_lines(&L);
    fm_tokenizer_close(tok);
}

/* ---- round trips on random text ------------------------------------------------------------------ */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

static size_t put_utf8(uint32_t c, char *o) {
    if (c < 0x80) { o[0] = (char)c; return 1; }
    if (c < 0x800) { o[0] = (char)(0xC0 | (c >> 6)); o[1] = (char)(0x80 | (c & 0x3F)); return 2; }
    if (c < 0x10000) {
        o[0] = (char)(0xE0 | (c >> 12)); o[1] = (char)(0x80 | ((c >> 6) & 0x3F)); o[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (c >> 18)); o[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((c >> 6) & 0x3F)); o[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

/* Random text mixing ASCII words, spaces, digits, punctuation and code points from every plane. */
static size_t random_text(char *out, size_t max_chars, int falcon_safe) {
    size_t n = 0, chars = 1 + rnd() % max_chars;
    static const char *frag[] = {" ", "  ", "\n", "\t", "hello", " world", "123", "4567", "'s", "...", "<|", "|>",
                                 "\r\n", "é", "ü", "日本", "😀", "\xc2\xa0", "<|endoftext|>", ">>TITLE<<", "<s>", "</s>"};
    for (size_t i = 0; i < chars; i++) {
        uint32_t k = rnd() % 10;
        if (k < 5) {
            const char *f = frag[rnd() % (sizeof frag / sizeof *frag)];
            memcpy(out + n, f, strlen(f));
            n += strlen(f);
            continue;
        }
        uint32_t c;
        do {
            switch (rnd() % 4) {
            case 0: c = 0x20 + rnd() % 0x5F; break;
            case 1: c = 0x80 + rnd() % 0x780; break;
            case 2: c = 0x800 + rnd() % 0xF800; break;
            default: c = 0x10000 + rnd() % 0x100000; break;
            }
        } while ((c >= 0xD800 && c < 0xE000) ||
                 (falcon_safe && ((c >= 0x80000 && c < 0xC0000) || c >= 0x100000 || c < 0x20 || (c >= 0x40000 && c < 0x80000))));
        n += put_utf8(c, out + n);
    }
    return n;
}

static void test_round_trip(void **s) {
    (void)s;
    const char *names[] = {"roberta", "cl100k", "o200k", "deepseek_v3", "falcon"};
    char *buf = malloc(1 << 16);
    for (size_t t = 0; t < sizeof names / sizeof *names; t++) {
        fm_tokenizer *tok = open_named(names[t]);
        int falcon = !strcmp(names[t], "falcon");
        size_t good = 0, total = 300;
        for (size_t k = 0; k < total; k++) {
            size_t n = random_text(buf, 200, falcon), c, dl, sl;
            int32_t *ids = encode(tok, buf, n, 0, &c);
            assert_non_null(ids);
            char *d = decode(tok, ids, c, 0, &dl);
            char *st = stream(tok, ids, c, 0, &sl);
            int ok = dl == n && !memcmp(d, buf, n) && sl == dl && !memcmp(st, d, dl);
            if (!ok) fprintf(stderr, "  %s: round trip fails on '%.*s'\n", names[t], (int)n, buf);
            good += ok;
            free(ids);
            free(d);
            free(st);
        }
        printf("  round trip %-12s %zu / %zu\n", names[t], good, total);
        assert_int_equal(good, total);
        fm_tokenizer_close(tok);
    }
    free(buf);
}

/* Streaming must also agree with decode on ids that do not come from encoding (any id sequence). */
static void test_stream_random_ids(void **s) {
    (void)s;
    const char *names[] = {"falcon", "qwen3"};
    for (size_t t = 0; t < 2; t++) {
        fm_tokenizer *tok = open_named(names[t]);
        int32_t nv = fm_tokenizer_n_vocab(tok);
        int32_t ids[64];
        for (int k = 0; k < 300; k++) {
            size_t n = 1 + rnd() % 64;
            for (size_t i = 0; i < n; i++) ids[i] = (int32_t)(rnd() % (uint32_t)nv);
            for (int skip = 0; skip < 2; skip++) {
                size_t dl, sl;
                char *d = decode(tok, ids, n, skip, &dl);
                char *st = stream(tok, ids, n, skip, &sl);
                assert_int_equal(sl, dl);
                assert_memory_equal(st, d, dl);
                free(d);
                free(st);
            }
        }
        fm_tokenizer_close(tok);
    }
}

/* A partial character is held back until the token that completes it. */
static void test_stream_holds_partial(void **s) {
    (void)s;
    fm_tokenizer *tok = open_named("falcon");
    size_t n;
    /* Falcon cuts "ü" (C3 BC) between its bytes: C3 -> 'Ã', BC -> '¼' (a digit-like char) */
    int32_t *ids = encode(tok, "x\xc3\xbc", 3, 0, &n);
    assert_int_equal(n, 3);
    fm_detokenizer *d;
    assert_int_equal(fm_detokenizer_open(tok, 0, &d), FM_OK);
    char out[64];
    size_t got;
    assert_int_equal(fm_detokenizer_push(d, ids[0], out, sizeof out, &got), FM_OK);
    assert_int_equal(got, 1);
    assert_memory_equal(out, "x", 1);
    assert_int_equal(fm_detokenizer_push(d, ids[1], out, sizeof out, &got), FM_OK);
    assert_int_equal(got, 0); /* C3 alone is incomplete: held back */
    assert_int_equal(fm_detokenizer_push(d, ids[2], out, sizeof out, &got), FM_OK);
    assert_int_equal(got, 2);
    assert_memory_equal(out, "\xc3\xbc", 2);
    assert_int_equal(fm_detokenizer_flush(d, out, sizeof out, &got), FM_OK);
    assert_int_equal(got, 0);
    /* an incomplete sequence at the end becomes U+FFFD on flush */
    fm_detokenizer_reset(d);
    assert_int_equal(fm_detokenizer_push(d, ids[1], out, sizeof out, &got), FM_OK);
    assert_int_equal(got, 0);
    assert_int_equal(fm_detokenizer_flush(d, out, sizeof out, &got), FM_OK);
    assert_int_equal(got, 3);
    assert_memory_equal(out, "\xef\xbf\xbd", 3);
    /* bad id */
    assert_int_equal(fm_detokenizer_push(d, -1, out, sizeof out, &got), FM_ERR_INVALID_TOKEN);
    assert_int_equal(fm_detokenizer_push(d, fm_tokenizer_n_vocab(tok), out, sizeof out, &got), FM_ERR_INVALID_TOKEN);
    fm_detokenizer_close(d);
    free(ids);
    fm_tokenizer_close(tok);
}

/* ---- API contract --------------------------------------------------------------------------------- */

static void test_api_contract(void **s) {
    (void)s;
    fm_tokenizer *tok = open_named("falcon");
    assert_int_equal(fm_tokenizer_n_vocab(tok), 65024);
    assert_int_equal(fm_tokenizer_eos(tok), 11);
    assert_int_equal(fm_tokenizer_bos(tok), -1);
    assert_int_equal(fm_tokenizer_is_special(tok, 11), 1);
    assert_int_equal(fm_tokenizer_is_special(tok, 0), 1);
    assert_int_equal(fm_tokenizer_is_special(tok, 12), 0);
    assert_int_equal(fm_tokenizer_is_special(tok, -5), 0);
    assert_int_equal(fm_tokenizer_is_special(tok, 1 << 30), 0);
    assert_int_equal(fm_tokenizer_n_vocab(NULL), 0);
    assert_int_equal(fm_tokenizer_eos(NULL), -1);

    int32_t ids[4];
    size_t n = 99;
    assert_int_equal(fm_tokenizer_encode(tok, "Hello world", 11, 0, ids, 1, &n), FM_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(n, 2);
    assert_int_equal(fm_tokenizer_encode(tok, "Hello world", 11, 0, ids, 4, &n), FM_OK);
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], 9856);
    assert_int_equal(ids[1], 1079);
    assert_int_equal(fm_tokenizer_encode(tok, NULL, 0, 0, NULL, 0, &n), FM_OK);
    assert_int_equal(n, 0);
    assert_int_equal(fm_tokenizer_encode(NULL, "a", 1, 0, ids, 4, &n), FM_ERR_INVALID_ARGUMENT);
    assert_int_equal(fm_tokenizer_encode(tok, NULL, 3, 0, ids, 4, &n), FM_ERR_INVALID_ARGUMENT);

    char buf[32];
    size_t len;
    assert_int_equal(fm_tokenizer_decode(tok, ids, 2, 0, buf, 5, &len), FM_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(len, 11);
    assert_int_equal(fm_tokenizer_decode(tok, ids, 2, 0, buf, 11, &len), FM_OK); /* exact fit: no NUL */
    assert_memory_equal(buf, "Hello world", 11);
    assert_int_equal(fm_tokenizer_decode(tok, ids, 2, 0, buf, sizeof buf, &len), FM_OK);
    assert_string_equal(buf, "Hello world");
    int32_t bad[2] = {5, 65024};
    assert_int_equal(fm_tokenizer_decode(tok, bad, 2, 0, buf, sizeof buf, &len), FM_ERR_INVALID_TOKEN);
    assert_non_null(strstr(fm_last_error(), "65024"));
    bad[1] = -3;
    assert_int_equal(fm_tokenizer_decode(tok, bad, 2, 0, buf, sizeof buf, &len), FM_ERR_INVALID_TOKEN);
    assert_int_equal(fm_tokenizer_decode(tok, NULL, 0, 0, buf, sizeof buf, &len), FM_OK);
    assert_int_equal(len, 0);

    /* the chat template comes from tokenizer_config.json; Falcon's has none */
    fm_chat_message m = {"user", "hi"};
    assert_int_equal(fm_tokenizer_chat_format(tok, &m, 1, 1, buf, sizeof buf, &len), FM_ERR_UNSUPPORTED);
    assert_int_equal(fm_tokenizer_open(NULL, &tok), FM_ERR_INVALID_ARGUMENT);
    fm_tokenizer *t2 = NULL;
    assert_int_equal(fm_tokenizer_open("/nonexistent/dir", &t2), FM_ERR_IO);
    assert_null(t2);
    fm_tokenizer_close(NULL);
    fm_detokenizer_close(NULL);
    fm_detokenizer_reset(NULL);
    fm_tokenizer_close(tok);

    /* a directory works too, and reads tokenizer_config.json */
    char p[4096];
    snprintf(p, sizeof p, "%s/roberta", g_dir);
    assert_int_equal(fm_tokenizer_open(p, &t2), FM_OK);
    assert_int_equal(fm_tokenizer_bos(t2), 0);
    assert_int_equal(fm_tokenizer_eos(t2), 2);
    fm_tokenizer_close(t2);
}

/* Invalid UTF-8: the reference only takes valid strings; we refuse with the byte offset. */
static void test_invalid_utf8(void **s) {
    (void)s;
    fm_tokenizer *tok = open_named("falcon");
    static const struct {
        const char *s;
        size_t n, at;
    } cases[] = {
        {"ab\xff", 3, 2},           {"\x80", 1, 0},           {"x\xc3", 2, 1},           {"x\xc3(", 3, 1},
        {"\xe2\x82", 2, 0},         {"\xed\xa0\x80", 3, 0},   {"\xc0\xaf", 2, 0},        {"\xf4\x90\x80\x80", 4, 0},
        {"ok \xf0\x9f\x98", 6, 3},  {"\xe0\x80\xaf", 3, 0},   {"hello\xf8", 6, 5},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int32_t ids[16];
        size_t n = 12345;
        assert_int_equal(fm_tokenizer_encode(tok, cases[i].s, cases[i].n, 0, ids, 16, &n), FM_ERR_INVALID_ARGUMENT);
        assert_int_equal(n, 12345); /* untouched */
        char want[64];
        snprintf(want, sizeof want, "not valid UTF-8 at byte %zu", cases[i].at);
        assert_non_null(strstr(fm_last_error(), want));
    }
    /* NUL is valid text */
    int32_t ids[16];
    size_t n;
    assert_int_equal(fm_tokenizer_encode(tok, "a\0b", 3, 0, ids, 16, &n), FM_OK);
    assert_true(n >= 2);
    fm_tokenizer_close(tok);
}

/* A 100 KB word with no spaces: the merge loop must not be quadratic. */
static void test_long_word(void **s) {
    (void)s;
    fm_tokenizer *tok = open_named("falcon");
    size_t n = 100 * 1024;
    char *w = malloc(n);
    for (size_t i = 0; i < n; i++) w[i] = "abcdefghijklmnopqrstuvwxyz"[(i * 7 + i / 26) % 26];
    double t0 = now_s();
    size_t c, dl;
    int32_t *ids = encode(tok, w, n, 0, &c);
    double t1 = now_s();
    printf("  100 KB word: %zu tokens in %.3f s\n", c, t1 - t0);
    assert_true(t1 - t0 < 1.0 || g_no_timing);
    char *d = decode(tok, ids, c, 0, &dl);
    assert_int_equal(dl, n);
    assert_memory_equal(d, w, n);
    free(d);
    free(ids);
    /* the same with one repeated letter, and with 100 KB of spaces and of digits */
    const char fill[] = {'a', ' ', '7', '!'};
    for (int k = 0; k < 4; k++) {
        memset(w, fill[k], n);
        t0 = now_s();
        ids = encode(tok, w, n, 0, &c);
        t1 = now_s();
        assert_true(t1 - t0 < 1.0 || g_no_timing);
        d = decode(tok, ids, c, 0, &dl);
        assert_int_equal(dl, n);
        assert_memory_equal(d, w, n);
        free(d);
        free(ids);
    }
    free(w);
    fm_tokenizer_close(tok);
}

/* Encode speed on the corpus repeated to a few MB (reported, and a loose floor). */
static void test_speed(void **s) {
    (void)s;
    char p[4096];
    lines T;
    snprintf(p, sizeof p, "%s/texts.jsonl", g_dir);
    assert_true(read_lines(p, &T));
    size_t cap = 8 << 20, n = 0;
    char *text = malloc(cap + 65536);
    while (n < (4u << 20)) {
        for (size_t i = 0; i < T.n; i++) {
            size_t tl;
            char *t = json_str(T.v[i], "text", &tl);
            memcpy(text + n, t, tl);
            n += tl;
            text[n++] = '\n';
            free(t);
        }
    }
    free_lines(&T);
    const char *names[] = {"falcon", "cl100k", "qwen3"};
    for (size_t k = 0; k < 3; k++) {
        fm_tokenizer *tok = open_named(names[k]);
        size_t c;
        int32_t *ids = malloc((n + 16) * sizeof *ids);
        double dt = 1e9;
        for (int r = 0; r < 3; r++) { /* the first run also fills the word cache */
            double t0 = now_s();
            assert_int_equal(fm_tokenizer_encode(tok, text, n, 0, ids, n + 16, &c), FM_OK);
            double t = now_s() - t0;
            if (t < dt) dt = t;
        }
        double t0;
        size_t dl;
        t0 = now_s();
        char *d = decode(tok, ids, c, 0, &dl);
        double dt2 = now_s() - t0;
        printf("  speed %-8s encode %.1f MB/s (%zu bytes -> %zu tokens), decode %.1f MB/s\n", names[k], n / dt / 1e6,
               n, c, dl / dt2 / 1e6);
        assert_true(n / dt > 1e6 || g_no_timing); /* a loose floor: sanitizer builds are slower */
        free(d);
        free(ids);
        fm_tokenizer_close(tok);
    }
    free(text);
}

/* ---- threads --------------------------------------------------------------------------------------- */

typedef struct job {
    const fm_tokenizer *tok;
    const char *text;
    size_t n;
    const int32_t *want;
    size_t nwant;
    int ok;
} job;

static void *worker(void *arg) {
    job *j = arg;
    j->ok = 1;
    for (int r = 0; r < 20 && j->ok; r++) {
        size_t need;
        fm_tokenizer_encode(j->tok, j->text, j->n, 0, NULL, 0, &need);
        int32_t *ids = malloc((need + 1) * sizeof *ids);
        size_t c;
        if (fm_tokenizer_encode(j->tok, j->text, j->n, 0, ids, need, &c) != FM_OK || !ids_eq(ids, c, j->want, j->nwant))
            j->ok = 0;
        size_t dl;
        char *d = malloc(j->n * 4 + 16);
        if (fm_tokenizer_decode(j->tok, ids, c, 0, d, j->n * 4 + 16, &dl) != FM_OK || dl != j->n || memcmp(d, j->text, dl))
            j->ok = 0;
        free(d);
        free(ids);
    }
    return NULL;
}

static void test_threads(void **s) {
    (void)s;
    fm_tokenizer *tok = open_named("cl100k");
    enum { NT = 8 };
    char *texts[NT];
    size_t lens[NT];
    job jobs[NT];
    pthread_t th[NT];
    int32_t *wants[NT];
    for (int i = 0; i < NT; i++) {
        texts[i] = malloc(1 << 16);
        lens[i] = 0;
        for (int k = 0; k < 40; k++) lens[i] += random_text(texts[i] + lens[i], 30, 0);
        size_t c;
        wants[i] = encode(tok, texts[i], lens[i], 0, &c);
        jobs[i] = (job){tok, texts[i], lens[i], wants[i], c, 0};
    }
    for (int i = 0; i < NT; i++) pthread_create(&th[i], NULL, worker, &jobs[i]);
    for (int i = 0; i < NT; i++) {
        pthread_join(th[i], NULL);
        assert_true(jobs[i].ok);
        free(texts[i]);
        free(wants[i]);
    }
    fm_tokenizer_close(tok);
}

/* ---- malformed files ---------------------------------------------------------------------------- */

static char g_tmp[256];

static fm_status open_text(const char *json, fm_tokenizer **out) {
    char p[512];
    snprintf(p, sizeof p, "%s/tokenizer.json", g_tmp);
    assert_true(write_all(p, json, strlen(json)));
    *out = NULL;
    return fm_tokenizer_open(p, out);
}

#define MINI_VOCAB "\"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2, \"c\": 3}"
#define MINI(model_extra, rest)                                                                        \
    "{\"version\": \"1.0\", " rest " \"model\": {\"type\": \"BPE\", " MINI_VOCAB \
    ", \"merges\": [\"a b\"]" model_extra "}}"

static void expect_fail(const char *json, fm_status want, const char *needle) {
    fm_tokenizer *t;
    fm_status st = open_text(json, &t);
    if (st != want || (needle && !strstr(fm_last_error(), needle)))
        fprintf(stderr, "  for %s\n  got %s: %s\n", json, fm_status_string(st), fm_last_error());
    assert_int_equal(st, want);
    assert_null(t);
    if (needle) assert_non_null(strstr(fm_last_error(), needle));
}

static void test_malformed(void **s) {
    (void)s;
    fm_tokenizer *t;
    assert_int_equal(open_text(MINI("", ""), &t), FM_OK);
    fm_tokenizer_close(t);

    expect_fail("", FM_ERR_FORMAT, "JSON");
    expect_fail("{\"model\": ", FM_ERR_FORMAT, "JSON");
    expect_fail("[1, 2]", FM_ERR_FORMAT, "object");
    expect_fail("{}", FM_ERR_FORMAT, "model");
    expect_fail("{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", FM_ERR_UNSUPPORTED, "model type 'Unigram' is not supported");
    expect_fail("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}", FM_ERR_UNSUPPORTED, "WordPiece");
    expect_fail("{\"model\": {\"type\": \"WordLevel\", \"vocab\": {}}}", FM_ERR_UNSUPPORTED, "WordLevel");
    expect_fail("{\"model\": {\"type\": \"BPE\", \"vocab\": [], \"merges\": []}}", FM_ERR_FORMAT, "vocab");
    expect_fail("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": \"x\"}, \"merges\": []}}", FM_ERR_FORMAT, "vocab entry 'a'");
    expect_fail("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -1}, \"merges\": []}}", FM_ERR_FORMAT, "vocab entry");
    expect_fail("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 1.5}, \"merges\": []}}", FM_ERR_FORMAT, "vocab entry");
    expect_fail("{\"model\": {\"type\": \"BPE\", " MINI_VOCAB ", \"merges\": [\"a x\"]}}", FM_ERR_FORMAT, "'x', which is not in the vocab");
    expect_fail("{\"model\": {\"type\": \"BPE\", " MINI_VOCAB ", \"merges\": [\"b a\"]}}", FM_ERR_FORMAT, "'ba'");
    expect_fail("{\"model\": {\"type\": \"BPE\", " MINI_VOCAB ", \"merges\": [\"a b c\"]}}", FM_ERR_FORMAT, "merge 1");
    expect_fail("{\"model\": {\"type\": \"BPE\", " MINI_VOCAB ", \"merges\": [[\"a\"]]}}", FM_ERR_FORMAT, "merge 1");
    expect_fail("{\"model\": {\"type\": \"BPE\", " MINI_VOCAB ", \"merges\": [\"a b\", [\"a\", \"b\"]]}}", FM_ERR_FORMAT, "merge 2");
    expect_fail("{\"model\": {\"type\": \"BPE\", " MINI_VOCAB ", \"merges\": [7]}}", FM_ERR_FORMAT, "merge 1");
    expect_fail("{\"model\": {\"type\": \"BPE\", " MINI_VOCAB ", \"merges\": \"a b\"}}", FM_ERR_FORMAT, "merges");
    expect_fail(MINI(", \"dropout\": 0.1", ""), FM_ERR_UNSUPPORTED, "dropout");
    expect_fail(MINI(", \"dropout\": 7", ""), FM_ERR_FORMAT, "dropout");
    expect_fail(MINI(", \"byte_fallback\": \"yes\"", ""), FM_ERR_FORMAT, "byte_fallback");
    expect_fail("{\"version\": \"2.0\", \"model\": {\"type\": \"BPE\", " MINI_VOCAB ", \"merges\": []}}", FM_ERR_FORMAT, "version");
    expect_fail(MINI("", "\"pre_tokenizer\": {\"type\": \"Nonsense\"},"), FM_ERR_UNSUPPORTED, "pre-tokenizer type 'Nonsense'");
    expect_fail(MINI("", "\"pre_tokenizer\": {\"type\": \"UnicodeScripts\"},"), FM_ERR_UNSUPPORTED, "UnicodeScripts");
    expect_fail(MINI("", "\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"FixedLength\"}]},"),
                FM_ERR_UNSUPPORTED, "pre_tokenizer.pretokenizers[0]");
    expect_fail(MINI("", "\"pre_tokenizer\": {\"no_type\": 1},"), FM_ERR_FORMAT, "type");
    expect_fail(MINI("", "\"pre_tokenizer\": 5,"), FM_ERR_FORMAT, "pre_tokenizer");
    expect_fail(MINI("", "\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(ab\"}, \"behavior\": \"Isolated\", \"invert\": false},"),
                FM_ERR_FORMAT, "does not compile");
    expect_fail(MINI("", "\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"[a\"}, \"behavior\": \"Isolated\", \"invert\": false},"),
                FM_ERR_FORMAT, "does not compile");
    expect_fail(MINI("", "\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"a\"}, \"behavior\": \"Sideways\", \"invert\": false},"),
                FM_ERR_FORMAT, "Sideways");
    expect_fail(MINI("", "\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": \"a\", \"behavior\": \"Isolated\", \"invert\": false},"),
                FM_ERR_FORMAT, "pattern");
    expect_fail(MINI("", "\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"[a-z&&[^c]]\"}, \"behavior\": \"Isolated\", \"invert\": false},"),
                FM_ERR_UNSUPPORTED, "&&");
    expect_fail(MINI("", "\"pre_tokenizer\": {\"type\": \"Metaspace\", \"replacement\": \"ab\"},"), FM_ERR_FORMAT, "single character");
    expect_fail(MINI("", "\"normalizer\": {\"type\": \"Precompiled\", \"precompiled_charsmap\": \"\"},"), FM_ERR_UNSUPPORTED, "Precompiled");
    expect_fail(MINI("", "\"normalizer\": {\"type\": \"Replace\", \"pattern\": {\"Regex\": \"(\"}, \"content\": \"\"},"), FM_ERR_FORMAT, "normalizer");
    expect_fail(MINI("", "\"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Bogus\"}]},"), FM_ERR_UNSUPPORTED, "Bogus");
    expect_fail(MINI("", "\"decoder\": {\"type\": \"WordPiece\", \"prefix\": \"##\"},"), FM_ERR_UNSUPPORTED, "decoder type 'WordPiece'");
    expect_fail(MINI("", "\"decoder\": {\"type\": \"CTC\"},"), FM_ERR_UNSUPPORTED, "CTC");
    expect_fail(MINI("", "\"decoder\": {\"type\": \"Strip\", \"content\": \" \", \"start\": \"x\", \"stop\": 0},"), FM_ERR_FORMAT, "start");
    expect_fail(MINI("", "\"post_processor\": {\"type\": \"Other\"},"), FM_ERR_UNSUPPORTED, "post-processor type 'Other'");
    expect_fail(MINI("", "\"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<x>\", \"type_id\": 0}}], \"pair\": [], \"special_tokens\": {}},"),
                FM_ERR_FORMAT, "<x>");
    expect_fail(MINI("", "\"post_processor\": {\"type\": \"RobertaProcessing\", \"sep\": [\"</s>\"], \"cls\": [\"<s>\", 0]},"),
                FM_ERR_FORMAT, "sep");
    /* an id bounds the per-id tables: a huge one is refused, not allocated for */
    expect_fail("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 2000000000}, \"merges\": []}}", FM_ERR_UNSUPPORTED,
                "ids up to");
    expect_fail(MINI("", "\"added_tokens\": [{\"id\": 1999999999, \"content\": \"<x>\", \"special\": true}],"),
                FM_ERR_UNSUPPORTED, "ids up to");
    /* ids the post-processor or the padding would insert must lie inside the vocabulary (ids 0..3) */
    expect_fail(MINI("", "\"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<x>\", \"type_id\": 0}}, "
                         "{\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}], \"pair\": [], \"special_tokens\": {\"<x>\": {\"id\": \"<x>\", \"ids\": [4], \"tokens\": [\"<x>\"]}}},"),
                FM_ERR_FORMAT, "outside the vocabulary");
    expect_fail(MINI("", "\"post_processor\": {\"type\": \"RobertaProcessing\", \"sep\": [\"</s>\", 2], \"cls\": [\"<s>\", 7]},"),
                FM_ERR_FORMAT, "outside the vocabulary");
    expect_fail(MINI("", "\"padding\": {\"strategy\": \"BatchLongest\", \"pad_id\": 4, \"pad_token\": \"<pad>\"},"), FM_ERR_FORMAT, "pad_id 4");
    expect_fail(MINI("", "\"added_tokens\": [{\"id\": 1}],"), FM_ERR_FORMAT, "content");
    expect_fail(MINI("", "\"added_tokens\": 3,"), FM_ERR_FORMAT, "added_tokens");
    expect_fail(MINI("", "\"added_tokens\": [{\"id\": 9, \"content\": \"x\", \"special\": 1}],"), FM_ERR_FORMAT, "special");
    expect_fail(MINI("", "\"truncation\": {\"max_length\": -1},"), FM_ERR_FORMAT, "truncation");
    expect_fail(MINI("", "\"padding\": {\"strategy\": \"Sometimes\"},"), FM_ERR_FORMAT, "padding");
    expect_fail("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"\\u0000\": 0}, \"merges\": []}}", FM_ERR_UNSUPPORTED, "U+0000");
    expect_fail("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"\xff\": 0}, \"merges\": []}}", FM_ERR_FORMAT, "UTF-8");

    /* every truncation of a real, small file fails cleanly (and the complete file loads) */
    const char *full = MINI("", "\"normalizer\": {\"type\": \"NFC\"}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"}, "
                                "\"decoder\": {\"type\": \"ByteLevel\"}, \"post_processor\": {\"type\": \"ByteLevel\"},");
    size_t n = strlen(full);
    char *cut = malloc(n + 1);
    for (size_t k = 0; k < n; k++) {
        memcpy(cut, full, k);
        cut[k] = 0;
        fm_status st = open_text(cut, &t);
        assert_int_not_equal(st, FM_OK);
        assert_null(t);
    }
    free(cut);
    assert_int_equal(open_text(full, &t), FM_OK);
    fm_tokenizer_close(t);

    /* a config with a bad chat_template type fails; a missing tokenizer.json is an IO error */
    char p[512];
    snprintf(p, sizeof p, "%s/tokenizer_config.json", g_tmp);
    assert_true(write_all(p, "{\"chat_template\": 5}", 20));
    expect_fail(MINI("", ""), FM_ERR_FORMAT, "chat_template");
    assert_true(write_all(p, "{\"bos_token\": {\"content\": \"a\"}, \"eos_token\": \"ab\", \"chat_template\": \"{{ x }}\"}", 79));
    assert_int_equal(open_text(MINI("", ""), &t), FM_OK);
    assert_int_equal(fm_tokenizer_bos(t), 0);
    assert_int_equal(fm_tokenizer_eos(t), 2);
    fm_tokenizer_close(t);
    unlink(p);
    snprintf(p, sizeof p, "%s/tokenizer.json", g_tmp);
    unlink(p);
    assert_int_equal(fm_tokenizer_open(g_tmp, &t), FM_ERR_IO);
}

/* Random bytes and random JSON-ish text as tokenizer.json: an error, never a crash. */
static void test_fuzz_json(void **s) {
    (void)s;
    const char *pieces[] = {"{", "}", "[", "]", ",", ":", "\"model\"", "\"type\"", "\"BPE\"", "\"vocab\"", "\"merges\"",
                            "\"a\"", "\"a b\"", "0", "1", "null", "true", "\"pre_tokenizer\"", "\"Split\"", "\"pattern\"",
                            "\"Regex\"", "\"(\"", "\"decoder\"", "\"normalizer\"", "\"added_tokens\"", "\"content\"", "\"id\""};
    char buf[2048];
    for (int k = 0; k < 2000; k++) {
        size_t n = 0;
        int m = 1 + rnd() % 60;
        for (int i = 0; i < m && n < sizeof buf - 64; i++) {
            const char *p = pieces[rnd() % (sizeof pieces / sizeof *pieces)];
            memcpy(buf + n, p, strlen(p));
            n += strlen(p);
        }
        buf[n] = 0;
        fm_tokenizer *t;
        if (open_text(buf, &t) == FM_OK) fm_tokenizer_close(t);
    }
}

/* ---- synthetic tokenizers (expected values from the reference implementation) ------------------------ */

typedef struct synth_case {
    int text;               /* index into synth_texts */
    const int32_t *ids;     /* encode(text, add_special) */
    size_t n;
    const char *decoded;    /* decode(ids, skip_special = 0); NULL = the text itself */
    const char *decoded_skip; /* decode(ids, skip_special = 1); NULL = same as decoded */
} synth_case;

typedef struct synth_tokenizer {
    const char *name;
    int add_special;
    const synth_case *cases;
    size_t n_cases;
    const char *json; /* "@V<k>@" / "@M<k>@" stand for synth_vocabs[k] / synth_merges[k] */
} synth_tokenizer;

#include "test_tokenizer_synth.inc"

/* Replace every quoted "@<tag>@" in s by rep. */
static char *replace_tag(char *s, const char *tag, const char *rep) {
    char pat[32];
    snprintf(pat, sizeof pat, "\"%s\"", tag);
    char *at;
    while ((at = strstr(s, pat))) {
        size_t a = (size_t)(at - s), pl = strlen(pat), rl = strlen(rep), n = strlen(s);
        char *t = malloc(n - pl + rl + 1);
        memcpy(t, s, a);
        memcpy(t + a, rep, rl);
        memcpy(t + a + rl, at + pl, n - a - pl + 1);
        free(s);
        s = t;
    }
    return s;
}

static char *synth_json(const synth_tokenizer *t) {
    char *s = strdup(t->json);
    for (size_t k = 0; k < sizeof synth_vocabs / sizeof *synth_vocabs; k++) {
        char tag[16];
        cJSON *arr = cJSON_Parse(synth_vocabs[k]), *obj = cJSON_CreateObject();
        int i = 0;
        for (cJSON *e = arr->child; e; e = e->next) cJSON_AddNumberToObject(obj, e->valuestring, i++);
        char *v = cJSON_PrintUnformatted(obj);
        snprintf(tag, sizeof tag, "@V%zu@", k);
        s = replace_tag(s, tag, v);
        snprintf(tag, sizeof tag, "@M%zu@", k);
        s = replace_tag(s, tag, synth_merges[k]);
        free(v);
        cJSON_Delete(arr);
        cJSON_Delete(obj);
    }
    return s;
}

static void test_synthetic(void **s) {
    (void)s;
    size_t good = 0, total = 0;
    for (size_t t = 0; t < sizeof synth / sizeof *synth; t++) {
        fm_tokenizer *tok;
        char *json = synth_json(&synth[t]);
        fm_status st = open_text(json, &tok);
        free(json);
        if (st) fprintf(stderr, "  synthetic %s: %s\n", synth[t].name, fm_last_error());
        assert_int_equal(st, FM_OK);
        for (size_t k = 0; k < synth[t].n_cases; k++) {
            const synth_case *c = &synth[t].cases[k];
            const char *text = synth_texts[c->text];
            const char *want_d = c->decoded ? c->decoded : text;
            const char *want_ds = c->decoded_skip ? c->decoded_skip : want_d;
            size_t n = 0, dl, dsl, sl, ssl;
            int32_t *ids = encode(tok, text, strlen(text), synth[t].add_special, &n);
            int ok = ids && ids_eq(ids, n, c->ids, c->n);
            char *d = decode(tok, c->ids, c->n, 0, &dl);
            char *ds = decode(tok, c->ids, c->n, 1, &dsl);
            char *sd = stream(tok, c->ids, c->n, 0, &sl);
            char *sds = stream(tok, c->ids, c->n, 1, &ssl);
            int okd = dl == strlen(want_d) && !memcmp(d, want_d, dl);
            int okds = dsl == strlen(want_ds) && !memcmp(ds, want_ds, dsl);
            int oks = sl == dl && !memcmp(sd, d, dl) && ssl == dsl && !memcmp(sds, ds, dsl);
            if (!ok || !okd || !okds || !oks) {
                fprintf(stderr, "  synthetic %s, text %d '%s':%s%s%s%s\n", synth[t].name, c->text, text, ok ? "" : " ids",
                        okd ? "" : " decoded", okds ? "" : " decoded_skip", oks ? "" : " stream");
                if (!ok) {
                    dump_ids("want", c->ids, c->n);
                    dump_ids("got ", ids, n);
                }
                if (!okd) fprintf(stderr, "    want '%s'\n    got  '%s'\n", want_d, d);
                if (!okds) fprintf(stderr, "    want '%s'\n    got  '%s'\n", want_ds, ds);
            }
            good += ok && okd && okds && oks;
            total++;
            free(ids);
            free(d);
            free(ds);
            free(sd);
            free(sds);
        }
        fm_tokenizer_close(tok);
    }
    printf("  synthetic tokenizers: %zu / %zu cases in %zu tokenizers\n", good, total, sizeof synth / sizeof *synth);
    assert_int_equal(good, total);
}

/* ---- the tokenizer of a checkpoint directory ---------------------------------------------------- */

static void test_context_tokenizer(void **s) {
    (void)s;
    const char *fx = getenv("FM_FIXTURES");
    if (!fx) {
        printf("  FM_FIXTURES not set: context test skipped\n");
        skip();
    }
    char dir[512], p[1024], src[1024];
    snprintf(dir, sizeof dir, "%s/model", g_tmp);
    snprintf(p, sizeof p, "mkdir -p %s", dir);
    assert_int_equal(system(p), 0);
    const char *files[] = {"config.json", "model.safetensors"};
    for (int i = 0; i < 2; i++) {
        snprintf(src, sizeof src, "%s/falcon_f32_untied/%s", fx, files[i]);
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        unlink(p);
        assert_int_equal(symlink(src, p), 0);
    }
    fm_context *ctx = NULL;
    /* no tokenizer.json: fine, no tokenizer */
    assert_int_equal(fm_context_open(dir, NULL, &ctx), FM_OK);
    assert_null(fm_context_tokenizer(ctx));
    fm_context_close(ctx);
    assert_null(fm_context_tokenizer(NULL));
    /* a tokenizer.json: loaded with the model */
    snprintf(src, sizeof src, "%s/falcon/tokenizer.json", g_dir);
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    assert_int_equal(symlink(src, p), 0);
    snprintf(src, sizeof src, "%s/falcon/tokenizer_config.json", g_dir);
    snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
    assert_int_equal(symlink(src, p), 0);
    assert_int_equal(fm_context_open(dir, NULL, &ctx), FM_OK);
    const fm_tokenizer *tok = fm_context_tokenizer(ctx);
    assert_non_null(tok);
    assert_int_equal(fm_tokenizer_eos(tok), 11);
    size_t n;
    int32_t ids[8];
    assert_int_equal(fm_tokenizer_encode(tok, "Hello world", 11, 0, ids, 8, &n), FM_OK);
    assert_int_equal(n, 2);
    fm_context_close(ctx);
    /* a malformed one fails the open with the tokenizer's error */
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    unlink(p);
    assert_true(write_all(p, "{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", 44));
    ctx = NULL;
    assert_int_equal(fm_context_open(dir, NULL, &ctx), FM_ERR_UNSUPPORTED);
    assert_null(ctx);
    assert_non_null(strstr(fm_last_error(), "Unigram"));
    snprintf(p, sizeof p, "rm -rf %s", dir);
    assert_int_equal(system(p), 0);
}

int main(int argc, char **argv) {
    g_dir = argc > 1 ? argv[1] : getenv("FM_TOKENIZERS_DIR");
    g_unpacked = argc > 2 ? argv[2] : getenv("FM_TOKENIZERS_UNPACKED");
    if (!g_dir) {
        fprintf(stderr, "usage: %s TOKENIZERS_DIR [UNPACKED_DIR]\n", argv[0]);
        return 2;
    }
    if (!g_unpacked) g_unpacked = g_dir;
    g_no_timing = getenv("FM_TEST_NO_TIMING") != NULL;
    snprintf(g_tmp, sizeof g_tmp, "/tmp/fm_tok_test_%d", (int)getpid());
    char cmd[300];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", g_tmp);
    if (system(cmd) != 0) return 2;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_falcon),        cmocka_unit_test(test_llamacpp_falcon), cmocka_unit_test(test_roberta),
        cmocka_unit_test(test_claude),        cmocka_unit_test(test_cl100k),          cmocka_unit_test(test_o200k),
        cmocka_unit_test(test_qwen3),         cmocka_unit_test(test_deepseek_v3),     cmocka_unit_test(test_synthetic),
        cmocka_unit_test(test_round_trip),    cmocka_unit_test(test_stream_random_ids),
        cmocka_unit_test(test_stream_holds_partial), cmocka_unit_test(test_api_contract),
        cmocka_unit_test(test_invalid_utf8),  cmocka_unit_test(test_long_word),       cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_fuzz_json),     cmocka_unit_test(test_threads),         cmocka_unit_test(test_context_tokenizer),
        cmocka_unit_test(test_speed),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_tmp);
    if (system(cmd) != 0) rc = rc ? rc : 1;
    return rc;
}
