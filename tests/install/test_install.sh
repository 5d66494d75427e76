#!/usr/bin/env bash
# Installs the build into a scratch prefix, then builds and runs a consumer three ways:
# find_package(nheap) with the shared and the static library, and plain cc with pkg-config.
set -euo pipefail
cmake=$1 build=$2 consumer=$3 work=$4 libdir=${5:-lib}
rm -rf "$work"
mkdir -p "$work"
prefix=$work/prefix

"$cmake" --install "$build" --prefix "$prefix" >/dev/null
for f in include/nheap.h $libdir/libnheap.a $libdir/pkgconfig/nheap.pc $libdir/cmake/nheap/nheapConfig.cmake \
         share/nheap/configs/default.ini share/nheap/configs/server.ini; do
  [ -e "$prefix/$f" ] || { echo "install: $f missing" >&2; exit 1; }
done
ls "$prefix/$libdir"/libnheap.so.* "$prefix/$libdir"/libnheap_malloc.so >/dev/null
# Only the public headers are installed.
[ "$(ls "$prefix/include" | tr '\n' ' ')" = "nheap.h nheap_gc_compat.h nheap_rseq.h " ] || { echo "install: unexpected headers" >&2; exit 1; }

"$cmake" -S "$consumer" -B "$work/cm" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
"$cmake" --build "$work/cm" >/dev/null
LD_LIBRARY_PATH=$prefix/$libdir "$work/cm/consumer_shared"
"$work/cm/consumer_static"

export PKG_CONFIG_PATH=$prefix/$libdir/pkgconfig
cc -o "$work/pc_shared" "$consumer/main.c" $(pkg-config --cflags --libs nheap)
LD_LIBRARY_PATH=$prefix/$libdir "$work/pc_shared"
cc -static-libgcc -o "$work/pc_static" "$consumer/main.c" $(pkg-config --static --cflags nheap) \
   "$prefix/$libdir/libnheap.a" $(pkg-config --static --libs-only-l nheap | sed 's/-lnheap//')
"$work/pc_static"
# The shared library exports the public API and nothing else.
bad=$(nm -D --defined-only "$prefix/$libdir"/libnheap.so | awk '{print $3}' | grep -v '^nh_' | grep -v '^NHEAP_' || true)
[ -z "$bad" ] || { echo "install: libnheap.so exports non-API symbols: $bad" >&2; exit 1; }
echo "install: ok"
