/* test_soak.c - long runs on a tiny model (tests/support/tiny_model): 10,000 sessions opened, fed,
   sampled and closed, then 100,000 decode steps on one session. Memory must stay flat (resident
   set from /proc/self/statm, measured after a warm-up) and the logits and the recurrent state must
   stay finite (no NaN/Inf drift), with the token history wrapping past FM_HISTORY_MAX. About 15 s in
   a RelWithDebInfo build; labelled "soak" so that CI skips it under valgrind (far too slow there),
   and the ASan/UBSan build runs a tenth of it (FM_SOAK_DIVIDE=10) without the memory check
   (FM_SOAK_NO_RSS: ASan's quarantine keeps freed blocks resident; its leak checker covers leaks). Arguments override the counts. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "falconmamba.h"
#include "test_util.h"
#include "tiny_model.h"

#define N_SESSIONS 10000
#define N_STEPS 100000
#define RSS_SLACK_KB 1024 /* allocator noise allowed on top of the warmed-up resident set */

static long rss_kb(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, res = 0;
    if (!f) return -1;
    if (fscanf(f, "%ld %ld", &size, &res) != 2) res = -1;
    fclose(f);
    return res < 0 ? -1 : res * (sysconf(_SC_PAGESIZE) / 1024);
}

static int finite_all(const float *v, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i])) return 0;
    return 1;
}

#define DIE(...)                                                                                        \
    do {                                                                                                \
        fprintf(stderr, __VA_ARGS__);                                                                   \
        fputc('\n', stderr);                                                                            \
        return 1;                                                                                       \
    } while (0)

int main(int argc, char **argv) {
    long n_sessions = argc > 1 ? atol(argv[1]) : N_SESSIONS;
    long n_steps = argc > 2 ? atol(argv[2]) : N_STEPS;
    const char *div = getenv("FM_SOAK_DIVIDE"); /* the sanitizer build runs a fraction */
    if (div && atol(div) > 1) {
        n_sessions /= atol(div);
        n_steps /= atol(div);
    }
    fm_tm_options o;
    fm_tm_options_init(&o);
    o.vocab = 64;
    fm_tm_model *m = fm_tm_create(&o);
    char *dir = m ? fm_tm_write_tmp(m) : NULL;
    fm_tm_free(m);
    if (!dir) DIE("cannot write the tiny model");
    fm_context *ctx;
    if (fm_context_open(dir, NULL, &ctx) != FM_OK) DIE("open: %s", fm_last_error());
    const size_t V = (size_t)fm_n_vocab(ctx);
    fm_sampler_params sp;
    fm_sampler_params_init(&sp);
    sp.seed = 42;
    sp.repeat_penalty = 1.1f;

    /* 1. sessions: open, feed, sample, close */
    long base = 0, peak = 0;
    for (long i = 0; i < n_sessions; i++) {
        fm_session *s;
        if (fm_session_open(ctx, NULL, &s) != FM_OK) DIE("session %ld: %s", i, fm_last_error());
        int32_t toks[3] = {(int32_t)(i % (long)V), 1, 2};
        if (fm_session_feed(s, toks, 3, NULL) != FM_OK) DIE("feed %ld: %s", i, fm_last_error());
        int32_t t;
        if (fm_session_sample(s, &sp, &t) != FM_OK) DIE("sample %ld: %s", i, fm_last_error());
        if (!finite_all(fm_session_logits(s), V)) DIE("session %ld: non-finite logits", i);
        fm_session_close(s);
        long r = rss_kb();
        if (i == n_sessions / 10) base = r;
        if (i > n_sessions / 10 && r > peak) peak = r;
    }
    printf("%ld sessions: resident %ld kB after 10%%, peak %ld kB after\n", n_sessions, base, peak);
    /* ASan keeps freed blocks resident in its quarantine: the sanitizer build sets FM_SOAK_NO_RSS */
    int check_rss = getenv("FM_SOAK_NO_RSS") == NULL;
    if (check_rss && peak > base + RSS_SLACK_KB)
        DIE("resident set grew by %ld kB over %ld sessions", peak - base, n_sessions);

    /* 2. one long decode */
    fm_session *s;
    if (fm_session_open(ctx, NULL, &s) != FM_OK) DIE("open: %s", fm_last_error());
    int32_t tok = 1;
    base = peak = 0;
    size_t blob_n = 0;
    for (long i = 0; i < n_steps; i++) {
        if (fm_session_feed(s, &tok, 1, NULL) != FM_OK) DIE("step %ld: %s", i, fm_last_error());
        const float *lg = fm_session_logits(s);
        if (!finite_all(lg, V)) DIE("step %ld: non-finite logits", i);
        if (fm_session_sample(s, &sp, &tok) != FM_OK) DIE("sample %ld: %s", i, fm_last_error());
        if (i % 10000 == 9999) { /* the state itself (conv + ssm), through the saved form */
            size_t n = fm_session_state_size(s);
            unsigned char *b = malloc(n);
            if (!b || fm_session_state_save(s, b, n, &n) != FM_OK) DIE("save: %s", fm_last_error());
            size_t n_floats = (n - 120) / sizeof(float);
            float *f = malloc(n_floats * sizeof(float));
            memcpy(f, b + 120, n_floats * sizeof(float));
            /* the payload ends with the history ids; only the state + logits part are floats */
            fm_model_info info = {.struct_size = sizeof info};
            fm_context_info(ctx, &info);
            size_t state_floats = (size_t)(info.state_bytes / sizeof(float));
            if (!finite_all(f, state_floats)) DIE("step %ld: non-finite recurrent state", i);
            free(f);
            free(b);
            blob_n = n;
        }
        long r = (i % 1000 == 0) ? rss_kb() : 0;
        if (i == n_steps / 10) base = r ? r : rss_kb();
        if (i > n_steps / 10 && r > peak) peak = r;
    }
    printf("%ld decode steps: %llu tokens, state blob %zu bytes, resident %ld kB after 10%%, peak %ld kB after\n",
           n_steps, (unsigned long long)fm_session_n_tokens(s), blob_n, base, peak);
    if (fm_session_n_tokens(s) != (uint64_t)n_steps) DIE("token count %llu", (unsigned long long)fm_session_n_tokens(s));
    if (check_rss && peak > base + RSS_SLACK_KB) DIE("resident set grew by %ld kB over %ld steps", peak - base, n_steps);
    fm_session_close(s);
    fm_context_close(ctx);
    fm_test_rmtree(dir);
    free(dir);
    return 0;
}
