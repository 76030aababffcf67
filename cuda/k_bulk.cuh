/* k_bulk.cuh - what the bulk-copy GEMVs share (sm_90+): mbarriers, cp.async.bulk global -> shared, and
   the process-wide bulk-copy settings kept by k_gemv_bulk.cu (FM_CUDA_BULK*, cuk_set_bulk). */
#ifndef FM_K_BULK_CUH
#define FM_K_BULK_CUH

#include "k_common.cuh"

__device__ __forceinline__ unsigned smem_addr(const void *p) { return (unsigned)__cvta_generic_to_shared(p); }

/* A barrier whose phase completes after one arrival (mbar_expect's) and the bytes it announced. */
__device__ __forceinline__ void mbar_init(uint64_t *bar) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_addr(bar)) : "memory");
#endif
}
/* After mbar_init, before other threads or the copy engine use the barriers. */
__device__ __forceinline__ void mbar_init_fence() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
#endif
}
/* One thread: stage bar gets `bytes` from the copies below (one arrival, the transaction count). */
__device__ __forceinline__ void mbar_expect(uint64_t *bar, unsigned bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_addr(bar)), "r"(bytes) : "memory");
#endif
}
/* 16-byte aligned dst and src, bytes a multiple of 16. */
__device__ __forceinline__ void bulk_copy(void *dst, const void *src, unsigned bytes, uint64_t *bar) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
                     smem_addr(dst)),
                 "l"(src), "r"(bytes), "r"(smem_addr(bar))
                 : "memory");
#endif
}
__device__ __forceinline__ void mbar_wait(uint64_t *bar, unsigned phase) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    unsigned done;
    do {
        asm volatile("{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, p;\n}"
                     : "=r"(done)
                     : "r"(smem_addr(bar)), "r"(phase)
                     : "memory");
    } while (!done);
#endif
}
/* Before a copy refills a stage that threads just read (after the barrier that says they are done). */
__device__ __forceinline__ void fence_proxy_async() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
#endif
}

/* FM_CUDA_BULK: 0 off, 1 default, 2 for tests (every matrix the kernels can take, on a few blocks). */
int cuk_bulk_mode();
/* Whether every device opened so far is sm_90+ (the bulk copies' hardware). */
bool cuk_bulk_hw();
/* Dynamic shared memory a bulk-copy block may take: FM_CUDA_BULK_KB, capped by the devices opened. */
size_t cuk_bulk_budget();
/* Kernel k may take shm bytes of dynamic shared memory on the current device (false: it may not,
   error cleared; the caller runs another kernel). */
bool cuk_bulk_smem_allowed(const void *k, size_t shm);

#endif
