/* bench.c - `falconmamba bench`: prefill and decode speed, like llama-bench, with the machine's read
 * bandwidth measured in the same run so decode is reported as a fraction of its limit.
 *
 *   falconmamba bench -m DIR [--backend cpu|cuda] [--threads N] [--weights W] [-p 512] [-n 128]
 *                     [-b 1,8] [-r 3] [--json]
 *
 * pp: one session fed P random tokens in one call. tg: after a 16-token prompt, N single-token steps
 * (batch 1: fm_session_feed; batch B > 1: fm_decode_batch over B sessions, reported as total tokens/s).
 * Each figure is the median of R repetitions. The decode limit is bandwidth / bytes read per step,
 * where a step reads every weight once except the embedding of an untied model (one row of it).
 * The bandwidth probe runs after the measurements; "peak RSS" is the high-water mark before it.
 */
#include "bench.h"

#include <falconmamba.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_BATCHES 16

typedef struct bench_opts {
    const char *model;
    fm_context_params cp;
    const char *weights_name;
    int n_prompt, n_gen, reps, json, probe_mib;
    int batches[MAX_BATCHES], n_batches;
} bench_opts;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* ---- read-bandwidth probe: T threads each summing its part of a buffer far larger than the caches */

typedef struct probe_part {
    const uint64_t *p;
    size_t n;
    uint64_t sum;
} probe_part;

/* 16-byte vectors (GCC/Clang vector extension; SSE2 on any x86-64) so the loop is load-bound. */
typedef uint64_t u64x2 __attribute__((vector_size(16)));

static void *probe_thread(void *v) {
    probe_part *pp = v;
    const u64x2 *p = (const u64x2 *)pp->p;
    u64x2 a0 = {0, 0}, a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i + 8 <= pp->n; i += 8, p += 4) {
        a0 += p[0];
        a1 += p[1];
        a2 += p[2];
        a3 += p[3];
    }
    u64x2 s = a0 + a1 + a2 + a3;
    pp->sum = s[0] + s[1];
    return NULL;
}

/* GB/s (1e9 bytes), best of 3 passes over `bytes`; 0 on failure. */
static double probe_bandwidth(int threads, size_t bytes) {
    size_t n = bytes / sizeof(uint64_t);
    uint64_t *buf = malloc(n * sizeof *buf);
    if (!buf) return 0.0;
    for (size_t i = 0; i < n; i++) buf[i] = i;
    if (threads < 1) threads = 1;
    if (threads > 256) threads = 256;
    pthread_t th[256];
    probe_part parts[256];
    double best = 0.0;
    for (int rep = 0; rep < 3; rep++) {
        size_t per = n / (size_t)threads / 8 * 8;
        double t0 = now_s();
        for (int t = 0; t < threads; t++) {
            parts[t] = (probe_part){buf + (size_t)t * per, per, 0};
            if (t > 0 && pthread_create(&th[t], NULL, probe_thread, &parts[t]) != 0) parts[t].n = 0;
        }
        probe_thread(&parts[0]);
        for (int t = 1; t < threads; t++)
            if (parts[t].n) pthread_join(th[t], NULL);
        double dt = now_s() - t0;
        uint64_t sink = 0;
        for (int t = 0; t < threads; t++) sink += parts[t].sum;
        if (sink == 42) fprintf(stderr, " "); /* keep the sums alive */
        double gbs = (double)(per * (size_t)threads * sizeof(uint64_t)) / dt / 1e9;
        if (gbs > best) best = gbs;
    }
    free(buf);
    return best;
}

/* VmHWM of /proc/self/status in bytes; 0 where there is none. */
static double peak_rss_bytes(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) kb = atof(line + 6);
    if (f) fclose(f);
    return kb * 1024.0;
}

/* ---- measurements --------------------------------------------------------------------------------- */

static uint32_t g_rng = 12345;
static int32_t random_token(int32_t n_vocab) {
    g_rng = g_rng * 1664525u + 1013904223u;
    return (int32_t)((g_rng >> 8) % (uint32_t)n_vocab);
}

static int report_error(const char *what) {
    fprintf(stderr, "falconmamba bench: %s: %s\n", what, fm_last_error());
    return -1;
}

/* Prefill of n tokens into a fresh session: tokens/s, or < 0 on error. */
static double run_pp(fm_context *ctx, int n) {
    int32_t nv = fm_n_vocab(ctx);
    int32_t *ids = malloc((size_t)n * sizeof *ids);
    fm_session *s = NULL;
    if (!ids) return -1;
    for (int i = 0; i < n; i++) ids[i] = random_token(nv);
    double r = -1;
    if (fm_session_open(ctx, NULL, &s) == FM_OK) {
        double t0 = now_s();
        if (fm_session_feed(s, ids, (size_t)n, NULL) == FM_OK) r = (double)n / (now_s() - t0);
        else report_error("fm_session_feed");
    } else {
        report_error("fm_session_open");
    }
    fm_session_close(s);
    free(ids);
    return r;
}

