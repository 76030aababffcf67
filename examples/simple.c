/* simple.c - text in, text out: load a model directory (weights + tokenizer), run fm_generate once
   and print the prompt with its continuation.
   usage: simple MODEL_DIR [PROMPT] */
#include <falconmamba.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The callback receives the text piece by piece; here it is collected into a growing buffer. */
typedef struct text {
    char *p;
    size_t len, cap;
} text;

static int collect(const char *piece, size_t len, int32_t token, void *user) {
    (void)token;
    text *t = user;
    if (t->len + len + 1 > t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 256;
        while (cap < t->len + len + 1) cap *= 2;
        char *p = realloc(t->p, cap);
        if (!p) return 1; /* nonzero stops the generation */
        t->p = p;
        t->cap = cap;
    }
    memcpy(t->p + t->len, piece, len);
    t->len += len;
    t->p[t->len] = '\0';
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL_DIR [PROMPT]\n", argv[0]);
        return 2;
    }
    const char *prompt = argc > 2 ? argv[2] : "The capital of France is";

    fm_context *ctx = NULL;
    fm_session *s = NULL;
    if (fm_context_open(argv[1], NULL, &ctx) != FM_OK || fm_session_open(ctx, NULL, &s) != FM_OK) {
        fprintf(stderr, "error: %s\n", fm_last_error());
        fm_context_close(ctx);
        return 1;
    }

    fm_sampler_params sp;
    fm_sampler_params_init(&sp);
    sp.temperature = 0.7f;
    sp.top_p = 0.9f;
    sp.seed = 42; /* fixed seed: the same text on every run */

    fm_generate_params gp;
    fm_generate_params_init(&gp);
    gp.max_new_tokens = 48;
    gp.sampler = &sp;

    text out = {0};
    fm_status st = fm_generate(s, prompt, &gp, collect, &out);
    if (st != FM_OK) fprintf(stderr, "error: %s\n", fm_last_error());
    else printf("%s%s\n", prompt, out.p ? out.p : "");

    free(out.p);
    fm_session_close(s);
    fm_context_close(ctx);
    return st == FM_OK ? 0 : 1;
}
