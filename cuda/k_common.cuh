/* k_common.cuh - device helpers shared by the kernels: element loads of every storage type. */
#ifndef FM_K_COMMON_CUH
#define FM_K_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "cuda_internal.h"

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
