"""Why the modes of a sample folder look the way they do (docs/analysis.md).

Question: why does `mssfs analyze` find the modes it finds for a sample folder (is the
curvature in the image's features or in the noisy ground; are two runs of the same seeds
the same samples)?
Answer: docs/analysis.md#clustering-into-interpretations-mssfsanalysiscluster_samples
(size independence, modes against readings); measurements in
docs/archive/evaluation-log.md#generated-bumpdent-layouts-10-layouts-every-method.

For one folder written by ``mssfs sample`` this prints what the clustering sees:

* the mean |convexity reading| (1/pixel) and the size-free curvature level (that value
  times the image side) that the flat fallback compares with ``FLAT_LEVEL``, at the
  folder's size and with the normals resized to ``--sizes``;
* the pairwise reading distances (minimum, median), and, with ``--regions R`` (the image's
  R largest features, found by :func:`mssfs.evaluation.items.segment_features`), their medians for
  pairs with the same and with different region readings, and the share of the absolute
  mean curvature that lies in those regions against the regions' share of the image;
* the modes at the default cut;
* with ``--against DIR2`` (a run of the same input and seeds), the per-pixel angle between
  the two runs' samples (median, 99th percentile, maximum).

    python experiments/clustering_diagnostics.py results/circles --regions 4 --sizes 128
    python experiments/clustering_diagnostics.py /tmp/rw2/circles --against /tmp/rw1/circles
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from mssfs.analysis.clustering import cluster_samples
from mssfs.analysis.curvature import FLAT_LEVEL, convexity_readings, curvature_level, mean_curvature
from mssfs.analysis.distances import reading_distances
from mssfs.analysis.regions import region_readings
from mssfs.analysis.sample_set import SampleSetError, load_sample_set
from mssfs.core.resize import resize_normals_array
from mssfs.evaluation.items import segment_features
from mssfs.evaluation.metrics import angular_error


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", help="a folder written by mssfs sample")
    p.add_argument("--regions", type=int, default=0, metavar="R", help="segment the R largest image features")
    p.add_argument("--sizes", default="", metavar="S1,S2", help="also measure with the normals resized to these sizes")
    p.add_argument("--against", metavar="DIR2", help="a second run of the same input: per-pixel angles between them")
    args = p.parse_args(argv)
    try:
        s = load_sample_set(args.folder)
        other = load_sample_set(args.against) if args.against else None
    except SampleSetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.regions and s.image is None:
        print(f"error: {args.folder} has no image.npy to segment regions from", file=sys.stderr)
        return 2
    n, mask = s.normals, s.mask
    h, w = n.shape[1:3]
    print(f"{args.folder}: {len(n)} samples, {h} x {w}; flat below a curvature level of {FLAT_LEVEL}")
    for size in [None] + [int(v) for v in args.sizes.split(",") if v]:
        nn, mm = (n, mask) if size is None else resize_normals_array(n, (size, size), mask)
        side = min(nn.shape[1:3])
        level = float(np.median(curvature_level(convexity_readings(nn, mm), nn.shape[1:3])))
        print(f"  at {side} px: mean |reading| {level / side:.5f} / pixel, level (x side) {level:.2f}, "
              f"{'flat' if level < FLAT_LEVEL else 'curved'}")
    dist = reading_distances(convexity_readings(n, mask))
    pairs = np.triu_indices(len(n), 1)
    if len(n) > 1:
        print(f"  reading distances: min {dist[pairs].min():.2f}, median {np.median(dist[pairs]):.2f}")
    if args.regions:
        regions = segment_features(s.image, args.regions)
        readings = region_readings(n, regions, mask)
        _, group = np.unique(readings, axis=0, return_inverse=True)
        same = group.ravel()[pairs[0]] == group.ravel()[pairs[1]]
        for name, sel in (("same region reading", same), ("different readings", ~same)):
            if sel.any():
                print(f"  median distance, {name}: {np.median(dist[pairs][sel]):.2f} ({sel.sum()} pairs)")
        curv = np.abs(mean_curvature(n, mask, max(1.0, 0.02 * min(h, w))))
        inside = curv[:, regions > 0].sum(1) / curv.reshape(len(n), -1).sum(1)
        print(f"  |curvature| in the {args.regions} regions: {inside.min():.2f}-{inside.max():.2f} of the total; "
              f"they cover {(regions > 0).mean():.2f} of the image")
    print(f"  modes at the default cut: {cluster_samples(n, mask).n_modes}")
    if other is not None:
        if other.normals.shape != n.shape:
            print(f"error: {args.against} holds {other.normals.shape}, {args.folder} {n.shape}", file=sys.stderr)
            return 2
        fg = mask & other.mask
        err = angular_error(n, other.normals, fg)[:, fg]
        print(f"  angle to {args.against}: median {np.median(err):.3f}, 99th percentile {np.percentile(err, 99):.2f}, "
              f"max {err.max():.2f} degrees")
    return 0


if __name__ == "__main__":
    sys.exit(main())
