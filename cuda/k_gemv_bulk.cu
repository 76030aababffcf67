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
 * (16, or 8 with FM_CUDA_BULK_WARPS=8), tiles of NW or more rows give each warp up to ceil(tr / NW)
 * rows; smaller ones split each row's columns over NW / tr warps (the rest idle), whose sums
 * meet in shared memory (double-buffered by tile parity, so the next tile's writes cannot overtake
 * warp 0's reads). tr is the largest power of two up to 32 whose tile fits FM_CUDA_BULK_TILE_KB
 * (FM_CUDA_BULK_STAGES=n: then fewer rows, any count, until n stages fit), the stages as many as fit
 * FM_CUDA_BULK_KB (up to 8, at least 2).
 *
 * Fused forms (cuk_gemv_bulk_fused, cuda_fused.c): the rmsnorm of x computed by every block while
 * its first tiles stream in, and the decode conv1d step in the epilogue of the rows that feed it, the
 * taps, bias and state of the block's own rows staged in shared memory before the dependency wait.
 */
#include "k_bulk.cuh"
#include "k_qdot.cuh"

#include <atomic>
#include <mutex>

#define BULK_MAX_STAGES 8

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

/* bf16: x into two planes of float4s, plane h holding the h-th float4 of every 8-element granule;
   norm: x * scale * nw instead (as quantize_x_smem). */
__device__ __forceinline__ void stage_x_f32(const float *__restrict__ x, int64_t cols, float4 *xf, int norm, float scale,
                                            const float *nw) {
    const int ng = (int)(cols / 8);
    for (int i = threadIdx.x; i < 2 * ng; i += blockDim.x) {
        float4 v = ld_x(x + (size_t)i * 4);
        if (norm) {
            const float4 w = nw ? ld_x(nw + (size_t)i * 4) : make_float4(1.0f, 1.0f, 1.0f, 1.0f);
            v = make_float4(v.x * scale * w.x, v.y * scale * w.y, v.z * scale * w.z, v.w * scale * w.w);
        }
        xf[(i & 1) * ng + (i >> 1)] = v;
    }
}

/* The rmsnorm's scale 1 / sqrt(mean(x^2) + eps) from each thread's partial sum of squares, block-wide
   (double sums, as k_rmsnorm). */
template <int NW> __device__ float block_rms_scale(double ss, int64_t cols, float eps, double *red) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = ss;
    __syncthreads();
    double t = 0;
#pragma unroll
    for (int w = 0; w < NW; w++) t += red[w];
    return (float)(1.0 / sqrt(t / (double)cols + (double)eps));
}

/* The fused norm's staging with the row in registers: NI items of IE floats per thread (bf16: float4s
   of x in order; quantized: the 8-value quarters of each block, as quantize_x_smem), the norm weight
   loaded before the dependency wait (load_w), x read once after it (stage). Rows longer than NI items
   per thread take the two-pass path (block_rms_scale over global x, then stage_x_f32 /
   quantize_x_smem). */
