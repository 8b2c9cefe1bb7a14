"""``mssfs report DIR``: one self-contained report.html per sample folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import UsageError
from .analyze import add_clustering_options
from .options import add_quiet

HELP = "write report.html: an interactive, self-contained page of the samples, their modes and relighting"

DESCRIPTION = """\
Write report.html for the samples written by 'mssfs sample'. DIR is one sample folder (it
holds normals.npy) or a folder of such folders (each gets its own report.html).

The page needs no network and no server: open it in any browser. It shows the input,
the samples grouped by interpretation (the modes of 'mssfs analyze', with their
shares), each sample relit under a light you drag on a disc, its normal map and a 3D
view of its height mesh, the per-pixel spread map, the lights the samples imply and
their 2-D embedding. An existing report.html is replaced.

examples:
  mssfs report samples/circles
  mssfs report samples/circles --out circles.html
  mssfs report samples --modes 2
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "report", help=HELP, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("dir", metavar="DIR", help="a sample folder, or a folder of sample folders")
    p.add_argument("--out", metavar="FILE", help="where to write the page (one sample folder only; "
                   "default: DIR/report.html)")
    add_clustering_options(p)
    add_quiet(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from tqdm import tqdm

    from .. import analysis
    from ..analysis.html_report import write_folder_report

    if args.threshold is not None and args.threshold <= 0:
        raise UsageError(f"--threshold must be positive, got {args.threshold}")
    try:
        folders = analysis.find_sample_folders(args.dir)
    except analysis.SampleSetError as exc:
        raise UsageError(str(exc)) from None
    if args.out and len(folders) > 1:
        raise UsageError(f"--out names one file, but {args.dir} holds {len(folders)} sample folders; leave --out out")
    if args.out and Path(args.out).is_dir():
        raise UsageError(f"--out {args.out} is a folder; give a file name such as {Path(args.out) / 'report.html'}")
    if args.out and not Path(args.out).resolve().parent.is_dir():
        raise UsageError(f"--out {args.out}: the folder {Path(args.out).parent} does not exist")
    for folder in tqdm(folders, desc="report", unit="set", disable=args.quiet or len(folders) < 2):
        try:
            path = write_folder_report(folder, args.out, modes=args.modes, features=args.features,
                                       threshold=args.threshold)
        except analysis.SampleSetError as exc:
            raise UsageError(str(exc)) from None
        print(f"{folder}: -> {path}")
    return 0
