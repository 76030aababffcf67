/* k_gemv_dp4a.cu - the batch-1 decode GEMV for Q8_0 / Q4_0 weights with 8-bit activations:
 * y[rows] (+)= x[cols] W^T + b through integer dot products (__dp4a: four int8 products and a sum per
 * instruction).
 *
 * Why: widening every quant to fp32 costs ~110 instructions per 16-byte Q4_0 granule, so the fp32
 * kernel (k_gemv.cu) is bound by instruction issue on quantized weights, well short of the bandwidth
 * their smaller size allows. Here a Q4_0 granule (one block of 32) is 8 dp4a plus 12 bit operations.
 *
 * The activations are quantized exactly as the CPU backend's quantized kernels do (cpu/: per block of
 * 32, d = max|x| / 127, q = roundf(x / d), in fp32 with IEEE division), so the GPU and the CPU compute
 * the same integer sums and differ only in the order of the fp32 additions. Every block quantizes x
 * itself into shared memory (x is read from L2; a separate kernel would cost a launch), after loading
 * its first weights (before pdl_wait, so they overlap the previous kernel) and before using them.
 * Shared layout, 16-byte chunks so a warp's lanes (consecutive granules) read consecutive 16 bytes:
 *   Q8_0: xq[cols] int8 in element order (chunk g = elements 16g .. 16g + 15, block g / 2);
 *   Q4_0: the first halves of every block (elements 0..15) in chunks [0, nblk), the second halves in
 *         [nblk, 2 nblk), matching the nibble order (byte j of a block: element j low, j + 16 high);
 *   xs[nblk] = {d as float bits, offset}: Q4_0 stores quants n in 0..15 for n - 8, so its integer sum
 *         starts at -8 * sum(q) of the block; Q8_0's offset is 0.
 * Two forms: the register form (8-warp blocks, RPW rows per warp, software-pipelined loads into
 * registers and split-K as k_gemv.cu's, k_gemv_parts.cuh) and, on sm_90+, the bulk-copy form below.
 */
#include "k_gemv_parts.cuh"

/* Block b's 32 activations -> int8 with one scale, four lanes per block (8 values each). */
template <int WT>
__device__ __forceinline__ void quantize_x_smem(const float *__restrict__ x, int nblk, signed char *xq, int2 *xs) {
    const int lane = threadIdx.x & 31;
    const unsigned group = 0xFu << (lane & ~3); /* the four lanes of one block: always active together */
    for (int i = threadIdx.x; i < nblk * 4; i += blockDim.x) {
        const int b = i >> 2, sub = i & 3;
        const float4 a = ld_x(x + (size_t)b * 32 + sub * 8), c = ld_x(x + (size_t)b * 32 + sub * 8 + 4);
        const float v[8] = {a.x, a.y, a.z, a.w, c.x, c.y, c.z, c.w};
        float amax = 0.0f;
#pragma unroll
        for (int k = 0; k < 8; k++) amax = fmaxf(amax, fabsf(v[k]));
        amax = fmaxf(amax, __shfl_xor_sync(group, amax, 1));
        amax = fmaxf(amax, __shfl_xor_sync(group, amax, 2));
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        unsigned w[2] = {0, 0};
        int sum = 0;
#pragma unroll
        for (int k = 0; k < 8; k++) {
            const int q = (int)roundf(v[k] * id);
            sum += q;
            w[k >> 2] |= (unsigned)(q & 0xff) << (8 * (k & 3));
        }
        sum += __shfl_xor_sync(group, sum, 1);
        sum += __shfl_xor_sync(group, sum, 2);
        signed char *dst;
        if constexpr (WT == CU_Q4_0) dst = xq + (sub < 2 ? (size_t)b * 16 + sub * 8 : (size_t)(nblk + b) * 16 + (sub - 2) * 8);
        else dst = xq + (size_t)b * 32 + sub * 8;
        *reinterpret_cast<uint2 *>(dst) = make_uint2(w[0], w[1]);
        if (sub == 0) xs[b] = make_int2(__float_as_int(d), WT == CU_Q4_0 ? -8 * sum : 0);
    }
}

__device__ __forceinline__ int lo_nibbles(unsigned w) { return (int)(w & 0x0F0F0F0Fu); }
__device__ __forceinline__ int hi_nibbles(unsigned w) { return (int)((w >> 4) & 0x0F0F0F0Fu); }

/* One batch of granules: the integer dot of each row's granule with the activations, scaled by the
   weight block's and the activation block's scales, added to acc. */
