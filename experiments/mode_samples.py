"""Sample sets of generated bump/dent layouts with known readings, kept for studying how

Question: which sample distance lets `mssfs analyze` group samples by their bump/dent
readings (the sign distance against the reading distance)?
Answer: docs/decisions/sign-distance.md; the agreement numbers in docs/analysis.md and
docs/results.md#generated-layouts.
`mssfs analyze` groups samples into interpretations (modes; docs/decisions/sign-distance.md).

`mssfs evaluate --suite stimuli` scores the samples and drops them; this keeps them.  For
each layout index ``k`` in ``--layouts START:STOP`` (the suite's layout ``k``: seed
``2**30 + 2**21 + k``) it draws ``--samples`` samples at ``--size`` pixels with the ``fast``
preset (or ``--schedule``), sample seed ``k``, and writes one ``.npz`` holding, per layout:
``normals_<k>`` (float16 ``(N, S, S, 3)``), ``image_<k>``, ``regions_<k>``, ``layout_<k>``
and ``readings_<k>`` (``(N, R)`` region readings, +1 bump, -1 dent, from the integrated
height: :func:`mssfs.analysis.regions.region_readings`).

``--score FILE...`` then prints, for each file and each distance of
:func:`mssfs.analysis.clustering.cluster_samples` (``signs``, ``readings``), the mean adjusted Rand
index between the modes and the partition of the samples by their region readings (as
``mssfs evaluate``'s "modes ~ readings") and the mean number of modes.

    OMP_NUM_THREADS=1 python experiments/mode_samples.py --layouts 0:10 --out eval/modes_0_10.npz --bf16
    python experiments/mode_samples.py --score eval/modes_0_10.npz eval/modes_10_20.npz
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def parse_range(text: str) -> range:
    try:
        start, stop = (int(x) for x in text.split(":"))
    except ValueError:
        raise SystemExit(f"--layouts must be START:STOP (two integers), got {text!r}") from None
    if not 0 <= start < stop:
        raise SystemExit(f"--layouts needs 0 <= START < STOP, got {text!r}")
    return range(start, stop)


def make(args) -> int:
    out = Path(args.out)
    if out.suffix != ".npz":
        raise SystemExit(f"--out must end in .npz, got {out}")
    if out.exists():
        raise SystemExit(f"{out} exists; remove it first")
    if not out.parent.is_dir():
        raise SystemExit(f"the folder of --out does not exist: {out.parent}")
    layouts = parse_range(args.layouts)

    from tqdm.auto import tqdm

    from mssfs.analysis.layouts import generated_bump_dent_layout
    from mssfs.analysis.regions import region_readings
    from mssfs.data.shapes import HELDOUT_SEED_BASE
    from mssfs.evaluation.items import LAYOUT_SEED_OFFSET
    from mssfs.evaluation.methods import method_schedule
    from mssfs.model.weights import load_model
    from mssfs.sampler.api import sample
    from mssfs.sampler.schedules import resolve_schedule

    sched = method_schedule("ours", resolve_schedule(args.schedule, "fast"), max_finest=args.size)
    model = load_model(args.model, "cpu")  # None: the package weights, loaded once
    arrays = {}
    for k in tqdm(layouts, unit="layout"):
        lay = generated_bump_dent_layout(HELDOUT_SEED_BASE + LAYOUT_SEED_OFFSET + k, args.size)
        res = sample(lay.image, n=args.samples, seed=k, schedule=sched, model=model, mask=lay.mask, bf16=args.bf16)
        arrays[f"normals_{k}"] = res.normals.astype(np.float16)
        arrays[f"image_{k}"] = lay.image.astype(np.float32)
        arrays[f"regions_{k}"] = lay.regions.astype(np.int16)
        arrays[f"layout_{k}"] = lay.layout
        arrays[f"readings_{k}"] = region_readings(res.normals, lay.regions, lay.mask).astype(np.int8)
    tmp = out.with_name(out.stem + ".partial.npz")  # written whole, then renamed: never half a file
    np.savez_compressed(tmp, **arrays)
    tmp.replace(out)
    print(f"wrote {out} ({len(layouts)} layouts)")
    return 0


def score_file(path) -> dict[str, tuple[float, float]]:
    """``{features: (mean ARI, mean number of modes)}`` over the layouts of one file."""
    from mssfs.analysis.clustering import cluster_samples
    from mssfs.evaluation.metrics import modes_match_readings

    z = np.load(path)
    keys = sorted(int(k.split("_", 1)[1]) for k in z.files if k.startswith("normals_"))
    if not keys:
        raise SystemExit(f"{path} holds no normals_<k> arrays: not written by this script")
    rows = {"signs": [], "readings": []}
    for k in keys:
        normals, readings = z[f"normals_{k}"].astype(np.float64), z[f"readings_{k}"]
        mask = np.ones(normals.shape[1:3], bool)
        for features, found in rows.items():
            c = cluster_samples(normals, mask, features=features)
            found.append((modes_match_readings(c.labels, readings), c.n_modes))
    return {features: tuple(float(x) for x in np.mean(found, 0)) for features, found in rows.items()}


def score(paths) -> int:
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise SystemExit(f"no such file: {', '.join(map(str, missing))}")
    print("| file | features | modes ~ readings (ARI) | modes |")
    print("|---|---|---:|---:|")
    for path in paths:
        for features, (ari, modes) in score_file(path).items():
            print(f"| {path} | {features} | {ari:.2f} | {modes:.1f} |")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--layouts", help="START:STOP, layout indices of the stimuli suite to sample")
    what.add_argument("--score", nargs="+", metavar="FILE", help="score sample sets written before")
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--schedule", help="schedule file instead of the fast preset")
    p.add_argument("--model", default=None, help="denoiser export (default: the package weights)")
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--out", help="the .npz file to write (with --layouts)")
    args = p.parse_args(argv)
    if args.score:
        return score(args.score)
    if not args.out:
        p.error("--layouts needs --out")
    return make(args)


if __name__ == "__main__":
    sys.exit(main())
