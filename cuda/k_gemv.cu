/* k_gemv.cu - the decode matrix-vector product, y[n][rows] (+)= x[n][cols] W^T + b for n <= 8.
 *
 * Bandwidth-bound: every weight byte is read once per call, with 128-bit streaming loads
 * (ld.global.nc, no L1 allocation, so L1 keeps the activations). A warp owns RPW rows (the
 * activations it loads serve RPW rows) and a slice of the columns; each lane keeps U x RPW 16-byte
 * granules in flight and the loop is software-pipelined (the next batch of loads is issued before the
 * current one is multiplied), so 2 x U x RPW loads per lane are outstanding. The 8 warps of a block
 * split the columns of their rows ksplit ways (split-K, reduced in shared memory, no atomics:
 * deterministic) only when there are too few rows to fill the GPU (x_proj, out_proj). The first batch
 * of weights is loaded before pdl_wait(), so under programmatic dependent launch it overlaps the
 * previous kernel. Activations stay fp32 (loaded once per granule for all RPW rows); weights are
 * widened in registers without int->float conversions: bf16/f16 by shifts, Q8_0 by a byte permute
 * into the mantissa of 2^23 and one subtraction, Q4_0 by masking a nibble into the mantissa of 2^23
 * and one exact fma (see dequant_* in k_widen.cuh), then the block's sum times its fp16 scale.
 */
#include "k_gemv_parts.cuh"

template <int E> __device__ __forceinline__ void load_xv(const float *xp, float *xv) {
#pragma unroll
    for (int j = 0; j < E / 4; j++) {
        float4 a = ld_x(xp + 4 * j);
        xv[4 * j] = a.x;
        xv[4 * j + 1] = a.y;
        xv[4 * j + 2] = a.z;
        xv[4 * j + 3] = a.w;
    }
}

template <int WT, int NB, int RPW, int U>
__device__ __forceinline__ void mul_batch(const uint4 (&wv)[U][RPW], const float (&sc)[U][RPW], float (&acc)[RPW][NB],
                                          const float *__restrict__ x, int64_t cols, int g0, int step, int ngran) {
    constexpr int E = wt_traits<WT>::E;
#pragma unroll
    for (int u = 0; u < U; u++) {
        const int g = g0 + u * step;
        if (g >= ngran) break;
        /* batch 1: the granule's activations once for all rows; more: each row widened once, the
           activations (L1 hits) reloaded per row */
        float xv[E];
        if constexpr (NB == 1) load_xv<E>(x + (size_t)g * E, xv);
#pragma unroll
        for (int r = 0; r < RPW; r++) {
            float w[E];
            widen<WT>(wv[u][r], w);
#pragma unroll
            for (int b = 0; b < NB; b++) {
                if constexpr (NB > 1) load_xv<E>(x + (size_t)b * cols + (size_t)g * E, xv);
                float s0 = 0.0f, s1 = 0.0f; /* two chains: shorter dependency */
#pragma unroll
                for (int e = 0; e < E; e += 2) {
                    s0 = fmaf(w[e], xv[e], s0);
                    s1 = fmaf(w[e + 1], xv[e + 1], s1);
                }
                const float s = s0 + s1;
                if constexpr (wt_traits<WT>::GPB > 0) acc[r][b] = fmaf(s, sc[u][r], acc[r][b]);
                else acc[r][b] += s;
            }
        }
    }
}

