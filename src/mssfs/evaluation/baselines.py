"""Reference predictors to compare the diffusion sampler with.

* :func:`flat_normals`: every foreground pixel faces the viewer, ``(0, 0, 1)``.
* :func:`classical_sfs`: classical variational shape from shading in the unit-normal form
  of Brooks and Horn ("Shape and source from shading", 1985), which is Ikeuchi and Horn's
  smoothness-regularised method written on unit normals instead of stereographic
  coordinates.  It minimises

      sum (I / rho - n . l)^2  +  lam * sum |grad n|^2      with |n| = 1,

  by the fixed-point (Jacobi) iteration of its Euler-Lagrange equations,

      n <- normalise( mean of the 4 neighbours of n  +  (I / rho - n . l) l / (4 lam) ),

  coarse to fine over an image pyramid (each level starts from the upsampled coarser
  result), so the smoothness term spreads information across the image quickly.  Where
  the mask ends inside the frame (an occluding contour) the missing neighbours are the
  contour normals ``(outward image-plane direction, 0)``, which is the classical boundary
  condition that makes a closed object convex; where the mask meets the frame edge the
  missing neighbours are simply left out.  Every ``integrate_every`` iterations the normal
  field is made integrable (Horn 1990): it is integrated to a height
  (Frankot–Chellappa) whose normals are blended in with weight ``integrability``.
  The solver (:func:`mssfs.core.sfs.brooks_horn_level`) is shared with the refinement
  of samples (:mod:`mssfs.sampler.refine`).

* :func:`estimate_light_from_image`: the light direction and albedo before any shape is
  known.  When the mask has an occluding contour (at least 16 lit contour pixels), the
  light is read off the contour, whose normals are known
  (:func:`mssfs.core.sfs.contour_light`, which the refinement of samples shares).
  Without a contour (a relief filling the frame) it uses image statistics in the spirit of
  Lee and Rosenfeld (1985): the tilt axis is the principal direction of the image
  gradients (on a bump or a dent the shading gradient is parallel to the light's
  image-plane direction), its sign the one the mean gradient points to (bumps assumed to
  outweigh dents; the other sign is the convex/concave flip, which the image cannot
  decide), and the slant from ``cos s = median(I) / rho`` (the typical surface element of a
  relief faces the viewer).  The axis and its sign are
  :func:`mssfs.sampler.guidance.image_tilt_axis` (``frame_edge=True, signed=True``): where
  the image gives no sign (flat ground all round the frame, on which the gradients sum to
  zero), the light is taken from above.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..core.frame import normalize
from ..core.sfs import brooks_horn_level, contour_light, pyramid_shapes, resize_map
from ..sampler.guidance import image_tilt_axis

__all__ = ["LightEstimate", "classical_sfs", "estimate_light_from_image", "flat_normals"]


def _mask_of(image: np.ndarray, mask) -> np.ndarray:
    if mask is None:
        return np.asarray(image) > 0
    mask = np.asarray(mask, bool)
    if mask.shape != np.shape(image):
        raise ValueError(f"mask shape {mask.shape} differs from image shape {np.shape(image)}")
    return mask


def flat_normals(image: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """``(H, W, 3)`` float32: ``(0, 0, 1)`` inside ``mask`` (default ``image > 0``), 0 outside."""
    mask = _mask_of(image, mask)
    out = np.zeros(mask.shape + (3,), np.float32)
    out[mask, 2] = 1.0
    return out


@dataclass
class LightEstimate:
    """``light`` (3,) unit direction, ``albedo`` (scalar) and ``method`` ("contour" or "statistics")."""

    light: np.ndarray
    albedo: float
    method: str


def estimate_light_from_image(image: np.ndarray, mask: np.ndarray | None = None) -> LightEstimate:
    """Light and albedo from the image alone (see the module docstring)."""
    img = np.asarray(image, np.float64)
    mask = _mask_of(img, mask)
    if not mask.any():
        raise ValueError("the mask is empty: no pixel to estimate the light from")
    fitted = contour_light(img, mask)
    if fitted is not None:
        return LightEstimate(fitted[0], fitted[1], "contour")
    rho = float(np.percentile(img[mask], 99.5)) or 1.0
    # No contour (a relief filling the frame): image statistics, the signed shading axis.
    axis = image_tilt_axis(torch.from_numpy(img)[None, None], torch.from_numpy(mask)[None, None],
                           frame_edge=True, signed=True)[0].numpy()
    cos_s = float(np.clip(np.median(img[mask]) / rho, 0.05, 1.0))
    sin_s = np.sqrt(max(0.0, 1 - cos_s**2))
    light = np.array([sin_s * axis[0], sin_s * axis[1], cos_s])
    return LightEstimate(normalize(light), rho, "statistics")


def classical_sfs(
    image: np.ndarray,
    mask: np.ndarray | None = None,
    light=None,
    iters: int = 200,
    lam: float = 0.1,
    levels: int | None = None,
    integrability: float = 0.0,
    integrate_every: int = 20,
) -> np.ndarray:
    """Classical variational shape from shading (Brooks–Horn; see the module docstring).

    Args:
        image: ``(H, W)`` in [0, 1].
        mask: ``(H, W)`` foreground (default ``image > 0``).
        light: ``(3,)`` direction; estimated with :func:`estimate_light_from_image` when None
            (the albedo is always estimated).
        iters: Jacobi iterations per pyramid level.
        lam: smoothness weight (relative to the squared shading residual).
        levels: pyramid levels (default: halve until the smaller side is below 32 pixels).
        integrability: weight in [0, 1) of the integrable projection (0 = off).
        integrate_every: iterations between integrable projections.
    Returns:
        ``(H, W, 3)`` float32 unit normals, ``(0, 0, 0)`` outside the mask.
    """
    img = np.asarray(image, np.float64)
    if img.ndim != 2:
        raise ValueError(f"expected a grayscale image (H, W), got shape {img.shape}")
    mask = _mask_of(img, mask)
    if not mask.any():
        raise ValueError("the mask is empty: nothing to reconstruct")
    est = estimate_light_from_image(img, mask)
    l = est.light if light is None else normalize(np.asarray(light, np.float64))
    img = np.clip(img / est.albedo, 0, 1.5)
    n = None
    for shape in reversed(pyramid_shapes(img.shape, levels)):
        if shape == img.shape:
            im_l, m_l = img, mask
        else:
            im_l = resize_map(img, shape)
            m_l = resize_map(mask.astype(np.float64), shape) >= 0.5
        if n is None:
            n = np.zeros(shape + (3,))
            n[..., 2] = 1.0
        else:
            n = normalize(resize_map(n, shape))
            n[~np.isfinite(n).all(-1)] = (0, 0, 1)
        n = np.where(m_l[..., None], n, 0.0)
        n[m_l & (np.linalg.norm(n, axis=-1) < 0.5)] = (0, 0, 1)
        n, _ = brooks_horn_level(im_l, m_l, n, l, iters, lam, integrability=integrability, integrate_every=integrate_every)
    return np.where(mask[..., None], n, 0.0).astype(np.float32)
