"""Sampling speed: batched seeds against the publication's one-seed-at-a-time loop.

A full ``paper`` sample takes minutes on a small CPU, so the default run *measures* the
cost of one denoiser call of each kind (plain DDIM call; guidance iteration = forward,
losses, backward) at every resolution of the schedule and every batch size, each in a
fresh process (for honest peak memory), and *extrapolates* the per-sample time from the
schedule's exact call counts::

    time/sample = sum over stage runs (steps * t_plain(r, N) + guided_iters * t_guided(r, N)) / N

The baseline is the same code with one seed per batch (batch = the patches of one image,
fp32, eager), which is what the published code does; it is timed in the same run, on a
network of the publication's architecture (linear attention at every level:
:func:`published_architecture`) computed as the publication does (:func:`publication_net`:
the weight standardisation recomputed at every call, the linear attention in its direct
form).
The row "1, fp32, our kernels" separates what the kernels give from what batching gives.
``--end-to-end`` also runs the real pipeline for a preset to check the extrapolation.

    python benchmarks/sample_speed.py --preset paper --samples-list 1,4,16
    python benchmarks/sample_speed.py --device cuda --bf16 --samples-list 1,16,64
    python benchmarks/sample_speed.py --preset fast --samples-list 1,4 --end-to-end
    OMP_NUM_THREADS=2 python benchmarks/sample_speed.py --bf16 --workers 2   # slices on 2 threads
    python benchmarks/sample_speed.py --device cuda --chunk 0 --samples-list 1,16,64 --cuda-graphs

``--cuda-graphs`` adds rows whose calls replay CUDA graphs (:mod:`mssfs.model.cudagraphs`); the
one-off capture of each shape happens in the warm-up call and is reported separately.

Weights do not change speed: without ``--weights`` the rows marked "ours" use the package
weights' architecture with random weights (the package weights themselves with
``--weights default``); the baseline always has the publication's architecture.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from typing import NamedTuple

import numpy as np
import torch

from mssfs.core.patches import PATCH, to_patches
from mssfs.model.diffusion import NoiseSchedule
from mssfs.sampler.ddim import guided_ddim
from mssfs.sampler.denoiser import SlicedDenoiser
from mssfs.sampler.schedules import Stage, resolve_schedule


class Config(NamedTuple):
    """One row of the table: samples per batch, bf16, slice size, kernels, worker threads, CUDA graphs."""

    n: int
    bf16: bool
    chunk: int | None
    kernels: str  # "ours", "published" (the baseline) or a variant_label()
    workers: int = 1
    graphs: bool = False

    def label(self) -> str:
        kernels = "" if self.kernels == "ours" else " published" if self.kernels == "published" else f" [{self.kernels}]"
        return (f"N={self.n}{kernels}{' bf16' if self.bf16 else ''}"
                f"{f' chunk {self.chunk}' if self.chunk else ''}{f' x{self.workers}' if self.workers > 1 else ''}"
                f"{' graphs' if self.graphs else ''}")


def load_net(weights: str | None, device, linear_attn_from: int | None = None):
    """The package weights (``"default"``), an export folder, or random weights (``None``).

    Random weights use the architecture of the package weights (their ``config.json``);
    ``linear_attn_from`` gives that architecture with linear attention from level K on
    (0: every level, as published) and random weights, for speed only.
    """
    if weights and linear_attn_from is None:
        from mssfs.sampler.api import resolve_model

        return resolve_model(None if weights == "default" else weights, device)[0]
    from mssfs.model.unet import UNetConfig
    from mssfs.model.weights import DEFAULT_DIR, read_export_config

    cfg = UNetConfig.from_dict(read_export_config(DEFAULT_DIR)["model"])
    if linear_attn_from is not None:
        cfg = dataclasses.replace(cfg, linear_attn_from=linear_attn_from)
    return _random_net(cfg, device)


def _random_net(cfg, device) -> torch.nn.Module:
    """A frozen U-Net of shape ``cfg`` with seeded random weights (timing only)."""
    from mssfs.model.unet import UNet

    torch.manual_seed(0)
    return UNet(cfg).to(device).eval().requires_grad_(False)


def published_architecture(net: torch.nn.Module, device) -> torch.nn.Module:
    """``net`` itself if it has the publication's architecture (linear attention at every
    level), else a network of that architecture with random weights (timing only)."""
    if net.config.linear_attn_from == 0:
        return net
    return _random_net(dataclasses.replace(net.config, linear_attn_from=0), device)


def variant_label(level: int) -> str:
    return "ours, published architecture" if level == 0 else f"ours, no linear attention below level {level}"


def publication_net(net: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``net`` that computes as the publication's code does: every
    :class:`~mssfs.model.unet.WSConv2d` standardises its kernel at every call (no cache),
    every :class:`~mssfs.model.unet.LinearAttention` materialises its values and output
    (:func:`~mssfs.model.unet.linear_attention_reference`) instead of our re-associated form,
    and every :class:`~mssfs.model.unet.ChannelNorm` divides by ``F.normalize``'s norm."""
    import copy

    import torch.nn.functional as F

    from mssfs.model.unet import ChannelNorm, LinearAttention, WSConv2d, standardize_kernel

    class _Uncached(WSConv2d):
        def standardized_weight(self):
            return standardize_kernel(self.weight)

    class _NormalizeNorm(ChannelNorm):
        def forward(self, x):
            return F.normalize(x, dim=1) * self.gain * x.shape[1] ** 0.5

    out = copy.deepcopy(net)
    for m in out.modules():
        if isinstance(m, WSConv2d):
            m.__class__ = _Uncached
        elif isinstance(m, LinearAttention):
            m.reassociate = False
        elif isinstance(m, ChannelNorm):
            m.__class__ = _NormalizeNorm
    return out


