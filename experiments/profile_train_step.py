"""Where a training step of the default U-Net spends its time (torch.profiler table).

Question: where does a training step of the default U-Net spend its time?
Answer: docs/archive/training-log.md#training-throughput (and docs/benchmarks.md for the
current throughput tables).

    python experiments/profile_train_step.py --device cuda --patches 8192
    python experiments/profile_train_step.py --device cpu --patches 256 --bf16 false

Prints the top operators by self device time (CUDA) or self CPU time, for the forward,
Huber loss, backward and AdamW step under the training precision, after warm-up steps.
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch
import torch.nn.functional as F

from mssfs.model.diffusion import NoiseSchedule
from mssfs.model.unet import UNet, UNetConfig
from mssfs.train.batches import PatchBatch
from mssfs.train.losses import diffusion_loss


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--patches", type=int, default=8192)
    p.add_argument("--bf16", default="true", choices=["true", "false"])
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--rows", type=int, default=25)
    args = p.parse_args(argv)
    dev = torch.device(args.device)
    torch.manual_seed(0)
    model = UNet(UNetConfig()).to(dev)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-4, foreach=True)
    scheduler = NoiseSchedule(300)
    n = args.patches
    normals = F.normalize(torch.randn(n, 3, 16, 16), dim=1)
    batch = PatchBatch(torch.rand(n, 1, 16, 16), normals, torch.ones(n, 1, 16, 16), torch.randint(0, 300, (n,)),
                       torch.randn_like(normals)).to(dev)
    ctx = (lambda: torch.autocast(dev.type, dtype=torch.bfloat16)) if args.bf16 == "true" else contextlib.nullcontext

    def step():
        with ctx():
            loss = diffusion_loss(model, batch, scheduler)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    for _ in range(3):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(5):
        step()
    sync()
    dt = (time.perf_counter() - t0) / 5
    print(f"{dev} {n} patches, bf16 {args.bf16}, channels_last {args.channels_last}: {dt * 1e3:.1f} ms/step, "
          f"{n / dt:,.0f} patches/s")
    if dev.type == "cuda":
        print(f"peak memory {torch.cuda.max_memory_allocated(dev) / 2**30:.1f} GiB")
    acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with torch.profiler.profile(activities=acts) as prof:
        for _ in range(2):
            step()
        sync()
    key = "self_cuda_time_total" if dev.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=args.rows, max_name_column_width=60))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
