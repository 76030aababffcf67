#!/bin/sh
# The public header compiles cleanly as C99, C11, C++11 and C++17 with -Wall -Wextra -Wpedantic
# -Werror, with every C and C++ compiler found (gcc/g++ always in CI, clang/clang++ when present).
# usage: header_compile.sh SOURCE_DIR
set -u
src=$1
inc="$src/include"
tu="$src/tests/reliability/header_consumer.c"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$tu" "$tmp/consumer.cpp"
flags="-Wall -Wextra -Wpedantic -Werror -fsyntax-only -I$inc"
ran=0
fail=0
for cc in gcc clang; do
  command -v $cc >/dev/null 2>&1 || continue
  for std in c99 c11; do
    if $cc -std=$std $flags -Wstrict-prototypes -Wshadow "$tu"; then echo "ok   $cc -std=$std"; else echo "FAIL $cc -std=$std"; fail=1; fi
    ran=$((ran + 1))
  done
done
for cxx in g++ clang++; do
  command -v $cxx >/dev/null 2>&1 || continue
  for std in c++11 c++17; do
    if $cxx -std=$std $flags -Wold-style-cast "$tmp/consumer.cpp"; then echo "ok   $cxx -std=$std"; else echo "FAIL $cxx -std=$std"; fail=1; fi
    ran=$((ran + 1))
  done
done
if ! command -v g++ >/dev/null 2>&1 && ! command -v clang++ >/dev/null 2>&1 && ! command -v c++ >/dev/null 2>&1; then
  echo "FAIL no C++ compiler found (install g++)"
  fail=1
fi
echo "$ran compilations"
exit $fail
