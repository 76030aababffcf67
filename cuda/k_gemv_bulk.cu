/* k_gemv_bulk.cu - the batch-1 decode GEMV fed by bulk copies (sm_90+): y[rows] (+)= x[cols] W^T + b
 * for bf16 weights (fp32 activations) and Q8_0 / Q4_0 weights (8-bit activations, k_qdot.cuh).
 *
 * Why: the register-fed GEMVs (k_gemv.cu, k_gemv_dp4a.cu) keep at most ~32 KB of weights in flight
 * per block and wait for them once per batch, so on matrices of a few waves (in_proj, out_proj) they
 * stay well under the read bandwidth. Here one block per SM streams tiles of `tr`
 * consecutive rows (their weights, and for quantized types their scales: one or two contiguous
 * ranges) with cp.async.bulk into a ring of shared-memory stages, completion counted by one mbarrier
 * per stage, with no registers held by loads in flight. Tile i of a block goes to stage i % stages;
 * once every warp is done with a stage (__syncthreads) thread 0 refills it with the block's tile
 * i + stages. The first stages are requested before pdl_wait (weights only), then the block stages x
 * in shared memory (bf16: fp32 in two planes, the first and second float4 of each 8-element granule,
 * so a warp's lanes read consecutive 16 bytes; quantized: k_qdot.cuh's layout). With NW warps per block
 * (16, or 8 with FM_CUDA_BULK_WARPS=8), tiles of NW or more rows give each warp tr / NW rows; smaller
 * ones split each row's columns over NW / tr warps, whose sums
 * meet in shared memory (double-buffered by tile parity, so the next tile's writes cannot overtake
 * warp 0's reads). tr is the largest power of two up to 32 whose tile fits FM_CUDA_BULK_TILE_KB, the
 * stages as many as fit FM_CUDA_BULK_KB (up to 8, at least 2).
 */
#include "k_qdot.cuh"

#define BULK_MAX_STAGES 8

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

__host__ __device__ inline int is_quant(int wt) { return wt == CU_Q8_0 || wt == CU_Q4_0; }
/* Bytes of one row's scales (quantized types), and of one stage: tr rows of weights, then their
   scales; 16-byte multiples. */
template <int WT> __host__ __device__ inline size_t scale_bytes(int64_t cols) {
    return is_quant(WT) ? (size_t)(cols / CU_QBLOCK) * 2 : 0;
}
template <int WT> __host__ __device__ inline size_t stage_bytes(int64_t cols, int tr) {
    return (size_t)tr * (row_bytes<WT>(cols) + scale_bytes<WT>(cols));
}
/* Shared memory for the staged activations. */
__host__ __device__ inline size_t x_bytes(int wt, int64_t cols) { return is_quant(wt) ? qx_bytes(cols) : cols * 4; }

/* Thread 0: tile `tile`'s weights (and scales) into stage buffer st (rows past the end left out). */
template <int WT>
__device__ __forceinline__ void fetch_tile(const cu_wview &W, int64_t tile, int tr, unsigned char *st, uint64_t *bar) {
    const int64_t r0 = tile * tr, nr = W.rows - r0 < tr ? W.rows - r0 : tr;
    const size_t rb = row_bytes<WT>(W.cols), sb = scale_bytes<WT>(W.cols);
    mbar_expect(bar, (unsigned)(nr * (rb + sb)));
    bulk_copy(st, (const unsigned char *)W.data + r0 * rb, (unsigned)(nr * rb), bar);
    if (is_quant(WT)) bulk_copy(st + tr * rb, W.scales + r0 * (W.cols / CU_QBLOCK), (unsigned)(nr * sb), bar);
}

/* bf16: x into two planes of float4s, plane h holding the h-th float4 of every 8-element granule. */
__device__ __forceinline__ void stage_x_f32(const float *__restrict__ x, int64_t cols, float4 *xf) {
    const int ng = (int)(cols / 8);
    for (int i = threadIdx.x; i < 2 * ng; i += blockDim.x) xf[(i & 1) * ng + (i >> 1)] = ld_x(x + (size_t)i * 4);
}

