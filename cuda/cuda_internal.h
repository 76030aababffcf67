/* cuda_internal.h - what the CUDA backend's C host code and its kernels (.cu) share. Plain C, so
   it is included by both sides; the host side alone includes src/backend.h. */
#ifndef FM_CUDA_INTERNAL_H
#define FM_CUDA_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Storage types: the values of fm_dtype (backend.h). */
enum { CU_F32 = 0, CU_F16 = 1, CU_BF16 = 2, CU_Q8_0 = 3, CU_Q4_0 = 4 };
#define CU_QBLOCK 32

/* A weight as the kernels see it. Quantized matrices keep quant.h's blocks split into two planes:
   `data` = the quants of every row back to back (Q8_0: cols int8 per row; Q4_0: cols/2 bytes per
   row, each block's 16 bytes in quant.h's nibble order), `scales` = the fp16 block scales
   [rows][cols/32]. Same values as the interleaved blocks, but 16-byte aligned for 128-bit loads. */
typedef struct cu_wview {
    int32_t dtype;
    int64_t rows, cols;
    const void *data;
    const uint16_t *scales; /* quantized only */
} cu_wview;

/* Up to CU_MAX_SEGS segments per kernel launch, passed by value. With `bases` (a device array, in
   captured decode graphs) segment i's state pointers are bases[first + i] + conv_off / + ssm_off,
   so a graph replays on whatever slots were uploaded before it; otherwise conv[i] / ssm[i]. */
#define CU_MAX_SEGS 64
typedef struct cu_segtab {
    int32_t n;
    int32_t first;
    int32_t row0[CU_MAX_SEGS];
    int32_t nrows[CU_MAX_SEGS];
    float *conv[CU_MAX_SEGS];
    float *ssm[CU_MAX_SEGS];
    float *const *bases;
    int64_t conv_off, ssm_off;
} cu_segtab;

/* Tokens passed by value to the embedding kernel (eager mode); in graphs they come from a device array. */
#define CU_MAX_TOK_PARAM 512

/* Programmatic dependent launch for the decode-path kernels (k_common.cuh); set by the host at
   context open: on when every device opened so far is sm_90+ and FM_CUDA_PDL is not 0. */
void cuk_set_pdl(int on);
/* L2 prefetch of the GEMV blocks' weight rows (k_common.cuh): off unless FM_CUDA_PREFETCH=1. */
void cuk_set_prefetch(int on);

/* Kernel launchers (cuda/k_*.cu). Each enqueues on stream and returns cudaGetLastError(). */
cudaError_t cuk_embed(cudaStream_t s, cu_wview E, const int32_t *tok_host, const int32_t *tok_dev, int n, float *x);
cudaError_t cuk_rmsnorm(cudaStream_t s, const float *x, const float *w, int n, int d, float eps, float *y);
cudaError_t cuk_add_bias(cudaStream_t s, float *y, const float *b, int n, int rows);
/* Convert rows of a source matrix (device, src_dtype F32/F16/BF16) into w's storage, rows
   [row0, row0 + nrows); the quantized types round exactly as quant.h. */
cudaError_t cuk_convert(cudaStream_t s, const void *src, int src_dtype, cu_wview w, int64_t row0, int64_t nrows);
/* y[b][i] (+)= h[b][i] + h[n + b][i], b < n, i < rows; y's rows ldy floats apart (a stacked hi + lo product). */
cudaError_t cuk_add_halves(cudaStream_t s, float *y, size_t ldy, const float *h, int n, int rows, int accumulate);
/* x (fp32, n*cols) -> half type (CU_BF16 or CU_F16) hi, and (if lo) the remainder x - hi. */
cudaError_t cuk_to_half(cudaStream_t s, const float *x, size_t count, int dtype, void *hi, void *lo);
/* Rows [row0, row0 + nrows) of w widened to out_dtype (CU_BF16, CU_F16 or CU_F32) into out. */
cudaError_t cuk_dequant(cudaStream_t s, cu_wview w, int64_t row0, int64_t nrows, int out_dtype, void *out);

/* y[n][rows] (+)= x[n][cols] W^T + b for n <= CU_GEMV_MAX_N, fp32 activations. */
#define CU_GEMV_MAX_N 8
cudaError_t cuk_gemv(cudaStream_t s, cu_wview W, const float *b, const float *x, int n, float *y, int accumulate,
                     int sm_count);
/* Which kernel cuk_gemv uses (process-wide, set at context open from FM_CUDA_GEMV / FM_CUDA_GEMV_TC):
   batch 1: variant 0..3 = the FMA kernel's launch shapes (k_gemv.cu), CU_GEMV_VARIANT_TC = the
   tensor-core kernel; batches > 1: the tensor-core kernel unless tc is 0. The tensor-core kernel only
   takes bf16 / Q8_0 / Q4_0 matrices with cols % 32 == 0, and (unless tc is 2, for tests) >= 16 rows
   per SM, enough row tiles to fill the GPU. */
