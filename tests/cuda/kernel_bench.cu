/* kernel_bench.cu - the CUDA backend's decode kernels timed one by one, without the model or the core:
 * where a decode step's time goes, and how close each kernel comes to the read bandwidth.
 *
 *   kernel_bench [--shape 7b|1.4b] [--weights bf16,q8_0,q4_0] [--batch N] [--reps R] [--variants LIST]
 *                [--default-only] [--scan SEGSxROWS,...]
 *
 * For each weight type it allocates n_layer layers of the real shapes (random weights, so a step reads
 * as many bytes as the model's), then times, each as a CUDA graph replayed R times:
 *   - every kernel of the decode layer on its own, one launch per layer (so each launch reads a
 *     different layer's weights, never an L2-resident copy), printed as us per launch and GB/s;
 *   - the whole decode step (the same launch sequence as src/model.c's forward, embedding aside),
 *     printed as ms per step, tokens/s, and the fraction of the limit (bandwidth probe, same run), and
 *     at batch 1 again as cuda_fused.c issues it (the norm and conv step inside in_proj);
 *   - both again for each GEMV variant (cuda_internal.h: batch 1 variants 0..3 = the FMA kernel's launch
 *     shapes (fp32 activations), 4 = the tensor-core kernel, 5 = the module's default: the bulk-copy
 *     GEMV (k_gemv_bulk.cu) where it applies, 8-bit activations for Q8_0 / Q4_0, 6 = Q8_0 / Q4_0 through
 *     the register-fed 8-bit-activation GEMV (k_gemv_dp4a.cu); batches > 1: 0 "fma", 4 "tc" (register-fed),
 *     5 "tc bulk" (the default: the bulk-copy tensor-core GEMV, k_gemv_bulk_tc.cu, where it applies)), each
 *     variant's output also
 *     checked against the generic reference kernel on the same inputs (max |diff| / max |ref|); each
 *     as the module runs by default, then with the L2 prefetch of the weight rows (FM_CUDA_PREFETCH=1;
 *     left out with --default-only).
 * --scan times the prefill scan alone instead: the sequential k_ssm_scan against the time-chunked one
 * (k_scan_chunked.cu) for SEGS segments of ROWS rows, and how far apart their outputs and states are.
 * The bandwidth probe is bandwidth_probe.cuh's (as cuda_bench's). Not a test:
 * figures go to docs/PERFORMANCE.md.
 */
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bandwidth_probe.cuh"
#include "cuda_check.cuh"
#include "cuda_internal.h"


typedef struct shape {
    const char *name;
    int d, di, R, N, K, L, vocab;
} shape;

static const shape k_shapes[] = {
    {"7b", 4096, 8192, 256, 16, 4, 64, 65024},
    {"1.4b", 2048, 4096, 128, 16, 4, 48, 50280},
};

/* ---- random fill: a hash of the index, so every byte is written once on the device ---------------- */
__device__ __forceinline__ uint32_t hash32(uint64_t i) {
    uint32_t x = (uint32_t)(i ^ (i >> 32)) * 0x9E3779B1u;
    x ^= x >> 15;
    x *= 0x85EBCA77u;
    x ^= x >> 13;
    return x;
}

/* dtype CU_F32 / CU_BF16: values in [-amp, amp]; bytes (quants): any byte; CU_F16 plane: scales of amp. */
__global__ void k_fill(void *p, size_t n, int kind, float amp, uint32_t seed) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint32_t h = hash32(i * 0x100000001B3ull + seed);
        float u = ((float)(h >> 8) / 16777216.0f * 2.0f - 1.0f) * amp;
        if (kind == CU_F32) ((float *)p)[i] = u;
        else if (kind == CU_BF16) ((uint16_t *)p)[i] = (uint16_t)(__float_as_uint(u) >> 16);
        else if (kind == CU_F16) ((__half *)p)[i] = __float2half(amp);
        else ((uint8_t *)p)[i] = (uint8_t)h;
    }
}

static void fill(void *p, size_t n, int kind, float amp, uint32_t seed) {
    k_fill<<<1024, 256>>>(p, n, kind, amp, seed);
    CU(cudaGetLastError());
}

static void *dalloc(size_t bytes) {
    void *p;
    CU(cudaMalloc(&p, bytes ? bytes : 16));
    return p;
}