template <int WT, int NB, int RPW, int U, int MINB, int PIPE>
__global__ void __launch_bounds__(256, MINB) k_gemv(cu_wview W, const float *__restrict__ bias, const float *__restrict__ x,
                                                    float *__restrict__ y, int accumulate, int ks_log2, int pf) {
    pdl_trigger();
    const gemv_split L = gemv_split_of<RPW>(ks_log2);
    const int ksplit = 1 << ks_log2, groups = 8 >> ks_log2;
    const int64_t cols = W.cols;
    const int ngran = (int)(cols / wt_traits<WT>::E);

    const unsigned char *wrow[RPW];
    const unsigned short *srow[RPW];
    gemv_row_ptrs<WT, RPW>(W, L.rbase, wrow, srow);
    float acc[RPW][NB];
#pragma unroll
    for (int r = 0; r < RPW; r++)
#pragma unroll
        for (int b = 0; b < NB; b++) acc[r][b] = 0.0f;

    const int step = 32 * ksplit, stride = step * U;
    int g0 = L.kidx * 32 + L.lane;
    uint4 wa[U][RPW];
    float sa[U][RPW];
    if (pf && L.warp == 0) prefetch_l2_rows<WT>(W, (int64_t)blockIdx.x * groups * RPW, groups * RPW);
    load_batch<WT, RPW, U>(wa, sa, wrow, srow, g0, step, ngran); /* weights only: before the wait */
    pdl_wait();
    for (; g0 < ngran; g0 += stride) {
        const int gn = g0 + stride;
        if constexpr (PIPE) {
            /* the next batch is in flight while this one is multiplied (twice the registers) */
            uint4 wb[U][RPW];
            float sb[U][RPW];
            if (gn < ngran) load_batch<WT, RPW, U>(wb, sb, wrow, srow, gn, step, ngran);
            mul_batch<WT, NB, RPW, U>(wa, sa, acc, x, cols, g0, step, ngran);
            if (gn < ngran) take_batch<RPW, U>(wa, sa, wb, sb);
        } else {
            mul_batch<WT, NB, RPW, U>(wa, sa, acc, x, cols, g0, step, ngran);
            if (gn < ngran) load_batch<WT, RPW, U>(wa, sa, wrow, srow, gn, step, ngran);
        }
    }
    gemv_store<RPW, NB>(acc, L, W.rows, bias, y, accumulate);
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
        if (lane == 0) gemv_out(y + (size_t)b * W.rows, row, v, bias, accumulate);
    }
}

/* Launch shapes (rows per warp, loads per lane per row in one batch, blocks per SM the registers must
   allow, software pipelining). Batch 1 has variants (FM_CUDA_GEMV=0..3, cuk_set_gemv_variant) so a
   device run can A/B them (tests/cuda/kernel_bench); batches > 1 keep 2 rows per warp. Batch 1 with
   the quantized types amortises the activations over more rows (their granules hold 16 / 32
   elements). */
template <int WT, int NB, int V> struct gemv_cfg {
    enum {
        Q = WT == CU_Q8_0 || WT == CU_Q4_0,
        UB = WT == CU_Q4_0 ? 1 : WT == CU_Q8_0 ? 2 : 4, /* variant 0's loads per row */
        RPW = NB > 1 ? 2 : V == 0 ? (Q ? 4 : 2) : V == 1 ? 2 : 1,
        U = NB > 1 ? (Q ? 1 : 2) : V == 0 ? UB : V == 2 ? UB : 2 * UB,
        MINB = NB > 1 ? 1 : V == 0 || V == 1 ? 2 : 4,
        PIPE = NB > 1 || V == 0 || V == 2
    };
};

static int g_variant = 0, g_tc = 1;
extern "C" void cuk_set_gemv_variant(int v, int tc_batches) { /* tc_batches: 0, 1 or 2 (cuda_internal.h) */
    g_variant = v >= 0 && v < CU_GEMV_VARIANTS ? v : 0;
    g_tc = tc_batches < 0 ? 0 : tc_batches > 2 ? 2 : tc_batches;
}

template <int WT, int NB, int V> static cudaError_t launch_cfg(cudaStream_t s, cu_wview W, const float *b,
                                                               const float *x, float *y, int acc, int sm_count) {
    typedef gemv_cfg<WT, NB, V> C;
    constexpr int RPW = C::RPW, U = C::U;
    constexpr int E = wt_traits<WT>::E;
    const int64_t ngran = W.cols / E;
    const int64_t warps = (W.rows + RPW - 1) / RPW;
    const int64_t target = (int64_t)sm_count * 32; /* two 8-warp blocks per SM, twice over */
    const int ks_log2 = gemv_ks_log2(warps, ngran, U, target);
    const int64_t rows_per_block = (int64_t)RPW * (8 >> ks_log2);
    const int64_t blocks = (W.rows + rows_per_block - 1) / rows_per_block;
    return cuk_launch(k_gemv<WT, NB, RPW, U, C::MINB, C::PIPE>, dim3((unsigned)blocks), dim3(256), 0, s, W, b, x, y, acc,
                      ks_log2, cuk_prefetch_on);
}

