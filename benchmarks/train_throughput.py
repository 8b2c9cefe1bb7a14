"""Training throughput of the default U-Net in patches per second.

Each variant (precision x eager/compiled) runs full training steps of
:class:`mssfs.train.trainer.Trainer` (forward, Huber loss, backward, gradient clipping, AdamW,
EMA) on a fixed random batch, so the data pipeline is not measured.  Every variant is
compared with the plain fp32 eager loop measured in the same run.

    OMP_NUM_THREADS=1 python benchmarks/train_throughput.py            # CPU, 2048 patches
    python benchmarks/train_throughput.py --device cuda --steps 20     # a GPU

A variant that fails (e.g. ``torch.compile`` without a working compiler) is reported in
the table with its error instead of stopping the run.
"""

from __future__ import annotations

import argparse
import time

import torch

from mssfs.model.unet import UNetConfig
from mssfs.train.batches import PatchBatch
from mssfs.train.config import TrainConfig
from mssfs.train.trainer import Trainer

VARIANTS = {
    "fp32 eager": dict(precision="fp32", compile=False),
    "fp32 compile": dict(precision="fp32", compile=True),
    "bf16 eager": dict(precision="bf16", compile=False),
    "bf16 compile": dict(precision="bf16", compile=True),
    "bf16 eager channels_last": dict(precision="bf16", compile=False, channels_last=True),
}


def random_batch(n: int, seed: int = 0) -> PatchBatch:
    g = torch.Generator().manual_seed(seed)
    normals = torch.nn.functional.normalize(torch.randn(n, 3, 16, 16, generator=g), dim=1)
    return PatchBatch(
        shading=torch.rand(n, 1, 16, 16, generator=g), normals=normals, mask=torch.ones(n, 1, 16, 16),
        t=torch.randint(0, 300, (n,), generator=g), noise=torch.randn(n, 3, 16, 16, generator=g),
    )


def measure(options: dict, batch: PatchBatch, steps: int, warmup: int, device: str, run_dir: str) -> dict:
    """Patches per second of ``steps`` timed training steps after ``warmup`` untimed ones."""
    cfg = TrainConfig(model=UNetConfig(), patches_per_step=batch.t.shape[0], device=device, **options)
    tr = Trainer(cfg, run_dir, source=lambda *a: iter(()), progress=False)
    sync = torch.cuda.synchronize if tr.device.type == "cuda" else (lambda: None)
    t0 = time.perf_counter()
    for _ in range(warmup):
        tr.train_step(batch)
    sync()
    t1 = time.perf_counter()
    for _ in range(steps):
        loss = tr.train_step(batch)
    float(loss)
    sync()
    t2 = time.perf_counter()
    return {"patches_per_s": steps * batch.t.shape[0] / (t2 - t1), "step_s": (t2 - t1) / steps, "warmup_s": t1 - t0}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--patches", type=int, default=2048, help="patches per step (published batch: 2048)")
    p.add_argument("--steps", type=int, default=2, help="timed steps per variant")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first (compilation happens here)")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of: " + ", ".join(VARIANTS))
    args = p.parse_args(argv)
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variants {unknown}")
    if "fp32 eager" in names:
        names.remove("fp32 eager")
    names.insert(0, "fp32 eager")  # the baseline, always measured first
    batch = random_batch(args.patches)
    threads = torch.get_num_threads()
    dev = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU, {threads} thread(s)"
    print(f"training throughput, default U-Net, {args.patches} patches/step, {args.steps} timed steps "
          f"after {args.warmup} warm-up, {dev}, torch {torch.__version__}")
    results = {}
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            try:
                results[name] = measure(VARIANTS[name], batch, args.steps, args.warmup, args.device, tmp)
            except Exception as exc:  # noqa: BLE001 -- report and go on: e.g. torch.compile without a compiler
                msg = f"{type(exc).__name__}: {exc}".splitlines()[0][:100]
                results[name] = {"error": msg}
            r = results[name]
            print(f"  {name}: " + (f"{r['patches_per_s']:.1f} patches/s" if "error" not in r else "failed"), flush=True)
    base = results["fp32 eager"].get("patches_per_s")
    print()
    print("| variant | patches/s | s/step | warm-up s | vs fp32 eager |")
    print("|---|---:|---:|---:|---:|")
    for name in names:
        r = results[name]
        if "error" in r:
            print(f"| {name} | failed | | | {r['error']} |")
        else:
            ratio = f"{r['patches_per_s'] / base:.2f}x" if base else "n/a"
            print(f"| {name} | {r['patches_per_s']:.1f} | {r['step_s']:.2f} | {r['warmup_s']:.1f} | {ratio} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