/* A random matrix of the given storage type; values scaled so the chain's activations stay finite. */
static cu_wview matrix(int dtype, int64_t rows, int64_t cols, uint32_t seed) {
    cu_wview v = {dtype, rows, cols, NULL, NULL};
    const size_t n = (size_t)rows * cols;
    const float amp = 1.0f / (float)cols;
    if (dtype == CU_BF16) {
        v.data = dalloc(n * 2);
        fill((void *)v.data, n, CU_BF16, amp, seed);
    } else if (dtype == CU_F32) {
        v.data = dalloc(n * 4);
        fill((void *)v.data, n, CU_F32, amp, seed);
    } else {
        const size_t bytes = dtype == CU_Q8_0 ? n : n / 2;
        v.data = dalloc(bytes);
        fill((void *)v.data, bytes, -1, 0, seed);
        v.scales = (const uint16_t *)dalloc(n / CU_QBLOCK * 2);
        fill((void *)v.scales, n / CU_QBLOCK, CU_F16, amp / 64.0f, seed);
    }
    return v;
}

static size_t wbytes(const cu_wview &v) {
    const size_t n = (size_t)v.rows * v.cols;
    if (v.dtype == CU_BF16 || v.dtype == CU_F16) return n * 2;
    if (v.dtype == CU_F32) return n * 4;
    return (v.dtype == CU_Q8_0 ? n : n / 2) + n / CU_QBLOCK * 2;
}

static float *fvec(size_t n, float amp, uint32_t seed) {
    float *p = (float *)dalloc(n * 4);
    fill(p, n, CU_F32, amp, seed);
    return p;
}

typedef struct layer {
    cu_wview in_proj, x_proj, dt_proj, out_proj;
    float *norm, *conv_w, *conv_b, *dt_b, *A, *D;
    float *conv_state, *ssm_state; /* batch x (di x (K-1)) and batch x (di x N) */
} layer;

typedef struct bench {
    shape s;
    int dtype, batch, sm;
    layer *ly;
    cu_wview head;
    float *norm_f;
    float *x, *h, *xz, *u, *xdbl, *y, *logits;
    float *dtn, *bc, *delta; /* batches: cu_ssm's unfused path (norms, dt_proj product, scan) */
    cudaStream_t st;
} bench;

/* The kernels of one decode layer, in src/model.c's order; which = -1 for all of them. */
enum { K_NORM, K_IN, K_CONV, K_XPROJ, K_SSM, K_OUT, K_COUNT, K_SSM_FUSED = K_COUNT, K_IN_FUSED };
static const char *k_names[K_COUNT + 2] = {"rmsnorm", "in_proj gemv", "conv1d step", "x_proj gemv",
                                           "ssm step",  "out_proj gemv", "ssm step (fused, per sequence)",
                                           "rmsnorm + in_proj + conv1d step (fused, batch 1)"};

static void segs_for(bench *b, layer *l, cu_segtab *t) {
    memset(t, 0, sizeof *t);
    t->n = b->batch;
    for (int i = 0; i < b->batch; i++) {
        t->row0[i] = i;
        t->nrows[i] = 1;
        t->conv[i] = l->conv_state + (size_t)i * b->s.di * (b->s.K - 1);
        t->ssm[i] = l->ssm_state + (size_t)i * b->s.di * b->s.N;
    }
}

