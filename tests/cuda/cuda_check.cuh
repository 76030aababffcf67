/* cuda_check.cuh - CU(call): a CUDA runtime call in the benchmark programs, which print the failure
   with its place and exit(1). */
#ifndef FM_CUDA_CHECK_CUH
#define FM_CUDA_CHECK_CUH

#include <cuda_runtime.h>

#include <stdio.h>
#include <stdlib.h>

#define CU(call)                                                                                                      \
    do {                                                                                                              \
        cudaError_t e_ = (call);                                                                                      \
        if (e_ != cudaSuccess) {                                                                                      \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_));                 \
            exit(1);                                                                                                  \
        }                                                                                                             \
    } while (0)

#endif
