/* stream.c - print the generated text as it is produced: fm_generate calls back with each piece
   (always whole UTF-8 characters), which goes straight to stdout. Stops at EOS, at max_new_tokens or
   at a stop string; the statistics say which and how fast.
   usage: stream MODEL_DIR [PROMPT] [MAX_NEW_TOKENS] */
#include <falconmamba.h>
#include <stdio.h>
#include <stdlib.h>

static int print_piece(const char *piece, size_t len, int32_t token, void *user) {
    (void)token;
    (void)user;
    fwrite(piece, 1, len, stdout);
    fflush(stdout); /* show each piece at once */
    return 0;       /* nonzero would stop the generation (FM_STOP_CALLBACK) */
}

static const char *reason_name(fm_stop_reason r) {
    switch (r) {
    case FM_STOP_EOS: return "end of sequence";
    case FM_STOP_MAX_TOKENS: return "max_new_tokens";
    case FM_STOP_STRING: return "stop string";
    case FM_STOP_CALLBACK: return "callback";
    case FM_STOP_CANCELLED: return "cancelled";
    default: return "none";
    }
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL_DIR [PROMPT] [MAX_NEW_TOKENS]\n", argv[0]);
        return 2;
    }
    const char *prompt = argc > 2 ? argv[2] : "Once upon a time";
    int max_new = argc > 3 ? atoi(argv[3]) : 64;

    fm_context *ctx = NULL;
    fm_session *s = NULL;
    if (fm_context_open(argv[1], NULL, &ctx) != FM_OK || fm_session_open(ctx, NULL, &s) != FM_OK) {
        fprintf(stderr, "error: %s\n", fm_last_error());
        fm_context_close(ctx);
        return 1;
    }

    fm_sampler_params sp;
    fm_sampler_params_init(&sp);
    sp.temperature = 0.8f;
    sp.seed = FM_SEED_RANDOM; /* a different story each run */

    const char *stop[] = {"\n\n"}; /* end at the first blank line */
    fm_generate_stats stats = {.struct_size = sizeof stats};
    fm_generate_params gp;
    fm_generate_params_init(&gp);
    gp.max_new_tokens = max_new;
    gp.sampler = &sp;
    gp.stop = stop;
    gp.n_stop = 1;
    gp.stats = &stats;

    printf("%s", prompt);
    fflush(stdout);
    fm_status st = fm_generate(s, prompt, &gp, print_piece, NULL);
    printf("\n");
    if (st != FM_OK) {
        fprintf(stderr, "error: %s\n", fm_last_error());
    } else {
        double tps = stats.generate_seconds > 0 ? (double)stats.n_generated_tokens / stats.generate_seconds : 0;
        fprintf(stderr, "[%llu prompt tokens in %.3f s, %llu generated at %.1f tokens/s, stopped by %s]\n",
                (unsigned long long)stats.n_prompt_tokens, stats.prompt_seconds,
                (unsigned long long)stats.n_generated_tokens, tps, reason_name(stats.stop_reason));
    }
    fm_session_close(s);
    fm_context_close(ctx);
    return st == FM_OK ? 0 : 1;
}
