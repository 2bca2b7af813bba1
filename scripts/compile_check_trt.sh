#!/usr/bin/env bash
# Build libntc_trt_plugins.so against one set of TensorRT headers and check what it exports.
#   scripts/compile_check_trt.sh TensorRT_ROOT=<dir with include/NvInfer.h> [BUILD_DIR=<dir>] [CUDA_ARCHS="86"]
# Headers are never part of this repository: extract them locally, e.g. from NVIDIA/TensorRT's public repository
#   git --git-dir=<TensorRT.git> archive v10.3.0 include | tar -x -C /tmp/trt-headers-v10.3.0
# Checked with the release/tag headers v10.3.0 (JetPack 6), v10.16 and v11.1.
set -euo pipefail

for arg in "$@"; do
  case "$arg" in
    TensorRT_ROOT=*|BUILD_DIR=*|CUDA_ARCHS=*) export "${arg?}" ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    *) echo "compile_check_trt.sh: unknown argument '$arg' (expected TensorRT_ROOT=, BUILD_DIR=, CUDA_ARCHS=)" >&2
       exit 2 ;;
  esac
done
if [[ -z "${TensorRT_ROOT:-}" ]]; then
  echo "compile_check_trt.sh: TensorRT_ROOT=<dir with include/NvInfer.h> is required" >&2
  exit 2
fi
if [[ ! -f "$TensorRT_ROOT/include/NvInfer.h" && ! -f "$TensorRT_ROOT/NvInfer.h" ]]; then
  echo "compile_check_trt.sh: no NvInfer.h under $TensorRT_ROOT or $TensorRT_ROOT/include" >&2
  exit 2
fi
for tool in cmake nvcc nm; do
  command -v "$tool" >/dev/null || { echo "compile_check_trt.sh: $tool not found on PATH" >&2; exit 2; }
done

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
plugins="$here/../plugins"
build="${BUILD_DIR:-$(mktemp -d /tmp/ntc-trt-build.XXXXXX)}"
# The preprocessor resolves the version macros (11.x defines them through other macros).
version="$(printf '#include <NvInferVersion.h>\nNV_TENSORRT_MAJOR.NV_TENSORRT_MINOR.NV_TENSORRT_PATCH\n' \
  | c++ -E -P -x c++ -I"$TensorRT_ROOT/include" -I"$TensorRT_ROOT" - 2>/dev/null | tail -n 1 | tr -d ' ')" || true
echo "TensorRT headers: $TensorRT_ROOT (version ${version:-unknown})"

cmake -S "$plugins" -B "$build" -DTensorRT_ROOT="$TensorRT_ROOT" \
  -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHS:-86}" >"$build.configure.log" 2>&1 \
  || { cat "$build.configure.log" >&2; exit 1; }
grep -q "building libntc_trt_plugins.so" "$build.configure.log" \
  || { echo "compile_check_trt.sh: CMake did not pick up the TensorRT headers:" >&2
       cat "$build.configure.log" >&2; exit 1; }
cmake --build "$build" -j "$(nproc)"
"$build/ntc_contract_tests"

lib="$build/libntc_trt_plugins.so"
exported="$(nm -D --defined-only "$lib" | awk '{print $3}' | sort | tr '\n' ' ')"
echo "exported: $exported"
[[ "$exported" == "getCreators setLoggerFinder " ]] \
  || { echo "compile_check_trt.sh: $lib must export exactly getCreators and setLoggerFinder" >&2; exit 1; }
if nm -D --undefined-only "$lib" | grep -q nvinfer; then
  echo "compile_check_trt.sh: $lib refers to TensorRT library symbols (it must not link libnvinfer)" >&2
  exit 1
fi
echo "OK: $lib built against TensorRT ${version:-?} headers"
