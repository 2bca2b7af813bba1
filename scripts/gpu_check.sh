#!/usr/bin/env bash
# GPU check: build the CUDA kernels with CMake, run the GPU tests, compute-sanitizer, and the kernel benchmarks.
# Writes JSON and logs to $OUT (default ./gpu-out). Needs a CUDA device, nvcc, and python with torch (CUDA build);
# TensorRT is not needed (kernels are exercised through ctypes and PyTorch). The last step gathers everything into
# $OUT/benchmarks/gpu/<device>-<commit>.json, the file to commit (NTC_COMMIT names the commit where .git is absent).
#   OUT=/tmp/gpu NTC_COMMIT=$(git rev-parse --short HEAD) bash scripts/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
status=0
step() { echo "== $*"; }

step "device"
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv | tee "$OUT/device.csv"
SM=$(sed -n 2p "$OUT/device.csv" | awk -F', *' '{print $4}' | tr -d .)
nvcc --version | tee "$OUT/nvcc.txt" | tail -1
python3 -c "import json, torch; json.dump({'torch': torch.__version__, 'cuda': torch.version.cuda},
                                          open('$OUT/torch.json', 'w'))"
COMMIT=${NTC_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}

step "build kernels for sm_${SM} (CI builds 86;87;89;90;120)"
cmake -S plugins -B plugins/build -DCMAKE_CUDA_ARCHITECTURES="${SM}" > "$OUT/cmake.log" 2>&1 \
  && cmake --build plugins/build -j 16 >> "$OUT/cmake.log" 2>&1 || { echo "kernel build failed"; tail -40 "$OUT/cmake.log"; exit 1; }
export NTC_KERNELS_LIB=$PWD/plugins/build/libntc_kernels.so

step "python package (no dependency downloads: uses the machine's torch/numpy)"
python3 -m pip install -q --no-deps --no-build-isolation -e . > "$OUT/pip.log" 2>&1 || tail -20 "$OUT/pip.log"
python3 -m pip install -q pytest > /dev/null 2>&1 || true

step "GPU tests"
python3 -m pytest -q -o addopts=-ra tests/gpu -p no:cacheprovider --junitxml="$OUT/gpu_tests.xml" 2>&1 | tee "$OUT/gpu_tests.log" | tail -30
[ "${PIPESTATUS[0]}" = 0 ] || status=1

step "compute-sanitizer memcheck on the GPU tests"
if command -v compute-sanitizer > /dev/null; then
  compute-sanitizer --tool memcheck --target-processes all --error-exitcode 3 \
    python3 -m pytest -q -o addopts=-ra -x tests/gpu -p no:cacheprovider -k "bc7 or bc6h or gather or window" \
    > "$OUT/memcheck.log" 2>&1; rc=$?
  tail -5 "$OUT/memcheck.log"; [ "$rc" = 0 ] || status=1
  step "compute-sanitizer racecheck on the window-attention kernel (shared-memory tiles)"
  compute-sanitizer --tool racecheck --target-processes all --error-exitcode 3 \
    python3 -m pytest -q -o addopts=-ra -x tests/gpu/test_window_attention_gpu.py -p no:cacheprovider \
    -k "tensor_core_path or general_path or no_bias" > "$OUT/racecheck.log" 2>&1; rc=$?
  tail -5 "$OUT/racecheck.log"; [ "$rc" = 0 ] || status=1
else
  echo "compute-sanitizer not found" | tee "$OUT/memcheck.log"
fi

step "benchmarks"
python3 scripts/bench_bc_decode.py --out "$OUT/bench_bc_decode.json" --dtype float16 --layout tokens || status=1
python3 scripts/bench_bc_decode.py --out "$OUT/bench_bc_decode_fp32_nchw.json" --dtype float32 --layout nchw || status=1
python3 scripts/bench_window_attention.py --out "$OUT/bench_window_attention.json" || status=1

step "summary"
python3 scripts/gpu_summary.py --dir "$OUT" --commit "$COMMIT" || status=1

echo "gpu_check status: $status"
exit $status
