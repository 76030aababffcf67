/* greedy_ids.c - the smallest useful program on the public API: load a checkpoint, feed a prompt of
   token ids, and print a greedy continuation with its speed. (Text in and out needs the tokenizer,
   which comes with its own API.)
   usage: greedy_ids MODEL_DIR [TOKEN...] */
#include <falconmamba.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL_DIR [TOKEN...]\n", argv[0]);
        return 2;
    }
    fm_context *ctx = NULL;
    fm_session *s = NULL;
    if (fm_context_open(argv[1], NULL, &ctx) != FM_OK || fm_session_open(ctx, NULL, &s) != FM_OK) {
        fprintf(stderr, "error: %s\n", fm_last_error());
        fm_context_close(ctx);
        return 1;
    }
    int32_t prompt[64];
    size_t n = 0;
    for (int i = 2; i < argc && n < 64; i++) prompt[n++] = (int32_t)strtol(argv[i], NULL, 10);
    if (n == 0) prompt[n++] = fm_token_bos(ctx) >= 0 ? fm_token_bos(ctx) : 0;

    const int n_new = 32;
    double t0 = now();
    fm_status st = fm_session_feed(s, prompt, n, NULL);
    printf("prompt:");
    for (size_t i = 0; i < n; i++) printf(" %d", prompt[i]);
    printf("\ncontinuation:");
    for (int k = 0; st == FM_OK && k < n_new; k++) {
        const float *lg = fm_session_logits(s);
        int32_t best = 0;
        for (int32_t v = 1; v < fm_n_vocab(ctx); v++)
            if (lg[v] > lg[best]) best = v;
        printf(" %d", best);
        st = fm_session_feed(s, &best, 1, NULL);
    }
    double dt = now() - t0;
    printf("\n");
    if (st != FM_OK) fprintf(stderr, "error: %s\n", fm_last_error());
    else fprintf(stderr, "%zu prompt + %d generated tokens in %.3f s (%.1f tokens/s)\n", n, n_new, dt, (n + n_new) / dt);
    fm_session_close(s);
    fm_context_close(ctx);
    return st == FM_OK ? 0 : 1;
}
