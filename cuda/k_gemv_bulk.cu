/* k_gemv_bulk.cu - the batch-1 decode GEMV on Hopper's bulk copy engine (sm_90+): y (+)= W x + b.
 *
 * The FMA kernel (k_gemv.cu) keeps its weights in flight in registers, so each launch ramps up and
 * drains: about 7.5 us per large matrix beyond its bytes / bandwidth on the H200. Here one block per
 * SM owns a contiguous range of rows (an even split, so the blocks finish together) and streams it
 * through a ring of shared-memory stages with cp.async.bulk (one thread issues them; an mbarrier per
 * stage says when its bytes have landed). The first ring's worth of copies is issued before
 * pdl_wait(), so under programmatic dependent launch up to ~160 KB per SM of this matrix is already
 * arriving while the previous kernel finishes.
 *
 * A stage holds RS whole rows (and, quantized, their scales). Thread t works on the granules
 * cl, cl + TPR, ... (cl = t % TPR, TPR = min(256, granules per row)) of rows rl, rl + RPI, ... of the
 * stage (rl = t / TPR, RPI = 256 / TPR), so its activations are the same for every row: they are
 * loaded once into registers (GPT granules' worth). Per stage the partial sums are reduced across the
 * lanes, then across the warps in shared memory (fixed order: deterministic), and the stage's
 * buffer goes back to the producer.
 */
#include "k_widen.cuh"

#define BULK_THREADS 256
#define BULK_MAXR 8                   /* rows of a stage per thread */
#define BULK_STAGE_TARGET (32u << 10) /* bytes of weights per stage */
#define BULK_SMEM (160u << 10)        /* the ring */
#define BULK_MAX_STAGES 8

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
__device__ __forceinline__ uint32_t smem_addr(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }
__device__ __forceinline__ void mbar_init(uint64_t *b) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_addr(b)) : "memory");
}
__device__ __forceinline__ void mbar_expect(uint64_t *b, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_addr(b)), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint64_t *b, uint32_t parity) {
    asm volatile("{\n\t.reg .pred p;\n"
                 "WAIT_%=:\n\t"
                 "mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n\t"
                 "@!p bra WAIT_%=;\n}" ::"r"(smem_addr(b)),
                 "r"(parity)
                 : "memory");
}
__device__ __forceinline__ void bulk_copy(void *dst, const void *src, uint32_t bytes, uint64_t *b) {
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
                     smem_addr(dst)),
                 "l"(src), "r"(bytes), "r"(smem_addr(b))
                 : "memory");
}
#endif

/* Stage s of this block: rows [r0, r0 + m) into slot s % ns. One thread. */
template <int WT>
__device__ __forceinline__ void issue_stage(const cu_wview &W, unsigned char *ring, uint64_t *bars, int64_t r_begin,
                                            int64_t r_end, int s, int rs, int ns, uint32_t slot_bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    const size_t rb = row_bytes<WT>(W.cols);
    const int64_t r0 = r_begin + (int64_t)s * rs;
    const int64_t m = r_end - r0 < rs ? r_end - r0 : rs;
    const int64_t spr = W.cols / CU_QBLOCK;
    unsigned char *dst = ring + (size_t)(s % ns) * slot_bytes;
    uint64_t *bar = &bars[s % ns];
    const uint32_t qb = (uint32_t)(m * rb), sb = W.scales ? (uint32_t)(m * spr * 2) : 0u;
    mbar_expect(bar, qb + sb);
    bulk_copy(dst, (const unsigned char *)W.data + (size_t)r0 * rb, qb, bar);
    if (sb) bulk_copy(dst + (size_t)rs * rb, W.scales + r0 * spr, sb, bar);
#endif
}

