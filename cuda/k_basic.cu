/* k_basic.cu - embedding, rmsnorm, bias, weight conversion/quantization, activation narrowing. */
#include "k_widen.cuh"

int cuk_pdl_on;
extern "C" void cuk_set_pdl(int on) { cuk_pdl_on = on; }
int cuk_prefetch_on = 0;
extern "C" void cuk_set_prefetch(int on) { cuk_prefetch_on = on; }

struct tok_param {
    int32_t t[CU_MAX_TOK_PARAM];
};

__global__ void k_embed(cu_wview E, tok_param tp, const int32_t *tok_dev, float *x) {
    pdl_trigger();
    pdl_wait();
    const int r = blockIdx.y;
    const int64_t tok = tok_dev ? tok_dev[r] : tp.t[r];
    const int64_t cols = E.cols;
    for (int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; c < cols; c += (int64_t)gridDim.x * blockDim.x)
        x[r * cols + c] = w_elem(E, tok, c);
}

extern "C" cudaError_t cuk_embed(cudaStream_t s, cu_wview E, const int32_t *tok_host, const int32_t *tok_dev, int n,
                                 float *x) {
    int bx = (int)((E.cols + 255) / 256);
    if (bx > 64) bx = 64;
    if (tok_dev) {
        tok_param tp = {};
        return cuk_launch(k_embed, dim3(bx, n), dim3(256), 0, s, E, tp, tok_dev, x);
    }
    for (int r0 = 0; r0 < n; r0 += CU_MAX_TOK_PARAM) {
        int m = n - r0 < CU_MAX_TOK_PARAM ? n - r0 : CU_MAX_TOK_PARAM;
        tok_param tp;
        for (int i = 0; i < m; i++) tp.t[i] = tok_host[r0 + i];
        k_embed<<<dim3(bx, m), 256, 0, s>>>(E, tp, nullptr, x + (size_t)r0 * E.cols);
        cudaError_t e = cudaGetLastError();
        if (e != cudaSuccess) return e;
    }
    return cudaSuccess;
}

/* Sum over the block (blockDim.x a multiple of 32, <= 1024) in double, result on every thread. */
__device__ double block_sum_d(double v, double *sh) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    const int w = threadIdx.x / 32, l = threadIdx.x % 32, nw = blockDim.x / 32;
    __syncthreads();
    if (l == 0) sh[w] = v;
    __syncthreads();
    double t = 0;
    for (int i = 0; i < nw; i++) t += sh[i];
    return t;
}

__global__ void k_rmsnorm(const float *x, const float *w, int d, float eps, float *y) {
    pdl_trigger();
    pdl_wait();
    __shared__ double sh[32];
    const float *xr = x + (size_t)blockIdx.x * d;
    float *yr = y + (size_t)blockIdx.x * d;
    double ss = 0;
    for (int j = threadIdx.x; j < d; j += blockDim.x) ss += (double)xr[j] * xr[j];
    ss = block_sum_d(ss, sh);
    const float scale = (float)(1.0 / sqrt(ss / (double)d + (double)eps));
    for (int j = threadIdx.x; j < d; j += blockDim.x) yr[j] = xr[j] * scale * (w ? w[j] : 1.0f);
}

/* The same for rows of d % 4 == 0 floats (16-byte aligned), up to K float4s per thread: each row read
   once into registers, the weights loaded before the dependency wait. The same arithmetic as k_rmsnorm
   (the fp64 sum added in another order). */
template <int K> __global__ void k_rmsnorm_regs(const float *x, const float *w, int d, float eps, float *y) {
    pdl_trigger();
    __shared__ double sh[32];
    const int q = d / 4;
    float4 wv[K], xv[K];
#pragma unroll
    for (int k = 0; k < K; k++) {
        const int i = threadIdx.x + k * blockDim.x;
        wv[k] = w && i < q ? __ldg(reinterpret_cast<const float4 *>(w) + i) : make_float4(1.0f, 1.0f, 1.0f, 1.0f);
    }
    pdl_wait();
    const float4 *xr = reinterpret_cast<const float4 *>(x + (size_t)blockIdx.x * d);
    double ss = 0;
#pragma unroll
    for (int k = 0; k < K; k++) {
        const int i = threadIdx.x + k * blockDim.x;
        xv[k] = i < q ? xr[i] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        ss += (double)xv[k].x * xv[k].x + (double)xv[k].y * xv[k].y + (double)xv[k].z * xv[k].z +
              (double)xv[k].w * xv[k].w;
    }
    ss = block_sum_d(ss, sh);
    const float scale = (float)(1.0 / sqrt(ss / (double)d + (double)eps));
    float4 *yr = reinterpret_cast<float4 *>(y + (size_t)blockIdx.x * d);
#pragma unroll
    for (int k = 0; k < K; k++) {
        const int i = threadIdx.x + k * blockDim.x;
        if (i < q)
            yr[i] = make_float4(xv[k].x * scale * wv[k].x, xv[k].y * scale * wv[k].y, xv[k].z * scale * wv[k].z,
                                xv[k].w * scale * wv[k].w);
    }
}

