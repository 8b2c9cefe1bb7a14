"""Time ``mssfs depth``'s integration: one Poisson factorisation per mask, reused for every
sample, against a fresh factorisation per sample (what each map cost before).

    OMP_NUM_THREADS=1 python benchmarks/depth_speed.py --size 540 --samples 8 --reps 3

The maps are bump/dent reliefs (random signs) over a disc mask; both ways give the same heights (checked here to 1e-6 pixels).
Prints a Markdown table (median of ``--reps`` runs each, interleaved).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np

from mssfs.analysis.mesh import depth_maps
from mssfs.core.frame import normalize
from mssfs.core.integrate import depth_from_normals, normals_from_depth


def test_maps(size: int, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` normal maps ``(n, size, size, 3)`` over a disc mask ``(size, size)`` of radius
    0.45 ``size``: six Gaussian bumps or dents each."""
    rng = np.random.default_rng(seed)
    r, c = np.mgrid[0:size, 0:size] / size
    mask = (r - 0.5) ** 2 + (c - 0.5) ** 2 < 0.45**2
    maps = []
    for _ in range(n):
        z = np.zeros((size, size))
        for _ in range(6):
            y0, x0, s = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.05, 0.15)
            z += rng.choice([-1, 1]) * 0.2 * size * np.exp(-((r - y0) ** 2 + (c - x0) ** 2) / (2 * s**2))
        maps.append(normalize(normals_from_depth(z, mask)) * mask[..., None])
    return np.stack(maps), mask


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=540)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    normals, mask = test_maps(args.size, args.samples)
    fresh_s, shared_s = [], []
    for _ in range(args.reps):
        t = time.perf_counter()
        fresh = np.stack([depth_from_normals(n, mask) for n in normals]).astype(np.float32)
        fresh_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        shared = depth_maps(normals, mask)
        shared_s.append(time.perf_counter() - t)
    assert np.abs(fresh - shared).max() < 1e-6, np.abs(fresh - shared).max()
    a, b = statistics.median(fresh_s), statistics.median(shared_s)
    print(f"{args.samples} maps of {args.size}x{args.size} ({int(mask.sum()):,} mask pixels), "
          f"Poisson integration, median of {args.reps}; {platform.processor() or platform.machine()}, "
          f"numpy {np.__version__}")
    print()
    print("| integration | total (s) | per map (s) | speed-up |")
    print("|---|---:|---:|---:|")
    print(f"| a factorisation per map | {a:.2f} | {a / args.samples:.2f} | 1.0x |")
    print(f"| one factorisation, reused | {b:.2f} | {b / args.samples:.2f} | {a / b:.1f}x |")


if __name__ == "__main__":
    main()