template <int WT, int GPT>
__global__ void __launch_bounds__(BULK_THREADS, 1)
    k_gemv_bulk(cu_wview W, const float *__restrict__ bias, const float *__restrict__ x, float *__restrict__ y,
                int accumulate, int rs, int ns, uint32_t slot_bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    pdl_trigger();
    constexpr int E = wt_traits<WT>::E, GPB = wt_traits<WT>::GPB;
    extern __shared__ __align__(128) unsigned char ring[];
    __shared__ uint64_t bars[BULK_MAX_STAGES];
    __shared__ float red[2][BULK_THREADS][BULK_MAXR]; /* [parity][unit][row of the thread] */
    const int64_t rows = W.rows, cols = W.cols;
    const size_t rb = row_bytes<WT>(cols);
    const int gpr = (int)(rb / 16);
    const int tpr = gpr < BULK_THREADS ? gpr : BULK_THREADS, rpi = BULK_THREADS / tpr;
    const int t = threadIdx.x, rl = t / tpr, cl = t % tpr;
    const int uw = tpr < 32 ? tpr : 32;       /* lanes reduced by shuffles: one unit */
    const int upr = tpr / uw;                 /* units per row */
    const int unit = t / uw, lane_u = t % uw; /* units are consecutive lanes of one row */
    const int64_t r_begin = rows * blockIdx.x / gridDim.x, r_end = rows * (blockIdx.x + 1) / gridDim.x;
    const int nst = (int)((r_end - r_begin + rs - 1) / rs);
    const int64_t spr = cols / CU_QBLOCK;

    if (t == 0) {
        for (int i = 0; i < ns; i++) mbar_init(&bars[i]);
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
        asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
        /* weights only: before the wait */
        for (int s = 0; s < ns && s < nst; s++) issue_stage<WT>(W, ring, bars, r_begin, r_end, s, rs, ns, slot_bytes);
    }
    __syncthreads();
    pdl_wait();
    float xr[GPT][E];
#pragma unroll
    for (int gi = 0; gi < GPT; gi++) load_xv<E>(x + (size_t)(cl + tpr * gi) * E, xr[gi]);

    for (int s = 0; s < nst; s++) {
        mbar_wait(&bars[s % ns], (uint32_t)((s / ns) & 1));
        const unsigned char *q = ring + (size_t)(s % ns) * slot_bytes;
        const unsigned short *sc = reinterpret_cast<const unsigned short *>(q + (size_t)rs * rb);
        const int64_t r0 = r_begin + (int64_t)s * rs;
        const int m = (int)(r_end - r0 < rs ? r_end - r0 : rs);
        float part[BULK_MAXR];
#pragma unroll
        for (int j = 0; j < BULK_MAXR; j++) {
            part[j] = 0.0f;
            const int row = rl + rpi * j;
            if (row < m) {
#pragma unroll
                for (int gi = 0; gi < GPT; gi++) {
                    const int g = cl + tpr * gi;
                    const uint4 wv = *reinterpret_cast<const uint4 *>(q + (size_t)row * rb + (size_t)g * 16);
                    float w[E];
                    widen<WT>(wv, w);
                    float s0 = 0.0f, s1 = 0.0f;
#pragma unroll
                    for (int e = 0; e < E; e += 2) {
                        s0 = fmaf(w[e], xr[gi][e], s0);
                        s1 = fmaf(w[e + 1], xr[gi][e + 1], s1);
                    }
                    if constexpr (GPB > 0) part[j] = fmaf(s0 + s1, f16_bits_to_f32(sc[(size_t)row * spr + g / GPB]), part[j]);
                    else part[j] += s0 + s1;
                }
            }
        }
        const int par = s & 1;
#pragma unroll
        for (int j = 0; j < BULK_MAXR; j++) {
            if (rpi * j >= rs) break; /* uniform */
            float v = part[j];
            for (int o = uw / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o, uw);
            if (lane_u == 0) red[par][unit][j] = v;
        }
        __syncthreads(); /* the stage's buffer is read: it goes back to the producer */
        if (t == 0 && s + ns < nst) issue_stage<WT>(W, ring, bars, r_begin, r_end, s + ns, rs, ns, slot_bytes);
        if (t < m) {
            const int rr = t % rpi, j = t / rpi;
            float v = 0.0f;
            for (int u = 0; u < upr; u++) v += red[par][rr * upr + u][j];
            const int64_t row = r0 + t;
            if (bias) v += bias[row];
            y[row] = accumulate ? y[row] + v : v;
        }
    }
#else
    (void)W;
    (void)bias;
    (void)x;
    (void)y;
    (void)accumulate;
    (void)rs;
    (void)ns;
    (void)slot_bytes;
#endif
}

/* The launch shape for W, or 0 when this kernel cannot take it (then the FMA kernel does). */
typedef struct bulk_shape {
    int gpt, rs, ns;
    uint32_t slot_bytes;
} bulk_shape;

static int bulk_elems(int dtype) {
    return dtype == CU_F32 ? 4 : dtype == CU_F16 || dtype == CU_BF16 ? 8 : dtype == CU_Q8_0 ? 16 : 32;
}

