/* cpu_conv.c - the causal depthwise conv1d (+ bias, silu, state update) the CPU backend runs:
 * cpu_ops.c's reference, reorganised for speed. Channels are split across the worker threads; each
 * thread walks its channels in blocks, time-major, so every input row is read contiguously (the
 * reference walks one channel down the rows, a stride of ld_in floats per step) and the taps run as
 * vectorisable loops over the block's channels, with the kernel table's silu over each output run.
 * Same arithmetic as the reference (fp32: the bias, then the taps in order), so results differ only by
 * the table's silu. */
#include <string.h>

#include "cpu_internal.h"
#include "cpu_kernels.h"
#include "cpu_pool.h"

#define CONV_BLOCK 256 /* channels per inner block: taps transposed on the stack */
#define CONV_MAX_K 8   /* wider kernels take the reference */

typedef struct conv_job {
    const cpu_kernels *k;
    const fm_conv_args *a;
} conv_job;

static void conv_task(void *v, size_t c_begin, size_t c_end, int tid) {
    (void)tid;
    const conv_job *job = v;
    const fm_conv_args *a = job->a;
    const size_t di = (size_t)a->d_inner, K = (size_t)a->d_conv, km1 = K - 1;
    const float *w = a->w->data, *b = a->b ? (const float *)a->b->data : NULL;
    float wt[CONV_MAX_K][CONV_BLOCK]; /* wt[k][c - c0] = w[c][k] */
    float hist[CONV_MAX_K][CONV_BLOCK]; /* the saved inputs of the block, time-major */
    for (size_t c0 = c_begin; c0 < c_end; c0 += CONV_BLOCK) {
        const size_t nb = c_end - c0 < CONV_BLOCK ? c_end - c0 : CONV_BLOCK;
        for (size_t c = 0; c < nb; c++)
            for (size_t k = 0; k < K; k++) wt[k][c] = w[(c0 + c) * K + k];
        for (size_t s = 0; s < a->n_segs; s++) {
            const fm_segment *sg = &a->segs[s];
            const size_t r0 = (size_t)sg->row0, n = (size_t)sg->n_rows;
            float *state = sg->conv_state;
            for (size_t j = 0; j < km1; j++)
                for (size_t c = 0; c < nb; c++) hist[j][c] = state[(c0 + c) * km1 + j];
            for (size_t t = 0; t < n; t++) {
                float *o = a->out + (r0 + t) * di + c0;
                float acc[CONV_BLOCK];
                for (size_t c = 0; c < nb; c++) acc[c] = b ? b[c0 + c] : 0.0f;
                for (size_t k = 0; k < K; k++) {
                    /* input at time t - (K-1) + k; negative times come from the saved state */
                    const ptrdiff_t tt = (ptrdiff_t)t - (ptrdiff_t)km1 + (ptrdiff_t)k;
                    const float *src = tt >= 0 ? a->in + (r0 + (size_t)tt) * a->ld_in + c0 : hist[(ptrdiff_t)km1 + tt];
                    const float *wk = wt[k];
                    for (size_t c = 0; c < nb; c++) acc[c] += wk[c] * src[c];
                }
                memcpy(o, acc, nb * sizeof *o);
                job->k->silu(o, nb);
            }
            /* new state: the last K-1 inputs of (old state ++ segment) */
            for (size_t j = 0; j < km1; j++) {
                const ptrdiff_t pos = (ptrdiff_t)n - (ptrdiff_t)km1 + (ptrdiff_t)j;
                const float *src = pos >= 0 ? a->in + (r0 + (size_t)pos) * a->ld_in + c0 : hist[(ptrdiff_t)km1 + pos];
                for (size_t c = 0; c < nb; c++) state[(c0 + c) * km1 + j] = src[c];
            }
        }
    }
}

void cpu_conv1d_run(cpu_pool *pool, const cpu_kernels *k, const fm_conv_args *a) {
    conv_job job = {k, a};
    /* one range of channels per thread, starting on a multiple of 64 so threads' output runs do not
       share cache lines */
    cpu_pool_run(pool, (size_t)a->d_inner, 64, conv_task, &job);
}

int cpu_conv1d(void *vbe, const fm_conv_args *a) {
    cpu_backend *be = vbe;
    if (a->d_conv < 1 || a->d_conv > CONV_MAX_K) return cpu_conv1d_reference(vbe, a);
    cpu_conv1d_run(be->pool, be->k, a);
    return CPU_OK;
}