static void enqueue_layer(bench *b, int li, int which) {
    layer *l = &b->ly[li];
    const shape &s = b->s;
    const int n = b->batch;
    cu_segtab t;
    segs_for(b, l, &t);
    if (which == K_IN_FUSED) { /* as cuda_fused.c: the separate kernels where the bulk-copy GEMV does not take it */
        cu_bulk_fuse f = {};
        f.norm = 1;
        f.eps = 1e-5f;
        f.norm_w = l->norm;
        f.conv_di = s.di;
        f.conv_k = s.K;
        f.conv_w = l->conv_w;
        f.conv_b = l->conv_b;
        f.u = b->u;
        f.conv_state = t.conv[0];
        int taken = 0;
        CU(cuk_gemv_bulk_fused(b->st, l->in_proj, NULL, b->x, b->xz, b->sm, &f, &taken));
        if (taken) return;
        for (int k : {K_NORM, K_IN, K_CONV}) enqueue_layer(b, li, k);
        return;
    }
    if (which < 0 || which == K_NORM) CU(cuk_rmsnorm(b->st, b->x, l->norm, n, s.d, 1e-5f, b->h));
    if (which < 0 || which == K_IN) CU(cuk_gemv(b->st, l->in_proj, NULL, b->h, n, b->xz, 0, b->sm));
    if (which < 0 || which == K_CONV) CU(cuk_conv(b->st, &t, 1, n, b->xz, 2 * s.di, b->u, l->conv_w, l->conv_b, s.di, s.K));
    if (which < 0 || which == K_XPROJ) CU(cuk_gemv(b->st, l->x_proj, NULL, b->u, n, b->xdbl, 0, b->sm));
    if (which < 0 || which == K_SSM || which == K_SSM_FUSED) {
        /* as cuda_ops.c's cu_ssm: one sequence (or K_SSM_FUSED) -> the fused step kernel; several -> the
           norms, the dt_proj product for all rows, the scan */
        cu_ssm_params p = {b->xdbl, b->u, b->xz + s.di, (size_t)2 * s.di, b->y, l->dt_proj, l->dt_b, l->A, l->D,
                           s.di, s.N, s.R, 1, 1e-6f};
        if (n == 1 || which == K_SSM_FUSED) {
            CU(cuk_ssm_decode(b->st, &t, &p));
        } else {
            CU(cuk_ssm_norm(b->st, b->xdbl, n, s.R, s.N, 1, 1e-6f, b->dtn, b->bc));
            CU(cuk_gemv(b->st, l->dt_proj, l->dt_b, b->dtn, n, b->delta, 0, b->sm));
            CU(cuk_ssm_scan(b->st, &t, &p, b->delta, b->bc));
        }
    }
    if (which < 0 || which == K_OUT) CU(cuk_gemv(b->st, l->out_proj, NULL, b->y, n, b->x, 1, b->sm));
}

static void enqueue_step(bench *b, int fused) {
    for (int li = 0; li < b->s.L; li++) {
        if (!fused) enqueue_layer(b, li, -1);
        else
            for (int k : {K_IN_FUSED, K_XPROJ, K_SSM, K_OUT}) enqueue_layer(b, li, k);
    }
    CU(cuk_rmsnorm(b->st, b->x, b->norm_f, b->batch, b->s.d, 1e-5f, b->h));
    CU(cuk_gemv(b->st, b->head, NULL, b->h, b->batch, b->logits, 0, b->sm));
}

/* Capture what `enq` enqueues as a graph, replay it reps times; seconds per replay. */
static double time_graph(bench *b, void (*enq)(bench *, int), int arg, int reps) {
    cudaGraph_t g;
    cudaGraphExec_t ge;
    CU(cudaStreamBeginCapture(b->st, cudaStreamCaptureModeThreadLocal));
    enq(b, arg);
    CU(cudaStreamEndCapture(b->st, &g));
    CU(cudaGraphInstantiate(&ge, g, 0));
    CU(cudaGraphLaunch(ge, b->st)); /* warm-up */
    CU(cudaStreamSynchronize(b->st));
    cudaEvent_t e0, e1;
    CU(cudaEventCreate(&e0));
    CU(cudaEventCreate(&e1));
    CU(cudaEventRecord(e0, b->st));
    for (int r = 0; r < reps; r++) CU(cudaGraphLaunch(ge, b->st));
    CU(cudaEventRecord(e1, b->st));
    CU(cudaEventSynchronize(e1));
    float ms;
    CU(cudaEventElapsedTime(&ms, e0, e1));
    CU(cudaEventDestroy(e0));
    CU(cudaEventDestroy(e1));
    CU(cudaGraphExecDestroy(ge));
    CU(cudaGraphDestroy(g));
    return ms * 1e-3 / reps;
}

static void enq_kernel(bench *b, int which) {
    for (int li = 0; li < b->s.L; li++) enqueue_layer(b, li, which);
}
static void enq_head(bench *b, int unused) {
    (void)unused;
    for (int r = 0; r < 8; r++) CU(cuk_gemv(b->st, b->head, NULL, b->h, b->batch, b->logits, 0, b->sm));
}

