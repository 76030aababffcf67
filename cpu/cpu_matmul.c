/* cpu_matmul.c - y (+)= W x + b for a batch of rows, weights in f32/bf16/f16.
 *
 * Reference path: weights are widened to fp32 a block of rows at a time, so each weight byte is read
 * once per call whatever the batch size. With OpenBLAS the block product is an sgemm; without it, a
 * plain dot-product loop. Speed is issue 5's; this is the oracle.
 */
#include <stdlib.h>
#include <string.h>

#include "cpu_internal.h"

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

int cpu_matmul(void *vbe, const fm_weight *W, const fm_weight *b, const float *x, size_t n, float *y, int accumulate) {
    cpu_backend *be = vbe;
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
