#!/bin/sh
# The CUDA tests and benchmark on a GPU machine from binaries built elsewhere (saves the build there).
# usage: tests/cuda/device_prebuilt.sh OUT_DIR BIN_DIR [VARIANT...]
#   BIN_DIR: test_cuda, cuda_bench, libfalconmamba.so*, lib/ (libcjson, libpcre2-8, libutf8proc,
#   libcmocka as on the build machine) and libfalconmamba-cuda-VARIANT.so for each VARIANT (default
#   "new"); every variant gets the cuda test (FM_FIXTURES = tests/reference/cases of this tree) and the
#   benchmark on a 7B-shaped random checkpoint generated here. Prepared on the build machine by:
#     cmake -S . -B build-cuda-local -DFM_CUDA=ON -DFM_CUDA_ARCHS=90 -DCMAKE_BUILD_TYPE=Release
#     cmake --build build-cuda-local --target test_cuda cuda_bench falconmamba-cuda
#     (copies into BIN_DIR; see docs/CUDA.md "Device runs")
# BENCH_ARGS (default "--steps 24") go to every cuda_bench run; PDL_OFF_TOO=1 adds a bf16 batch-1
# run with FM_CUDA_PDL=0 per variant.
set -u
out=$1
bin=$2
shift 2
[ $# -gt 0 ] || set -- new
mkdir -p "$out"
cublas=$(find /usr/local /opt /usr/lib -name 'libcublas.so.13' 2>/dev/null | head -1)
export LD_LIBRARY_PATH="$bin/lib:$bin:$(dirname "${cublas:-/x/x}")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv > "$out/gpu.txt" 2>&1
echo "cublas: $cublas" >> "$out/gpu.txt"
(test -f /tmp/fm7b/config.json || python3 tests/cuda/make_random_model.py /tmp/fm7b --shape 7b > "$out/gen.log" 2>&1) &
gen=$!
for v in "$@"; do
  FM_FIXTURES="$PWD/tests/reference/cases" FM_CUDA_BACKEND="$bin/libfalconmamba-cuda-$v.so" \
    timeout 150 "$bin/test_cuda" > "$out/test_$v.log" 2>&1
  echo "test_cuda ($v) rc=$?" >> "$out/test_$v.log"
  tail -1 "$out/test_$v.log"
done
wait $gen
cat "$out/gen.log" 2>/dev/null
for v in "$@"; do
  FM_CUDA_BACKEND="$bin/libfalconmamba-cuda-$v.so" timeout 200 "$bin/cuda_bench" /tmp/fm7b ${BENCH_ARGS:---steps 24} \
    > "$out/bench_$v.txt" 2>&1
  echo "cuda_bench ($v) rc=$?" >> "$out/bench_$v.txt"
  if [ "${PDL_OFF_TOO:-0}" = 1 ]; then
    FM_CUDA_PDL=0 FM_CUDA_BACKEND="$bin/libfalconmamba-cuda-$v.so" timeout 60 "$bin/cuda_bench" /tmp/fm7b \
      --weights bf16,q8_0,q4_0 --batches 1 --prefill none --steps 24 > "$out/bench_${v}_nopdl.txt" 2>&1
  fi
done