template <int WT, int RPW, int U>
__device__ __forceinline__ void dot_batch(const uint4 (&wv)[U][RPW], const float (&sc)[U][RPW], float (&acc)[RPW][1],
                                          const signed char *xq, const int2 *xs, int nblk, int g0, int step, int ngran) {
#pragma unroll
    for (int u = 0; u < U; u++) {
        const int g = g0 + u * step;
        if (g >= ngran) break;
        if constexpr (WT == CU_Q4_0) {
            const int4 xl = *reinterpret_cast<const int4 *>(xq + (size_t)g * 16);
            const int4 xh = *reinterpret_cast<const int4 *>(xq + (size_t)(nblk + g) * 16);
            const int2 s2 = xs[g];
#pragma unroll
            for (int r = 0; r < RPW; r++) {
                const uint4 w = wv[u][r];
                int s = s2.y;
                s = __dp4a(lo_nibbles(w.x), xl.x, s);
                s = __dp4a(hi_nibbles(w.x), xh.x, s);
                s = __dp4a(lo_nibbles(w.y), xl.y, s);
                s = __dp4a(hi_nibbles(w.y), xh.y, s);
                s = __dp4a(lo_nibbles(w.z), xl.z, s);
                s = __dp4a(hi_nibbles(w.z), xh.z, s);
                s = __dp4a(lo_nibbles(w.w), xl.w, s);
                s = __dp4a(hi_nibbles(w.w), xh.w, s);
                acc[r][0] = fmaf((float)s, sc[u][r] * __int_as_float(s2.x), acc[r][0]);
            }
        } else {
            const int4 xv = *reinterpret_cast<const int4 *>(xq + (size_t)g * 16);
            const float xd = __int_as_float(xs[g >> 1].x);
#pragma unroll
            for (int r = 0; r < RPW; r++) {
                const uint4 w = wv[u][r];
                int s = __dp4a((int)w.x, xv.x, 0);
                s = __dp4a((int)w.y, xv.y, s);
                s = __dp4a((int)w.z, xv.z, s);
                s = __dp4a((int)w.w, xv.w, s);
                acc[r][0] = fmaf((float)s, sc[u][r] * xd, acc[r][0]);
            }
        }
    }
}

template <int WT, int RPW, int U>
__global__ void __launch_bounds__(256, 2) k_gemv_dp4a(cu_wview W, const float *__restrict__ bias,
                                                      const float *__restrict__ x, float *__restrict__ y, int accumulate,
                                                      int ks_log2) {
    pdl_trigger();
    extern __shared__ __align__(16) unsigned char qx_smem[];
    const int ksplit = 1 << ks_log2;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int kidx = warp & (ksplit - 1), rg = warp >> ks_log2;
    const int groups = 8 >> ks_log2;
    const int64_t rows = W.rows, cols = W.cols;
    const int64_t rbase = ((int64_t)blockIdx.x * groups + rg) * RPW;
    const int ngran = (int)(cols / wt_traits<WT>::E);
    const int nblk = (int)(cols / CU_QBLOCK);
    signed char *xq = reinterpret_cast<signed char *>(qx_smem);
    int2 *xs = reinterpret_cast<int2 *>(qx_smem + cols);

    const unsigned char *wrow[RPW];
    const unsigned short *srow[RPW];
#pragma unroll
    for (int r = 0; r < RPW; r++) {
        int64_t rr = rbase + r < rows ? rbase + r : rows - 1;
        wrow[r] = (const unsigned char *)W.data + (size_t)rr * row_bytes<WT>(cols);
        srow[r] = W.scales + rr * nblk;
    }
    float acc[RPW][1];
#pragma unroll
    for (int r = 0; r < RPW; r++) acc[r][0] = 0.0f;

    const int step = 32 * ksplit, stride = step * U;
    int g0 = kidx * 32 + lane;
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
        if (gn < ngran) {
#pragma unroll
            for (int u = 0; u < U; u++)
#pragma unroll
                for (int r = 0; r < RPW; r++) {
                    wa[u][r] = wb[u][r];
                    sa[u][r] = sb[u][r];
                }
        }
    }
    gemv_store<RPW, 1>(acc, warp, lane, kidx, rg, ks_log2, rbase, rows, bias, y, accumulate);
}