template <int WT> struct norm_regs {
    static constexpr int IE = WT == CU_BF16 ? 4 : 8, NI = WT == CU_BF16 ? 2 : 1;
    float w[NI][IE];
    __device__ static bool fits(int64_t cols) { return cols / IE <= (int64_t)NI * blockDim.x; }
    __device__ void load_w(const float *nw, int64_t cols) {
#pragma unroll
        for (int k = 0; k < NI; k++) {
            const int64_t i = threadIdx.x + (int64_t)k * blockDim.x;
#pragma unroll
            for (int e = 0; e < IE; e += 4) {
                const float4 v = nw && i < cols / IE ? ld_x(nw + i * IE + e) : make_float4(1.0f, 1.0f, 1.0f, 1.0f);
                w[k][e] = v.x, w[k][e + 1] = v.y, w[k][e + 2] = v.z, w[k][e + 3] = v.w;
            }
        }
    }
    template <int NW> __device__ void stage(const float *__restrict__ x, int64_t cols, float eps, double *red,
                                            unsigned char *xsm) {
        const int64_t n = cols / IE;
        float v[NI][IE];
        double ss = 0;
#pragma unroll
        for (int k = 0; k < NI; k++) {
            const int64_t i = threadIdx.x + (int64_t)k * blockDim.x;
#pragma unroll
            for (int e = 0; e < IE; e += 4) {
                const float4 q = i < n ? ld_x(x + i * IE + e) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
                v[k][e] = q.x, v[k][e + 1] = q.y, v[k][e + 2] = q.z, v[k][e + 3] = q.w;
                ss += (double)q.x * q.x + (double)q.y * q.y + (double)q.z * q.z + (double)q.w * q.w;
            }
        }
        const float scale = block_rms_scale<NW>(ss, cols, eps, red);
#pragma unroll
        for (int k = 0; k < NI; k++) {
            const int64_t i = threadIdx.x + (int64_t)k * blockDim.x;
            if (i >= n) continue; /* quantized: whole four-lane groups (n and blockDim are multiples of 4) */
#pragma unroll
            for (int e = 0; e < IE; e++) v[k][e] = v[k][e] * scale * w[k][e];
            if constexpr (WT == CU_BF16) {
                reinterpret_cast<float4 *>(xsm)[(i & 1) * (n / 2) + (i >> 1)] =
                    make_float4(v[k][0], v[k][1], v[k][2], v[k][3]);
            } else {
                const int nblk = (int)(cols / CU_QBLOCK);
                quantize_item<WT>(v[k], (int)(i >> 2), (int)(i & 3), nblk, reinterpret_cast<signed char *>(xsm),
                                  reinterpret_cast<int2 *>(xsm + cols));
            }
        }
    }
};

/* Floats per conv slot in shared memory: the channel's K weights, its bias, its K - 1 state values. */
__host__ __device__ inline int conv_slot_floats(int K) { return 2 * K; }

/* The output of row `row` (gemv_out), and with the fused conv step (rows < f.conv_di) that channel's
   conv1d decode step from its shared-memory slot cs: as k_conv_decode. */