extern "C" cudaError_t cuk_rmsnorm(cudaStream_t s, const float *x, const float *w, int n, int d, float eps, float *y) {
    if (n <= 0) return cudaSuccess;
    const int aligned = d % 4 == 0 && ((uintptr_t)x & 15) == 0 && ((uintptr_t)y & 15) == 0 && ((uintptr_t)w & 15) == 0;
    if (aligned && d <= 4 * 1024 * 4) { /* up to 4 float4s per thread of 1024 */
        const int q = d / 4, K = q <= 1024 ? 1 : q <= 2048 ? 2 : 4;
        int threads = ((q + K - 1) / K + 31) / 32 * 32;
        if (K == 1) return cuk_launch(k_rmsnorm_regs<1>, dim3(n), dim3(threads), 0, s, x, w, d, eps, y);
        if (K == 2) return cuk_launch(k_rmsnorm_regs<2>, dim3(n), dim3(threads), 0, s, x, w, d, eps, y);
        return cuk_launch(k_rmsnorm_regs<4>, dim3(n), dim3(threads), 0, s, x, w, d, eps, y);
    }
    return cuk_launch(k_rmsnorm, dim3(n), dim3(d >= 2048 ? 512 : 256), 0, s, x, w, d, eps, y);
}

__global__ void k_add_bias(float *y, const float *b, int rows, size_t total) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x)
        y[i] += b[i % rows];
}

extern "C" cudaError_t cuk_add_bias(cudaStream_t s, float *y, const float *b, int n, int rows) {
    size_t total = (size_t)n * rows;
    int blocks = (int)((total + 255) / 256);
    if (blocks > 4096) blocks = 4096;
    if (blocks < 1) return cudaSuccess;
    k_add_bias<<<blocks, 256, 0, s>>>(y, b, rows, total);
    return cudaGetLastError();
}

/* y[b][i] (+)= h[b][i] + h[n + b][i] for b < n, i < rows (h: [2n][rows], y's rows ldy apart): the two
   halves of a stacked hi + lo product summed in fp32. */
__global__ void k_add_halves(float *y, size_t ldy, const float *h, int n, int rows, int accumulate) {
    const size_t total = (size_t)n * rows; /* also where the second half starts */
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        const size_t b = i / (size_t)rows, r = i % (size_t)rows;
        const float v = h[i] + h[total + i];
        float *d = y + b * ldy + r;
        *d = accumulate ? *d + v : v;
    }
}

extern "C" cudaError_t cuk_add_halves(cudaStream_t s, float *y, size_t ldy, const float *h, int n, int rows,
                                      int accumulate) {
    const size_t total = (size_t)n * rows;
    size_t blocks = (total + 255) / 256;
    if (blocks > 4096) blocks = 4096;
    if (blocks < 1) return cudaSuccess;
    k_add_halves<<<(unsigned)blocks, 256, 0, s>>>(y, ldy, h, n, rows, accumulate);
    return cudaGetLastError();
}

__device__ __forceinline__ float src_elem(const void *src, int t, size_t i) {
    switch (t) {
    case CU_F32: return ((const float *)src)[i];
    case CU_F16: return f16_bits_to_f32(((const unsigned short *)src)[i]);
    default: return bf16_bits_to_f32(((const unsigned short *)src)[i]);
    }
}

/* Plain types: one thread per element. */
__global__ void k_convert_plain(const void *src, int st, cu_wview w, int64_t row0, size_t count) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < count; i += (size_t)gridDim.x * blockDim.x) {
        float v = src_elem(src, st, i);
        size_t o = (size_t)row0 * w.cols + i;
        if (w.dtype == CU_F32) ((float *)w.data)[o] = v;
        else if (w.dtype == CU_F16) ((__half *)w.data)[o] = __float2half_rn(v);
        else ((__nv_bfloat16 *)w.data)[o] = __float2bfloat16_rn(v);
    }
}

