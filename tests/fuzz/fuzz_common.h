/* fuzz_common.h - shared by the fuzz targets: the libFuzzer entry point, one-time setup, a private
   temp directory and small invariants. Each target is built twice (tests/fuzz/CMakeLists.txt): with
   clang's libFuzzer (-fsanitize=fuzzer, FM_FUZZ=ON), and with replay_main.c as a plain program that
   ctest runs over tests/fuzz/corpus/<target>/ in every build (so every seed and every crash ever
   found stays a regression test, under ASan and valgrind too). */
#ifndef FM_FUZZ_COMMON_H
#define FM_FUZZ_COMMON_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Abort (a crash the fuzzer records) when an invariant of the library's contract fails. */
#define FUZZ_CHECK(cond)                                                                                \
    do {                                                                                                \
        if (!(cond)) {                                                                                  \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);               \
            abort();                                                                                    \
        }                                                                                               \
    } while (0)

/* Run fn once per process (the targets set up fixed models/tokenizers lazily). */
#define FUZZ_ONCE(fn)                                                                                   \
    do {                                                                                                \
        static pthread_once_t once_ = PTHREAD_ONCE_INIT;                                                \
        pthread_once(&once_, fn);                                                                       \
    } while (0)

/* A fresh directory for this process under /dev/shm (fast) or $TMPDIR; removed at exit. */
char *fuzz_tmpdir(void);

/* Write bytes to path; aborts on failure (the harness, not the library, is broken then). */
void fuzz_write(const char *path, const void *data, size_t n);

#endif
