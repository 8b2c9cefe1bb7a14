"""Light estimation and convex/concave flip consistency between patches (docs/method.md#lighting-consistency).

All functions work on one map at a time (NumPy, frame of :mod:`mssfs.core.frame`):
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

Region flips (ours, :func:`consistent_regions`): the same convex/concave choice made for
whole *shading regions* instead of 16x16 patches.  A shading region is a connected part of
the image separated from the others by featureless (uniformly shaded) pixels, such as a
bump or a dent on flat ground (:func:`shading_regions`).  A region's light is estimated
from all of its pixels, so a reading that a patch cannot settle is settled per region, and
a region is flipped as a whole, which leaves no seam on its featureless border.  The flips
are the ones under which a single light explains the image best (:func:`region_flip_decisions`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ..core.patches import PATCH

__all__ = ["LightingResult", "RegionFlipResult", "consistent_lighting", "consistent_regions", "estimate_light", "flip_decisions", "flip_normals", "patch_lights", "region_flip_decisions", "select_pixels", "shading_regions"]


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


#: Pixels at or below this intensity are not used in light fits (attached shadow).
LIT_LEVEL = 0.02


#: Exhaustive search over flip assignments up to this many regions; greedy above.
MAX_EXHAUSTIVE_REGIONS = 12


def shading_regions(
    image: np.ndarray, mask: np.ndarray | None = None, flat_gradient: float = 1.0, min_pixels: int = 32
) -> np.ndarray:
    """Connected shading regions separated by featureless pixels.

    A pixel is *featured* when the image's gradient magnitude (central differences) is at
    least ``flat_gradient / max(H, W)``: ``flat_gradient`` is an intensity change per
    image width, so the split does not depend on the working resolution.  Featured pixels
    inside ``mask`` have their holes filled (the top of a bump faces the viewer like the
    ground around it and shades the same) and are split into 8-connected components
    (features two featureless pixels apart stay apart); components with fewer than
    ``min_pixels`` pixels are dropped.  Each region then takes the featureless pixels of
    the mask within two pixels of it, each pixel going to its nearest region: a feature's
    gentle rim, where the shading hardly changes, belongs to it.  An image without
    featureless areas (a relief with shading everywhere, an object on black) gives a
    single region.

    Returns:
        int32 ``(H, W)`` labels ``1..R`` in order of decreasing size, 0 outside every region.
    """
    from scipy import ndimage

    image = np.asarray(image, np.float64)
    if image.ndim != 2:
        raise ValueError(f"image must be (H, W), got shape {image.shape}")
    mask = np.ones(image.shape, bool) if mask is None else np.asarray(mask, bool)
    if flat_gradient <= 0 or min_pixels < 1:
        raise ValueError("flat_gradient must be > 0 and min_pixels >= 1")
    gy, gx = np.gradient(image)
    featured = mask & (np.hypot(gx, gy) >= flat_gradient / max(image.shape))
    featured = ndimage.binary_fill_holes(featured) & mask
    labels, count = ndimage.label(featured, structure=np.ones((3, 3), bool))
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    sizes[0] = 0
    labels[sizes[labels] < min_pixels] = 0
    if not labels.any():
        return np.zeros(image.shape, np.int32)
    dist, (rows, cols) = ndimage.distance_transform_edt(labels == 0, return_indices=True)
    grow = mask & (labels == 0) & (dist <= 2)
    labels[grow] = labels[rows[grow], cols[grow]]
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    sizes[0] = 0
    order = np.argsort(-sizes, kind="stable")
    order = order[sizes[order] > 0]
    relabel = np.zeros(count + 1, np.int32)
    relabel[order] = np.arange(1, order.size + 1)
    return relabel[labels]


_FLIP = np.diag([-1.0, -1.0, 1.0])


def _fit_residuals(a_rest, c_rest, a_reg, c_reg, total, assignments) -> np.ndarray:
    """Least-squares residual ``sum (n . b - I)^2`` for every flip assignment ``(K, R)``."""
    s = assignments[..., None, None].astype(np.float64)
    a_f = np.einsum("ij,rjk,kl->ril", _FLIP, a_reg, _FLIP)
    c_f = c_reg @ _FLIP
    a = a_rest + ((1 - s) * a_reg + s * a_f).sum(1)
    c = c_rest + ((1 - s[..., 0]) * c_reg + s[..., 0] * c_f).sum(1)
    a = a + 1e-9 * (np.trace(a, axis1=1, axis2=2)[:, None, None] + 1e-12) * np.eye(3)
    b = np.linalg.solve(a, c[..., None])[..., 0]
    return np.maximum(total - np.einsum("ki,ki->k", c, b), 0.0)


def region_flip_decisions(
    normals: np.ndarray, image: np.ndarray, labels: np.ndarray, mask: np.ndarray | None = None, threshold: float = 0.0
) -> tuple[np.ndarray, float, float]:
    """Which regions to flip so that one light explains the image best.

    Every lit pixel (``I > 0.02``, inside ``mask``, non-zero normal) enters one
    least-squares fit ``n . b = I`` (``b`` = albedo x light, shared by the whole image);
    pixels outside every region are never flipped.  Flipping region ``k`` turns its
    normals into ``(-nx, -ny, nz)``.  The assignment with the smallest residual ``E`` is
    found exhaustively for up to 12 regions (greedily, one region at a time, above);
    between it and its complement (every region the other way), the one that flips fewer
    pixels is taken when both fit by the rule below.  Regions are flipped only when the
    image has two regions or more and ``E`` falls below its value without flips, to at
    most ``(1 - threshold)`` times it.

    Args:
        normals: ``(H, W, 3)``; image ``(H, W)``; labels ``(H, W)`` int, 0 = no region.
    Returns:
        ``(flip, residual_before, residual_after)``: bool ``(R,)`` and both residuals
        relative to ``sum I^2`` over the pixels used (0 when nothing is lit).
    """
    n = np.asarray(normals, np.float64)
    image = np.asarray(image, np.float64)
    labels = np.asarray(labels)
    if n.shape != (*image.shape, 3) or labels.shape != image.shape:
        raise ValueError(f"shapes disagree: normals {n.shape}, image {image.shape}, labels {labels.shape}")
    r = int(labels.max(initial=0))
    flip = np.zeros(r, bool)
    use = (image > LIT_LEVEL) & (np.linalg.norm(n, axis=-1) > 0)
    if mask is not None:
        use &= np.asarray(mask, bool)
    total = float((image[use] ** 2).sum())
    if total <= 0:
        return flip, 0.0, 0.0
    lab = labels[use]
    nu, iu = n[use], image[use]
    rest = lab == 0
    a_rest, c_rest = nu[rest].T @ nu[rest], nu[rest].T @ iu[rest]
    a_reg = np.stack([nu[lab == k].T @ nu[lab == k] for k in range(1, r + 1)]) if r else np.zeros((0, 3, 3))
    c_reg = np.stack([nu[lab == k].T @ iu[lab == k] for k in range(1, r + 1)]) if r else np.zeros((0, 3))
    area = np.bincount(lab, minlength=r + 1)[1:]

    def energy(assign):
        return _fit_residuals(a_rest, c_rest, a_reg, c_reg, total, np.atleast_2d(assign))

    e0 = float(energy(flip)[0])
    if r < 2:
        return flip, e0 / total, e0 / total
    if r <= MAX_EXHAUSTIVE_REGIONS:
        codes = np.arange(2**r)[:, None]
        every = (codes >> np.arange(r)) & 1
        best = every[int(np.argmin(energy(every)))].astype(bool)
    else:
        best = flip.copy()
        e_best = e0
        while True:
            trials = np.repeat(best[None], r, 0)
            trials[np.arange(r), np.arange(r)] ^= True
            e = energy(trials)
            k = int(np.argmin(e))
            if e[k] >= e_best:
                break
            best, e_best = trials[k], float(e[k])
    limit = (1 - threshold) * e0
    choices = [c for c in (best, ~best) if c.any() and float(energy(c)[0]) <= limit and float(energy(c)[0]) < e0]
    if not choices:
        return flip, e0 / total, e0 / total
    chosen = min(choices, key=lambda c: (int(area[c].sum()), float(energy(c)[0])))
    return chosen, e0 / total, float(energy(chosen)[0]) / total


@dataclass
class RegionFlipResult:
    """Outcome of :func:`consistent_regions` for one map.

    Attributes:
        normals: ``(H, W, 3)`` with the flipped regions flipped.
        labels: int ``(H, W)`` shading regions (0 = none); flipped: bool ``(R,)``.
        residual_before, residual_after: one-light residuals relative to ``sum I^2``.
    """

    normals: np.ndarray
    labels: np.ndarray
    flipped: np.ndarray
    residual_before: float
    residual_after: float


def consistent_regions(
    normals: np.ndarray,
    image: np.ndarray,
    mask: np.ndarray | None = None,
    threshold: float = 0.0,
    flat_gradient: float = 1.0,
    min_pixels: int = 32,
) -> RegionFlipResult:
    """Flip whole shading regions so that one light explains the image (ours; module doc)."""
    labels = shading_regions(image, mask, flat_gradient, min_pixels)
    flip, before, after = region_flip_decisions(normals, image, labels, mask, threshold)
    out = np.array(normals, copy=True)
    if flip.any():
        sel = np.isin(labels, np.flatnonzero(flip) + 1)
        out[sel] = flip_normals(out[sel])
    return RegionFlipResult(out, labels, flip, before, after)
