/* k_gemv_bulk_tc.cu - decode batches of 2..8 sequences on bf16, Q8_0 and Q4_0 weights (sm_90+): y[n][rows]
 * (+)= x[n][cols] W^T + b on the tensor cores, the weights streamed into shared memory by bulk copies of
 * whole row pieces.
 *
 * Why: the register-fed tensor-core GEMV (k_gemv_tc.cu) kept in_proj and out_proj at about half the
 * read bandwidth at batch 8 (docs/PERFORMANCE.md). So did a first cut of this kernel that brought
 * 64-row x 64-column boxes in with tensor-map copies: reading 128-512 bytes from each of many rows at a
 * time is slow in DRAM, while the batch-1 bulk-copy GEMV (k_gemv_bulk.cu), reading tiles of whole
 * consecutive rows, streams at ~90%. And one cp.async.bulk costs the copy engine about 60 ns however
 * small, so pieces under a few KB cannot keep up either.
 *
 * Layout: a tile is 8 consecutive rows (one mma n8) over the block's slice of the columns, cols / S
 * of them (S = 1, 2, 4 or 8: the smallest that keeps the slice <= 4096 columns), one bulk copy per row
 * (2-8 KB for the 7B), into a ring of stages (one mbarrier each; bf16 rows padded by 16 bytes so
 * ldmatrix is conflict-free). With S > 1 the S blocks of a thread-block cluster take the same tiles,
 * one slice each, and add their partial sums through distributed shared memory at the end, in a
 * fixed order. The activations never pass through shared memory: warp w owns the k16 steps w * spw ..
 * (w + 1) * spw - 1 of the slice (spw = slice / 256) in every tile, so its mma A fragments are loaded
 * once, after the dependency wait, and stay in registers: the 16 rows of A are the virtual columns hi
 * = bf16(x_j) (row j) and lo = bf16(x_j - hi) (row 8 + j), fp32-grade activations as k_gemv_tc.cu, rows
 * j >= n zero. Per tile each warp's partial 8 x 8 block meets the others' in shared memory (double-
 * buffered by tile parity) and is summed in a fixed order: deterministic.
 *
 * Q8_0 / Q4_0: the tile's rows hold quants (row stride padded so the lanes' 8- / 4-byte loads are
 * conflict-free) and then its rows' fp16 scales for the slice (one copy for all 8 rows when S = 1,
 * where they are contiguous). The unit of a warp is a quant block (two mmas): lane (g, t) reads the
 * bytes k_gemv_tc.cu's lane reads of row g (Q8_0: 8 bytes at 8t; Q4_0: 4 bytes at 4t, whose low and
 * high nibbles are columns 4t.. and 16 + 4t..), turns them into exact bf16 pairs, and its A fragments
 * hold the activations in the same column order; each block's product is scaled in fp32 by its row's
 * scale, as k_gemv_tc.cu does.
 */
#include "k_bulk.cuh"
#include "k_mma.cuh"

#include <mutex>

#define BTC_WARPS 16
#define BTC_ROWS 8     /* rows per tile */
#define BTC_MAX_SPW 16 /* k16 steps per warp: 4 registers of A fragments each */
#define BTC_MAX_STAGES 8
#define BTC_MAX_S 8 /* the portable cluster size */
/* The per-tile sums: [2 parities][BTC_WARPS][BTC_ROWS][8 sequences] floats. */
#define BTC_RED_FLOATS (2 * BTC_WARPS * BTC_ROWS * CU_GEMV_MAX_N)
/* A cluster's partial sums per tile (S > 1): [BTC_ROWS][8 sequences] floats. */
#define BTC_PART_FLOATS (BTC_ROWS * CU_GEMV_MAX_N)

/* A tile row's bytes of quants (or bf16) for a slice, its padded stride in shared memory (bf16: ldmatrix
   rows 16 bytes apart mod 128; Q8_0: the lanes' 8-byte loads; Q4_0: 4-byte ones, conflict-free), and the
   stage: 8 such rows, then (quantized) the 8 rows' scales for the slice. */
