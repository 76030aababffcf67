/* cpu_kernels.h - the CPU backend's inner loops, one table per instruction set, picked once at init
 * (cpu_dispatch.c). Every table entry has a scalar version (kernels_scalar.c); the SIMD versions
 * (kernels_avx2.c, kernels_avx512.c) are tested against it and against the reference path.
 *
 * Matrix products here compute, for output columns j in [j0, j1) of one weight matrix W (rows x K):
 *   y[i*ldy + j] = (accumulate ? y[i*ldy + j] : 0) + dot(W row j, x row i) + (bias ? bias[j] : 0)
 * for the n rows of x (row stride K). Weights are read once per call whatever n is.
 */
#ifndef FM_CPU_KERNELS_H
#define FM_CPU_KERNELS_H

#include "cpu_internal.h"

/* Most activation rows a GEMV call handles at once; larger batches go through the GEMM. */
#define CPU_GEMV_MAX_ROWS 8

/* One block of 32 activations quantized to int8 for the Q8_0/Q4_0 integer dot products (the same
   rounding as Q8_0 weights: d = amax / 127); sum = sum of q, for Q4_0's offset of 8. */
typedef struct cpu_xblock {
    float d;
    int32_t sum;
    int8_t q[FM_QBLOCK];
} cpu_xblock;

typedef struct cpu_gemv_args {
    const fm_weight *W;
    size_t j0, j1;
    const float *x;       /* float activations [n][K] (float weight types) */
    const cpu_xblock *xq; /* quantized activations [n][K/32] (Q8_0 / Q4_0 weights) */
    size_t n;
    float *y;
    size_t ldy;
    const float *bias;
    int accumulate;
    const void *xp; /* xq rearranged by the table's pack_x ([n] rows of pack_x_bytes), where it has one */
} cpu_gemv_args;

/* The selective scan for channels [c0, c1) of every row of one segment (see cpu_ssm.c):
   s = exp(delta*A) * s + delta*B*u;  y = (s . C + D*u) * gate. */
typedef struct cpu_scan_args {
    size_t n_rows, d_state;
    const float *delta, *u, *gate; /* [n_rows][ld] with ld = d_inner, already softplus'ed / silu'ed */
    size_t ld;
    const float *B, *C;            /* row r's B at B + r*ldbc, C likewise */
    size_t ldbc;
    const float *A, *D;            /* [d_inner][d_state], [d_inner] */
    float *state;                  /* [d_inner][d_state] */
    float *y;                      /* [n_rows][ld] */
} cpu_scan_args;

/* Panel-packed GEMM for many rows (prefill): same contract as the GEMV with any n. scratch holds
   CPU_GEMM_SCRATCH_FLOATS floats (64-byte aligned) for the calling thread. */
#define CPU_GEMM_KB 256
#define CPU_GEMM_NB 32
#define CPU_GEMM_SCRATCH_FLOATS (2 * CPU_GEMM_KB * CPU_GEMM_NB) /* the panel, then a row buffer as large */

typedef struct cpu_kernels {
    const char *name;
    void (*gemv[5])(const cpu_gemv_args *a); /* indexed by fm_dtype */
    void (*quantize_x)(const float *x, size_t K, cpu_xblock *out); /* one row */
    /* Optional (NULL: the quantized GEMVs read xq): one row of quantize_x's blocks rearranged into the
       layout this table's GEMV for weight type t reads from cpu_gemv_args.xp, pack_x_bytes(t, K)
       bytes (a multiple of 64; 0: that type's GEMV reads xq). */
    size_t (*pack_x_bytes)(fm_dtype t, size_t K);
    void (*pack_x)(fm_dtype t, const cpu_xblock *xq, size_t K, void *out);
    /* One weight row to Q8_0 or Q4_0 (t), bit-identical to quant.h's reference quantizers. */
    void (*quantize_row)(fm_dtype t, const float *x, void *out, size_t cols);
    /* Optional (NULL: cpu_weight_slice_f32): n values of an f32/f16/bf16 row to fp32, at load. */
    void (*widen)(fm_dtype t, const void *src, float *dst, size_t n);
    void (*gemm)(const cpu_gemv_args *a, float *scratch);           /* NULL: use the reference path */
    void (*scan)(const cpu_scan_args *a, size_t c0, size_t c1);
    /* In place over n values: v = softplus(v) (torch threshold 20) and g = silu(g). */
    void (*softplus)(float *v, size_t n);
    void (*silu)(float *v, size_t n);
} cpu_kernels;

const cpu_kernels *cpu_kernels_scalar(void);
const cpu_kernels *cpu_kernels_avx2(void);   /* NULL if not compiled in */
const cpu_kernels *cpu_kernels_avx512(void); /* NULL if not compiled in */

/* The best table this CPU runs, or the one FM_CPU_ISA=scalar|avx2|avx512 names (if supported). */
const cpu_kernels *cpu_kernels_select(void);
/* Whether this CPU can run a table (cpuid + OS state). */
int cpu_kernels_supported(const cpu_kernels *k);

/* The backend's conv1d (cpu_conv.c) on an explicit pool and table (tests compare it with
   cpu_conv1d_reference). */
struct cpu_pool;
void cpu_conv1d_run(struct cpu_pool *pool, const cpu_kernels *k, const fm_conv_args *a);

/* Helpers shared by the kernel files. */
/* Widen W[row][k0 .. k0+len) to fp32 (k0 and len multiples of 32 for quantized W). */
void cpu_weight_slice_f32(const fm_weight *W, size_t row, size_t k0, size_t len, float *dst);

#endif
