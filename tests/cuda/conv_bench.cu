/* conv_bench.cu - the prefill causal conv1d (+ bias + silu) of k_conv.cu against cuDNN's grouped
 * convolution on the same data: issue 6 asks whether cuDNN, on the product's dependency card, beats our
 * kernel there. Not a test; the figures go to docs/PERFORMANCE.md.
 *
 *   conv_bench [--di 8192] [--k 4] [--shapes 1x512,1x2048,8x512] [--reps 50]
 *
 * For each shape PxL (P sequences of L rows, fp32, channels contiguous as in the model): ours =
 * cuk_conv over P segments (outputs, then the conv state update) with zero initial states; cuDNN =
 * cudnnConvolutionForward as a depthwise convolution (group count = di, NHWC, FMA math: no TF32) with
 * K - 1 zero columns of padding (it pads both sides; the first L outputs of each sequence are the
 * causal ones), the algorithm cudnnFindConvolutionForwardAlgorithm ranks first, then bias
 * (cudnnAddTensor) and silu (cudnnActivationForward, swish with beta 1). Prints us per call, the
 * effective bandwidth (input read + output written once), cuDNN alone and with bias + silu, and the
 * largest difference between the two outputs relative to their max |y|.
 */
#include <cuda_runtime.h>
#include <cudnn.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_check.cuh"
#include "cuda_internal.h"

#define DNN(call)                                                                                                     \
    do {                                                                                                              \
        cudnnStatus_t s_ = (call);                                                                                    \
        if (s_ != CUDNN_STATUS_SUCCESS) {                                                                             \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudnnGetErrorString(s_));                \
            exit(1);                                                                                                  \
        }                                                                                                             \
    } while (0)

static float *upload_random(size_t n, float amp, uint32_t seed) {
    float *h = (float *)malloc(n * sizeof(float)), *d = NULL;
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        h[i] = amp * ((float)(x >> 8) / 8388608.0f - 1.0f);
    }
    CU(cudaMalloc(&d, n * sizeof(float)));
    CU(cudaMemcpy(d, h, n * sizeof(float), cudaMemcpyHostToDevice));
    free(h);
    return d;
}

typedef struct {
    int P, L, di, K;
    float *in, *w, *b, *ours, *theirs, *state;
    cu_segtab t;
    cudaStream_t st;
} conv_case;

static void run_ours(conv_case *c) {
    CU(cuk_conv(c->st, &c->t, 0, c->P * c->L, c->in, (size_t)c->di, c->ours, c->w, c->b, c->di, c->K));
}

static double time_us(cudaStream_t st, int reps, void (*fn)(void *), void *arg) {
    cudaEvent_t a, z;
    CU(cudaEventCreate(&a));
    CU(cudaEventCreate(&z));
    fn(arg); /* warm-up */
    CU(cudaEventRecord(a, st));
    for (int i = 0; i < reps; i++) fn(arg);
    CU(cudaEventRecord(z, st));
    CU(cudaEventSynchronize(z));
    float ms = 0;
    CU(cudaEventElapsedTime(&ms, a, z));
    CU(cudaEventDestroy(a));
    CU(cudaEventDestroy(z));
    return 1000.0 * ms / reps;
}

typedef struct {
    cudnnHandle_t h;
    cudnnTensorDescriptor_t xd, yd, bd;
    cudnnFilterDescriptor_t fd;
    cudnnConvolutionDescriptor_t cd;
    cudnnActivationDescriptor_t ad;
    cudnnConvolutionFwdAlgo_t algo;
    void *ws;
    size_t ws_bytes;
    float *y; /* P x (L + K - 1) x di */
    conv_case *c;
    int with_epilogue;
} dnn_run;

static void run_dnn(void *arg) {
    dnn_run *r = (dnn_run *)arg;
    const float one = 1.0f, zero = 0.0f;
    DNN(cudnnConvolutionForward(r->h, &one, r->xd, r->c->in, r->fd, r->c->w, r->cd, r->algo, r->ws, r->ws_bytes, &zero,
                                r->yd, r->y));
    if (r->with_epilogue) {
        DNN(cudnnAddTensor(r->h, &one, r->bd, r->c->b, &one, r->yd, r->y));
        DNN(cudnnActivationForward(r->h, r->ad, &one, r->yd, r->y, &zero, r->yd, r->y));
    }
}
static void run_ours_v(void *arg) { run_ours((conv_case *)arg); }

