"""Light estimation and convex/concave flip consistency between patches (DESIGN.md §8).

All functions work on one map at a time (NumPy, frame of :mod:`mssfs.geometry`):
normals ``(H, W, 3)``, image ``(H, W)``, mask ``(H, W)`` bool.  The sampler calls them per
sample, so a sample's result never depends on the other samples of its batch.

Procedure after a V-cycle stage:

1. select pixels whose image-gradient magnitude is at least the median inside the
   foreground (:func:`select_pixels`);
2. per ``16 x 16`` patch with at least ``min_pixels`` selected pixels, solve
   ``n . l = I`` by least squares and normalise ``l`` (:func:`patch_lights`);
3. cluster those lights with k-means (k = 2); every patch of the smaller cluster whose
   flipped light ``(-lx, -ly, lz)`` is closer (cosine similarity, by at least
   ``threshold``) to the larger cluster's centre than its own light gets its normals
   flipped ``(nx, ny, nz) -> (-nx, -ny, nz)`` (:func:`flip_decisions`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from .patches import PATCH

__all__ = [
    "LightingResult",
    "consistent_lighting",
    "estimate_light",
    "flip_decisions",
    "flip_normals",
    "patch_lights",
    "select_pixels",
]


def flip_normals(n: np.ndarray) -> np.ndarray:
    """Convex/concave flip ``(..., 3)``: ``(nx, ny, nz) -> (-nx, -ny, nz)`` (also for lights)."""
    out = np.array(n, dtype=np.result_type(np.asarray(n).dtype, np.float32), copy=True)
    out[..., :2] *= -1
    return out


def select_pixels(image: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Foreground pixels whose gradient magnitude is at least the foreground median.

    The gradient is ``numpy.gradient`` (central differences).  Returns bool ``(H, W)``.
    """
    image = np.asarray(image, np.float64)
    mask = np.ones(image.shape, bool) if mask is None else np.asarray(mask, bool)
    if not mask.any():
        return np.zeros(image.shape, bool)
    gy, gx = np.gradient(image)
    mag = np.hypot(gx, gy)
    return mask & (mag >= np.median(mag[mask]))


def patch_lights(
    normals: np.ndarray, image: np.ndarray, selected: np.ndarray, min_pixels: int = 10, patch: int = PATCH
) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares light per patch from the selected pixels.

    Returns:
        ``(lights, valid)``: ``(gh * gw, 3)`` unit lights (0 where invalid) in patch order
        (rows, then columns) and bool ``(gh * gw,)``, True where the patch had at least
        ``min_pixels`` selected pixels and a non-degenerate solution.
    """
    h, w = image.shape
    gh, gw = h // patch, w // patch
    lights = np.zeros((gh * gw, 3))
    valid = np.zeros(gh * gw, bool)
    for k in range(gh * gw):
        r, c = divmod(k, gw)
        sl = np.s_[r * patch : (r + 1) * patch, c * patch : (c + 1) * patch]
        sel = selected[sl]
        if sel.sum() < min_pixels:
            continue
        A = np.asarray(normals[sl][sel], np.float64)
        b = np.asarray(image[sl][sel], np.float64)
        l, *_ = np.linalg.lstsq(A, b, rcond=None)
        norm = np.linalg.norm(l)
        if np.isfinite(norm) and norm > 1e-8:
            lights[k], valid[k] = l / norm, True
    return lights, valid


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a @ b) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b) + 1e-12)


def flip_decisions(lights: np.ndarray, valid: np.ndarray, threshold: float = 0.1, random_state: int = 0) -> np.ndarray:
    """Which patches to flip: bool ``(n,)`` (invalid patches are never flipped).

    k-means (k = 2, scikit-learn, fixed ``random_state``) on the valid lights; a patch of
    the smaller cluster is flipped when ``cos(flip(l), c) - cos(l, c) >= threshold`` for
    the larger cluster's centre ``c``.
    """
    flip = np.zeros(len(lights), bool)
    idx = np.flatnonzero(valid)
    if idx.size < 2 or np.unique(np.round(lights[idx], 6), axis=0).shape[0] < 2:
        return flip
    from sklearn.cluster import KMeans

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        labels = KMeans(n_clusters=2, n_init=10, random_state=random_state).fit(lights[idx]).labels_
    counts = np.bincount(labels, minlength=2)
    big = int(np.argmax(counts))
    if counts[1 - big] == 0:
        return flip
    centre = lights[idx][labels == big].mean(0)
    small = idx[labels != big]
    own, flipped = _cos(lights[small], centre), _cos(flip_normals(lights[small]), centre)
    flip[small[flipped - own >= threshold]] = True
    return flip


@dataclass
class LightingResult:
    """Outcome of :func:`consistent_lighting` for one map.

    Attributes:
        normals: ``(H, W, 3)`` normals with the flipped patches flipped.
        flipped: bool ``(gh, gw)``, the patches that were flipped.
        lights: ``(gh, gw, 3)`` patch lights (0 where not estimated).
        valid: bool ``(gh, gw)``, patches with enough selected pixels.
    """

    normals: np.ndarray
    flipped: np.ndarray
    lights: np.ndarray
    valid: np.ndarray


def consistent_lighting(
    normals: np.ndarray,
    image: np.ndarray,
    mask: np.ndarray | None = None,
    min_pixels: int = 10,
    threshold: float = 0.1,
    patch: int = PATCH,
) -> LightingResult:
    """Flip the patches whose light disagrees with the majority (§8); see module doc."""
    h, w = image.shape
    gh, gw = h // patch, w // patch
    selected = select_pixels(image, mask)
    lights, valid = patch_lights(normals, image, selected, min_pixels, patch)
    flip = flip_decisions(lights, valid, threshold)
    out = np.array(normals, copy=True)
    per_pixel = np.kron(flip.reshape(gh, gw), np.ones((patch, patch), bool)).astype(bool)
    out[per_pixel] = flip_normals(out[per_pixel])
    return LightingResult(out, flip.reshape(gh, gw), lights.reshape(gh, gw, 3), valid.reshape(gh, gw))


def estimate_light(normals: np.ndarray, image: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Whole-image light: least squares ``n . l = I`` over lit foreground pixels, normalised.

    Pixels with ``I > 0`` inside ``mask`` (attached shadows break the linear model) are
    used; returns float64 ``(3,)`` unit vector, or zeros when it cannot be estimated.
    """
    normals = np.asarray(normals, np.float64)
    image = np.asarray(image, np.float64)
    use = image > 0
    if mask is not None:
        use &= np.asarray(mask, bool)
    use &= np.linalg.norm(normals, axis=-1) > 0
    if use.sum() < 3:
        return np.zeros(3)
    l, *_ = np.linalg.lstsq(normals[use], image[use], rcond=None)
    norm = np.linalg.norm(l)
    return l / norm if norm > 1e-12 else np.zeros(3)