/* Quantized: one thread per block of 32, the exact arithmetic of quant.h (no contractions). */
__global__ void k_quantize(const void *src, int st, cu_wview w, int64_t row0, size_t nblocks) {
    const int64_t bpr = w.cols / CU_QBLOCK;
    for (size_t bi = blockIdx.x * (size_t)blockDim.x + threadIdx.x; bi < nblocks; bi += (size_t)gridDim.x * blockDim.x) {
        float v[CU_QBLOCK];
        for (int i = 0; i < CU_QBLOCK; i++) v[i] = src_elem(src, st, bi * CU_QBLOCK + i);
        const size_t gb = (size_t)row0 * bpr + bi; /* global block index = row * bpr + block */
        unsigned short *scales = (unsigned short *)w.scales;
        if (w.dtype == CU_Q8_0) {
            float amax = 0.0f;
            for (int i = 0; i < CU_QBLOCK; i++) amax = fmaxf(amax, fabsf(v[i]));
            const float d = __fdiv_rn(amax, 127.0f), id = d != 0.0f ? __fdiv_rn(1.0f, d) : 0.0f;
            scales[gb] = __half_as_ushort(__float2half_rn(d));
            signed char *q = (signed char *)w.data + gb * CU_QBLOCK;
            for (int i = 0; i < CU_QBLOCK; i++) q[i] = (signed char)roundf(__fmul_rn(v[i], id));
        } else {
            float amax = 0.0f, mx = 0.0f;
            for (int i = 0; i < CU_QBLOCK; i++)
                if (fabsf(v[i]) > amax) {
                    amax = fabsf(v[i]);
                    mx = v[i];
                }
            const float d = __fdiv_rn(mx, -8.0f), id = d != 0.0f ? __fdiv_rn(1.0f, d) : 0.0f;
            scales[gb] = __half_as_ushort(__float2half_rn(d));
            unsigned char *q = (unsigned char *)w.data + gb * (CU_QBLOCK / 2);
            for (int j = 0; j < CU_QBLOCK / 2; j++) {
                int lo = (int)__fadd_rn(__fmul_rn(v[j], id), 8.5f);
                int hi = (int)__fadd_rn(__fmul_rn(v[j + CU_QBLOCK / 2], id), 8.5f);
                lo = lo > 15 ? 15 : lo;
                hi = hi > 15 ? 15 : hi;
                q[j] = (unsigned char)(lo | (hi << 4));
            }
        }
    }
}

extern "C" cudaError_t cuk_convert(cudaStream_t s, const void *src, int src_dtype, cu_wview w, int64_t row0,
                                   int64_t nrows) {
    size_t count = (size_t)nrows * (size_t)w.cols;
    if (w.dtype == CU_Q8_0 || w.dtype == CU_Q4_0) {
        size_t nb = count / CU_QBLOCK;
        int blocks = (int)((nb + 127) / 128);
        if (blocks > 8192) blocks = 8192;
        k_quantize<<<blocks, 128, 0, s>>>(src, src_dtype, w, row0, nb);
    } else {
        int blocks = (int)((count + 255) / 256);
        if (blocks > 16384) blocks = 16384;
        k_convert_plain<<<blocks, 256, 0, s>>>(src, src_dtype, w, row0, count);
    }
    return cudaGetLastError();
}

__global__ void k_to_half(const float *x, size_t count, int dtype, void *hi, void *lo) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < count; i += (size_t)gridDim.x * blockDim.x) {
        float v = x[i];
        if (dtype == CU_BF16) {
            __nv_bfloat16 h = __float2bfloat16_rn(v);
            ((__nv_bfloat16 *)hi)[i] = h;
            if (lo) ((__nv_bfloat16 *)lo)[i] = __float2bfloat16_rn(v - __bfloat162float(h));
        } else {
            __half h = __float2half_rn(v);
            ((__half *)hi)[i] = h;
            if (lo) ((__half *)lo)[i] = __float2half_rn(v - __half2float(h));
        }
    }
}

extern "C" cudaError_t cuk_to_half(cudaStream_t s, const float *x, size_t count, int dtype, void *hi, void *lo) {
    int blocks = (int)((count + 255) / 256);
    if (blocks > 8192) blocks = 8192;
    if (blocks < 1) return cudaSuccess;
    k_to_half<<<blocks, 256, 0, s>>>(x, count, dtype, hi, lo);
    return cudaGetLastError();
}

