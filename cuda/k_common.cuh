/* k_common.cuh - device helpers shared by the kernels: element loads of every storage type. */
#ifndef FM_K_COMMON_CUH
#define FM_K_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "cuda_internal.h"

#include <utility>

/* Programmatic dependent launch (Hopper and later). Decode-path kernels are launched with
   cudaLaunchAttributeProgrammaticStreamSerialization (cuk_launch below, when cuk_pdl_on): a kernel
   may then start while its predecessor is still running. Each such kernel calls pdl_trigger() at its
   start (its successor may be scheduled once all of its blocks run) and pdl_wait() before it reads
   anything an earlier kernel wrote or writes anything at all; before the wait it reads only weights
   (constant while the model runs), so the next matrix's first loads overlap the previous kernel's
   tail. Without the attribute (or before sm_90) both are no-ops. */
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}

extern int cuk_pdl_on;
/* L2 prefetch of each GEMV block's weight rows at block start (prefetch_l2 below): off by default, on
   with FM_CUDA_PREFETCH=1 (cuk_set_prefetch). Measured on the H200 it costs more than it gains (7B bf16
   decode 157 vs 178 tokens/s, docs/PERFORMANCE.md); kept as a knob for other GPUs. */
extern int cuk_prefetch_on;

/* Called by one whole warp: asks the L2 to fetch [p, p + bytes) (16-byte aligned start, any length;
   rounded down to whole 16-byte pieces) with bulk prefetches split over the lanes. Issued before
   pdl_wait(), so a block that became resident while the previous kernel drains already has its weights
   streaming from DRAM, and later blocks get theirs at the full rate without holding the loads in
   registers. sm_90+ (cp.async.bulk); a no-op before. */
__device__ __forceinline__ void prefetch_l2(const void *p, size_t bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    const int lane = threadIdx.x & 31;
    const size_t pieces = bytes / 16, per = (pieces + 31) / 32;
    const size_t a = (size_t)lane * per, b = a + per < pieces ? a + per : pieces;
    if (a < b)
        asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"((const char *)p + a * 16),
                     "r"((unsigned)((b - a) * 16))
                     : "memory");
#else
    (void)p;
    (void)bytes;
#endif
}

/* Bytes of one row of a matrix stored as WT (quantized: the quants only; scales are a plane of
   their own, cols / 32 fp16 per row). */
template <int WT> __host__ __device__ __forceinline__ size_t row_bytes(int64_t cols) {
    if constexpr (WT == CU_F32) return (size_t)cols * 4;
    else if constexpr (WT == CU_Q8_0) return (size_t)cols;
    else if constexpr (WT == CU_Q4_0) return (size_t)cols / 2;
    else return (size_t)cols * 2;
}

/* The GEMVs' output: yb[row] (+)= v + bias[row] (yb: one sequence's output row, bias may be NULL). */
__device__ __forceinline__ void gemv_out(float *yb, int64_t row, float v, const float *bias, int accumulate) {
    if (bias) v += bias[row];
    yb[row] = accumulate ? yb[row] + v : v;
}

/* prefetch_l2 of rows [first, first + count) of W (clipped to its rows), which are contiguous: one
   range of quants and, for quantized W, one of scales (when 16-byte aligned). One whole warp. */
template <int WT> __device__ __forceinline__ void prefetch_l2_rows(const cu_wview &W, int64_t first, int64_t count) {
    const int64_t n = W.rows - first < count ? W.rows - first : count;
    prefetch_l2((const unsigned char *)W.data + (size_t)first * row_bytes<WT>(W.cols), (size_t)n * row_bytes<WT>(W.cols));
    const int64_t spr = W.cols / CU_QBLOCK;
    if (W.scales && ((uintptr_t)(W.scales + first * spr) & 15) == 0) prefetch_l2(W.scales + first * spr, (size_t)n * spr * 2);
}

template <typename... KArgs, typename... Args>
static cudaError_t cuk_launch(void (*k)(KArgs...), dim3 grid, dim3 block, size_t shm, cudaStream_t s,
                              Args &&...args) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = shm;
    cfg.stream = s;
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = at;
    cfg.numAttrs = cuk_pdl_on ? 1 : 0;
    cudaError_t e = cudaLaunchKernelEx(&cfg, k, std::forward<Args>(args)...);
    return e != cudaSuccess ? e : cudaGetLastError();
}

/* Weight loads: read-only, streamed (no L1 allocation, so L1 keeps the activations), 256-byte L2
   prefetch; 16, 8 and 4 bytes. */
__device__ __forceinline__ uint4 ld_stream(const void *p) {
    uint4 r;
    asm volatile("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
                 : "l"(p));
    return r;
}
__device__ __forceinline__ uint2 ld_stream8(const void *p) {
    uint2 r;
    asm volatile("ld.global.nc.L1::no_allocate.L2::256B.v2.u32 {%0,%1}, [%2];" : "=r"(r.x), "=r"(r.y) : "l"(p));
    return r;
}
__device__ __forceinline__ unsigned ld_stream4(const void *p) {
    unsigned r;
    asm volatile("ld.global.nc.L1::no_allocate.L2::256B.u32 %0, [%1];" : "=r"(r) : "l"(p));
    return r;
}

__device__ __forceinline__ float bf16_bits_to_f32(unsigned short h) { return __uint_as_float((unsigned)h << 16); }
__device__ __forceinline__ float f16_bits_to_f32(unsigned short h) {
    return __half2float(__ushort_as_half(h));
}

/* Element (r, c) of w widened to fp32, any storage type (the slow generic path). */
__device__ __forceinline__ float w_elem(const cu_wview &w, int64_t r, int64_t c) {
    switch (w.dtype) {
    case CU_F32: return ((const float *)w.data)[r * w.cols + c];
    case CU_F16: return f16_bits_to_f32(((const unsigned short *)w.data)[r * w.cols + c]);
    case CU_BF16: return bf16_bits_to_f32(((const unsigned short *)w.data)[r * w.cols + c]);
    case CU_Q8_0: {
        float d = f16_bits_to_f32(w.scales[r * (w.cols / CU_QBLOCK) + c / CU_QBLOCK]);
        return d * (float)((const signed char *)w.data)[r * w.cols + c];
    }
    case CU_Q4_0: {
        float d = f16_bits_to_f32(w.scales[r * (w.cols / CU_QBLOCK) + c / CU_QBLOCK]);
        int64_t blk = c / CU_QBLOCK, i = c % CU_QBLOCK;
        unsigned char q = ((const unsigned char *)w.data)[r * (w.cols / 2) + blk * 16 + (i & 15)];
        int v = i < 16 ? (q & 0x0f) : (q >> 4);
        return d * (float)(v - 8);
    }
    }
    return 0.0f;
}

__device__ __forceinline__ float silu_f(float v) { return v / (1.0f + expf(-v)); }
__device__ __forceinline__ float softplus_f(float v) { return v > 20.0f ? v : log1pf(expf(v)); }

/* Segment i of a launch table: its state pointers. */
__device__ __forceinline__ float *seg_conv(const cu_segtab &t, int i) {
    return t.bases ? t.bases[t.first + i] + t.conv_off : t.conv[i];
}
__device__ __forceinline__ float *seg_ssm(const cu_segtab &t, int i) {
    return t.bases ? t.bases[t.first + i] + t.ssm_off : t.ssm[i];
}

#endif