/* Row r of stage st dotted with the staged x over granules g = g0, g0 + step, ... */
template <int WT>
__device__ __forceinline__ float row_dot(const unsigned char *st, int r, int tr, int64_t cols, const unsigned char *xsm,
                                         int g0, int step) {
    const int ngran = (int)(cols / wt_traits<WT>::E);
    const unsigned char *wr = st + (size_t)r * row_bytes<WT>(cols);
    float acc = 0.0f;
    if constexpr (WT == CU_BF16) {
        const float4 *xf = reinterpret_cast<const float4 *>(xsm);
        float acc1 = 0.0f; /* two chains */
#pragma unroll 4
        for (int g = g0; g < ngran; g += step) {
            const uint4 w = *reinterpret_cast<const uint4 *>(wr + (size_t)g * 16);
            const float4 a = xf[g], b = xf[ngran + g];
            acc = fmaf(__uint_as_float(w.x << 16), a.x, acc);
            acc1 = fmaf(__uint_as_float(w.x & 0xffff0000u), a.y, acc1);
            acc = fmaf(__uint_as_float(w.y << 16), a.z, acc);
            acc1 = fmaf(__uint_as_float(w.y & 0xffff0000u), a.w, acc1);
            acc = fmaf(__uint_as_float(w.z << 16), b.x, acc);
            acc1 = fmaf(__uint_as_float(w.z & 0xffff0000u), b.y, acc1);
            acc = fmaf(__uint_as_float(w.w << 16), b.z, acc);
            acc1 = fmaf(__uint_as_float(w.w & 0xffff0000u), b.w, acc1);
        }
        acc += acc1;
    } else {
        const int nblk = (int)(cols / CU_QBLOCK);
        const unsigned short *ws = reinterpret_cast<const unsigned short *>(st + tr * row_bytes<WT>(cols)) + (size_t)r * nblk;
        const signed char *xq = reinterpret_cast<const signed char *>(xsm);
        const int2 *xs = reinterpret_cast<const int2 *>(xsm + cols);
#pragma unroll 4
        for (int g = g0; g < ngran; g += step) {
            const uint4 w = *reinterpret_cast<const uint4 *>(wr + (size_t)g * 16);
            acc += granule_dot<WT>(w, f16_bits_to_f32(ws[g / wt_traits<WT>::GPB]), xq, xs, nblk, g);
        }
    }
    return acc;
}

template <int WT, int NW>
__global__ void __launch_bounds__(NW * 32, 1) k_gemv_bulk(cu_wview W, const float *__restrict__ bias,
                                                      const float *__restrict__ x, float *__restrict__ y, int accumulate,
                                                      int tr, int stages) {
    pdl_trigger();
    extern __shared__ __align__(128) unsigned char bulk_smem[];
    __shared__ uint64_t full[BULK_MAX_STAGES];
    __shared__ float red[2][NW];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int64_t rows = W.rows, cols = W.cols;
    const int64_t ntiles = (rows + tr - 1) / tr;
    const size_t stb = stage_bytes<WT>(cols, tr);
    unsigned char *xsm = bulk_smem + (size_t)stages * stb;
    /* tiles of NW+ rows: rpw rows per warp; fewer: each row's columns split over `parts` warps */
    const int rpw = tr >= NW ? tr / NW : 1, parts = tr >= NW ? 1 : NW / tr, part = tr >= NW ? 0 : warp / tr;

    if (threadIdx.x == 0) {
        for (int s = 0; s < stages; s++) mbar_init(&full[s]);
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
#endif
        for (int s = 0; s < stages; s++) { /* weights only: before the wait */
            const int64_t t = blockIdx.x + (int64_t)s * gridDim.x;
            if (t < ntiles) fetch_tile<WT>(W, t, tr, bulk_smem + (size_t)s * stb, &full[s]);
        }
    }
    pdl_wait();
    if constexpr (WT == CU_BF16) stage_x_f32(x, cols, reinterpret_cast<float4 *>(xsm));
    else quantize_x_smem<WT>(x, (int)(cols / CU_QBLOCK), reinterpret_cast<signed char *>(xsm),
                             reinterpret_cast<int2 *>(xsm + cols));
    __syncthreads();

    int i = 0;
    for (int64_t t = blockIdx.x; t < ntiles; t += gridDim.x, i++) {
        const int s = i % stages;
        unsigned char *st = bulk_smem + (size_t)s * stb;
        mbar_wait(&full[s], (unsigned)(i / stages) & 1u);
        for (int k = 0; k < rpw; k++) {
            const int r = tr >= NW ? warp + NW * k : warp % tr; /* the tile's row this warp does now */
            const int64_t row = t * tr + r;
            float acc = row < rows ? row_dot<WT>(st, r, tr, cols, xsm, part * 32 + lane, 32 * parts) : 0.0f;
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
            if (parts > 1) {
                if (lane == 0) red[i & 1][warp] = acc;
            } else if (lane == 0 && row < rows) {
                gemv_out(y, row, acc, bias, accumulate);
            }
        }
        __syncthreads(); /* every warp is done with stage s, and its part is in red */
        const int64_t tn = t + (int64_t)stages * gridDim.x;
        if (threadIdx.x == 0 && tn < ntiles) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
            asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); /* the reads above before the copy's writes */
#endif
            fetch_tile<WT>(W, tn, tr, st, &full[s]);
        }
        if (parts > 1 && warp == 0 && lane < tr && t * tr + lane < rows) {
            float v = 0.0f;
            for (int p = 0; p < parts; p++) v += red[i & 1][p * tr + lane];
            gemv_out(y, t * tr + lane, v, bias, accumulate);
        }
    }
}