/* The bulk-copy form (sm_90+). The register form above keeps at most ~32 KB of weights in flight per
 * block and waits for them once per batch, so on matrices of a few waves (in_proj, out_proj) it
 * reaches under half the bandwidth. Here one block per SM streams tiles of `tr` consecutive rows (their
 * quants and their scales: two contiguous ranges) with cp.async.bulk into a ring of shared-memory
 * stages, completion counted by one mbarrier per stage, with no registers held by loads in flight.
 * Tile i of a block goes to stage i % stages; once every warp is done with a stage (__syncthreads)
 * thread 0 refills it with the block's tile i + stages. The first stages are requested before
 * pdl_wait. The 8 warps split a tile as tr rows x (8 / tr) column parts, lanes over granules; the
 * parts' sums meet in shared memory (double-buffered by tile parity, so the next tile's writes cannot
 * overtake warp 0's reads). The shared-memory budget (FM_CUDA_QDOT_KB, default 100 KB) leaves room for
 * the next kernel's block on the same SM, so programmatic dependent launch still overlaps them; tr
 * is the largest of 8, 4, 2, 1 giving at least 4 stages in it. */
#define TMA_MAX_STAGES 8

__device__ __forceinline__ unsigned smem_addr(const void *p) { return (unsigned)__cvta_generic_to_shared(p); }

__device__ __forceinline__ void mbar_init(uint64_t *bar) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_addr(bar)) : "memory");
#endif
}
/* Thread 0: stage bar gets `bytes` from the copies below (one arrival, the transaction count). */
__device__ __forceinline__ void mbar_expect(uint64_t *bar, unsigned bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_addr(bar)), "r"(bytes) : "memory");
#endif
}
__device__ __forceinline__ void bulk_copy(void *dst, const void *src, unsigned bytes, uint64_t *bar) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
                     smem_addr(dst)),
                 "l"(src), "r"(bytes), "r"(smem_addr(bar))
                 : "memory");
#endif
}
__device__ __forceinline__ void mbar_wait(uint64_t *bar, unsigned phase) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    unsigned done;
    do {
        asm volatile("{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, p;\n}"
                     : "=r"(done)
                     : "r"(smem_addr(bar)), "r"(phase)
                     : "memory");
    } while (!done);
#endif
}

/* Bytes of one stage: tr rows of quants, then their scales (16-byte multiples: cols % 256 == 0). */
__host__ __device__ inline size_t tma_stage_bytes(int wt, int64_t cols, int tr) {
    return (size_t)tr * ((wt == CU_Q4_0 ? cols / 2 : cols) + cols / CU_QBLOCK * 2);
}

/* Thread 0: tile `tile`'s quants and scales into stage buffer st (rows past the end left out). */
template <int WT>
__device__ __forceinline__ void tma_fetch(const cu_wview &W, int64_t tile, int tr, unsigned char *st, uint64_t *bar) {
    const int64_t r0 = tile * tr, nr = W.rows - r0 < tr ? W.rows - r0 : tr;
    const size_t rb = row_bytes<WT>(W.cols), sb = (size_t)(W.cols / CU_QBLOCK) * 2;
    mbar_expect(bar, (unsigned)(nr * (rb + sb)));
    bulk_copy(st, (const unsigned char *)W.data + r0 * rb, (unsigned)(nr * rb), bar);
    bulk_copy(st + tr * rb, W.scales + r0 * (W.cols / CU_QBLOCK), (unsigned)(nr * sb), bar);
}

/* One granule's integer dot with the activations, times both blocks' scales. */
template <int WT>
__device__ __forceinline__ float granule_dot(const uint4 &w, float wscale, const signed char *xq, const int2 *xs,
                                             int nblk, int g) {
    if constexpr (WT == CU_Q4_0) {
        const int4 xl = *reinterpret_cast<const int4 *>(xq + (size_t)g * 16);
        const int4 xh = *reinterpret_cast<const int4 *>(xq + (size_t)(nblk + g) * 16);
        const int2 s2 = xs[g];
        int d = s2.y;
        d = __dp4a(lo_nibbles(w.x), xl.x, d);
        d = __dp4a(hi_nibbles(w.x), xh.x, d);
        d = __dp4a(lo_nibbles(w.y), xl.y, d);
        d = __dp4a(hi_nibbles(w.y), xh.y, d);
        d = __dp4a(lo_nibbles(w.z), xl.z, d);
        d = __dp4a(hi_nibbles(w.z), xh.z, d);
        d = __dp4a(lo_nibbles(w.w), xl.w, d);
        d = __dp4a(hi_nibbles(w.w), xh.w, d);
        return (float)d * (wscale * __int_as_float(s2.x));
    } else {
        const int4 xv = *reinterpret_cast<const int4 *>(xq + (size_t)g * 16);
        int d = __dp4a((int)w.x, xv.x, 0);
        d = __dp4a((int)w.y, xv.y, d);
        d = __dp4a((int)w.z, xv.z, d);
        d = __dp4a((int)w.w, xv.w, d);
        return (float)d * (wscale * __int_as_float(xs[g >> 1].x));
    }
}

