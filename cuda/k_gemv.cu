/* k_gemv.cu - the decode matrix-vector product, y[n][rows] (+)= x[n][cols] W^T + b for n <= 8.
 *
 * Bandwidth-bound: every weight byte is read once per call, with 128-bit streaming loads
 * (ld.global.nc, no L1 allocation, so L1 keeps the activations) and U independent loads per lane in
 * flight. A warp owns RPW rows (the activations it loads serve RPW rows) and a slice of the columns;
 * the 8 warps of a block split the columns of their rows ksplit ways (split-K, reduced in shared
 * memory, no atomics: results are deterministic) when there are too few rows to fill the GPU.
 * Activations stay fp32; weights are widened in registers (quantized blocks: the dot of the 32 quants
 * with x, times the block's scale).
 */
#include "k_common.cuh"

__device__ __forceinline__ uint4 ld_stream(const void *p) {
    uint4 r;
    asm("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0,%1,%2,%3}, [%4];"
        : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
        : "l"(p));
    return r;
}

__device__ __forceinline__ float4 ld_x(const float *p) { return __ldg(reinterpret_cast<const float4 *>(p)); }

template <int WT> struct wt_traits;
template <> struct wt_traits<CU_F32> { enum { E = 4, QW = 1, U = 4 }; };
template <> struct wt_traits<CU_F16> { enum { E = 8, QW = 1, U = 4 }; };
template <> struct wt_traits<CU_BF16> { enum { E = 8, QW = 1, U = 4 }; };
template <> struct wt_traits<CU_Q8_0> { enum { E = 32, QW = 2, U = 2 }; };
template <> struct wt_traits<CU_Q4_0> { enum { E = 32, QW = 1, U = 4 }; };

__device__ __forceinline__ float lo16(unsigned v) { return __uint_as_float(v << 16); }
__device__ __forceinline__ float hi16(unsigned v) { return __uint_as_float(v & 0xffff0000u); }
__device__ __forceinline__ float2 h2f(unsigned v) {
    __half2 h = *reinterpret_cast<__half2 *>(&v);
    return __half22float2(h);
}
__device__ __forceinline__ float sbyte(unsigned v, int i) { return (float)(signed char)((v >> (8 * i)) & 0xff); }

__device__ __forceinline__ float dot4(float4 a, float b0, float b1, float b2, float b3) {
    return a.x * b0 + a.y * b1 + a.z * b2 + a.w * b3;
}

/* The dot of one granule (E elements) of a weight row with x (at the granule's columns). */
template <int WT>
__device__ __forceinline__ float granule_dot(const uint4 *w, float scale, const float *xp) {
    if constexpr (WT == CU_F32) {
        float4 a = ld_x(xp);
        return a.x * __uint_as_float(w[0].x) + a.y * __uint_as_float(w[0].y) + a.z * __uint_as_float(w[0].z) +
               a.w * __uint_as_float(w[0].w);
    } else if constexpr (WT == CU_BF16) {
        float4 a = ld_x(xp), b = ld_x(xp + 4);
        return dot4(a, lo16(w[0].x), hi16(w[0].x), lo16(w[0].y), hi16(w[0].y)) +
               dot4(b, lo16(w[0].z), hi16(w[0].z), lo16(w[0].w), hi16(w[0].w));
    } else if constexpr (WT == CU_F16) {
        float4 a = ld_x(xp), b = ld_x(xp + 4);
        float2 p0 = h2f(w[0].x), p1 = h2f(w[0].y), p2 = h2f(w[0].z), p3 = h2f(w[0].w);
        return dot4(a, p0.x, p0.y, p1.x, p1.y) + dot4(b, p2.x, p2.y, p3.x, p3.y);
    } else if constexpr (WT == CU_Q8_0) {
        const unsigned q[8] = {w[0].x, w[0].y, w[0].z, w[0].w, w[1].x, w[1].y, w[1].z, w[1].w};
        float s = 0.0f;
#pragma unroll
        for (int j = 0; j < 8; j++) {
            float4 a = ld_x(xp + 4 * j);
            s += dot4(a, sbyte(q[j], 0), sbyte(q[j], 1), sbyte(q[j], 2), sbyte(q[j], 3));
        }
        return s * scale;
    } else { /* Q4_0: byte j holds element j (low nibble) and j + 16 (high nibble) */
        const unsigned q[4] = {w[0].x, w[0].y, w[0].z, w[0].w};
        float s = 0.0f;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            float4 a = ld_x(xp + 4 * j), b = ld_x(xp + 16 + 4 * j);
            const unsigned v = q[j];
            s += dot4(a, (float)((int)(v & 15) - 8), (float)((int)((v >> 8) & 15) - 8),
                      (float)((int)((v >> 16) & 15) - 8), (float)((int)((v >> 24) & 15) - 8));
            s += dot4(b, (float)((int)((v >> 4) & 15) - 8), (float)((int)((v >> 12) & 15) - 8),
                      (float)((int)((v >> 20) & 15) - 8), (float)((int)((v >> 28) & 15) - 8));
        }
        return s * scale;
    }
}

