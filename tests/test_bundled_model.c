/* test_bundled_model.c - the bundled models/kjv-mamba against what transformers computed at training
   time (models/kjv-mamba/expected.json, from models/train/train_kjv.py): the tokenizer's prompt ids,
   the greedy continuations, the held-out perplexity (3 significant digits and better), seeded
   sampling that repeats, and the chat template. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "falconmamba.h"
#include "test_util.h"

#define OK(call)                                                                                                      \
    do {                                                                                                              \
        fm_status st_ = (call);                                                                                       \
        if (st_ != FM_OK) fail_msg("%s -> %s: %s", #call, fm_status_string(st_), fm_last_error());                  \
    } while (0)

static fm_context *g_ctx;
static cJSON *g_exp;

static int setup(void **state) {
    (void)state;
    const char *dir = getenv("FM_BUNDLED_MODEL");
    char path[2048];
    snprintf(path, sizeof path, "%s/expected.json", dir ? dir : "models/kjv-mamba");
    char *text = fm_test_read_file(path, NULL);
    g_exp = text ? cJSON_Parse(text) : NULL;
    free(text);
    return g_exp && fm_context_open(dir ? dir : "models/kjv-mamba", NULL, &g_ctx) == FM_OK ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    fm_context_close(g_ctx);
    cJSON_Delete(g_exp);
    return 0;
}

static size_t ids_of(const cJSON *arr, int32_t *out, size_t cap) {
    size_t n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) if (n < cap) out[n++] = (int32_t)e->valuedouble;
    return n;
}

static void test_greedy_matches_transformers(void **state) {
    (void)state;
    const fm_tokenizer *tok = fm_context_tokenizer(g_ctx);
    assert_non_null(tok);
    fm_sampler_params sp;
    fm_sampler_params_init(&sp);
    sp.temperature = 0;
    const cJSON *c;
    int n_cases = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(g_exp, "greedy")) {
        const char *prompt = cJSON_GetObjectItem(c, "prompt")->valuestring;
        int32_t want_prompt[64], ids[64], want[128];
        size_t np = ids_of(cJSON_GetObjectItem(c, "prompt_ids"), want_prompt, 64), n = 0;
        size_t ng = ids_of(cJSON_GetObjectItem(c, "tokens"), want, 128);
        OK(fm_tokenizer_encode(tok, prompt, strlen(prompt), 1, ids, 64, &n));
        assert_int_equal(n, np);
        assert_memory_equal(ids, want_prompt, n * sizeof *ids);
        fm_session *s = NULL;
        OK(fm_session_open(g_ctx, NULL, &s));
        OK(fm_session_feed(s, ids, n, NULL));
        for (size_t k = 0; k < ng; k++) {
            int32_t t;
            OK(fm_session_sample(s, &sp, &t));
            if (t != want[k]) fail_msg("'%s': greedy token %zu is %d, transformers chose %d", prompt, k, t, want[k]);
            OK(fm_session_feed(s, &t, 1, NULL));
        }
        char text[4096];
        size_t len = 0;
        OK(fm_tokenizer_decode(tok, want, ng, 1, text, sizeof text, &len));
        assert_int_equal(len, strlen(cJSON_GetObjectItem(c, "text")->valuestring));
        assert_memory_equal(text, cJSON_GetObjectItem(c, "text")->valuestring, len);
        fm_session_close(s);
        n_cases++;
    }
    assert_int_equal(n_cases, 3);
}

/* Perplexity over the held-out ids, as `falconmamba perplexity` computes it. */
static void test_heldout_perplexity(void **state) {
    (void)state;
    static int32_t ids[4096];
    size_t n = ids_of(cJSON_GetObjectItem(g_exp, "heldout_ids"), ids, 4096);
    assert_true(n > 1000);
    const size_t V = (size_t)fm_n_vocab(g_ctx);
    float *lg = malloc((n - 1) * V * sizeof *lg);
    fm_session *s = NULL;
    OK(fm_session_open(g_ctx, NULL, &s));
    OK(fm_session_feed(s, ids, n - 1, lg));
    double nll = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        const float *row = lg + i * V;
        double mx = row[0], sum = 0;
        for (size_t v = 1; v < V; v++) mx = row[v] > mx ? row[v] : mx;
        for (size_t v = 0; v < V; v++) sum += exp((double)row[v] - mx);
        nll += log(sum) + mx - row[ids[i + 1]];
    }
    double ppl = exp(nll / (double)(n - 1));
    double want = cJSON_GetObjectItem(g_exp, "heldout_perplexity")->valuedouble;
    print_message("held-out perplexity: libfalconmamba %.4f, transformers %.4f\n", ppl, want);
    if (fabs(ppl - want) > 1e-4 * want) fail_msg("perplexity %.5f vs transformers %.5f", ppl, want);
    free(lg);
    fm_session_close(s);
}

typedef struct text_buf {
    char text[8192];
    size_t len;
} text_buf;

static int collect(const char *piece, size_t len, int32_t token, void *user) {
    (void)token;
    text_buf *t = user;
    if (t->len + len < sizeof t->text) memcpy(t->text + t->len, piece, len), t->len += len;
    return 0;
}

static void generate_text(uint64_t seed, text_buf *out) {
    fm_session *s = NULL;
    OK(fm_session_open(g_ctx, NULL, &s));
    fm_sampler_params sp;
    fm_sampler_params_init(&sp);
    sp.temperature = 0.8f;
    sp.seed = seed;
    fm_generate_params gp;
    fm_generate_params_init(&gp);
    gp.sampler = &sp;
    gp.max_new_tokens = 40;
    gp.ignore_eos = 1;
    memset(out, 0, sizeof *out);
    OK(fm_generate(s, "And God said", &gp, collect, out));
    fm_session_close(s);
}

/* The same seed gives the same text; another seed gives other text. */
static void test_seeded_generation_repeats(void **state) {
    (void)state;
    static text_buf a, b, c;
    generate_text(42, &a);
    generate_text(42, &b);
    generate_text(7, &c);
    assert_true(a.len > 40);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.text, b.text, a.len);
    assert_false(a.len == c.len && memcmp(a.text, c.text, a.len) == 0);
}

static void test_chat_template_renders(void **state) {
    (void)state;
    fm_chat_message msgs[2] = {{"system", "Answer briefly."}, {"user", "Who made the heaven?"}};
    char buf[512];
    size_t len = 0;
    OK(fm_tokenizer_chat_format(fm_context_tokenizer(g_ctx), msgs, 2, 1, buf, sizeof buf, &len));
    const char *want = "<|im_start|>system\nAnswer briefly.<|im_end|>\n<|im_start|>user\nWho made the heaven?<|im_end|>\n"
                       "<|im_start|>assistant\n";
    assert_int_equal(len, strlen(want));
    assert_memory_equal(buf, want, len);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_matches_transformers), cmocka_unit_test(test_heldout_perplexity),
        cmocka_unit_test(test_seeded_generation_repeats), cmocka_unit_test(test_chat_template_renders),
    };
    return cmocka_run_group_tests_name("bundled_model", tests, setup, teardown);
}