/* One block row per weight row (grid.y), threads over the columns. */
__global__ void k_dequant(cu_wview w, int64_t row0, int out_dtype, void *out) {
    const int64_t r = row0 + blockIdx.y;
    const size_t o = (size_t)blockIdx.y * w.cols;
    for (int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; c < w.cols; c += (int64_t)gridDim.x * blockDim.x) {
        float v = w_elem(w, r, c);
        if (out_dtype == CU_F32) ((float *)out)[o + c] = v;
        else if (out_dtype == CU_F16) ((__half *)out)[o + c] = __float2half_rn(v);
        else ((__nv_bfloat16 *)out)[o + c] = __float2bfloat16_rn(v);
    }
}

/* Q8_0 / Q4_0 rows widened a whole quant block per thread: one 16/32-byte load of the quants, one
   scale, 64-128 bytes of stores (the element-wise k_dequant above moves bytes one or two at a time
   and ran far below the bandwidth, so quantized batches through cuBLAS mostly waited for it). The
   values are exactly w_elem's: d * q. Block i of the chunk is row i / nblk, block i % nblk, and its
   output starts at element 32 i (the chunk's rows are contiguous). */
template <typename OT> __device__ __forceinline__ OT from_f32(float v);
template <> __device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_f32<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

template <int WT, typename OT> __global__ void k_dequant_blocks(cu_wview w, int64_t row0, int64_t count, OT *out) {
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x, nblk = w.cols / CU_QBLOCK;
    if (i >= count) return;
    const int64_t r = row0 + i / nblk, b = i % nblk;
    const float d = f16_bits_to_f32(w.scales[r * nblk + b]);
    /* the block's 32 quants as k_widen.cuh's granules: two of 16 int8, or one of 32 nibbles */
    const uint4 *p = reinterpret_cast<const uint4 *>((const unsigned char *)w.data + r * row_bytes<WT>(w.cols)) +
                     b * (CU_QBLOCK / wt_traits<WT>::E);
    float v[CU_QBLOCK];
#pragma unroll
    for (int k = 0; k < CU_QBLOCK / wt_traits<WT>::E; k++) widen<WT>(__ldg(p + k), v + k * wt_traits<WT>::E);
    __align__(16) OT o[CU_QBLOCK];
#pragma unroll
    for (int k = 0; k < CU_QBLOCK; k++) o[k] = from_f32<OT>(d * v[k]);
    uint4 *dst = reinterpret_cast<uint4 *>(out + (size_t)i * CU_QBLOCK);
#pragma unroll
    for (int k = 0; k < (int)(CU_QBLOCK * sizeof(OT) / 16); k++) dst[k] = reinterpret_cast<const uint4 *>(o)[k];
}

template <int WT>
static cudaError_t dequant_blocks(cudaStream_t s, cu_wview w, int64_t row0, int64_t nrows, int out_dtype, void *out) {
    const int64_t count = nrows * (w.cols / CU_QBLOCK);
    const unsigned grid = (unsigned)((count + 255) / 256);
    if (out_dtype == CU_F32) k_dequant_blocks<WT, float><<<grid, 256, 0, s>>>(w, row0, count, (float *)out);
    else if (out_dtype == CU_F16) k_dequant_blocks<WT, __half><<<grid, 256, 0, s>>>(w, row0, count, (__half *)out);
    else k_dequant_blocks<WT, __nv_bfloat16><<<grid, 256, 0, s>>>(w, row0, count, (__nv_bfloat16 *)out);
    return cudaGetLastError();
}

extern "C" cudaError_t cuk_dequant(cudaStream_t s, cu_wview w, int64_t row0, int64_t nrows, int out_dtype, void *out) {
    const bool q = w.dtype == CU_Q8_0 || w.dtype == CU_Q4_0;
    if (q && w.cols % CU_QBLOCK == 0 && ((uintptr_t)w.data & 15) == 0 && ((uintptr_t)out & 15) == 0 &&
        nrows * (w.cols / CU_QBLOCK) < ((int64_t)1 << 40))
        return w.dtype == CU_Q8_0 ? dequant_blocks<CU_Q8_0>(s, w, row0, nrows, out_dtype, out)
                                  : dequant_blocks<CU_Q4_0>(s, w, row0, nrows, out_dtype, out);
    int bx = (int)((w.cols + 255) / 256);
    if (bx > 32) bx = 32;
    for (int64_t r = 0; r < nrows; r += 65535) {
        int m = (int)(nrows - r < 65535 ? nrows - r : 65535);
        size_t esz = out_dtype == CU_F32 ? 4 : 2;
        k_dequant<<<dim3(bx, m), 256, 0, s>>>(w, row0 + r, out_dtype, (char *)out + (size_t)r * w.cols * esz);
        cudaError_t e = cudaGetLastError();
        if (e != cudaSuccess) return e;
    }
    return cudaSuccess;
}