template <int WT> __device__ __forceinline__ size_t row_bytes(int64_t cols) {
    if constexpr (WT == CU_F32) return (size_t)cols * 4;
    else if constexpr (WT == CU_Q8_0) return (size_t)cols;
    else if constexpr (WT == CU_Q4_0) return (size_t)cols / 2;
    else return (size_t)cols * 2;
}

template <int WT, int NB, int RPW>
__global__ void __launch_bounds__(256) k_gemv(cu_wview W, const float *__restrict__ bias, const float *__restrict__ x,
                                              float *__restrict__ y, int accumulate, int ks_log2) {
    typedef wt_traits<WT> T;
    constexpr int E = T::E, QW = T::QW, U = T::U;
    const int ksplit = 1 << ks_log2;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int kidx = warp & (ksplit - 1), rg = warp >> ks_log2;
    const int groups = 8 >> ks_log2;
    const int64_t rows = W.rows, cols = W.cols;
    const int64_t rbase = ((int64_t)blockIdx.x * groups + rg) * RPW;
    const int ngran = (int)(cols / E);
    const int64_t spr = cols / CU_QBLOCK; /* scales per row */

    const unsigned char *wrow[RPW];
    const unsigned short *srow[RPW];
#pragma unroll
    for (int r = 0; r < RPW; r++) {
        int64_t rr = rbase + r < rows ? rbase + r : rows - 1;
        wrow[r] = (const unsigned char *)W.data + (size_t)rr * row_bytes<WT>(cols);
        srow[r] = W.scales ? W.scales + rr * spr : nullptr;
    }
    float acc[RPW][NB];
#pragma unroll
    for (int r = 0; r < RPW; r++)
#pragma unroll
        for (int b = 0; b < NB; b++) acc[r][b] = 0.0f;

    const int step = 32 * ksplit;
    for (int g0 = kidx * 32 + lane; g0 < ngran; g0 += step * U) {
        uint4 wv[U][RPW][QW];
        float sc[U][RPW];
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int g = g0 + u * step;
#pragma unroll
            for (int r = 0; r < RPW; r++) {
                if (g < ngran) {
#pragma unroll
                    for (int q = 0; q < QW; q++) wv[u][r][q] = ld_stream(wrow[r] + (size_t)g * 16 * QW + 16 * q);
                    if constexpr (WT == CU_Q8_0 || WT == CU_Q4_0) sc[u][r] = f16_bits_to_f32(__ldg(srow[r] + g));
                    else sc[u][r] = 1.0f;
                }
            }
        }
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int g = g0 + u * step;
            if (g < ngran) {
#pragma unroll
                for (int b = 0; b < NB; b++) {
                    const float *xp = x + (size_t)b * cols + (size_t)g * E;
#pragma unroll
                    for (int r = 0; r < RPW; r++) acc[r][b] += granule_dot<WT>(wv[u][r], sc[u][r], xp);
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < RPW; r++)
#pragma unroll
        for (int b = 0; b < NB; b++)
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) acc[r][b] += __shfl_xor_sync(0xffffffffu, acc[r][b], o);

    __shared__ float part[8][RPW * NB];
    if (ksplit > 1) {
        if (lane == 0)
#pragma unroll
            for (int r = 0; r < RPW; r++)
#pragma unroll
                for (int b = 0; b < NB; b++) part[warp][r * NB + b] = acc[r][b];
        __syncthreads();
        if (kidx != 0) return;
    }
#pragma unroll
    for (int r = 0; r < RPW; r++)
#pragma unroll
        for (int b = 0; b < NB; b++) {
            if (lane != r * NB + b) continue;
            const int64_t row = rbase + r;
            if (row >= rows) continue;
            float v = acc[r][b];
            if (ksplit > 1) {
                v = 0.0f;
                for (int k = 0; k < ksplit; k++) v += part[rg * ksplit + k][r * NB + b];
            }
            if (bias) v += bias[row];
            float *dst = y + (size_t)b * rows + row;
            *dst = accumulate ? *dst + v : v;
        }
}

