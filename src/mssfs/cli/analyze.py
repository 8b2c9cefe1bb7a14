"""``mssfs analyze DIR``: modes, spread, lights and embedding of sampled normal maps."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..core.fileio import save_json, save_npy
from . import UsageError
from .checks import add_analyze_checks, check_figure5, draw_figure5, run_seed_or_image
from .options import add_quiet

HELP = "cluster samples into interpretations and report shares, spread, lights (report.png/json)"


DESCRIPTION = """\
Analyse the samples written by 'mssfs sample'. DIR is one sample folder (it holds
normals.npy) or a folder of such folders (each is analysed).

Samples are grouped into interpretations by where they are convex and where concave:
the sign of their mean curvature pooled over a 16x16 grid, compared where both samples
are curved. For each folder this writes, into the folder (or, with --out OUT, into
OUT/<sample folder name>/),
report.json (modes with shares, members, representative sample and mean light; spread
statistics; per-sample lights; embedding coordinates), report.png (input, mode
representatives, per-pixel angular spread, t-SNE/PCA embedding, lights on a disc) and
spread.npy (per-pixel spread in degrees). Existing reports are replaced.

--figure5 PNG also draws, after the analysis, one row per sample folder (the input and
its samples grouped by mode) into PNG. --seed-or-image replaces the analysis with a check
of the weights on the folders of one 'mssfs sample' run: do the samples follow the image
or the seed?

examples:
  mssfs analyze samples/circles
  mssfs analyze samples --modes 2
  mssfs analyze samples/circles --compare other_run/circles
  mssfs analyze samples --out reports
  mssfs analyze fig5 --figure5 figure5.png
  mssfs analyze results --seed-or-image
