/* cpu_dispatch.c - picks the kernel table once per backend instance from cpuid (through GCC's
   __builtin_cpu_supports, which also checks that the OS saves the vector registers). FM_CPU_ISA
   forces a lower table (scalar, avx2, avx512) for tests and benchmarks. */
#include <stdlib.h>
#include <string.h>

#include "cpu_kernels.h"

#ifndef FM_CPU_AVX512
const cpu_kernels *cpu_kernels_avx512(void) { return NULL; }
#endif
#ifndef FM_CPU_AVX2
const cpu_kernels *cpu_kernels_avx2(void) { return NULL; }
#endif

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

/* F16C (cpuid leaf 1, ecx bit 29): asked directly, as not every compiler's __builtin_cpu_supports
   knows the name (clang 14 does not). The AVX state it needs is covered by the "avx2" check. */
static int has_f16c(void) {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29));
}
#endif

int cpu_kernels_supported(const cpu_kernels *k) {
    if (!k) return 0;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (k == cpu_kernels_avx512())
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx512vnni") && has_f16c() && __builtin_cpu_supports("fma");
    if (k == cpu_kernels_avx2())
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c();
#endif
    return k == cpu_kernels_scalar();
}

const cpu_kernels *cpu_kernels_select(void) {
    const cpu_kernels *order[] = {cpu_kernels_avx512(), cpu_kernels_avx2(), cpu_kernels_scalar()};
    const char *force = getenv("FM_CPU_ISA");
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        if (!cpu_kernels_supported(order[i])) continue;
        if (force && *force && strcmp(force, order[i]->name) != 0) continue;
        return order[i];
    }
    return cpu_kernels_scalar(); /* an unknown or unsupported FM_CPU_ISA: the portable table */
}