/* Bytes a kernel reads from memory per launch (weights + state; activations are L2-sized). */
static double kernel_bytes(const bench *b, int which) {
    const layer *l = &b->ly[0];
    const shape &s = b->s;
    const double st = (double)b->batch * s.di * 4.0;
    switch (which) {
    case K_NORM: return (double)s.d * 4;
    case K_IN_FUSED: return (double)wbytes(l->in_proj) + (double)s.di * s.K * 4 + 2 * st * (s.K - 1);
    case K_IN: return (double)wbytes(l->in_proj);
    case K_CONV: return (double)s.di * s.K * 4 + 2 * st * (s.K - 1);
    case K_XPROJ: return (double)wbytes(l->x_proj);
    case K_SSM:
    case K_SSM_FUSED: return (double)wbytes(l->dt_proj) + 2 * st * s.N + (double)s.di * (s.N + 2) * 4;
    case K_OUT: return (double)wbytes(l->out_proj);
    }
    return 0;
}


/* max |a - b| / max |a| over n device floats (a: the reference); the work on them must be done. */
static double max_rel_diff(const float *a_dev, const float *b_dev, size_t n) {
    float *a = (float *)malloc(n * 4), *b = (float *)malloc(n * 4);
    CU(cudaMemcpy(a, a_dev, n * 4, cudaMemcpyDeviceToHost));
    CU(cudaMemcpy(b, b_dev, n * 4, cudaMemcpyDeviceToHost));
    double md = 0, mr = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= md)) md = d; /* NaN propagates */
        mr = fabs((double)a[i]) > mr ? fabs((double)a[i]) : mr;
    }
    free(a);
    free(b);
    return mr > 0 ? md / mr : md;
}

/* The current GEMV of W on x (b.batch rows) against the reference kernel: max |diff| / max |ref|. */
static double check_gemv(bench *b, const cu_wview &W, const float *x) {
    const size_t n = (size_t)b->batch * W.rows;
    float *y1 = (float *)dalloc(n * 4), *y2 = (float *)dalloc(n * 4);
    CU(cuk_gemv(b->st, W, NULL, x, b->batch, y1, 0, b->sm));
    CU(cuk_gemv_reference(b->st, W, NULL, x, b->batch, y2, 0));
    CU(cudaStreamSynchronize(b->st));
    const double e = max_rel_diff(y2, y1, n);
    CU(cudaFree(y1));
    CU(cudaFree(y2));
    return e;
}

static int parse_dtype(const char *s) {
    if (!strcmp(s, "bf16")) return CU_BF16;
    if (!strcmp(s, "f32")) return CU_F32;
    if (!strcmp(s, "q8_0")) return CU_Q8_0;
    if (!strcmp(s, "q4_0")) return CU_Q4_0;
    return -1;
}

static int g_sm90;          /* the device has the bulk-copy GEMV (k_gemv_bulk.cu) */
static size_t g_smem_optin; /* and this much shared memory per block */
static int g_bulk_kb = 220, g_bulk_tile_kb = 96; /* FM_CUDA_BULK_KB, FM_CUDA_BULK_TILE_KB as in the module */

