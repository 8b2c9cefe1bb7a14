"""What the guidance strength does to samples of one stimulus: seams, tilt, consistency.

Question: what does the guidance strength (step size, seam weight, inner iterations,
shading guidance) do to the seams, tilt, integrability and consistency of the samples?
Answer: docs/decisions/seam-weight.md and docs/decisions/shading-guidance.md; raw files
docs/results/guidance_strength_circles.json and docs/results/guidance_strength_shading.json.

Guidance removes seams between patches, and a flat field is the easiest seam-free one, so
a stronger guidance step can buy seamless samples with flatness. This draws ``--samples``
samples of a bundled stimulus (at ``--size``, as the stimuli suite resizes it) under the
base preset and under each ``--variant``, all with the same seeds, and prints per variant:
the mean seam angle of every stage's output and of the final output (docs/method.md's seam
loss in degrees, on the 16-pixel grid of the stage; the output resized to the finest
fused stage's resolution first), the mean tilt of the output normals
(angle to the view direction), their integrability (mean absolute discrete curl of the
slopes over the mean slope magnitude), how well one light explains the image (the root of
:func:`mssfs.sampler.guidance.shading_loss`: relative residual of the best single light), the
per-pixel spread of the samples and, for circles, the
share of samples consistent with one light (as ``mssfs evaluate --suite stimuli``).

    OMP_NUM_THREADS=1 python experiments/guidance_strength.py --samples 8 --bf16 \\
        --variant "lr*=2" --variant "lr*=4" --variant "seam_weight=2" \\
        --variant "inner_iters_high=10,inner_iters_low=3" --out guidance.json

A variant is ``field=value`` (set) or ``field*=factor`` (scale) for any :class:`Stage`
field, comma-separated, applied to every stage of the base schedule; ``--base`` takes a
preset name or a schedule file.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import torch

import mssfs
from mssfs.core.fileio import atomic_path
from mssfs.core.frame import integrability_residual, normals_to_slopes
from mssfs.core.resize import resize_normals_tensor
from mssfs.evaluation.items import stimulus_items
from mssfs.evaluation.metrics import score_stimulus
from mssfs.sampler.guidance import seam_loss, shading_loss
from mssfs.sampler.schedules import Schedule, Stage, resolve_schedule

STAGE_FIELDS = tuple(f.name for f in fields(Stage))


def apply_variant(base: Schedule, spec: str) -> Schedule:
    """``base`` with ``spec`` (``field=value`` / ``field*=factor``, comma-separated) applied
    to every stage; errors name the offending part."""
    stages = list(base.stages)
    for part in filter(None, (p.strip() for p in spec.split(","))):
        scale = "*=" in part
        key, _, value = part.partition("*=" if scale else "=")
        key = key.strip()
        if key not in STAGE_FIELDS or not value:
            raise ValueError(f"variant {spec!r}: {part!r} is not field=value or field*=factor "
                             f"with a stage field ({', '.join(STAGE_FIELDS)})")
        try:
            v = float(value)
        except ValueError:
            raise ValueError(f"variant {spec!r}: {value!r} is not a number") from None
        new = []
        for s in stages:
            old = getattr(s, key)
            x = old * v if scale else v
            if isinstance(old, bool):
                x = bool(x)
            elif isinstance(old, int):
                if x != int(x):
                    raise ValueError(f"variant {spec!r}: {key} must be a whole number, got {x}")
                x = int(x)
            new.append(replace(s, **{key: x}))
        stages = new
    return replace(base, name=spec, stages=tuple(stages))


def seam_degrees(normals: np.ndarray, size: int | None = None) -> float:
    """Mean seam angle (degrees) of square ``(N, S, S, 3)`` normals on the 16-pixel grid,
    averaged over the N samples; with ``size``, resized to ``size x size`` first (the
    resolution whose patch grid the seams lie on)."""
    x = torch.from_numpy(np.ascontiguousarray(normals)).permute(0, 3, 1, 2).float()
    if size is not None:
        x = resize_normals_tensor(x, size)
    return float(seam_loss(x).mean()) * 180 / np.pi


def curl(normals: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Mean absolute discrete curl of ``(N, H, W, 3)`` normals' slopes (clamped to 10) inside
    ``mask``, and the same divided by the mean slope magnitude (flat fields have small curl
    for want of slope; the ratio does not reward flatness)."""
    p, q = normals_to_slopes(normals.astype(np.float64), clamp=10.0)
    m = mask[:-1, :-1] & mask[:-1, 1:] & mask[1:, :-1] & mask[1:, 1:]
    c = np.abs(integrability_residual(p, q, mask))[:, m].mean()
    return float(c), float(c / max(np.hypot(p, q)[:, mask].mean(), 1e-12))


