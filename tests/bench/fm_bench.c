/* fm_bench - prefill and decode speed with the fraction of the memory-bandwidth limit, measured
 * in the same run.
 *
 *   fm_bench [-m DIR | --shape 130m|1.4b|7b] [--dtype F32|BF16|F16] [-p N] [-n N] [--threads N]
 *
 * With --shape a random-weight checkpoint of that shape is written to a temp dir first. The
 * bandwidth probe streams a buffer four times larger than the last-level caches could hold and
 * reports read GB/s; decode at batch 1 reads every weight once per token, so its ceiling is
 * bandwidth / weight bytes.
 */
#include <falconmamba.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "test_util.h"
#include "tiny_model.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Read bandwidth: sum a 1 GiB float buffer (one thread, the way the reference decode reads). */
static double probe_read_gbs(void) {
    size_t n = (size_t)1 << 28;
    float *buf = malloc(n * sizeof *buf);
    if (!buf) return 0;
    for (size_t i = 0; i < n; i++) buf[i] = (float)(i & 7);
    double best = 0;
    volatile float sink = 0;
    for (int rep = 0; rep < 3; rep++) {
        double t = now_s();
        float acc[16] = {0};
        for (size_t i = 0; i < n; i += 16)
            for (int k = 0; k < 16; k++) acc[k] += buf[i + k];
        double dt = now_s() - t;
        for (int k = 0; k < 16; k++) sink += acc[k];
        double gbs = (double)n * sizeof *buf / dt / 1e9;
        if (gbs > best) best = gbs;
    }
    (void)sink;
    free(buf);
    return best;
}

static int shape(const char *name, fm_tm_options *o) {
    if (!strcmp(name, "130m")) o->d_model = 768, o->n_layer = 24, o->vocab = 50280;
    else if (!strcmp(name, "1.4b")) o->d_model = 2048, o->n_layer = 48, o->vocab = 50280;
    else if (!strcmp(name, "7b")) o->d_model = 4096, o->n_layer = 64, o->vocab = 65024;
    else return -1;
    o->d_inner = 2 * o->d_model;
    o->d_state = 16;
    o->dt_rank = (o->d_model + 15) / 16;
    o->tied = 0;
    return 0;
}

int main(int argc, char **argv) {
    const char *model = NULL, *shape_name = NULL, *dtype = "BF16";
    int n_prompt = 128, n_gen = 16, threads = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "-m")) model = argv[i + 1];
        else if (!strcmp(argv[i], "--shape")) shape_name = argv[i + 1];
        else if (!strcmp(argv[i], "--dtype")) dtype = argv[i + 1];
        else if (!strcmp(argv[i], "-p")) n_prompt = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-n")) n_gen = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else return fprintf(stderr, "fm_bench: unknown option %s\n", argv[i]), 2;
    }
    char *tmp = NULL;
    if (!model) {
        fm_tm_options o;
        fm_tm_options_init(&o);
        if (shape(shape_name ? shape_name : "130m", &o)) return fprintf(stderr, "fm_bench: unknown shape\n"), 2;
        o.dtype = dtype;
        fm_tm_model *m = fm_tm_create(&o);
        tmp = m ? fm_tm_write_tmp(m) : NULL;
        fm_tm_free(m);
        if (!tmp) return fprintf(stderr, "fm_bench: cannot write the model\n"), 1;
        model = tmp;
    }
    fm_context_params cp;
    fm_context_params_init(&cp);
    cp.n_threads = threads;
    fm_context *ctx;
    fm_session *s;
    double t = now_s();
    if (fm_context_open(model, &cp, &ctx) || fm_session_open(ctx, NULL, &s))
        return fprintf(stderr, "fm_bench: %s\n", fm_last_error()), 1;
    double load_s = now_s() - t;
    fm_model_info mi;
    memset(&mi, 0, sizeof mi);
    mi.struct_size = sizeof mi;
    fm_context_info(ctx, &mi);
    int32_t V = fm_n_vocab(ctx);
    int32_t *prompt = malloc((size_t)n_prompt * sizeof *prompt);
    for (int i = 0; i < n_prompt; i++) prompt[i] = (int32_t)((i * 7919) % V);

    t = now_s();
    if (fm_session_feed(s, prompt, (size_t)n_prompt, NULL)) return fprintf(stderr, "fm_bench: %s\n", fm_last_error()), 1;
    double pp = n_prompt / (now_s() - t);
    int32_t tok = 1;
    t = now_s();
    for (int i = 0; i < n_gen; i++)
        if (fm_session_feed(s, &tok, 1, NULL)) return fprintf(stderr, "fm_bench: %s\n", fm_last_error()), 1;
    double tg = n_gen / (now_s() - t);
    double gbs = probe_read_gbs();
    double limit = gbs * 1e9 / (double)mi.weight_bytes;
    printf("model %s: %d layers, d_model %d, %.2f B params, %.2f GB of weights, loaded in %.1f s\n",
           shape_name ? shape_name : model, mi.n_layer, mi.d_model, (double)mi.n_params / 1e9,
           (double)mi.weight_bytes / 1e9, load_s);
    printf("prefill  pp%-5d %8.2f tokens/s\n", n_prompt, pp);
    printf("decode   tg%-5d %8.2f tokens/s   read bandwidth %.1f GB/s -> limit %.2f tokens/s -> %.1f%% of limit\n",
           n_gen, tg, gbs, limit, 100.0 * tg / limit);
    free(prompt);
    fm_session_close(s);
    fm_context_close(ctx);
    if (tmp) {
        fm_test_rmtree(tmp);
        free(tmp);
    }
    return 0;
}
