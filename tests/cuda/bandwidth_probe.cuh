/* bandwidth_probe.cuh - the read-bandwidth probe the CUDA benchmarks print beside their figures: a sum
   of bf16 values over 4 GiB with 128-bit streaming loads, best of 10 timed runs after 2 warm-ups, in
   GB/s (0 if the buffer cannot be allocated). Header-only: cuda_bench.cu and kernel_bench.cu. */
#ifndef FM_BANDWIDTH_PROBE_CUH
#define FM_BANDWIDTH_PROBE_CUH

#include <cuda_runtime.h>

#include <stdint.h>

__global__ void k_probe_sum_bf16(const uint4 *p, size_t n, float *out) {
    float acc = 0.0f;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint4 v = __ldcs(p + i);
        unsigned w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int j = 0; j < 4; j++) acc += __uint_as_float(w[j] << 16) + __uint_as_float(w[j] & 0xffff0000u);
    }
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
    if ((threadIdx.x & 31) == 0) atomicAdd(out, acc);
}

static double fm_probe_read_gbs(int sms) {
    const size_t bytes = (size_t)4 << 30;
    void *buf = NULL;
    float *out = NULL;
    if (cudaMalloc(&buf, bytes) != cudaSuccess || cudaMalloc(&out, sizeof(float)) != cudaSuccess) {
        cudaFree(buf);
        (void)cudaGetLastError();
        return 0;
    }
    cudaMemset(buf, 0x3c, bytes);
    cudaEvent_t a, b;
    cudaEventCreate(&a);
    cudaEventCreate(&b);
    double best = 0;
    for (int it = 0; it < 12; it++) {
        cudaEventRecord(a);
        k_probe_sum_bf16<<<sms * 8, 512>>>((const uint4 *)buf, bytes / 16, out);
        cudaEventRecord(b);
        cudaEventSynchronize(b);
        float ms = 0;
        cudaEventElapsedTime(&ms, a, b);
        double gbs = (double)bytes / (ms * 1e-3) / 1e9;
        if (it >= 2 && gbs > best) best = gbs;
    }
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    cudaFree(buf);
    cudaFree(out);
    return best;
}

#endif
