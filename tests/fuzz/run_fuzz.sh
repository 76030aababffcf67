#!/usr/bin/env bash
# Build the libFuzzer targets (clang, ASan + UBSan, tests/fuzz/CMakeLists.txt) and run each for a
# bounded time, nproc at a time, starting from its seed corpus (tests/fuzz/corpus/<target>/; new
# inputs go to a scratch copy in the build tree, the checked-in corpus is not modified). Prints the
# executions per target; exits nonzero if any target crashed, leaked or timed out. A crash input
# is left in $BUILD/artifacts/: copy it into tests/fuzz/corpus/<target>/ (it then replays as a ctest
# in every build) and fix the bug.
# Usage: tests/fuzz/run_fuzz.sh [seconds-per-target (default 45)] [target...]
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_PER_TARGET=${1:-45}
shift || true
BUILD=${FM_FUZZ_BUILD:-build-fuzz}
ALL="safetensors index config tokenizer_json tokenizer_encode tokenizer_config chat_template state_blob"
TARGETS=${*:-$ALL}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}

cmake -S . -B "$BUILD" -DCMAKE_C_COMPILER=clang -DFM_FUZZ=ON -DFM_SANITIZE=ON -DFM_OPENBLAS=OFF -DFM_CUDA=OFF \
  -DFM_BUILD_EXAMPLES=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" --target fuzz_all -j "$JOBS" >/dev/null

mkdir -p "$BUILD/artifacts" "$BUILD/fuzz_logs"
run_one() {
  t=$1
  work="$BUILD/fuzz_corpus/$t"
  rm -rf "$work" && mkdir -p "$work"
  # -timeout: one input may not take longer (the chat-template engine's step limit bounds renders);
  # -rss_limit_mb: the process may not grow past it (a leak or a runaway allocation).
  rc=0
  ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1 \
    "$BUILD/tests/fuzz/fuzz_$t" -max_total_time="$SECONDS_PER_TARGET" -timeout=25 -rss_limit_mb=3072 \
    -max_len=65536 -print_final_stats=1 -artifact_prefix="$BUILD/artifacts/$t-" \
    "$work" "tests/fuzz/corpus/$t" >"$BUILD/fuzz_logs/$t.log" 2>&1 || rc=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$BUILD/fuzz_logs/$t.log" | grep -o '[0-9]*$' || echo "?")
  cov=$(grep -o 'cov: [0-9]*' "$BUILD/fuzz_logs/$t.log" | tail -1 | grep -o '[0-9]*' || echo "?")
  if [ "$rc" = 0 ]; then
    printf 'fuzz %-18s ok     %10s execs in %ss, coverage %s edges\n' "$t" "$execs" "$SECONDS_PER_TARGET" "$cov"
  else
    printf 'fuzz %-18s FAILED (rc %s) after %s execs; log: %s\n' "$t" "$rc" "$execs" "$BUILD/fuzz_logs/$t.log"
    grep -E 'ERROR|SUMMARY|invariant|Test unit written' "$BUILD/fuzz_logs/$t.log" | head -8 | sed 's/^/    /'
    return 1
  fi
}
export -f run_one
export BUILD SECONDS_PER_TARGET
status=0
printf '%s\n' $TARGETS | xargs -P "$JOBS" -I{} bash -c 'run_one {}' || status=1
exit $status