static void run(const shape &s, int dtype, const char *dname, int batch, int reps, int sm, double bw, const int *variants,
                size_t n_variants, int with_pf) {
    bench b = {};
    b.s = s;
    b.dtype = dtype;
    b.batch = batch;
    b.sm = sm;
    CU(cudaStreamCreateWithFlags(&b.st, cudaStreamNonBlocking));
    b.ly = (layer *)calloc((size_t)s.L, sizeof *b.ly);
    double step_bytes = 0;
    for (int i = 0; i < s.L; i++) {
        layer *l = &b.ly[i];
        uint32_t seed = 1000u * (uint32_t)i;
        l->in_proj = matrix(dtype, 2 * s.di, s.d, seed + 1);
        l->x_proj = matrix(dtype, s.R + 2 * s.N, s.di, seed + 2);
        /* dt_proj's inner dimension (dt_rank) is a multiple of 32 in these shapes: quantized like the rest */
        l->dt_proj = matrix(dtype, s.di, s.R, seed + 3);
        l->out_proj = matrix(dtype, s.d, s.di, seed + 4);
        l->norm = fvec(s.d, 1.0f, seed + 5);
        l->conv_w = fvec((size_t)s.di * s.K, 0.5f, seed + 6);
        l->conv_b = fvec(s.di, 0.1f, seed + 7);
        l->dt_b = fvec(s.di, 0.5f, seed + 8);
        l->A = fvec((size_t)s.di * s.N, 1.0f, seed + 9); /* sign does not matter for timing */
        l->D = fvec(s.di, 1.0f, seed + 10);
        l->conv_state = fvec((size_t)batch * s.di * (s.K - 1), 0.1f, seed + 11);
        l->ssm_state = fvec((size_t)batch * s.di * s.N, 0.0f, seed + 12);
        step_bytes += (double)(wbytes(l->in_proj) + wbytes(l->x_proj) + wbytes(l->dt_proj) + wbytes(l->out_proj));
    }
    b.head = matrix(dtype, s.vocab, s.d, 77);
    b.norm_f = fvec(s.d, 1.0f, 78);
    step_bytes += (double)wbytes(b.head) + 2.0 * batch * s.L * (double)s.di * (s.K - 1 + s.N) * 4;
    b.x = fvec((size_t)batch * s.d, 1.0f, 90);
    b.h = fvec((size_t)batch * s.d, 1.0f, 91);
    b.xz = fvec((size_t)batch * 2 * s.di, 1.0f, 92);
    b.u = fvec((size_t)batch * s.di, 1.0f, 93);
    b.xdbl = fvec((size_t)batch * (s.R + 2 * s.N), 1.0f, 94);
    b.y = fvec((size_t)batch * s.di, 1.0f, 95);
    b.logits = fvec((size_t)batch * s.vocab, 1.0f, 96);
    b.dtn = fvec((size_t)batch * s.R, 1.0f, 97);
    b.bc = fvec((size_t)batch * 2 * s.N, 1.0f, 98);
    b.delta = fvec((size_t)batch * s.di, 1.0f, 99);
    CU(cudaDeviceSynchronize());

    printf("\n## %s, %s weights, batch %d (step reads %.2f GB; limit %.1f steps/s)\n\n", s.name, dname, batch,
           step_bytes / 1e9, bw / step_bytes);
    printf("| kernel | us per launch | x per layer = ms per step | GB/s | of bandwidth |\n|---|---|---|---|---|\n");
    cuk_set_bulk(1, g_sm90, g_smem_optin, g_bulk_kb, g_bulk_tile_kb); /* the module's defaults */
    const int fixed[] = {K_NORM, K_CONV, K_SSM, K_SSM_FUSED, K_IN_FUSED};
    for (int k : fixed) {
        if ((k == K_SSM_FUSED && batch == 1) || (k == K_IN_FUSED && batch > 1)) continue;
        double t = time_graph(&b, enq_kernel, k, reps) / s.L;
        double by = kernel_bytes(&b, k);
        printf("| %s | %.2f | %.3f | %.0f | %.1f%% |\n", k_names[k], t * 1e6, t * s.L * 1e3, by / t / 1e9,
               100.0 * by / t / bw);
    }
    printf("\nGEMV variants: us per launch (fraction of the bandwidth); the step with that variant; max |diff| / max "
           "|ref| against the reference kernel over the four matrices\n\n");
    printf("| variant | in_proj | x_proj | out_proj | lm_head | step ms | tokens/s | of limit | fused step ms | "
           "tokens/s | of limit | rel. error |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (size_t vi = 0; vi < 2 * n_variants; vi++) {
        const int v = variants[vi % n_variants], pf = vi >= n_variants;
        if (pf && !with_pf) break;
        cuk_set_prefetch(pf);
        /* batches: "fma" (0), "tc" (4, register-fed) and "tc bulk" (5, the default: k_gemv_bulk_tc.cu where it
           applies) */
        if (batch > 1 && v != 0 && v != CU_GEMV_VARIANT_TC && v != CU_GEMV_VARIANT_TC + 1) continue;
        const int quant = dtype == CU_Q8_0 || dtype == CU_Q4_0;
        const int bulk = v == CU_GEMV_VARIANT_TC + 1, qdot = quant && v > CU_GEMV_VARIANT_TC;
        if (v == CU_GEMV_VARIANT_TC + 2 && !quant) continue;
        const int tc = batch > 1 ? v >= CU_GEMV_VARIANT_TC : 1;
        cuk_set_gemv_variant(batch > 1 || v > CU_GEMV_VARIANT_TC ? 0 : v, tc);
        cuk_set_qdot(qdot);
        cuk_set_bulk(bulk, g_sm90, g_smem_optin, g_bulk_kb, g_bulk_tile_kb);
        char name[32];
        if (batch > 1)
            snprintf(name, sizeof name, "%s%s", !tc ? "fma" : bulk ? "tc bulk" : "tc", pf ? ", prefetch" : "");
        else
            snprintf(name, sizeof name, "%d%s%s", v,
                     v == CU_GEMV_VARIANT_TC ? " (tc)" : bulk ? " (bulk)" : qdot ? " (dp4a regs)" : "",
                     pf ? ", prefetch" : "");
        printf("| %s |", name);
        const int gk[] = {K_IN, K_XPROJ, K_OUT};
        for (int k : gk) {
            double t = time_graph(&b, enq_kernel, k, reps) / s.L;
            printf(" %.2f (%.0f%%) |", t * 1e6, 100.0 * kernel_bytes(&b, k) / t / bw);
        }
        double th = time_graph(&b, enq_head, 0, reps) / 8;
        printf(" %.2f (%.0f%%) |", th * 1e6, 100.0 * wbytes(b.head) / th / bw);
        double ts = time_graph(&b, enqueue_step, 0, reps);
        /* the norm and conv inside in_proj (cuda_fused.c), batch 1 only */
        double tf = batch == 1 ? time_graph(&b, enqueue_step, 1, reps) : 0;
        double err = 0;
        const cu_wview *ms[] = {&b.ly[0].in_proj, &b.ly[0].x_proj, &b.ly[0].out_proj, &b.head};
        const float *xs[] = {b.h, b.u, b.y, b.h};
        for (int m = 0; m < 4; m++) {
            double e = check_gemv(&b, *ms[m], xs[m]);
            if (e > err) err = e;
        }
        printf(" %.3f | %.1f | %.1f%% |", ts * 1e3, batch / ts, 100.0 * step_bytes / ts / bw);
        if (tf > 0) printf(" %.3f | %.1f | %.1f%% |", tf * 1e3, batch / tf, 100.0 * step_bytes / tf / bw);
        else printf(" | | |");
        printf(" %.2g |\n", err);
    }
    cuk_set_gemv_variant(CU_GEMV_DEFAULT_VARIANT, 1);
    cuk_set_qdot(1);
    cuk_set_bulk(1, g_sm90, g_smem_optin, g_bulk_kb, g_bulk_tile_kb);
    cuk_set_prefetch(0);
    for (int i = 0; i < s.L; i++) {
        layer *l = &b.ly[i];
        const void *ps[] = {l->in_proj.data, l->in_proj.scales, l->x_proj.data, l->x_proj.scales, l->dt_proj.data,
                            l->dt_proj.scales, l->out_proj.data, l->out_proj.scales, l->norm, l->conv_w, l->conv_b,
                            l->dt_b, l->A, l->D, l->conv_state, l->ssm_state};
        for (size_t j = 0; j < sizeof ps / sizeof *ps; j++)
            if (ps[j]) CU(cudaFree((void *)ps[j]));
    }
    const void *ps[] = {b.head.data, b.head.scales, b.norm_f, b.x, b.h, b.xz, b.u, b.xdbl, b.y, b.logits, b.dtn, b.bc,
                        b.delta};
    for (size_t j = 0; j < sizeof ps / sizeof *ps; j++)
        if (ps[j]) CU(cudaFree((void *)ps[j]));
    free(b.ly);
    CU(cudaStreamDestroy(b.st));
}

