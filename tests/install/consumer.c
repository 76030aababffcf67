/* consumer.c - a program outside the library's build that uses only the installed package: open a
   checkpoint, feed a prompt, print the greedy next token and the logits checksum. */
#include <falconmamba.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL_DIR\n", argv[0]);
        return 2;
    }
    fm_context *ctx = NULL;
    if (fm_context_open(argv[1], NULL, &ctx) != FM_OK) {
        fprintf(stderr, "open: %s\n", fm_last_error());
        return 1;
    }
    fm_session *s = NULL;
    int32_t prompt[3] = {1, 5, 9};
    if (fm_session_open(ctx, NULL, &s) != FM_OK || fm_session_feed(s, prompt, 3, NULL) != FM_OK) {
        fprintf(stderr, "feed: %s\n", fm_last_error());
        return 1;
    }
    const float *lg = fm_session_logits(s);
    int32_t best = 0;
    for (int32_t i = 1; i < fm_n_vocab(ctx); i++)
        if (lg[i] > lg[best]) best = i;
    printf("libfalconmamba %s next=%d logit=%.4f\n", fm_version(), best, lg[best]);
    fm_session_close(s);
    fm_context_close(ctx);
    return 0;
}