template <int WT> __host__ __device__ inline size_t btc_row_bytes(int64_t slice) {
    return WT == CU_BF16 ? (size_t)slice * 2 : WT == CU_Q8_0 ? (size_t)slice : (size_t)slice / 2;
}
template <int WT> __host__ __device__ inline size_t btc_row_stride(int64_t slice) {
    return btc_row_bytes<WT>(slice) + (WT == CU_Q8_0 ? 32 : 16);
}
template <int WT> __host__ __device__ inline size_t btc_scale_bytes(int64_t slice) {
    return WT == CU_BF16 ? 0 : (size_t)(slice / CU_QBLOCK) * 2;
}
template <int WT> __host__ __device__ inline size_t btc_stage_bytes(int64_t slice) {
    return BTC_ROWS * (btc_row_stride<WT>(slice) + btc_scale_bytes<WT>(slice));
}

__device__ __forceinline__ unsigned cluster_rank() {
    unsigned r = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
#endif
    return r;
}
/* Every thread of every block of the cluster; shared-memory writes before it are visible after it. */
__device__ __forceinline__ void cluster_sync() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("barrier.cluster.arrive.release.aligned;\n\tbarrier.cluster.wait.acquire.aligned;" ::: "memory");
#endif
}
/* *p in the shared memory of the cluster's block `rank`. */
__device__ __forceinline__ float ld_cluster(const float *p, unsigned rank) {
    float v = 0.0f;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    unsigned a;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(a) : "r"(smem_addr(p)), "r"(rank));
    asm volatile("ld.shared::cluster.f32 %0, [%1];" : "=f"(v) : "r"(a) : "memory");
#endif
    return v;
}

