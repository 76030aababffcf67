#!/bin/sh
# Install the built library into a scratch prefix, then build and run a consumer program against it
# twice: once through pkg-config (shared and static) and once through CMake's find_package.
# usage: test_install.sh SOURCE_DIR BUILD_DIR   (FM_FIXTURES names the reference cases)
set -eu
src=$1
build=$2
model=${FM_FIXTURES:-$src/tests/reference/cases}/falcon_f32_untied
work=$(mktemp -d "${TMPDIR:-/tmp}/fm-install-XXXXXX")
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix
cflags=${FM_CONSUMER_CFLAGS:-}  # the sanitizer flags when the library was built with them

cmake --install "$build" --prefix "$prefix" >/dev/null
libdir=$(ls -d "$prefix"/lib*/ | head -n 1)
test -f "$prefix/include/falconmamba.h"
test -L "${libdir}libfalconmamba.so.1"
test -f "${libdir}libfalconmamba.a"
test -f "${libdir}pkgconfig/falconmamba.pc"
test -f "${libdir}cmake/falconmamba/falconmambaConfig.cmake"

# Only fm_* symbols may be exported.
if nm -D --defined-only "${libdir}libfalconmamba.so.1" | awk '$2 ~ /[TDBR]/ {print $3}' | grep -v '^fm_' | grep -v '^FALCONMAMBA_'; then
  echo "FAIL: non-fm_ symbols exported"; exit 1
fi

export PKG_CONFIG_PATH="${libdir}pkgconfig"
cc $cflags -Wall -Wextra -Werror -std=c99 -o "$work/consumer_pc" "$src/tests/install/consumer.c" \
   $(pkg-config --cflags --libs falconmamba) -Wl,-rpath,"$libdir"
out_pc=$("$work/consumer_pc" "$model")
echo "pkg-config (shared): $out_pc"
cc $cflags -Wall -Wextra -Werror -std=c99 -o "$work/consumer_static" "$src/tests/install/consumer.c" \
   $(pkg-config --cflags falconmamba) "${libdir}libfalconmamba.a" $(pkg-config --libs-only-l --static falconmamba | sed 's/-lfalconmamba//')
out_static=$("$work/consumer_static" "$model")
echo "pkg-config (static): $out_static"

cmake -S "$src/tests/install" -B "$work/cmake-build" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_FLAGS="$cflags" >/dev/null
cmake --build "$work/cmake-build" >/dev/null
out_cmake=$(LD_LIBRARY_PATH="$libdir" "$work/cmake-build/consumer" "$model")
echo "find_package:        $out_cmake"

[ "$out_pc" = "$out_cmake" ] && [ "$out_pc" = "$out_static" ] || { echo "FAIL: consumers disagree"; exit 1; }
case "$out_pc" in "libfalconmamba "*" next="*) ;; *) echo "FAIL: unexpected output"; exit 1 ;; esac
echo "install test passed"
