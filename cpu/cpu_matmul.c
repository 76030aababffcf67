/* cpu_matmul.c - y (+)= W x + b for a batch of rows, weights in f32/bf16/f16/Q8_0/Q4_0.
 *
 * Up to CPU_GEMV_MAX_ROWS rows (decode, batched decode): the kernel table's GEMV, output columns
 * split across the worker threads, each weight byte read once. More rows (prefill): the table's
 * panel-packed GEMM, or, where the table has none, the reference path below: weights widened to fp32
 * a block of rows at a time, then OpenBLAS sgemm (or plain loops without OpenBLAS).
 */
#include <stdlib.h>
#include <string.h>

#include "cpu_internal.h"
#include "cpu_kernels.h"
#include "cpu_pool.h"

#ifdef FM_HAVE_OPENBLAS
#include <cblas.h>
#endif

#define ROW_BLOCK 64

#ifndef FM_HAVE_OPENBLAS
static float dot(const float *a, const float *b, size_t n) {
    float acc[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) acc[k] += a[i + k] * b[i + k];
    float s = 0.0f;
    for (; i < n; i++) s += a[i] * b[i];
    for (int k = 0; k < 8; k++) s += acc[k];
    return s;
}
#endif

/* y[:, j0:j0+nb] (+)= x . Wblk^T, with Wblk [nb][cols] in fp32. */
static void block_product(const float *Wblk, size_t nb, size_t cols, const float *x, size_t n, float *y, size_t ldy,
                          int accumulate) {
#ifdef FM_HAVE_OPENBLAS
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)n, (blasint)nb, (blasint)cols, 1.0f, x,
                (blasint)cols, Wblk, (blasint)cols, accumulate ? 1.0f : 0.0f, y, (blasint)ldy);
#else
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < nb; j++) {
            float v = dot(x + i * cols, Wblk + j * cols, cols);
            y[i * ldy + j] = accumulate ? y[i * ldy + j] + v : v;
        }
#endif
}

int cpu_matmul_reference(cpu_backend *be, const fm_weight *W, const fm_weight *b, const float *x, size_t n, float *y,
                         int accumulate) {
    const size_t rows = (size_t)W->rows, cols = (size_t)W->cols;
    if (W->dtype == FM_DTYPE_F32) {
        block_product(W->data, rows, cols, x, n, y, rows, accumulate);
    } else {
        float *tmp = cpu_aligned_alloc(ROW_BLOCK * cols * sizeof(float));
        if (!tmp) return CPU_ERR(be, CPU_ERR_OOM, "cpu backend: out of memory in matmul");
        for (size_t j0 = 0; j0 < rows; j0 += ROW_BLOCK) {
            size_t nb = rows - j0 < ROW_BLOCK ? rows - j0 : ROW_BLOCK;
            for (size_t j = 0; j < nb; j++) cpu_weight_row_f32(W, (int64_t)(j0 + j), tmp + j * cols);
            block_product(tmp, nb, cols, x, n, y + j0, rows, accumulate);
        }
        free(tmp);
    }
    if (b) {
        const float *bias = b->data;
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < rows; j++) y[i * rows + j] += bias[j];
    }
    return CPU_OK;
}

typedef struct matmul_job {
    const cpu_kernels *k;
    cpu_gemv_args a; /* j0/j1 set per task */
    float *scratch;  /* GEMM: CPU_GEMM_SCRATCH_FLOATS per thread */
} matmul_job;

static void gemv_task(void *v, size_t j0, size_t j1, int tid) {
    (void)tid;
    const matmul_job *job = v;
    cpu_gemv_args a = job->a;
    a.j0 = j0;
    a.j1 = j1;
    job->k->gemv[a.W->dtype](&a);
}

static void gemm_task(void *v, size_t j0, size_t j1, int tid) {
    const matmul_job *job = v;
    cpu_gemv_args a = job->a;
    a.j0 = j0;
    a.j1 = j1;
    job->k->gemm(&a, job->scratch + (size_t)tid * CPU_GEMM_SCRATCH_FLOATS);
}

/* Quantize the n activation rows for the integer dot products. */
typedef struct quant_job {
    const cpu_kernels *k;
    const float *x;
    size_t K;
    cpu_xblock *xq;
} quant_job;

static void quant_task(void *v, size_t i0, size_t i1, int tid) {
    (void)tid;
    const quant_job *q = v;
    for (size_t i = i0; i < i1; i++) q->k->quantize_x(q->x + i * q->K, q->K, q->xq + i * (q->K / FM_QBLOCK));
}

int cpu_matmul(void *vbe, const fm_weight *W, const fm_weight *b, const float *x, size_t n, float *y, int accumulate) {
    cpu_backend *be = vbe;
    const cpu_kernels *k = be->k;
    const size_t rows = (size_t)W->rows, K = (size_t)W->cols;
    const int quant = W->dtype == FM_DTYPE_Q8_0 || W->dtype == FM_DTYPE_Q4_0;
    matmul_job job = {k, {W, 0, rows, x, NULL, n, y, rows, b ? (const float *)b->data : NULL, accumulate, NULL}, NULL};
    if (n == 0) return CPU_OK;
    if (n <= CPU_GEMV_MAX_ROWS) {
        cpu_xblock *xq = NULL;
        unsigned char *xp = NULL;
        if (quant) {
            xq = malloc(n * (K / FM_QBLOCK) * sizeof *xq);
            const size_t pb = k->pack_x ? k->pack_x_bytes(W->dtype, K) : 0;
            if (pb) xp = cpu_aligned_alloc(n * pb);
            if (!xq || (pb && !xp)) {
                free(xq);
                free(xp);
                return CPU_ERR(be, CPU_ERR_OOM, "cpu backend: out of memory in matmul");
            }
            quant_job q = {k, x, K, xq};
            quant_task(&q, 0, n, 0);
            for (size_t i = 0; i < n && pb; i++) k->pack_x(W->dtype, xq + i * (K / FM_QBLOCK), K, xp + i * pb);
            job.a.xq = xq;
            job.a.xp = xp;
        }
        /* Columns in runs of 16 so threads' output stays on separate cache lines. */
        cpu_pool_run(be->pool, rows, 16, gemv_task, &job);
        free(xq);
        free(xp);
        return CPU_OK;
    }
    if (!k->gemm) return cpu_matmul_reference(be, W, b, x, n, y, accumulate);
    const size_t nt = (size_t)cpu_pool_threads(be->pool);
    job.scratch = cpu_aligned_alloc(nt * CPU_GEMM_SCRATCH_FLOATS * sizeof(float));
    if (!job.scratch) return CPU_ERR(be, CPU_ERR_OOM, "cpu backend: out of memory in matmul");
    cpu_pool_run(be->pool, rows, CPU_GEMM_NB, gemm_task, &job);
    free(job.scratch);
    return CPU_OK;
}
