/* k_ssm.cu - the selective SSM (cpu/cpu_ssm.c's reference), fp32 state.
 *
 * Decode (every segment one row): one kernel does the whole step. A block holds 16 channels, 8 lanes
 * each (16 when dt_rank > 256): the block normalises the row's dt/B/C (weightless rmsnorm,
 * FalconMamba) into shared memory, each lane group computes its channel's dt_proj dot and softplus,
 * lane l updates state elements l, l + 8, ... (s = exp(delta*A)*s + delta*B*u), and the lanes reduce
 * y = s.C, add D*u and apply the silu(z) gate.
 *
 * Prefill: dt/B/C norms for all rows (k_ssm_norm), delta = dt_proj(.) + dt_b as a matrix product (the
 * caller's), then k_ssm_scan: parallel over segments, channels and state elements (16 lanes per
 * channel), sequential over the segment's rows in chunks whose B/C are staged in shared memory, the
 * fp32 state held in registers from chunk to chunk and written back once at the end.
 */
#include "k_common.cuh"

#define GS 16        /* lanes per channel in the prefill scan */
#define MAX_NJ 4     /* state elements per lane there: d_state <= 64 */

template <int G> __device__ __forceinline__ float lanes_sum(float v) {
#pragma unroll
    for (int o = G / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o, G);
    return v;
}
__device__ __forceinline__ float group_sum(float v) { return lanes_sum<GS>(v); }

/* Normalise (or copy) one xdbl row into sh[0 .. R+2N), block-wide. */
__device__ void norm_row(const float *row, int R, int N, int norm, float eps, float *sh, double *red) {
    const int L = R + 2 * N;
    double a = 0, b = 0, c = 0;
    for (int j = threadIdx.x; j < L; j += blockDim.x) {
        float v = row[j];
        sh[j] = v;
        double v2 = (double)v * v;
        if (j < R) a += v2;
        else if (j < R + N) b += v2;
        else c += v2;
    }
    if (!norm) {
        __syncthreads();
        return;
    }
    for (int o = 16; o > 0; o >>= 1) {
        a += __shfl_xor_sync(0xffffffffu, a, o);
        b += __shfl_xor_sync(0xffffffffu, b, o);
        c += __shfl_xor_sync(0xffffffffu, c, o);
    }
    const int w = threadIdx.x / 32, nw = blockDim.x / 32;
    if ((threadIdx.x & 31) == 0) {
        red[3 * w] = a;
        red[3 * w + 1] = b;
        red[3 * w + 2] = c;
    }
    __syncthreads();
    a = b = c = 0;
    for (int i = 0; i < nw; i++) {
        a += red[3 * i];
        b += red[3 * i + 1];
        c += red[3 * i + 2];
    }
    const float sa = (float)(1.0 / sqrt(a / (double)R + (double)eps));
    const float sb = (float)(1.0 / sqrt(b / (double)N + (double)eps));
    const float scc = (float)(1.0 / sqrt(c / (double)N + (double)eps));
    for (int j = threadIdx.x; j < L; j += blockDim.x) sh[j] *= j < R ? sa : j < R + N ? sb : scc;
    __syncthreads();
}

#define DT_MAXJ 32 /* dt_proj elements per lane held in registers: dt_rank <= 32 x lanes per channel */

/* G lanes per channel (8 when dt_rank <= 256, else 16): 16 channels per 128-thread block with G = 8,
   so the 7B shape's 512 blocks fit in one wave. Everything this kernel reads that an earlier kernel
   wrote (xdbl, u, z, the state) is loaded right after the wait, before the norm's barriers, so those
   latencies overlap instead of adding up. */
template <int G>
__global__ void __launch_bounds__(256) k_ssm_decode(cu_segtab t, cu_ssm_params p) {
    constexpr int NJ = 64 / G; /* state elements per lane: d_state <= 64 */
    pdl_trigger();
    extern __shared__ float sh[]; /* R + 2N floats */
    __shared__ double red[3 * 8];
    const int s = blockIdx.y;
    const int R = p.R, N = p.N, di = p.di;
    const int ldx = R + 2 * N;
    const int g = threadIdx.x / G, l = threadIdx.x % G;
    const int c0 = blockIdx.x * (blockDim.x / G) + g;
    const int c = c0 < di ? c0 : di - 1; /* groups past the end compute a copy and write nothing */
    const bool live = c0 < di;
    /* Parameters first (constant while the model runs: read before the wait, so these loads overlap
       the previous kernel): this lane's dt_proj elements (all in flight at once), dt bias, A, D. */
    float wdt[DT_MAXJ];
#pragma unroll
    for (int i = 0; i < DT_MAXJ; i++) {
        const int j = l + G * i;
        wdt[i] = j < R ? w_elem(p.dt_w, c, j) : 0.0f;
    }
    const float dtb = p.dt_b[c], Dc = p.D[c];
    float Ar[NJ];
#pragma unroll
    for (int i = 0; i < NJ; i++) {
        const int k = l + G * i;
        Ar[i] = k < N ? p.A[(size_t)c * N + k] : 0.0f;
    }
    pdl_wait();
    const int r = t.row0[s];
    float *st = seg_ssm(t, s) + (size_t)c * N;
    float sv[NJ];
#pragma unroll
    for (int i = 0; i < NJ; i++) {
        const int k = l + G * i;
        sv[i] = k < N ? st[k] : 0.0f;
    }
    const float u = p.u[(size_t)r * di + c];
    const float zv = p.z[(size_t)r * p.ld_z + c];
    norm_row(p.xdbl + (size_t)r * ldx, R, N, p.norm, p.eps, sh, red);
    float dot = 0.0f;
#pragma unroll
    for (int i = 0; i < DT_MAXJ; i++) {
        const int j = l + G * i;
        if (j < R) dot += wdt[i] * sh[j];
    }
    dot = lanes_sum<G>(dot);
    const float dl = softplus_f(dot + dtb);
    const float *B = sh + R, *C = sh + R + N;
    float yk = 0.0f;
#pragma unroll
    for (int i = 0; i < NJ; i++) {
        const int k = l + G * i;
        if (k < N) {
            float v = expf(dl * Ar[i]) * sv[i] + dl * B[k] * u;
            if (live) st[k] = v;
            yk += v * C[k];
        }
    }
    yk = lanes_sum<G>(yk);
    if (l == 0 && live) {
        float y = yk + Dc * u;
        p.y[(size_t)r * di + c] = y * silu_f(zv);
    }
}

