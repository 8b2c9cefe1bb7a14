"""Training throughput of the default U-Net in patches per second.

Each variant (precision x eager/compiled x CUDA graph) runs full training steps of
:class:`mssfs.train.trainer.Trainer` (forward, Huber loss, backward, gradient clipping, AdamW,
EMA) on a fixed random batch (pinned on a GPU), so the data pipeline is not measured.
Every variant is compared with the eager loops (fp32, bf16) of the precisions asked for,
measured first in the same run, and checked: its first step's loss (same weights, same batch) must agree with
the eager loop's of its precision within 2 % and every timed loss must be finite.

    OMP_NUM_THREADS=1 python benchmarks/train_throughput.py            # CPU, 2048 patches
    python benchmarks/train_throughput.py --device cuda --patches 8192 --steps 10 --warmup 3 \
        --variants "bf16 eager,bf16 compile,bf16 cuda-graph,bf16 compile+cuda-graph"

A variant that fails (e.g. ``torch.compile`` without a working compiler) is reported in
the table with its error instead of stopping the run; the CUDA-graph variants off a GPU
as "skipped: no CUDA".  ``--json FILE`` also writes the results (after every variant),
with each variant's ``mssfs train`` options (tools/gpu_session.sh trains with the fastest
one that passed).
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch

from mssfs.model.unet import UNetConfig
from mssfs.train.batches import PatchBatch
from mssfs.train.config import TrainConfig, load_config_file
from mssfs.train.trainer import Trainer

VARIANTS = {
    "fp32 eager": dict(precision="fp32", compile=False),
    "fp32 compile": dict(precision="fp32", compile=True),
    "bf16 eager": dict(precision="bf16", compile=False),
    "bf16 compile": dict(precision="bf16", compile=True),
    "bf16 eager channels_last": dict(precision="bf16", compile=False, channels_last=True),
    "bf16 cuda-graph": dict(precision="bf16", compile=False, cuda_graph=True),
    "bf16 compile+cuda-graph": dict(precision="bf16", compile=True, cuda_graph=True),
}

#: The eager loop each variant's first-step loss is checked against, by precision.
REFERENCE = {"fp32": "fp32 eager", "bf16": "bf16 eager"}


def train_options(options: dict) -> str:
    """The ``mssfs train`` options of a variant (precision aside), e.g. ``--compile true``."""
    return " ".join(f"--{k.replace('_', '-')} true" for k in ("compile", "channels_last", "cuda_graph") if options.get(k))


def random_batch(n: int, seed: int = 0) -> PatchBatch:
    g = torch.Generator().manual_seed(seed)
    normals = torch.nn.functional.normalize(torch.randn(n, 3, 16, 16, generator=g), dim=1)
    return PatchBatch(
        shading=torch.rand(n, 1, 16, 16, generator=g), normals=normals, mask=torch.ones(n, 1, 16, 16),
        t=torch.randint(0, 300, (n,), generator=g), noise=torch.randn(n, 3, 16, 16, generator=g),
    )


def measure(options: dict, batch: PatchBatch, steps: int, warmup: int, device: str, run_dir: str,
            model: UNetConfig | None = None) -> dict:
    """Patches per second of ``steps`` timed training steps after ``warmup`` untimed ones
    (at least one: the first step's loss is kept for the check), with the losses."""
    cfg = TrainConfig(model=model or UNetConfig(), patches_per_step=batch.t.shape[0], device=device, **options)
    tr = Trainer(cfg, run_dir, source=lambda *a: iter(()), progress=False)
    if tr.device.type == "cuda":
        batch = batch.pin_memory()  # as the training loop's loader hands batches over
    sync = torch.cuda.synchronize if tr.device.type == "cuda" else (lambda: None)
    t0 = time.perf_counter()
    first = float(tr.train_step(batch))
    for _ in range(warmup - 1):
        tr.train_step(batch)
    sync()
    t1 = time.perf_counter()
    losses = [tr.train_step(batch) for _ in range(steps)]
    sync()
    t2 = time.perf_counter()
    last = [float(v) for v in losses]
    return {"patches_per_s": steps * batch.t.shape[0] / (t2 - t1), "step_s": (t2 - t1) / steps, "warmup_s": t1 - t0,
            "first_loss": first, "finite": all(math.isfinite(v) for v in [first, *last])}


def check(name: str, results: dict) -> str:
    """``"ok"``, or why the variant's losses are not to be trusted."""
    r = results[name]
    if not r["finite"]:
        return "non-finite loss"
    ref = results.get(REFERENCE[VARIANTS[name]["precision"]], {}).get("first_loss")
    if ref is None or name == REFERENCE[VARIANTS[name]["precision"]]:
        return "ok"
    return "ok" if abs(r["first_loss"] - ref) <= 0.02 * abs(ref) else f"first loss {r['first_loss']:.4g} vs {ref:.4g}"


def fastest_options(saved: dict) -> str:
    """``mssfs train`` options (``--precision P`` and the variant's own) of the fastest
    variant in a ``--json`` file's contents that passed its check; ``""`` if none did."""
    passed = {n: r for n, r in saved["variants"].items() if r.get("check") == "ok"}
    if not passed:
        return ""
    best = max(passed.values(), key=lambda r: r["patches_per_s"])
    return f"--precision {best['precision']} {best['train_options']}".strip()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--patches", type=int, default=2048, help="patches per step (published batch: 2048)")
    p.add_argument("--steps", type=int, default=2, help="timed steps per variant")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first (compilation happens here)")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of: " + ", ".join(VARIANTS))
    p.add_argument("--config", help="take the U-Net's shape from this training config (default: the publication's)")
    p.add_argument("--json", help="also write the results to this file (rewritten after every variant)")
    p.add_argument("--print-fastest", metavar="JSON", help="only print the `mssfs train` options of the fastest "
                   "variant that passed its check in a --json file (nothing if none did)")
    args = p.parse_args(argv)
    if args.print_fastest:
        with open(args.print_fastest) as f:
            print(fastest_options(json.load(f)))
        return 0
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variants {unknown}")
    if args.warmup < 1:
        p.error("--warmup must be at least 1 (the first step's loss is the correctness check)")
    # the baselines first: the eager loop of each precision asked for
    refs = [ref for prec, ref in REFERENCE.items() if any(VARIANTS[n]["precision"] == prec for n in names)]
    names = refs + [n for n in names if n not in refs]
    model = UNetConfig.from_dict(load_config_file(args.config).get("model", {})) if args.config else UNetConfig()
    batch = random_batch(args.patches)
    threads = torch.get_num_threads()
    on_cuda = args.device.startswith("cuda") and torch.cuda.is_available()
    dev = torch.cuda.get_device_name() if on_cuda else f"CPU, {threads} thread(s)"
    shape = "default U-Net" if not args.config else f"U-Net of {args.config}"
    print(f"training throughput, {shape}, {args.patches} patches/step, {args.steps} timed steps "
          f"after {args.warmup} warm-up, {dev}, torch {torch.__version__}")
    results = {}
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            if VARIANTS[name].get("cuda_graph") and not on_cuda:
                results[name] = {"skipped": "no CUDA"}
            else:
                try:
                    results[name] = measure(VARIANTS[name], batch, args.steps, args.warmup, args.device, tmp, model)
                except Exception as exc:  # noqa: BLE001 -- report and go on: e.g. torch.compile without a compiler
                    msg = f"{type(exc).__name__}: {exc}".splitlines()[0][:100]
                    results[name] = {"error": msg}
                else:
                    results[name]["check"] = check(name, results)
            r = results[name]
            r["train_options"] = train_options(VARIANTS[name])
            r["precision"] = VARIANTS[name]["precision"]
            print(f"  {name}: " + (f"{r['patches_per_s']:.1f} patches/s, {r['check']}" if "patches_per_s" in r
                                   else r.get("error", f"skipped: {r.get('skipped')}")), flush=True)
            if args.json:
                with open(args.json, "w") as f:
                    json.dump({"device": dev, "patches": args.patches, "variants": results}, f, indent=1)
    bases = {ref: results.get(ref, {}).get("patches_per_s") for ref in refs}
    print()
    print("| variant | patches/s | s/step | warm-up s | " + " | ".join(f"vs {ref}" for ref in refs) + " | check |")
    print("|---|---:|---:|---:|" + "---:|" * len(refs) + "---|")
    for name in names:
        r = results[name]
        if "patches_per_s" not in r:
            why = f"failed: {r['error']}" if "error" in r else f"skipped: {r['skipped']}"
            print(f"| {name} | {why} | | | " + " | " * len(refs) + " |")
            continue
        ratios = [f"{r['patches_per_s'] / b:.2f}x" if b else "n/a" for b in bases.values()]
        print(f"| {name} | {r['patches_per_s']:.1f} | {r['step_s']:.3f} | {r['warmup_s']:.1f} | "
              + " | ".join(ratios) + f" | {r['check']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
