"""How well the image's shading axis finds the light's tilt, up to sign.

Question: how far from the true light's tilt does
:func:`mssfs.sampler.guidance.image_tilt_axis` (the principal axis of the image gradient's
covariance, the axis that ``Stage.shading_tilt_from_image`` locks the shading guidance's
light to) lie on the held-out reliefs, per family?  Answer:
docs/decisions/light-tilt-from-image.md; raw file docs/results/tilt_axis_reliefs_0-39.json.

Only the images and their true lights are read; nothing is sampled.

    python experiments/tilt_axis_accuracy.py --n-reliefs 40 --out tilt_axis.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from mssfs.core.fileio import save_json
from mssfs.evaluation.items import heldout_items
from mssfs.sampler.guidance import image_tilt_axis


def axis_errors(items) -> list[dict]:
    """Per relief: the angle (degrees, in [0, 90]) between its shading axis and its light's tilt."""
    rows = []
    for it in items:
        axis = image_tilt_axis(torch.tensor(it.image, dtype=torch.float64)[None, None])[0].numpy()
        light = np.asarray(it.light, float)
        tilt = np.arctan2(light[1], light[0])
        angle = np.arctan2(axis[1], axis[0])
        error = abs((np.degrees(angle - tilt) + 90) % 180 - 90)
        lateral = float(np.hypot(light[0], light[1]) / np.linalg.norm(light))
        rows.append({"item": it.name, "family": it.family, "error_deg": float(error), "lateral": lateral})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-reliefs", type=int, default=40, help="held-out reliefs 0..K-1 (default 40)")
    p.add_argument("--first", type=int, default=0, help="first held-out relief (default 0)")
    p.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    p.add_argument("--out", type=Path, help="write the per-relief errors and the summary as JSON")
    args = p.parse_args(argv)
    if args.n_reliefs < 1:
        p.error("--n-reliefs must be at least 1")
    if args.out is not None and not args.out.resolve().parent.is_dir():
        p.error(f"--out {args.out}: its folder does not exist")
    rows = axis_errors(heldout_items(0, args.n_reliefs, args.size, args.first))
    errors = np.array([r["error_deg"] for r in rows])
    summary = {"reliefs": len(rows), "median_deg": float(np.median(errors)), "mean_deg": float(errors.mean()),
               "by_family": {f: float(np.median([r["error_deg"] for r in rows if r["family"] == f]))
                             for f in sorted({r["family"] for r in rows})}}
    print("| family | reliefs | median error |\n|---|---:|---:|")
    for fam, med in summary["by_family"].items():
        print(f"| {fam} | {sum(r['family'] == fam for r in rows)} | {med:.1f}° |")
    print(f"| all | {len(rows)} | {summary['median_deg']:.1f}° |")
    if args.out is not None:
        save_json(args.out, {"command": "python experiments/tilt_axis_accuracy.py " + " ".join(argv or sys.argv[1:]),
                             "summary": summary, "items": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