__device__ __forceinline__ void bulk_out(const cu_bulk_fuse &f, const float *cs, float *y, int64_t row, float v,
                                         const float *bias, int accumulate) {
    if (bias) v += bias[row]; /* the conv takes the biased value */
    gemv_out(y, row, v, nullptr, accumulate);
    if (row >= f.conv_di) return;
    const int K = f.conv_k, km1 = K - 1;
    float acc = cs[K];
    for (int k = 0; k < km1; k++) acc += cs[k] * cs[K + 1 + k];
    acc += cs[km1] * v;
    f.u[row] = silu_f(acc);
    float *st = (f.bases ? f.bases[0] + f.conv_off : f.conv_state) + (size_t)row * km1;
    for (int j = 0; j + 1 < km1; j++) st[j] = cs[K + 2 + j];
    if (km1 > 0) st[km1 - 1] = v;
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

/* Blocks per SM the registers must allow: 2 caps the 16-warp kernel at 64 registers (the bf16 form
   took 105 with the fused norm), which leaves room on each SM for the blocks of the kernels before and
   after it: bf16 decode 231.5-232.4 tok/s against 227.2-228.5 with 1 (docs/PERFORMANCE.md). A build
   knob (-DFM_BULK_MINB=1) for experiments. */
#ifndef FM_BULK_MINB
#define FM_BULK_MINB 2
#endif

template <int WT, int NW>
__global__ void __launch_bounds__(NW * 32, FM_BULK_MINB) k_gemv_bulk(cu_wview W, const float *__restrict__ bias,
                                                      const float *__restrict__ x, float *__restrict__ y, int accumulate,
                                                      int tr, int stages, cu_bulk_fuse f) {
    pdl_trigger();
    extern __shared__ __align__(128) unsigned char bulk_smem[];
    __shared__ uint64_t full[BULK_MAX_STAGES];
    __shared__ float red[2][NW];
    __shared__ double red_d[NW];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int64_t rows = W.rows, cols = W.cols;
    const int64_t ntiles = (rows + tr - 1) / tr;
    const size_t stb = stage_bytes<WT>(cols, tr);
    unsigned char *xsm = bulk_smem + (size_t)stages * stb;
    /* the fused conv's slots: this block's tiles' rows < conv_di, tile ordinal i, row r -> slot i tr + r */
    float *conv_sm = reinterpret_cast<float *>(xsm + x_bytes(WT, cols));
    const int K = f.conv_k, csf = conv_slot_floats(K);
    /* tiles of NW+ rows: up to rpw rows per warp; fewer: each row's columns split over `parts` warps
       (warps past parts x tr idle: tr need not divide NW) */
    const int rpw = tr >= NW ? (tr + NW - 1) / NW : 1, parts = tr >= NW ? 1 : NW / tr, part = tr >= NW ? 0 : warp / tr;
    const bool active = part < parts;

    if (threadIdx.x == 0) {
        for (int s = 0; s < stages; s++) mbar_init(&full[s]);
        mbar_init_fence();
        for (int s = 0; s < stages; s++) { /* weights only: before the wait */
            const int64_t t = blockIdx.x + (int64_t)s * gridDim.x;
            if (t < ntiles) fetch_tile<WT>(W, t, tr, bulk_smem + (size_t)s * stb, &full[s]);
        }
    }
    /* The fused conv's taps, bias and state for this block's rows, before the wait. The state is not a
       weight, but the last kernel to write this layer's conv state ran in an earlier forward (or it
       was uploaded or cleared), and the core downloads every forward's logits synchronously before it
       enqueues the next one, so it is settled here. */
    const int slots = f.conv_di > 0 ? f.conv_slots : 0;
    const float *cst = f.bases ? f.bases[0] + f.conv_off : f.conv_state;
    for (int i = threadIdx.x; i < slots; i += blockDim.x) {
        const int64_t row = (blockIdx.x + (int64_t)(i / tr) * gridDim.x) * tr + i % tr;
        if (row >= f.conv_di) continue;
        float *cs = conv_sm + (size_t)i * csf;
        for (int k = 0; k < K; k++) cs[k] = f.conv_w[(size_t)row * K + k];
        cs[K] = f.conv_b ? f.conv_b[row] : 0.0f;
        for (int k = 0; k < K - 1; k++) cs[K + 1 + k] = cst[(size_t)row * (K - 1) + k];
    }
    norm_regs<WT> nr;
    const bool nreg = f.norm && norm_regs<WT>::fits(cols);
    if (nreg) nr.load_w(f.norm_w, cols);
    pdl_wait();
    if (nreg) {
        nr.template stage<NW>(x, cols, f.eps, red_d, xsm);
    } else {
        double ss = 0;
        if (f.norm)
            for (int64_t j = threadIdx.x; j < cols / 4; j += blockDim.x) {
                const float4 v = ld_x(x + j * 4);
                ss += (double)v.x * v.x + (double)v.y * v.y + (double)v.z * v.z + (double)v.w * v.w;
            }
        const float nscale = f.norm ? block_rms_scale<NW>(ss, cols, f.eps, red_d) : 1.0f;
        if constexpr (WT == CU_BF16) stage_x_f32(x, cols, reinterpret_cast<float4 *>(xsm), f.norm, nscale, f.norm_w);
        else quantize_x_smem<WT>(x, (int)(cols / CU_QBLOCK), reinterpret_cast<signed char *>(xsm),
                                 reinterpret_cast<int2 *>(xsm + cols), f.norm, nscale, f.norm_w);
    }
    __syncthreads();

    int i = 0;
    for (int64_t t = blockIdx.x; t < ntiles; t += gridDim.x, i++) {
        const int s = i % stages;
        unsigned char *st = bulk_smem + (size_t)s * stb;
        mbar_wait(&full[s], (unsigned)(i / stages) & 1u);
        for (int k = 0; k < rpw && active; k++) {
            const int r = tr >= NW ? warp + NW * k : warp % tr; /* the tile's row this warp does now */
            if (r >= tr) break;
            const int64_t row = t * tr + r;
            float acc = row < rows ? row_dot<WT>(st, r, tr, cols, xsm, part * 32 + lane, 32 * parts) : 0.0f;
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
            if (parts > 1) {
                if (lane == 0) red[i & 1][warp] = acc;
            } else if (lane == 0 && row < rows) {
                bulk_out(f, conv_sm + (size_t)(i * tr + r) * csf, y, row, acc, bias, accumulate);
            }
        }
        __syncthreads(); /* every warp is done with stage s, and its part is in red */
        const int64_t tn = t + (int64_t)stages * gridDim.x;
        if (threadIdx.x == 0 && tn < ntiles) {
            fence_proxy_async(); /* the reads above before the copy's writes */
            fetch_tile<WT>(W, tn, tr, st, &full[s]);
        }
        if (parts > 1 && warp == 0 && lane < tr && t * tr + lane < rows) {
            float v = 0.0f;
            for (int p = 0; p < parts; p++) v += red[i & 1][p * tr + lane];
            bulk_out(f, conv_sm + (size_t)(i * tr + lane) * csf, y, t * tr + lane, v, bias, accumulate);
        }
    }
}

static int g_mode = 1;      /* FM_CUDA_BULK (cuda_internal.h) */
static int g_kb = 220;      /* FM_CUDA_BULK_KB */
static int g_tile_kb = 96;  /* FM_CUDA_BULK_TILE_KB */
static int g_warps = 16;    /* FM_CUDA_BULK_WARPS: 8 or 16 per block */
static int g_min_stages = 0; /* FM_CUDA_BULK_STAGES: 0 = tiles as above; n = shrink them until n stages fit */
static int g_sm90_all = 0;  /* every device opened so far is sm_90+ */
static size_t g_smem_cap = (size_t)-1; /* the least opt-in shared memory per block of those devices */

extern "C" void cuk_set_bulk_warps(int warps) { g_warps = warps == 8 ? 8 : 16; }
extern "C" void cuk_set_bulk_stages(int min_stages) {
    g_min_stages = min_stages < 0 ? 0 : min_stages > BULK_MAX_STAGES ? BULK_MAX_STAGES : min_stages;
}

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

int cuk_bulk_mode() { return g_mode; }
bool cuk_bulk_hw() { return g_sm90_all != 0; }
size_t cuk_bulk_budget() { return (size_t)g_kb * 1024 < g_smem_cap ? (size_t)g_kb * 1024 : g_smem_cap; }

/* k_bulk.cuh: cudaFuncSetAttribute once per kernel, device and larger size (it costs microseconds of
   host time per call, and eager decode steps launch the kernel hundreds of times); false (error
   cleared) when the device refuses, and then the register-fed GEMV runs instead. */
#define BULK_MAX_DEVICES 64
bool cuk_bulk_smem_allowed(const void *k, size_t shm) {
    static const void *kern[BULK_MAX_DEVICES][16];
    static std::atomic<size_t> have[BULK_MAX_DEVICES][16];
    static std::mutex mu;
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) {
        (void)cudaGetLastError();
        return false;
    }
    int slot = -1;
    if (dev >= 0 && dev < BULK_MAX_DEVICES) {
        std::lock_guard<std::mutex> g(mu);
        for (int i = 0; i < 16 && slot < 0; i++)
            if (kern[dev][i] == k || !kern[dev][i]) {
                kern[dev][i] = k;
                slot = i;
            }
    }
    if (slot >= 0 && have[dev][slot].load() >= shm) return true;
    if (cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)shm) != cudaSuccess) {
        (void)cudaGetLastError(); /* not this device's size after all */
        return false;
    }
    if (slot >= 0) {
        size_t cur = have[dev][slot].load();
        while (cur < shm && !have[dev][slot].compare_exchange_weak(cur, shm)) {
        }
    }
    return true;
}

