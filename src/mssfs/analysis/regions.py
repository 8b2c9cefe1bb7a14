"""Reading known regions as bumps or dents, and whether readings fit one light.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from ..core.frame import foreground_mask
from ..core.integrate import depth_from_normals

__all__ = ["MIN_DISC_TILT", "consistency", "disc_readings", "radial_tilts", "region_readings"]


#: A disc read from its normals (:func:`disc_readings`) is a bump or a dent only when its
#: mean radial tilt is at least this; below it the disc is left nearly flat (a spherical
#: cap whose rim slopes by about 9 degrees has mean radial tilt 0.1) and reads 0, undecided.
MIN_DISC_TILT = 0.1


def _region_masks(regions, shape) -> list[np.ndarray]:
    if isinstance(regions, np.ndarray) and regions.ndim == 2 and regions.dtype != bool:
        return [regions == k for k in range(1, int(regions.max()) + 1)]
    masks = [np.asarray(r, bool) for r in regions]
    for m in masks:
        if m.shape != shape:
            raise ValueError(f"a region mask has shape {m.shape}, the normals {shape}")
    return masks


def region_readings(
    normals: np.ndarray, regions, mask: np.ndarray | None = None, method: str = "poisson"
) -> np.ndarray:
    """Read each region as a bump (+1) or a dent (-1).

    The normals are integrated to a height map (:func:`mssfs.core.integrate.depth_from_normals`);
    a region is a bump when its mean height exceeds the mean height of a ring just outside
    it (width: a third of the region's equivalent radius, at least 2 pixels, inside the
    mask and outside every region), a dent when it is lower, and 0 when the two agree
    within 1e-6 pixels.

    Args:
        normals: ``(H, W, 3)`` or ``(N, H, W, 3)``.
        regions: ``(H, W)`` integer labels (0 = no region, 1..R) or a list of R bool masks.
        mask: ``(H, W)`` foreground (default: non-zero normals).
    Returns:
        int8 ``(R,)`` or ``(N, R)``.
    """
    normals = np.asarray(normals)
    single = normals.ndim == 3
    stack = normals[None] if single else normals
    shape = stack.shape[1:3]
    masks = _region_masks(regions, shape)
    if mask is None:
        mask = foreground_mask(stack).any(0)
    union = np.zeros(shape, bool)
    for m in masks:
        union |= m
    rings = []
    for m in masks:
        width = max(2, round(math.sqrt(m.sum() / math.pi) / 3))
        ring = ndimage.binary_dilation(m, iterations=width) & ~union & mask
        if not ring.any():
            raise ValueError("a region has no free border inside the mask to compare its height with")
        rings.append(ring)
    out = np.zeros((stack.shape[0], len(masks)), np.int8)
    for i, n in enumerate(stack):
        z = depth_from_normals(n, mask, method=method)
        for k, (m, ring) in enumerate(zip(masks, rings)):
            diff = z[m & mask].mean() - z[ring].mean()
            out[i, k] = 0 if abs(diff) < 1e-6 else int(np.sign(diff))
    return out[0] if single else out


def radial_tilts(normals: np.ndarray, regions) -> np.ndarray:
    """Mean outward radial tilt of each region's normals.

    For each region, the image-plane part ``(n_x, n_y)`` of the normals (x right, y up) is
    projected on the unit vector from the region's centroid to the pixel and averaged over
    the region (the centroid pixel itself left out).  A bump tilts its normals outward
    (positive: a hemisphere gives 2/3), a dent inward (negative), a flat disc 0.

    Args:
        normals: ``(H, W, 3)`` or ``(N, H, W, 3)``.
        regions: ``(H, W)`` integer labels (0 = no region, 1..R) or a list of R bool masks.
    Returns:
        float64 ``(R,)`` or ``(N, R)``.
    """
    normals = np.asarray(normals, np.float64)
    single = normals.ndim == 3
    stack = normals[None] if single else normals
    masks = _region_masks(regions, stack.shape[1:3])
    rows, cols = np.mgrid[0 : stack.shape[1], 0 : stack.shape[2]]
    out = np.zeros((stack.shape[0], len(masks)))
    for k, m in enumerate(masks):
        if not m.any():
            raise ValueError(f"region {k + 1} is empty")
        dx, dy = cols[m] - cols[m].mean(), -(rows[m] - rows[m].mean())  # y up
        r = np.hypot(dx, dy)
        keep = r > 0.5
        ux, uy = dx[keep] / r[keep], dy[keep] / r[keep]
        out[:, k] = (stack[:, m, 0][:, keep] * ux + stack[:, m, 1][:, keep] * uy).mean(axis=1)
    return out[0] if single else out


def disc_readings(normals: np.ndarray, regions, min_tilt: float = MIN_DISC_TILT) -> np.ndarray:
    """Read each disc as a bump (+1), a dent (-1) or undecided (0) from its normals.

    The reading is the sign of the disc's mean radial tilt (:func:`radial_tilts`), 0 where
    its magnitude is below ``min_tilt`` (a disc left nearly flat).  Unlike
    :func:`region_readings`, which compares integrated heights and so gives any disc a
    sign, this scoring lets a flat disc count against a sample's consistency.

    Returns:
        int8 ``(R,)`` or ``(N, R)``.
    """
    t = radial_tilts(normals, regions)
    return (np.sign(t) * (np.abs(t) >= min_tilt)).astype(np.int8)


def consistency(readings, true_layout) -> int | None:
    """Whether region readings fit one light.

    Returns 0 when ``readings`` equal ``true_layout`` (the shape lit from the true
    direction), 1 when they are its full inversion (every bump a dent and back: the
    convex/concave flip, light mirrored), None otherwise (some regions read one way,
    others the other way, or an undecided 0 reading).
    """
    r = np.asarray(readings).astype(int).ravel()
    t = np.asarray(true_layout).astype(int).ravel()
    if r.shape != t.shape:
        raise ValueError(f"{r.size} readings for a layout of {t.size} regions")
    if np.array_equal(r, t):
        return 0
    if np.array_equal(r, -t):
        return 1
    return None
