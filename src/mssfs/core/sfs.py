"""Variational shape from shading on unit normals (Brooks and Horn, 1985), one solver for
the classical baseline (:func:`mssfs.evaluation.baselines.classical_sfs`) and the
refinement of samples (:func:`mssfs.sampler.refine.refine`).

On one pyramid level :func:`brooks_horn_level` minimises

    sum (I - n . l)^2  +  lam * sum |grad n|^2  +  mu * sum |n - a|^2      with |n| = 1

(``I`` divided by the albedo; ``a`` an anchor map, ``mu = 0`` for the classical method) by
damped Jacobi iterations of the Euler-Lagrange equations,

    (4 lam + mu) n = 4 lam avg(n) + mu a + (I - n . l) l,

solved per pixel with ``n . l`` implicit, then renormalised.  ``avg(n)`` is the mean of the
4 neighbours; a neighbour outside the mask but inside the frame is the contour normal
``(outward image-plane direction, 0)`` (the occluding-boundary condition), one beyond the
frame edge is left out.  Optionally, every ``integrate_every`` iterations the field is
blended with the normals of its Frankot-Chellappa integration (Horn 1990), and every
``relight_every`` iterations the light is re-estimated from the normals (shape and source
from shading) unless the new light crosses the convex/concave flip of ``keep_side``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .frame import normalize
from .integrate import depth_from_normals, normals_from_depth

__all__ = ["brooks_horn_level", "contour_directions", "contour_light", "has_occluding_contour", "pyramid_shapes",
           "resize_map"]

#: An occluding contour needs at least this many contour pixels inside the frame.
MIN_CONTOUR_PIXELS = 16


def contour_directions(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of ``mask`` next to background inside the frame, bool ``(H, W)``, and the
    outward image-plane directions ``(H, W, 2)`` ``(dx, dy)`` (y up) of the smoothed mask."""
    inner = ndimage.binary_erosion(mask, border_value=1)
    edge = mask & ~inner
    smooth = ndimage.gaussian_filter(mask.astype(np.float64), 1.5)
    g_row, g_col = np.gradient(smooth)
    out = np.stack([-g_col, g_row], -1)  # outward = -gradient; y up flips the row part
    length = np.linalg.norm(out, axis=-1)
    edge &= length > 1e-6
    return edge, out / np.maximum(length, 1e-12)[..., None]


def has_occluding_contour(mask: np.ndarray) -> bool:
    """Whether ``mask`` ends inside the frame on at least :data:`MIN_CONTOUR_PIXELS` pixels."""
    return int(contour_directions(np.asarray(mask, bool))[0].sum()) >= MIN_CONTOUR_PIXELS


def contour_light(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, float] | None:
    """``(direction (3,), albedo)`` of the light read off the occluding contour, or None.

    Along an occluding contour the normal is known: it lies in the image plane and points
    outward (:func:`contour_directions`).  So the lit contour pixels (at least
    :data:`MIN_CONTOUR_PIXELS` above 2 % of the albedo) give ``I = rho (lx cos t + ly sin t) + c``
    for outward direction ``t``, a linear least-squares fit for ``rho (lx, ly)`` (``c`` absorbs
    that the outermost pixel centres are not quite at grazing); the albedo ``rho`` is the
    99.5th percentile of the image inside the mask (a smooth closed object has a point
    facing the light) and ``lz = sqrt(1 - lx^2 - ly^2)``.  Unlike the shading inside a
    region, the contour fixes the light's side: no convex/concave ambiguity is left.

    Args:
        image: ``(H, W)`` shading; mask: ``(H, W)`` bool foreground (not empty).
    Returns:
        None when fewer than :data:`MIN_CONTOUR_PIXELS` contour pixels are lit (no
        occluding contour, or one in shadow).
    """
    img = np.asarray(image, np.float64)
    mask = np.asarray(mask, bool)
    rho = float(np.percentile(img[mask], 99.5)) or 1.0
    edge, outward = contour_directions(mask)
    lit = edge & (img > 0.02 * rho)
    if lit.sum() < MIN_CONTOUR_PIXELS:
        return None
    d = outward[lit]
    a = np.stack([d[:, 0], d[:, 1], np.ones(len(d))], -1)
    (ax, ay, _), *_ = np.linalg.lstsq(a, img[lit], rcond=None)
    lxy = np.array([ax, ay]) / rho
    r = np.linalg.norm(lxy)
    if r > 0.999:
        lxy *= 0.999 / r
    light = np.array([lxy[0], lxy[1], np.sqrt(max(0.0, 1 - float(lxy @ lxy)))])
    return normalize(light), rho


