/* k_gemv_dp4a.cu - the batch-1 decode GEMV for Q8_0 / Q4_0 weights with 8-bit activations:
 * y[rows] (+)= x[cols] W^T + b through integer dot products (__dp4a: four int8 products and a sum per
 * instruction).
 *
 * Why: widening every quant to fp32 costs ~110 instructions per 16-byte Q4_0 granule, so the fp32
 * kernel (k_gemv.cu) is bound by instruction issue on quantized weights, well short of the bandwidth
 * their smaller size allows. Here a Q4_0 granule (one block of 32) is 8 dp4a plus 12 bit operations.
 *
 * The activations are quantized exactly as the CPU backend's quantized kernels do (k_qdot.cuh), so the
 * GPU and the CPU compute the same integer sums and differ only in the order of the fp32 additions.
 * Every block quantizes x itself into shared memory (x is read from L2; a separate kernel would cost a
 * launch), after loading its first weights (before pdl_wait, so they overlap the previous kernel).
 * This is the register form (8-warp blocks, 2 rows per warp, software-pipelined loads into registers
 * and split-K as k_gemv.cu's, k_gemv_parts.cuh); on sm_90+ the bulk-copy form (k_gemv_bulk.cu) takes
 * the large matrices.
 */
#include "k_qdot.cuh"

/* One batch of granules: each row's granule dotted with the activations (k_qdot.cuh), added to acc. */
template <int WT, int RPW, int U>
__device__ __forceinline__ void dot_batch(const uint4 (&wv)[U][RPW], const float (&sc)[U][RPW], float (&acc)[RPW][1],
                                          const signed char *xq, const int2 *xs, int nblk, int g0, int step, int ngran) {
#pragma unroll
    for (int u = 0; u < U; u++) {
        const int g = g0 + u * step;
        if (g >= ngran) break;
#pragma unroll
        for (int r = 0; r < RPW; r++) acc[r][0] += granule_dot<WT>(wv[u][r], sc[u][r], xq, xs, nblk, g);
    }
}

template <int WT, int RPW, int U>
__global__ void __launch_bounds__(256, 2) k_gemv_dp4a(cu_wview W, const float *__restrict__ bias,
                                                      const float *__restrict__ x, float *__restrict__ y, int accumulate,
                                                      int ks_log2) {
    pdl_trigger();
    extern __shared__ __align__(16) unsigned char qx_smem[];
    const gemv_split L = gemv_split_of<RPW>(ks_log2);
    const int ksplit = 1 << ks_log2;
    const int64_t cols = W.cols;
    const int ngran = (int)(cols / wt_traits<WT>::E);
    const int nblk = (int)(cols / CU_QBLOCK);
    signed char *xq = reinterpret_cast<signed char *>(qx_smem);
    int2 *xs = reinterpret_cast<int2 *>(qx_smem + cols);

    const unsigned char *wrow[RPW];
    const unsigned short *srow[RPW];
    gemv_row_ptrs<WT, RPW>(W, L.rbase, wrow, srow);
    float acc[RPW][1];
#pragma unroll
    for (int r = 0; r < RPW; r++) acc[r][0] = 0.0f;

    const int step = 32 * ksplit, stride = step * U;
    int g0 = L.kidx * 32 + L.lane;
    uint4 wa[U][RPW];
    float sa[U][RPW];
    load_batch<WT, RPW, U>(wa, sa, wrow, srow, g0, step, ngran); /* weights only: before the wait */
    pdl_wait();
    quantize_x_smem<WT>(x, nblk, xq, xs);
    __syncthreads();
    for (; g0 < ngran; g0 += stride) {
        const int gn = g0 + stride;
        uint4 wb[U][RPW];
        float sb[U][RPW];
        if (gn < ngran) load_batch<WT, RPW, U>(wb, sb, wrow, srow, gn, step, ngran);
        dot_batch<WT, RPW, U>(wa, sa, acc, xq, xs, nblk, g0, step, ngran);
        if (gn < ngran) take_batch<RPW, U>(wa, sa, wb, sb);
    }
    gemv_store<RPW, 1>(acc, L, W.rows, bias, y, accumulate);
}

static int g_qdot = 1; /* FM_CUDA_QDOT (cuda_internal.h) */
extern "C" void cuk_set_qdot(int on) { g_qdot = on != 0; }

extern "C" int cuk_gemv_dp4a_ok(cu_wview W, const float *x, int n) {
    return g_qdot && n == 1 && (W.dtype == CU_Q8_0 || W.dtype == CU_Q4_0) && W.cols >= CU_QBLOCK &&
           W.cols % CU_QBLOCK == 0 && W.cols / CU_QBLOCK < (1 << 24) && W.scales && ((uintptr_t)W.scales & 1) == 0 &&
           ((uintptr_t)W.data & 15) == 0 && ((uintptr_t)x & 15) == 0 && qx_bytes(W.cols) <= 48 * 1024;
}

/* Launch shape: 2 rows per warp, 4 granules per lane per row in a batch (4 rows and 2 granules
   measured slower on the H200). */
template <int WT>
static cudaError_t launch_regs(cudaStream_t s, cu_wview W, const float *b, const float *x, float *y, int acc,
                               int sm_count) {
    constexpr int RPW = 2, U = 4;
    const int64_t ngran = W.cols / wt_traits<WT>::E;
    const int64_t warps = (W.rows + RPW - 1) / RPW;
    const int ks_log2 = gemv_ks_log2(warps, ngran, U, (int64_t)sm_count * 32);
    const int64_t rows_per_block = (int64_t)RPW * (8 >> ks_log2);
    const int64_t blocks = (W.rows + rows_per_block - 1) / rows_per_block;
    return cuk_launch(k_gemv_dp4a<WT, RPW, U>, dim3((unsigned)blocks), dim3(256), qx_bytes(W.cols), s, W, b, x, y, acc,
                      ks_log2);
}

extern "C" cudaError_t cuk_gemv_dp4a(cudaStream_t s, cu_wview W, const float *b, const float *x, float *y,
                                     int accumulate, int sm_count) {
    if (!cuk_gemv_dp4a_ok(W, x, 1)) return cudaErrorInvalidValue;
    return W.dtype == CU_Q4_0 ? launch_regs<CU_Q4_0>(s, W, b, x, y, accumulate, sm_count)
                              : launch_regs<CU_Q8_0>(s, W, b, x, y, accumulate, sm_count);
}