template <int WT>
__global__ void __launch_bounds__(BTC_WARPS * 32, 1)
    k_gemv_bulk_tc(cu_wview W, const float *__restrict__ bias, const float *__restrict__ x, int n,
                   float *__restrict__ y, int accumulate, int S, int spw, int stages) {
    pdl_trigger();
    extern __shared__ __align__(128) unsigned char btc_smem[];
    __shared__ uint64_t full[BTC_MAX_STAGES];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int64_t rows = W.rows, cols = W.cols, slice = cols / S;
    const unsigned rank = S > 1 ? cluster_rank() : 0u;
    const int64_t cl = blockIdx.x / S, ncl = gridDim.x / S, k0 = (int64_t)rank * slice;
    const int64_t tiles = (rows + BTC_ROWS - 1) / BTC_ROWS;
    const int64_t mine = tiles > cl ? (tiles - 1 - cl) / ncl + 1 : 0; /* the same for the cluster's blocks */
    constexpr bool QUANT = WT != CU_BF16;
    const size_t rs = btc_row_stride<WT>(slice), rb = btc_row_bytes<WT>(slice), stb = btc_stage_bytes<WT>(slice);
    const int spr = (int)(slice / CU_QBLOCK); /* quantized: scales per tile row */
    float *red = reinterpret_cast<float *>(btc_smem + (size_t)stages * stb);
    float *part = red + BTC_RED_FLOATS; /* [mine][BTC_PART_FLOATS] when S > 1 */

    auto fetch = [&](int64_t i) { /* one thread: tile i's rows of this block's slice */
        const int64_t r0 = (cl + i * ncl) * BTC_ROWS;
        const int nr = (int)(rows - r0 < BTC_ROWS ? rows - r0 : BTC_ROWS);
        unsigned char *st = btc_smem + (size_t)(i % stages) * stb;
        uint64_t *bar = &full[i % stages];
        const size_t sb = btc_scale_bytes<WT>(slice);
        mbar_expect(bar, (unsigned)(nr * (rb + sb)));
        const unsigned char *w = reinterpret_cast<const unsigned char *>(W.data);
        const size_t wrow = btc_row_bytes<WT>(cols), wk0 = btc_row_bytes<WT>(k0);
        for (int r = 0; r < nr; r++) bulk_copy(st + r * rs, w + (r0 + r) * wrow + wk0, (unsigned)rb, bar);
        if (QUANT) { /* the scales: rows r0.. are contiguous over all the columns */
            const unsigned short *sc = W.scales + r0 * (cols / CU_QBLOCK) + k0 / CU_QBLOCK;
            unsigned char *ss = st + BTC_ROWS * rs;
            if (S == 1) bulk_copy(ss, sc, (unsigned)(nr * sb), bar);
            else
                for (int r = 0; r < nr; r++) bulk_copy(ss + r * sb, sc + r * (cols / CU_QBLOCK), (unsigned)sb, bar);
        }
    };
    /* the sums of tile i's 16 warps (in red, by parity) for its rows, in warp order */
    auto finish = [&](int64_t i) {
        if (threadIdx.x >= BTC_ROWS * n) return;
        const float *rp = red + (i & 1) * (BTC_RED_FLOATS / 2);
        const int row = threadIdx.x / n, j = threadIdx.x % n;
        float v = 0.0f;
        for (int w = 0; w < BTC_WARPS; w++) v += rp[(w * BTC_ROWS + row) * CU_GEMV_MAX_N + j];
        const int64_t r = (cl + i * ncl) * BTC_ROWS + row;
        if (S > 1) part[i * BTC_PART_FLOATS + row * CU_GEMV_MAX_N + j] = v;
        else if (r < rows) gemv_out(y + (size_t)j * rows, r, v, bias, accumulate);
    };
    const int64_t first = mine < stages ? mine : stages;
    if (threadIdx.x == 0) {
        for (int s = 0; s < stages; s++) mbar_init(&full[s]);
        mbar_init_fence();
        for (int64_t i = 0; i < first; i++) fetch(i); /* weights only: before the wait */
    }
    __syncthreads(); /* the barriers are initialised for every warp */
    pdl_wait();
    /* this warp's A fragments: lane (g, t) holds sequence g's activations for its k16 steps (bf16:
       columns 2t, 2t + 1 as a0 hi / a1 lo, 2t + 8, 2t + 9 as a2 / a3; quantized: unit j = block j / 2's
       mma j % 2, columns in the order of that lane's quants, as k_gemv_tc.cu's tc_xfrag) */
    unsigned a[BTC_MAX_SPW][4];
#pragma unroll
    for (int j = 0; j < BTC_MAX_SPW; j++) {
        a[j][0] = a[j][1] = a[j][2] = a[j][3] = 0u;
        if (j < spw && g < n) {
            const float *xr = x + (size_t)g * cols + k0 + (int64_t)(warp * spw + j) * 16;
            float2 u, v; /* the two pairs of the mma's k slots 2t, 2t + 1 and 2t + 8, 2t + 9 */
            if constexpr (WT == CU_BF16) {
                u = __ldg(reinterpret_cast<const float2 *>(xr + 2 * t));
                v = __ldg(reinterpret_cast<const float2 *>(xr + 2 * t + 8));
            } else if constexpr (WT == CU_Q8_0) { /* block (j / 2): columns 8t + 4 (j % 2) .. + 3 */
                const float4 q = __ldg(reinterpret_cast<const float4 *>(xr - (j & 1) * 16 + 8 * t + 4 * (j & 1)));
                u = make_float2(q.x, q.y), v = make_float2(q.z, q.w);
            } else { /* block (j / 2): columns 4t .. 4t + 3 (mma 0) or 16 + 4t .. (mma 1), pairs (0, 2), (1, 3) */
                const float4 q = __ldg(reinterpret_cast<const float4 *>(xr - (j & 1) * 16 + 16 * (j & 1) + 4 * t));
                u = make_float2(q.x, q.z), v = make_float2(q.y, q.w);
            }
            a[j][0] = split_pair(u.x, u.y, false), a[j][1] = split_pair(u.x, u.y, true);
            a[j][2] = split_pair(v.x, v.y, false), a[j][3] = split_pair(v.x, v.y, true);
        }
    }
    /* bf16, ldmatrix.x2: lanes 0-7 give rows 0-7 at the step's columns 0-7, lanes 8-15 at columns 8-15;
       quantized: row g's piece for lane t */
    const unsigned brow = QUANT ? (unsigned)(g * rs + (size_t)warp * (spw / 2) * (WT == CU_Q8_0 ? 32 : 16) +
                                             (WT == CU_Q8_0 ? 8 : 4) * t)
                                : (unsigned)((lane & 7) * rs + ((lane >> 3) & 1) * 16 + (size_t)warp * spw * 32);
    for (int64_t i = 0; i < mine; i++) {
        const int s = (int)(i % stages);
        mbar_wait(&full[s], (unsigned)(i / stages) & 1u);
        const unsigned char *st = btc_smem + (size_t)s * stb;
        float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        if constexpr (!QUANT) {
            const unsigned base = smem_addr(st) + brow;
#pragma unroll
            for (int j = 0; j < BTC_MAX_SPW; j++)
                if (j < spw) {
                    unsigned b0, b1;
                    ldmatrix_x2(base + j * 32, b0, b1);
                    mma_bf16(c, a[j][0], a[j][1], a[j][2], a[j][3], b0, b1);
                }
        } else {
            /* the scales of this lane's output rows 2t, 2t + 1 for the warp's first block */
            const unsigned short *sc = reinterpret_cast<const unsigned short *>(st + BTC_ROWS * rs) +
                                       (size_t)(2 * t) * spr + warp * (spw / 2);
#pragma unroll
            for (int b = 0; b < BTC_MAX_SPW / 2; b++)
                if (2 * b < spw) {
                    unsigned b0[2], b1[2];
                    if constexpr (WT == CU_Q8_0) {
                        const uint2 q = *reinterpret_cast<const uint2 *>(st + brow + b * 32);
                        q8_pairs(q.x, b0[0], b1[0]);
                        q8_pairs(q.y, b0[1], b1[1]);
                    } else {
                        const unsigned q = *reinterpret_cast<const unsigned *>(st + brow + b * 16);
                        b0[0] = q4_pair(q, 0), b1[0] = q4_pair(q, 8), b0[1] = q4_pair(q, 4), b1[1] = q4_pair(q, 12);
                    }
                    float p[4] = {0.0f, 0.0f, 0.0f, 0.0f};
                    mma_bf16(p, a[2 * b][0], a[2 * b][1], a[2 * b][2], a[2 * b][3], b0[0], b1[0]);
                    mma_bf16(p, a[2 * b + 1][0], a[2 * b + 1][1], a[2 * b + 1][2], a[2 * b + 1][3], b0[1], b1[1]);
                    const float s0 = f16_bits_to_f32(sc[b]), s1 = f16_bits_to_f32(sc[spr + b]);
                    c[0] = fmaf(p[0], s0, c[0]), c[1] = fmaf(p[1], s1, c[1]);
                    c[2] = fmaf(p[2], s0, c[2]), c[3] = fmaf(p[3], s1, c[3]);
                }
        }
        /* C: row g = hi of sequence g, g + 8 its lo; columns 2t, 2t + 1 = the tile's rows */
        float *rp = red + (i & 1) * (BTC_RED_FLOATS / 2);
        if (g < n) {
            rp[(warp * BTC_ROWS + 2 * t) * CU_GEMV_MAX_N + g] = c[0] + c[2];
            rp[(warp * BTC_ROWS + 2 * t + 1) * CU_GEMV_MAX_N + g] = c[1] + c[3];
        }
        __syncthreads(); /* every warp is done with stage s, and its sums are in rp */
        if (threadIdx.x == 0 && i + stages < mine) {
            fence_proxy_async(); /* the reads above before the copies' writes */
            fetch(i + stages);
        }
        finish(i);
    }
    if (S > 1) {
        cluster_sync(); /* every block's partial sums are complete */
        /* block `rank` finishes the tiles i = rank mod S, adding the slices in order */
        for (int64_t o = threadIdx.x; o < mine * BTC_ROWS * n; o += blockDim.x) {
            const int64_t i = o / (BTC_ROWS * n);
            const int row = (int)(o / n % BTC_ROWS), j = (int)(o % n);
            const int64_t r = (cl + i * ncl) * BTC_ROWS + row;
            if (i % S != rank || r >= rows) continue;
            float v = 0.0f;
            for (int q = 0; q < S; q++) v += ld_cluster(part + i * BTC_PART_FLOATS + row * CU_GEMV_MAX_N + j, (unsigned)q);
            gemv_out(y + (size_t)j * rows, r, v, bias, accumulate);
        }
        cluster_sync(); /* no block leaves while another reads its shared memory */
    }
}

