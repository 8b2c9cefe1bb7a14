"""Sample sets of generated bump/dent layouts with known readings, kept for studying how
`mssfs analyze` groups samples into interpretations (modes).

`mssfs evaluate --suite stimuli` scores the samples and drops them; this keeps them.  For
each layout index ``k`` in ``--layouts START:STOP`` (the suite's layout ``k``: seed
``2**30 + 2**21 + k``) it draws ``--samples`` samples at 128 x 128 with the ``fast`` preset
(or ``--schedule``), sample seed ``k``, and writes one ``.npz`` holding, per layout:
``normals_<k>`` (float16 ``(N, S, S, 3)``), ``image_<k>``, ``regions_<k>``, ``layout_<k>``
and ``readings_<k>`` (``(N, R)`` region readings, +1 bump, -1 dent, from the integrated
height: :func:`mssfs.analysis.region_readings`).

    OMP_NUM_THREADS=1 python scripts/mode_samples.py --layouts 0:10 --out eval/modes_0_10.npz --bf16
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layouts", required=True, help="START:STOP, layout indices of the stimuli suite")
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--schedule", help="schedule file instead of the fast preset")
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--out", required=True, help="the .npz file to write")
    args = p.parse_args(argv)
    out = Path(args.out)
    if out.suffix != ".npz":
        raise SystemExit(f"--out must end in .npz, got {out}")
    if out.exists():
        raise SystemExit(f"{out} exists; remove it first")

    from tqdm.auto import tqdm

    from mssfs.analysis import generated_bump_dent_layout, region_readings
    from mssfs.evaluate import LAYOUT_SEED_OFFSET, method_schedule
    from mssfs.pipeline import sample
    from mssfs.schedules import resolve_schedule
    from mssfs.shapes import HELDOUT_SEED_BASE

    base = resolve_schedule(args.schedule, "fast")
    sched = method_schedule("ours", base, max_finest=args.size)
    arrays = {}
    for k in tqdm(parse_range(args.layouts), unit="layout"):
        lay = generated_bump_dent_layout(HELDOUT_SEED_BASE + LAYOUT_SEED_OFFSET + k, args.size)
        res = sample(lay.image, n=args.samples, seed=k, schedule=sched, mask=lay.mask, bf16=args.bf16)
        arrays[f"normals_{k}"] = res.normals.astype(np.float16)
        arrays[f"image_{k}"] = lay.image.astype(np.float32)
        arrays[f"regions_{k}"] = lay.regions.astype(np.int16)
        arrays[f"layout_{k}"] = lay.layout
        arrays[f"readings_{k}"] = region_readings(res.normals, lay.regions, lay.mask).astype(np.int8)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + ".partial.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(out)
    print(f"wrote {out} ({len(arrays) // 5} layouts)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
