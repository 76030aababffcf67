/* k_gemv_tc.cu - the decode matrix product on the tensor cores, y[n][rows] (+)= x[n][cols] W^T + b for
 * n <= 8 and bf16 / Q8_0 / Q4_0 weights (k_gemv.cu's FMA kernel is the fallback and the f32/f16 path).
 *
 * Why: the FMA kernel widens every weight and spends one FMA per weight per sequence, so batches > 1
 * are compute-bound (batch 8 at under a third of the bandwidth) and Q4_0 at batch 1 is not far from it.
 * One mma.m16n8k16 multiplies 16 rows x 16 columns of weights by 8 activation columns in one instruction.
 *
 * Precision: the activations stay fp32-grade. Each sequence's x is split into hi = bf16(x) and
 * lo = bf16(x - hi), which are two of the mma's 8 columns ("virtual columns": hi of sequence j is
 * column j, lo is column n + j; n > 4 takes a second n-tile), and y = W.hi + W.lo with fp32
 * accumulation. Q8_0 / Q4_0 quants are exact in bf16 (|q| <= 128), the k16 steps of one mma never
 * cross a quant block, and each block's partial product is scaled in fp32, so the quantized product is
 * the exact blocks times fp32-grade activations, like the FMA kernel's.
 *
 * Layout: a warp owns a 16-row tile and a contiguous slice of the columns (split-K over the block's
 * warps when there are few row tiles), 32 columns per step (two mmas). Lane (g = lane / 4, t = lane % 4)
 * loads rows g and g + 8 of the tile, 8 of the step's 32 columns: the columns 8t .. 8t+7 (bf16, Q8_0),
 * or for Q4_0 the nibbles of bytes 4t .. 4t+3 of the block (columns 4t .. 4t+3 and 16+4t .. 16+4t+3).
 * Which of its columns a lane feeds to which k of the mma is free as long as the activation fragment
 * (lane g' = virtual column, same t) uses the same assignment, so every lane reads whole 16 / 8 / 4-byte
 * pieces of each row and the fragments need no shuffles. The warps' partial tiles meet in shared
 * memory, where hi + lo and the split-K slices are summed in a fixed order (deterministic).
 */
#include "k_mma.cuh"

#define TC_WARPS 8

/* Per-type piece of one row for one lane and one 32-column step. */
template <int WT> struct tc_piece;
template <> struct tc_piece<CU_BF16> { typedef uint4 T; };
template <> struct tc_piece<CU_Q8_0> { typedef uint2 T; };
template <> struct tc_piece<CU_Q4_0> { typedef unsigned T; };

template <int WT> __device__ __forceinline__ typename tc_piece<WT>::T tc_load(const unsigned char *row, int step, int t) {
    if constexpr (WT == CU_BF16) return ld_stream(row + (size_t)step * 64 + 16 * t);
    else if constexpr (WT == CU_Q8_0) return ld_stream8(row + (size_t)step * 32 + 8 * t);
    else return ld_stream4(row + (size_t)step * 16 + 4 * t);
}

/* The A fragments of the step's two mmas from a lane's pieces of rows g (p) and g + 8 (q). */
template <int WT>
__device__ __forceinline__ void tc_frag(const typename tc_piece<WT>::T &p, const typename tc_piece<WT>::T &q,
                                        unsigned (&a)[2][4]) {
    if constexpr (WT == CU_BF16) {
        a[0][0] = p.x, a[0][1] = q.x, a[0][2] = p.y, a[0][3] = q.y;
        a[1][0] = p.z, a[1][1] = q.z, a[1][2] = p.w, a[1][3] = q.w;
    } else if constexpr (WT == CU_Q8_0) {
        q8_pairs(p.x, a[0][0], a[0][2]);
        q8_pairs(q.x, a[0][1], a[0][3]);
        q8_pairs(p.y, a[1][0], a[1][2]);
        q8_pairs(q.y, a[1][1], a[1][3]);
    } else {
        a[0][0] = q4_pair(p, 0), a[0][1] = q4_pair(q, 0), a[0][2] = q4_pair(p, 8), a[0][3] = q4_pair(q, 8);
        a[1][0] = q4_pair(p, 4), a[1][1] = q4_pair(q, 4), a[1][2] = q4_pair(p, 12), a[1][3] = q4_pair(q, 12);
    }
}