static int g_mode = 1;      /* FM_CUDA_BULK (cuda_internal.h) */
static int g_kb = 220;      /* FM_CUDA_BULK_KB */
static int g_tile_kb = 96;  /* FM_CUDA_BULK_TILE_KB */
static int g_warps = 16;    /* FM_CUDA_BULK_WARPS: 8 or 16 per block */
static int g_sm90_all = 0;  /* every device opened so far is sm_90+ */
static size_t g_smem_cap = (size_t)-1; /* the least opt-in shared memory per block of those devices */

extern "C" void cuk_set_bulk_warps(int warps) { g_warps = warps == 8 ? 8 : 16; }

extern "C" void cuk_set_bulk(int mode, int sm90, size_t smem_optin, int smem_kb, int tile_kb) {
    static int older_seen;
    if (!sm90) older_seen = 1;
    g_sm90_all = !older_seen;
    /* the static shared memory (barriers, sums) and a margin stay out of the budget */
    const size_t cap = smem_optin > 1024 ? smem_optin - 1024 : 0;
    if (cap < g_smem_cap) g_smem_cap = cap;
    g_mode = mode < 0 || mode > 2 ? 1 : mode;
    g_kb = smem_kb < 16 ? 16 : smem_kb > 227 ? 227 : smem_kb;
    g_tile_kb = tile_kb < 1 ? 1 : tile_kb;
}

template <int WT>
static cudaError_t launch(cudaStream_t s, cu_wview W, const float *b, const float *x, float *y, int acc, int sm_count,
                          int *taken) {
    const int forced = g_mode == 2; /* tests: small matrices too, and 3 blocks, so stages are reused */
    const size_t xb = x_bytes(WT, W.cols), budget = (size_t)g_kb * 1024 < g_smem_cap ? (size_t)g_kb * 1024 : g_smem_cap;
    if (budget < xb + 2 * stage_bytes<WT>(W.cols, 1)) return forced ? cudaErrorInvalidValue : cudaSuccess;
    int tr = 32;
    while (tr > 1 && stage_bytes<WT>(W.cols, tr) > (size_t)g_tile_kb * 1024) tr /= 2;
    const size_t stb = stage_bytes<WT>(W.cols, tr);
    int stages = (int)((budget - xb) / stb);
    if (stages > BULK_MAX_STAGES) stages = BULK_MAX_STAGES;
    const int64_t ntiles = (W.rows + tr - 1) / tr;
    if (stages < 2) return forced ? cudaErrorInvalidValue : cudaSuccess; /* forced: say the knobs do not fit */
    if (ntiles < sm_count && !forced) return cudaSuccess;
    const size_t shm = (size_t)stages * stb + xb;
    void (*k)(cu_wview, const float *, const float *, float *, int, int, int) =
        g_warps == 16 ? k_gemv_bulk<WT, 16> : k_gemv_bulk<WT, 8>;
    if (cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)shm) != cudaSuccess) {
        (void)cudaGetLastError(); /* not this device's size after all: the register-fed GEMV instead */
        return forced ? cudaErrorInvalidValue : cudaSuccess;
    }
    *taken = 1;
    const int64_t blocks = forced ? 3 : sm_count, grid = ntiles < blocks ? ntiles : blocks;
    return cuk_launch(k, dim3((unsigned)grid), dim3(32 * g_warps), shm, s, W, b, x, y, acc, tr, stages);
}

extern "C" cudaError_t cuk_gemv_bulk(cudaStream_t s, cu_wview W, const float *b, const float *x, float *y,
                                     int accumulate, int sm_count, int *taken) {
    *taken = 0;
    if (!g_mode || !g_sm90_all || ((uintptr_t)W.data & 15) || ((uintptr_t)x & 15)) return cudaSuccess;
    switch (W.dtype) {
    case CU_BF16:
        if (W.cols % 8 || W.cols / 8 >= (1 << 28)) return cudaSuccess;
        return launch<CU_BF16>(s, W, b, x, y, accumulate, sm_count, taken);
    case CU_Q8_0:
    case CU_Q4_0:
        /* whole 16-byte scale ranges per tile */
        if (W.cols % 256 || !W.scales || ((uintptr_t)W.scales & 15) || W.cols / CU_QBLOCK >= (1 << 24)) return cudaSuccess;
        return W.dtype == CU_Q8_0 ? launch<CU_Q8_0>(s, W, b, x, y, accumulate, sm_count, taken)
                                  : launch<CU_Q4_0>(s, W, b, x, y, accumulate, sm_count, taken);
    }
    return cudaSuccess;
}
