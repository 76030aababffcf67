/* k_qdot.cuh - 8-bit activations for the Q8_0 / Q4_0 decode GEMVs (k_gemv_dp4a.cu's register form,
   k_gemv_bulk.cu's bulk-copy form): x quantized per block of 32 into shared memory exactly as the CPU
   backend's quantized kernels do, and one 16-byte weight granule's integer dot product with it.
   Shared layout, 16-byte chunks so a warp's lanes (consecutive granules) read consecutive 16 bytes:
     Q8_0: xq[cols] int8 in element order (chunk g = elements 16g .. 16g + 15, block g / 2);
     Q4_0: the first halves of every block (elements 0..15) in chunks [0, nblk), the second halves in
           [nblk, 2 nblk), matching the nibble order (byte j of a block: element j low, j + 16 high);
     xs[nblk] = {d as float bits, offset}: Q4_0 stores quants n in 0..15 for n - 8, so its integer sum
           starts at -8 * sum(q) of the block; Q8_0's offset is 0. */
#ifndef FM_K_QDOT_CUH
#define FM_K_QDOT_CUH

#include "k_gemv_parts.cuh"

/* Shared memory for the quantized activations: cols int8 and nblk {scale, offset}. */
__host__ __device__ inline size_t qx_bytes(int64_t cols) { return (size_t)cols + (size_t)(cols / CU_QBLOCK) * 8; }

/* One item: values 8 sub .. 8 sub + 7 of block b, held by one lane of the four consecutive lanes that
   hold the block (always active together), quantized with the block's one scale into xq / xs. */
template <int WT>
__device__ __forceinline__ void quantize_item(const float (&v)[8], int b, int sub, int nblk, signed char *xq, int2 *xs) {
    const int lane = threadIdx.x & 31;
    const unsigned group = 0xFu << (lane & ~3);
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

/* x's blocks of 32 -> int8 with one scale each, four lanes per block (8 values each). norm: the
   activations are first x * scale * nw (an rmsnorm's output, nw NULL = weightless), computed as the
   rmsnorm kernel does. */
template <int WT>
__device__ __forceinline__ void quantize_x_smem(const float *__restrict__ x, int nblk, signed char *xq, int2 *xs,
                                                int norm = 0, float scale = 1.0f, const float *nw = nullptr) {
    for (int i = threadIdx.x; i < nblk * 4; i += blockDim.x) {
        const int b = i >> 2, sub = i & 3;
        const float4 a = ld_x(x + (size_t)b * 32 + sub * 8), c = ld_x(x + (size_t)b * 32 + sub * 8 + 4);
        float v[8] = {a.x, a.y, a.z, a.w, c.x, c.y, c.z, c.w};
        if (norm) {
            float4 wa = make_float4(1.0f, 1.0f, 1.0f, 1.0f), wc = wa;
            if (nw) wa = ld_x(nw + (size_t)b * 32 + sub * 8), wc = ld_x(nw + (size_t)b * 32 + sub * 8 + 4);
            const float w8[8] = {wa.x, wa.y, wa.z, wa.w, wc.x, wc.y, wc.z, wc.w};
#pragma unroll
            for (int k = 0; k < 8; k++) v[k] = v[k] * scale * w8[k];
        }
        quantize_item<WT>(v, b, sub, nblk, xq, xs);
    }
}

__device__ __forceinline__ int lo_nibbles(unsigned w) { return (int)(w & 0x0F0F0F0Fu); }
__device__ __forceinline__ int hi_nibbles(unsigned w) { return (int)((w >> 4) & 0x0F0F0F0Fu); }

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

#endif
