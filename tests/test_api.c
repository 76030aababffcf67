/* test_api.c - the public API's contract on bad input: clear statuses and messages, no crash, and
   nothing the caller owns changed. Uses the reference fixtures as models. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdatomic.h>
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

/* Expect a status and a substring of fm_last_error(). */
#define EXPECT(call, status, needle)                                                                                  \
    do {                                                                                                              \
        fm_status st_ = (call);                                                                                       \
        if (st_ != (status))                                                                                          \
            fail_msg("%s -> %s (want %s): %s", #call, fm_status_string(st_), fm_status_string(status), fm_last_error()); \
        if (!strstr(fm_last_error(), (needle)))                                                                       \
            fail_msg("%s: message '%s' lacks '%s'", #call, fm_last_error(), (needle));                              \
    } while (0)

static fm_ref_case g_ref;
static fm_context *g_ctx;
static size_t g_V;

static int setup(void **state) {
    (void)state;
    if (fm_test_load_case("falcon_f32_untied", &g_ref) != 0) return -1;
    if (fm_context_open(g_ref.dir, NULL, &g_ctx) != FM_OK) return -1;
    g_V = (size_t)fm_n_vocab(g_ctx);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    fm_context_close(g_ctx);
    fm_test_free_case(&g_ref);
    return 0;
}

static void expect_logits(const fm_session *s, size_t row_of_prompt2) {
    const fm_ref_prompt *rp = &g_ref.prompts[2];
    double err, mx;
    assert_non_null(fm_session_logits(s));
    fm_test_compare(fm_session_logits(s), rp->logits + row_of_prompt2 * g_V, g_V, &err, &mx);
    if (!(err <= 1e-4 * mx)) fail_msg("logits off by %g (max %g) at row %zu", err, mx, row_of_prompt2);
}

static void test_version_and_status(void **state) {
    (void)state;
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", FM_VERSION_MAJOR, FM_VERSION_MINOR, FM_VERSION_PATCH);
    assert_string_equal(fm_version(), want);
    assert_string_equal(fm_status_string(FM_OK), "FM_OK");
    assert_string_equal(fm_status_string(FM_ERR_STATE_MISMATCH), "FM_ERR_STATE_MISMATCH");
    assert_string_equal(fm_status_string((fm_status)-999), "FM_STATUS_UNKNOWN");
    assert_non_null(fm_last_error());
}

static void test_context_open_errors(void **state) {
    (void)state;
    fm_context *ctx = (fm_context *)0x1;
    EXPECT(fm_context_open(NULL, NULL, &ctx), FM_ERR_INVALID_ARGUMENT, "must not be NULL");
    EXPECT(fm_context_open(g_ref.dir, NULL, NULL), FM_ERR_INVALID_ARGUMENT, "must not be NULL");
    EXPECT(fm_context_open("/nonexistent/model", NULL, &ctx), FM_ERR_IO, "config.json");
    assert_ptr_equal(ctx, (fm_context *)0x1); /* untouched on failure */

    fm_context_params p;
    fm_context_params_init(&p);
    p.backend = FM_BACKEND_CUDA;
    EXPECT(fm_context_open(g_ref.dir, &p, &ctx), FM_ERR_BACKEND, "CUDA");
    p.backend = (fm_backend_kind)99;
    EXPECT(fm_context_open(g_ref.dir, &p, &ctx), FM_ERR_INVALID_ARGUMENT, "fm_backend_kind");
    fm_context_params_init(&p);
    p.weight_type = (fm_weight_type)42;
    EXPECT(fm_context_open(g_ref.dir, &p, &ctx), FM_ERR_INVALID_ARGUMENT, "weight_type");
    fm_context_params_init(&p);
    p.n_threads = -1;
    EXPECT(fm_context_open(g_ref.dir, &p, &ctx), FM_ERR_INVALID_ARGUMENT, "n_threads");
    fm_context_params_init(&p);
    p.struct_size = 0;
    EXPECT(fm_context_open(g_ref.dir, &p, &ctx), FM_ERR_INVALID_ARGUMENT, "struct_size");
    assert_ptr_equal(ctx, (fm_context *)0x1);
}

/* An older caller's struct (shorter) gets defaults for the rest; a newer caller's struct (longer)
   is accepted when the unknown tail is zero and refused otherwise. */
static void test_params_struct_size(void **state) {
    (void)state;
    /* As an older library's fm_context_params_init would have filled it: zeroed, padding included. */
    struct old_params {
        size_t struct_size;
        fm_backend_kind backend;
    } old;
    memset(&old, 0, sizeof old);
    old.struct_size = sizeof old;
    old.backend = FM_BACKEND_CPU;
    fm_context *ctx = NULL;
    OK(fm_context_open(g_ref.dir, (const fm_context_params *)&old, &ctx));
    fm_context_close(ctx);

    struct newer {
        fm_context_params p;
        uint64_t future_field;
    } nw;
    memset(&nw, 0, sizeof nw);
    fm_context_params_init(&nw.p);
    nw.p.struct_size = sizeof nw;
    OK(fm_context_open(g_ref.dir, &nw.p, &ctx));
    fm_context_close(ctx);
    nw.future_field = 7;
    ctx = NULL;
    EXPECT(fm_context_open(g_ref.dir, &nw.p, &ctx), FM_ERR_UNSUPPORTED, "unknown");
    assert_null(ctx);
}

static void test_getters(void **state) {
    (void)state;
    assert_int_equal(fm_n_vocab(NULL), 0);
    assert_int_equal(fm_token_eos(NULL), -1);
    assert_int_equal(fm_token_bos(NULL), -1);
    assert_int_equal(fm_n_vocab(g_ctx), 96);
    assert_int_equal(fm_token_eos(g_ctx), 2);
    assert_int_equal(fm_token_bos(g_ctx), 1);
    fm_model_info info = {0};
    EXPECT(fm_context_info(g_ctx, &info), FM_ERR_INVALID_ARGUMENT, "struct_size");
    info.struct_size = sizeof info;
    OK(fm_context_info(g_ctx, &info));
    assert_string_equal(info.model_type, "falcon_mamba");
    assert_string_equal(info.backend_name, "cpu");
    assert_int_equal(info.n_layer, 3);
    assert_int_equal(info.d_model, 64);
    assert_int_equal(info.d_inner, 128);
    assert_int_equal(info.dt_rank, 4);
    assert_int_equal(info.tied_embeddings, 0);
    /* embeddings + head + 3 layers of (norm, in_proj, conv w+b, x_proj, dt w+b, A, D, out_proj) + norm_f */
    uint64_t per_layer = 64 + 256 * 64 + 128 * 4 + 128 + 36 * 128 + 128 * 4 + 128 + 128 * 16 + 128 + 64 * 128;
    assert_int_equal(info.n_params, 2 * 96 * 64 + 3 * per_layer + 64);
    assert_int_equal(info.state_bytes, 3 * 128 * (3 + 16) * 4);
    EXPECT(fm_context_info(NULL, &info), FM_ERR_INVALID_ARGUMENT, "NULL");
    fm_context_close(NULL);
    fm_session_close(NULL);
    fm_session_cancel(NULL);
}

static void test_feed_errors_leave_state(void **state) {
    (void)state;
    const fm_ref_prompt *rp = &g_ref.prompts[2];
    fm_session *s = NULL;
    EXPECT(fm_session_open(NULL, NULL, &s), FM_ERR_INVALID_ARGUMENT, "NULL");
    OK(fm_session_open(g_ctx, NULL, &s));
    EXPECT(fm_session_feed(NULL, rp->tokens, 1, NULL), FM_ERR_INVALID_ARGUMENT, "NULL");
    EXPECT(fm_session_feed(s, NULL, 1, NULL), FM_ERR_INVALID_ARGUMENT, "NULL");
    EXPECT(fm_session_feed(s, rp->tokens, 0, NULL), FM_ERR_INVALID_ARGUMENT, "at least 1");
    OK(fm_session_feed(s, rp->tokens, 4, NULL));
    int32_t bad[3] = {rp->tokens[4], (int32_t)g_V, 5};
    EXPECT(fm_session_feed(s, bad, 3, NULL), FM_ERR_INVALID_TOKEN, "token 1 is 96");
    bad[1] = -1;
    EXPECT(fm_session_feed(s, bad, 3, NULL), FM_ERR_INVALID_TOKEN, "outside the vocabulary");
    float dummy;
    EXPECT(fm_session_feed(s, rp->tokens, SIZE_MAX / 8, &dummy), FM_ERR_INVALID_ARGUMENT, "overflows");
    assert_int_equal(fm_session_n_tokens(s), 4);
    expect_logits(s, 3);
    OK(fm_session_feed(s, rp->tokens + 4, rp->n - 4, NULL));
    expect_logits(s, rp->n - 1);

    OK(fm_session_reset(s));
    assert_null(fm_session_logits(s));
    assert_int_equal(fm_session_n_tokens(s), 0);
    OK(fm_session_feed(s, rp->tokens, rp->n, NULL));
    expect_logits(s, rp->n - 1);
    EXPECT(fm_session_reset(NULL), FM_ERR_INVALID_ARGUMENT, "NULL");
    fm_session_close(s);
}

static unsigned char *save(const fm_session *s, size_t *n) {
    *n = fm_session_state_size(s);
    unsigned char *b = malloc(*n);
    size_t w = 0;
    OK(fm_session_state_save(s, b, *n, &w));
    assert_int_equal(w, *n);
    return b;
}

static void test_state_blob_errors(void **state) {
    (void)state;
    const fm_ref_prompt *rp = &g_ref.prompts[2];
    fm_session *s = NULL, *t = NULL;
    OK(fm_session_open(g_ctx, NULL, &s));
    OK(fm_session_open(g_ctx, NULL, &t));
    OK(fm_session_feed(s, rp->tokens, 6, NULL));
    OK(fm_session_feed(t, rp->tokens, 9, NULL));
    size_t n;
    unsigned char *blob = save(s, &n);

    /* Too small a buffer: the size is reported and the buffer untouched. */
    size_t need = 0;
    unsigned char small[16];
    memset(small, 0xAB, sizeof small);
    EXPECT(fm_session_state_save(s, small, sizeof small, &need), FM_ERR_BUFFER_TOO_SMALL, "need");
    assert_int_equal(need, n);
    for (size_t i = 0; i < sizeof small; i++) assert_int_equal(small[i], 0xAB);
    need = 0;
    EXPECT(fm_session_state_save(s, NULL, 0, &need), FM_ERR_BUFFER_TOO_SMALL, "need");
    assert_int_equal(need, n);

    /* Every refused blob leaves t exactly as it was. */
    EXPECT(fm_session_state_load(t, blob, n - 1), FM_ERR_STATE_MISMATCH, "truncated");
    EXPECT(fm_session_state_load(t, blob, 10), FM_ERR_STATE_MISMATCH, "shorter than its header");
    unsigned char *bad = malloc(n + 4);
    memcpy(bad, blob, n);
    EXPECT(fm_session_state_load(t, bad, n + 4), FM_ERR_STATE_MISMATCH, "truncated");
    bad[0] = 'X';
    EXPECT(fm_session_state_load(t, bad, n), FM_ERR_STATE_MISMATCH, "magic");
    memcpy(bad, blob, n);
    bad[8] = 9; /* format version */
    EXPECT(fm_session_state_load(t, bad, n), FM_ERR_STATE_MISMATCH, "version");
    memcpy(bad, blob, n);
    bad[16] ^= 1; /* fingerprint */
    EXPECT(fm_session_state_load(t, bad, n), FM_ERR_STATE_MISMATCH, "another model");
    memcpy(bad, blob, n);
    bad[24] = 7; /* n_layer */
    EXPECT(fm_session_state_load(t, bad, n), FM_ERR_STATE_MISMATCH, "dimensions");
    memcpy(bad, blob, n);
    bad[n - 5] ^= 0x40; /* payload */
    EXPECT(fm_session_state_load(t, bad, n), FM_ERR_STATE_MISMATCH, "checksum");
    EXPECT(fm_session_state_load(t, NULL, n), FM_ERR_INVALID_ARGUMENT, "NULL");
    free(bad);
    assert_int_equal(fm_session_n_tokens(t), 9);
    expect_logits(t, 8);
    OK(fm_session_feed(t, rp->tokens + 9, rp->n - 9, NULL));
    expect_logits(t, rp->n - 1);

    /* A state saved before any token carries no logits. */
    fm_session *e = NULL;
    OK(fm_session_open(g_ctx, NULL, &e));
    size_t en;
    unsigned char *eblob = save(e, &en);
    assert_true(en < n);
    OK(fm_session_state_load(t, eblob, en));
    assert_null(fm_session_logits(t));
    assert_int_equal(fm_session_n_tokens(t), 0);
    OK(fm_session_feed(t, rp->tokens, rp->n, NULL));
    expect_logits(t, rp->n - 1);
    free(eblob);
    fm_session_close(e);
    free(blob);
    fm_session_close(s);
    fm_session_close(t);
}

/* Same dimensions, one weight byte different: the fingerprint must tell the models apart. */
static void test_state_from_other_model(void **state) {
    (void)state;
    char *dir = fm_test_mkdtemp();
    assert_non_null(dir);
    assert_int_equal(fm_test_copy_dir(g_ref.dir, dir), 0);
    char path[2048];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    size_t fn;
    unsigned char *file = fm_test_read_file(path, &fn);
    assert_non_null(file);
    file[fn - 1] ^= 0x01; /* last byte of the last tensor */
    assert_int_equal(fm_test_write_file(dir, "model.safetensors", file, fn), 0);
    free(file);
    fm_context *other = NULL;
    OK(fm_context_open(dir, NULL, &other));

    fm_session *s = NULL, *o = NULL;
    OK(fm_session_open(g_ctx, NULL, &s));
    OK(fm_session_open(other, NULL, &o));
    OK(fm_session_feed(s, g_ref.prompts[2].tokens, 5, NULL));
    size_t n;
    unsigned char *blob = save(s, &n);
    EXPECT(fm_session_state_load(o, blob, n), FM_ERR_STATE_MISMATCH, "another model");
    assert_int_equal(fm_session_n_tokens(o), 0);
    assert_null(fm_session_logits(o));
    free(blob);
    fm_session_close(s);
    fm_session_close(o);
    fm_context_close(other);
    fm_test_rmtree(dir);
    free(dir);
}

static void test_decode_batch_errors(void **state) {
    (void)state;
    fm_session *a = NULL, *b = NULL, *c = NULL;
    OK(fm_session_open(g_ctx, NULL, &a));
    OK(fm_session_open(g_ctx, NULL, &b));
    fm_context *other = NULL;
    OK(fm_context_open(g_ref.dir, NULL, &other));
    OK(fm_session_open(other, NULL, &c));
    int32_t tok[3] = {1, 2, 3};
    fm_session *pair[2] = {a, b};
    EXPECT(fm_decode_batch(NULL, tok, 2), FM_ERR_INVALID_ARGUMENT, "NULL");
    EXPECT(fm_decode_batch(pair, NULL, 2), FM_ERR_INVALID_ARGUMENT, "NULL");
    EXPECT(fm_decode_batch(pair, tok, 0), FM_ERR_INVALID_ARGUMENT, "n >= 1");
    fm_session *with_null[2] = {a, NULL};
    EXPECT(fm_decode_batch(with_null, tok, 2), FM_ERR_INVALID_ARGUMENT, "sessions[1] is NULL");
    fm_session *dup[2] = {a, a};
    EXPECT(fm_decode_batch(dup, tok, 2), FM_ERR_INVALID_ARGUMENT, "same session");
    fm_session *mixed[2] = {a, c};
    EXPECT(fm_decode_batch(mixed, tok, 2), FM_ERR_INVALID_ARGUMENT, "another context");
    int32_t badtok[2] = {1, 1000};
    EXPECT(fm_decode_batch(pair, badtok, 2), FM_ERR_INVALID_TOKEN, "token 1 is 1000");
    assert_int_equal(fm_session_n_tokens(a), 0);
    assert_int_equal(fm_session_n_tokens(b), 0);
    OK(fm_decode_batch(pair, tok, 2));
    assert_int_equal(fm_session_n_tokens(a), 1);
    fm_session_close(a);
    fm_session_close(b);
    fm_session_close(c);
    fm_context_close(other);
}

typedef struct cancel_arg {
    fm_session *s;
    atomic_int done;
} cancel_arg;

static void *cancel_loop(void *p) {
    cancel_arg *a = p;
    while (!atomic_load(&a->done)) fm_session_cancel(a->s);
    return NULL;
}

static void test_cancel(void **state) {
    (void)state;
    const fm_ref_prompt *rp = &g_ref.prompts[2];
    fm_session_params sp;
    fm_session_params_init(&sp);
    sp.prefill_chunk = 4;
    fm_session *s = NULL;
    OK(fm_session_open(g_ctx, &sp, &s));
    /* A cancel that arrives before the call stops it before any token. */
    fm_session_cancel(s);
    EXPECT(fm_session_feed(s, rp->tokens, rp->n, NULL), FM_ERR_CANCELLED, "cancelled after 0");
    assert_int_equal(fm_session_n_tokens(s), 0);
    OK(fm_session_feed(s, rp->tokens, rp->n, NULL)); /* the flag was consumed */
    expect_logits(s, rp->n - 1);

    /* From another thread, during a long feed: it stops on a chunk boundary. */
    size_t n = 400000;
    int32_t *many = malloc(n * sizeof *many);
    for (size_t i = 0; i < n; i++) many[i] = (int32_t)(i % g_V);
    OK(fm_session_reset(s));
    cancel_arg arg = {s, 0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, cancel_loop, &arg), 0);
    fm_status st = fm_session_feed(s, many, n, NULL);
    atomic_store(&arg.done, 1);
    pthread_join(th, NULL);
    assert_int_equal(st, FM_ERR_CANCELLED);
    assert_true(fm_session_n_tokens(s) < n);
    assert_int_equal(fm_session_n_tokens(s) % 4, 0);
    free(many);

    /* decode_batch honours a pending cancel too, before touching any session. */
    fm_session *t = NULL;
    OK(fm_session_open(g_ctx, NULL, &t));
    OK(fm_session_reset(s));
    fm_session *pair[2] = {s, t};
    int32_t tok[2] = {3, 4};
    fm_session_cancel(t);
    EXPECT(fm_decode_batch(pair, tok, 2), FM_ERR_CANCELLED, "sessions[1]");
    assert_int_equal(fm_session_n_tokens(s), 0);
    OK(fm_decode_batch(pair, tok, 2));
    fm_session_close(t);
    fm_session_close(s);
}

static void test_fork_errors(void **state) {
    (void)state;
    fm_session *f = (fm_session *)0x1;
    EXPECT(fm_session_fork(NULL, &f), FM_ERR_INVALID_ARGUMENT, "NULL");
    assert_ptr_equal(f, (fm_session *)0x1);
    fm_session *s = NULL;
    OK(fm_session_open(g_ctx, NULL, &s));
    OK(fm_session_fork(s, &f)); /* fork of an empty session is empty */
    assert_null(fm_session_logits(f));
    assert_int_equal(fm_session_state_size(NULL), 0);
    assert_int_equal(fm_session_n_tokens(NULL), 0);
    assert_null(fm_session_logits(NULL));
    fm_session_close(f);
    fm_session_close(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version_and_status), cmocka_unit_test(test_context_open_errors),
        cmocka_unit_test(test_params_struct_size), cmocka_unit_test(test_getters),
        cmocka_unit_test(test_feed_errors_leave_state), cmocka_unit_test(test_state_blob_errors),
        cmocka_unit_test(test_state_from_other_model), cmocka_unit_test(test_decode_batch_errors),
        cmocka_unit_test(test_cancel), cmocka_unit_test(test_fork_errors),
    };
    return cmocka_run_group_tests_name("api", tests, setup, teardown);
}
