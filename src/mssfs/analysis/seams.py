"""Seam index: how visible the sampler's patch grid is in a normal map.

The sampler denoises ``16 x 16`` patches of the last stage's square working image; where
neighbouring patches disagree, the normal map jumps along the patch-grid lines.  The
seam index compares the angle between neighbouring pixels across those lines with the
angle between neighbouring pixels elsewhere:

    seam index = mean angle(n_a, n_b) over pixel pairs (a, b) straddling a grid line
                 / mean angle(n_a, n_b) over all other neighbouring pairs,

pairs counted along rows and along columns, both pixels inside the mask.  A map with no
grid has about 1 (a smooth sphere gives about 0.94: jumps grow toward the rim, and the
lines sample the rim differently from the rest); a visible grid gives more.
"""

from __future__ import annotations

import numpy as np

__all__ = ["grid_lines", "output_grid", "seam_index"]


def grid_lines(length: int, period: float, origin: float = 0.0) -> np.ndarray:
    """Indices ``j`` in ``[0, length - 1)`` whose pixel pair ``(j, j + 1)`` straddles a grid
    line.  Lines lie at edge coordinates ``origin + k * period`` (pixel ``j`` spans
    ``[j, j + 1)``); a pair straddles a line when the line lies between the two pixel
    centres ``j + 0.5`` and ``j + 1.5``.  Returns sorted unique int indices."""
    if period <= 0:
        raise ValueError(f"the grid period must be > 0, got {period}")
    k0 = int(np.ceil((0.5 - origin) / period))
    k1 = int(np.floor((length - 0.5 - origin) / period))
    lines = origin + period * np.arange(k0, k1 + 1)
    j = np.floor(lines - 0.5).astype(int)
    return np.unique(j[(j >= 0) & (j < length - 1)])


def output_grid(shape: tuple[int, int], resolution: int, patch: int = 16) -> tuple[float, tuple[float, float]]:
    """``(period, origin)`` of the patch grid of a stage at ``resolution`` in a sampler
    output of ``shape`` ``(H, W)``: the input is padded to the square of side
    ``S = max(H, W)`` (centred) and sampled at ``resolution``, so the lines are
    ``patch * S / resolution`` output pixels apart, starting at the square's corner."""
    h, w = shape
    side = max(h, w)
    return patch * side / resolution, (-float((side - h) // 2), -float((side - w) // 2))


def _pair_angles(n: np.ndarray, axis: int) -> np.ndarray:
    """Angle (degrees) between neighbours along ``axis`` (-3 rows, -2 columns) of ``(..., H, W, 3)``."""
    a = np.take(n, np.arange(n.shape[axis] - 1), axis=axis)
    b = np.take(n, np.arange(1, n.shape[axis]), axis=axis)
    cos = (a * b).sum(-1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-12)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def seam_index(normals: np.ndarray, mask: np.ndarray | None = None, period: float = 16.0,
               origin: tuple[float, float] = (0.0, 0.0)):
    """Seam index (see the module docstring) of one or several normal maps.

    Args:
        normals: ``(H, W, 3)`` or ``(N, H, W, 3)``.
        mask: ``(H, W)`` foreground (default: non-zero normals of the first map).
        period: grid spacing in pixels of ``normals`` (16 at the last stage's resolution;
            ``16 * S / r`` for an output of the padded square side ``S`` sampled at ``r``).
        origin: ``(row, column)`` edge coordinate of one grid line in each direction
            (``(-top, -left)`` for an input padded by ``(top, left)``).
    Returns:
        float for one map, ``(N,)`` float64 for several; NaN where a map has no pair on
        a line or none elsewhere, or no angle at all off the lines.
    """
    n = np.asarray(normals, np.float64)
    single = n.ndim == 3
    n = n[None] if single else n
    if n.ndim != 4 or n.shape[-1] != 3:
        raise ValueError(f"expected normals of shape (H, W, 3) or (N, H, W, 3), got {np.shape(normals)}")
    h, w = n.shape[1:3]
    mask = np.linalg.norm(n[0], axis=-1) > 1e-6 if mask is None else np.asarray(mask, bool)
    if mask.shape != (h, w):
        raise ValueError(f"mask shape {mask.shape} differs from the normals' {(h, w)}")
    out = np.zeros((n.shape[0], 4))
    for axis, length, org in ((1, h, origin[0]), (2, w, origin[1])):
        ang = _pair_angles(n, axis)  # (N, h-1, w) or (N, h, w-1)
        both = np.take(mask, np.arange(length - 1), axis=axis - 1) & np.take(mask, np.arange(1, length), axis=axis - 1)
        line = np.zeros(length - 1, bool)
        line[grid_lines(length, period, org)] = True
        on = both & (line[:, None] if axis == 1 else line[None, :])
        off = both & ~on
        out[:, 0] += ang[:, on].sum(-1)
        out[:, 1] += on.sum()
        out[:, 2] += ang[:, off].sum(-1)
        out[:, 3] += off.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        on_mean = np.where(out[:, 1] > 0, out[:, 0] / np.maximum(out[:, 1], 1), np.nan)
        off_mean = np.where(out[:, 3] > 0, out[:, 2] / np.maximum(out[:, 3], 1), np.nan)
        idx = np.where(off_mean > 0, on_mean / off_mean, np.nan)
    return float(idx[0]) if single else idx
