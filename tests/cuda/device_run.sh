#!/bin/sh
# One full run on a GPU machine: build (one arch), the whole test suite, the cuda label verbosely, a
# 7B-shaped random checkpoint, the benchmark. usage: tests/cuda/device_run.sh OUT_DIR [ARCH]
# (what docs/PERFORMANCE.md's CUDA section and docs/CUDA.md were produced with)
set -u
out=${1:-/tmp/fm-out}
arch=${2:-90}
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$out/gpu.txt" 2>&1
(test -f /tmp/fm7b/config.json || python3 tests/cuda/make_random_model.py /tmp/fm7b --shape 7b > "$out/gen.log" 2>&1) &
gen=$!
cmake -S . -B build-cuda ${CMAKE_FLAGS:-} -DFM_CUDA=ON -DFM_CUDA_ARCHS="$arch" -DCMAKE_BUILD_TYPE=Release > "$out/build.log" 2>&1 &&
  cmake --build build-cuda -j"$(nproc)" >> "$out/build.log" 2>&1 || { tail -50 "$out/build.log"; wait $gen; exit 1; }
(cd build-cuda && ctest -L cuda --timeout 300 --output-on-failure -V > "$out/test_cuda.log" 2>&1; echo "cuda label rc=$?" >> "$out/test_cuda.log")
(cd build-cuda && ctest -j8 -LE cuda --output-on-failure > "$out/test_all.log" 2>&1; echo "rest rc=$?" >> "$out/test_all.log")
wait $gen # the checkpoint generator
cat "$out/gen.log"
FM_CUDA_BACKEND=build-cuda/cuda/libfalconmamba-cuda.so build-cuda/tests/cuda/cuda_bench /tmp/fm7b --steps 24 > "$out/bench.txt" 2>&1
echo "cuda_bench rc=$?" >> "$out/bench.txt"
