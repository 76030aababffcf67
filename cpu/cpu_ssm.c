/* cpu_ssm.c - reference selective SSM over a segment's rows:
 *   dt, B, C = rmsnorm(.) (FalconMamba only); delta = softplus(dt_proj(dt) + dt_bias)
 *   s = exp(delta * A) * s + delta * B * u;  y = s . C + D * u;  y *= silu(z)
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_internal.h"

static inline float softplus(float v) { return v > 20.0f ? v : log1pf(expf(v)); } /* torch's threshold */
static inline float silu(float v) { return v / (1.0f + expf(-v)); }

static void rms_inplace(float *v, size_t n, float eps) {
    double ss = 0.0;
    for (size_t i = 0; i < n; i++) ss += (double)v[i] * v[i];
    float scale = (float)(1.0 / sqrt(ss / (double)n + (double)eps));
    for (size_t i = 0; i < n; i++) v[i] *= scale;
}

int cpu_ssm(void *vbe, const fm_ssm_args *a) {
    cpu_backend *be = vbe;
    const size_t di = (size_t)a->d_inner, N = (size_t)a->d_state, R = (size_t)a->dt_rank;
    const size_t ldx = R + 2 * N;
    size_t rows = 0;
    for (size_t s = 0; s < a->n_segs; s++) rows += (size_t)a->segs[s].n_rows;

    /* dt/B/C after the optional norm for all rows, then delta for all rows with one matmul. */
    float *dbc = malloc(rows * ldx * sizeof(float));
    float *dt_in = malloc(rows * R * sizeof(float));
    float *delta = malloc(rows * di * sizeof(float));
    if (!dbc || !dt_in || !delta) {
        free(dbc);
        free(dt_in);
        free(delta);
        return CPU_ERR(be, CPU_ERR_OOM, "cpu backend: out of memory in ssm");
    }
    memcpy(dbc, a->xdbl, rows * ldx * sizeof(float));
    for (size_t r = 0; r < rows; r++) {
        float *row = dbc + r * ldx;
        if (a->norm_dt_b_c) {
            rms_inplace(row, R, a->norm_eps);
            rms_inplace(row + R, N, a->norm_eps);
            rms_inplace(row + R + N, N, a->norm_eps);
        }
        memcpy(dt_in + r * R, row, R * sizeof(float));
    }
    int st = cpu_matmul(be, a->dt_w, a->dt_b, dt_in, rows, delta, 0);
    if (st == CPU_OK) {
        const float *A = a->A->data, *D = a->D->data;
        for (size_t s = 0; s < a->n_segs; s++) {
            const fm_segment *sg = &a->segs[s];
            for (size_t t = 0; t < (size_t)sg->n_rows; t++) {
                const size_t r = (size_t)sg->row0 + t;
                const float *B = dbc + r * ldx + R, *C = B + N;
                for (size_t c = 0; c < di; c++) {
                    const float dl = softplus(delta[r * di + c]);
                    const float u = a->u[r * di + c];
                    float *sc = sg->ssm_state + c * N;
                    float y = 0.0f;
                    for (size_t k = 0; k < N; k++) {
                        sc[k] = expf(dl * A[c * N + k]) * sc[k] + dl * B[k] * u;
                        y += sc[k] * C[k];
                    }
                    y += D[c] * u;
                    a->y[r * di + c] = y * silu(a->z[r * a->ld_z + c]);
                }
            }
        }
    }
    free(dbc);
    free(dt_in);
    free(delta);
    return st;
}