/* ---- prefill scan: the sequential k_ssm_scan against the time-chunked scan ------------------------- */

static float *host_to_dev(const float *h, size_t n) {
    float *d = (float *)dalloc(n * 4);
    CU(cudaMemcpy(d, h, n * 4, cudaMemcpyHostToDevice));
    return d;
}


/* segs segments of rows each, one layer of the shape: us per call of each scan and their agreement
   (outputs and final states, relative to the sequential scan's max). */
static void run_scan(const shape &s, int rows, int segs, int reps) {
    const size_t n = (size_t)rows * segs, di = (size_t)s.di, N = (size_t)s.N;
    uint32_t seed = 12345u;
    auto rnd = [&seed](float lo, float hi) {
        seed = seed * 1664525u + 1013904223u;
        return lo + (hi - lo) * (float)(seed >> 8) / 16777216.0f;
    };
    float *h_delta = (float *)malloc(n * di * 4), *h_u = (float *)malloc(n * di * 4),
          *h_z = (float *)malloc(n * di * 4), *h_bc = (float *)malloc(n * 2 * N * 4),
          *h_A = (float *)malloc(di * N * 4), *h_D = (float *)malloc(di * 4), *h_st = (float *)malloc(segs * di * N * 4);
    for (size_t i = 0; i < n * di; i++) {
        h_delta[i] = rnd(-4.0f, 0.5f);
        h_u[i] = rnd(-1.0f, 1.0f);
        h_z[i] = rnd(-2.0f, 2.0f);
    }
    for (size_t i = 0; i < n * 2 * N; i++) h_bc[i] = rnd(-1.0f, 1.0f);
    for (size_t i = 0; i < di * N; i++) h_A[i] = -rnd(0.05f, 16.0f); /* -exp(A_log): falcon-mamba's 1..16 */
    for (size_t i = 0; i < di; i++) h_D[i] = rnd(0.5f, 1.5f);
    for (size_t i = 0; i < segs * di * N; i++) h_st[i] = rnd(-0.5f, 0.5f);
    float *delta = host_to_dev(h_delta, n * di), *u = host_to_dev(h_u, n * di), *z = host_to_dev(h_z, n * di),
          *bc = host_to_dev(h_bc, n * 2 * N), *A = host_to_dev(h_A, di * N), *D = host_to_dev(h_D, di);
    float *st1 = host_to_dev(h_st, segs * di * N), *st2 = host_to_dev(h_st, segs * di * N);
    float *y1 = (float *)dalloc(n * di * 4), *y2 = (float *)dalloc(n * di * 4);
    size_t chunks = (size_t)segs * ((rows + CU_SCAN_LC - 1) / CU_SCAN_LC);
    float *scratch = (float *)dalloc(chunks * di * (N + 1) * 4);
    cu_segtab t;
    memset(&t, 0, sizeof t);
    t.n = segs;
    cu_ssm_params p = {NULL, u, z, di, y1, {}, NULL, A, D, s.di, s.N, s.R, 1, 1e-6f};
    cudaStream_t st;
    CU(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < segs; i++) {
            t.row0[i] = i * rows;
            t.nrows[i] = rows;
            t.ssm[i] = (k ? st2 : st1) + (size_t)i * di * N;
        }
        p.y = k ? y2 : y1;
        CU(k ? cuk_scan_chunked(st, &t, &p, delta, bc, scratch) : cuk_ssm_scan(st, &t, &p, delta, bc));
    }
    CU(cudaStreamSynchronize(st));
    const double ey = max_rel_diff(y1, y2, n * di), es = max_rel_diff(st1, st2, segs * di * N);
    double us[2];
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < segs; i++) t.ssm[i] = (k ? st2 : st1) + (size_t)i * di * N;
        p.y = k ? y2 : y1;
        cudaEvent_t e0, e1;
        CU(cudaEventCreate(&e0));
        CU(cudaEventCreate(&e1));
        CU(cudaEventRecord(e0, st));
        for (int r = 0; r < reps; r++)
            CU(k ? cuk_scan_chunked(st, &t, &p, delta, bc, scratch) : cuk_ssm_scan(st, &t, &p, delta, bc));
        CU(cudaEventRecord(e1, st));
        CU(cudaEventSynchronize(e1));
        float ms;
        CU(cudaEventElapsedTime(&ms, e0, e1));
        us[k] = ms * 1e3 / reps;
        CU(cudaEventDestroy(e0));
        CU(cudaEventDestroy(e1));
    }
    printf("| %d x %d | %.1f | %.1f | %.2fx | %.3f (%d layers) | %.2g | %.2g |\n", segs, rows, us[0], us[1],
           us[0] / us[1], us[1] * s.L * 1e-3, s.L, ey, es);
    const void *ps[] = {delta, u, z, bc, A, D, st1, st2, y1, y2, scratch};
    for (size_t j = 0; j < sizeof ps / sizeof *ps; j++) CU(cudaFree((void *)ps[j]));
    free(h_delta);
    free(h_u);
    free(h_z);
    free(h_bc);
    free(h_A);
    free(h_D);
    free(h_st);
    CU(cudaStreamDestroy(st));
}

