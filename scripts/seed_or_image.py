"""Do the samples follow the image or the seed?  A check of the weights on sample folders.

``mssfs sample`` draws sample ``i`` of every input from the same seed.  A model that reads
shading gives different images different shapes, so sample ``i`` of one stimulus should
differ from sample ``i`` of another at least as much as two seeds of one stimulus differ.
A model that mostly ignores its shading input turns the seed's noise into nearly the same
map whatever the image.  For two or more folders written in one run (same ``--seed`` and
``--samples``) this prints the mean per-pixel angle (degrees; maps resized to
``--size`` x ``--size``, compared where both are foreground):

* *same seed, different images*: sample ``i`` of folder A against sample ``i`` of folder B;
* *same image, different seeds*: sample ``i`` against sample ``j`` of one folder;

and their ratio.  A ratio well below 1 says the samples are driven by the seed, not the
image.

    python scripts/seed_or_image.py results/circles results/rings results/star results/snake
"""

from __future__ import annotations

import argparse
import itertools
import sys

import numpy as np

from mssfs.analysis.sample_set import SampleSetError, load_sample_set
from mssfs.core.resize import resize_normals_array
from mssfs.evaluation.metrics import angular_error


def mean_angle(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Mean angle (degrees) between two ``(H, W, 3)`` maps over ``mask``."""
    return float(np.nanmean(angular_error(a, b, mask)))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folders", nargs="+", help="two or more folders written by one mssfs sample run")
    p.add_argument("--size", type=int, default=128, help="compare the maps resized to SIZE x SIZE (default 128)")
    args = p.parse_args(argv)
    if len(args.folders) < 2:
        print("error: give at least two sample folders (different images, same seeds)", file=sys.stderr)
        return 2
    try:
        sets = [load_sample_set(f) for f in args.folders]
    except SampleSetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    seeds = [s.meta.get("seeds") for s in sets]
    if any(sd is not None for sd in seeds) and any(sd != seeds[0] for sd in seeds):
        print("error: the folders were sampled with different seeds; rerun them in one mssfs sample call",
              file=sys.stderr)
        return 2
    n = min(len(s.normals) for s in sets)
    if n < 2:
        print("error: each folder needs at least two samples", file=sys.stderr)
        return 2
    size = (args.size, args.size)
    maps, masks = zip(*(resize_normals_array(s.normals[:n], size, s.mask) for s in sets))
    across = [
        mean_angle(maps[a][i], maps[b][i], masks[a] & masks[b])
        for a, b in itertools.combinations(range(len(sets)), 2)
        for i in range(n)
    ]
    within = [
        mean_angle(maps[a][i], maps[a][j], masks[a])
        for a in range(len(sets))
        for i, j in itertools.combinations(range(n), 2)
    ]
    print(f"{len(sets)} folders, {n} samples each, compared at {args.size} x {args.size}")
    print("| pairs | count | mean angle (deg) | min | max |")
    print("|---|---:|---:|---:|---:|")
    for name, v in (("same seed, different images", across), ("same image, different seeds", within)):
        print(f"| {name} | {len(v)} | {np.mean(v):.2f} | {min(v):.2f} | {max(v):.2f} |")
    print(f"ratio (images / seeds): {np.mean(across) / max(np.mean(within), 1e-12):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