def _status_mb(key: str) -> float:
    """A ``/proc/self/status`` memory field in MiB (VmHWM is reset by exec, unlike ru_maxrss)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(key)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _inputs(n: int, r: int, device):
    g = torch.Generator().manual_seed(0)
    x = torch.randn((n * (r // PATCH) ** 2, 3, PATCH, PATCH), generator=g).to(device)
    return x, to_patches(torch.rand((n, 1, r, r), generator=g)).to(device)


def _time_call(net, x, shading, r: int, iters: int, device) -> float:
    """Seconds for one DDIM step with ``iters`` guidance iterations (0 = plain call)."""
    stage = Stage(r, 10.0, inner_iters_high=iters, inner_iters_low=iters, late_t=299)
    sync(device)
    t0 = time.perf_counter()
    with torch.no_grad():
        guided_ddim(net, x.clone(), shading, NoiseSchedule(), [40], stage, 299, (r, r))
    sync(device)
    return time.perf_counter() - t0


def measure(args, configs) -> dict:
    """Best-of-``reps`` per-call times for every (config, resolution), interleaved in one process.

    Interleaving keeps the baseline and the batched runs under the same machine load.
    A CUDA-graph config whose capture fails is reported and removed from ``configs`` (the
    other rows are still measured).
    """
    device = torch.device(args.device)
    base = load_net(args.weights, device)
    models = {"ours": base, "published": publication_net(published_architecture(base, device))}
    if args.linear_attn_from is not None:
        models[variant_label(args.linear_attn_from)] = load_net(None, device, args.linear_attn_from)
    nets = {c: SlicedDenoiser(models[c.kernels], bf16=c.bf16, chunk=c.chunk, workers=c.workers, cuda_graphs=c.graphs)
            for c in configs}
    sched = resolve_schedule(args.schedule, args.preset)
    out = {c: {} for c in configs}
    wanted = sorted({s.resolution for s in sched.stages})
    measured = sorted({int(v) for v in args.measure_res.split(",")}) if args.measure_res else wanted
    for r in measured:
        data = {c: _inputs(c.n, r, device) for c in configs}
        for c in list(configs):  # warm-up (allocator, kernel selection, graph captures) per shape
            try:
                capture = _time_call(nets[c], *data[c], r, 1, device)
            except Exception as exc:  # an experimental graph capture must not cost the other rows
                if not c.graphs:
                    raise
                print(f"  {c.label()} {r}px: CUDA graph capture FAILED, row dropped: {type(exc).__name__}: {exc}",
                      file=sys.stderr)
                configs.remove(c)
                nets.pop(c).graphs.clear()
                continue
            if c.graphs:
                print(f"  {c.label()} {r}px: warm-up with graph captures {capture:.2f} s", file=sys.stderr)
        best = {c: [float("inf"), float("inf")] for c in configs}
        for _ in range(args.reps):
            for c in configs:
                plain = _time_call(nets[c], *data[c], r, 0, device)
                guided = _time_call(nets[c], *data[c], r, args.iters, device)
                best[c][0] = min(best[c][0], plain)
                best[c][1] = min(best[c][1], (guided - plain) / args.iters)
        for c in configs:
            out[c][r] = {"plain": best[c][0], "guided": max(best[c][1], 0.0)}
            if nets[c].graphs is not None:
                nets[c].graphs.clear()  # free this resolution's graphs before the next
        print(f"  measured {r}px: " + ", ".join(f"{c.label()}: {out[c][r]['plain']:.2f}/{out[c][r]['guided']:.2f} s"
                                               for c in configs), file=sys.stderr)
    for c in set(out) - set(configs):
        del out[c]
    # Resolutions not measured: per-call time interpolated linearly in the number of patches.
    for c in configs:
        xs = [(r // PATCH) ** 2 for r in measured]
        for r in wanted:
            if r not in out[c]:
                n = (r // PATCH) ** 2
                out[c][r] = {k: float(np.interp(n, xs, [out[c][m][k] for m in measured])) for k in ("plain", "guided")}
    return out


def peak_memory_worker(args) -> float:
    """MiB above the loaded model for one guided call of ``--worker`` samples at the finest size."""
    device = torch.device(args.device)
    net = load_net(args.weights, device, args.linear_attn_from)
    if args.published:
        net = publication_net(published_architecture(net, device))
    net = SlicedDenoiser(net, bf16=args.bf16, chunk=args.chunk or None, workers=args.workers)
    r = max(s.resolution for s in resolve_schedule(args.schedule, args.preset).stages)
    x, shading = _inputs(args.worker, r, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        _time_call(net, x, shading, r, 1, device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    before = _status_mb("VmRSS")
    _time_call(net, x, shading, r, 1, device)
    return _status_mb("VmHWM") - before


def extrapolate(sched, per_call: dict, n: int) -> float:
    total = 0.0
    for run in sched.runs():
        r = run.stage.resolution
        guided = sum(run.stage.inner_iters(t) for t in run.timesteps if t <= run.guidance_start_t)
        total += len(run.timesteps) * per_call[r]["plain"] + guided * per_call[r]["guided"]
    return total / n


def end_to_end(args, n: int, bf16: bool, chunk, workers: int, graphs: bool = False, variant: bool = False) -> float:
    from mssfs.sampler.api import sample

    device = torch.device(args.device)
    net = load_net(args.weights, device, args.linear_attn_from if variant else None)
    img = np.load(os.path.join(os.path.dirname(__file__), "..", "src", "mssfs", "data", "stimuli", "star.npy"))
    t0 = time.perf_counter()
    sample(img, n=n, seed=0, preset=args.preset, schedule=args.schedule, model=net, device=device, bf16=bf16,
           chunk_patches=chunk, workers=workers, cuda_graphs=graphs)
    return (time.perf_counter() - t0) / n


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="paper")
    p.add_argument("--schedule", help="schedule file instead of --preset")
    p.add_argument("--samples-list", default="1,4,16", help="batch sizes (samples per batch)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--bf16", action="store_true", help="also measure every batch size under bf16 autocast")
    p.add_argument("--weights", help="'default' for the package weights or a path (default: random weights)")
    p.add_argument("--iters", type=int, default=1, help="guidance iterations timed per measurement")
    p.add_argument("--reps", type=int, default=2, help="timed repetitions (best is kept)")
    p.add_argument("--measure-res", help="measure only these resolutions (e.g. 64,112,160) and interpolate "
                   "the others linearly in the patch count (default: measure all)")
    p.add_argument("--end-to-end", action="store_true", help="also run the real pipeline at each batch size")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    p.add_argument("--chunk", type=int, default=128, help="patch slice size for the chunked rows (0: none)")
    p.add_argument("--workers", type=int, default=1,
                   help="K > 1 adds rows whose slices run on K worker threads, one intra-op thread each "
                   "(the other rows use torch's threads inside each call)")
    p.add_argument("--cuda-graphs", action="store_true",
                   help="add rows (whole calls, fp32) replayed from CUDA graphs")
    p.add_argument("--linear-attn-from", type=int, metavar="K",
                   help="also measure the best configuration (bf16 if --bf16, sliced, --workers) with a "
                        "random network with linear attention from level K on (0: every level, the "
                        "publication's architecture; mssfs train --linear-attn-from K)")
    p.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    p.add_argument("--published", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    from mssfs.model.unet import UNetConfig

    if args.linear_attn_from is not None and not 0 <= args.linear_attn_from <= len(UNetConfig().mults):
        p.error(f"--linear-attn-from must be between 0 and {len(UNetConfig().mults)} (the U-Net's levels), "
                f"got {args.linear_attn_from}")
    if args.worker:
        print(json.dumps({"peak_mb": peak_memory_worker(args)}))
        return 0
    sched = resolve_schedule(args.schedule, args.preset)
    calls, patches = sched.total_cost()
    sizes = sorted({1} | {int(v) for v in args.samples_list.split(",")})
    chunk = args.chunk or None
    baseline = Config(1, False, None, "published")
    configs = [baseline] + [Config(n, False, None, "ours") for n in sizes]
    configs += [Config(n, False, chunk, "ours") for n in sizes if chunk and n > 1]
    configs += [Config(n, True, chunk, "ours") for n in sizes] if args.bf16 else []
    if args.workers > 1 and chunk:
        configs += [Config(n, bf16, chunk, "ours", args.workers) for bf16 in ([False, True] if args.bf16 else [False])
                    for n in sizes]
    if args.linear_attn_from is not None:
        configs += [Config(n, args.bf16, chunk, variant_label(args.linear_attn_from), args.workers) for n in sizes]
    if args.cuda_graphs:
        if torch.device(args.device).type != "cuda":
            p.error("--cuda-graphs needs --device cuda")
        configs += [Config(n, False, None, "ours", 1, True) for n in sizes]
    per_call = measure(args, configs)
    rows = {}
    for c in configs:
        n, bf16, ch, kernels, workers, graphs = c
        variant = args.linear_attn_from is not None and kernels == variant_label(args.linear_attn_from)
        rows[c] = {"s": extrapolate(sched, per_call[c], n)}
        if not args.no_memory and not graphs:  # graph pools are not comparable with eager peaks
            cmd = [sys.executable, __file__, "--worker", str(n), "--preset", args.preset, "--device", args.device]
            cmd += (["--schedule", args.schedule] if args.schedule else []) + (["--bf16"] if bf16 else [])
            cmd += ["--chunk", str(ch or 0), "--workers", str(workers)]
            cmd += ["--weights", args.weights] if args.weights else []
            cmd += ["--published"] if kernels == "published" else []
            cmd += ["--linear-attn-from", str(args.linear_attn_from)] if variant else []
            res = subprocess.run(cmd, check=False, capture_output=True, text=True)
            if res.returncode == 0:
                rows[c]["mem"] = json.loads(res.stdout.strip().splitlines()[-1])["peak_mb"] / n
            else:  # keep the timings: a failed memory probe costs its column, not the run
                tail = (res.stderr.strip().splitlines() or ["no output"])[-1]
                print(f"peak-memory probe for {n} per batch failed (exit {res.returncode}): {tail}", file=sys.stderr)
        if args.end_to_end:
            rows[c]["measured"] = end_to_end(args, n, bf16, ch, workers, graphs, variant)
    base = rows[baseline]["s"]
    print(f"\npreset {sched.name}: {calls} denoiser calls and {patches:,} patch forwards per sample; "
          f"device {args.device}, {torch.get_num_threads()} threads, {'package' if args.weights else 'random'} weights; "
          f"measured resolutions: {args.measure_res or 'all'}\n")
    head = ("| samples per batch | precision | kernels | patches per forward | workers | CUDA graphs | s / sample (extrapolated) | samples / hour | vs publication loop | "
            "denoiser calls per sample | peak memory per sample (MiB) |")
    if args.end_to_end:
        head += " s / sample (measured end to end) |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for c in configs:
        n, bf16, ch, kernels, workers, graphs = c
        r = rows[c]
        label = f"{n}" + (" (publication loop: one seed at a time)" if c == baseline else "")
        line = (f"| {label} | {'bf16' if bf16 else 'fp32'} | {kernels} | {f'<= {ch}' if ch else 'all'} | {workers} | "
                f"{'yes' if graphs else 'no'} | {r['s']:.1f} | {3600 / r['s']:.1f} | "
                f"{base / r['s']:.2f}x | {calls / n:.0f} | {r.get('mem', float('nan')):.0f} |")
        if args.end_to_end:
            line += f" {r['measured']:.1f} |"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
