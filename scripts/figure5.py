"""Figure 5 of the publication from `mssfs sample` + `mssfs analyze` outputs.

One row per stimulus: the input, then its samples grouped by interpretation (mode), each
sample framed in its mode's colour; the row title gives the modes and their shares from
the folder's report.json (`mssfs analyze`).

    mssfs sample stimulus:circles stimulus:rings stimulus:star stimulus:snake \
        --samples 8 --preset paper --out fig5
    mssfs analyze fig5
    python scripts/figure5.py fig5/circles fig5/rings fig5/star fig5/snake --out docs/figure5.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


def load_row(folder: Path):
    normals = np.load(folder / "normals.npy", mmap_mode="r")
    image = np.load(folder / "image.npy")
    report = json.loads((folder / "report.json").read_text())
    labels = np.asarray(report["labels"])
    order = np.argsort(labels, kind="stable")
    return image, normals, labels, order, report


def figure5(folders: list[Path], out: Path, max_samples: int = 8) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mssfs.analysis.plots import normal_rgb, save_figure

    rows = [load_row(f) for f in folders]
    cols = 1 + min(max_samples, max(len(r[1]) for r in rows))
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.5 * cols, 1.75 * len(rows)), squeeze=False)
    fig.subplots_adjust(left=0.03, right=0.99, bottom=0.01, top=0.94, wspace=0.06, hspace=0.3)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        for s in ax.spines.values():
            s.set_visible(False)
    for r, (image, normals, labels, order, report) in enumerate(rows):
        axes[r, 0].imshow(image, cmap="gray", vmin=0, vmax=1)
        shares = ", ".join(f"{m['share'] * 100:.0f}%" for m in report["modes"])
        axes[r, 0].set_ylabel(report["stem"], fontsize=10)
        axes[r, 1].text(0.0, 1.06, f"{report['n_modes']} mode(s): {shares}  (n = {report['n_samples']})",
                        fontsize=9, transform=axes[r, 1].transAxes, va="bottom")
        for c, i in enumerate(order[: cols - 1]):
            ax = axes[r, c + 1]
            ax.imshow(normal_rgb(np.asarray(normals[i])))
            colour = COLOURS[int(labels[i]) % len(COLOURS)]
            for s in ax.spines.values():
                s.set_visible(True)
                s.set_color(colour)
                s.set_linewidth(3)
    return save_figure(fig, out, dpi=110)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folders", nargs="+", type=Path, help="sample folders with report.json")
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    p.add_argument("--max-samples", type=int, default=8)
    args = p.parse_args(argv)
    missing = [str(f) for f in args.folders if not (f / "report.json").is_file()]
    if missing:
        p.error(f"no report.json in {', '.join(missing)} (run `mssfs analyze` first)")
    print(f"wrote {figure5(args.folders, args.out, args.max_samples)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
