/* tok_bench - tokenizer encode speed: MB/s and tokens/s on a text file, one thread.
   usage: tok_bench TOKENIZER(.json or dir) TEXT_FILE [repeats]
   tests/bench/tok_bench.sh runs it beside the reference (HF tokenizers through npm). */
#include <falconmamba.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 3) return fprintf(stderr, "usage: %s TOKENIZER TEXT_FILE [repeats]\n", argv[0]), 2;
    int reps = argc > 3 ? atoi(argv[3]) : 3;
    FILE *f = fopen(argv[2], "rb");
    if (!f) return fprintf(stderr, "tok_bench: cannot open %s\n", argv[2]), 1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)n);
    if (!text || fread(text, 1, (size_t)n, f) != (size_t)n) return fprintf(stderr, "tok_bench: read failed\n"), 1;
    fclose(f);
    fm_tokenizer *tok;
    double t = now_s();
    if (fm_tokenizer_open(argv[1], &tok)) return fprintf(stderr, "tok_bench: %s\n", fm_last_error()), 1;
    double load = now_s() - t;
    size_t cap = (size_t)n + 16, got = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        t = now_s();
        if (fm_tokenizer_encode(tok, text, (size_t)n, 0, ids, cap, &got))
            return fprintf(stderr, "tok_bench: %s\n", fm_last_error()), 1;
        double dt = now_s() - t;
        if (dt < best) best = dt;
    }
    printf("libfalconmamba  load %.3f s  encode %.2f MB in %.3f s: %.1f MB/s, %.0f tokens/s (%zu tokens)\n", load,
           (double)n / 1e6, best, (double)n / 1e6 / best, (double)got / best, got);
    fm_tokenizer_close(tok);
    free(ids);
    free(text);
    return 0;
}
