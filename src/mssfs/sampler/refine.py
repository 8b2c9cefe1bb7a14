"""Refinement of samples by the shading (ours): keep the reading, fit the shape.

The network decides which reading a region takes (bump or dent, and so where the light
comes from); the image then says precisely what shape explains it under that light.
:func:`refine` starts from one sample and solves variational shape from shading
(:mod:`mssfs.core.sfs`, the classical baseline's solver) under the sample's own light:

* **light**: least squares ``n . l = I`` over the lit foreground pixels of the sample
  (:func:`implied_light`); direction ``l / |l|``, albedo ``|l|``.  When the mask has an
  occluding contour, the light is re-estimated from the refined normals every
  ``relight_every`` iterations, but a light whose image-plane direction points more than
  90 degrees away from the sample's is rejected: the refinement never crosses the
  convex/concave flip.  Without a contour (reliefs, stimuli filling the frame) the light
  stays the sample's.
* **anchor**: a term ``anchor |n - a|^2`` pulls toward the sample smoothed by a Gaussian
  of ``anchor_sigma`` pixels, so regions keep the sample's shape class while the patch
  grid, which the smoothing removes, is not kept;
* **smooth and integrable**: smoothness ``lam``, and every ``integrate_every`` iterations
  a half-way blend with the normals of the Frankot-Chellappa integration;
* coarse to fine, from the sample resized to each level (halved while the smaller side
  stays >= 32 px): ``coarse_iters`` Jacobi iterations on levels up to ``coarse_side``
  pixels, ``fine_iters`` above;
* **light from the contour** (``contour_light``): on an image with an occluding contour
  the light is read off the contour (:func:`mssfs.core.sfs.contour_light`), where the
  normals are known, instead of off the sample.  The contour decides the reading, so this
  light is not re-estimated and the readings are not kept (next item): a sample that read
  the object the wrong way round is turned by the shading.  The integrable projection
  then uses ``contour_integrability`` instead of ``integrability``: the Frankot-Chellappa
  integration is made for a full frame, and on an object on a background it bends the
  shape near the contour.  Images without a lit contour keep the sample's light;
* **fused by the shading** (``contour_fuse``): on that path the fused result is the mean
  of the refined samples weighted by how well each explains the image under the contour's
  light, ``w_i = exp(-(r_i - r_min) / (contour_fuse * r_min))`` with ``r_i`` the RMS
  shading residual (:func:`shading_residual`, :func:`fusion_weights`); 0 gives the plain
  mean.  The contour fixes the light, so a sample whose shape renders the image worse is
  a worse shape, not another reading;
* **readings kept**: the weak anchor alone lets a region read against the sample's own
  light turn to the reading that light explains.  So after the solve,
  :func:`turned_pixels` compares the reading of the result with the sample's per
  shading region (:func:`mssfs.sampler.lighting.shading_regions`) and per cell of a grid
  of about 16 px; where one turned, the anchor weight on its pixels (dilated by 2) rises to
  ``keep_anchor`` and the solve is run again from the sample, at most ``keep_passes``
  times.

:func:`refine_samples` refines ``N`` samples at the output resolution (the image's larger
side, at most ``max_resolution``) and the fused result (the renormalised mean of the
refined samples, weighted on the contour path as above, refined once more), and says
which light it used (:class:`RefinedSamples`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np
from scipy import ndimage

from ..core.frame import normalize
from ..core.resize import resize_normals_array
from ..core.sfs import (
    brooks_horn_level,
    contour_light,
    has_occluding_contour,
    pyramid_shapes,
    resize_map,
)
from .lighting import shading_regions

__all__ = ["READ", "RefinedSamples", "Refinement", "fuse_mean", "fusion_weights", "implied_light", "refine", "refine_samples", "refinement_shape",
           "region_roundness", "shading_residual", "turned_pixels", "undecided_regions"]


@dataclass(frozen=True)
class Refinement:
    """Settings of :func:`refine` (module docstring); the defaults are the adopted ones."""

    max_resolution: int = 256
    anchor: float = 0.01
    lam: float = 0.1
    anchor_sigma: float = 1.5
    coarse_iters: int = 100
    fine_iters: int = 30
    coarse_side: int = 64
    integrability: float = 0.5
    integrate_every: int = 10
    relight_every: int = 10
    keep_anchor: float = 1.0
    keep_passes: int = 2
    undecided_tilt: float = 0.0
    undecided_roundness: float = 0.8
    contour_light: bool = False
    contour_integrability: float = 0.5
    contour_fuse: float = 0.0

    def __post_init__(self):
        if self.max_resolution < 16:
            raise ValueError(f"refine_max_resolution must be >= 16, got {self.max_resolution}")
        if self.anchor < 0 or self.lam <= 0 or self.anchor_sigma < 0:
            raise ValueError("refinement anchor must be >= 0, lam > 0 and anchor_sigma >= 0")
        if min(self.coarse_iters, self.fine_iters) < 0 or self.integrate_every < 1 or self.relight_every < 0:
            raise ValueError("refinement iteration counts must be >= 0 and integrate_every >= 1")
        if self.keep_anchor < 0 or self.keep_passes < 0:
            raise ValueError("refinement keep_anchor and keep_passes must be >= 0")
        if self.undecided_tilt < 0:
            raise ValueError(f"refine_undecided (undecided_tilt) must be >= 0 (0 turns it off), got {self.undecided_tilt}")
        if not 0 <= self.undecided_roundness <= 1:
            raise ValueError(f"refinement undecided_roundness must lie in [0, 1], got {self.undecided_roundness}")
        if not 0 <= self.integrability < 1:
            raise ValueError(f"refinement integrability must lie in [0, 1), got {self.integrability}")
        if not 0 <= self.contour_integrability < 1:
            raise ValueError(f"refine_contour_integrability must lie in [0, 1), got {self.contour_integrability}")
        if not self.contour_fuse >= 0:
            raise ValueError(f"refine_contour_fuse must be >= 0 (0: the plain mean), got {self.contour_fuse}")
        if not isinstance(self.contour_light, bool):
            raise ValueError(f"refine_contour_light must be true or false, got {self.contour_light!r}")


def implied_light(normals: np.ndarray, image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, float]:
    """``(direction (3,), albedo)`` of the least-squares light ``n . l = I`` over lit
    foreground pixels with non-zero normals; ``((0, 0, 1), max(I))`` when it cannot be fitted."""
    n = np.asarray(normals, np.float64)
    img = np.asarray(image, np.float64)
    use = np.asarray(mask, bool) & (img > 0) & (np.linalg.norm(n, axis=-1) > 0)
    fallback = (np.array([0.0, 0.0, 1.0]), float(img.max()) or 1.0)
    if use.sum() < 3:
        return fallback
    l, *_ = np.linalg.lstsq(n[use], img[use], rcond=None)
    albedo = float(np.linalg.norm(l))
    return (l / albedo, albedo) if albedo > 1e-8 else fallback


def _smooth_normals(n: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing of ``(H, W, 3)`` normals inside ``mask`` (no bleeding), renormalised."""
    if sigma <= 0:
        return n
    m = mask.astype(np.float64)
    num = ndimage.gaussian_filter(n * m[..., None], (sigma, sigma, 0), mode="nearest")
    den = ndimage.gaussian_filter(m, sigma, mode="nearest")
    return normalize(num / np.maximum(den, 1e-8)[..., None])


