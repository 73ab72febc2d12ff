#!/usr/bin/env bash
# The GPU checks of the CUDA backend, in one run on a machine with an NVIDIA
# GPU and driver:
#   1. build with --features cuda,
#   2. the CUDA op tests (each op on CPU and CUDA, compared) and the PTX test,
#   3. model parity with the reference fixtures on CUDA,
#   4. `pixel bench --device cuda` on PIXEL-base at batch 32, FP32 and TF32,
#   5. the PyTorch reference step on the same GPU (TF32 on), for comparison.
# Run from the repository root; set PIXEL_FIXTURES to another fixture if wanted.
# NVRTC: the system's libnvrtc if the dynamic loader knows one, else the one
# .ci/run installs under target/ (PIXEL_NVRTC_DIR forces a directory).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
target="${CARGO_TARGET_DIR:-target}"
nvrtc_dir="${PIXEL_NVRTC_DIR:-$target/nvrtc/lib}"
if [ -n "${PIXEL_NVRTC_DIR:-}" ] || ! ldconfig -p 2>/dev/null | grep -q "libnvrtc.so.12"; then
    export LD_LIBRARY_PATH="$(cd "$nvrtc_dir" && pwd)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
export PIXEL_FIXTURES="${PIXEL_FIXTURES:-$PWD/../shared/fixtures/pixel-tiny}"
export PIXEL_REQUIRE_NVRTC=1

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
echo "== build"
cargo build --release --features cuda
echo "== CUDA op tests, PTX compile test"
cargo test --release -p pixel-kernels -p pixel-engine --features cuda -- --nocapture 2>&1 \
    | grep -E "test result|CUDA half skipped|panicked|FAILED|^test " || true
cargo test --release -p pixel-kernels -p pixel-engine --features cuda
echo "== parity on CUDA ($PIXEL_FIXTURES)"
cargo test --release --features cuda --test parity -- --nocapture
echo "== pixel bench, PIXEL-base, batch 32"
./"$target"/release/pixel bench --config base --device cuda --step-batch 32 --repeats 5
./"$target"/release/pixel bench --config base --device cuda --step-batch 32 --repeats 5 --tf32
echo "== PyTorch reference step on the same GPU (TF32 on)"
python3 scripts/bench_torch_gpu.py --batch 32 || echo "PyTorch reference failed (is torch with CUDA installed?)"
