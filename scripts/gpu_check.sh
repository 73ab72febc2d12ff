#!/usr/bin/env bash
# The GPU checks of the CUDA backend, in one run on a machine with an NVIDIA
# GPU and driver:
#   1. build with --features cuda,
#   2. the CUDA op tests (each op on CPU and CUDA, compared) and the PTX test,
#   3. model parity with the reference fixtures on CUDA, and two full training
#      steps of a tiny model on CUDA against the CPU,
#   4. `pixel bench --device cuda` on PIXEL-base at batch 32, FP32 and TF32,
#   5. the PyTorch reference step on the same GPU (TF32 on), for comparison.
# Run from anywhere; PIXEL_SHARED (default ../shared, else ./shared) locates
# the fixtures and anchors; PIXEL_FIXTURES picks another fixture.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
target="${CARGO_TARGET_DIR:-target}"

# Libraries loaded at run time: the driver (system), cuBLAS and NVRTC. Each is
# taken from the dynamic loader's cache if it knows it, else from the
# nvidia-* Python packages PyTorch installs, else (NVRTC only) from the copy
# .ci/run puts under target/. PIXEL_NVRTC_DIR / PIXEL_CUBLAS_DIR force a directory.
add_lib_dir() {  # add_lib_dir SONAME PYTHON_MODULE FALLBACK_DIR FORCED_DIR
    local dir="${4:-}"
    if [ -z "$dir" ]; then
        if ldconfig -p 2>/dev/null | grep -q "$1"; then
            return
        fi
        dir="$(python3 -c "import os, $2 as m; print(os.path.join(list(m.__path__)[0], 'lib'))" 2>/dev/null || true)"
        [ -e "$dir/$1" ] || dir="$3"
    fi
    if [ -n "$dir" ] && [ -e "$dir/$1" ]; then
        export LD_LIBRARY_PATH="$(cd "$dir" && pwd)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        echo "using $1 from $dir"
    else
        echo "warning: $1 not found (ldconfig, python $2, $3)"
    fi
}
add_lib_dir libnvrtc.so.12 nvidia.cuda_nvrtc "$target/nvrtc/lib" "${PIXEL_NVRTC_DIR:-}"
add_lib_dir libcublas.so.12 nvidia.cublas "" "${PIXEL_CUBLAS_DIR:-}"
# Fixtures and the PyTorch reference live in the shared directory beside the
# checkout (or inside it, on a machine that received a copy).
shared="${PIXEL_SHARED:-$PWD/../shared}"
[ -d "$shared" ] || shared="$PWD/shared"
export PIXEL_FIXTURES="${PIXEL_FIXTURES:-$shared/fixtures/pixel-tiny}"
export PIXEL_ANCHORS="${PIXEL_ANCHORS:-$shared/anchors}"
export PIXEL_REQUIRE_NVRTC=1
# The op tests fail, rather than skip their CUDA half, when cuda:0 cannot be opened.
export PIXEL_REQUIRE_CUDA=1

# Every step runs even if an earlier one failed (one GPU session should report
# everything); the exit status says whether all passed.
failed=()
step() {  # step NAME COMMAND...
    echo "== $1"
    if ! "${@:2}"; then
        failed+=("$1")
        echo "!! $1 FAILED"
    fi
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
set +e
step "build --features cuda" cargo build --release --features cuda
step "CUDA op tests and NVRTC test" \
    cargo test --release -p pixel-kernels -p pixel-engine --features cuda -- --nocapture
step "parity on CUDA ($PIXEL_FIXTURES)" \
    cargo test --release --features cuda --test parity -- --nocapture
step "training steps on CUDA vs CPU (tiny model)" \
    cargo test --release --features cuda --test cuda_train_step -- --nocapture
gpu_out="$(mktemp -d)"
step "pixel pretrain --device cuda (default run, 200 steps, then resume to 300)" \
    bash -c "'$target/release/pixel' pretrain --device cuda --stop-at 200 --out '$gpu_out/pre' && '$target/release/pixel' pretrain --device cuda --stop-at 300 --resume --out '$gpu_out/pre'"
step "pixel finetune --device cuda (POS, tiny, 50 steps)" \
    "$target/release/pixel" finetune --device cuda --task pos --config tiny --steps 50 --eval-every 50 \
        --max-seq-length 64 --batch-size 16 --max-train-examples 256 \
        --train "$shared/data/ud/UD_English-EWT/en_ewt-ud-train.conllu" \
        --dev "$shared/data/ud/UD_English-EWT/en_ewt-ud-dev.conllu" --out "$gpu_out/pos"
step "pixel bench, PIXEL-base, batch 32, FP32" \
    "$target/release/pixel" bench --config base --device cuda --step-batch 32 --repeats 5
step "pixel bench, PIXEL-base, batch 32, TF32" \
    "$target/release/pixel" bench --config base --device cuda --step-batch 32 --repeats 5 --tf32
step "PyTorch reference step, batch 32, TF32 (needs torch with CUDA)" \
    python3 scripts/bench_torch_gpu.py --batch 32
if [ ${#failed[@]} -gt 0 ]; then
    printf 'failed: %s\n' "${failed[@]}"
    exit 1
fi
echo "all GPU checks passed"
