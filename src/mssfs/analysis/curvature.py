"""Mean curvature of normal maps and the coarse convexity readings that summarise a sample.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["FLAT_LEVEL", "convexity_readings", "curvature_level", "mean_curvature"]


#: Default cut of the sign and reading distances that separates interpretations.
READING_THRESHOLD = 0.2


#: Median :func:`curvature_level` (mean |reading| x smaller image side, dimensionless)
#: below which samples count as essentially flat.
FLAT_LEVEL = 0.25


def _smooth_masked(x: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    """Normalised Gaussian smoothing of ``(..., H, W)`` inside ``mask`` (no bleeding)."""
    if sigma <= 0:
        return x
    axes_sigma = (0,) * (x.ndim - 2) + (sigma, sigma)
    m = mask.astype(np.float64)
    num = ndimage.gaussian_filter(x * m, axes_sigma, mode="nearest")
    den = ndimage.gaussian_filter(np.broadcast_to(m, x.shape), axes_sigma, mode="nearest")
    return np.where(mask, num / np.maximum(den, 1e-8), 0.0)


def mean_curvature(normals: np.ndarray, mask: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """Mean curvature ``H = (d nx/dx + d ny/dy) / 2`` (1/pixels; y up), positive on bumps.

    Args:
        normals: ``(..., H, W, 3)``.
        mask: ``(H, W)`` foreground; the result is 0 outside its one-pixel erosion.
        sigma: Gaussian smoothing (pixels) of the normals first, inside the mask.
    Returns:
        ``(..., H, W)`` float64.
    """
    n = np.asarray(normals, np.float64)
    mask = np.asarray(mask, bool)
    nx = _smooth_masked(n[..., 0], mask, sigma)
    ny = _smooth_masked(n[..., 1], mask, sigma)
    curv = 0.5 * (np.gradient(nx, axis=-1) - np.gradient(ny, axis=-2))  # rows grow downward
    inner = ndimage.binary_erosion(mask, iterations=1, border_value=1)
    return np.where(inner, curv, 0.0)


def convexity_readings(normals: np.ndarray, mask: np.ndarray, grid: int = 16, sigma: float | None = None):
    """Per-cell convexity readings, ``(N, grid * grid)``: the sum of :func:`mean_curvature`
    over each cell of a ``grid x grid`` layout divided by the cell area.

    ``sigma`` defaults to 2% of the smaller image side (at least 1 pixel).
    """
    n = np.asarray(normals)
    h, w = n.shape[-3:-1]
    if sigma is None:
        sigma = max(1.0, 0.02 * min(h, w))
    curv = mean_curvature(n, mask, sigma).reshape(-1, h, w)
    g = max(1, min(grid, h, w))
    rows = np.linspace(0, h, g + 1).round().astype(int)
    cols = np.linspace(0, w, g + 1).round().astype(int)
    # Cell sums through a summed-area table.
    sat = np.pad(curv.cumsum(1).cumsum(2), ((0, 0), (1, 0), (1, 0)))
    r0, r1 = rows[:-1][:, None], rows[1:][:, None]
    c0, c1 = cols[:-1][None, :], cols[1:][None, :]
    sums = sat[:, r1, c1] - sat[:, r0, c1] - sat[:, r1, c0] + sat[:, r0, c0]
    area = (r1 - r0) * (c1 - c0)
    return (sums / area).reshape(curv.shape[0], -1)


def curvature_level(readings: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """How curved each sample is, independent of image size: ``(N,)`` mean absolute
    reading of ``(N, F)`` :func:`convexity_readings` times the smaller side of ``size``
    (``(H, W)`` of the normals the readings came from).

    Curvature is in 1/pixels, so resizing a map by a factor ``k`` divides it by ``k``;
    multiplying by the side undoes that (the smoothing in :func:`convexity_readings` also
    scales with the side).  0 for a plane.
    """
    return np.abs(np.asarray(readings, np.float64)).mean(1) * min(size)