/* n decode steps over b sessions (after a 16-token prompt each): total tokens/s, or < 0. */
static double run_tg(fm_context *ctx, int b, int n) {
    int32_t nv = fm_n_vocab(ctx);
    fm_session **ss = calloc((size_t)b, sizeof *ss);
    int32_t *tok = malloc((size_t)b * sizeof *tok);
    double r = -1;
    int ok = ss && tok;
    for (int i = 0; ok && i < b; i++) {
        int32_t prompt[16];
        for (int k = 0; k < 16; k++) prompt[k] = random_token(nv);
        ok = fm_session_open(ctx, NULL, &ss[i]) == FM_OK && fm_session_feed(ss[i], prompt, 16, NULL) == FM_OK;
    }
    if (ok) {
        double t0 = now_s();
        for (int step = 0; ok && step < n; step++) {
            for (int i = 0; i < b; i++) tok[i] = random_token(nv);
            ok = (b == 1 ? fm_session_feed(ss[0], tok, 1, NULL) : fm_decode_batch(ss, tok, (size_t)b)) == FM_OK;
        }
        if (ok) r = (double)b * (double)n / (now_s() - t0);
    }
    if (!ok) report_error("decode");
    for (int i = 0; ss && i < b; i++) fm_session_close(ss[i]);
    free(ss);
    free(tok);
    return r;
}

/* ---- options ---------------------------------------------------------------------------------------- */

static void bench_usage(void) {
    printf("usage: falconmamba bench -m DIR [options]\n\n"
           "  -m, --model DIR     checkpoint directory\n"
           "      --backend B     cpu | cuda | auto (default auto)\n"
           "      --threads N     CPU threads (default: all cores)\n"
           "      --weights W     f32 | bf16 | f16 | q8_0 | q4_0 (default: as stored)\n"
           "  -p N                prompt tokens for the prefill test (default 512; 0 = skip)\n"
           "  -n N                decode steps for the decode tests (default 128; 0 = skip)\n"
           "  -b LIST             decode batch sizes, comma-separated (default 1)\n"
           "  -r N                repetitions; the median is reported (default 3)\n"
           "      --probe-mib N   bandwidth probe buffer in MiB (default 2048; 0 = no probe)\n"
           "      --json          also print one JSON object with every figure\n");
}

static int parse_int(const char *s, int lo, int *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > 1000000) return 0;
    *out = (int)v;
    return 1;
}

static int parse_opts(int argc, char **argv, bench_opts *o) {
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return 2;
        if (!strcmp(a, "--json")) {
            o->json = 1;
            continue;
        }
        if (!v) return fprintf(stderr, "falconmamba bench: option %s needs a value\n", a), 1;
        i++;
        int ok = 1;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) o->model = v;
        else if (!strcmp(a, "--threads")) ok = parse_int(v, 0, &o->cp.n_threads);
        else if (!strcmp(a, "-p")) ok = parse_int(v, 0, &o->n_prompt);
        else if (!strcmp(a, "-n")) ok = parse_int(v, 0, &o->n_gen);
        else if (!strcmp(a, "-r")) ok = parse_int(v, 1, &o->reps);
        else if (!strcmp(a, "--probe-mib")) ok = parse_int(v, 0, &o->probe_mib);
        else if (!strcmp(a, "--backend")) {
            if (!strcmp(v, "cpu")) o->cp.backend = FM_BACKEND_CPU;
            else if (!strcmp(v, "cuda")) o->cp.backend = FM_BACKEND_CUDA;
            else if (!strcmp(v, "auto")) o->cp.backend = FM_BACKEND_AUTO;
            else ok = 0;
        } else if (!strcmp(a, "--weights")) {
            static const char *names[] = {"f32", "bf16", "f16", "q8_0", "q4_0"};
            static const fm_weight_type types[] = {FM_WEIGHTS_F32, FM_WEIGHTS_BF16, FM_WEIGHTS_F16, FM_WEIGHTS_Q8_0,
                                                   FM_WEIGHTS_Q4_0};
            ok = 0;
            for (int k = 0; k < 5; k++)
                if (!strcmp(v, names[k])) {
                    o->cp.weight_type = types[k];
                    o->weights_name = names[k];
                    ok = 1;
                }
        } else if (!strcmp(a, "-b")) {
            o->n_batches = 0;
            char buf[256];
            snprintf(buf, sizeof buf, "%s", v);
            for (char *tok = strtok(buf, ","); ok && tok; tok = strtok(NULL, ",")) {
                ok = o->n_batches < MAX_BATCHES && parse_int(tok, 1, &o->batches[o->n_batches]);
                o->n_batches++;
            }
        } else {
            return fprintf(stderr, "falconmamba bench: unknown option '%s' (see --help)\n", a), 1;
        }
        if (!ok) return fprintf(stderr, "falconmamba bench: bad value '%s' for %s\n", v, a), 1;
    }
    if (!o->model) return fprintf(stderr, "falconmamba bench: -m DIR is required (see --help)\n"), 1;
    return 0;
}