template <int WT>
static cudaError_t launch(cudaStream_t s, cu_wview W, const float *b, const float *x, float *y, int acc, int sm_count,
                          cu_bulk_fuse f, int *taken) {
    const int forced = g_mode == 2; /* tests: small matrices too, and 3 blocks, so stages are reused */
    const size_t xb = x_bytes(WT, W.cols), budget = cuk_bulk_budget();
    int tr = 32;
    while (tr > 1 && stage_bytes<WT>(W.cols, tr) > (size_t)g_tile_kb * 1024) tr /= 2;
    const int64_t blocks = forced ? 3 : sm_count;
    /* the fused conv's slots: as many rows as the block's share of the conv tiles */
    auto conv_bytes = [&](int t) -> size_t {
        if (f.conv_di <= 0) return 0;
        const int64_t nt = (W.rows + t - 1) / t, grid = nt < blocks ? nt : blocks;
        const int64_t ctiles = (f.conv_di + t - 1) / t, per = (ctiles + grid - 1) / grid;
        return (size_t)(per * t) * conv_slot_floats(f.conv_k) * sizeof(float);
    };
    /* FM_CUDA_BULK_STAGES: the largest tile (any row count) that still leaves that many stages */
    if (g_min_stages > 0 && budget > xb)
        while (tr > 1 && (budget - xb - conv_bytes(tr)) / stage_bytes<WT>(W.cols, tr) < (size_t)g_min_stages &&
               budget > xb + conv_bytes(tr - 1))
            tr--;
    const size_t stb = stage_bytes<WT>(W.cols, tr), cb = conv_bytes(tr);
    const int64_t ntiles = (W.rows + tr - 1) / tr, grid = ntiles < blocks ? ntiles : blocks;
    f.conv_slots = cb ? (int32_t)(cb / (conv_slot_floats(f.conv_k) * sizeof(float))) : 0;
    if (budget < xb + cb + 2 * stb) return forced ? cudaErrorInvalidValue : cudaSuccess; /* forced: say the knobs do not fit */
    int stages = (int)((budget - xb - cb) / stb);
    if (stages > BULK_MAX_STAGES) stages = BULK_MAX_STAGES;
    if (ntiles < sm_count && !forced) return cudaSuccess;
    const size_t shm = (size_t)stages * stb + xb + cb;
    void (*k)(cu_wview, const float *, const float *, float *, int, int, int, cu_bulk_fuse) =
        g_warps == 16 ? k_gemv_bulk<WT, 16> : k_gemv_bulk<WT, 8>;
    if (!cuk_bulk_smem_allowed((const void *)k, shm)) return forced ? cudaErrorInvalidValue : cudaSuccess;
    *taken = 1;
    return cuk_launch(k, dim3((unsigned)grid), dim3(32 * g_warps), shm, s, W, b, x, y, acc, tr, stages, f);
}

