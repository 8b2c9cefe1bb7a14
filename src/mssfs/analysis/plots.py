"""Report figures (matplotlib, Agg backend, written atomically).

:func:`normal_rgb` shows a normal map as colour ((n + 1) / 2, background black);
:func:`report_figure` draws the analysis of one sample set into ``report.png``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..core.fileio import atomic_path

__all__ = ["normal_rgb", "report_figure", "save_figure"]


def normal_rgb(n: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` normals -> ``(H, W, 3)`` float RGB in [0, 1]; zero normals are black."""
    n = np.asarray(n, np.float64)
    fg = np.linalg.norm(n, axis=-1, keepdims=True) > 1e-6
    return np.where(fg, np.clip((n + 1) / 2, 0, 1), 0.0)


def save_figure(fig, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Save a matplotlib figure to ``path`` through a temporary file, then close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".") or "png")
    finally:
        plt.close(fig)
    return path


def report_figure(path, samples, analysis, max_modes: int = 6) -> Path:
    """Draw ``report.png``: input image, mode representatives with shares, spread map,
    2-D embedding coloured by mode and the implied lights on the unit disc.

    Args:
        samples: :class:`mssfs.analysis.sample_set.SampleSet`; analysis: :class:`mssfs.analysis.report.Analysis`.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = analysis.clustering
    shown = min(c.n_modes, max_modes)
    ncols = max(4, shown)
    fig, axes = plt.subplots(2, ncols, figsize=(3.2 * ncols, 6.6), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    colors = plt.get_cmap("tab10")

    for k in range(shown):
        ax = axes[0, k]
        rep = int(c.representatives[k])
        ax.imshow(normal_rgb(samples.normals[rep]), interpolation="nearest")
        ax.set_title(f"mode {k}: {100 * c.shares[k]:.0f}% (sample {rep})", fontsize=9, color=colors(k % 10))
    if c.n_modes > shown:
        axes[0, shown - 1].text(
            1.0, -0.08, f"+{c.n_modes - shown} smaller modes", transform=axes[0, shown - 1].transAxes,
            ha="right", va="top", fontsize=8,
        )

    ax = axes[1, 0]
    if samples.image is not None:
        ax.imshow(samples.image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(f"input: {samples.name}", fontsize=9)

    ax = axes[1, 1]
    im = ax.imshow(analysis.spread, cmap="magma", vmin=0, interpolation="nearest")
    ax.set_title(f"spread (deg), mean {np.nanmean(analysis.spread):.1f}", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)

    ax = axes[1, 2]
    ax.axis("on")
    pts = analysis.embedding
    for k in range(c.n_modes):
        sel = c.labels == k
        ax.scatter(pts[sel, 0], pts[sel, 1], s=18, color=colors(k % 10), label=f"mode {k}")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"embedding: {analysis.embedding_method}", fontsize=9)
    if c.n_modes <= 6:
        ax.legend(fontsize=7, loc="best")

    ax = axes[1, 3]
    ax.axis("on")
    ax.add_patch(plt.Circle((0, 0), 1, fill=False, color="0.5"))
    for k in range(c.n_modes):
        sel = c.labels == k
        ax.scatter(analysis.lights[sel, 0], analysis.lights[sel, 1], s=14, color=colors(k % 10))
    ax.set_xlim(-1.1, 1.1)
    ax.set_ylim(-1.1, 1.1)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title("lights (x, y)", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)
