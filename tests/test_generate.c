/* test_generate.c - fm_generate on the tiny chat model: streamed pieces equal the decoded tokens,
   stop strings spanning tokens are found and not emitted, every stop reason, cancel, errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
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

typedef struct capture {
    char text[16384];
    size_t len;
    int32_t ids[512];
    size_t n_ids;
    size_t piece_ends[512]; /* text length after each token's piece */
    int stop_after;         /* return nonzero after this many calls (0 = never) */
    int calls;
} capture;

static int on_piece(const char *piece, size_t len, int32_t token, void *user) {
    capture *c = user;
    assert_true(c->len + len < sizeof c->text);
    memcpy(c->text + c->len, piece, len);
    c->len += len;
    if (token >= 0 && c->n_ids < 512) {
        c->ids[c->n_ids] = token;
        c->piece_ends[c->n_ids++] = c->len;
    }
    c->calls++;
    return c->stop_after && c->calls >= c->stop_after;
}

static int setup(void **state) {
    (void)state;
    const char *dir = getenv("FM_TEST_MODEL");
    return dir && fm_context_open(dir, NULL, &g_ctx) == FM_OK ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    fm_context_close(g_ctx);
    return 0;
}

static fm_sampler_params greedy(void) {
    fm_sampler_params sp;
    fm_sampler_params_init(&sp);
    sp.temperature = 0;
    return sp;
}

/* Greedy, no stops: run to max_new_tokens. Returns the capture. */
static void run(capture *c, const char *prompt, const fm_generate_params *gp, fm_status want) {
    fm_session *s = NULL;
    OK(fm_session_open(g_ctx, NULL, &s));
    memset(c, 0, sizeof *c);
    assert_int_equal(fm_generate(s, prompt, gp, on_piece, c), want);
    fm_session_close(s);
}

static void test_pieces_are_the_decoded_tokens(void **state) {
    (void)state;
    fm_sampler_params sp = greedy();
    fm_generate_params gp;
    fm_generate_params_init(&gp);
    fm_generate_stats stats;
    memset(&stats, 0, sizeof stats);
    stats.struct_size = sizeof stats;
    gp.sampler = &sp;
    gp.max_new_tokens = 40;
    gp.ignore_eos = 1;
    gp.stats = &stats;
    capture c;
    run(&c, "Hello there", &gp, FM_OK);
    assert_int_equal(stats.stop_reason, FM_STOP_MAX_TOKENS);
    assert_int_equal(stats.n_generated_tokens, 40);
    assert_true(stats.n_prompt_tokens > 0);
    assert_int_equal(c.n_ids, 40);
    char dec[16384];
    size_t n = 0;
    OK(fm_tokenizer_decode(fm_context_tokenizer(g_ctx), c.ids, c.n_ids, 1, dec, sizeof dec, &n));
    assert_int_equal(n, c.len);
    assert_memory_equal(dec, c.text, n);

    /* The same tokens as sampling greedily by hand. */
    fm_session *s = NULL;
    OK(fm_session_open(g_ctx, NULL, &s));
    int32_t prompt[64];
    size_t np = 0;
    OK(fm_tokenizer_encode(fm_context_tokenizer(g_ctx), "Hello there", 11, 1, prompt, 64, &np));
    OK(fm_session_feed(s, prompt, np, NULL));
    for (size_t k = 0; k < 40; k++) {
        int32_t t;
        OK(fm_session_sample(s, &sp, &t));
        assert_int_equal(t, c.ids[k]);
        OK(fm_session_feed(s, &t, 1, NULL));
    }
    fm_session_close(s);
}

/* A stop string made of the end of one piece and the start of the next must be found across the
   token boundary; the text before it is emitted, the stop string itself is not. */
static void test_stop_string_across_tokens(void **state) {
    (void)state;
    fm_sampler_params sp = greedy();
    fm_generate_params gp;
    fm_generate_params_init(&gp);
    gp.sampler = &sp;
    gp.max_new_tokens = 60;
    gp.ignore_eos = 1;
    capture full;
    run(&full, "Once upon", &gp, FM_OK);
    /* A boundary with at least one whole character on each side. */
    size_t k = 0, cut = 0;
    for (k = 5; k + 1 < full.n_ids; k++) {
        size_t a = full.piece_ends[k - 1], b = full.piece_ends[k], c2 = full.piece_ends[k + 1];
        if (b > a && c2 > b) {
            cut = b;
            break;
        }
    }
    assert_true(cut > 0);
    size_t from = full.piece_ends[k - 1], to = full.piece_ends[k + 1];
    char stop[256];
    assert_true(to - from < sizeof stop);
    memcpy(stop, full.text + from, to - from);
    stop[to - from] = 0;
    const char *stops[2] = {"\x01never\x02", stop};
    gp.stop = stops;
    gp.n_stop = 2;
    fm_generate_stats stats;
    memset(&stats, 0, sizeof stats);
    stats.struct_size = sizeof stats;
    gp.stats = &stats;
    capture c;
    run(&c, "Once upon", &gp, FM_OK);
    assert_int_equal(stats.stop_reason, FM_STOP_STRING);
    const char *first = strstr(full.text, stop); /* the earliest occurrence may be before `from` */
    assert_non_null(first);
    assert_int_equal(c.len, (size_t)(first - full.text));
    assert_memory_equal(c.text, full.text, c.len);
}