static int g_min_n = 2; /* FM_CUDA_BULK_TC: the least batch it serves, 0 = off */

extern "C" void cuk_set_bulk_tc(int min_n) { g_min_n = min_n <= 0 ? 0 : min_n < 2 ? 2 : min_n; }

/* How many clusters of S blocks with shm bytes each the current device runs at once (0: none, or
   unknown); asked once per device, S and size. */
static int max_clusters(const void *k, int S, size_t shm, int sm_count) {
    if (S == 1) return sm_count;
    static std::mutex mu;
    static struct {
        const void *k;
        int dev, S;
        size_t shm;
        int n;
    } memo[32];
    static int nmemo;
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    std::lock_guard<std::mutex> lk(mu);
    for (int i = 0; i < nmemo; i++)
        if (memo[i].k == k && memo[i].dev == dev && memo[i].S == S && memo[i].shm == shm) return memo[i].n;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((unsigned)(S * (sm_count / S)));
    cfg.blockDim = dim3(BTC_WARPS * 32);
    cfg.dynamicSmemBytes = shm;
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeClusterDimension;
    at[0].val.clusterDim.x = (unsigned)S, at[0].val.clusterDim.y = 1, at[0].val.clusterDim.z = 1;
    cfg.attrs = at;
    cfg.numAttrs = 1;
    int n = 0;
    if (cudaOccupancyMaxActiveClusters(&n, k, &cfg) != cudaSuccess) {
        (void)cudaGetLastError();
        n = 0;
    }
    if (nmemo < 32) memo[nmemo++] = {k, dev, S, shm, n};
    return n;
}

