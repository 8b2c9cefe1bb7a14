"""The guided sampler with an ideal bistable patch denoiser: what limits consistency?

Question: with a perfect bistable patch denoiser, does the sampler make whole samples
consistent with one light, i.e. does the circles bar depend on the sampler or on the
denoiser?
Answer: docs/results.md#the-sampler-with-an-ideal-denoiser; raw file
docs/results/oracle_sampler.json.

The release bar on circles (docs/results.md#release-bars: at least 80 % of samples globally
consistent with one light, both readings among 16 seeds) depends on two things: a
denoiser whose patches read the shading as a bump or as a dent, and a sampler (seams,
integrability, lighting consistency, V-cycle) that makes all patches of a sample agree.
This script takes the first out of the question: it runs the sampler with
:class:`mssfs.model.oracle.TwoReadingOracle`, the exact denoiser of a prior in which every patch is
either its true normals or their convex/concave flip with equal weight, on relief layouts
whose normals are known, and scores the samples as ``mssfs evaluate --suite stimuli`` does
(region readings fit one light: ``consistent``; which one: ``true`` / ``inverted``).

Items: a circles-like layout (four equal discs in a 2 x 2 grid, the bottom-right one a
dent, light from above: the geometry the publication describes for the circles stimulus) and
the stimuli suite's generated layouts (``mssfs.evaluation.items.stimulus_items``).

    python experiments/oracle_sampler.py --layouts 10 --samples 16 --out oracle.json

prints a markdown table per method (the chosen preset, ``paper`` and the ablations of
``mssfs evaluate``), each without the final refinement by the shading.  With no time spent on a network, the whole run takes minutes on a CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace

import numpy as np

from mssfs.analysis.layouts import BumpDentLayout, bump_dent_relief, generated_bump_dent_layout
from mssfs.core.integrate import normals_from_depth
from mssfs.core.render import render
from mssfs.data.shapes import HELDOUT_SEED_BASE
from mssfs.evaluation.items import LAYOUT_SEED_OFFSET
from mssfs.evaluation.methods import method_schedule
from mssfs.evaluation.metrics import angular_error, score_stimulus
from mssfs.model.oracle import TwoReadingOracle
from mssfs.sampler.api import sample
from mssfs.sampler.lighting import flip_normals

METHODS = ("fast", "paper", "no-lighting", "seams-only", "single-scale", "no-guidance")


def circles_like(size: int, slant_deg: float = 40.0) -> BumpDentLayout:
    """Four equal discs on a 2 x 2 grid (top-left, top-right, bottom-left bumps, bottom-right
    dent; the profile of :func:`generated_bump_dent_layout`), lit from above."""
    r = 0.18 * size
    signs = np.array([1, 1, 1, -1], np.int8)
    centres = [(0.28, 0.28), (0.28, 0.72), (0.72, 0.28), (0.72, 0.72)]  # (row, col) fractions
    height, regions = bump_dent_relief([(fy * size, fx * size, r) for fy, fx in centres], signs, size)
    light = np.array([0.0, np.sin(np.radians(slant_deg)), np.cos(np.radians(slant_deg))])
    mask = np.ones((size, size), bool)
    normals = normals_from_depth(height, mask)
    return BumpDentLayout(render(normals, light), normals, mask, regions, signs, light, height)


def items(size: int, layouts: int) -> list[tuple[str, BumpDentLayout]]:
    out = [("circles-like", circles_like(size))]
    for k in range(layouts):
        seed = HELDOUT_SEED_BASE + LAYOUT_SEED_OFFSET + k
        out.append((f"layout-{seed}", generated_bump_dent_layout(seed, size)))
    return out


def run_item(lay: BumpDentLayout, method: str, n: int, seed: int, weight_true: float) -> dict:
    size = lay.image.shape[0]
    start = time.perf_counter()
    # without the refinement by the shading: it fits shapes, not readings, and the oracle's
    # samples are already exact readings of the layout
    schedule = replace(method_schedule(method, "fast", finest=size), refine=False)
    res = sample(lay.image, n=n, seed=seed, schedule=schedule,
                 model=TwoReadingOracle(lay.normals, n, weight_true=weight_true), mask=lay.mask,
                 chunk_patches=None, workers=1)
    seconds = time.perf_counter() - start
    sc = score_stimulus(res.normals, lay.mask, lay.regions, lay.layout)
    flipped = flip_normals(lay.normals)
    nearer = [min(np.nanmean(angular_error(s, lay.normals, lay.mask)), np.nanmean(angular_error(s, flipped, lay.mask)))
              for s in res.normals]
    return {"consistent": sc.consistent, "true": sc.true, "inverted": sc.inverted, "n_modes": sc.n_modes,
            "both": bool(sc.true > 0 and sc.inverted > 0), "error_to_nearer_reading": float(np.mean(nearer)),
            "seconds": seconds}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated (default {','.join(METHODS)})")
    p.add_argument("--layouts", type=int, default=10, help="generated layouts besides the circles-like one (default 10)")
    p.add_argument("--samples", type=int, default=16, help="samples per item (default 16)")
    p.add_argument("--size", type=int, default=128, help="image size, a multiple of 16 (default 128)")
    p.add_argument("--seed", type=int, default=0, help="sampler seed (default 0)")
    p.add_argument("--weight-true", type=float, default=0.5,
                   help="prior weight of each patch's true reading (default 0.5: no preference)")
    p.add_argument("--out", help="write the per-item results as JSON here")
    a = p.parse_args(argv)
    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    rows, per_item = [], {}
    for method in methods:
        results = []
        for name, lay in items(a.size, a.layouts):
            r = run_item(lay, method, a.samples, a.seed, a.weight_true)
            per_item.setdefault(method, {})[name] = r
            results.append(r)
            print(f"{method:13s} {name:22s} consistent {r['consistent']:.2f} true {r['true']:.2f} "
                  f"inverted {r['inverted']:.2f} modes {r['n_modes']:2d} error {r['error_to_nearer_reading']:.1f}° "
                  f"{r['seconds']:.1f} s", file=sys.stderr, flush=True)
        circ = per_item[method]["circles-like"]
        rows.append(
            f"| {method} | {circ['consistent']:.0%} ({circ['true']:.0%} / {circ['inverted']:.0%}) | "
            f"{np.mean([r['consistent'] for r in results]):.0%} | {sum(r['both'] for r in results)}/{len(results)} | "
            f"{np.mean([r['n_modes'] for r in results]):.1f} | {np.mean([r['error_to_nearer_reading'] for r in results]):.1f}° | "
            f"{np.mean([r['seconds'] for r in results]):.1f} |"
        )
    print(f"\n{a.samples} samples per item, {a.size} px, seed {a.seed}, {a.layouts} generated layouts + circles-like, "
          f"prior weight of the true reading {a.weight_true}\n")
    print("| method | circles-like: consistent (true / inverted) | all items: consistent | both readings present | "
          "modes | error to the nearer reading | s / item |")
    print("|---|---|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    if a.out:
        with open(a.out, "w") as fh:
            json.dump({"settings": vars(a), "results": per_item}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
