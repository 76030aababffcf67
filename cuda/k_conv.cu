/* k_conv.cu - causal depthwise conv1d + bias + silu with the conv state (cpu/cpu_ops.c's reference).
   decode (every segment one row): one thread per (segment, channel) computes the output and shifts
   the state, the block's taps and states staged in shared memory. Prefill: one thread per (row,
   channel) for the outputs, then one per (segment, channel) for the new state (the outputs read the
   old state first: two launches, stream-ordered). */
#include "k_common.cuh"

#define MAX_K 16

/* Decode: a block's 128 channels keep their taps and states contiguous (K and K-1 floats each), so
   both go through shared memory with coalesced copies. Read straight from each thread, the 12- and
   16-byte strides across the warp made the kernel bound by L1 wavefronts (ncu, 7B shape, batch 64:
   16.5 us, 15% of DRAM bandwidth). */
#define CONV_DECODE_TPB 128
__global__ void __launch_bounds__(CONV_DECODE_TPB) k_conv_decode(cu_segtab t, const float *in, size_t ld_in,
                                                                float *out, const float *w, const float *b, int di,
                                                                int K) {
    pdl_trigger();
    extern __shared__ float sh[]; /* taps [nc][K], then states [nc][K - 1] */
    const int c0 = blockIdx.x * CONV_DECODE_TPB, s = blockIdx.y, km1 = K - 1;
    const int nc = di - c0 < CONV_DECODE_TPB ? di - c0 : CONV_DECODE_TPB;
    float *sw = sh, *ss = sh + CONV_DECODE_TPB * K;
    /* taps before the wait (programmatic dependent launch, k_common.cuh): they are weights */
    for (int i = threadIdx.x; i < nc * K; i += CONV_DECODE_TPB) sw[i] = w[(size_t)c0 * K + i];
    const int c = c0 + threadIdx.x;
    const float bias = b && c < di ? b[c] : 0.0f;
    pdl_wait();
    float *st = seg_conv(t, s) + (size_t)c0 * km1;
    for (int i = threadIdx.x; i < nc * km1; i += CONV_DECODE_TPB) ss[i] = st[i];
    __syncthreads();
    if (c < di) {
        const size_t r = (size_t)t.row0[s];
        const float x = in[r * ld_in + c];
        const float *wr = sw + threadIdx.x * K;
        float *sv = ss + threadIdx.x * km1;
        float acc = bias;
        for (int k = 0; k < km1; k++) acc += wr[k] * sv[k];
        acc += wr[km1] * x;
        out[r * di + c] = silu_f(acc);
        for (int j = 0; j + 1 < km1; j++) sv[j] = sv[j + 1];
        if (km1 > 0) sv[km1 - 1] = x;
    }
    __syncthreads();
    for (int i = threadIdx.x; i < nc * km1; i += CONV_DECODE_TPB) st[i] = ss[i];
}

/* Segment of global row r (rows of segments are consecutive and ascending within a launch table). */
__device__ __forceinline__ int find_seg(const cu_segtab &t, int r) {
    for (int i = 0; i < t.n; i++)
        if (r >= t.row0[i] && r < t.row0[i] + t.nrows[i]) return i;
    return -1;
}

__global__ void k_conv_rows(cu_segtab t, int row_lo, const float *in, size_t ld_in, float *out, const float *w,
                            const float *b, int di, int K) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    const int r = row_lo + blockIdx.y;
    if (c >= di) return;
    const int s = find_seg(t, r);
    if (s < 0) return;
    const int km1 = K - 1, tt0 = r - t.row0[s];
    const float *st = seg_conv(t, s) + (size_t)c * km1;
    const float *wc = w + (size_t)c * K;
    float acc = b ? b[c] : 0.0f;
    for (int k = 0; k < K; k++) {
        int tt = tt0 - km1 + k;
        float v = tt >= 0 ? in[(size_t)(t.row0[s] + tt) * ld_in + c] : st[km1 + tt];
        acc += wc[k] * v;
    }
    out[(size_t)r * di + c] = silu_f(acc);
}

__global__ void k_conv_state(cu_segtab t, const float *in, size_t ld_in, int di, int K) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x, s = blockIdx.y;
    if (c >= di) return;
    const int km1 = K - 1, n = t.nrows[s];
    float *st = seg_conv(t, s) + (size_t)c * km1;
    for (int j = 0; j < km1; j++) {
        int pos = n - km1 + j;
        st[j] = pos >= 0 ? in[(size_t)(t.row0[s] + pos) * ld_in + c] : st[km1 + pos];
    }
}

extern "C" cudaError_t cuk_conv(cudaStream_t s, const cu_segtab *t, int decode, int total_rows, const float *in,
                                size_t ld_in, float *out, const float *w, const float *b, int di, int K) {
    (void)total_rows;
    if (t->n <= 0) return cudaSuccess;
    if (K < 1 || K > MAX_K) return cudaErrorInvalidValue;
    const int bx = (di + 127) / 128;
    if (decode) {
        const int dbx = (di + CONV_DECODE_TPB - 1) / CONV_DECODE_TPB;
        const size_t shm = (size_t)CONV_DECODE_TPB * (2 * K - 1) * sizeof(float);
        return cuk_launch(k_conv_decode, dim3(dbx, t->n), dim3(CONV_DECODE_TPB), shm, s, *t, in, ld_in, out, w, b, di, K);
    }
    const int lo = t->row0[0], hi = t->row0[t->n - 1] + t->nrows[t->n - 1];
    for (int r = lo; r < hi; r += 65535) {
        int m = hi - r < 65535 ? hi - r : 65535;
        k_conv_rows<<<dim3(bx, m), 128, 0, s>>>(*t, r, in, ld_in, out, w, b, di, K);
        cudaError_t e = cudaGetLastError();
        if (e != cudaSuccess) return e;
    }
    k_conv_state<<<dim3(bx, t->n), 128, 0, s>>>(*t, in, ld_in, di, K);
    return cudaGetLastError();
}