template <int WT>
__global__ void __launch_bounds__(256, 1) k_gemv_dp4a_tma(cu_wview W, const float *__restrict__ bias,
                                                          const float *__restrict__ x, float *__restrict__ y,
                                                          int accumulate, int tr, int stages) {
    pdl_trigger();
    extern __shared__ __align__(128) unsigned char tma_smem[];
    __shared__ uint64_t full[TMA_MAX_STAGES];
    __shared__ float red[2][8];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int64_t rows = W.rows, cols = W.cols;
    const int64_t ntiles = (rows + tr - 1) / tr;
    const int nblk = (int)(cols / CU_QBLOCK), ngran = (int)(cols / wt_traits<WT>::E);
    const size_t rb = row_bytes<WT>(cols), stb = tma_stage_bytes(WT, cols, tr);
    signed char *xq = reinterpret_cast<signed char *>(tma_smem + (size_t)stages * stb);
    int2 *xs = reinterpret_cast<int2 *>(tma_smem + (size_t)stages * stb + cols);
    /* tiles of 8+ rows: rpw rows per warp; fewer: each row's columns split over parts warps */
    const int rpw = tr >= 8 ? tr / 8 : 1, parts = tr >= 8 ? 1 : 8 / tr, part = tr >= 8 ? 0 : warp / tr;

    if (threadIdx.x == 0) {
        for (int s = 0; s < stages; s++) mbar_init(&full[s]);
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
#endif
        for (int s = 0; s < stages; s++) { /* weights only: before the wait */
            const int64_t t = blockIdx.x + (int64_t)s * gridDim.x;
            if (t < ntiles) tma_fetch<WT>(W, t, tr, tma_smem + (size_t)s * stb, &full[s]);
        }
    }
    pdl_wait();
    quantize_x_smem<WT>(x, nblk, xq, xs);
    __syncthreads();

    int i = 0;
    for (int64_t t = blockIdx.x; t < ntiles; t += gridDim.x, i++) {
        const int s = i % stages;
        unsigned char *st = tma_smem + (size_t)s * stb;
        mbar_wait(&full[s], (unsigned)(i / stages) & 1u);
        for (int k = 0; k < rpw; k++) {
            const int r = tr >= 8 ? warp + 8 * k : warp % tr; /* the tile's row this warp does now */
            const int64_t row = t * tr + r;
            float acc = 0.0f;
            if (row < rows) {
                const unsigned char *wq = st + (size_t)r * rb;
                const unsigned short *ws = reinterpret_cast<const unsigned short *>(st + tr * rb) + (size_t)r * nblk;
#pragma unroll 4
                for (int g = part * 32 + lane; g < ngran; g += 32 * parts) {
                    const uint4 w = *reinterpret_cast<const uint4 *>(wq + (size_t)g * 16);
                    acc += granule_dot<WT>(w, f16_bits_to_f32(ws[g / wt_traits<WT>::GPB]), xq, xs, nblk, g);
                }
            }
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
            if (parts > 1) {
                if (lane == 0) red[i & 1][warp] = acc;
            } else if (lane == 0 && row < rows) {
                if (bias) acc += bias[row];
                y[row] = accumulate ? y[row] + acc : acc;
            }
        }
        __syncthreads(); /* every warp is done with stage s, and its part is in red */
        const int64_t tn = t + (int64_t)stages * gridDim.x;
        if (threadIdx.x == 0 && tn < ntiles) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
            asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); /* the reads above before the copy's writes */
#endif
            tma_fetch<WT>(W, tn, tr, st, &full[s]);
        }
        if (parts > 1 && warp == 0 && lane < tr && t * tr + lane < rows) {
            const int64_t o = t * tr + lane;
            float v = 0.0f;
            for (int p = 0; p < parts; p++) v += red[i & 1][p * tr + lane];
            if (bias) v += bias[o];
            y[o] = accumulate ? y[o] + v : v;
        }
    }
}

/* Shared memory a block needs for the quantized activations: cols int8 and nblk {scale, offset}. */
static size_t qx_bytes(int64_t cols) { return (size_t)cols + (size_t)(cols / CU_QBLOCK) * sizeof(int2); }

