/* cpu_ops.c - reference embed, rmsnorm and causal depthwise conv1d (+bias, silu, state update); the
   backend runs cpu_conv.c's faster conv1d, which is tested against this one. */
#include <math.h>
#include <string.h>

#include "cpu_internal.h"

int cpu_embed(void *be, const fm_weight *E, const int32_t *tokens, size_t n, float *x) {
    (void)be;
    for (size_t i = 0; i < n; i++) cpu_weight_row_f32(E, tokens[i], x + i * (size_t)E->cols);
    return CPU_OK;
}

int cpu_rmsnorm(void *be, const float *x, const fm_weight *w, size_t n, size_t d, float eps, float *y) {
    (void)be;
    const float *g = w ? (const float *)w->data : NULL;
    for (size_t i = 0; i < n; i++) {
        const float *xr = x + i * d;
        double ss = 0.0;
        for (size_t j = 0; j < d; j++) ss += (double)xr[j] * xr[j];
        float scale = (float)(1.0 / sqrt(ss / (double)d + (double)eps));
        float *yr = y + i * d;
        for (size_t j = 0; j < d; j++) yr[j] = xr[j] * scale * (g ? g[j] : 1.0f);
    }
    return CPU_OK;
}

static inline float silu(float v) { return v / (1.0f + expf(-v)); }

int cpu_conv1d_reference(void *be, const fm_conv_args *a) {
    (void)be;
    const size_t di = (size_t)a->d_inner, K = (size_t)a->d_conv, km1 = K - 1;
    const float *w = a->w->data;
    const float *b = a->b ? (const float *)a->b->data : NULL;
    for (size_t s = 0; s < a->n_segs; s++) {
        const fm_segment *sg = &a->segs[s];
        const size_t r0 = (size_t)sg->row0, n = (size_t)sg->n_rows;
        float *state = sg->conv_state;
        for (size_t c = 0; c < di; c++) {
            const float *wc = w + c * K;
            float *st = state + c * km1;
            for (size_t t = 0; t < n; t++) {
                float acc = b ? b[c] : 0.0f;
                for (size_t k = 0; k < K; k++) {
                    /* input at time t - (K-1) + k; negative times come from the saved state */
                    ptrdiff_t tt = (ptrdiff_t)t - (ptrdiff_t)km1 + (ptrdiff_t)k;
                    float v = tt >= 0 ? a->in[(r0 + (size_t)tt) * a->ld_in + c] : st[(ptrdiff_t)km1 + tt];
                    acc += wc[k] * v;
                }
                a->out[(r0 + t) * di + c] = silu(acc);
            }
            /* New state: the last K-1 inputs of (old state ++ segment). Ascending j reads index
               n + j >= j of the old state, so updating in place is safe. */
            for (size_t j = 0; j < km1; j++) {
                ptrdiff_t pos = (ptrdiff_t)n - (ptrdiff_t)km1 + (ptrdiff_t)j;
                st[j] = pos >= 0 ? a->in[(r0 + (size_t)pos) * a->ld_in + c] : st[(ptrdiff_t)km1 + pos];
            }
        }
    }
    return CPU_OK;
}
