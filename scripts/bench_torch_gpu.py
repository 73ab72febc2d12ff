"""GPU speed anchor for PIXEL-base in PyTorch: one pretraining step (forward,
backward, AdamW) on the reference model of ../shared/anchors/pixel_torch.py,
timed as ../shared/anchors/bench_torch_cpu.py times its adamw_b8 scenario
(same inputs, 25% span masking, same FLOP model), but on CUDA and at a
configurable batch.

    python scripts/bench_torch_gpu.py                 # batch 32, TF32 on
    python scripts/bench_torch_gpu.py --batch 32 --no-tf32 --iters 10
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

ANCHORS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "anchors")
sys.path.insert(0, os.path.abspath(os.environ.get("PIXEL_ANCHORS", ANCHORS)))

import bench_torch_cpu as anchor  # noqa: E402  (inputs, FLOP model, config)
import pixel_torch as pt  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--no-tf32", action="store_true", help="FP32 matmuls (TF32 is on by default)")
    ap.add_argument("--dropout", type=float, default=0.0)
    a = ap.parse_args()
    assert torch.cuda.is_available(), "no CUDA device visible to PyTorch"
    tf32 = not a.no_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.manual_seed(0)
    dev = torch.device("cuda")
    cfg = anchor.base_config(a.dropout)
    model = pt.PixelForPreTraining(cfg).to(dev).train()
    pv, am, pm = anchor.inputs(a.batch, masked=True)
    pv, am, pm = pv.to(dev), am.to(dev), pm.to(dev)
    decay = [p for _, p in model.named_parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for _, p in model.named_parameters() if p.requires_grad and p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
        lr=1.5e-4, betas=(0.9, 0.999), eps=1e-8,
    )

    def step():
        model.zero_grad(set_to_none=True)
        out = model(pv, am, pm)
        out.loss.backward()
        opt.step()

    for _ in range(a.warmup):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(a.iters):
        t0 = time.perf_counter()
        step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    _, flops = anchor.pretrain_step_flops(a.batch, cfg)
    print(
        f"torch {torch.__version__} on {torch.cuda.get_device_name()}: PIXEL-base pretraining step "
        f"(fwd+bwd+AdamW), batch {a.batch}, TF32 {'on' if tf32 else 'off'}: "
        f"median {med * 1e3:.1f} ms, best {min(times) * 1e3:.1f} ms, "
        f"{a.batch / med:.1f} sentences/s, {flops / med / 1e12:.1f} TFLOP/s, "
        f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"
    )


if __name__ == "__main__":
    main()
