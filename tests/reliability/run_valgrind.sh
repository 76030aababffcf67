#!/usr/bin/env bash
# valgrind memcheck over the test suite: zero invalid reads/writes, zero uses of uninitialised
# values and zero definite or indirect leaks, in every test program (ctest runs each one under
# valgrind through CMAKE_CROSSCOMPILING_EMULATOR, which wraps every test whose command is a built
# program). Build: no OpenBLAS (its threads and hand-written kernels give false reports) and no PCRE2
# JIT (-DFM_NO_PCRE2_JIT: memcheck cannot follow JIT-generated code and reports its reads as
# uninitialised; the interpreter runs the same patterns).
# Left out, by label: "soak" (test_soak: 100,000 decode steps, far too slow under valgrind; it runs
# natively in the other builds), "nomemcheck" (test_alloc_fail replaces malloc itself) and "cuda"
# (the CUDA module is not built here: the GPU driver cannot run under valgrind).
# Not wrapped (their command is a script, not a program): test_install, test_python,
# test_header_compile and the examples' output checks.
# FM_TEST_NO_TIMING: test_tokenizer's speed assertions are meaningless under valgrind.
# Usage: tests/reliability/run_valgrind.sh [build-dir (default build-vg)]
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-build-vg}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
VG="valgrind;--error-exitcode=1;--leak-check=full;--errors-for-leak-kinds=definite,indirect;--show-leak-kinds=definite,indirect;--quiet"
cmake -S . -B "$BUILD" -DFM_BUILD_TESTS=ON -DFM_OPENBLAS=OFF -DFM_CUDA=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_FLAGS=-DFM_NO_PCRE2_JIT "-DCMAKE_CROSSCOMPILING_EMULATOR=$VG" >/dev/null
cmake --build "$BUILD" -j "$JOBS" >/dev/null
cd "$BUILD"
FM_TEST_NO_TIMING=1 ctest -j "$JOBS" -LE 'soak|nomemcheck|cuda' --timeout 1500 --output-on-failure