static int bulk_plan(const cu_wview &W, const float *x, bulk_shape *p) {
    const int E = bulk_elems(W.dtype);
    if (W.cols % E || ((uintptr_t)W.data & 15) || ((uintptr_t)x & 15)) return 0;
    const int64_t gpr = W.cols / E; /* 16-byte granules per row */
    if (gpr < 1 || (gpr < BULK_THREADS ? BULK_THREADS % gpr : gpr % BULK_THREADS)) return 0;
    const int tpr = gpr < BULK_THREADS ? (int)gpr : BULK_THREADS, rpi = BULK_THREADS / tpr;
    const int64_t gpt = gpr / tpr;
    if (gpt > 8 || gpt * E > 64) return 0; /* activations held in registers */
    const int64_t rb = gpr * 16;
    int64_t sbytes = 0;
    if (W.dtype == CU_Q8_0 || W.dtype == CU_Q4_0) {
        sbytes = W.cols / CU_QBLOCK * 2; /* scale bytes per row: each stage's must be whole 16-byte pieces */
        if (!W.scales || sbytes % 16 || ((uintptr_t)W.scales & 15)) return 0;
    }
    int64_t rs = (int64_t)BULK_STAGE_TARGET / rb;
    rs = rs / rpi * rpi;
    if (rs < rpi) rs = rpi;
    if (rs > (int64_t)BULK_MAXR * rpi) rs = (int64_t)BULK_MAXR * rpi;
    const int64_t slot = ((rs * (rb + sbytes)) + 127) / 128 * 128;
    int64_t ns = (int64_t)BULK_SMEM / slot;
    if (ns > BULK_MAX_STAGES) ns = BULK_MAX_STAGES;
    if (ns < 2) return 0;
    p->gpt = (int)gpt;
    p->rs = (int)rs;
    p->ns = (int)ns;
    p->slot_bytes = (uint32_t)slot;
    return 1;
}

template <int WT, int GPT>
static cudaError_t launch_gpt(cudaStream_t s, cu_wview W, const float *b, const float *x, float *y, int acc, int sm,
                              const bulk_shape &p) {
    constexpr int E = wt_traits<WT>::E;
    if constexpr (GPT * E > 64) {
        return cudaErrorInvalidValue;
    } else {
        auto k = k_gemv_bulk<WT, GPT>;
        const size_t shm = (size_t)p.ns * p.slot_bytes;
        cudaError_t e = cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)shm);
        if (e != cudaSuccess) return e;
        int64_t stages = (W.rows + p.rs - 1) / p.rs;
        const unsigned grid = (unsigned)(stages < sm ? stages : sm);
        return cuk_launch(k, dim3(grid), dim3(BULK_THREADS), shm, s, W, b, x, y, acc, p.rs, p.ns, p.slot_bytes);
    }
}

template <int WT>
static cudaError_t launch_wt(cudaStream_t s, cu_wview W, const float *b, const float *x, float *y, int acc, int sm,
                             const bulk_shape &p) {
    switch (p.gpt) {
    case 1: return launch_gpt<WT, 1>(s, W, b, x, y, acc, sm, p);
    case 2: return launch_gpt<WT, 2>(s, W, b, x, y, acc, sm, p);
    case 4: return launch_gpt<WT, 4>(s, W, b, x, y, acc, sm, p);
    case 8: return launch_gpt<WT, 8>(s, W, b, x, y, acc, sm, p);
    }
    return cudaErrorInvalidValue;
}

extern "C" int cuk_gemv_bulk_ok(cu_wview W, const float *x) {
    bulk_shape p;
    return bulk_plan(W, x, &p);
}

extern "C" cudaError_t cuk_gemv_bulk(cudaStream_t s, cu_wview W, const float *b, const float *x, float *y,
                                     int accumulate, int sm_count) {
    bulk_shape p;
    if (!bulk_plan(W, x, &p)) return cudaErrorInvalidValue;
    switch (W.dtype) {
    case CU_F32: return launch_wt<CU_F32>(s, W, b, x, y, accumulate, sm_count, p);
    case CU_F16: return launch_wt<CU_F16>(s, W, b, x, y, accumulate, sm_count, p);
    case CU_BF16: return launch_wt<CU_BF16>(s, W, b, x, y, accumulate, sm_count, p);
    case CU_Q8_0: return launch_wt<CU_Q8_0>(s, W, b, x, y, accumulate, sm_count, p);
    case CU_Q4_0: return launch_wt<CU_Q4_0>(s, W, b, x, y, accumulate, sm_count, p);
    }
    return cudaErrorInvalidValue;
}