extern "C" cudaError_t cuk_gemv_bulk_tc(cudaStream_t s, cu_wview W, const float *b, const float *x, int n, float *y,
                                        int accumulate, int sm_count, int *taken) {
    *taken = 0;
    const int mode = cuk_bulk_mode(), forced = mode == 2;
    const bool quant = W.dtype == CU_Q8_0 || W.dtype == CU_Q4_0;
    if (!g_min_n || n < g_min_n || !mode || !cuk_bulk_hw() || (W.dtype != CU_BF16 && !quant) || n < 2 ||
        n > CU_GEMV_MAX_N || W.rows < 1 || W.cols < 256 || ((uintptr_t)W.data & 15) || ((uintptr_t)x & 15) ||
        (quant && (!W.scales || ((uintptr_t)W.scales & 15))))
        return cudaSuccess;
    /* x is read by every block while others write y */
    const char *xb = (const char *)x, *yb = (const char *)y;
    if (xb < yb + (size_t)n * W.rows * 4 && yb < xb + (size_t)n * W.cols * 4) return cudaSuccess;
    /* the slice: whole 256-column parts (16 warps x one k16 step), at most 4096 columns (the A
       fragments in registers); forced (tests): the most slices up to 4 that divide, so clusters are
       used and the tests' 2048-column matrices keep 2 k16 steps per warp */
    int S = 0;
    for (int c = 1; c <= (forced ? 4 : BTC_MAX_S); c *= 2)
        if (W.cols % (256 * c) == 0 && W.cols / c <= 256 * BTC_MAX_SPW && (!quant || (W.cols / c) % 512 == 0) &&
            (forced || !S))
            S = c; /* quantized: whole quant blocks per warp (two k16 steps each) */
    /* slices under 2048 columns (dt_proj's 256) spend more on each tile's copies and sums than on its
       bytes: the register-fed kernel (the 7B's SSM path at batch 8: 32-34 us per layer with dt_proj
       here, 21.4 there) */
    if (!S || (!forced && W.cols / S < 2048)) return cudaSuccess;
    const int spw = (int)(W.cols / S / 256);
    const int64_t tiles = (W.rows + BTC_ROWS - 1) / BTC_ROWS;
    const int64_t slice = W.cols / S;
    const size_t stb = W.dtype == CU_BF16   ? btc_stage_bytes<CU_BF16>(slice)
                       : W.dtype == CU_Q8_0 ? btc_stage_bytes<CU_Q8_0>(slice)
                                            : btc_stage_bytes<CU_Q4_0>(slice);
    const size_t budget = cuk_bulk_budget();
    const size_t red = BTC_RED_FLOATS * 4;
    /* room for the cluster's partial sums of as many rounds as with half the clusters the SMs could
       hold (forced: 2 clusters) */
    const int64_t ncl_min = forced ? (tiles * BTC_PART_FLOATS * 4 + 32767) / 32768 + 1
                               : (sm_count / S) / 2 > 0 ? (sm_count / S) / 2 : 1;
    const int64_t part_rounds = (tiles + ncl_min - 1) / ncl_min;
    const size_t part = S > 1 ? (size_t)part_rounds * BTC_PART_FLOATS * 4 : 0;
    if (part > 32768 || budget < red + part + 2 * stb) return forced ? cudaErrorInvalidValue : cudaSuccess;
    int stages = (int)((budget - red - part) / stb); /* as many as fit beside the sums */
    if (stages > BTC_MAX_STAGES) stages = BTC_MAX_STAGES;
    if (forced) stages = 2; /* the ring wraps even on small matrices */
    const size_t shm = (size_t)stages * stb + red + part;
    void (*kf)(cu_wview, const float *, const float *, int, float *, int, int, int, int) =
        W.dtype == CU_BF16 ? k_gemv_bulk_tc<CU_BF16> : W.dtype == CU_Q8_0 ? k_gemv_bulk_tc<CU_Q8_0> : k_gemv_bulk_tc<CU_Q4_0>;
    const void *k = (const void *)kf;
    if (!cuk_bulk_smem_allowed(k, shm)) return forced ? cudaErrorInvalidValue : cudaSuccess;
    /* the clusters the device runs at once with that */
    int64_t ncl = forced ? ncl_min : max_clusters(k, S, shm, sm_count);
    if (ncl > tiles) ncl = tiles;
    if (ncl < 1) return forced ? cudaErrorInvalidValue : cudaSuccess;
    /* one round, or rounds that keep >= 85% of the clusters busy; else the register-fed kernel */
    const int64_t rounds = (tiles + ncl - 1) / ncl;
    if (S > 1 && rounds > part_rounds) return forced ? cudaErrorInvalidValue : cudaSuccess;
    if (!forced && rounds > 1 && (double)tiles / (double)(rounds * ncl) < 0.85) return cudaSuccess;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((unsigned)(ncl * S));
    cfg.blockDim = dim3(BTC_WARPS * 32);
    cfg.dynamicSmemBytes = shm;
    cfg.stream = s;
    cudaLaunchAttribute at[2];
    int na = 0;
    if (S > 1) {
        at[na].id = cudaLaunchAttributeClusterDimension;
        at[na].val.clusterDim.x = (unsigned)S, at[na].val.clusterDim.y = 1, at[na].val.clusterDim.z = 1;
        na++;
    }
    if (cuk_pdl_on) {
        at[na].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        at[na].val.programmaticStreamSerializationAllowed = 1;
        na++;
    }
    cfg.attrs = at;
    cfg.numAttrs = (unsigned)na;
    *taken = 1;
    cudaError_t e = cudaLaunchKernelEx(&cfg, kf, W, b, x, n, y, accumulate, S, spw, stages);
    return e != cudaSuccess ? e : cudaGetLastError();
}