def measure(schedule: Schedule, item, samples: int, seed: int = 0, model=None, bf16: bool = False) -> dict:
    """Samples of ``item`` (an :class:`mssfs.evaluation.items.StimulusItem`) under ``schedule``, scored."""
    start = time.perf_counter()
    res = mssfs.sample(item.image, n=samples, seed=seed, schedule=schedule, model=model, bf16=bf16,
                       mask=item.mask)
    wall = time.perf_counter() - start
    scores = score_stimulus(res.normals, item.mask, item.regions, item.layout)
    tilt = np.degrees(np.arccos(np.clip(res.normals[..., 2][:, item.mask], -1, 1)))
    abs_curl, rel_curl = curl(res.normals, item.mask)
    x = torch.from_numpy(res.normals).permute(0, 3, 1, 2).double()
    img = torch.from_numpy(np.asarray(item.image, np.float64))[None, None].expand(len(x), 1, -1, -1)
    resid = shading_loss(x, img, torch.from_numpy(item.mask)).mean().sqrt()
    return {
        "variant": schedule.name,
        "denoiser_calls_per_sample": schedule.total_cost()[0],
        "seconds": wall,
        "seam_stages": [seam_degrees(st) for st in res.stages],
        "stage_resolutions": [s.resolution for s in schedule.stages],
        "seam_output": seam_degrees(res.normals, schedule.finest),  # the fused stages' grid
        "tilt": float(tilt.mean()),
        "curl": abs_curl,
        "curl_per_slope": rel_curl,
        "shading_residual": float(resid),
        "spread": scores.spread,
        "consistent": scores.consistent,
        "true": scores.true,
        "inverted": scores.inverted,
    }


def print_table(rows: list[dict]) -> None:
    pct = lambda v: "—" if v is None else f"{100 * v:.0f} %"
    res = rows[0]["stage_resolutions"]
    print("| variant | calls / sample | " + " | ".join(f"seam, stage {i + 1} ({r})" for i, r in enumerate(res))
          + " | seam, output | tilt | curl / slope | shading residual | spread | consistent (true / inverted) | s |")
    print("|---|---:|" + "---:|" * len(res) + "---:|---:|---:|---:|---:|---|---:|")
    for r in rows:
        seams = " | ".join(f"{v:.1f}°" for v in r["seam_stages"])
        cons = f"{pct(r['consistent'])} ({pct(r['true'])} / {pct(r['inverted'])})"
        print(f"| {r['variant']} | {r['denoiser_calls_per_sample']} | {seams} | {r['seam_output']:.1f}° | "
              f"{r['tilt']:.1f}° | {r['curl_per_slope']:.3f} | {r['shading_residual']:.2f} | {r['spread']:.1f}° | {cons} | {r['seconds']:.0f} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stimulus", default="circles", help="bundled stimulus (default circles)")
    ap.add_argument("--size", type=int, default=128, help="stimulus size in pixels (default 128, as the suite)")
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--base", default="fast", help="preset name or schedule file (default fast)")
    ap.add_argument("--variant", action="append", default=[], help="field=value / field*=factor, comma-separated")
    ap.add_argument("--model", default=None, help="weights folder (default: the package weights)")
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--out", type=Path, help="write the rows as JSON")
    args = ap.parse_args(argv)
    try:
        base = resolve_schedule(args.base if Path(args.base).suffix else None, args.base)
        variants = [base] + [apply_variant(base, v) for v in args.variant]
        item = stimulus_items(args.size, 0, [args.stimulus])[0]
    except ValueError as exc:
        print(f"guidance_strength.py: error: {exc}", file=sys.stderr)
        return 2
    if args.out is not None and not args.out.parent.is_dir():
        print(f"guidance_strength.py: error: {args.out.parent}: no such folder", file=sys.stderr)
        return 2
    model = mssfs.load_model(args.model) if args.model else None
    rows = []
    for sched in variants:
        rows.append(measure(sched, item, args.samples, args.seed, model, args.bf16))
        print(f"{sched.name}: done in {rows[-1]['seconds']:.0f} s", file=sys.stderr)
    print_table(rows)
    if args.out is not None:
        with atomic_path(args.out) as tmp:
            Path(tmp).write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
