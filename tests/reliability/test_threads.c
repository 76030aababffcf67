/* test_threads.c - one context shared by 8 threads (run under ThreadSanitizer in CI: FM_TSAN=ON).
   Each worker owns two sessions: on one it runs fm_generate with a fixed seed and checks the text
   equals what a single thread produced; on the other it feeds, samples, forks, saves and loads
   state while a ninth thread calls fm_session_cancel on it at random moments (FM_ERR_CANCELLED or
   success are both fine; anything else fails). Every worker also encodes, decodes and chat-formats
   with the shared tokenizer, and opens/closes short-lived sessions (the state pool). Finally
   several threads open tokenizers and contexts at once (the loaders' JSON parsing).
   Model: $FM_TEST_MODEL (the tiny chat model). */
#include <stdatomic.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "falconmamba.h"

#define N_WORKERS 8
#define ROUNDS 6

static const char *g_dir;
static fm_context *g_ctx;
static char g_expected[4096];
static _Atomic(fm_session *) g_cancel_target[N_WORKERS];
static atomic_int g_done;
static atomic_int g_errors;
static atomic_long g_cancelled;

#define CHECK(cond, ...)                                                                                \
    do {                                                                                                \
        if (!(cond)) {                                                                                  \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                        \
            fprintf(stderr, __VA_ARGS__);                                                               \
            fputc('\n', stderr);                                                                        \
            atomic_fetch_add(&g_errors, 1);                                                             \
        }                                                                                               \
    } while (0)

typedef struct text_buf {
    char s[4096];
    size_t n;
} text_buf;

static int collect(const char *piece, size_t len, int32_t token, void *user) {
    (void)token;
    text_buf *b = user;
    if (b->n + len < sizeof b->s) {
        memcpy(b->s + b->n, piece, len);
        b->n += len;
        b->s[b->n] = '\0';
    }
    return 0;
}

static fm_status generate(fm_session *s, text_buf *out) {
    fm_sampler_params sp;
    fm_sampler_params_init(&sp);
    sp.seed = 1234;
    sp.top_k = 20;
    fm_generate_params gp;
    fm_generate_params_init(&gp);
    gp.max_new_tokens = 16;
    gp.sampler = &sp;
    out->n = 0;
    out->s[0] = '\0';
    fm_status st = fm_session_reset(s);
    if (st) return st;
    return fm_generate(s, "<|im_start|>user\nHello there<|im_end|>\n", &gp, collect, out);
}

static void *worker(void *arg) {
    int id = (int)(intptr_t)arg;
    const fm_tokenizer *tok = fm_context_tokenizer(g_ctx);
    fm_session *a = NULL, *b = NULL;
    CHECK(fm_session_open(g_ctx, NULL, &a) == FM_OK, "session_open: %s", fm_last_error());
    CHECK(fm_session_open(g_ctx, NULL, &b) == FM_OK, "session_open: %s", fm_last_error());
    if (!a || !b) return NULL;
    atomic_store(&g_cancel_target[id], b);
    text_buf t;
    int32_t toks[64];
    for (int r = 0; r < ROUNDS; r++) {
        fm_status st = generate(a, &t);
        CHECK(st == FM_OK, "worker %d: fm_generate -> %s: %s", id, fm_status_string(st), fm_last_error());
        CHECK(strcmp(t.s, g_expected) == 0, "worker %d round %d: generated '%s', expected '%s'", id, r, t.s, g_expected);

        /* session b: feed / sample / fork / save / load, under random cancels */
        size_t n = 0;
        char text[64];
        snprintf(text, sizeof text, "worker %d round %d says hi", id, r);
        st = fm_tokenizer_encode(tok, text, strlen(text), 0, toks, 64, &n);
        CHECK(st == FM_OK, "encode: %s", fm_last_error());
        char dec[256];
        size_t dl = 0;
        st = fm_tokenizer_decode(tok, toks, n, 0, dec, sizeof dec, &dl);
        CHECK(st == FM_OK && dl == strlen(text) && memcmp(dec, text, dl) == 0, "decode round trip: '%.*s'", (int)dl, dec);
        for (int step = 0; step < 8; step++) {
            st = fm_session_feed(b, toks, n, NULL);
            if (st == FM_ERR_CANCELLED) {
                atomic_fetch_add(&g_cancelled, 1);
                continue;
            }
            CHECK(st == FM_OK, "feed -> %s: %s", fm_status_string(st), fm_last_error());
            int32_t next;
            st = fm_session_sample(b, NULL, &next);
            CHECK(st == FM_OK, "sample: %s", fm_last_error());
            st = fm_decode_batch(&b, &next, 1);
            CHECK(st == FM_OK || st == FM_ERR_CANCELLED, "decode_batch -> %s", fm_status_string(st));
        }
        fm_session *f = NULL;
        st = fm_session_fork(b, &f);
        CHECK(st == FM_OK, "fork: %s", fm_last_error());
        size_t sz = fm_session_state_size(f);
        void *blob = malloc(sz);
        CHECK(fm_session_state_save(f, blob, sz, &sz) == FM_OK, "save: %s", fm_last_error());
        CHECK(fm_session_state_load(f, blob, sz) == FM_OK, "load: %s", fm_last_error());
        free(blob);
        fm_session_close(f);
        fm_session *tmp = NULL; /* churn the state pool */
        CHECK(fm_session_open(g_ctx, NULL, &tmp) == FM_OK, "open: %s", fm_last_error());
        fm_session_close(tmp);
        fm_chat_message msgs[] = {{"user", text}};
        char chat[512];
        size_t cl;
        CHECK(fm_tokenizer_chat_format(tok, msgs, 1, 1, chat, sizeof chat, &cl) == FM_OK, "chat: %s", fm_last_error());
        CHECK(fm_session_reset(b) == FM_OK, "reset");
    }
    fm_session_close(a);
    /* b stays open: the canceller may hold its pointer; main closes it after joining everyone */
    atomic_fetch_add(&g_done, 1);
    return NULL;
}

