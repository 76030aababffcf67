/* test_chat_template.c - the chat-template engine against transformers' renderings
   (tests/reference/chat_expected.json, made by tests/reference/make_chat_fixtures.py from
   tests/data/chat_templates/, chat_conversations.json and chat_snippets.json), byte for byte; plus
   the engine's own contract: error statuses and messages, unsupported constructs, limits on
   hostile templates. The data directory is $FM_TESTS_DIR, else the compile-time FM_TESTS_DIR,
   else ./tests. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "chat_template.h"
#include "test_util.h"

static const char *tests_dir(void) {
    const char *d = getenv("FM_TESTS_DIR");
    if (d && *d) return d;
#ifdef FM_TESTS_DIR
    return FM_TESTS_DIR;
#else
    return "tests";
#endif
}

/* A file under the tests directory (fm_test_read_file does the reading). */
static char *read_file(const char *rel, size_t *n) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", tests_dir(), rel);
    return fm_test_read_file(path, n);
}

static cJSON *read_json(const char *rel) {
    char *text = read_file(rel, NULL);
    if (!text) return NULL;
    cJSON *j = cJSON_Parse(text);
    free(text);
    return j;
}

/* ---- helpers -------------------------------------------------------------------------------- */

typedef struct render_result {
    fm_status compile_st, render_st;
    char *out;
    size_t len;
    char err[1100];
} render_result;

static void render_src(const char *src, size_t len, const fm_chat_message *msgs, size_t n, int agp,
                       const char *bos, const char *eos, render_result *r) {
    memset(r, 0, sizeof *r);
    fm_chat_template *t = NULL;
    r->compile_st = fm_chat_template_compile(src, len, &t);
    if (r->compile_st != FM_OK) {
        snprintf(r->err, sizeof r->err, "%s", fm_last_error());
        r->render_st = r->compile_st;
        return;
    }
    fm_chat_vars v = {msgs, n, agp, bos, eos};
    r->render_st = fm_chat_template_render(t, &v, &r->out, &r->len);
    if (r->render_st != FM_OK) snprintf(r->err, sizeof r->err, "%s", fm_last_error());
    fm_chat_template_free(t);
}

static void render_simple(const char *src, render_result *r) {
    static const fm_chat_message msgs[] = {{"system", "sys"}, {"user", "hi"}, {"assistant", "hello"}};
    render_src(src, strlen(src), msgs, 3, 1, "<s>", "</s>", r);
}

static void expect_output(const char *src, const char *want) {
    render_result r;
    render_simple(src, &r);
    if (r.render_st != FM_OK) fail_msg("template %s: failed (%d): %s", src, r.render_st, r.err);
    if (strcmp(r.out, want) != 0) fail_msg("template %s:\n got  [%s]\n want [%s]", src, r.out, want);
    free(r.out);
}

static void expect_fail(const char *src, fm_status st, const char *msg_part) {
    render_result r;
    render_simple(src, &r);
    if (r.render_st == FM_OK) fail_msg("template %.200s: rendered [%.200s], expected failure", src, r.out);
    if (st != FM_OK && r.render_st != st)
        fail_msg("template %.200s: status %d (%s), expected %d", src, r.render_st, r.err, st);
    if (msg_part && !strstr(r.err, msg_part)) fail_msg("template %.200s: message [%s] lacks [%s]", src, r.err, msg_part);
    free(r.out);
}

/* ---- the reference cases -------------------------------------------------------------------- */

typedef struct conv {
    const char *id;
    fm_chat_message *msgs;
    size_t n;
} conv;

static size_t load_convs(cJSON *doc, conv **out) {
    cJSON *arr = cJSON_GetObjectItem(doc, "conversations");
    size_t n = (size_t)cJSON_GetArraySize(arr), i = 0;
    conv *c = calloc(n ? n : 1, sizeof *c);
    cJSON *e;
    cJSON_ArrayForEach(e, arr) {
        c[i].id = cJSON_GetObjectItem(e, "id")->valuestring;
        cJSON *m = cJSON_GetObjectItem(e, "messages");
        c[i].n = (size_t)cJSON_GetArraySize(m);
        c[i].msgs = calloc(c[i].n ? c[i].n : 1, sizeof(fm_chat_message));
        size_t k = 0;
        cJSON *mm;
        cJSON_ArrayForEach(mm, m) {
            cJSON *role = cJSON_GetObjectItem(mm, "role"), *content = cJSON_GetObjectItem(mm, "content");
            c[i].msgs[k].role = cJSON_IsString(role) ? role->valuestring : NULL;
            c[i].msgs[k].content = cJSON_IsString(content) ? content->valuestring : NULL;
            k++;
        }
        i++;
    }
    *out = c;
    return n;
}

