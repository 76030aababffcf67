/* cuda_bench.cu - the CUDA backend's speed through the public API, beside a read-bandwidth probe run
 * in the same process (so every decode figure comes with its fraction of the limit).
 *
 *   cuda_bench MODEL_DIR [--weights bf16,q8_0,q4_0] [--batches 1,8,64] [--steps 32]
 *              [--prefill 1x512,1x2048,8x512] [--check-cpu]
 *
 * Decode: B sessions (4-token prompts) advanced with fm_decode_batch; the first 3 steps (eager,
 * graph capture, first replay) are not timed. Limit at batch B = bandwidth / (weight bytes read per
 * step + B x 2 x state bytes), the weight bytes being all matrices except an untied embedding (only B
 * rows of it are read). Prefill PxL: P sessions each fed L random tokens in one chunk
 * (prefill_chunk = L), one after the other (the API prefills one session per call); FLOP/s counts
 * 2 x parameters per token. --check-cpu: a few tokens of the bf16 model on CUDA and on CPU compared.
 * Peak device memory is the device's used memory (cudaMemGetInfo) at its highest sampled point.
 * FM_BENCH_PROFILE=1: each decode run adds one step between cudaProfilerStart/Stop, for
 * `ncu --profile-from-start off` (per-kernel times of a step, graph nodes included).
 */
#include <cuda_profiler_api.h>
#include <cuda_runtime.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bandwidth_probe.cuh"
#include "falconmamba.h"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

