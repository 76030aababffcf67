/* k_gemv_parts.cuh - what the two batch-1 decode GEMVs share (k_gemv.cu with fp32 activations,
   k_gemv_dp4a.cu with 8-bit ones): the streamed weight-granule loads and the end of the kernel (warp
   sums, the split-K reduction in shared memory, bias, store). Both run 8-warp blocks whose warps own
   RPW rows and split their columns ksplit = 2^ks_log2 ways. */
#ifndef FM_K_GEMV_PARTS_CUH
#define FM_K_GEMV_PARTS_CUH

#include "k_widen.cuh"

__device__ __forceinline__ float4 ld_x(const float *p) { return __ldg(reinterpret_cast<const float4 *>(p)); }

/* A block's 8 warps over its rows: warp `warp` does rows rbase .. rbase + RPW - 1 (its row group rg =
   warp >> ks_log2) and the kidx-th of their ksplit = 2^ks_log2 column slices. */
struct gemv_split {
    int warp, lane, ks_log2, kidx, rg;
    int64_t rbase;
};
template <int RPW> __device__ __forceinline__ gemv_split gemv_split_of(int ks_log2) {
    gemv_split L;
    L.warp = threadIdx.x >> 5;
    L.lane = threadIdx.x & 31;
    L.ks_log2 = ks_log2;
    L.kidx = L.warp & ((1 << ks_log2) - 1);
    L.rg = L.warp >> ks_log2;
    L.rbase = ((int64_t)blockIdx.x * (8 >> ks_log2) + L.rg) * RPW;
    return L;
}

/* Where rows rbase .. rbase + RPW - 1 of W start (rows past the end: the last row, computed and not
   stored), their quants / elements and, quantized, their scales. */
template <int WT, int RPW>
__device__ __forceinline__ void gemv_row_ptrs(const cu_wview &W, int64_t rbase, const unsigned char *(&wrow)[RPW],
                                              const unsigned short *(&srow)[RPW]) {
#pragma unroll
    for (int r = 0; r < RPW; r++) {
        const int64_t rr = rbase + r < W.rows ? rbase + r : W.rows - 1;
        wrow[r] = (const unsigned char *)W.data + (size_t)rr * row_bytes<WT>(W.cols);
        srow[r] = W.scales ? W.scales + rr * (W.cols / CU_QBLOCK) : nullptr;
    }
}

/* U granules (16 bytes each, `step` granules apart from g0) of each of RPW rows, and their blocks'
   scales (1 for unquantized types); past the row's end: zeros. */
template <int WT, int RPW, int U>
__device__ __forceinline__ void load_batch(uint4 (&wv)[U][RPW], float (&sc)[U][RPW], const unsigned char *const *wrow,
                                           const unsigned short *const *srow, int g0, int step, int ngran) {
#pragma unroll
    for (int u = 0; u < U; u++) {
        const int g = g0 + u * step;
#pragma unroll
        for (int r = 0; r < RPW; r++) {
            if (g < ngran) {
                wv[u][r] = ld_stream(wrow[r] + (size_t)g * 16);
                if constexpr (wt_traits<WT>::GPB > 0) sc[u][r] = f16_bits_to_f32(__ldg(srow[r] + g / wt_traits<WT>::GPB));
                else sc[u][r] = 1.0f;
            } else {
                wv[u][r] = make_uint4(0, 0, 0, 0);
                sc[u][r] = 0.0f;
            }
        }
    }
}

/* Software pipelining: the batch loaded in flight (wb, sb) becomes the current one (wa, sa). */
template <int RPW, int U>
__device__ __forceinline__ void take_batch(uint4 (&wa)[U][RPW], float (&sa)[U][RPW], const uint4 (&wb)[U][RPW],
                                           const float (&sb)[U][RPW]) {
#pragma unroll
    for (int u = 0; u < U; u++)
#pragma unroll
        for (int r = 0; r < RPW; r++) {
            wa[u][r] = wb[u][r];
            sa[u][r] = sb[u][r];
        }
}

/* The end of a GEMV block: each lane's partial sums added over the warp, then over the ksplit warps
   sharing rows (shared memory, fixed order: deterministic), bias, and y[b][row] (+)= the result. */
template <int RPW, int NB>
__device__ __forceinline__ void gemv_store(float (&acc)[RPW][NB], const gemv_split &L, int64_t rows,
                                           const float *__restrict__ bias, float *__restrict__ y, int accumulate) {
    const int warp = L.warp, lane = L.lane, kidx = L.kidx, rg = L.rg;
    const int ksplit = 1 << L.ks_log2;
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
            const int64_t row = L.rbase + r;
            if (row >= rows) continue;
            float v = acc[r][b];
            if (ksplit > 1) {
                v = 0.0f;
                for (int k = 0; k < ksplit; k++) v += part[rg * ksplit + k][r * NB + b];
            }
            gemv_out(y + (size_t)b * rows, row, v, bias, accumulate);
        }
}

/* Split-K for a GEMV of `warps` row groups over ngran granules per row, U granules per lane per batch:
   the smallest ks_log2 (<= 3) giving at least `target` warps, while each warp still gets a full batch. */
__device__ __host__ inline int gemv_ks_log2(int64_t warps, int64_t ngran, int U, int64_t target) {
    int ks = 0;
    while (ks < 3 && warps * (1 << ks) < target && ngran / (32 * (2 << ks)) >= U) ks++;
    return ks;
}

#endif