"""


def _modes(text: str):
    if text == "auto":
        return "auto"
    try:
        k = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'auto', got {text!r}") from None
    if k < 1:
        raise argparse.ArgumentTypeError(f"the number of modes must be at least 1, got {k}")
    return k


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "analyze", help=HELP, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("dir", metavar="DIR", help="a sample folder, or a folder of sample folders")
    add_clustering_options(p)
    p.add_argument(
        "--compare", metavar="DIR2",
        help="another sample folder (or folder of them, matched by name): add the Wasserstein distance",
    )
    p.add_argument("--no-plot", action="store_true", help="write report.json only")
    p.add_argument("--out", metavar="DIR", help="write into DIR/<sample folder name>/ instead of the sample folders")
    add_analyze_checks(p)
    add_quiet(p)
    p.set_defaults(func=run)


def add_clustering_options(p) -> None:
    """``--modes``, ``--threshold`` and ``--features`` (shared with ``mssfs report``)."""
    p.add_argument(
        "--modes", type=_modes, default="auto", metavar="K|auto",
        help="number of interpretations, or 'auto' to cut the clustering at --threshold (default: auto)",
    )
    p.add_argument(
        "--threshold", type=float, default=None,
        help="distance cut for --modes auto (default 0.2 for signs and readings, 15 degrees for normals)",
    )
    p.add_argument(
        "--features", choices=("auto", "signs", "readings", "normals"), default="auto",
        help="what samples are compared by: signs = the share of the curvature two samples share that they "
        "read with opposite signs (bump vs dent); readings = the L1 distance between their curvature "
        "readings (the default of mssfs 0.1.0); normals = downsampled normal maps; auto = signs unless the "
        "samples are flat, then normals (default: auto)",
    )


def _pairs(folders: list[Path], others: list[Path]) -> dict[Path, Path]:
    if len(folders) == 1 and len(others) == 1:
        return {folders[0]: others[0]}
    by_name = {p.name: p for p in others}
    pairs = {f: by_name[f.name] for f in folders if f.name in by_name}
    if not pairs:
        raise UsageError("--compare: no sample folder names in common with DIR")
    return pairs


def run(args) -> int:
    import numpy as np
    from tqdm import tqdm

    from .. import analysis

    if args.threshold is not None and args.threshold <= 0:
        raise UsageError(f"--threshold must be positive, got {args.threshold}")
    if args.seed_or_image:
        return run_seed_or_image(args)
    check_figure5(args)
    try:
        folders = analysis.find_sample_folders(args.dir)
        pairs = {}
        if args.compare:
            pairs = _pairs(folders, analysis.find_sample_folders(args.compare))
    except analysis.SampleSetError as exc:
        raise UsageError(str(exc)) from None
    if args.out is not None and Path(args.out).exists() and not Path(args.out).is_dir():
        raise UsageError(f"--out {args.out} exists and is not a folder")
    from ..analysis.sample_set import temporary_notes
    from ..core.outputs import OutputError, ensure_folder

    for note in temporary_notes(args.dir):
        print(f"note: {note}", file=sys.stderr)
    try:  # every report location writable before any work
        for folder in folders:
            ensure_folder(folder if args.out is None else Path(args.out) / folder.name)
    except OutputError as exc:
        raise UsageError(str(exc)) from None

    for folder in tqdm(folders, desc="analyze", unit="set", disable=len(folders) < 2 or args.quiet):
        try:
            samples = analysis.load_sample_set(folder)
        except analysis.SampleSetError as exc:
            raise UsageError(str(exc)) from None
        result = analysis.analyze(samples, modes=args.modes, features=args.features, threshold=args.threshold)
        report = result.to_json(samples)
        if folder in pairs:
            try:
                other = analysis.load_sample_set(pairs[folder])
            except analysis.SampleSetError as exc:
                raise UsageError(str(exc)) from None
            w = analysis.wasserstein(samples.normals, other.normals, samples.mask, other.mask)
            report["compare"] = {"folder": str(other.path), "n_samples": int(other.normals.shape[0]), "wasserstein": w}
            print(f"{folder}: Wasserstein distance to {other.path} = {w:.4f}")
        elif pairs:
            print(f"{folder}: no folder of the same name under --compare; no distance computed")
        dest = folder if args.out is None else Path(args.out) / folder.name
        dest.mkdir(parents=True, exist_ok=True)
        save_npy(dest / "spread.npy", result.spread.astype(np.float32))
        save_json(dest / "report.json", report)
        if not args.no_plot:
            from ..analysis.plots import report_figure

            report_figure(dest / "report.png", samples, result)
        shares = ", ".join(f"{100 * s:.0f}%" for s in result.clustering.shares)
        print(
            f"{folder}: {samples.normals.shape[0]} samples, {result.clustering.n_modes} mode(s) ({shares}), "
            f"mean spread {report['spread_deg']['mean']:.1f} deg, seam index {_mean(report['seam_index'])}, "
            f"one-region consistency {_mean(report['one_region_consistency'])} -> {dest / 'report.json'}"
        )
        for note in _notes(result.clustering, args):
            print(f"{folder}: {note}")
    if args.figure5:
        draw_figure5(args, folders, [f if args.out is None else Path(args.out) / f.name for f in folders])
    return 0


def _notes(c, args) -> list[str]:
    """What a reader of the mode count of :class:`mssfs.analysis.clustering.Clustering` ``c`` should
    know (docs/analysis.md)."""
    import numpy as np

    from .. import analysis

    notes = []
    level = float(np.median(c.levels))
    if c.features == "normals" and args.features == "auto":
        notes.append(
            f"samples essentially flat (median curvature level {level:.2f} < {analysis.FLAT_LEVEL}): "
            "grouped by their normal maps, not by bump/dent readings"
        )
    n = c.labels.size
    if args.modes == "auto" and n >= 3 and c.n_modes == n:
        off = c.distances[np.triu_indices(n, 1)]
        notes.append(
            f"every sample is its own mode: no interpretation recurs (closest pair {off.min():.2f} apart, "
            f"cut {c.threshold:g}; median curvature level {level:.2f})"
        )
    return notes


def _mean(entry: dict | None) -> str:
    """A per-sample report entry's mean for the summary line ("n/a" when undefined)."""
    return "n/a" if entry is None or entry["mean"] is None else f"{entry['mean']:.2f}"