static int g_qdot = 1;      /* FM_CUDA_QDOT (cuda_internal.h) */
static int g_qdot_kb = 200;     /* FM_CUDA_QDOT_KB: the bulk-copy form's shared memory per block */
static int g_qdot_tile_kb = 64; /* FM_CUDA_QDOT_TILE_KB: its largest tile */
static int g_tma_ok = 0;  /* every device opened so far is sm_90+ */

extern "C" int cuk_gemv_dp4a_ok(cu_wview W, const float *x, int n) {
    return g_qdot && n == 1 && (W.dtype == CU_Q8_0 || W.dtype == CU_Q4_0) && W.cols >= CU_QBLOCK &&
           W.cols % CU_QBLOCK == 0 && W.cols / CU_QBLOCK < (1 << 24) && W.scales && ((uintptr_t)W.scales & 1) == 0 &&
           ((uintptr_t)W.data & 15) == 0 && ((uintptr_t)x & 15) == 0 && qx_bytes(W.cols) <= 48 * 1024;
}

/* The register form's launch shape: 2 rows per warp, 4 granules per lane per row in a batch (4 rows
   and 2 granules measured slower on the H200). */
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

/* The bulk-copy form when the device has it, the scales plane is 16-byte aligned, cols % 256 == 0
   (whole 16-byte scale ranges per tile) and there are at least as many tiles as SMs. */
template <int WT>
static cudaError_t launch_tma(cudaStream_t s, cu_wview W, const float *b, const float *x, float *y, int acc, int sm_count,
                              int *taken) {
    *taken = 0;
    const int forced = g_qdot == 3; /* tests: small matrices too, and few blocks, so stages are reused */
    if (!g_tma_ok || W.cols % 256 != 0 || ((uintptr_t)W.scales & 15) != 0) return cudaSuccess;
    const size_t xb = qx_bytes(W.cols), budget = (size_t)g_qdot_kb * 1024;
    if (budget < xb) return forced ? cudaErrorInvalidValue : cudaSuccess;
    /* the largest tile (up to 32 rows) within the tile budget, then as many stages as fit */
    int tr = 32;
    while (tr > 1 && tma_stage_bytes(WT, W.cols, tr) > (size_t)g_qdot_tile_kb * 1024) tr /= 2;
    const size_t stb = tma_stage_bytes(WT, W.cols, tr);
    int stages = (int)((budget - xb) / stb);
    if (stages > TMA_MAX_STAGES) stages = TMA_MAX_STAGES;
    const int64_t ntiles = (W.rows + tr - 1) / tr;
    if (stages < 2) return forced ? cudaErrorInvalidValue : cudaSuccess; /* forced: say the knobs do not fit */
    if (ntiles < sm_count && !forced) return cudaSuccess;
    const size_t shm = (size_t)stages * stb + xb;
    cudaError_t e = cudaFuncSetAttribute(k_gemv_dp4a_tma<WT>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)shm);
    if (e != cudaSuccess) return e;
    *taken = 1;
    const int64_t blocks = forced ? 3 : sm_count, grid = ntiles < blocks ? ntiles : blocks;
    return cuk_launch(k_gemv_dp4a_tma<WT>, dim3((unsigned)grid), dim3(256), shm, s, W, b, x, y, acc, tr, stages);
}

extern "C" void cuk_set_qdot(int shape, int sm90, int smem_kb, int tile_kb) {
    static int older_seen;
    if (!sm90) older_seen = 1;
    g_tma_ok = !older_seen;
    g_qdot = shape < 0 || shape > 3 ? 1 : shape;
    g_qdot_kb = smem_kb < 16 ? 16 : smem_kb > 220 ? 220 : smem_kb;
    g_qdot_tile_kb = tile_kb < 1 ? 1 : tile_kb;
}

extern "C" cudaError_t cuk_gemv_dp4a(cudaStream_t s, cu_wview W, const float *b, const float *x, float *y,
                                     int accumulate, int sm_count) {
    if (!cuk_gemv_dp4a_ok(W, x, 1)) return cudaErrorInvalidValue;
    const int q4 = W.dtype == CU_Q4_0;
    if (g_qdot == 1 || g_qdot == 3) {
        int taken;
        cudaError_t e = q4 ? launch_tma<CU_Q4_0>(s, W, b, x, y, accumulate, sm_count, &taken)
                           : launch_tma<CU_Q8_0>(s, W, b, x, y, accumulate, sm_count, &taken);
        if (taken || e != cudaSuccess) return e;
    }
    return q4 ? launch_regs<CU_Q4_0>(s, W, b, x, y, accumulate, sm_count)
              : launch_regs<CU_Q8_0>(s, W, b, x, y, accumulate, sm_count);
}
