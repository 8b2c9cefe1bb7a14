"""The checks the release rules use, as modes of ``mssfs evaluate`` and ``mssfs analyze``.

* ``mssfs evaluate --compare A.json B.json``: :mod:`mssfs.evaluation.compare`;
* ``mssfs evaluate --diagnose``: :mod:`mssfs.evaluation.diagnose`;
* ``mssfs analyze DIR --seed-or-image``: :mod:`mssfs.analysis.seed_or_image`;
* ``mssfs analyze DIR --figure5 PNG``: :mod:`mssfs.analysis.figure5`.

Each ``add_*`` function adds the options of its mode to a sub-command's parser; each
``run_*`` function runs the mode and returns the exit code.
"""

from __future__ import annotations

import sys
from pathlib import Path

from . import UsageError

COMPARE_HELP = """\
compare two objects-suite runs image by image: for each image kind and scoring, both
mean errors, the mean difference B - A (± standard error), on how many images B is lower,
and the Wilcoxon signed-rank p. Make both runs with the same images, seeds, options and
thread count (guided samples are sensitive to float rounding)."""

DIAGNOSE_HELP = """\
diagnose the denoiser (--model) on foreground patches of --n-objects held-out objects (default
12 here): x0 error with and without its shading input at several noise levels, unguided
DDIM error and shading-fit residual, and, with --regression-model, the regression's"""


def add_evaluate_checks(p, mode_group) -> None:
    """``--compare``, ``--diagnose`` (in the mode group of ``mssfs evaluate``), ``--kind`` and
    ``--items``."""
    mode_group.add_argument("--compare", nargs=2, metavar=("A.json", "B.json"), help=COMPARE_HELP)
    mode_group.add_argument("--diagnose", action="store_true", help=DIAGNOSE_HELP)
    p.add_argument("--kind", choices=("objects", "reliefs"),
                   help="--compare: only this image kind (runs that differ in the other kind still pair)")
    p.add_argument("--items", default=":", metavar="START:STOP",
                   help="--compare: only these images of each kind, counted from 0 in the suite's order "
                   "(default all; e.g. 20:40 for the images a 40-object run adds to a 20-object one)")


def run_compare(args) -> int:
    """Print the paired comparison of ``args.compare`` (``--methods`` names B's method, or
    A's and B's as ``MA,MB``; default ``ours``)."""
    from ..evaluation.compare import compare_runs, comparison_table, load_run_items, parse_item_range

    names = [m.strip() for m in (args.methods or "ours").split(",") if m.strip()]
    if len(names) not in (1, 2):
        raise UsageError(f"--methods with --compare takes one method or two (A's,B's), got {args.methods!r}")
    method_a, method_b = names[0], names[-1]
    path_a, path_b = args.compare
    try:
        a = load_run_items(path_a, method_a, args.kind)
        b = load_run_items(path_b, method_b, args.kind)
        rows = compare_runs(a, b, parse_item_range(args.items))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    print(f"A = {path_a} ({method_a})\nB = {path_b} ({method_b})\n")
    print(comparison_table(rows))
    return 0


def run_diagnose(args) -> int:
    """Print :func:`mssfs.evaluation.diagnose.diagnose_denoiser` for ``--model`` (and
    ``--regression-model``) on ``--n-objects`` images (12 unless given)."""
    import mssfs

    from ..evaluation.diagnose import diagnose_denoiser

    n_images = 12 if args.n_objects is None else args.n_objects
    if n_images < 1:
        raise UsageError(f"--n-objects must be >= 1 with --diagnose, got {n_images}")
    try:
        model = mssfs.load_model(args.model)
        regression = mssfs.load_model(args.regression_model) if args.regression_model else None
    except (OSError, ValueError) as exc:
        raise UsageError(f"could not load the weights: {exc}") from exc
    print(f"{args.model or 'package weights'}: ", end="")
    print(diagnose_denoiser(model, regression, n_images, args.seed).report())
    return 0


def add_analyze_checks(p) -> None:
    """``--seed-or-image``, ``--size`` and ``--figure5`` of ``mssfs analyze``."""
    p.add_argument("--seed-or-image", action="store_true",
                   help="instead of analysing: check whether the samples follow the image or the seed. DIR "
                   "holds two or more sample folders from one 'mssfs sample' run (same seeds); prints the "
                   "mean angle between sample i of different images and between samples of one image, "
                   "and their ratio (well below 1: the samples are driven by the seed)")
    p.add_argument("--size", type=int, default=128, metavar="S",
                   help="--seed-or-image: compare the maps resized to S x S (default 128)")
    p.add_argument("--figure5", metavar="PNG",
                   help="after analysing, draw the publication's figure 5 into PNG: one row per sample "
                   "folder, the input and its samples grouped by mode")
    p.add_argument("--figure-samples", type=int, default=8, metavar="K",
                   help="--figure5: at most K samples per row (default 8)")


def run_seed_or_image(args) -> int:
    """Print :func:`mssfs.analysis.seed_or_image.seed_or_image` over the folders in ``args.dir``."""
    from .. import analysis
    from ..analysis.seed_or_image import seed_or_image

    if args.size < 16:
        raise UsageError(f"--size must be at least 16, got {args.size}")
    try:
        sets = [analysis.load_sample_set(f) for f in analysis.find_sample_folders(args.dir)]
        result = seed_or_image(sets, args.size)
    except (analysis.SampleSetError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    print(result.table())
    return 0


def check_figure5(args) -> None:
    """Refuse a bad ``--figure5`` before any analysis is written."""
    if args.figure5 is None:
        return
    out = Path(args.figure5)
    if out.suffix.lower() != ".png":
        raise UsageError(f"--figure5 must name a .png file, got {out}")
    if not out.parent.is_dir():
        raise UsageError(f"--figure5 {out}: folder {out.parent} does not exist")
    if args.figure_samples < 1:
        raise UsageError(f"--figure-samples must be >= 1, got {args.figure_samples}")


def draw_figure5(args, folders: list[Path], report_folders: list[Path]) -> None:
    """Draw figure 5 from the sample ``folders`` and their ``report_folders`` (report.json)."""
    from ..analysis.figure5 import figure5

    try:
        path = figure5(folders, Path(args.figure5), args.figure_samples, report_folders)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    print(f"wrote {path}", file=sys.stderr)