static void *canceller(void *arg) {
    (void)arg;
    unsigned x = 12345;
    while (atomic_load(&g_done) < N_WORKERS) {
        x = x * 1103515245u + 12345u;
        fm_session *s = atomic_load(&g_cancel_target[(x >> 16) % N_WORKERS]);
        fm_session_cancel(s); /* NULL is fine */
        for (volatile int i = 0; i < (int)((x >> 8) & 0x3fff); i++) {
        }
    }
    return NULL;
}

typedef struct opener_arg {
    int which;
    fm_status st;
} opener_arg;

static void *opener(void *arg) {
    opener_arg *o = arg;
    if (o->which & 1) {
        fm_tokenizer *t = NULL;
        o->st = fm_tokenizer_open(g_dir, &t);
        fm_tokenizer_close(t);
    } else {
        fm_context *c = NULL;
        o->st = fm_context_open(g_dir, NULL, &c);
        fm_context_close(c);
    }
    return NULL;
}

int main(void) {
    g_dir = getenv("FM_TEST_MODEL");
    if (!g_dir) {
        fprintf(stderr, "FM_TEST_MODEL is not set\n");
        return 1;
    }
    fm_context_params p;
    fm_context_params_init(&p);
    p.n_threads = 2;
    if (fm_context_open(g_dir, &p, &g_ctx) != FM_OK) {
        fprintf(stderr, "open: %s\n", fm_last_error());
        return 1;
    }
    /* the single-threaded reference */
    fm_session *s;
    text_buf t;
    if (fm_session_open(g_ctx, NULL, &s) != FM_OK || generate(s, &t) != FM_OK) {
        fprintf(stderr, "reference generate: %s\n", fm_last_error());
        return 1;
    }
    fm_session_close(s);
    memcpy(g_expected, t.s, t.n + 1);

    pthread_t th[N_WORKERS], canc;
    for (int i = 0; i < N_WORKERS; i++) pthread_create(&th[i], NULL, worker, (void *)(intptr_t)i);
    pthread_create(&canc, NULL, canceller, NULL);
    for (int i = 0; i < N_WORKERS; i++) pthread_join(th[i], NULL);
    pthread_join(canc, NULL);
    for (int i = 0; i < N_WORKERS; i++) fm_session_close(atomic_load(&g_cancel_target[i]));

    /* loaders in parallel: 4 tokenizer opens and 4 context opens at once */
    pthread_t op[8];
    opener_arg oa[8];
    for (int i = 0; i < 8; i++) {
        oa[i].which = i;
        pthread_create(&op[i], NULL, opener, &oa[i]);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(op[i], NULL);
        CHECK(oa[i].st == FM_OK, "parallel open %d -> %s", i, fm_status_string(oa[i].st));
    }
    fm_context_close(g_ctx);
    printf("%d workers x %d rounds, %ld feeds cancelled, %d errors\n", N_WORKERS, ROUNDS, atomic_load(&g_cancelled),
           atomic_load(&g_errors));
    return atomic_load(&g_errors) ? 1 : 0;
}
