/* kernels_scalar.c - portable versions of every kernel in cpu_kernels.h: the fallback on any CPU
   and the oracle the SIMD tables are tested against. */
#include <math.h>
#include <string.h>

#include "cpu_kernels.h"

void cpu_weight_slice_f32(const fm_weight *W, size_t row, size_t k0, size_t len, float *dst) {
    const unsigned char *p = (const unsigned char *)W->data + row * W->row_bytes;
    switch (W->dtype) {
    case FM_DTYPE_F32: memcpy(dst, p + 4 * k0, len * sizeof(float)); break;
    case FM_DTYPE_Q8_0: fm_dequantize_row_q8_0((const fm_block_q8_0 *)p + k0 / FM_QBLOCK, dst, len); break;
    case FM_DTYPE_Q4_0: fm_dequantize_row_q4_0((const fm_block_q4_0 *)p + k0 / FM_QBLOCK, dst, len); break;
    case FM_DTYPE_BF16: { /* one loop per type: the compiler vectorises the widening */
        const unsigned char *h = p + 2 * k0;
        for (size_t i = 0; i < len; i++) {
            uint16_t v;
            memcpy(&v, h + 2 * i, 2);
            dst[i] = fm_bf16_to_f32(v);
        }
        break;
    }
    case FM_DTYPE_F16: {
        const unsigned char *h = p + 2 * k0;
        for (size_t i = 0; i < len; i++) {
            uint16_t v;
            memcpy(&v, h + 2 * i, 2);
            dst[i] = fm_f16_to_f32(v);
        }
        break;
    }
    }
}

static inline void put(const cpu_gemv_args *a, size_t i, size_t j, float v) {
    float *o = a->y + i * a->ldy + j;
    if (a->bias) v += a->bias[j];
    *o = a->accumulate ? *o + v : v;
}

static void gemv_float(const cpu_gemv_args *a) {
    const fm_weight *W = a->W;
    const size_t K = (size_t)W->cols;
    for (size_t j = a->j0; j < a->j1; j++) {
        const unsigned char *row = (const unsigned char *)W->data + j * W->row_bytes;
        for (size_t i = 0; i < a->n; i++) {
            const float *x = a->x + i * K;
            float acc[8] = {0};
            size_t k = 0;
            for (; k + 8 <= K; k += 8)
                for (int l = 0; l < 8; l++) acc[l] += fm_dtype_load_f32(row, W->dtype, k + l) * x[k + l];
            float s = 0.0f;
            for (; k < K; k++) s += fm_dtype_load_f32(row, W->dtype, k) * x[k];
            for (int l = 0; l < 8; l++) s += acc[l];
            put(a, i, j, s);
        }
    }
}

static void gemv_q8_0(const cpu_gemv_args *a) {
    const size_t nb = (size_t)a->W->cols / FM_QBLOCK;
    for (size_t j = a->j0; j < a->j1; j++) {
        const fm_block_q8_0 *w = (const fm_block_q8_0 *)((const unsigned char *)a->W->data + j * a->W->row_bytes);
        for (size_t i = 0; i < a->n; i++) {
            const cpu_xblock *x = a->xq + i * nb;
            float s = 0.0f;
            for (size_t b = 0; b < nb; b++) {
                int32_t dot = 0;
                for (int l = 0; l < FM_QBLOCK; l++) dot += (int32_t)w[b].q[l] * x[b].q[l];
                s += fm_f16_to_f32(w[b].d) * x[b].d * (float)dot;
            }
            put(a, i, j, s);
        }
    }
}

static void gemv_q4_0(const cpu_gemv_args *a) {
    const size_t nb = (size_t)a->W->cols / FM_QBLOCK;
    for (size_t j = a->j0; j < a->j1; j++) {
        const fm_block_q4_0 *w = (const fm_block_q4_0 *)((const unsigned char *)a->W->data + j * a->W->row_bytes);
        for (size_t i = 0; i < a->n; i++) {
            const cpu_xblock *x = a->xq + i * nb;
            float s = 0.0f;
            for (size_t b = 0; b < nb; b++) {
                int32_t dot = 0;
                for (int l = 0; l < FM_QBLOCK / 2; l++) {
                    dot += (int32_t)(w[b].qs[l] & 0x0f) * x[b].q[l];
                    dot += (int32_t)(w[b].qs[l] >> 4) * x[b].q[l + FM_QBLOCK / 2];
                }
                s += fm_f16_to_f32(w[b].d) * x[b].d * (float)(dot - 8 * x[b].sum);
            }
            put(a, i, j, s);
        }
    }
}

static void quantize_x(const float *x, size_t K, cpu_xblock *out) {
    for (size_t b = 0; b < K / FM_QBLOCK; b++) {
        const float *v = x + b * FM_QBLOCK;
        float amax = 0.0f;
        for (int l = 0; l < FM_QBLOCK; l++) amax = fmaxf(amax, fabsf(v[l]));
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        int32_t sum = 0;
        for (int l = 0; l < FM_QBLOCK; l++) {
            out[b].q[l] = (int8_t)roundf(v[l] * id);
            sum += out[b].q[l];
        }
        out[b].d = d;
        out[b].sum = sum;
    }
}

static void quantize_row(fm_dtype t, const float *x, void *out, size_t cols) {
    if (t == FM_DTYPE_Q8_0) fm_quantize_row_q8_0(x, out, cols);
    else fm_quantize_row_q4_0(x, out, cols);
}

static void scan(const cpu_scan_args *a, size_t c0, size_t c1) {
    const size_t N = a->d_state;
    for (size_t c = c0; c < c1; c++) {
        float *s = a->state + c * N;
        const float *A = a->A + c * N;
        for (size_t t = 0; t < a->n_rows; t++) {
            const float dl = a->delta[t * a->ld + c], u = a->u[t * a->ld + c];
            const float *B = a->B + t * a->ldbc, *C = a->C + t * a->ldbc;
            float y = 0.0f;
            for (size_t k = 0; k < N; k++) {
                s[k] = expf(dl * A[k]) * s[k] + dl * B[k] * u;
                y += s[k] * C[k];
            }
            a->y[t * a->ld + c] = (y + a->D[c] * u) * a->gate[t * a->ld + c];
        }
    }
}

static void softplus(float *v, size_t n) {
    for (size_t i = 0; i < n; i++) v[i] = v[i] > 20.0f ? v[i] : log1pf(expf(v[i]));
}

static void silu(float *v, size_t n) {
    for (size_t i = 0; i < n; i++) v[i] = v[i] / (1.0f + expf(-v[i]));
}

static const cpu_kernels k_scalar = {
    .name = "scalar",
    .gemv = {gemv_float, gemv_float, gemv_float, gemv_q8_0, gemv_q4_0},
    .quantize_x = quantize_x,
    .quantize_row = quantize_row,
    .gemm = NULL,
    .scan = scan,
    .softplus = softplus,
    .silu = silu,
};

const cpu_kernels *cpu_kernels_scalar(void) { return &k_scalar; }