#define CU_GEMV_VARIANTS 5
#define CU_GEMV_VARIANT_TC 4
#define CU_GEMV_DEFAULT_VARIANT 0
void cuk_set_gemv_variant(int variant, int tc);
/* The tensor-core kernel itself (k_gemv_tc.cu) and whether it can take W and x. */
int cuk_gemv_tc_ok(cu_wview W, const float *x, int n);
cudaError_t cuk_gemv_tc(cudaStream_t s, cu_wview W, const float *b, const float *x, int n, float *y, int accumulate,
                        int sm_count);
/* Batch 1 with Q8_0 / Q4_0 weights: the activations quantized to int8 per block of 32 as the CPU
   backend's quantized kernels do, integer dot products (k_qdot.cuh). cuk_gemv uses them when
   cuk_gemv_dp4a_ok: on (FM_CUDA_QDOT, default 1; 0 = the fp32-activation kernel, as the layers
   kernel computes), cols % 32 == 0, 16-byte aligned, cols <= ~43,000 for its shared memory; through
   the bulk-copy GEMV where that applies, else the register-fed one (k_gemv_dp4a.cu). */
void cuk_set_qdot(int on);
int cuk_gemv_dp4a_ok(cu_wview W, const float *x, int n);
cudaError_t cuk_gemv_dp4a(cudaStream_t s, cu_wview W, const float *b, const float *x, float *y, int accumulate,
                          int sm_count);
/* The bulk-copy batch-1 GEMV (k_gemv_bulk.cu; bf16 weights with fp32 activations, Q8_0 / Q4_0 with
   8-bit ones): sets *taken when it enqueued the product (sm_90+ on every device opened so far, 16-byte
   aligned, bf16 cols % 8 == 0 or quantized cols % 256 == 0, at least one tile per SM). Process-wide
   knobs, set at context open: mode = FM_CUDA_BULK (0 off, 1 default, 2 for tests: every matrix it can
   take however small, on 3 blocks, and an error when smem_kb / tile_kb leave no room); smem_optin =
   the device's cudaDevAttrMaxSharedMemoryPerBlockOptin (the least over the devices opened caps the
   budget); smem_kb = FM_CUDA_BULK_KB (shared memory per block, default 220); tile_kb =
   FM_CUDA_BULK_TILE_KB (largest tile, default 96; bigger tiles measured faster on the H200,
   docs/PERFORMANCE.md). */
void cuk_set_bulk(int mode, int sm90, size_t smem_optin, int smem_kb, int tile_kb);
/* Warps per bulk-copy block, 16 (default) or 8 (FM_CUDA_BULK_WARPS). */
void cuk_set_bulk_warps(int warps);
/* FM_CUDA_BULK_STAGES: 0 (default) = the largest power-of-two tile up to the tile limit; n = tiles of
   fewer rows (any count) until at least n stages fit the budget. */
void cuk_set_bulk_stages(int min_stages);
cudaError_t cuk_gemv_bulk(cudaStream_t s, cu_wview W, const float *b, const float *x, float *y, int accumulate,
                          int sm_count, int *taken);
/* The bulk-copy tensor-core GEMV for decode batches (k_gemv_bulk_tc.cu, tried first by cuk_gemv): bf16,
   Q8_0 or Q4_0 weights, min_n <= n <= 8, cols a multiple of 256 up to 32768 with slices of >= 2048
   columns (quantized: of whole 512-column parts), sm_90+
   (FM_CUDA_BULK as above: 0 turns it off too, 2 forces it onto small matrices), one round of tiles or
   rounds that keep >= 85% of the SMs busy; *taken as for cuk_gemv_bulk. min_n = FM_CUDA_BULK_TC, set
   at context open: the least batch it serves (default 2; 0 = off, n = the register-fed tensor-core
   kernel below n). */
void cuk_set_bulk_tc(int min_n);
cudaError_t cuk_gemv_bulk_tc(cudaStream_t s, cu_wview W, const float *b, const float *x, int n, float *y,
                             int accumulate, int sm_count, int *taken);
/* What the bulk-copy GEMV can fuse around a one-sequence product (cuk_gemv_bulk_fused; zeroed = nothing):
   norm: x is the residual stream and the product takes rmsnorm(x) * norm_w instead (norm_w NULL =
   weightless, eps as the rmsnorm op's); conv_di > 0: rows < conv_di of the output are the conv1d's
   input channels, and each such row's decode conv step follows right in the epilogue (u[row] =
   silu(conv_b + the K taps over its state and the new value), the state shifted, as cuk_conv's decode
   form). The conv state is conv_state, or in a captured graph bases[0] + conv_off (as cu_segtab). */
