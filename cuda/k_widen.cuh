/* k_widen.cuh - 16-byte granules of weights widened to fp32 in registers, every storage type: the
   decode GEMV (k_gemv.cu) and the layers kernel (k_layers.cu) share them. */
#ifndef FM_K_WIDEN_CUH
#define FM_K_WIDEN_CUH

#include "k_common.cuh"

/* E: elements per 16-byte granule; GPB: granules per quant block (scale index = g / GPB). */
template <int WT> struct wt_traits;
template <> struct wt_traits<CU_F32> { enum { E = 4, GPB = 0 }; };
template <> struct wt_traits<CU_F16> { enum { E = 8, GPB = 0 }; };
template <> struct wt_traits<CU_BF16> { enum { E = 8, GPB = 0 }; };
template <> struct wt_traits<CU_Q8_0> { enum { E = 16, GPB = 2 }; };
template <> struct wt_traits<CU_Q4_0> { enum { E = 32, GPB = 1 }; };

__device__ __forceinline__ float2 h2f(unsigned v) {
    __half2 h = *reinterpret_cast<__half2 *>(&v);
    return __half22float2(h);
}

/* 16 int8 -> fp32: byte k of (q ^ 0x80808080) = b + 128 placed in the low mantissa bits of 2^23
   (one byte permute), minus 2^23 + 128: exactly b. */
__device__ __forceinline__ void dequant_q8(const uint4 &w, float *o) {
    const unsigned q[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const unsigned t = q[i] ^ 0x80808080u;
#pragma unroll
        for (int k = 0; k < 4; k++) o[4 * i + k] = __uint_as_float(__byte_perm(t, 0x4B000000u, 0x7540u + k)) - 8388736.0f;
    }
}

/* 32 nibbles (quant.h order: byte j = element j low, element j + 16 high) -> fp32 (n - 8): nibble k of
   a 16-bit half-word masked into 2^23's mantissa is 2^23 + n 16^k; fma(f, 16^-k, -(2^23 16^-k + 8))
   is exactly n - 8 (one rounding of an exact value). */
__device__ __forceinline__ float nib(unsigned v, int k) {
    const float f = __uint_as_float(0x4B000000u | (v & (0xFu << (4 * k))));
    const float sc = k == 0 ? 1.0f : k == 1 ? 0.0625f : k == 2 ? 0.00390625f : 0.000244140625f;
    const float c = k == 0 ? -8388616.0f : k == 1 ? -524296.0f : k == 2 ? -32776.0f : -2056.0f;
    return fmaf(f, sc, c);
}
__device__ __forceinline__ void dequant_q4(const uint4 &w, float *o) {
    const unsigned q[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const unsigned a = q[i], b = q[i] >> 16;
        o[4 * i + 0] = nib(a, 0);
        o[16 + 4 * i + 0] = nib(a, 1);
        o[4 * i + 1] = nib(a, 2);
        o[16 + 4 * i + 1] = nib(a, 3);
        o[4 * i + 2] = nib(b, 0);
        o[16 + 4 * i + 2] = nib(b, 1);
        o[4 * i + 3] = nib(b, 2);
        o[16 + 4 * i + 3] = nib(b, 3);
    }
}

/* One granule's E weights widened to fp32 (quantized: unscaled quants). */
template <int WT> __device__ __forceinline__ void widen(const uint4 &w, float *o) {
    if constexpr (WT == CU_F32) {
        o[0] = __uint_as_float(w.x);
        o[1] = __uint_as_float(w.y);
        o[2] = __uint_as_float(w.z);
        o[3] = __uint_as_float(w.w);
    } else if constexpr (WT == CU_BF16) {
        const unsigned q[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            o[2 * i] = __uint_as_float(q[i] << 16);
            o[2 * i + 1] = __uint_as_float(q[i] & 0xffff0000u);
        }
    } else if constexpr (WT == CU_F16) {
        const unsigned q[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            float2 f = h2f(q[i]);
            o[2 * i] = f.x;
            o[2 * i + 1] = f.y;
        }
    } else if constexpr (WT == CU_Q8_0) {
        dequant_q8(w, o);
    } else {
        dequant_q4(w, o);
    }
}

#endif
