/* k_mma.cuh - tensor-core pieces the decode GEMVs share (k_gemv_tc.cu, k_gemv_bulk_tc.cu): the bf16
   mma, the hi + lo split of fp32 activations into bf16 pairs, Q8_0 / Q4_0 quants as exact bf16 pairs. */
#ifndef FM_K_MMA_CUH
#define FM_K_MMA_CUH

#include <cuda_bf16.h>

#include "k_common.cuh"

/* c (16 x 8, fp32) += a (16 x 16, row-major bf16) b (16 x 8, column-major bf16), PTX fragment layouts */
__device__ __forceinline__ void mma_bf16(float (&c)[4], unsigned a0, unsigned a1, unsigned a2, unsigned a3,
                                         unsigned b0, unsigned b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ __forceinline__ unsigned pack_bf16(float lo_k, float hi_k) {
    __nv_bfloat162 h = __floats2bfloat162_rn(lo_k, hi_k);
    return *reinterpret_cast<unsigned *>(&h);
}

/* The bf16 pair of (a, b) for the hi column, or of the remainder for the lo column. */
__device__ __forceinline__ unsigned split_pair(float a, float b, bool lo) {
    __nv_bfloat162 h = __floats2bfloat162_rn(a, b);
    if (lo) {
        float2 f = __bfloat1622float2(h);
        h = __floats2bfloat162_rn(a - f.x, b - f.y);
    }
    return *reinterpret_cast<unsigned *>(&h);
}

/* Q8_0: 4 int8 (one word) -> two bf16 pairs, exact (via fp32, k_gemv.cu's byte-permute trick). */
__device__ __forceinline__ void q8_pairs(unsigned w, unsigned &p01, unsigned &p23) {
    const unsigned t = w ^ 0x80808080u;
    float f[4];
#pragma unroll
    for (int k = 0; k < 4; k++) f[k] = __uint_as_float(__byte_perm(t, 0x4B000000u, 0x7540u + k)) - 8388736.0f;
    p01 = pack_bf16(f[0], f[1]);
    p23 = pack_bf16(f[2], f[3]);
}

/* Q4_0: the nibble pair at bit s of bytes 0 and 2 (or 1 and 3) of q -> bf16 (n - 8, n' - 8): the nibble
   in the low mantissa bits of bf16 128 is 128 + n, exactly; minus 136 in bf16 is exact too. */
__device__ __forceinline__ unsigned q4_pair(unsigned q, int s) {
    const unsigned v = ((q >> s) & 0x000F000Fu) | 0x43004300u;
    __nv_bfloat162 h = *reinterpret_cast<const __nv_bfloat162 *>(&v);
    h = __hsub2(h, __floats2bfloat162_rn(136.0f, 136.0f));
    return *reinterpret_cast<unsigned *>(&h);
}

/* Two 8 x 8 bf16 matrices from shared memory: lanes 8m .. 8m + 7 give the 16-byte rows of matrix m
   (lanes 16-31 unused), and lane (g, t) receives row g, elements 2t and 2t + 1 of each: an mma B
   fragment from 8 rows of W, columns 0-7 and 8-15 of a k16 step. */
__device__ __forceinline__ void ldmatrix_x2(unsigned addr, unsigned &r0, unsigned &r1) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];" : "=r"(r0), "=r"(r1) : "r"(addr));
}

#endif
