"""Is candidate B better than A on the objects suite? A paired, per-image comparison.

Two ``mssfs evaluate --suite objects`` runs with the same images and seeds (same
``--n-objects/--n-reliefs/--seed/--samples/--size``) but different ``--model`` give each
image's mean angular error under both weights. Averages over 30 images differ by a
degree or so from run to run; pairing the images removes the variation *between* images
and leaves the one between the weights. For every image kind and scoring (mean of
samples, best of N, fused) it prints both means, the mean paired difference B - A with
its standard error, on how many images B is lower, and the two-sided Wilcoxon
signed-rank p-value.

Make both runs with the same code, thread count (``OMP_NUM_THREADS``) and options: guided
samples are sensitive to float rounding, so the same weights at 1 and at 2 threads give
different samples (single images moved by up to 7 degrees in a check on 2026-11-27;
docs/training.md#choosing-weights).

    python scripts/compare_evaluations.py docs/results/objects_ours.json eval/candidate/results.json

``--method-a`` compares B's method against another method of A, e.g. the sampler against
the regression baseline (a method with one output per image, N = 1, is compared under
each of B's scorings with its single result)::

    python scripts/compare_evaluations.py --method-a regression docs/results/objects_baselines.json \
        docs/results/objects_release.json

``--items START:STOP`` compares only those images of each kind, counted from 0 in the
suite's order (Python slice), e.g. the 20 objects of a 40-object run that a 20-object run
does not have: ``--items 20:40``. ``--kind objects`` (or ``reliefs``) compares that kind
only, so runs that differ in the other kind's images can still be paired.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from mssfs.evaluation.metrics import paired_difference

SCORINGS = ("mean", "best", "fused")


def load_items(path: str, method: str) -> list[dict]:
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"{path}: cannot read an evaluation results.json ({exc})") from exc
    items = data.get("items", {}).get(method)
    if not items:
        raise SystemExit(f"{path}: no per-image results for method {method!r}")
    return items


def parse_items(spec: str) -> slice:
    """``START:STOP`` (either may be empty) as a slice; errors name the option."""
    try:
        start, stop = spec.split(":")
        return slice(int(start) if start.strip() else None, int(stop) if stop.strip() else None)
    except ValueError:
        raise SystemExit(f"--items {spec!r}: expected START:STOP, e.g. 20:40") from None


def compare(a: list[dict], b: list[dict], items: slice = slice(None)) -> list[dict]:
    """One row per (kind, scoring) over the images both runs scored, in A's order; with
    ``items``, only that slice of each kind's images."""
    ids_a, ids_b = [x["item"] for x in a], [x["item"] for x in b]
    if ids_a != ids_b:
        raise SystemExit("the two runs scored different images (or in another order); "
                         "use the same --n-objects/--n-reliefs/--seed/--size for both")
    keep = {k: {x["item"] for x in [y for y in a if y["kind"] == k][items]} for k in {x["kind"] for x in a}}
    a = [x for x in a if x["item"] in keep[x["kind"]]]
    b = [y for y in b if y["item"] in keep[y["kind"]]]
    rows = []
    for kind in dict.fromkeys(x["kind"] for x in a):
        for sc in SCORINGS:
            pairs = [(x[sc if x.get("n", 1) > 1 else "mean"]["mean"], y[sc]["mean"]) for x, y in zip(a, b)
                     if x["kind"] == kind and (sc in x or x.get("n", 1) == 1) and sc in y]
            if not pairs:
                continue
            va, vb = np.array(pairs).T
            rows.append({"kind": kind, "scoring": sc, **paired_difference(va, vb, min_n_for_p=6)})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", help="results.json of the reference run (A)")
    p.add_argument("b", help="results.json of the candidate run (B)")
    p.add_argument("--method", default="ours", help="method whose results are compared (default ours)")
    p.add_argument("--method-a", help="A's method, when it is not --method (e.g. regression)")
    p.add_argument("--items", default=":", help="START:STOP, only those images of each kind (default all)")
    p.add_argument("--kind", help="compare only images of this kind (objects, reliefs)")
    args = p.parse_args(argv)
    method_a = args.method_a or args.method
    a, b = load_items(args.a, method_a), load_items(args.b, args.method)
    if args.kind:
        a, b = ([x for x in run if x["kind"] == args.kind] for run in (a, b))
        if not a or not b:
            raise SystemExit(f"no {args.kind!r} images in {args.a if not a else args.b}")
    rows = compare(a, b, parse_items(args.items))
    print(f"A = {args.a} ({method_a})\nB = {args.b} ({args.method})\n")
    print("| images | scoring | n | A mean err. | B mean err. | B - A (± s.e.) | B lower on | Wilcoxon p |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['kind']} | {r['scoring']} | {r['n']} | {r['a']:.1f}° | {r['b']:.1f}° | "
              f"{r['diff']:+.2f}° ± {r['se']:.2f} | {r['b_lower']}/{r['n']} | {r['p']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