#define CK(call)                                                                                                      \
    do {                                                                                                              \
        fm_status st_ = (call);                                                                                       \
        if (st_ != FM_OK) {                                                                                           \
            fprintf(stderr, "%s: %s: %s\n", #call, fm_status_string(st_), fm_last_error());                           \
            exit(1);                                                                                                  \
        }                                                                                                             \
    } while (0)

/* The read-bandwidth probe (bandwidth_probe.cuh), on device 0. */
static double probe_bandwidth(void) {
    int sms = 0;
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
    double gbs = fm_probe_read_gbs(sms);
    if (gbs <= 0) {
        fprintf(stderr, "bandwidth probe: cudaMalloc failed\n");
        exit(1);
    }
    return gbs;
}

static size_t g_min_free = (size_t)-1, g_total;
static void sample_mem(void) {
    size_t fr, tot;
    if (cudaMemGetInfo(&fr, &tot) == cudaSuccess) {
        if (fr < g_min_free) g_min_free = fr;
        g_total = tot;
    }
}

static uint32_t g_rng = 12345;
static int32_t rnd_tok(int32_t V) {
    g_rng = g_rng * 1664525u + 1013904223u;
    return (int32_t)((g_rng >> 8) % (uint32_t)V);
}

static fm_weight_type parse_wt(const char *s) {
    if (!strcmp(s, "bf16")) return FM_WEIGHTS_BF16;
    if (!strcmp(s, "f16")) return FM_WEIGHTS_F16;
    if (!strcmp(s, "f32")) return FM_WEIGHTS_F32;
    if (!strcmp(s, "q8_0")) return FM_WEIGHTS_Q8_0;
    if (!strcmp(s, "q4_0")) return FM_WEIGHTS_Q4_0;
    fprintf(stderr, "unknown weight type %s\n", s);
    exit(2);
}

static fm_context *open_ctx(const char *dir, fm_backend_kind k, fm_weight_type wt, double *secs) {
    fm_context_params p;
    fm_context_params_init(&p);
    p.backend = k;
    p.weight_type = wt;
    fm_context *ctx = NULL;
    double t0 = now_s();
    CK(fm_context_open(dir, &p, &ctx));
    if (secs) *secs = now_s() - t0;
    return ctx;
}

static void bench_decode(fm_context *ctx, const fm_model_info *mi, int B, int steps, double bw, double read_bytes,
                         const char *wname) {
    fm_session **ss = (fm_session **)calloc((size_t)B, sizeof *ss);
    int32_t *tok = (int32_t *)calloc((size_t)B, sizeof *tok);
    for (int i = 0; i < B; i++) {
        CK(fm_session_open(ctx, NULL, &ss[i]));
        int32_t prompt[4];
        for (int j = 0; j < 4; j++) prompt[j] = rnd_tok(mi->n_vocab);
        CK(fm_session_feed(ss[i], prompt, 4, NULL));
    }
    for (int w = 0; w < 3; w++) {
        for (int i = 0; i < B; i++) tok[i] = rnd_tok(mi->n_vocab);
        CK(fm_decode_batch(ss, tok, (size_t)B));
    }
    sample_mem();
    double t0 = now_s();
    for (int s = 0; s < steps; s++) {
        for (int i = 0; i < B; i++) tok[i] = rnd_tok(mi->n_vocab);
        CK(fm_decode_batch(ss, tok, (size_t)B));
    }
    double dt = now_s() - t0;
    if (getenv("FM_BENCH_PROFILE")) { /* one more step for a profiler started with --profile-from-start off */
        for (int i = 0; i < B; i++) tok[i] = rnd_tok(mi->n_vocab);
        cudaProfilerStart();
        CK(fm_decode_batch(ss, tok, (size_t)B));
        cudaProfilerStop();
    }
    double step_s = dt / steps;
    double bytes = read_bytes + (double)B * 2.0 * (double)mi->state_bytes;
    double limit_steps = bw * 1e9 / bytes;
    printf("| decode | %s | batch %d | %.1f tok/s | %.3f ms/step | limit %.1f tok/s | %.1f%% | %.0f GB/s effective |\n",
           wname, B, B / step_s, step_s * 1e3, limit_steps * B, 100.0 * (1.0 / step_s) / limit_steps,
           bytes / step_s / 1e9);
    fflush(stdout);
    for (int i = 0; i < B; i++) fm_session_close(ss[i]);
    free(ss);
    free(tok);
}

static void bench_prefill(fm_context *ctx, const fm_model_info *mi, int P, int L, const char *wname) {
    fm_session_params sp;
    fm_session_params_init(&sp);
    sp.prefill_chunk = (uint32_t)L;
    fm_session **ss = (fm_session **)calloc((size_t)P, sizeof *ss);
    int32_t *toks = (int32_t *)malloc((size_t)L * sizeof *toks);
    for (int i = 0; i < L; i++) toks[i] = rnd_tok(mi->n_vocab);
    for (int i = 0; i < P; i++) CK(fm_session_open(ctx, &sp, &ss[i]));
    CK(fm_session_feed(ss[0], toks, (size_t)L, NULL)); /* warm-up: workspace, scratch, cuBLAS heuristics */
    CK(fm_session_reset(ss[0]));
    sample_mem();
    double t0 = now_s();
    for (int i = 0; i < P; i++) CK(fm_session_feed(ss[i], toks, (size_t)L, NULL));
    double dt = now_s() - t0;
    double tps = (double)P * L / dt;
    printf("| prefill | %s | %d x %d | %.0f tok/s | %.1f ms | %.0f TFLOP/s (2 x params per token) |\n", wname, P, L,
           tps, dt * 1e3, 2.0 * (double)mi->n_params * tps / 1e12);
    fflush(stdout);
    for (int i = 0; i < P; i++) fm_session_close(ss[i]);
    free(ss);
    free(toks);
}

static void check_cpu(const char *dir) {
    fm_context *g = open_ctx(dir, FM_BACKEND_CUDA, FM_WEIGHTS_BF16, NULL);
    fm_context *c = open_ctx(dir, FM_BACKEND_CPU, FM_WEIGHTS_BF16, NULL);
    const size_t V = (size_t)fm_n_vocab(g);
    const int n = 6;
    int32_t toks[n];
    for (int i = 0; i < n; i++) toks[i] = rnd_tok((int32_t)V);
    float *lg = (float *)malloc(n * V * sizeof(float)), *lc = (float *)malloc(n * V * sizeof(float));
    fm_session *sg, *sc;
    CK(fm_session_open(g, NULL, &sg));
    CK(fm_session_open(c, NULL, &sc));
    CK(fm_session_feed(sg, toks, 4, lg));
    CK(fm_session_feed(sc, toks, 4, lc));
    for (int t = 4; t < n; t++) {
        CK(fm_session_feed(sg, &toks[t], 1, lg + t * V));
        CK(fm_session_feed(sc, &toks[t], 1, lc + t * V));
    }
    for (int t = 0; t < n; t++) {
        double err = 0, mx = 0;
        for (size_t i = 0; i < V; i++) {
            double e = fabs((double)lg[t * V + i] - lc[t * V + i]);
            if (e > err) err = e;
            if (fabs(lc[t * V + i]) > mx) mx = fabs(lc[t * V + i]);
        }
        printf("7B-shaped CUDA vs CPU, bf16, %s token %d: max |err| %.4g, max |logit| %.4g, relative %.3g\n",
               t < 4 ? "prefill" : "decode", t, err, mx, err / (mx > 0 ? mx : 1));
    }
    free(lg);
    free(lc);
    fm_session_close(sg);
    fm_session_close(sc);
    fm_context_close(g);
    fm_context_close(c);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL_DIR [--weights bf16,q8_0,q4_0] [--batches 1,8,64] [--steps N] "
                        "[--prefill 1x512,1x2048,8x512] [--check-cpu]\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    char weights[128] = "bf16,q8_0,q4_0", batches[128] = "1,8,64", prefill[128] = "1x512,1x2048,8x512";
    int steps = 32, cpu = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--weights") && i + 1 < argc) snprintf(weights, sizeof weights, "%s", argv[++i]);
        else if (!strcmp(argv[i], "--batches") && i + 1 < argc) snprintf(batches, sizeof batches, "%s", argv[++i]);
        else if (!strcmp(argv[i], "--prefill") && i + 1 < argc) snprintf(prefill, sizeof prefill, "%s", argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--check-cpu")) cpu = 1;
        else {
            fprintf(stderr, "unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    struct cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) {
        fprintf(stderr, "no CUDA device\n");
        return 77;
    }
    sample_mem();
    const size_t base_used = g_total - g_min_free;
    double bw = probe_bandwidth();
    printf("device: %s, %d SMs; read bandwidth (bf16 sum over 4 GiB, best of 10): %.0f GB/s\n", prop.name,
           prop.multiProcessorCount, bw);
    fflush(stdout);

    char wl[128];
    snprintf(wl, sizeof wl, "%s", weights);
    for (char *w = strtok(wl, ","); w; w = strtok(NULL, ",")) {
        g_min_free = (size_t)-1;
        double load_s = 0;
        fm_context *ctx = open_ctx(dir, FM_BACKEND_CUDA, parse_wt(w), &load_s);
        fm_model_info mi;
        memset(&mi, 0, sizeof mi);
        mi.struct_size = sizeof mi;
        CK(fm_context_info(ctx, &mi));
        sample_mem();
        /* bytes read per decode step: every weight but an untied embedding (stored as in the checkpoint) */
        double embed = mi.tied_embeddings ? 0.0 : (double)mi.n_vocab * mi.d_model * 2.0;
        double read_bytes = (double)mi.weight_bytes - embed;
        printf("%s: %d layers, d_model %d, %.2f GB of weights (%.2f GB read per step), state %.1f MB per session, "
               "load %.2f s (%.2f GB/s)\n",
               w, mi.n_layer, mi.d_model, mi.weight_bytes / 1e9, read_bytes / 1e9, mi.state_bytes / 1e6, load_s,
               mi.weight_bytes / 1e9 / load_s);
        printf("| kind | weights | shape | speed | time | limit | fraction | |\n|---|---|---|---|---|---|---|---|\n");
        fflush(stdout);
        char bl[128];
        snprintf(bl, sizeof bl, "%s", batches);
        char *save1 = NULL;
        for (char *b = strtok_r(bl, ",", &save1); b; b = strtok_r(NULL, ",", &save1))
            bench_decode(ctx, &mi, atoi(b), steps, bw, read_bytes, w);
        char pl[128];
        snprintf(pl, sizeof pl, "%s", prefill);
        char *save2 = NULL;
        for (char *p = strtok_r(pl, ",", &save2); p; p = strtok_r(NULL, ",", &save2)) {
            int P = 0, L = 0;
            if (sscanf(p, "%dx%d", &P, &L) == 2) bench_prefill(ctx, &mi, P, L, w);
        }
        sample_mem();
        printf("%s: peak device memory in use %.2f GB (device total %.1f GB; %.2f GB in use before the model)\n\n", w,
               (double)(g_total - g_min_free) / 1e9, g_total / 1e9, base_used / 1e9);
        fflush(stdout);
        fm_context_close(ctx);
    }
    if (cpu) check_cpu(dir);
    return 0;
}
