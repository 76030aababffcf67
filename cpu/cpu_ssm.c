/* cpu_ssm.c - the selective SSM over a batch of segments:
 *   dt, B, C = rmsnorm(.) (FalconMamba only); delta = softplus(dt_proj(dt) + dt_bias)
 *   s = exp(delta * A) * s + delta * B * u;  y = s . C + D * u;  y *= silu(z)
 * dt_proj goes through cpu_matmul; softplus, silu and the scan through the kernel table, with the
 * channels split across the worker threads (each channel's recurrence is independent).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_internal.h"
#include "cpu_kernels.h"
#include "cpu_pool.h"

static void rms_inplace(float *v, size_t n, float eps) {
    double ss = 0.0;
    for (size_t i = 0; i < n; i++) ss += (double)v[i] * v[i];
    float scale = (float)(1.0 / sqrt(ss / (double)n + (double)eps));
    for (size_t i = 0; i < n; i++) v[i] *= scale;
}

typedef struct ssm_job {
    const cpu_kernels *k;
    const fm_ssm_args *a;
    size_t ldx;
    const float *dbc;
    float *delta, *gate; /* [rows][d_inner] */
} ssm_job;

/* softplus of delta and silu of the gate, rows [r0, r1). */
static void activate_task(void *v, size_t r0, size_t r1, int tid) {
    (void)tid;
    const ssm_job *j = v;
    const size_t di = (size_t)j->a->d_inner;
    for (size_t r = r0; r < r1; r++) memcpy(j->gate + r * di, j->a->z + r * j->a->ld_z, di * sizeof(float));
    j->k->softplus(j->delta + r0 * di, (r1 - r0) * di);
    j->k->silu(j->gate + r0 * di, (r1 - r0) * di);
}

static void scan_task(void *v, size_t c0, size_t c1, int tid) {
    (void)tid;
    const ssm_job *j = v;
    const fm_ssm_args *a = j->a;
    const size_t di = (size_t)a->d_inner, R = (size_t)a->dt_rank, N = (size_t)a->d_state;
    for (size_t s = 0; s < a->n_segs; s++) {
        const fm_segment *sg = &a->segs[s];
        const size_t r0 = (size_t)sg->row0;
        cpu_scan_args sa = {(size_t)sg->n_rows, N, j->delta + r0 * di, a->u + r0 * di, j->gate + r0 * di, di,
                            j->dbc + r0 * j->ldx + R, j->dbc + r0 * j->ldx + R + N, j->ldx,
                            a->A->data, a->D->data, sg->ssm_state, a->y + r0 * di};
        j->k->scan(&sa, c0, c1);
    }
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
    float *gate = malloc(rows * di * sizeof(float));
    if (!dbc || !dt_in || !delta || !gate) {
        free(dbc);
        free(dt_in);
        free(delta);
        free(gate);
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
        ssm_job job = {be->k, a, ldx, dbc, delta, gate};
        cpu_pool_run(be->pool, rows, 1, activate_task, &job);
        /* channels in runs of 16: whole cache lines of delta/u/gate/y per thread */
        cpu_pool_run(be->pool, di, 16, scan_task, &job);
    }
    free(dbc);
    free(dt_in);
    free(delta);
    free(gate);
    return st;
}
