/* k_ssm.cu - the selective SSM (cpu/cpu_ssm.c's reference), fp32 state.
 *
 * Decode (every segment one row): one kernel does the whole step. Each channel has 8 lanes (16 when
 * dt_rank > 256), which between them hold the row's dt, B and C, the channel's dt_proj row and its
 * state: the weightless rmsnorms of dt/B/C (FalconMamba), the dt_proj dot, softplus, the state update
 * (s = exp(delta*A)*s + delta*B*u), y = s.C, D*u and the silu(z) gate need only reductions over those
 * lanes (no shared memory, no block barrier).
 *
 * Prefill: dt/B/C norms for all rows (k_ssm_norm), delta = dt_proj(.) + dt_b as a matrix product (the
 * caller's), then k_ssm_scan: parallel over segments, channels and state elements (16 lanes per
 * channel), sequential over the segment's rows in chunks whose B/C are staged in shared memory, the
 * fp32 state held in registers from chunk to chunk and written back once at the end.
 */
#include "k_widen.cuh"

#define GS 16        /* lanes per channel in the prefill scan */
#define MAX_NJ 4     /* state elements per lane there: d_state <= 64 */

template <int G, typename T> __device__ __forceinline__ T lanes_sum(T v) {
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

/* 8 consecutive dt_proj elements of row c from column j0 (a multiple of 8; the row's 8-element pieces
   16-, 8- or 4-byte aligned: R % 8 == 0 and 16-byte aligned data, checked by the launcher), fp32. */
template <int WT> __device__ __forceinline__ void dt_load8(const cu_wview &w, int64_t c, int j0, float *o) {
    if constexpr (WT == CU_F32) { /* two 16-byte granules */
        const uint4 *p = reinterpret_cast<const uint4 *>((const float *)w.data + c * w.cols + j0);
        widen<CU_F32>(__ldg(p), o);
        widen<CU_F32>(__ldg(p + 1), o + 4);
    } else if constexpr (WT == CU_F16 || WT == CU_BF16) { /* one granule */
        widen<WT>(__ldg(reinterpret_cast<const uint4 *>((const unsigned short *)w.data + c * w.cols + j0)), o);
    } else { /* half or a quarter of a block: 8 of its bytes, not a granule */
        const int64_t nblk = w.cols / CU_QBLOCK, blk = j0 / CU_QBLOCK, in = j0 % CU_QBLOCK;
        const float d = f16_bits_to_f32(__ldg(w.scales + c * nblk + blk));
        if constexpr (WT == CU_Q8_0) {
            const uint2 v = __ldg(reinterpret_cast<const uint2 *>((const signed char *)w.data + c * w.cols + j0));
            const unsigned q[2] = {v.x, v.y};
#pragma unroll
            for (int i = 0; i < 8; i++) o[i] = d * (float)(signed char)(q[i >> 2] >> (8 * (i & 3)));
        } else {
            /* quant.h order: byte k of a block holds element k (low nibble) and k + 16 (high) */
            const unsigned char *rowp = (const unsigned char *)w.data + c * (w.cols / 2) + blk * 16 + (in & 15);
            const uint2 v = __ldg(reinterpret_cast<const uint2 *>(rowp));
            const unsigned q[2] = {v.x, v.y}, sh = in < 16 ? 0 : 4;
#pragma unroll
            for (int i = 0; i < 8; i++) o[i] = d * (float)((int)((q[i >> 2] >> (8 * (i & 3) + sh)) & 0xFu) - 8);
        }
    }
}

#define DT_PIECES 4 /* 8-element dt pieces per lane: dt_rank <= 32 x lanes per channel */

/* The decode step, G lanes per channel (8 when dt_rank <= 256, else 16), 16 channels per 128-thread
   block with G = 8 (the 7B shape's 512 blocks fit in one wave). No shared memory and no block barrier:
   each channel's lanes hold all of dt between them (lane l: pieces l, l + G, ... of 8 elements) and
   states l, l + G, ... with their B and C, so the norms' sums of squares and both dot products are
   reductions over the G lanes alone. VEC (dt_rank % 8 == 0, aligned): dt_proj in 8-element loads of its
   storage type; else one element at a time. Everything an earlier kernel wrote (xdbl, u, z, the state)
   is read right after the wait, all at once. */
template <int G, int NS, int WT, bool VEC>
__global__ void __launch_bounds__(128, 4) k_ssm_decode(cu_segtab t, cu_ssm_params p) {
    constexpr int NJ = NS / G; /* state elements per lane: d_state <= NS */
    pdl_trigger();
    const int s = blockIdx.y;
    const int R = p.R, N = p.N, di = p.di;
    const int ldx = R + 2 * N;
    const int g = threadIdx.x / G, l = threadIdx.x % G;
    const int c0 = blockIdx.x * (blockDim.x / G) + g;
    const int c = c0 < di ? c0 : di - 1; /* groups past the end compute a copy and write nothing */
    const bool live = c0 < di;
    /* Parameters first (constant while the model runs, so read before the wait): this lane's dt_proj
       pieces, dt bias, A, D. */
    float wdt[DT_PIECES][8];
#pragma unroll
    for (int i = 0; i < DT_PIECES; i++) {
        const int j0 = 8 * (l + G * i);
        if constexpr (VEC) {
            if (j0 < R) dt_load8<WT>(p.dt_w, c, j0, wdt[i]);
            else
#pragma unroll
                for (int e = 0; e < 8; e++) wdt[i][e] = 0.0f;
        } else {
#pragma unroll
            for (int e = 0; e < 8; e++) wdt[i][e] = j0 + e < R ? w_elem(p.dt_w, c, j0 + e) : 0.0f;
        }
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
    const float *xr = p.xdbl + (size_t)r * ldx;
    float sv[NJ], Bv[NJ], Cv[NJ];
#pragma unroll
    for (int i = 0; i < NJ; i++) {
        const int k = l + G * i;
        sv[i] = k < N ? st[k] : 0.0f;
        Bv[i] = k < N ? xr[R + k] : 0.0f;
        Cv[i] = k < N ? xr[R + N + k] : 0.0f;
    }
    /* the dt_proj dot on the raw dt, its sum of squares alongside: the norm's scale comes after */
    float dot = 0.0f;
    double a = 0;
#pragma unroll
    for (int i = 0; i < DT_PIECES; i++) {
        const int j0 = 8 * (l + G * i);
#pragma unroll
        for (int e = 0; e < 8; e++) {
            const float v = j0 + e < R ? xr[j0 + e] : 0.0f;
            dot += wdt[i][e] * v;
            a += (double)v * v;
        }
    }
    dot = lanes_sum<G>(dot);
    const float u = p.u[(size_t)r * di + c];
    const float zv = p.z[(size_t)r * p.ld_z + c];
    if (p.norm) { /* weightless rmsnorm of dt, B and C, as k_ssm_norm */
        double b = 0, cc = 0;
#pragma unroll
        for (int i = 0; i < NJ; i++) {
            b += (double)Bv[i] * Bv[i];
            cc += (double)Cv[i] * Cv[i];
        }
        a = lanes_sum<G>(a);
        b = lanes_sum<G>(b);
        cc = lanes_sum<G>(cc);
        const float sa = (float)(1.0 / sqrt(a / (double)R + (double)p.eps));
        const float sb = (float)(1.0 / sqrt(b / (double)N + (double)p.eps));
        const float sc = (float)(1.0 / sqrt(cc / (double)N + (double)p.eps));
        dot *= sa;
#pragma unroll
        for (int i = 0; i < NJ; i++) {
            Bv[i] *= sb;
            Cv[i] *= sc;
        }
    }
    const float dl = softplus_f(dot + dtb);
    float yk = 0.0f;
#pragma unroll
    for (int i = 0; i < NJ; i++) {
        const int k = l + G * i;
        if (k < N) {
            float v = expf(dl * Ar[i]) * sv[i] + dl * Bv[i] * u;
            if (live) st[k] = v;
            yk += v * Cv[i];
        }
    }
    yk = lanes_sum<G>(yk);
    if (l == 0 && live) {
        float y = yk + Dc * u;
        p.y[(size_t)r * di + c] = y * silu_f(zv);
    }
}

/* The element loader generic over types (w_elem) needs no type parameter: WT = -1. */
template <int G, int NS>
static cudaError_t ssm_decode_wt(cudaStream_t s, const cu_segtab *t, const cu_ssm_params *p, bool vec) {
    const dim3 grid((p->di + 128 / G - 1) / (128 / G), t->n), block(128);
    if (!vec) return cuk_launch(k_ssm_decode<G, NS, -1, false>, grid, block, 0, s, *t, *p);
    switch (p->dt_w.dtype) {
    case CU_F32: return cuk_launch(k_ssm_decode<G, NS, CU_F32, true>, grid, block, 0, s, *t, *p);
    case CU_F16: return cuk_launch(k_ssm_decode<G, NS, CU_F16, true>, grid, block, 0, s, *t, *p);
    case CU_BF16: return cuk_launch(k_ssm_decode<G, NS, CU_BF16, true>, grid, block, 0, s, *t, *p);
    case CU_Q8_0: return cuk_launch(k_ssm_decode<G, NS, CU_Q8_0, true>, grid, block, 0, s, *t, *p);
    case CU_Q4_0: return cuk_launch(k_ssm_decode<G, NS, CU_Q4_0, true>, grid, block, 0, s, *t, *p);
    }
    return cudaErrorInvalidValue;
}

extern "C" cudaError_t cuk_ssm_decode(cudaStream_t s, const cu_segtab *t, const cu_ssm_params *p) {
    if (t->n <= 0) return cudaSuccess;
    if (p->R > 16 * 8 * DT_PIECES || p->N > 64) return cudaErrorInvalidValue;
    const cu_wview &w = p->dt_w;
    const bool vec = p->R % 8 == 0 && ((uintptr_t)w.data & 15) == 0 && (!w.scales || ((uintptr_t)w.scales & 1) == 0);
    /* state elements per lane: d_state / lanes, for d_state up to 16 (every released model) or 64 */
    if (p->R <= 8 * 8 * DT_PIECES)
        return p->N <= 16 ? ssm_decode_wt<8, 16>(s, t, p, vec) : ssm_decode_wt<8, 64>(s, t, p, vec);
    return p->N <= 16 ? ssm_decode_wt<16, 16>(s, t, p, vec) : ssm_decode_wt<16, 64>(s, t, p, vec);
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