extern "C" cudaError_t cuk_ssm_decode(cudaStream_t s, const cu_segtab *t, const cu_ssm_params *p) {
    if (t->n <= 0) return cudaSuccess;
    if (p->R > 16 * DT_MAXJ || p->N > 64) return cudaErrorInvalidValue;
    size_t shm = (size_t)(p->R + 2 * p->N) * sizeof(float);
    if (p->R <= 8 * DT_MAXJ)
        return cuk_launch(k_ssm_decode<8>, dim3((p->di + 15) / 16, t->n), dim3(128), shm, s, *t, *p);
    return cuk_launch(k_ssm_decode<16>, dim3((p->di + 15) / 16, t->n), dim3(256), shm, s, *t, *p);
}

__global__ void k_ssm_norm(const float *xdbl, int R, int N, int norm, float eps, float *dtn, float *bc) {
    extern __shared__ float sh[];
    __shared__ double red[3 * 8];
    const int r = blockIdx.x, L = R + 2 * N;
    norm_row(xdbl + (size_t)r * L, R, N, norm, eps, sh, red);
    for (int j = threadIdx.x; j < L; j += blockDim.x) {
        if (j < R) dtn[(size_t)r * R + j] = sh[j];
        else bc[(size_t)r * 2 * N + (j - R)] = sh[j];
    }
}

extern "C" cudaError_t cuk_ssm_norm(cudaStream_t s, const float *xdbl, int rows, int R, int N, int norm, float eps,
                                    float *dtn, float *bc) {
    if (rows <= 0) return cudaSuccess;
    k_ssm_norm<<<rows, 128, (size_t)(R + 2 * N) * sizeof(float), s>>>(xdbl, R, N, norm, eps, dtn, bc);
    return cudaGetLastError();
}

#define CHUNK 32
#define SCAN_CPB 8 /* channels per block: 8 x 16 lanes = 128 threads */

__global__ void __launch_bounds__(128) k_ssm_scan(cu_segtab t, cu_ssm_params p, const float *delta,
                                                   const float *bc) {
    extern __shared__ float sbc[]; /* CHUNK rows x 2N */
    const int s = blockIdx.y;
    const int N = p.N, di = p.di;
    const int g = threadIdx.x / GS, l = threadIdx.x % GS;
    const int c = blockIdx.x * SCAN_CPB + g;
    const int cc = c < di ? c : di - 1; /* idle groups still help stage and reach the barriers */
    const int row0 = t.row0[s], n = t.nrows[s];
    float *st = seg_ssm(t, s) + (size_t)cc * N;
    float sreg[MAX_NJ], Areg[MAX_NJ];
#pragma unroll
    for (int j = 0; j < MAX_NJ; j++) {
        int k = l + GS * j;
        sreg[j] = k < N ? st[k] : 0.0f;
        Areg[j] = k < N ? p.A[(size_t)cc * N + k] : 0.0f;
    }
    const float Dc = p.D[cc];
    for (int t0 = 0; t0 < n; t0 += CHUNK) {
        const int m = n - t0 < CHUNK ? n - t0 : CHUNK;
        __syncthreads();
        for (int i = threadIdx.x; i < m * 2 * N; i += blockDim.x) sbc[i] = bc[(size_t)(row0 + t0) * 2 * N + i];
        __syncthreads();
#pragma unroll 4
        for (int i = 0; i < m; i++) {
            const size_t r = (size_t)(row0 + t0 + i);
            const float dl = softplus_f(delta[r * di + cc]);
            const float u = p.u[r * di + cc];
            const float *B = sbc + i * 2 * N, *C = B + N;
            float yk = 0.0f;
#pragma unroll
            for (int j = 0; j < MAX_NJ; j++) {
                int k = l + GS * j;
                if (k < N) {
                    sreg[j] = expf(dl * Areg[j]) * sreg[j] + dl * B[k] * u;
                    yk += sreg[j] * C[k];
                }
            }
            yk = group_sum(yk);
            if (l == 0 && c < di) {
                float y = yk + Dc * u;
                p.y[r * di + c] = y * silu_f(p.z[r * p.ld_z + c]);
            }
        }
    }
    if (c < di)
#pragma unroll
        for (int j = 0; j < MAX_NJ; j++) {
            int k = l + GS * j;
            if (k < N) st[k] = sreg[j];
        }
}

extern "C" cudaError_t cuk_ssm_scan(cudaStream_t s, const cu_segtab *t, const cu_ssm_params *p, const float *delta,
                                    const float *bc) {
    if (t->n <= 0) return cudaSuccess;
    if (p->N > GS * MAX_NJ) return cudaErrorInvalidValue;
    size_t shm = (size_t)CHUNK * 2 * p->N * sizeof(float);
    k_ssm_scan<<<dim3((p->di + SCAN_CPB - 1) / SCAN_CPB, t->n), 128, shm, s>>>(*t, *p, delta, bc);
    return cudaGetLastError();
}