/* The B fragments (activations of one virtual column) for the step, same column assignment as tc_frag. */
template <int WT>
__device__ __forceinline__ void tc_xfrag(const float *xs, int step, int t, bool lo, unsigned (&b)[2][2]) {
    const float *p = xs + (size_t)step * 32;
    if constexpr (WT == CU_Q4_0) {
        const float4 u = __ldg(reinterpret_cast<const float4 *>(p + 4 * t));
        const float4 v = __ldg(reinterpret_cast<const float4 *>(p + 16 + 4 * t));
        b[0][0] = split_pair(u.x, u.z, lo), b[0][1] = split_pair(u.y, u.w, lo);
        b[1][0] = split_pair(v.x, v.z, lo), b[1][1] = split_pair(v.y, v.w, lo);
    } else {
        const float4 u = __ldg(reinterpret_cast<const float4 *>(p + 8 * t));
        const float4 v = __ldg(reinterpret_cast<const float4 *>(p + 8 * t + 4));
        b[0][0] = split_pair(u.x, u.y, lo), b[0][1] = split_pair(u.z, u.w, lo);
        b[1][0] = split_pair(v.x, v.y, lo), b[1][1] = split_pair(v.z, v.w, lo);
    }
}

/* NT n-tiles (8 virtual columns each), U steps of weights in flight per lane. */
template <int WT, int NT, int U>
__global__ void __launch_bounds__(TC_WARPS * 32, 2) k_gemv_tc(cu_wview W, const float *__restrict__ bias,
                                                               const float *__restrict__ x, int n, float *__restrict__ y,
                                                               int accumulate, int ks_log2, int pf) {
    pdl_trigger();
    constexpr bool QUANT = WT != CU_BF16;
    const int ksplit = 1 << ks_log2;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int kidx = warp & (ksplit - 1), rt = warp >> ks_log2;
    const int tiles_per_block = TC_WARPS >> ks_log2;
    const int64_t rows = W.rows, cols = W.cols;
    const int64_t r0 = ((int64_t)blockIdx.x * tiles_per_block + rt) * 16;
    const int nsteps = (int)(cols / 32);
    const int s_begin = (int)((int64_t)nsteps * kidx / ksplit), s_end = (int)((int64_t)nsteps * (kidx + 1) / ksplit);
    const int64_t ra = r0 + g < rows ? r0 + g : rows - 1, rb = r0 + g + 8 < rows ? r0 + g + 8 : rows - 1;
    const unsigned char *wa = (const unsigned char *)W.data + (size_t)ra * row_bytes<WT>(cols);
    const unsigned char *wb = (const unsigned char *)W.data + (size_t)rb * row_bytes<WT>(cols);
    const unsigned short *sa = QUANT ? W.scales + ra * (cols / 32) : nullptr;
    const unsigned short *sb = QUANT ? W.scales + rb * (cols / 32) : nullptr;

    /* this lane's virtual column in each n-tile */
    const float *xs[NT];
    bool live[NT], lo[NT];
#pragma unroll
    for (int nt = 0; nt < NT; nt++) {
        const int vc = nt * 8 + g;
        live[nt] = vc < 2 * n;
        lo[nt] = vc >= n;
        const int seq = vc < n ? vc : vc - n;
        xs[nt] = x + (size_t)(live[nt] ? seq : 0) * cols;
    }
    float acc[NT][4];
#pragma unroll
    for (int nt = 0; nt < NT; nt++)
#pragma unroll
        for (int i = 0; i < 4; i++) acc[nt][i] = 0.0f;

    typedef typename tc_piece<WT>::T P;
    P pa[U], pb[U];
    float sca[U], scb[U];
    auto load = [&](int s0) {
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int s = s0 + u < s_end ? s0 + u : s_end - 1;
            pa[u] = tc_load<WT>(wa, s, t);
            pb[u] = tc_load<WT>(wb, s, t);
            if constexpr (QUANT) {
                sca[u] = f16_bits_to_f32(__ldg(sa + s));
                scb[u] = f16_bits_to_f32(__ldg(sb + s));
            }
        }
    };
    if (pf && warp == 0) prefetch_l2_rows<WT>(W, (int64_t)blockIdx.x * tiles_per_block * 16, tiles_per_block * 16);
    if (s_begin < s_end) load(s_begin); /* weights only: before the wait */
    pdl_wait();
    for (int s0 = s_begin; s0 < s_end; s0 += U) {
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int s = s0 + u;
            if (s >= s_end) break;
            unsigned a[2][4];
            tc_frag<WT>(pa[u], pb[u], a);
#pragma unroll
            for (int nt = 0; nt < NT; nt++) {
                unsigned b[2][2] = {{0u, 0u}, {0u, 0u}};
                if (live[nt]) tc_xfrag<WT>(xs[nt], s, t, lo[nt], b);
                if constexpr (QUANT) {
                    float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
                    mma_bf16(c, a[0][0], a[0][1], a[0][2], a[0][3], b[0][0], b[0][1]);
                    mma_bf16(c, a[1][0], a[1][1], a[1][2], a[1][3], b[1][0], b[1][1]);
                    acc[nt][0] = fmaf(c[0], sca[u], acc[nt][0]);
                    acc[nt][1] = fmaf(c[1], sca[u], acc[nt][1]);
                    acc[nt][2] = fmaf(c[2], scb[u], acc[nt][2]);
                    acc[nt][3] = fmaf(c[3], scb[u], acc[nt][3]);
                } else {
                    mma_bf16(acc[nt], a[0][0], a[0][1], a[0][2], a[0][3], b[0][0], b[0][1]);
                    mma_bf16(acc[nt], a[1][0], a[1][1], a[1][2], a[1][3], b[1][0], b[1][1]);
                }
            }
        }
        if (s0 + U < s_end) load(s0 + U);
    }

    /* partial tiles: [warp][row 0..15][virtual column 0..15] */
    __shared__ float part[TC_WARPS][16][16];