int main(int argc, char **argv) {
    const shape *s = &k_shapes[0];
    char weights[128] = "bf16,q8_0,q4_0";
    int batch = 1, reps = 20;
    int variants[16] = {0, 1, 2, 3, CU_GEMV_VARIANT_TC, CU_GEMV_VARIANT_TC + 1, CU_GEMV_VARIANT_TC + 2};
    size_t n_variants = 7;
    int with_pf = 1;
    char scan[128] = "";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--shape") && i + 1 < argc) {
            const char *n = argv[++i];
            s = NULL;
            for (size_t j = 0; j < sizeof k_shapes / sizeof *k_shapes; j++)
                if (!strcmp(k_shapes[j].name, n)) s = &k_shapes[j];
            if (!s) {
                fprintf(stderr, "unknown shape %s (7b, 1.4b)\n", n);
                return 2;
            }
        } else if (!strcmp(argv[i], "--weights") && i + 1 < argc) {
            snprintf(weights, sizeof weights, "%s", argv[++i]);
        } else if (!strcmp(argv[i], "--batch") && i + 1 < argc) {
            batch = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            reps = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--scan") && i + 1 < argc) {
            snprintf(scan, sizeof scan, "%s", argv[++i]);
        } else if (!strcmp(argv[i], "--default-only")) {
            with_pf = 0;
        } else if (!strcmp(argv[i], "--variants") && i + 1 < argc) {
            n_variants = 0;
            for (char *v = strtok(argv[++i], ","); v && n_variants < 16; v = strtok(NULL, ","))
                variants[n_variants++] = atoi(v);
        } else {
            fprintf(stderr, "usage: %s [--shape 7b|1.4b] [--weights bf16,q8_0,q4_0] [--batch N<=8] [--reps R] "
                    "[--variants 0,1,2,3,4] [--default-only] [--scan SEGSxROWS,...]\n",
                    argv[0]);
            return 2;
        }
    }
    if (batch < 1 || batch > CU_GEMV_MAX_N || reps < 1) {
        fprintf(stderr, "--batch must be 1..%d and --reps positive\n", CU_GEMV_MAX_N);
        return 2;
    }
    int dev = 0, sm = 0;
    CU(cudaSetDevice(dev));
    CU(cudaDeviceGetAttribute(&sm, cudaDevAttrMultiProcessorCount, dev));
    cudaDeviceProp prop;
    CU(cudaGetDeviceProperties(&prop, dev));
    const char *pdl = getenv("FM_CUDA_PDL");
    cuk_set_pdl(prop.major >= 9 && !(pdl && !strcmp(pdl, "0")));
    g_sm90 = prop.major >= 9;
    g_smem_optin = prop.sharedMemPerBlockOptin;
    if (getenv("FM_CUDA_BULK_KB")) g_bulk_kb = atoi(getenv("FM_CUDA_BULK_KB"));
    if (getenv("FM_CUDA_BULK_TILE_KB")) g_bulk_tile_kb = atoi(getenv("FM_CUDA_BULK_TILE_KB"));
    if (getenv("FM_CUDA_BULK_WARPS")) cuk_set_bulk_warps(atoi(getenv("FM_CUDA_BULK_WARPS")));
    if (getenv("FM_CUDA_BULK_STAGES")) cuk_set_bulk_stages(atoi(getenv("FM_CUDA_BULK_STAGES")));
    double bw = fm_probe_read_gbs(sm) * 1e9;
    if (bw <= 0) {
        fprintf(stderr, "bandwidth probe: cudaMalloc failed\n");
        return 1;
    }
    printf("# kernel_bench: %s, %d SMs, read bandwidth %.0f GB/s (bf16 sum, 4 GiB, best of 10), PDL %s\n", prop.name,
           sm, bw / 1e9, prop.major >= 9 && !(pdl && !strcmp(pdl, "0")) ? "on" : "off");
    if (scan[0]) {
        printf("\n## prefill scan, %s shape (one layer; the last columns: chunked vs sequential, max |diff| / max |ref|)\n\n"
               "| segments x rows | sequential us | chunked us | speed-up | chunked ms per prefill | y | state |\n"
               "|---|---|---|---|---|---|---|\n",
               s->name);
        for (char *tok = strtok(scan, ","); tok; tok = strtok(NULL, ",")) {
            int segs = 0, rows = 0;
            if (sscanf(tok, "%dx%d", &segs, &rows) != 2 || segs < 1 || segs > CU_MAX_SEGS || rows < 1) {
                fprintf(stderr, "--scan: SEGSxROWS with 1 <= SEGS <= %d, got %s\n", CU_MAX_SEGS, tok);
                return 2;
            }
            run_scan(*s, rows, segs, reps);
        }
        return 0;
    }
    for (char *tok = strtok(weights, ","); tok; tok = strtok(NULL, ",")) {
        int dt = parse_dtype(tok);
        if (dt < 0) {
            fprintf(stderr, "unknown weight type %s\n", tok);
            return 2;
        }
        run(*s, dt, tok, batch, reps, sm, bw, variants, n_variants, with_pf);
    }
    return 0;
}
