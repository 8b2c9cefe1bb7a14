"""The ablation figure: one row per method, same seeds in every column.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["FIGURE_METHODS", "ablation_figure"]


#: Rows of the ablation figure, in the order of the publication's introductory figure.
FIGURE_METHODS = ("no-guidance", "single-scale", "seams-only", "no-lighting", "ours")


def ablation_figure(
    path, image: np.ndarray, rows: dict[str, np.ndarray], title: str = "", column_titles: list[str] | None = None
) -> Path:
    """Draw the input and one row of samples per method (normal-map colours) to ``path``.

    Args:
        image: ``(H, W)`` input.
        rows: method name -> ``(N, H, W, 3)`` samples (same N for all).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..analysis.plots import normal_rgb, save_figure

    n = max(len(v) for v in rows.values())
    fig = plt.figure(figsize=(1.8 * n + 3.4, 1.8 * len(rows) + 0.6))
    grid = fig.add_gridspec(len(rows), n + 1, width_ratios=[1.6] + [1] * n, wspace=0.05, hspace=0.08)
    ax = fig.add_subplot(grid[:, 0])
    ax.imshow(image, cmap="gray", vmin=0, vmax=1)
    ax.set_title("input", fontsize=11)
    ax.axis("off")
    for r, (name, samples) in enumerate(rows.items()):
        for c in range(n):
            ax = fig.add_subplot(grid[r, c + 1])
            ax.set_xticks([])
            ax.set_yticks([])
            for sp in ax.spines.values():
                sp.set_visible(False)
            if c < len(samples):
                ax.imshow(normal_rgb(samples[c]), interpolation="nearest")
            if c == 0:
                ax.set_ylabel(name, fontsize=11)
            if r == 0 and column_titles is not None and c < len(column_titles):
                ax.set_title(column_titles[c], fontsize=10)
    if title:
        fig.suptitle(title, fontsize=11)
    return save_figure(fig, path, dpi=90)