/* Whether the bulk-copy GEMV can take W and x at all (its shape and alignment rules, not its budget). */
static int takes(cu_wview W, const float *x) {
    if (!g_mode || !g_sm90_all || ((uintptr_t)W.data & 15) || ((uintptr_t)x & 15)) return 0;
    switch (W.dtype) {
    case CU_BF16: return W.cols % 8 == 0 && W.cols / 8 < (1 << 28);
    case CU_Q8_0:
    case CU_Q4_0: /* whole 16-byte scale ranges per tile; 8-bit activations, so not with FM_CUDA_QDOT=0 */
        return W.cols % 256 == 0 && W.scales && ((uintptr_t)W.scales & 15) == 0 && W.cols / CU_QBLOCK < (1 << 24) &&
               cuk_gemv_dp4a_ok(W, x, 1);
    }
    return 0;
}

static cudaError_t dispatch(cudaStream_t s, cu_wview W, const float *b, const float *x, float *y, int accumulate,
                            int sm_count, const cu_bulk_fuse &f, int *taken) {
    *taken = 0;
    if (!takes(W, x)) return cudaSuccess;
    switch (W.dtype) {
    case CU_BF16: return launch<CU_BF16>(s, W, b, x, y, accumulate, sm_count, f, taken);
    case CU_Q8_0: return launch<CU_Q8_0>(s, W, b, x, y, accumulate, sm_count, f, taken);
    case CU_Q4_0: return launch<CU_Q4_0>(s, W, b, x, y, accumulate, sm_count, f, taken);
    }
    return cudaSuccess;
}

extern "C" cudaError_t cuk_gemv_bulk(cudaStream_t s, cu_wview W, const float *b, const float *x, float *y,
                                     int accumulate, int sm_count, int *taken) {
    const cu_bulk_fuse none = {};
    return dispatch(s, W, b, x, y, accumulate, sm_count, none, taken);
}

extern "C" cudaError_t cuk_gemv_bulk_fused(cudaStream_t s, cu_wview W, const float *b, const float *x, float *y,
                                           int sm_count, const cu_bulk_fuse *f, int *taken) {
    *taken = 0;
    if (f->norm && x == y) return cudaErrorInvalidValue; /* every block reads all of x while others write y */
    if (f->conv_di > W.rows || f->conv_k < 0 || f->conv_k > 16 || (f->conv_di > 0 && (f->conv_k < 1 || !f->conv_w || !f->u)))
        return cudaErrorInvalidValue;
    return dispatch(s, W, b, x, y, 0, sm_count, *f, taken);
}