def _facing(n: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``n`` with degenerate foreground normals set to ``(0, 0, 1)`` and 0 outside ``mask``."""
    n = np.where(mask[..., None], n, 0.0)
    n[mask & ~(np.linalg.norm(n, axis=-1) > 0.5)] = (0.0, 0.0, 1.0)
    return n


#: ``refine(contour=READ)``: read the contour's light in the call (the default)
READ = "read"


def refine(normals: np.ndarray, image: np.ndarray, mask: np.ndarray, settings: Refinement | None = None,
           light: np.ndarray | None = None, albedo: float | None = None, *,
           contour: tuple[np.ndarray, float] | None | str = READ) -> np.ndarray:
    """Refine one sample (module docstring).

    Args:
        normals: ``(H, W, 3)`` sample; image: ``(H, W)`` in [0, 1]; mask: ``(H, W)`` bool.
        light, albedo: default the contour's light with ``settings.contour_light`` on an
            image with a lit occluding contour, else :func:`implied_light` of the sample.
        contour: with ``settings.contour_light``, the contour's ``(light, albedo)`` as
            :func:`mssfs.core.sfs.contour_light` reads it for this image and mask: the
            reading, or None where it found no lit contour (what :func:`refine_samples`
            passes, reading it once per image); :data:`READ` (the default) reads it here.
    Returns:
        ``(H, W, 3)`` float32 unit normals, 0 outside the mask.
    """
    s = settings or Refinement()
    img = np.asarray(image, np.float64)
    mask = np.asarray(mask, bool)
    n0 = np.asarray(normals, np.float64)
    if img.ndim != 2 or n0.shape != img.shape + (3,) or mask.shape != img.shape:
        raise ValueError(f"refine: normals {n0.shape}, image {img.shape} and mask {mask.shape} do not match")
    if not mask.any():
        raise ValueError("refine: the mask is empty")
    if isinstance(contour, str) and contour != READ:
        raise ValueError(f"refine: contour must be a (light, albedo) reading, None or {READ!r}, got {contour!r}")
    relight = s.relight_every if has_occluding_contour(mask) else 0
    keep_passes = s.keep_passes
    fitted = None
    if s.contour_light and light is None and albedo is None:
        fitted = contour_light(img, mask) if isinstance(contour, str) else contour
    integrability = s.integrability
    if fitted is not None:  # the contour fixes the light's side: its reading replaces the sample's
        light, albedo = fitted
        relight, keep_passes, integrability = 0, 0, s.contour_integrability
    if light is None or albedo is None:
        l0, a0 = implied_light(n0, img, mask)
        light = l0 if light is None else light
        albedo = a0 if albedo is None else albedo
    light = normalize(np.asarray(light, np.float64))
    img = np.clip(img / max(float(albedo), 1e-8), 0.0, 1.5)
    weight = np.full(img.shape, float(s.anchor))
    regions = shading_regions(img, mask) if keep_passes or s.undecided_tilt else None
    free = undecided_regions(n0, regions, s.undecided_tilt, s.undecided_roundness)
    weight[free] = 0.0  # no reading to keep: the region takes the shape its shading asks under the light
    s_used = replace(s, integrability=integrability)
    n = _refine_pass(n0, img, mask, s_used, light, relight, weight)
    for _ in range(keep_passes):
        turned = turned_pixels(n0, n, mask, regions) & ~free
        if not turned.any():
            break
        weight = np.where(ndimage.binary_dilation(turned, iterations=2) & mask, max(s.keep_anchor, s.anchor), weight)
        s_used = replace(s, integrability=integrability)
    n = _refine_pass(n0, img, mask, s_used, light, relight, weight)
    return np.where(mask[..., None], n, 0.0).astype(np.float32)


def _refine_pass(n0: np.ndarray, img: np.ndarray, mask: np.ndarray, s: Refinement, light: np.ndarray,
                 relight: int, weight: np.ndarray) -> np.ndarray:
    """One coarse-to-fine solve of :func:`refine` with the ``(H, W)`` anchor weights ``weight``."""
    side = light.copy()
    n = None
    for shape in reversed(pyramid_shapes(img.shape)):
        if shape == img.shape:
            im_l, m_l, s_l = img, mask, n0
        else:
            im_l = resize_map(img, shape)
            m_l = resize_map(mask.astype(np.float64), shape) >= 0.5
            s_l = normalize(resize_map(n0, shape))
        w_l = weight if shape == img.shape else resize_map(weight, shape)
        anchor = _facing(_smooth_normals(_facing(s_l, m_l), m_l, s.anchor_sigma), m_l)
        start = anchor if n is None else _facing(normalize(resize_map(n, shape)), m_l)
        iters = s.coarse_iters if max(shape) <= s.coarse_side else s.fine_iters
        n, light = brooks_horn_level(im_l, m_l, start, light, iters, s.lam, anchor, w_l, s.integrability,
                                     s.integrate_every, relight, keep_side=side)
    return n


def undecided_regions(sample: np.ndarray, regions: np.ndarray | None, tilt: float,
                      min_roundness: float = 0.0) -> np.ndarray:
    """``(H, W)`` bool: the shading regions (labels ``1..R``) that ``sample`` reads neither
    as a bump nor as a dent: their mean radial tilt
    (:func:`mssfs.analysis.regions.radial_tilts`) is below ``tilt`` in magnitude (nearly
    flat, or bump and dent in equal parts); none when ``tilt`` is 0 or there are no regions.

    ``min_roundness``: only regions at least this round count (area over the disc through
    the pixel farthest from the centroid: 1 for a disc, about 0.6 for the rings, star and
    snake stimuli), since the radial tilt reads a disc, not a figure read in parts."""
    if regions is None or tilt <= 0 or regions.max() == 0:
        return np.zeros(np.shape(sample)[:2], bool)
    from ..analysis.regions import radial_tilts

    undecided = np.abs(radial_tilts(sample, regions)) < tilt
    if min_roundness > 0:
        undecided &= region_roundness(regions) >= min_roundness
    return np.isin(regions, np.flatnonzero(undecided) + 1)


def region_roundness(regions: np.ndarray) -> np.ndarray:
    """``(R,)`` area of each region ``1..R`` over the area of the disc about its centroid
    through its farthest pixel (1 for a disc, less for any other shape)."""
    rows, cols = np.mgrid[0 : regions.shape[0], 0 : regions.shape[1]] + 0.5
    out = np.zeros(int(regions.max()))
    for k in range(1, out.size + 1):
        m = regions == k
        if m.any():
            r = np.hypot(rows[m] - rows[m].mean(), cols[m] - cols[m].mean()).max() + 0.5
            out[k - 1] = m.sum() / (np.pi * r**2)
    return out


def turned_pixels(sample: np.ndarray, refined: np.ndarray, mask: np.ndarray,
                  regions: np.ndarray | None = None, cells: int = 16, share: float = 0.5) -> np.ndarray:
    """``(H, W)`` bool: where ``refined`` reads the surface the other way from ``sample``.

    Two readings are compared (both ``(H, W, 3)`` maps of one image):

    * each shading region of ``regions`` (``(H, W)`` labels 1..R, as
      :func:`mssfs.sampler.lighting.shading_regions` gives) read as a bump or a dent by
      :func:`mssfs.analysis.regions.region_readings`; a region whose reading differs is
      turned whole (skipped when some region has no free border to compare with);
    * the :func:`mssfs.analysis.curvature.convexity_readings` on a grid of cells about
      ``cells`` pixels a side: a cell is turned when its sign differs and each map puts at least
      ``share`` of its mean cell curvature there (a weak cell's sign is noise).
    """
    from ..analysis.curvature import convexity_readings
    from ..analysis.regions import region_readings

    mask = np.asarray(mask, bool)
    h, w = mask.shape
    turned = np.zeros((h, w), bool)
    pair = np.stack([sample, refined]).astype(np.float64)
    if regions is not None and regions.max() > 0:
        try:
            read = region_readings(pair, regions, mask)
        except ValueError:
            read = None
        if read is not None:
            for k in np.flatnonzero(read[0] != read[1]):
                turned |= regions == k + 1
    g = max(1, round(max(h, w) / cells))
    r = convexity_readings(pair, mask, grid=g)
    mean = np.abs(r).mean(1, keepdims=True)
    strong = (np.abs(r) >= share * np.maximum(mean, 1e-300)).all(0)
    flip = (strong & (r[0] * r[1] < 0)).reshape(g, g)
    rows = np.linspace(0, h, g + 1).round().astype(int)
    cols = np.linspace(0, w, g + 1).round().astype(int)
    for i, j in zip(*np.nonzero(flip)):
        turned[rows[i] : rows[i + 1], cols[j] : cols[j + 1]] = True
    return turned & mask


def fuse_mean(samples: np.ndarray, mask: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Renormalised mean of ``(N, H, W, 3)`` samples (weighted by ``(N,)`` ``weights`` when
    given), ``(0, 0, 1)`` where they cancel, 0 outside ``mask``."""
    x = np.asarray(samples, np.float64)
    mean = x.mean(0) if weights is None else np.tensordot(np.asarray(weights, np.float64), x, axes=1)
    return _facing(normalize(mean), np.asarray(mask, bool))


def shading_residual(normals: np.ndarray, image: np.ndarray, mask: np.ndarray, light: np.ndarray,
                     albedo: float) -> float:
    """RMS over ``mask`` of ``albedo * max(0, n . light) - image``: how well ``(H, W, 3)``
    normals render the ``(H, W)`` image under a ``(3,)`` unit light."""
    m = np.asarray(mask, bool)
    n = np.asarray(normals, np.float64)[m]
    r = float(albedo) * np.clip(n @ np.asarray(light, np.float64), 0.0, None) - np.asarray(image, np.float64)[m]
    return float(np.sqrt(np.mean(r**2))) if r.size else 0.0


def fusion_weights(residuals, temperature: float) -> np.ndarray:
    """``(N,)`` weights ``exp(-(r - r_min) / (temperature * r_min))`` of residuals ``r``
    (``(N,)``, >= 0), largest 1; all 1 when ``temperature`` is 0 (the plain mean); only the
    samples at ``r_min`` when ``r_min`` is 0 (they render the image exactly)."""
    r = np.asarray(residuals, np.float64)
    if temperature <= 0:
        return np.ones_like(r)
    lo = r.min()
    if lo <= 0:
        return (r <= lo).astype(np.float64)
    return np.exp(-(r - lo) / (temperature * lo))


def refinement_shape(shape: tuple[int, int], max_resolution: int) -> tuple[int, int]:
    """Size the refinement runs at: ``shape``, scaled down so its larger side is at most ``max_resolution``."""
    h, w = shape
    k = min(1.0, max_resolution / max(h, w))
    return max(1, round(h * k)), max(1, round(w * k))


class RefinedSamples(NamedTuple):
    """What :func:`refine_samples` returns."""

    #: ``(N, H, W, 3)`` float32, the refined samples, 0 outside the mask
    refined: np.ndarray
    #: ``(H, W, 3)`` float32, their fused result, 0 outside the mask
    fused: np.ndarray
    #: the contour's ``(light, albedo)`` that every solve and the fusion weights used
    #: (``refine_contour_light`` on an image with a lit occluding contour, read at the
    #: refinement's resolution); None where each sample kept its own light
    contour: tuple[np.ndarray, float] | None


def refine_samples(samples: np.ndarray, image: np.ndarray, mask: np.ndarray,
                   settings: Refinement | None = None) -> RefinedSamples:
    """Refine ``(N, H, W, 3)`` samples of one image and their fused result.

    Runs at :func:`refinement_shape` (the image resized when it is larger than
    ``settings.max_resolution``; the results are resized back).
    """
    s = settings or Refinement()
    x = np.asarray(samples, np.float32)
    img = np.asarray(image, np.float64)
    mask = np.asarray(mask, bool)
    shape = refinement_shape(img.shape, s.max_resolution)
    if shape != img.shape:
        import torch

        small = torch.nn.functional.interpolate(torch.from_numpy(img).float()[None, None], size=shape,
                                                mode="bilinear", align_corners=False, antialias=True)
        im_r = small[0, 0].clamp(0, 1).double().numpy()
        x_r, m_r = resize_normals_array(x, shape, mask)
    else:
        im_r, x_r, m_r = img, x, mask
    fitted = contour_light(im_r, m_r) if s.contour_light else None  # read once for every solve
    refined = np.stack([refine(n, im_r, m_r, s, contour=fitted) for n in x_r])
    weights = None
    if fitted and s.contour_fuse > 0:
        weights = fusion_weights([shading_residual(r, im_r, m_r, *fitted) for r in refined], s.contour_fuse)
    fused = refine(fuse_mean(refined, m_r, weights), im_r, m_r, s, contour=fitted)
    if shape != img.shape:
        refined = resize_normals_array(refined, img.shape, m_r)[0]
        fused = resize_normals_array(fused, img.shape, m_r)[0]
        refined = np.stack([_facing(r.astype(np.float64), mask) for r in refined])
        fused = _facing(fused.astype(np.float64), mask)
    return RefinedSamples(refined.astype(np.float32), fused.astype(np.float32), fitted)