def resize_map(x: np.ndarray, shape: tuple[int, int], order: int = 1) -> np.ndarray:
    """``(H, W, ...)`` array resized to ``shape`` (spline of ``order``, pixel-grid aligned)."""
    zoom = (shape[0] / x.shape[0], shape[1] / x.shape[1]) + (1,) * (x.ndim - 2)
    out = ndimage.zoom(x, zoom, order=order, mode="nearest", grid_mode=True)
    return out[: shape[0], : shape[1]]


def pyramid_shapes(shape: tuple[int, int], levels: int | None = None, min_side: int = 32) -> list[tuple[int, int]]:
    """``shape`` and its halvings, finest first: ``levels`` of them, or (None) halving while
    the smaller side of the next level stays at least ``min_side``."""
    shapes = [tuple(shape)]
    while (len(shapes) < levels) if levels is not None else (min(shapes[-1]) / 2 >= min_side):
        h, w = shapes[-1]
        shapes.append(((h + 1) // 2, (w + 1) // 2))
    return shapes


def brooks_horn_level(
    image: np.ndarray,
    mask: np.ndarray,
    normals: np.ndarray,
    light: np.ndarray,
    iters: int,
    lam: float = 0.1,
    anchor: np.ndarray | None = None,
    anchor_weight: float | np.ndarray = 0.0,
    integrability: float = 0.0,
    integrate_every: int = 20,
    relight_every: int = 0,
    keep_side: np.ndarray | None = None,
    damping: float = 2 / 3,
) -> tuple[np.ndarray, np.ndarray]:
    """Jacobi iterations on one level (module docstring).

    Args:
        image: ``(H, W)`` intensities divided by the albedo; mask: ``(H, W)`` bool.
        normals: ``(H, W, 3)`` start, unit inside the mask.
        light: ``(3,)`` unit light.
        anchor: ``(H, W, 3)`` map the ``anchor_weight`` term pulls toward; the weight is a
            number or an ``(H, W)`` map of per-pixel weights (all >= 0).
        relight_every: re-estimate the light every that many iterations (0 = never);
            a new light ``l`` with ``l_xy . keep_side_xy < 0`` is rejected.
    Returns:
        ``(normals (H, W, 3) float64, 0 outside the mask; light (3,))``.
    """
    h, w = mask.shape
    _edge, outward = contour_directions(mask)
    contour_n = np.concatenate([outward, np.zeros(mask.shape + (1,))], -1)
    inside = np.pad(mask.astype(np.float64), 1)
    frame = np.pad(np.ones((h, w)), 1)
    count = frame[:-2, 1:-1] + frame[2:, 1:-1] + frame[1:-1, :-2] + frame[1:-1, 2:]
    outside = count - (inside[:-2, 1:-1] + inside[2:, 1:-1] + inside[1:-1, :-2] + inside[1:-1, 2:])
    contour_term = (outside / count)[..., None] * contour_n
    mu = np.broadcast_to(np.asarray(anchor_weight if anchor is not None else 0.0, np.float64), (h, w))
    total = 4 * lam + mu
    c = 1.0 / total
    anchor_term = (mu / total)[..., None] * anchor if mu.any() else 0.0
    smooth_w = (4 * lam * c)[..., None]
    dark = image <= 0
    inside3 = mask[..., None]
    l = normalize(np.asarray(light, np.float64))
    side = l if keep_side is None else np.asarray(keep_side, np.float64)
    n = np.where(inside3, np.asarray(normals, np.float64), 0.0)
    pad = np.zeros((h + 2, w + 2, 3))
    for it in range(iters):
        pad[1:-1, 1:-1] = n
        avg = (pad[:-2, 1:-1] + pad[2:, 1:-1] + pad[1:-1, :-2] + pad[1:-1, 2:]) / count[..., None] + contour_term
        b = avg * smooth_w + anchor_term
        b_l = b @ l
        # n . l = (b . l + c I) / (1 + c); shadowless Lambertian I = max(0, n . l): a dark
        # pixel whose neighbours face away exerts no force.
        resid = image - (b_l + c * image) / (1 + c)
        resid[dark & (b_l <= 0)] = 0.0
        n = (1 - damping) * n + damping * (b + (c * resid)[..., None] * l)
        n[..., 2] = np.maximum(n[..., 2], 0.0)
        n = normalize(n) * inside3
        if integrability > 0 and (it + 1) % integrate_every == 0:
            z = depth_from_normals(n, mask, method="fc", clamp=5.0)
            n = normalize((1 - integrability) * n + integrability * normals_from_depth(z, None)) * inside3
        if relight_every and (it + 1) % relight_every == 0:
            lit = mask & (image > 0)
            if lit.sum() >= 3:
                new, *_ = np.linalg.lstsq(n[lit], image[lit], rcond=None)
                if np.linalg.norm(new) > 1e-8 and new[:2] @ side[:2] >= 0:
                    l = normalize(new)
    return n, l
