"""Per-call time of the denoiser with our kernels against the publication's.

``ours`` is :mod:`mssfs.model` as shipped (weight standardisation cached while the
weights are frozen); ``published`` is the same
network computed as the publication does (``publication_net`` of ``sample_speed.py``).
Both run in one process, interleaved, best of ``--reps``; a guidance iteration is a
forward, a loss and the gradient with respect to the input, as in sampling::

    OMP_NUM_THREADS=1 python benchmarks/denoiser_kernels.py --patches 16,100,128
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import torch

from mssfs.model.unet import UNet, UNetConfig


def _publication_net():
    spec = importlib.util.spec_from_file_location("sample_speed", Path(__file__).with_name("sample_speed.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.publication_net


def plain(net, x, s, t, bf16):
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        return net(x, t, s)


def guided(net, x, s, t, bf16):
    x = x.detach().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        eps = net(x, t, s)
    return torch.autograd.grad((eps.float() ** 2).sum(), x)[0]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--patches", default="16,100,128", help="patches per call, comma-separated")
    p.add_argument("--reps", type=int, default=4, help="timed repetitions (best is kept)")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    ours = UNet(UNetConfig()).eval().requires_grad_(False)
    nets = {"published": _publication_net()(ours), "ours": ours}
    print(f"{torch.get_num_threads()} threads; time per call in ms, published / ours\n")
    print("| patches per call | fp32 plain | fp32 guidance iteration | bf16 plain | bf16 guidance iteration |")
    print("|---:|---:|---:|---:|---:|")
    for b in (int(v) for v in args.patches.split(",")):
        g = torch.Generator().manual_seed(b)
        data = (torch.randn(b, 3, 16, 16, generator=g), torch.rand(b, 1, 16, 16, generator=g), torch.full((b,), 200))
        cells = []
        for bf16 in (False, True):
            for f in (plain, guided):
                best = {k: float("inf") for k in nets}
                for _ in range(args.reps):
                    for k, net in nets.items():
                        f(net, *data, bf16)  # warm-up / cache fill
                        t0 = time.perf_counter()
                        f(net, *data, bf16)
                        best[k] = min(best[k], time.perf_counter() - t0)
                cells.append(f"{best['published'] * 1e3:.0f} / {best['ours'] * 1e3:.0f} ({best['published'] / best['ours']:.2f}x)")
        print(f"| {b} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