template <int WT, int NB> static cudaError_t launch_nb(cudaStream_t s, cu_wview W, const float *b, const float *x,
                                                        float *y, int acc, int sm_count) {
    if constexpr (NB == 1) {
        switch (g_variant) {
        case 1: return launch_cfg<WT, 1, 1>(s, W, b, x, y, acc, sm_count);
        case 2: return launch_cfg<WT, 1, 2>(s, W, b, x, y, acc, sm_count);
        case 3: return launch_cfg<WT, 1, 3>(s, W, b, x, y, acc, sm_count);
        default: break;
        }
    }
    return launch_cfg<WT, NB, 0>(s, W, b, x, y, acc, sm_count);
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
    int E = W.dtype == CU_F32 ? 4 : W.dtype == CU_F16 || W.dtype == CU_BF16 ? 8 : W.dtype == CU_Q8_0 ? 16 : 32;
    const int fast = W.cols % E == 0 && W.cols / E < (1 << 30) && (!W.scales || ((uintptr_t)W.scales & 1) == 0) && ((uintptr_t)x & 15) == 0 && ((uintptr_t)W.data & 15) == 0 && W.cols >= E;
    if (!fast) {
        int64_t blocks = (W.rows + 7) / 8;
        k_gemv_generic<<<(unsigned)blocks, 256, 0, s>>>(W, b, x, n, y, accumulate);
        return cudaGetLastError();
    }
    /* the tensor-core kernel (k_gemv_tc.cu) where it applies and has enough row tiles to fill the GPU;
       for quantized batches also where it has fewer: the FMA kernel unpacks every quant once per
       sequence (the 7B's x_proj, 288 rows, at batch 8: q4_0 decode 909 against 870 tok/s; bf16 keeps
       the FMA kernel there, 870-880 against 926 with the tensor cores) */
    const int tc = n > 1 ? g_tc : g_variant == CU_GEMV_VARIANT_TC ? (g_tc == 2 ? 2 : 1) : 0;
    /* batches: the bulk-copy tensor-core GEMV (k_gemv_bulk_tc.cu) where it takes W; 7B bf16 decode
       batch 2 / 4 / 8: 334 / 642 / 1180 tok/s against 324 / 624 / 930 (docs/PERFORMANCE.md) */
    if (tc && n > 1 && (W.dtype == CU_BF16 || W.dtype == CU_Q8_0 || W.dtype == CU_Q4_0)) {
        int taken;
        cudaError_t e = cuk_gemv_bulk_tc(s, W, b, x, n, y, accumulate, sm_count, &taken);
        if (taken || e != cudaSuccess) return e;
    }
    const int quant_batch = n > 1 && (W.dtype == CU_Q8_0 || W.dtype == CU_Q4_0);
    if (tc && (tc == 2 || quant_batch || W.rows >= 16 * (int64_t)sm_count) && cuk_gemv_tc_ok(W, x, n))
        return cuk_gemv_tc(s, W, b, x, n, y, accumulate, sm_count);
    /* batch 1: bf16 (default variant) and quantized weights (8-bit activations) through the bulk-copy
       GEMV where it applies (k_gemv_bulk.cu), quantized ones else through the register-fed integer one
       (k_gemv_dp4a.cu) */
    const int qdot = g_variant != CU_GEMV_VARIANT_TC && cuk_gemv_dp4a_ok(W, x, n);
    if (qdot || (n == 1 && W.dtype == CU_BF16 && g_variant == 0)) {
        int taken;
        cudaError_t e = cuk_gemv_bulk(s, W, b, x, y, accumulate, sm_count, &taken);
        if (taken || e != cudaSuccess) return e;
    }
    if (qdot) return cuk_gemv_dp4a(s, W, b, x, y, accumulate, sm_count);
    switch (W.dtype) {
    case CU_F32: return launch_wt<CU_F32>(s, W, b, x, n, y, accumulate, sm_count);
    case CU_F16: return launch_wt<CU_F16>(s, W, b, x, n, y, accumulate, sm_count);
    case CU_BF16: return launch_wt<CU_BF16>(s, W, b, x, n, y, accumulate, sm_count);
    case CU_Q8_0: return launch_wt<CU_Q8_0>(s, W, b, x, n, y, accumulate, sm_count);
    case CU_Q4_0: return launch_wt<CU_Q4_0>(s, W, b, x, n, y, accumulate, sm_count);
    }
    return cudaErrorInvalidValue;
}

extern "C" cudaError_t cuk_gemv_reference(cudaStream_t s, cu_wview W, const float *b, const float *x, int n, float *y,
                                          int accumulate) {
    if (n < 1 || n > CU_GEMV_MAX_N) return cudaErrorInvalidValue;
    k_gemv_generic<<<(unsigned)((W.rows + 7) / 8), 256, 0, s>>>(W, b, x, n, y, accumulate);
    return cudaGetLastError();
}