static void test_stop_reasons(void **state) {
    (void)state;
    fm_sampler_params sp = greedy();
    fm_generate_params gp;
    fm_generate_params_init(&gp);
    fm_generate_stats stats;
    memset(&stats, 0, sizeof stats);
    stats.struct_size = sizeof stats;
    gp.sampler = &sp;
    gp.stats = &stats;
    gp.max_new_tokens = 30;
    gp.ignore_eos = 1;

    /* The callback stops it. */
    fm_session *s = NULL;
    OK(fm_session_open(g_ctx, NULL, &s));
    capture c;
    memset(&c, 0, sizeof c);
    c.stop_after = 3;
    OK(fm_generate(s, "Hi", &gp, on_piece, &c));
    assert_int_equal(stats.stop_reason, FM_STOP_CALLBACK);
    assert_int_equal(stats.n_generated_tokens, 3);

    /* EOS forced by a logit bias: stops at once, emits nothing. */
    fm_logit_bias eos = {fm_token_eos(g_ctx), 1000.0f};
    sp.logit_bias = &eos;
    sp.n_logit_bias = 1;
    gp.ignore_eos = 0;
    uint64_t before = fm_session_n_tokens(s);
    memset(&c, 0, sizeof c);
    OK(fm_generate(s, " more", &gp, on_piece, &c));
    assert_int_equal(stats.stop_reason, FM_STOP_EOS);
    assert_int_equal(stats.n_generated_tokens, 1);
    assert_int_equal(c.len, 0);
    /* The session consumed the prompt and the EOS: generation continues from its state. */
    assert_int_equal(fm_session_n_tokens(s), before + stats.n_prompt_tokens + 1);
    sp.n_logit_bias = 0;

    /* Continue with an empty prompt. */
    gp.max_new_tokens = 2;
    OK(fm_generate(s, "", &gp, NULL, NULL));
    assert_int_equal(stats.stop_reason, FM_STOP_MAX_TOKENS);
    assert_int_equal(stats.n_prompt_tokens, 0);

    /* Cancel before the call. */
    fm_session_cancel(s);
    assert_int_equal(fm_generate(s, "x", &gp, NULL, NULL), FM_ERR_CANCELLED);
    fm_session_close(s);
}

static void test_errors(void **state) {
    (void)state;
    fm_session *s = NULL;
    OK(fm_session_open(g_ctx, NULL, &s));
    assert_int_equal(fm_generate(s, "", NULL, NULL, NULL), FM_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(fm_last_error(), "nothing to continue"));
    assert_int_equal(fm_generate(NULL, "x", NULL, NULL, NULL), FM_ERR_INVALID_ARGUMENT);
    assert_int_equal(fm_generate(s, NULL, NULL, NULL, NULL), FM_ERR_INVALID_ARGUMENT);
    fm_generate_params gp;
    fm_generate_params_init(&gp);
    gp.n_stop = 1;
    assert_int_equal(fm_generate(s, "x", &gp, NULL, NULL), FM_ERR_INVALID_ARGUMENT);
    fm_generate_params_init(&gp);
    gp.max_new_tokens = -1;
    assert_int_equal(fm_generate(s, "x", &gp, NULL, NULL), FM_ERR_INVALID_ARGUMENT);
    fm_sampler_params sp;
    fm_sampler_params_init(&sp);
    sp.top_p = 2;
    fm_generate_params_init(&gp);
    gp.sampler = &sp;
    assert_int_equal(fm_generate(s, "x", &gp, NULL, NULL), FM_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(fm_last_error(), "top_p"));
    fm_session_close(s);

    /* A model directory without tokenizer.json. */
    fm_ref_case ref;
    assert_int_equal(fm_test_load_case("falcon_f32_untied", &ref), 0);
    fm_context *ctx = NULL;
    OK(fm_context_open(ref.dir, NULL, &ctx));
    assert_null(fm_context_tokenizer(ctx));
    OK(fm_session_open(ctx, NULL, &s));
    assert_int_equal(fm_generate(s, "x", NULL, NULL, NULL), FM_ERR_UNSUPPORTED);
    assert_non_null(strstr(fm_last_error(), "tokenizer.json"));
    fm_session_close(s);
    fm_context_close(ctx);
    fm_test_free_case(&ref);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pieces_are_the_decoded_tokens), cmocka_unit_test(test_stop_string_across_tokens),
        cmocka_unit_test(test_stop_reasons), cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests_name("generate", tests, setup, teardown);
}