typedef struct cu_bulk_fuse {
    int32_t norm;
    float eps;
    const float *norm_w;
    int32_t conv_di, conv_k, conv_slots; /* conv_slots: set by the launcher */
    const float *conv_w, *conv_b;        /* [conv_di][conv_k], [conv_di] or NULL */
    float *u;                            /* [conv_di] the conv's output */
    float *conv_state;                   /* [conv_di][conv_k - 1] */
    float *const *bases;
    int64_t conv_off;
} cu_bulk_fuse;
/* y = W x' + b with the fusions of f (accumulate off; x must not be y when f->norm). *taken as for
   cuk_gemv_bulk: when 0 nothing was enqueued and the caller runs the separate kernels. */
cudaError_t cuk_gemv_bulk_fused(cudaStream_t s, cu_wview W, const float *b, const float *x, float *y, int sm_count,
                                const cu_bulk_fuse *f, int *taken);
/* The generic one-warp-per-row kernel, any shape: the reference kernel_bench checks the others against. */
cudaError_t cuk_gemv_reference(cudaStream_t s, cu_wview W, const float *b, const float *x, int n, float *y,
                               int accumulate);

/* conv1d. decode: every segment has one row (fused output + state shift); else outputs then state. */
cudaError_t cuk_conv(cudaStream_t s, const cu_segtab *t, int decode, int total_rows, const float *in, size_t ld_in,
                     float *out, const float *w, const float *b, int di, int K);

/* ssm decode: every segment one row; the whole step in one kernel. */
typedef struct cu_ssm_params {
    const float *xdbl, *u, *z;
    size_t ld_z;
    float *y;
    cu_wview dt_w;
    const float *dt_b, *A, *D;
    int32_t di, N, R, norm;
    float eps;
} cu_ssm_params;
cudaError_t cuk_ssm_decode(cudaStream_t s, const cu_segtab *t, const cu_ssm_params *p);
/* ssm prefill, in three steps: dt/B/C norms (dtn [rows][R], bc [rows][2N]); then the caller's
   delta = dt_proj(dtn) + dt_b; then the scan over each segment's rows, fp32 state. */
cudaError_t cuk_ssm_norm(cudaStream_t s, const float *xdbl, int rows, int R, int N, int norm, float eps, float *dtn,
                         float *bc);
cudaError_t cuk_ssm_scan(cudaStream_t s, const cu_segtab *t, const cu_ssm_params *p, const float *delta,
                         const float *bc);
/* The same scan parallel over time chunks of CU_SCAN_LC rows (k_scan_chunked.cu): scratch holds
   (sum over t's segments of ceil(nrows / CU_SCAN_LC)) x di x (N + 1) floats (may be NULL when no
   segment has more than CU_SCAN_LC rows). */
#define CU_SCAN_LC 64
cudaError_t cuk_scan_chunked(cudaStream_t s, const cu_segtab *t, const cu_ssm_params *p, const float *delta,
                             const float *bc, float *scratch);

/* Every layer of a one-sequence decode step in one persistent kernel (k_layers.cu): per layer the
   rmsnorm, in_proj, conv step, x_proj, SSM step and out_proj + residual, separated by grid-wide
   barriers instead of kernel boundaries. One layer's weights as the kernel reads them: */
typedef struct cu_layer {
    cu_wview in_proj, x_proj, out_proj, dt_proj;
    const float *norm, *in_b, *conv_w, *conv_b, *dt_b, *A, *D, *out_b; /* biases may be NULL */
} cu_layer;
typedef struct cu_layers_params {
    const cu_layer *layers; /* device array of n_layer */
    int32_t n_layer, d, di, N, R, K, norm_dt_b_c;
    float eps, mixer_eps;
    float *x;                    /* [d] the residual stream, updated in place */
    float *xz, *u, *xdbl, *y;    /* scratch: [2 di], [di], [R + 2N], [di] */
    float *state;                /* the sequence's state slot (eager) ... */
    float *const *bases;         /* ... or, in a captured graph, bases[0] */
    unsigned *bar;               /* the grid barrier's counter */
    unsigned long long *prof;    /* NULL, or CU_LAYERS_PHASES phase times (ns, block 0), added to */
} cu_layers_params;
/* Per layer: norm, in_proj + conv, wait, x_proj, wait, SSM, wait, out_proj, wait. */
#define CU_LAYERS_PHASES 9
/* Whether the kernel takes these shapes and weight types (then cuk_layers launches it). */
int cuk_layers_ok(const cu_layers_params *p, int wt);
/* Zeroes *bar and launches the kernel for weight type wt (that of every in/x/out_proj) on the
   device's SMs (cooperative launch, all blocks resident). */
cudaError_t cuk_layers(cudaStream_t s, const cu_layers_params *p, int wt, int sm_count);

#ifdef __cplusplus
}
#endif

#endif
