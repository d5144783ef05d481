#!/bin/sh
# Build llama.cpp's own benchmark tools and server from the llama-cpp-python sdist's vendored source, so the
# peers `cepo bench` measures run the same code, compiled with the same flags, as the engine's wheel.
# Usage: scripts/llama-tools.sh VERSION DEST CMAKE_ARG... ; DEST appears only once every tool is built.
set -eu
version=$1 dest=$2
shift 2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"${PYTHON:-python3}" -m pip download -q --no-binary :all: --no-deps -d "$work" "llama-cpp-python==$version"
tar xzf "$work/llama_cpp_python-$version.tar.gz" -C "$work"
# Static binaries, so the cached tools need no library path; no network features, no web UI download.
cmake -S "$work/llama_cpp_python-$version/vendor/llama.cpp" -B "$work/build" -DCMAKE_BUILD_TYPE=Release \
	"$@" -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
	-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF >"$work/configure.log"
cmake --build "$work/build" -j "$(nproc)" --target llama-batched-bench llama-bench llama-server
mkdir -p "$work/bin"
cp "$work/build/bin/llama-batched-bench" "$work/build/bin/llama-bench" "$work/build/bin/llama-server" "$work/bin/"
mkdir -p "$(dirname "$dest")"
rm -rf "$dest"
mv "$work/bin" "$dest"
