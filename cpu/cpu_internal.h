/* cpu_internal.h - what the CPU backend's files share. Includes only the vtable header. */
#ifndef FM_CPU_INTERNAL_H
#define FM_CPU_INTERNAL_H

#include "backend.h"

struct fm_weight {
    fm_dtype dtype;
    int64_t rows, cols;
    void *data;       /* rows * cols elements of dtype: 64-byte aligned when owned, else a pointer
                         into the mapped checkpoint (2-byte aligned at least) */
    size_t bytes;
    size_t row_bytes; /* bytes of one row */
    int owned;
};

struct cpu_pool;
struct cpu_kernels;

typedef struct cpu_backend {
    const fm_backend_host *host;
    int32_t n_threads;
    struct cpu_pool *pool;
    const struct cpu_kernels *k; /* the kernel table for this CPU (cpu_dispatch.c) */
    int weights_in_place;        /* FM_CPU_WEIGHTS_IN_PLACE=1: point into the mapped checkpoint */
} cpu_backend;

#define CPU_ERR(be, status, ...) ((be)->host->set_error((status), __VA_ARGS__), (status))

enum { CPU_OK = FM_BE_OK, CPU_ERR_OOM = FM_BE_ERR_OUT_OF_MEMORY, CPU_ERR_ARG = FM_BE_ERR_INVALID_ARGUMENT };

void *cpu_aligned_alloc(size_t bytes);

/* Convert cols elements of row r of W to fp32. */
void cpu_weight_row_f32(const fm_weight *W, int64_t r, float *dst);

/* The reference matrix product (widen + OpenBLAS sgemm or plain loops): the oracle, and the path
   for many rows where the kernel table has no GEMM. */
int cpu_matmul_reference(cpu_backend *be, const fm_weight *W, const fm_weight *b, const float *x, size_t n, float *y,
                         int accumulate);

int cpu_matmul(void *be, const fm_weight *W, const fm_weight *b, const float *x, size_t n, float *y, int accumulate);
int cpu_embed(void *be, const fm_weight *E, const int32_t *tokens, size_t n, float *x);
int cpu_rmsnorm(void *be, const float *x, const fm_weight *w, size_t n, size_t d, float eps, float *y);
int cpu_conv1d(void *be, const fm_conv_args *a);           /* cpu_conv.c */
int cpu_conv1d_reference(void *be, const fm_conv_args *a); /* cpu_ops.c: the oracle */
int cpu_ssm(void *be, const fm_ssm_args *a);

#endif
