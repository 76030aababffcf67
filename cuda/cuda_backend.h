/* cuda_backend.h - the CUDA backend's host-side state (C). Kernels are in k_*.cu (cuda_internal.h). */
#ifndef FM_CUDA_BACKEND_H
#define FM_CUDA_BACKEND_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "backend.h"
#include "cuda_internal.h"

struct fm_weight {
    cu_wview v;        /* what kernels see */
    void *alloc;       /* the device allocation (data, then scales for quantized types) */
    size_t bytes;      /* weight_bytes: quantized = rows * cols/32 * block size, as quant.h */
};

#define CU_MAX_GRAPHS 32
#define CU_MAX_GRAPH_SEQS 1024

typedef struct cu_graph {
    uint64_t key[14];
    size_t n_key;
    cudaGraphExec_t exec; /* NULL until captured */
    int seen;             /* steps with this key run so far */
    uint64_t last_use;
} cu_graph;

/* One tracked device allocation (for used/peak and error messages). */
typedef struct cu_alloc {
    void *p;
    size_t bytes;
} cu_alloc;

typedef struct cu_backend {
    const fm_backend_host *host;
    int device;
    int sm_count;
    cudaStream_t stream;
    cublasHandle_t blas;
    void *blas_ws;
    size_t blas_ws_bytes;
    pthread_mutex_t lock; /* recursive: every entry point; held from step_begin to step_end */
    int exact;            /* FM_CUDA_EXACT=1: fp32 activations in cuBLAS products too */
    int fast;             /* FM_CUDA_FAST=1: one bf16/f16 product per matmul (activations rounded) */
    int graphs_on;        /* FM_CUDA_GRAPHS=0 turns decode graphs off */
    int stack_on;         /* FM_CUDA_STACK=0: hi and lo as two products even for decode batches */
    int scan_chunked;     /* FM_CUDA_SCAN: 0 = every scan sequential (k_ssm_scan), 1 = chunked for long
                             segments (default), 2 = chunked for all */

    /* the layers kernel (cuda_layers.c): on with FM_CUDA_LAYERS=1 (2: declining is an error); its
       device weight table, the host copy it was made from, and its grid barrier's counter */
    int layers_on;
    int fused_on;         /* FM_CUDA_FUSED=0 turns cu_fused_layers off (the core's per-op path instead) */
    cu_layer *layer_tab, *layer_tab_host;
    size_t layer_tab_n;
    unsigned *layer_bar;
    /* FM_CUDA_LAYERS_PROFILE=1 (with FM_CUDA_GRAPHS=0): phase times of block 0, summed over the steps
       and printed to stderr when the context closes */
    int layer_profile;
    unsigned long long *layer_prof_dev, layer_prof[CU_LAYERS_PHASES];
    size_t layer_prof_steps;
    int layer_prof_nl;

    /* memory accounting */
    cu_alloc *allocs;
    size_t n_allocs, cap_allocs;
    size_t used, peak;

    /* scratch (device): matmul internals (narrowed activations, dequantized weight chunks) and the
       ssm prefill (norms, delta); grown on demand, never inside a capture */
    void *mm_scratch;
    size_t mm_scratch_bytes;
    size_t mm_chunk; /* bytes of weights dequantized per cuBLAS call (FM_CUDA_DQ_CHUNK_MB) */
    void *ssm_scratch;
    size_t ssm_scratch_bytes;

    /* weight upload staging: two pinned host buffers and two device buffers, alternated */
    void *pin[2], *stage[2];
    cudaEvent_t stage_ev[2];
    size_t stage_bytes;
    int stage_i;

    /* decode graphs */
    cu_graph graphs[CU_MAX_GRAPHS];
    uint64_t use_clock;
    int capturing;
    cu_graph *cap_graph;
    float *const *cap_states;  /* host copy of the step's state pointers while capturing */
    float **cap_states_buf;
    size_t cap_n;
    void *step_pin;           /* pinned: tokens then state pointers of the next step */
    int32_t *step_tok_dev;    /* device copies */
    float **step_bases_dev;
    cudaEvent_t step_ev;      /* the last upload from step_pin */
} cu_backend;

/* Errors: report through the host and return the status. */
int cu_fail(cu_backend *be, int status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
int cu_err(cu_backend *be, cudaError_t e, const char *what);
int cu_blas_err(cu_backend *be, cublasStatus_t s, const char *what);

/* Device memory with accounting; NULL after reporting FM_BE_ERR_OUT_OF_MEMORY / _BACKEND. */
void *cu_malloc(cu_backend *be, size_t bytes, const char *what);
void cu_free(cu_backend *be, void *p);
/* Grow *buf to at least bytes (contents not kept). */
int cu_reserve(cu_backend *be, void **buf, size_t *have, size_t bytes, const char *what);

/* Ops (cuda_ops.c). */
int cu_embed(void *be, const fm_weight *E, const int32_t *tokens, size_t n, float *x);
int cu_rmsnorm(void *be, const float *x, const fm_weight *w, size_t n, size_t d, float eps, float *y);
int cu_matmul(void *be, const fm_weight *W, const fm_weight *b, const float *x, size_t n, float *y, int accumulate);
int cu_matmul_locked(cu_backend *be, const fm_weight *W, const float *bias, const float *x, size_t n, float *y,
                     int accumulate);
int cu_conv1d(void *be, const fm_conv_args *a);
int cu_ssm(void *be, const fm_ssm_args *a);
/* The same with the lock already held (cu_enter), for composite entry points. */
int cu_conv1d_locked(cu_backend *be, const fm_conv_args *a);
int cu_ssm_locked(cu_backend *be, const fm_ssm_args *a);
/* A kernel launch table for segments [s0, s0 + cnt) (in a capture: offsets from the step's slot bases). */
int cu_segtab_fill(cu_backend *be, const fm_segment *segs, size_t s0, size_t cnt, cu_segtab *t);
/* Scratch the ops need for n rows of m's shapes (called before a capture). */
int cu_reserve_rows(cu_backend *be, size_t rows, size_t max_cols);

/* The decode_layers entry (cuda_layers.c): a one-sequence step's layers in one persistent kernel
   (FM_CUDA_LAYERS=1), else through cu_fused_layers, else declined. */
int cu_decode_layers(void *be, const fm_layers_args *a, int *done);
/* A one-sequence step's layers as four launches per layer (cuda_fused.c); lock held. */
int cu_fused_layers(cu_backend *be, const fm_layers_args *a, int *done);

/* Weights (cuda_weights.c). */
int cu_weight_create(void *be, const fm_weight_desc *d, fm_weight **out);
void cu_weight_free(void *be, fm_weight *w);
size_t cu_weight_bytes(const fm_weight *w);
void cu_staging_release(cu_backend *be);

/* Decode graphs (cuda_graph.c). */
int cu_step_begin(void *be, const fm_step_desc *d, int *replayed);
int cu_step_end(void *be, int status);
void cu_graphs_destroy(cu_backend *be);

/* Device-synchronising calls (cudaMalloc, cudaFree, cudaFreeHost, cudaMallocHost, handle and stream
   creation and teardown) between cu_sync_begin / cu_sync_end; a graph capture between
   cu_capture_hold / cu_capture_release, so no other thread's such call lands inside it
   (cuda_backend.c). */
void cu_sync_begin(void);
void cu_sync_end(void);
void cu_capture_hold(void);
void cu_capture_release(void);

/* Every entry point: lock, and make the context's device current on this thread. */
int cu_enter(cu_backend *be);
void cu_leave(cu_backend *be);

#endif
