/* make_bench_model - writes a random-weight FalconMamba checkpoint of a real model's shape, in the
 * Hugging Face layout (config.json with model_type falcon_mamba + model.safetensors), for
 * benchmarking: the real weights cannot be downloaded here, and speed does not depend on their values.
 *
 *   make_bench_model --shape 130m|1.4b|7b [--dtype bf16|f16|f32] [--seed N] [--layers N] [--tied] OUTDIR
 *
 * Shapes (the same as fm_bench --shape): d_inner = 2 d_model, d_state 16, d_conv 4,
 * dt_rank = ceil(d_model / 16), untied lm_head, no in/out projection bias, conv bias,
 * mixer_rms_eps 1e-6, layer_norm_epsilon 1e-5:
 *   130m  d_model  768, 24 layers, vocab 50280 (mamba-130m's shape)
 *   1.4b  d_model 2048, 48 layers, vocab 50280 (mamba-1.4b's shape)
 *   7b    d_model 4096, 64 layers, vocab 65024 (tiiuae/falcon-mamba-7b's shape; ~14.5 GB in bf16)
 * --layers overrides the layer count (quick tests); --tied ties lm_head to the embeddings.
 * The weights are tests/support/tiny_model's deterministic values, scaled like a real initialisation
 * so the logits are finite; they are generated and written tensor by tensor in pieces, so the 7b
 * shape needs little memory. OUTDIR is created if missing; the checkpoint is written into
 * OUTDIR/.partial first and moved into place when complete. No tokenizer is written.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tiny_model.h"

static int shape(const char *name, fm_tm_options *o) {
    if (!strcmp(name, "130m")) o->d_model = 768, o->n_layer = 24, o->vocab = 50280;
    else if (!strcmp(name, "1.4b")) o->d_model = 2048, o->n_layer = 48, o->vocab = 50280;
    else if (!strcmp(name, "7b")) o->d_model = 4096, o->n_layer = 64, o->vocab = 65024;
    else return -1;
    o->d_inner = 2 * o->d_model;
    o->d_state = 16;
    o->d_conv = 4;
    o->dt_rank = (o->d_model + 15) / 16;
    o->tied = 0;
    o->use_bias = 0;
    o->use_conv_bias = 1;
    o->model_type = "falcon_mamba";
    return 0;
}

static int usage(void) {
    fprintf(stderr, "usage: make_bench_model --shape 130m|1.4b|7b [--dtype bf16|f16|f32] [--seed N] [--layers N] "
                    "[--tied] OUTDIR\n");
    return 2;
}

static int mkdir_p(const char *dir) {
    if (mkdir(dir, 0755) == 0 || errno == EEXIST) return 0;
    return -1;
}

int main(int argc, char **argv) {
    const char *shape_name = NULL, *dtype = "BF16", *out = NULL;
    long seed = 1, layers = 0;
    int tied = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--tied")) {
            tied = 1;
        } else if (!strcmp(a, "--shape") || !strcmp(a, "--dtype") || !strcmp(a, "--seed") || !strcmp(a, "--layers")) {
            if (i + 1 >= argc) return usage();
            const char *v = argv[++i];
            if (!strcmp(a, "--shape")) shape_name = v;
            else if (!strcmp(a, "--seed")) seed = strtol(v, NULL, 10);
            else if (!strcmp(a, "--layers")) layers = strtol(v, NULL, 10);
            else if (!strcmp(v, "bf16") || !strcmp(v, "BF16")) dtype = "BF16";
            else if (!strcmp(v, "f16") || !strcmp(v, "F16")) dtype = "F16";
            else if (!strcmp(v, "f32") || !strcmp(v, "F32")) dtype = "F32";
            else return fprintf(stderr, "make_bench_model: unknown dtype %s\n", v), 2;
        } else if (a[0] == '-' || out) {
            return usage();
        } else {
            out = a;
        }
    }
    if (!shape_name || !out) return usage();
    fm_tm_options o;
    fm_tm_options_init(&o);
    if (shape(shape_name, &o)) return fprintf(stderr, "make_bench_model: unknown shape %s\n", shape_name), 2;
    if (layers < 0 || layers > 1000) return fprintf(stderr, "make_bench_model: bad --layers\n"), 2;
    if (layers) o.n_layer = (int32_t)layers;
    o.tied = tied;
    o.dtype = dtype;
    o.seed = (uint32_t)seed;

    char part[4096], from[4200], to[4200];
    snprintf(part, sizeof part, "%s/.partial", out);
    if (mkdir_p(out) || mkdir_p(part)) return fprintf(stderr, "make_bench_model: cannot create %s\n", part), 1;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (fm_tm_write_streamed(&o, part)) return fprintf(stderr, "make_bench_model: writing %s failed\n", part), 1;
    const char *files[] = {"model.safetensors", "config.json"}; /* config last: a dir with one is complete */
    for (int i = 0; i < 2; i++) {
        snprintf(from, sizeof from, "%s/%s", part, files[i]);
        snprintf(to, sizeof to, "%s/%s", out, files[i]);
        if (rename(from, to)) return fprintf(stderr, "make_bench_model: cannot move %s to %s\n", from, to), 1;
    }
    rmdir(part);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    struct stat st;
    double gb = 0;
    snprintf(to, sizeof to, "%s/model.safetensors", out);
    if (stat(to, &st) == 0) gb = (double)st.st_size / 1e9;
    printf("%s: falcon_mamba %s (d_model %d, %d layers, d_inner %d, d_state %d, dt_rank %d, vocab %d, %s), %s, "
           "%.2f GB in %.1f s\n",
           out, shape_name, o.d_model, o.n_layer, o.d_inner, o.d_state, o.dt_rank, o.vocab, o.tied ? "tied" : "untied",
           dtype, gb, (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
    return 0;
}