static void bench_shape(int P, int L, int di, int K, int reps, cudnnHandle_t h) {
    conv_case c = {};
    c.P = P;
    c.L = L;
    c.di = di;
    c.K = K;
    const size_t rows = (size_t)P * L;
    c.in = upload_random(rows * di, 1.0f, 1);
    c.w = upload_random((size_t)di * K, 0.5f, 2);
    c.b = upload_random((size_t)di, 0.1f, 3);
    CU(cudaMalloc(&c.ours, rows * di * sizeof(float)));
    CU(cudaMalloc(&c.state, (size_t)P * di * (K - 1) * sizeof(float)));
    CU(cudaMemset(c.state, 0, (size_t)P * di * (K - 1) * sizeof(float)));
    CU(cudaStreamCreate(&c.st));
    c.t.n = P;
    for (int i = 0; i < P; i++) {
        c.t.row0[i] = i * L;
        c.t.nrows[i] = L;
        c.t.conv[i] = c.state + (size_t)i * di * (K - 1);
    }
    run_ours(&c); /* zero initial states: the reference output */
    CU(cudaStreamSynchronize(c.st));

    dnn_run r = {};
    r.h = h;
    r.c = &c;
    DNN(cudnnSetStream(h, c.st));
    const int Wo = L + K - 1;
    DNN(cudnnCreateTensorDescriptor(&r.xd));
    DNN(cudnnCreateTensorDescriptor(&r.yd));
    DNN(cudnnCreateTensorDescriptor(&r.bd));
    DNN(cudnnCreateFilterDescriptor(&r.fd));
    DNN(cudnnCreateConvolutionDescriptor(&r.cd));
    DNN(cudnnCreateActivationDescriptor(&r.ad));
    DNN(cudnnSetTensor4dDescriptor(r.xd, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, P, di, 1, L));
    DNN(cudnnSetTensor4dDescriptor(r.yd, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, P, di, 1, Wo));
    DNN(cudnnSetTensor4dDescriptor(r.bd, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, 1, di, 1, 1));
    DNN(cudnnSetFilter4dDescriptor(r.fd, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, di, 1, 1, K)); /* w[c][k] */
    DNN(cudnnSetConvolution2dDescriptor(r.cd, 0, K - 1, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    DNN(cudnnSetConvolutionGroupCount(r.cd, di));
    DNN(cudnnSetConvolutionMathType(r.cd, CUDNN_FMA_MATH));
    DNN(cudnnSetActivationDescriptor(r.ad, CUDNN_ACTIVATION_SWISH, CUDNN_NOT_PROPAGATE_NAN, 0.0));
    DNN(cudnnSetActivationDescriptorSwishBeta(r.ad, 1.0));
    int n_, c_, h_, w_;
    DNN(cudnnGetConvolution2dForwardOutputDim(r.cd, r.xd, r.fd, &n_, &c_, &h_, &w_));
    if (w_ != Wo) {
        fprintf(stderr, "cuDNN output width %d, expected %d\n", w_, Wo);
        exit(1);
    }
    CU(cudaMalloc(&r.y, (size_t)P * Wo * di * sizeof(float)));
    cudnnConvolutionFwdAlgoPerf_t perf[8];
    int found = 0;
    DNN(cudnnFindConvolutionForwardAlgorithm(h, r.xd, r.fd, r.cd, r.yd, 8, &found, perf));
    int pick = -1;
    for (int i = 0; i < found && pick < 0; i++)
        if (perf[i].status == CUDNN_STATUS_SUCCESS) pick = i;
    if (pick < 0) {
        printf("| %dx%d | no cuDNN algorithm for this convolution |\n", P, L);
        return;
    }
    r.algo = perf[pick].algo;
    r.ws_bytes = perf[pick].memory;
    if (r.ws_bytes) CU(cudaMalloc(&r.ws, r.ws_bytes));
    r.with_epilogue = 1;
    run_dnn(&r);
    CU(cudaStreamSynchronize(c.st));
    /* compare: cuDNN's first L outputs of each sequence against ours */
    float *ho = (float *)malloc(rows * di * sizeof(float)), *hy = (float *)malloc((size_t)P * Wo * di * sizeof(float));
    CU(cudaMemcpy(ho, c.ours, rows * di * sizeof(float), cudaMemcpyDeviceToHost));
    CU(cudaMemcpy(hy, r.y, (size_t)P * Wo * di * sizeof(float), cudaMemcpyDeviceToHost));
    double md = 0, mx = 0;
    for (int p = 0; p < P; p++)
        for (int t = 0; t < L; t++)
            for (int ch = 0; ch < di; ch++) {
                const double a = ho[((size_t)p * L + t) * di + ch], bb = hy[((size_t)p * Wo + t) * di + ch];
                if (fabs(a - bb) > md) md = fabs(a - bb);
                if (fabs(a) > mx) mx = fabs(a);
            }
    free(ho);
    free(hy);
    const double bytes = 2.0 * rows * di * sizeof(float);
    const double t_ours = time_us(c.st, reps, run_ours_v, &c);
    const double t_dnn_all = time_us(c.st, reps, run_dnn, &r);
    r.with_epilogue = 0;
    const double t_dnn = time_us(c.st, reps, run_dnn, &r);
    printf("| %dx%d | %.1f (%.0f GB/s) | %.1f (%.0f GB/s) | %.1f | algo %d, %zu B workspace | %.2g |\n", P, L, t_ours,
           bytes / t_ours / 1e3, t_dnn_all, bytes / t_dnn_all / 1e3, t_dnn, (int)r.algo, r.ws_bytes, md / (mx > 0 ? mx : 1));
    cudaFree(r.ws);
    cudaFree(r.y);
    cudaFree(c.in);
    cudaFree(c.w);
    cudaFree(c.b);
    cudaFree(c.ours);
    cudaFree(c.state);
    cudnnDestroyTensorDescriptor(r.xd);
    cudnnDestroyTensorDescriptor(r.yd);
    cudnnDestroyTensorDescriptor(r.bd);
    cudnnDestroyFilterDescriptor(r.fd);
    cudnnDestroyConvolutionDescriptor(r.cd);
    cudnnDestroyActivationDescriptor(r.ad);
    cudaStreamDestroy(c.st);
}

int main(int argc, char **argv) {
    int di = 8192, K = 4, reps = 50;
    char shapes[256] = "1x512,1x2048,8x512";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--di") && i + 1 < argc) di = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--k") && i + 1 < argc) K = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--shapes") && i + 1 < argc) snprintf(shapes, sizeof shapes, "%s", argv[++i]);
        else {
            fprintf(stderr, "usage: conv_bench [--di 8192] [--k 4] [--shapes 1x512,1x2048,8x512] [--reps 50]\n");
            return 2;
        }
    }
    if (di < 1 || K < 2 || K > 16 || reps < 1) {
        fprintf(stderr, "conv_bench: bad --di, --k or --reps\n");
        return 2;
    }
    cudaDeviceProp prop;
    CU(cudaGetDeviceProperties(&prop, 0));
    cudnnHandle_t h;
    DNN(cudnnCreate(&h));
    printf("# conv_bench: %s, cuDNN %zu, d_inner %d, d_conv %d, %d reps\n\n", prop.name, cudnnGetVersion(), di, K, reps);
    printf("| rows | ours: us (in + out GB/s) | cuDNN conv + bias + silu: us (GB/s) | cuDNN conv alone: us | cuDNN "
           "algorithm | max diff / max y |\n|---|---|---|---|---|---|\n");
    for (char *tok = strtok(shapes, ","); tok; tok = strtok(NULL, ",")) {
        int P = 0, L = 0;
        if (sscanf(tok, "%dx%d", &P, &L) != 2 || P < 1 || P > CU_MAX_SEGS || L < 1) {
            fprintf(stderr, "conv_bench: bad shape '%s' (PxL, P <= %d)\n", tok, CU_MAX_SEGS);
            return 2;
        }
        bench_shape(P, L, di, K, reps, h);
    }
    cudnnDestroy(h);
    return 0;
}