int falconmamba_bench(int argc, char **argv) {
    bench_opts o = {0};
    fm_context_params_init(&o.cp);
    o.weights_name = "as stored";
    o.n_prompt = 512;
    o.n_gen = 128;
    o.reps = 3;
    o.probe_mib = 2048;
    o.batches[0] = 1;
    o.n_batches = 1;
    int p = parse_opts(argc, argv, &o);
    if (p == 2) {
        bench_usage();
        return 0;
    }
    if (p) return 1;

    double t0 = now_s();
    fm_context *ctx;
    if (fm_context_open(o.model, &o.cp, &ctx) != FM_OK) return report_error("fm_context_open"), 1;
    const double load_s = now_s() - t0;
    fm_model_info info = {.struct_size = sizeof info};
    fm_context_info(ctx, &info);
    /* Bytes one decode step reads: all weights, less an untied embedding (only a row of it is read;
       it is kept as stored, 2 bytes an element for a bf16/f16 checkpoint, 4 if --weights f32). */
    double step_bytes = (double)info.weight_bytes;
    if (!info.tied_embeddings)
        step_bytes -= (double)info.n_vocab * info.d_model * (o.cp.weight_type == FM_WEIGHTS_F32 ? 4.0 : 2.0);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    const int threads = o.cp.n_threads > 0 ? o.cp.n_threads : (int)(cores > 0 ? cores : 1);

    double pp = 0, tg[MAX_BATCHES] = {0};
    double *v = malloc((size_t)o.reps * sizeof *v);
    int rc = v ? 0 : 1;
    if (!rc && o.n_prompt > 0) {
        for (int r = 0; r < o.reps && !rc; r++) rc = (v[r] = run_pp(ctx, o.n_prompt)) < 0;
        if (!rc) pp = median(v, o.reps);
    }
    for (int bi = 0; !rc && o.n_gen > 0 && bi < o.n_batches; bi++) {
        for (int r = 0; r < o.reps && !rc; r++) rc = (v[r] = run_tg(ctx, o.batches[bi], o.n_gen)) < 0;
        if (!rc) tg[bi] = median(v, o.reps);
    }
    /* Peak resident memory so far (before the probe's own buffer). */
    const double peak_rss_gb = peak_rss_bytes() / 1e9;
    /* The probe reads 2 GiB by default (several times any last-level cache) with the decode's thread
       count, after the measurements so that its buffer is not counted in the peak RSS. */
    const double gbs = !rc && o.probe_mib > 0 && !strcmp(info.backend_name, "cpu")
                           ? probe_bandwidth(threads, (size_t)o.probe_mib << 20)
                           : 0.0;

    printf("model %s: %d layers, d_model %d, %.2f B params, %.2f GB weights (%s), backend %s, %d threads, "
           "loaded in %.2f s, peak RSS %.2f GB\n",
           o.model, info.n_layer, info.d_model, (double)info.n_params / 1e9, (double)info.weight_bytes / 1e9,
           o.weights_name, info.backend_name, threads, load_s, peak_rss_gb);
    if (gbs > 0)
        printf("read bandwidth %.1f GB/s (%d threads) -> batch-1 decode limit %.2f tokens/s\n", gbs, threads,
               gbs * 1e9 / step_bytes);
    printf("\n| test | tokens/s | %% of limit |\n|---|---|---|\n");
    if (!rc && o.n_prompt > 0) printf("| pp%d | %.2f | |\n", o.n_prompt, pp);
    for (int bi = 0; !rc && o.n_gen > 0 && bi < o.n_batches; bi++) {
        const int b = o.batches[bi];
        /* A batch of b reads the weights once per step for all b sequences: its limit is b times batch 1's. */
        const double limit = gbs > 0 ? gbs * 1e9 / step_bytes * b : 0;
        if (limit > 0) printf("| tg%d b%d | %.2f | %.1f%% |\n", o.n_gen, b, tg[bi], 100.0 * tg[bi] / limit);
        else printf("| tg%d b%d | %.2f | |\n", o.n_gen, b, tg[bi]);
    }
    if (!rc && o.json) {
        printf("{\"model\": \"%s\", \"backend\": \"%s\", \"weights\": \"%s\", \"threads\": %d, \"n_params\": %llu, "
               "\"weight_bytes\": %llu, \"step_bytes\": %.0f, \"load_s\": %.3f, \"peak_rss_gb\": %.3f, "
               "\"bandwidth_gbs\": %.2f, \"pp_tokens\": %d, \"pp_tps\": %.3f, \"tg_tokens\": %d, \"tg\": [",
               o.model, info.backend_name, o.weights_name, threads, (unsigned long long)info.n_params,
               (unsigned long long)info.weight_bytes, step_bytes, load_s, peak_rss_gb, gbs, o.n_prompt, pp, o.n_gen);
        for (int bi = 0; bi < o.n_batches; bi++)
            printf("%s{\"batch\": %d, \"tps\": %.3f, \"fraction_of_limit\": %.4f}", bi ? ", " : "", o.batches[bi],
                   tg[bi], gbs > 0 ? tg[bi] / (gbs * 1e9 / step_bytes * o.batches[bi]) : 0.0);
        printf("]}\n");
    }
    free(v);
    fm_context_close(ctx);
    return rc;
}
