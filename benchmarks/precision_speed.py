"""Denoiser time per call in fp32 and bf16 autocast on the CPU, and what ``auto`` picks.

On a CPU without bfloat16 instructions torch emulates bf16, so ``--precision auto``
(:func:`mssfs.core.device.resolve_precision`) takes fp32 there.  This measures the
bundled network's plain call (no gradient) in both precisions, interleaved, best of
``--reps``, and prints a markdown table with the ratio::

    OMP_NUM_THREADS=1 python benchmarks/precision_speed.py --patches 128,512
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from mssfs.core.device import cpu_has_native_bf16, resolve_precision
from mssfs.sampler.api import resolve_model


def time_call(net, patches: int, bf16: bool, reps: int) -> float:
    """Best of ``reps`` seconds for one call on ``patches`` random patches."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(patches, 3, 16, 16, generator=g)
    s = torch.rand(patches, 1, 16, 16, generator=g)
    t = torch.full((patches,), 500)
    best = float("inf")
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        net(x, t, s)  # warm-up
        for _ in range(reps):
            t0 = time.perf_counter()
            net(x, t, s)
            best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--patches", default="128,512", help="comma-separated patches per call")
    p.add_argument("--reps", type=int, default=3)
    args = p.parse_args(argv)
    net, _ = resolve_model(None, torch.device("cpu"))
    auto = "bf16" if resolve_precision("auto", "cpu")[0] else "fp32"
    print(f"CPU: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s), capability {torch.backends.cpu.get_cpu_capability()}, "
          f"bfloat16 instructions: {'yes' if cpu_has_native_bf16() else 'no'}; --precision auto takes {auto}\n")
    print("| patches per call | fp32 s | bf16 s | bf16 / fp32 |")
    print("|---:|---:|---:|---:|")
    for n in (int(v) for v in args.patches.split(",")):
        fp32 = time_call(net, n, False, args.reps)
        bf16 = time_call(net, n, True, args.reps)
        print(f"| {n} | {fp32:.3g} | {bf16:.3g} | {bf16 / fp32:.1f}x |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
