"""Figure 5 of the publication from analysed sample folders (``mssfs analyze DIR --figure5 PNG``).

One row per sample folder: the input, then its samples grouped by interpretation (mode),
each framed in its mode's colour; the row title gives the number of modes and their shares
from the folder's ``report.json`` (written by ``mssfs analyze``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__all__ = ["MODE_COLOURS", "figure5"]

#: Frame colour of mode k (cycled).
MODE_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def _row(folder: Path, report_folder: Path):
    """``image (H, W)``, ``normals (N, H, W, 3)`` (memory-mapped), mode ``labels (N,)``, the
    sample order grouped by mode, and the report."""
    for path in (folder / "normals.npy", folder / "image.npy", report_folder / "report.json"):
        if not path.is_file():
            hint = " (run mssfs analyze first)" if path.name == "report.json" else ""
            raise ValueError(f"{path.parent}: no {path.name}{hint}")
    report = json.loads((report_folder / "report.json").read_text())
    labels = np.asarray(report["labels"])
    return np.load(folder / "image.npy"), np.load(folder / "normals.npy", mmap_mode="r"), labels, \
        np.argsort(labels, kind="stable"), report


def figure5(folders: list[Path], out: Path, max_samples: int = 8, report_folders: list[Path] | None = None) -> Path:
    """Draw one row per sample folder (input + up to ``max_samples`` samples) into the PNG ``out``.

    Each folder needs ``image.npy`` and ``normals.npy`` (as ``mssfs sample`` writes them);
    the ``report.json`` of ``mssfs analyze`` is read from the matching ``report_folders``
    entry (default: the sample folder itself). A missing file raises :class:`ValueError`
    before anything is drawn. Returns the path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .plots import normal_rgb, save_figure

    if max_samples < 1:
        raise ValueError(f"max_samples must be at least 1, got {max_samples}")
    reports = folders if report_folders is None else report_folders
    rows = [_row(Path(f), Path(r)) for f, r in zip(folders, reports, strict=True)]
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
            for s in ax.spines.values():
                s.set_visible(True)
                s.set_color(MODE_COLOURS[int(labels[i]) % len(MODE_COLOURS)])
                s.set_linewidth(3)
    return save_figure(fig, Path(out), dpi=110)
