"""How the objects suite's scorings depend on the number of samples N.

Question: how do the objects suite's scorings (mean, best of N, fused) depend on the
number of samples N, and where does the fused error level off against the regression
baseline?
Answer: docs/archive/evaluation-log.md#scorings-against-the-number-of-samples-2026-11-27;
raw files docs/results/objects_fused_vs_samples_*.json (docs/results/README.md).

The fused result (renormalised mean of the samples) estimates the posterior mean of the
normals, which is what the regression baseline is trained to predict; with few samples
that estimate is noisy. This draws ``--samples`` samples per image of the objects suite
(the images, seeds, preset and resolution of ``mssfs evaluate --suite objects``) once and
scores the first k of them for every k in ``--prefixes``: because sample i depends only
on the image's seed and i (docs/sampling.md#python-api, Seeds), the first k of N samples
are the samples a run with N = k draws, so one run gives every row.

    OMP_NUM_THREADS=1 python experiments/fused_vs_samples.py --n-objects 20 --n-reliefs 10 \
        --samples 16 --bf16 --reference docs/results/objects_regression.json --out fvn.json

``--reference`` adds a method of another ``results.json`` (default ``regression``) as
the row to compare with, paired per image (mean difference, its standard error, on how
many images ours is lower, Wilcoxon p), and the fused error is fitted as ``a + b / k``
(``a``: the limit with endless samples). ``--from-json FILE`` re-prints a saved ``--out``
file without sampling.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from mssfs.core.fileio import atomic_path
from mssfs.evaluation.items import heldout_items
from mssfs.evaluation.methods import build_methods
from mssfs.evaluation.metrics import error_metrics, fuse_samples, paired_difference
from mssfs.evaluation.runner import RunSettings, _run_methods


def score_prefixes(samples: np.ndarray, gt: np.ndarray, mask: np.ndarray, prefixes) -> dict[int, dict]:
    """Mean angular error of mean-of-k, best-of-k and fused-k for each k (degrees); each
    sample is scored once (as :func:`mssfs.evaluation.metrics.score_samples` scores it)."""
    per = [error_metrics(x, gt, mask)["mean"] for x in samples[: max(prefixes)]]
    return {k: {"mean": float(np.mean(per[:k])), "best": float(min(per[:k])),
                "fused": error_metrics(fuse_samples(samples[:k], mask), gt, mask)["mean"]} for k in prefixes}


def fit_limit(ks, errors) -> tuple[float, float]:
    """Least-squares ``(a, b)`` of ``error ~ a + b / k``: ``a`` is the error with endless samples."""
    ks = np.asarray(ks, float)
    coef, *_ = np.linalg.lstsq(np.c_[np.ones_like(ks), 1 / ks], np.asarray(errors, float), rcond=None)
    return float(coef[0]), float(coef[1])


def print_table(rows: list[dict], prefixes, ref: dict | None, ref_name: str) -> None:
    """The markdown table (and the a + b / k fits) of per-image prefix scores ``rows``."""
    fits = []
    print("| images | k | mean of k | best of k | best - reference (± s.e.; lower on; p) | fused "
          "| fused - reference (± s.e.; lower on; p) |")
    print("|---|---:|---:|---:|---|---:|---|")
    for kind in dict.fromkeys(r["kind"] for r in rows):
        sel = [r for r in rows if r["kind"] == kind]
        if ref is not None:
            print(f"| {kind} | {ref_name} | | | | {np.mean([ref[r['item']] for r in sel]):.1f}° | |")
        for k in prefixes:
            m = {s: float(np.mean([r["k"][k][s] for r in sel])) for s in ("mean", "best", "fused")}
            cells = {}
            for s in ("best", "fused"):
                cells[s] = ""
                if ref is not None:
                    c = paired_difference([ref[r["item"]] for r in sel], [r["k"][k][s] for r in sel])
                    cells[s] = f"{c['diff']:+.2f}° ± {c['se']:.2f}; {c['b_lower']}/{c['n']}; {c['p']:.3f}"
            print(f"| {kind} | {k} | {m['mean']:.1f}° | {m['best']:.1f}° | {cells['best']} | {m['fused']:.1f}° "
                  f"| {cells['fused']} |")
        for low in dict.fromkeys([prefixes[0], 4] if 4 in prefixes else [prefixes[0]]):  # all k, and k >= 4
            ks = [k for k in prefixes if k >= low]
            if len(ks) >= 3:
                a, b = fit_limit(ks, [float(np.mean([r["k"][k]["fused"] for r in sel])) for k in ks])
                fits.append(f"{kind}: fused ~ a + b / k over k = {ks[0]}..{ks[-1]}: limit a = {a:.1f}°, b = {b:.1f}°")
    if fits:
        print("\n" + "\n".join(fits))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-objects", type=int, default=20)
    p.add_argument("--n-reliefs", type=int, default=10)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--samples", type=int, default=16, help="samples per image (the largest k)")
    p.add_argument("--prefixes", default="1,2,4,8,16", help="k values scored (each <= --samples)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--preset", default="fast")
    p.add_argument("--model", default=None, help="denoiser export (default: the package weights)")
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--reference", default=None, help="results.json of `mssfs evaluate` with the method to compare")
    p.add_argument("--reference-method", default="regression")
    p.add_argument("--out", default=None, help="write the per-image scores as JSON here")
    p.add_argument("--from-json", metavar="FILE", help="print the table of a saved --out file instead of sampling")
    args = p.parse_args(argv)
    prefixes = sorted({int(k) for k in args.prefixes.split(",")})
    if not prefixes or prefixes[0] < 1 or prefixes[-1] > args.samples:
        p.error(f"--prefixes must lie in 1..{args.samples} (--samples), got {args.prefixes}")
    if args.out and not Path(args.out).resolve().parent.is_dir():
        p.error(f"--out {args.out}: its folder does not exist")
    ref = None
    if args.reference:
        try:
            ref_items = json.loads(Path(args.reference).read_text())["items"][args.reference_method]
        except (OSError, ValueError, KeyError) as exc:
            p.error(f"{args.reference}: no per-image results for {args.reference_method!r} ({exc})")
        ref = {r["item"]: r["mean"]["mean"] for r in ref_items}

    if args.from_json:
        try:
            saved = json.loads(Path(args.from_json).read_text())
        except (OSError, ValueError) as exc:
            p.error(f"{args.from_json}: cannot read a saved run ({exc})")
        rows = [{**r, "k": {int(k): v for k, v in r["k"].items()}} for r in saved["items"]]
        if any(k not in r["k"] for r in rows for k in prefixes):
            p.error(f"{args.from_json}: has no scores for some of --prefixes {args.prefixes}")
        print_table(rows, prefixes, ref, args.reference_method)
        return 0

    from mssfs.core.device import resolve_device
    from mssfs.model.weights import load_model

    try:
        device = resolve_device(args.device)
    except ValueError as exc:
        p.error(str(exc))
    model = load_model(args.model, device)  # None: the package weights, loaded once
    items = heldout_items(args.n_objects, args.n_reliefs, args.size)
    if ref is not None and any(it.name not in ref for it in items):
        p.error(f"{args.reference}: scored other images than this run would (use the same --n-objects/--n-reliefs/--size)")
    methods, _ = build_methods(["ours"], args.preset, None, args.size)
    settings = RunSettings(args.samples, args.seed, str(device), args.bf16, model)
    rows, seconds = _run_methods(
        items, methods, settings, True,
        lambda it, normals, *_: {"item": it.name, "kind": it.kind,
                                 "k": score_prefixes(normals, it.normals, it.mask, prefixes)},
    )
    rows = rows["ours"]
    print(f"\nobjects suite, {args.preset} preset, {args.samples} samples per image, "
          f"{seconds['ours'] / len(items):.1f} s per image\n")
    print_table(rows, prefixes, ref, args.reference_method)
    if args.out:
        with atomic_path(args.out) as tmp:  # no half-written file if anything fails
            tmp.write_text(json.dumps({"args": vars(args), "seconds": seconds["ours"], "items": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
