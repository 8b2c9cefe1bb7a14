"""Orthographic ray casting of implicit surfaces onto the pixel grid.

A shape is an object with ``bound`` (radius of a sphere about the origin that contains
it), ``value(x, y, z)`` (negative inside, positive outside; 1-D float32 arrays in the
shape's own frame) and ``gradient(x, y, z) -> (gx, gy, gz)``.  Every pixel casts a ray
along ``-z`` (toward the scene); the first sign change is bracketed by uniform steps
through the bounding sphere and refined by bisection, and the normal is the normalised
analytic gradient at the hit point, rotated into the view frame.  Normals are thus exact
up to the root's precision (about 1e-5 of the object's size); at the occluding contour
they approach ``nz -> 0``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import binary_dilation

from .frame import pixel_grid

__all__ = ["View", "first_hit", "fit_view", "render_implicit"]


@dataclass(frozen=True)
class View:
    """Frame-to-scene mapping: scene ``(x, y) = centre + scale * frame (x, y)``; ``rotation`` maps shape to scene."""

    rotation: np.ndarray
    centre: tuple[float, float]
    scale: float


def _rotated(shape, rotation: np.ndarray):
    """``value``/``gradient`` of ``shape`` evaluated at scene points (``q = R^T p``)."""
    r = [[float(v) for v in row] for row in rotation]

    def to_shape(px, py, pz):
        return (
            r[0][0] * px + r[1][0] * py + r[2][0] * pz,
            r[0][1] * px + r[1][1] * py + r[2][1] * pz,
            r[0][2] * px + r[1][2] * py + r[2][2] * pz,
        )

    def value(px, py, pz):
        return shape.value(*to_shape(px, py, pz))

    def gradient(px, py, pz):
        gx, gy, gz = shape.gradient(*to_shape(px, py, pz))
        return (
            r[0][0] * gx + r[0][1] * gy + r[0][2] * gz,
            r[1][0] * gx + r[1][1] * gy + r[1][2] * gz,
            r[2][0] * gx + r[2][1] * gy + r[2][2] * gz,
        )

    return value, gradient


def first_hit(value, px: np.ndarray, py: np.ndarray, bound: float, steps: int = 48, refine: int = 12):
    """First surface crossing along ``-z`` for rays at scene points ``(px, py)`` (1-D float32).

    Returns ``(index, z)``: the indices of the rays that hit and the depth of each hit.
    """
    r2 = px * px + py * py
    idx = np.flatnonzero(r2 < bound * bound)
    zf = np.sqrt(bound * bound - r2[idx]).astype(np.float32)
    dz = np.float32(2.0 * bound / steps)
    hit_idx, z_out, z_in = [], [], []
    x_a, y_a, zf_a = px[idx], py[idx], zf
    k = 1
    while idx.size:
        z = zf_a - np.float32(k) * dz
        h = value(x_a, y_a, z) < 0
        if h.any():
            hit_idx.append(idx[h])
            z_in.append(z[h])
            z_out.append(z[h] + dz)
        keep = ~h & (z > -zf_a)
        if not keep.all():
            idx, x_a, y_a, zf_a = idx[keep], x_a[keep], y_a[keep], zf_a[keep]
        k += 1
    if not hit_idx:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    hit = np.concatenate(hit_idx)
    zo, zi = np.concatenate(z_out), np.concatenate(z_in)
    hx, hy = px[hit], py[hit]
    for _ in range(refine):
        zm = 0.5 * (zo + zi)
        inside = value(hx, hy, zm) < 0
        zi = np.where(inside, zm, zi)
        zo = np.where(inside, zo, zm)
    return hit, 0.5 * (zo + zi)


def fit_view(shape, rotation: np.ndarray, rng: np.random.Generator, fill=(0.5, 0.92), coarse: int = 80) -> View:
    """Scale and centre a rotated shape so its silhouette spans a random share ``fill`` of the frame."""
    value, _ = _rotated(shape, rotation)
    b = float(shape.bound)
    c = ((np.arange(coarse, dtype=np.float32) + 0.5) / coarse * 2.0 - 1.0) * b
    px, py = np.meshgrid(c, c)
    hit, _ = first_hit(value, px.ravel(), py.ravel(), b, steps=48, refine=0)
    if hit.size == 0:
        raise RuntimeError("shape is empty: no ray hit it")
    cell = 2.0 * b / coarse  # a hit cell centre lies within one cell of the silhouette's edge
    hx, hy = px.ravel()[hit], py.ravel()[hit]
    lo = np.array([hx.min(), hy.min()]) - cell
    hi = np.array([hx.max(), hy.max()]) + cell
    extent = float((hi - lo).max())
    phi = rng.uniform(*fill)
    scale = extent / (2.0 * phi)  # scene units per frame unit
    half = (hi - lo) / (2.0 * scale)  # silhouette half-size in frame units
    shift = rng.uniform(-1.0, 1.0, size=2) * np.maximum(0.0, 0.95 - half)  # frame position of its centre
    centre = 0.5 * (lo + hi) - shift * scale
    return View(rotation=rotation, centre=(float(centre[0]), float(centre[1])), scale=float(scale))


def render_implicit(shape, size: int, view: View, steps: int = 48, refine: int = 12):
    """Ray-cast ``shape`` seen through ``view`` on a ``size x size`` grid.

    Returns ``(normals (size, size, 3) float32, mask (size, size) bool)``; background
    normals are ``(0, 0, 0)``.
    """
    value, gradient = _rotated(shape, view.rotation)
    b = float(shape.bound)
    fx, fy = pixel_grid(size)
    s, (cx, cy) = view.scale, view.centre
    px = (fx * np.float32(s) + np.float32(cx)).ravel()
    py = (fy * np.float32(s) + np.float32(cy)).ravel()
    # Skip rays far from the silhouette: a coarse pass, dilated by one cell.
    coarse = max(16, size // 4)
    cell = 2.0 * b / coarse
    c = ((np.arange(coarse, dtype=np.float32) + 0.5) * cell - b).astype(np.float32)
    gx_c, gy_c = np.meshgrid(c, c)
    chit, _ = first_hit(value, gx_c.ravel(), gy_c.ravel(), b, steps=steps, refine=0)
    cmask = np.zeros(coarse * coarse, bool)
    cmask[chit] = True
    cmask = binary_dilation(cmask.reshape(coarse, coarse), iterations=2)
    ix = np.clip(((px + b) / cell).astype(np.int64), 0, coarse - 1)
    iy = np.clip(((py + b) / cell).astype(np.int64), 0, coarse - 1)
    cand = np.flatnonzero(cmask[iy, ix])
    hit, z = first_hit(value, px[cand], py[cand], b, steps=steps, refine=refine)
    hit = cand[hit]
    g = gradient(px[hit], py[hit], z)
    g = np.stack(g, axis=-1).astype(np.float64)
    g[:, 2] = np.maximum(g[:, 2], 0.0)  # visible side: the root bracket guarantees d f / d z >= 0
    norm = np.linalg.norm(g, axis=-1, keepdims=True)
    normals = np.zeros((size * size, 3), np.float32)
    normals[hit] = g / np.maximum(norm, 1e-12)
    mask = np.zeros(size * size, bool)
    mask[hit] = True
    return normals.reshape(size, size, 3), mask.reshape(size, size)