static const char *jstr_or_null(cJSON *o, const char *k) {
    cJSON *v = cJSON_GetObjectItem(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void show_diff(const char *got, size_t glen, const char *want, size_t wlen) {
    size_t i = 0;
    while (i < glen && i < wlen && got[i] == want[i]) i++;
    size_t from = i > 40 ? i - 40 : 0;
    fprintf(stderr, "    first difference at byte %zu (got %zu bytes, want %zu)\n", i, glen, wlen);
    fprintf(stderr, "    got : ...%.*s...\n", (int)((glen - from) < 120 ? glen - from : 120), got + from);
    fprintf(stderr, "    want: ...%.*s...\n", (int)((wlen - from) < 120 ? wlen - from : 120), want + from);
}

static void test_reference_cases(void **state) {
    (void)state;
    cJSON *expected = read_json("reference/chat_expected.json");
    cJSON *convdoc = read_json("data/chat_conversations.json");
    cJSON *snipdoc = read_json("data/chat_snippets.json");
    if (!expected || !convdoc || !snipdoc) fail_msg("cannot read the fixtures under %s", tests_dir());
    cJSON *src = cJSON_GetObjectItem(expected, "source");
    printf("chat_expected.json source: %s\n", cJSON_IsString(src) ? src->valuestring : "?");
    conv *convs;
    size_t nconv = load_convs(convdoc, &convs);
    cJSON *snippets = cJSON_GetObjectItem(snipdoc, "snippets");

    int n_cases = 0, n_fail = 0, n_ok_output = 0, n_ok_error = 0;
    cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(expected, "cases")) {
        n_cases++;
        const char *kind = jstr_or_null(c, "kind");
        const char *name = strcmp(kind, "snippet") == 0 ? jstr_or_null(c, "snippet") : jstr_or_null(c, "template");
        const char *cid = jstr_or_null(c, "conversation");
        int agp = cJSON_IsTrue(cJSON_GetObjectItem(c, "add_generation_prompt"));
        const char *bos = jstr_or_null(c, "bos_token"), *eos = jstr_or_null(c, "eos_token");
        char *tsrc = NULL;
        size_t tlen = 0;
        if (strcmp(kind, "snippet") == 0) {
            cJSON *s;
            cJSON_ArrayForEach(s, snippets) if (strcmp(jstr_or_null(s, "id"), name) == 0) {
                const char *t = jstr_or_null(s, "template");
                tlen = strlen(t);
                tsrc = malloc(tlen + 1);
                memcpy(tsrc, t, tlen + 1);
            }
        } else {
            char rel[512];
            snprintf(rel, sizeof rel, "data/chat_templates/%s.jinja", name);
            tsrc = read_file(rel, &tlen);
        }
        conv *cv = NULL;
        for (size_t i = 0; i < nconv; i++)
            if (strcmp(convs[i].id, cid) == 0) cv = &convs[i];
        if (!tsrc || !cv) {
            fprintf(stderr, "FAIL %s/%s: template or conversation missing\n", name, cid);
            n_fail++;
            free(tsrc);
            continue;
        }
        render_result r;
        render_src(tsrc, tlen, cv->msgs, cv->n, agp, bos, eos, &r);
        cJSON *want = cJSON_GetObjectItem(c, "expected");
        const char *etype = jstr_or_null(c, "error_type"), *emsg = jstr_or_null(c, "error");
        int ok = 1;
        if (cJSON_IsString(want)) {
            size_t wlen = strlen(want->valuestring);
            if (r.render_st != FM_OK) {
                fprintf(stderr, "FAIL %s/%s agp=%d: error %d: %s\n", name, cid, agp, r.render_st, r.err);
                ok = 0;
            } else if (r.len != wlen || memcmp(r.out, want->valuestring, wlen) != 0) {
                fprintf(stderr, "FAIL %s/%s agp=%d: output differs\n", name, cid, agp);
                show_diff(r.out, r.len, want->valuestring, wlen);
                ok = 0;
            } else n_ok_output++;
        } else {
            int is_syntax = etype && (strcmp(etype, "TemplateSyntaxError") == 0 || strcmp(etype, "TemplateAssertionError") == 0);
            if (r.render_st == FM_OK) {
                fprintf(stderr, "FAIL %s/%s agp=%d: rendered, expected %s: %s\n", name, cid, agp, etype, emsg);
                ok = 0;
            } else if (is_syntax && r.compile_st == FM_OK) {
                fprintf(stderr, "FAIL %s/%s: compiled, expected a syntax error (%s)\n", name, cid, emsg);
                ok = 0;
            } else if (etype && strcmp(etype, "TemplateError") == 0) { /* raise_exception */
                if (r.render_st != FM_ERR_INVALID_ARGUMENT || strcmp(r.err, emsg) != 0) {
                    fprintf(stderr, "FAIL %s/%s agp=%d: raise_exception: got %d [%s], want [%s]\n", name, cid, agp,
                            r.render_st, r.err, emsg);
                    ok = 0;
                }
            } else if (!is_syntax && r.compile_st != FM_OK) {
                fprintf(stderr, "FAIL %s/%s: compile failed (%s), expected a render-time %s\n", name, cid, r.err, etype);
                ok = 0;
            }
            if (ok) n_ok_error++;
        }
        if (!ok) n_fail++;
        free(r.out);
        free(tsrc);
    }
    printf("chat template reference: %d cases, %d outputs and %d errors match, %d fail\n", n_cases, n_ok_output,
           n_ok_error, n_fail);
    for (size_t i = 0; i < nconv; i++) free(convs[i].msgs);
    free(convs);
    cJSON_Delete(expected);
    cJSON_Delete(convdoc);
    cJSON_Delete(snipdoc);
    assert_true(n_cases > 0);
    assert_int_equal(n_fail, 0);
}

/* ---- contract ----------------------------------------------------------------------------- */

static void test_basic_render(void **state) {
    (void)state;
    expect_output("{% for m in messages %}<{{ m.role }}:{{ m.content }}>{% endfor %}{{ add_generation_prompt }}",
                  "<system:sys><user:hi><assistant:hello>True");
    expect_output("", "");
    expect_output("plain text\n", "plain text");
    /* NULL role/content are None; NULL tokens are undefined */
    static const fm_chat_message m[] = {{"user", NULL}, {NULL, "x"}};
    render_result r;
    const char *src = "{{ messages[0].content is none }}{{ messages[1].role }}|{{ bos_token is defined }}";
    render_src(src, strlen(src), m, 2, 0, NULL, NULL, &r);
    assert_int_equal(r.render_st, FM_OK);
    assert_string_equal(r.out, "TrueNone|False");
    assert_int_equal(r.len, strlen("TrueNone|False"));
    free(r.out);
    /* an embedded NUL in the template is data */
    static const char nul_src[] = "a\0b{{ 1 }}";
    render_src(nul_src, sizeof nul_src - 1, m, 0, 0, NULL, NULL, &r);
    assert_int_equal(r.render_st, FM_OK);
    assert_int_equal(r.len, 4);
    assert_memory_equal(r.out, "a\0b1", 4);
    free(r.out);
}

static void test_reuse_and_args(void **state) {
    (void)state;
    fm_chat_template *t = NULL;
    assert_int_equal(fm_chat_template_compile(NULL, 0, NULL), FM_ERR_INVALID_ARGUMENT);
    assert_int_equal(fm_chat_template_compile(NULL, 3, &t), FM_ERR_INVALID_ARGUMENT);
    const char *src = "{{ messages|length }}";
    assert_int_equal(fm_chat_template_compile(src, strlen(src), &t), FM_OK);
    char *out = NULL;
    size_t len = 0;
    assert_int_equal(fm_chat_template_render(t, NULL, &out, &len), FM_ERR_INVALID_ARGUMENT);
    fm_chat_vars bad = {NULL, 2, 0, NULL, NULL};
    assert_int_equal(fm_chat_template_render(t, &bad, &out, &len), FM_ERR_INVALID_ARGUMENT);
    static const fm_chat_message m[] = {{"user", "a"}, {"assistant", "b"}};
    for (size_t n = 0; n <= 2; n++) {
        fm_chat_vars v = {m, n, 0, NULL, NULL};
        assert_int_equal(fm_chat_template_render(t, &v, &out, &len), FM_OK);
        char want[8];
        snprintf(want, sizeof want, "%zu", n);
        assert_string_equal(out, want);
        free(out);
    }
    fm_chat_template_free(t);
    fm_chat_template_free(NULL);
}

static void test_raise_exception(void **state) {
    (void)state;
    render_result r;
    render_simple("ok{{ raise_exception('Conversation roles must alternate!') }}", &r);
    assert_int_equal(r.render_st, FM_ERR_INVALID_ARGUMENT);
    assert_string_equal(r.err, "Conversation roles must alternate!");
    assert_null(r.out);
}

static void test_unsupported(void **state) {
    (void)state;
    expect_fail("line one\n{{ 'a b'|wordcount }}", FM_ERR_UNSUPPORTED, "chat template line 2: filter 'wordcount' is not supported");
    expect_fail("{{ x is frobbed }}", FM_ERR_UNSUPPORTED, "test 'frobbed' is not supported");
    expect_fail("{% include 'other.jinja' %}", FM_ERR_UNSUPPORTED, "'include' tag is not supported");
    expect_fail("{% extends 'base' %}", FM_ERR_UNSUPPORTED, "'extends'");
    expect_fail("{% call m() %}x{% endcall %}", FM_ERR_UNSUPPORTED, "'call'");
    expect_fail("{% for x in y recursive %}{% endfor %}", FM_ERR_UNSUPPORTED, "recursive");
    expect_fail("{{ f(*args) }}", FM_ERR_UNSUPPORTED, "*args");
    expect_fail("{{ '%s' % 1 }}", FM_ERR_UNSUPPORTED, "formatting");
    expect_fail("{{ 'x'.format(1) }}", FM_ERR_UNSUPPORTED, "'format'");
    expect_fail("{{ lipsum() }}", FM_ERR_UNSUPPORTED, "lipsum");
    expect_fail("{{ messages|map('wordcount')|list }}", FM_ERR_UNSUPPORTED, "wordcount");
    expect_fail("{{ messages|selectattr('role') }}", FM_ERR_UNSUPPORTED, "generator");
    expect_fail("{{ 9223372036854775807 + 1 }}", FM_ERR_UNSUPPORTED, "overflow");
    expect_fail("{{ '\\N{BULLET}' }}", FM_ERR_UNSUPPORTED, "\\N");
}

static void test_syntax_errors(void **state) {
    (void)state;
    expect_fail("a\nb\n{% if x %}", FM_ERR_FORMAT, "line 3");
    expect_fail("{% endif %}", FM_ERR_FORMAT, "unknown tag 'endif'");
    expect_fail("{{ 'abc }}", FM_ERR_FORMAT, NULL);
    expect_fail("{{ (1 }}", FM_ERR_FORMAT, NULL);
    expect_fail("{{ ] }}", FM_ERR_FORMAT, NULL);
    expect_fail("{% set 1 = 2 %}", FM_ERR_FORMAT, NULL);
    expect_fail("{% break %}", FM_ERR_FORMAT, "outside");
    expect_fail("{{ 'a' is b is c }}", FM_ERR_FORMAT, "chain");
    expect_fail("{# open", FM_ERR_FORMAT, "comment");
    expect_fail("{% raw %}never closed", FM_ERR_FORMAT, "raw");
    expect_fail("{{ '\\x4' }}", FM_ERR_FORMAT, "escape");
    expect_fail("{% macro m(a=1, b) %}{% endmacro %}", FM_ERR_FORMAT, "non-default");
    expect_fail("{{ 1 ! 2 }}", FM_ERR_FORMAT, "unexpected char '!'");
}

static void test_runtime_errors(void **state) {
    (void)state;
    expect_fail("{{ nothing + 1 }}", FM_ERR_INVALID_ARGUMENT, "'nothing' is undefined");
    expect_fail("{{ nothing.x }}", FM_ERR_INVALID_ARGUMENT, "UndefinedError");
    expect_fail("{{ 1 / 0 }}", FM_ERR_INVALID_ARGUMENT, "ZeroDivisionError");
    expect_fail("{{ 'a' + 1 }}", FM_ERR_INVALID_ARGUMENT, "TypeError");
    expect_fail("{{ none|length }}", FM_ERR_INVALID_ARGUMENT, "TypeError");
    expect_fail("{% set x = 1 %}{% set x.y = 2 %}", FM_ERR_INVALID_ARGUMENT, "namespace");
    expect_fail("{{ range(100001)|length }}", FM_ERR_INVALID_ARGUMENT, "MAX_RANGE");
    expect_fail("{{ {[1]: 2} }}", FM_ERR_INVALID_ARGUMENT, "unhashable");
    expect_fail("{{ ''.split('') }}", FM_ERR_INVALID_ARGUMENT, "empty separator");
    expect_fail("{{ [1][::0] }}", FM_ERR_INVALID_ARGUMENT, "zero");
}

static void test_scoping_and_misc(void **state) {
    (void)state;
    expect_output("{% set x = 1 %}{% for i in [1, 2] %}{% set x = x + i %}{{ x }}{% endfor %}{{ x }}", "231");
    expect_output("{% set ns = namespace(x=1) %}{% for i in [1, 2] %}{% set ns.x = ns.x + i %}{% endfor %}{{ ns.x }}", "4");
    expect_output("{% macro m() %}{{ v }}{% endmacro %}{% set v = 'top' %}{% for i in [1] %}{% set v = 'loop' %}{{ m() }}{% endfor %}", "top");
    expect_output("{% if true %}\n  x\n{% endif %}\n", "  x\n");
    expect_output("  {% if true %}y{% endif %}", "y");
    expect_output("{{ 'a' }}  {%- if true %} b{% endif %}", "a b");
    expect_output("{{ strftime_now('%Y')|length }}", "4");
    expect_output("{{ messages[0]|tojson }}", "{\"role\": \"system\", \"content\": \"sys\"}");
    expect_output("{{ 'Ü'|lower }}{{ 'ü'|upper }}{{ 'ǅ'|length }}", "üÜ1");
}

/* ---- hostile templates ---------------------------------------------------------------------- */

/* pre + a*n + mid + b*n + post */
static char *nest(const char *pre, const char *a, int n, const char *mid, const char *b, const char *post) {
    size_t la = strlen(a), lb = strlen(b), lm = strlen(mid), lp = strlen(pre), lq = strlen(post);
    char *s = malloc(lp + la * (size_t)n + lb * (size_t)n + lm + lq + 1);
    size_t o = 0;
    memcpy(s + o, pre, lp), o += lp;
    for (int i = 0; i < n; i++) memcpy(s + o, a, la), o += la;
    memcpy(s + o, mid, lm), o += lm;
    for (int i = 0; i < n; i++) memcpy(s + o, b, lb), o += lb;
    memcpy(s + o, post, lq), o += lq;
    s[o] = 0;
    return s;
}

static void expect_fail_owned(char *src, fm_status st) {
    expect_fail(src, st, NULL);
    free(src);
}

static void test_hostile(void **state) {
    (void)state;
    /* deep nesting is refused at compile time, without exhausting the stack */
    expect_fail_owned(nest("{{ ", "(", 100000, "1", ")", " }}"), FM_ERR_UNSUPPORTED);
    expect_fail_owned(nest("", "{% if true %}", 20000, "x", "{% endif %}", ""), FM_ERR_UNSUPPORTED);
    expect_fail_owned(nest("{{ ", "[", 50000, "", "]", " }}"), FM_ERR_UNSUPPORTED);
    expect_fail_owned(nest("{{ ", "{'a': ", 50000, "1", "}", " }}"), FM_ERR_UNSUPPORTED);
    expect_fail_owned(nest("{{ ", "not ", 100000, "x", "", " }}"), FM_ERR_UNSUPPORTED);
    expect_fail_owned(nest("{{ ", "-", 100000, "1", "", " }}"), FM_ERR_UNSUPPORTED);
    expect_fail_owned(nest("{{ ", "x.y(", 50000, "", ")", " }}"), FM_ERR_UNSUPPORTED);
    expect_fail_owned(nest("{{ ", "1 if x else ", 50000, "0", "", " }}"), FM_ERR_UNSUPPORTED);
    expect_fail_owned(nest("", "{% for x in y %}", 20000, "", "{% endfor %}", ""), FM_ERR_UNSUPPORTED);
    expect_fail_owned(nest("", "{% macro m() %}", 20000, "", "{% endmacro %}", ""), FM_ERR_UNSUPPORTED);
    /* long flat templates are fine */
    expect_fail_owned(nest("{{ 0", " + 1", 100000, "", "", " }}"), FM_ERR_UNSUPPORTED);
    expect_fail_owned(nest("{{ x", ".a", 100000, "", "", " }}"), FM_ERR_UNSUPPORTED);
    expect_fail_owned(nest("{{ x", "|trim", 100000, "", "", " }}"), FM_ERR_UNSUPPORTED);
    expect_fail_owned(nest("{% if a %}", "{% elif b %}", 100000, "", "", "{% endif %}"), FM_ERR_UNSUPPORTED);
    char *flat = nest("{{ 0", " + 1", 150, "", "", " }}");
    render_result fr;
    render_simple(flat, &fr);
    free(flat);
    assert_int_equal(fr.render_st, FM_OK);
    assert_string_equal(fr.out, "150");
    free(fr.out);
    /* unbounded work / output / memory / recursion fail cleanly */
    expect_fail("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", FM_ERR_INVALID_ARGUMENT, "work limit");
    expect_fail("{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}", FM_ERR_INVALID_ARGUMENT, "64 MiB");
    expect_fail("{{ 'x' * 1000000000000 }}", FM_ERR_INVALID_ARGUMENT, "64 MiB");
    expect_fail("{{ [1] * 1000000000000 }}", FM_ERR_INVALID_ARGUMENT, "limit");
    expect_fail("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", FM_ERR_INVALID_ARGUMENT, "nested too deeply");
    expect_fail("{% set ns = namespace(s='xxxxxxxxxxxxxxxx') %}{% for i in range(100) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
                FM_ERR_INVALID_ARGUMENT, "limit");
    /* a namespace holding itself (a reference cycle) is collected */
    expect_output("{% set ns = namespace() %}{% set ns.me = ns %}{% set ns.l = [ns, loop] %}ok", "ok");
    /* very deep data: repr and tojson refuse rather than recurse without bound */
    expect_fail("{% set ns = namespace(x=[]) %}{% for i in range(50000) %}{% set ns.x = [ns.x] %}{% endfor %}{{ ns.x }}",
                FM_ERR_INVALID_ARGUMENT, "recursion");
    expect_fail("{% set ns = namespace(x=[]) %}{% for i in range(50000) %}{% set ns.x = [ns.x] %}{% endfor %}{{ ns.x|tojson }}",
                FM_ERR_INVALID_ARGUMENT, "recursion");
    expect_fail("{% set ns = namespace(x=[]) %}{% for i in range(50000) %}{% set ns.x = [ns.x] %}{% endfor %}{{ ns.x == ns.x[0] }}",
                FM_ERR_INVALID_ARGUMENT, "recursion");
    expect_output("{% set ns = namespace(x=[]) %}{% for i in range(50000) %}{% set ns.x = [ns.x] %}{% endfor %}{% set ns.x = 0 %}{{ ns.x }}", "0");
    /* garbage bytes */
    char junk[4096];
    uint32_t s = 12345;
    for (int round = 0; round < 200; round++) {
        for (size_t i = 0; i < sizeof junk; i++) {
            s = s * 1103515245u + 12345u;
            static const char alphabet[] = "{}%#-+()[]'\"\\|.,:~ aifnorx0123\n\xff\xc3";
            junk[i] = alphabet[(s >> 16) % (sizeof alphabet - 1)];
        }
        render_result r;
        static const fm_chat_message m[] = {{"user", "hi"}};
        render_src(junk, sizeof junk, m, 1, 1, "<s>", "</s>", &r);
        free(r.out);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic_render),    cmocka_unit_test(test_reuse_and_args),
        cmocka_unit_test(test_raise_exception), cmocka_unit_test(test_unsupported),
        cmocka_unit_test(test_syntax_errors),   cmocka_unit_test(test_runtime_errors),
        cmocka_unit_test(test_scoping_and_misc), cmocka_unit_test(test_hostile),
        cmocka_unit_test(test_reference_cases),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
