#!/usr/bin/env bash
# CPU speed of pixel next to the PyTorch reference, in one session on one
# machine (the only comparison that means anything on a shared box: ratios).
#
#   scripts/bench_vs_torch.sh [OUT_DIR]        (default out/bench-vs-torch)
#
# Needs a virtual environment with torch and numpy: TORCH_VENV (default
# .venv-torch; created with `python3 -m venv .venv-torch && .venv-torch/bin/pip
# install torch numpy` when missing). Writes info.txt, gemm.txt, pixel.txt and
# torch.md into OUT_DIR. About 12 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-out/bench-vs-torch}"
venv="${TORCH_VENV:-.venv-torch}"
shared="${PIXEL_SHARED:-../shared}"
mkdir -p "$out"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet torch numpy
fi
cargo build --release --quiet
pixel=target/release/pixel
"$pixel" info | tee "$out/info.txt"
"$pixel" bench --gemm --repeats 5 | tee "$out/gemm.txt"
"$pixel" bench --config base --max-seq-length 529 --forward-batches 8 --step-batch 8 --repeats 2 \
    | tee "$out/pixel.txt"
"$venv/bin/python" "$shared/anchors/bench_torch_cpu.py" --threads 2 --iters 3 --warmup 1 \
    --scenarios mm,enc_b8,adamw_b8 --out "$out/torch.md"
# The same step again, so a load change during the PyTorch run shows up.
"$pixel" bench --config base --max-seq-length 529 --forward-batches 8 --step-batch 8 --repeats 2 \
    | tee -a "$out/pixel.txt"
# The step with the MLPs recomputed in backward (less memory, more FLOPs):
# the decoder's, then all.
for which in decoder all; do
    "$pixel" bench --config base --max-seq-length 529 --forward-batches 1 --step-batch 8 --repeats 2 \
        --recompute-mlp "$which" | tee -a "$out/pixel.txt"
done