#pragma unroll
    for (int nt = 0; nt < NT; nt++) {
        part[warp][g][nt * 8 + 2 * t] = acc[nt][0];
        part[warp][g][nt * 8 + 2 * t + 1] = acc[nt][1];
        part[warp][g + 8][nt * 8 + 2 * t] = acc[nt][2];
        part[warp][g + 8][nt * 8 + 2 * t + 1] = acc[nt][3];
    }
    __syncthreads();
    const int outs = tiles_per_block * 16 * n;
    for (int o = threadIdx.x; o < outs; o += blockDim.x) {
        const int j = o % n, i = (o / n) % 16, tile = o / (16 * n);
        const int64_t row = ((int64_t)blockIdx.x * tiles_per_block + tile) * 16 + i;
        if (row >= rows) continue;
        float v = 0.0f;
        for (int k = 0; k < ksplit; k++) {
            const int w = tile * ksplit + k;
            v += part[w][i][j] + part[w][i][n + j];
        }
        gemv_out(y + (size_t)j * rows, row, v, bias, accumulate);
    }
}

template <int WT, int NT>
static cudaError_t launch_tc(cudaStream_t s, cu_wview W, const float *b, const float *x, int n, float *y, int acc,
                             int sm_count) {
    constexpr int U = WT == CU_Q4_0 ? 8 : 4;
    const int64_t tiles = (W.rows + 15) / 16, nsteps = W.cols / 32;
    /* split-K until there are ~4 warps per SM slot: blocks of one 16-row tile keep each block's
       stretch of rows short, so the last wave drains quickly */
    const int64_t target = (int64_t)sm_count * 32;
    int ks_log2 = 0;
    while (ks_log2 < 3 && tiles * (1 << ks_log2) < target && nsteps / (2 << ks_log2) >= U) ks_log2++;
    const int64_t tiles_per_block = TC_WARPS >> ks_log2;
    const int64_t blocks = (tiles + tiles_per_block - 1) / tiles_per_block;
    return cuk_launch(k_gemv_tc<WT, NT, U>, dim3((unsigned)blocks), dim3(TC_WARPS * 32), 0, s, W, b, x, n, y, acc,
                      ks_log2, cuk_prefetch_on);
}

extern "C" int cuk_gemv_tc_ok(cu_wview W, const float *x, int n) {
    return (W.dtype == CU_BF16 || W.dtype == CU_Q8_0 || W.dtype == CU_Q4_0) && n >= 1 && n <= CU_GEMV_MAX_N &&
           W.cols >= 32 && W.cols % 32 == 0 && W.rows >= 1 && ((uintptr_t)W.data & 15) == 0 &&
           ((uintptr_t)x & 15) == 0 && (!W.scales || ((uintptr_t)W.scales & 1) == 0);
}

extern "C" cudaError_t cuk_gemv_tc(cudaStream_t s, cu_wview W, const float *b, const float *x, int n, float *y,
                                   int accumulate, int sm_count) {
    if (!cuk_gemv_tc_ok(W, x, n)) return cudaErrorInvalidValue;
    const bool two = n > 4;
    switch (W.dtype) {
    case CU_BF16: return two ? launch_tc<CU_BF16, 2>(s, W, b, x, n, y, accumulate, sm_count)
                             : launch_tc<CU_BF16, 1>(s, W, b, x, n, y, accumulate, sm_count);
    case CU_Q8_0: return two ? launch_tc<CU_Q8_0, 2>(s, W, b, x, n, y, accumulate, sm_count)
                             : launch_tc<CU_Q8_0, 1>(s, W, b, x, n, y, accumulate, sm_count);
    case CU_Q4_0: return two ? launch_tc<CU_Q4_0, 2>(s, W, b, x, n, y, accumulate, sm_count)
                             : launch_tc<CU_Q4_0, 1>(s, W, b, x, n, y, accumulate, sm_count);
    }
    return cudaErrorInvalidValue;
}
