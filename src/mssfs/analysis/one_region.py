"""One-region consistency: how much of a sample reads one way under its own light.

A stimulus such as the rings, the star or the snake is one shading region, so the region
readings used for the discs (:func:`mssfs.analysis.region_readings`, a region's height
against its surround) do not apply.  Instead each sample is checked against the image
under the light it implies itself (:func:`mssfs.sampler.lighting.estimate_light`).  A
part of the sample that reads the shape the way that light says (a bump lit from ``l``)
renders under ``l`` to shading whose gradient matches the image's; a part that reads it
inverted (the dent that the flipped light ``(-lx, -ly, lz)`` would give) renders under the
flipped light to the image's gradient instead.  The **one-region consistency** is the
share of the sample's curved area that the light explains better than the flipped light:

    share = sum_p w_p [|g_I - g_l| < |g_I - g_l'|] / sum_p w_p,     w_p = |H_s(p)|,

with ``g_I`` the image gradient, ``g_l`` and ``g_l'`` the gradients of the sample rendered
(shadowless Lambertian, albedo fitted by least squares) under the light and the flipped
light, ``H_s`` the sample's mean curvature (:func:`mssfs.analysis.mean_curvature`), all
after a Gaussian of ``sigma`` pixels (default 1% of the smaller side, at least 1), over
the mask eroded by 2 pixels where ``g_l != g_l'``.  1 when every curved part reads the
way the light says, 0.5 when half of the curvature reads inverted, 0 when the sample is
the inversion of what its light says.  A sample that inverts everything together with its
light reads 1: one light explains it (the convex/concave flip of the whole image).  NaN
when the light has no image-plane part (the two lights coincide) or the sample is flat.

**Strict** variant (``strict=True``): a part of the figure that the sample leaves flat or
undecided counts against it.  The weights are the image's shading gradient ``|g_I|``
instead of the sample's curvature, so the whole shaded figure is scored whether or not
the sample bends there, and a pixel counts for the sample only when its rendering also
carries at least half of the image's gradient, ``g_l . g_I >= |g_I|^2 / 2`` (a part left
nearly flat renders nearly no gradient, whichever way it leans):

    strict = sum_p |g_I| [|g_I - g_l| < |g_I - g_l'| and g_l . g_I >= |g_I|^2 / 2] / sum_p |g_I|

over the eroded mask.  A flat sample scores 0, a sample flat over half the figure about
0.5, a sample whose light has no image-plane part 0 (undecided); a sample steeper than the
image asks is not penalised.  NaN only when the image has no shading gradient.

**Where the strict share is lost** (:func:`strict_breakdown`): the same weights split
into four parts that sum to 1: *read* (the strict share), *shallow* (the sample's light
explains the pixel better than the flipped light, but the rendering carries under half
of the image's gradient: the right way, too flat), *inverted* (the flipped light explains
it better and its rendering carries at least half: a part read as the inversion) and
*other* (neither: a tie, as under a light without image-plane part or on exactly flat
parts, or a shape that neither light renders well enough).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..sampler.lighting import estimate_light
from .curvature import mean_curvature

__all__ = ["BREAKDOWN", "STRICT_SHARE", "one_region_consistency", "strict_breakdown"]


#: A sample of a one-region stimulus counts as consistent in the strict scoring when its
#: strict one-region consistency is at least this (four fifths of the image's shading read
#: the way the sample's own light says).
STRICT_SHARE = 0.8

#: The columns of :func:`strict_breakdown`, in order.
BREAKDOWN = ("read", "shallow", "inverted", "other")


def _prepare(normals, image, mask, lights, sigma):
    """Checked arrays and the per-map renderings that both measures compare: the maps
    ``(N, H, W, 3)``, whether one map was given, the image gradient, the eroded mask and
    a function of map ``k`` giving the gradients of its rendering under its light and
    under the flipped light."""
    n = np.asarray(normals, np.float64)
    single = n.ndim == 3
    n = n[None] if single else n
    img = np.asarray(image, np.float64)
    if n.ndim != 4 or n.shape[-1] != 3 or n.shape[1:3] != img.shape:
        raise ValueError(f"normals {np.shape(normals)} do not match the image {img.shape}")
    mask = np.ones(img.shape, bool) if mask is None else np.asarray(mask, bool)
    if mask.shape != img.shape:
        raise ValueError(f"mask shape {mask.shape} differs from the image's {img.shape}")
    if lights is None:
        lights = np.stack([estimate_light(x, img, mask) for x in n])
    lights = np.broadcast_to(np.asarray(lights, np.float64).reshape(-1, 3), (n.shape[0], 3))
    if sigma is None:
        sigma = max(1.0, 0.01 * min(img.shape))
    inner = ndimage.binary_erosion(mask, iterations=2, border_value=1)

    def grad(x):
        s = ndimage.gaussian_filter(np.where(mask, x, 0.0), sigma, mode="nearest")
        gy, gx = np.gradient(s)
        return gx, gy

    def renderings(k):
        lit = np.clip(n[k] @ lights[k], 0.0, None)
        flipped = np.clip(n[k] @ (lights[k] * (-1, -1, 1)), 0.0, None)
        scale = float((lit * img)[mask].sum() / max((lit * lit)[mask].sum(), 1e-12))  # albedo
        return grad(scale * lit), grad(scale * flipped)

    return n, single, grad(img), inner, mask, sigma, renderings


def one_region_consistency(normals: np.ndarray, image: np.ndarray, mask: np.ndarray | None = None,
                           lights: np.ndarray | None = None, sigma: float | None = None, strict: bool = False):
    """One-region consistency (module docstring) of ``(H, W, 3)`` or ``(N, H, W, 3)`` maps.

    Args:
        image: ``(H, W)`` in [0, 1]; mask: ``(H, W)`` foreground (default: all).
        lights: ``(3,)`` or ``(N, 3)`` light per map (default: each map's implied light).
        sigma: smoothing in pixels before the gradients.
        strict: the strict variant (module docstring): weights from the image's gradient,
            flat or undecided parts count against the sample.
    Returns:
        float (one map) or ``(N,)`` float64 in [0, 1]; NaN where undefined (module docstring).
    """
    if strict:  # the read share of the breakdown
        read = strict_breakdown(normals, image, mask, lights, sigma)[..., 0]
        return float(read) if np.ndim(read) == 0 else read
    n, single, (ix, iy), inner, mask, sigma, renderings = _prepare(normals, image, mask, lights, sigma)
    curv = np.abs(mean_curvature(n, mask, sigma))
    out = np.full(n.shape[0], np.nan)
    for k in range(n.shape[0]):
        (ax, ay), (bx, by) = renderings(k)
        agree = (ix - ax) ** 2 + (iy - ay) ** 2 < (ix - bx) ** 2 + (iy - by) ** 2
        valid = inner & (np.hypot(ax - bx, ay - by) > 1e-9)
        w = np.where(valid, curv[k], 0.0)
        if w.sum() > 0:
            out[k] = float((w * agree).sum() / w.sum())
    return float(out[0]) if single else out


def strict_breakdown(normals: np.ndarray, image: np.ndarray, mask: np.ndarray | None = None,
                     lights: np.ndarray | None = None, sigma: float | None = None) -> np.ndarray:
    """Where the strict one-region consistency is lost (module docstring): the image's
    shading gradient over the eroded mask split into :data:`BREAKDOWN` parts.

    Args: as :func:`one_region_consistency`.
    Returns:
        ``(4,)`` (one map) or ``(N, 4)`` float64, each row the shares *read* (equal to the
        strict one-region consistency), *shallow*, *inverted* and *other*, summing to 1;
        NaN rows when the image has no shading gradient.
    """
    n, single, (ix, iy), inner, mask, sigma, renderings = _prepare(normals, image, mask, lights, sigma)
    weight = np.where(inner, np.hypot(ix, iy), 0.0)
    out = np.full((n.shape[0], len(BREAKDOWN)), np.nan)
    if weight.sum() > 1e-12:
        half = 0.5 * (ix**2 + iy**2)
        for k in range(n.shape[0]):
            (ax, ay), (bx, by) = renderings(k)
            d_lit, d_flip = (ix - ax) ** 2 + (iy - ay) ** 2, (ix - bx) ** 2 + (iy - by) ** 2
            carried, carried_flip = ax * ix + ay * iy >= half, bx * ix + by * iy >= half
            read = (d_lit < d_flip) & carried
            shallow = (d_lit < d_flip) & ~carried
            inverted = (d_flip < d_lit) & carried_flip
            other = ~(read | shallow | inverted)
            out[k] = [float((weight * part).sum() / weight.sum()) for part in (read, shallow, inverted, other)]
    return out[0] if single else out