/* Any shape and alignment: one warp per row, element loads. */
__global__ void k_gemv_generic(cu_wview W, const float *bias, const float *x, int n, float *y, int accumulate) {
    const int64_t row = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    const int lane = threadIdx.x & 31;
    if (row >= W.rows) return;
    float acc[CU_GEMV_MAX_N] = {0};
    for (int64_t c = lane; c < W.cols; c += 32) {
        float w = w_elem(W, row, c);
        for (int b = 0; b < n; b++) acc[b] += w * x[(size_t)b * W.cols + c];
    }
    for (int b = 0; b < n; b++) {
        float v = acc[b];
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        if (lane == 0) {
            if (bias) v += bias[row];
            float *dst = y + (size_t)b * W.rows + row;
            *dst = accumulate ? *dst + v : v;
        }
    }
}

template <int WT, int NB> static cudaError_t launch_nb(cudaStream_t s, cu_wview W, const float *b, const float *x,
                                                        float *y, int acc, int sm_count) {
    constexpr int RPW = NB == 1 ? 2 : 4;
    constexpr int E = wt_traits<WT>::E;
    const int64_t ngran = W.cols / E;
    const int64_t warps = (W.rows + RPW - 1) / RPW;
    const int64_t target = (int64_t)sm_count * 48;
    int ks_log2 = 0;
    while (ks_log2 < 3 && warps * (1 << ks_log2) < target && ngran / (32 * (2 << ks_log2)) >= 1) ks_log2++;
    const int64_t rows_per_block = (int64_t)RPW * (8 >> ks_log2);
    const int64_t blocks = (W.rows + rows_per_block - 1) / rows_per_block;
    k_gemv<WT, NB, RPW><<<(unsigned)blocks, 256, 0, s>>>(W, b, x, y, acc, ks_log2);
    return cudaGetLastError();
}

template <int WT> static cudaError_t launch_wt(cudaStream_t s, cu_wview W, const float *b, const float *x, int n,
                                                float *y, int acc, int sm) {
    switch (n) {
    case 1: return launch_nb<WT, 1>(s, W, b, x, y, acc, sm);
    case 2: return launch_nb<WT, 2>(s, W, b, x, y, acc, sm);
    case 3: return launch_nb<WT, 3>(s, W, b, x, y, acc, sm);
    case 4: return launch_nb<WT, 4>(s, W, b, x, y, acc, sm);
    case 5: return launch_nb<WT, 5>(s, W, b, x, y, acc, sm);
    case 6: return launch_nb<WT, 6>(s, W, b, x, y, acc, sm);
    case 7: return launch_nb<WT, 7>(s, W, b, x, y, acc, sm);
    default: return launch_nb<WT, 8>(s, W, b, x, y, acc, sm);
    }
}

extern "C" cudaError_t cuk_gemv(cudaStream_t s, cu_wview W, const float *b, const float *x, int n, float *y,
                                int accumulate, int sm_count) {
    if (n < 1 || n > CU_GEMV_MAX_N) return cudaErrorInvalidValue;
    int E = W.dtype == CU_F32 ? 4 : W.dtype == CU_F16 || W.dtype == CU_BF16 ? 8 : 32;
    const int fast = W.cols % E == 0 && ((uintptr_t)x & 15) == 0 && ((uintptr_t)W.data & 15) == 0 && W.cols >= E;
    if (!fast) {
        int64_t blocks = (W.rows + 7) / 8;
        k_gemv_generic<<<(unsigned)blocks, 256, 0, s>>>(W, b, x, n, y, accumulate);
        return cudaGetLastError();
    }
    switch (W.dtype) {
    case CU_F32: return launch_wt<CU_F32>(s, W, b, x, n, y, accumulate, sm_count);
    case CU_F16: return launch_wt<CU_F16>(s, W, b, x, n, y, accumulate, sm_count);
    case CU_BF16: return launch_wt<CU_BF16>(s, W, b, x, n, y, accumulate, sm_count);
    case CU_Q8_0: return launch_wt<CU_Q8_0>(s, W, b, x, n, y, accumulate, sm_count);
    case CU_Q4_0: return launch_wt<CU_Q4_0>(s, W, b, x, n, y, accumulate, sm_count);
    }
    return cudaErrorInvalidValue;
}
