"""Seeing and measuring a distribution of sampled normal maps (DESIGN.md §9, §10).

A *sample set* is what ``mssfs sample`` writes into one folder: ``normals.npy``
``(N, H, W, 3)``, ``lights.npy`` ``(N, 3)``, ``image.npy`` ``(H, W)``, ``mask.npy``
``(H, W)`` and ``meta.json``.  This module reads such folders and measures them:

* **Interpretations (modes).**  Each sample is summarised by its *convexity readings*: the
  mean curvature ``H = div(nx, ny) / 2`` (positive on bumps, negative in dents), computed
  from normals smoothed by a Gaussian of 2% of the image size, and averaged over a
  coarse ``grid x grid`` cell layout (16x16).  Two samples that read the same regions as
  bumps and dents have readings of the same signs; reading one region the other way round
  flips the sign of that region's cells.  The distance between two samples
  (:func:`sign_distances`, since stop 22) is the share of the curvature they have in common
  that they read with opposite signs: with ``a``, ``b`` scaled to unit L1 mass,

      d(a, b) = sum_c min(|a_c|, |b_c|) [sign a_c != sign b_c] / sum_c min(|a_c|, |b_c|)

  (0 = same reading, 1 = full inversion), so it depends neither on how strongly curved each
  surface is nor on how the curvature is spread over the regions (one sample drawing a
  disc whole, another its rim only), and reading a region the other way round adds about
  that region's share of the shared curvature.  ``features="readings"`` gives the L1
  distance used before, ``1/2 sum |a / |a|_1 - b / |b|_1|``.  Samples are grouped by
  average linkage agglomerative clustering, cut at ``threshold`` (default 0.2: a
  difference in about a fifth of the curved area makes a new interpretation) or into a
  fixed number of modes.  Small changes of shape, noise and the strength of relief move
  ``d`` little.  When the samples are essentially flat (:func:`curvature_level`, the mean
  absolute cell reading times the smaller image side, has a median over samples below
  ``FLAT_LEVEL`` = 0.25), the features fall back to normal maps downsampled to 16x16 with
  the mean angle between them (degrees, threshold 15) as distance.  The level is
  dimensionless, so resizing a sample set does not change the decision (a hemisphere
  filling the frame has about 1.5; generated bump/dent layouts 0.4 to 2; the cut equals the
  former 0.002 / pixel at 128 pixels).
* **Mode summaries.**  Share (fraction of samples), a representative (the medoid: the
  member with the smallest summed distance to the other members) and the mean implied light.
* **Per-pixel spread.**  The angular standard deviation ``sqrt(mean_i angle(n_i, m)^2)``
  (degrees) around the normalised mean normal ``m``; 0 where all samples agree.
* **Embedding.**  t-SNE of the maps resized to 32x32 (when N >= 10, perplexity
  ``min(30, (N - 1) / 3)``), PCA for fewer samples.
* **Wasserstein distance** between two sample sets: exact optimal transport (POT ``emd2``)
  between the uniform empirical distributions of flattened normal maps with Euclidean cost;
  sets of different size are resized to the smaller height and width first.
* **Stimulus scoring.**  :func:`region_readings` reads each known region as a bump (+1) or
  a dent (-1) from the integrated height, and :func:`consistency` tells whether a sample's
  readings agree with one light: the true layout (0), its full inversion (1) or neither.
  :func:`generated_bump_dent_layout` draws random bump/dent images with a known layout.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from .geometry import (
    angular_error,
    depth_from_normals,
    foreground_mask,
    normalize,
    normals_from_depth,
)
from .lighting import estimate_light
from .render import render

__all__ = [
    "Analysis",
    "BumpDentLayout",
    "Clustering",
    "SampleSet",
    "SampleSetError",
    "analyze",
    "angular_spread",
    "bump_dent_relief",
    "cluster_samples",
    "consistency",
    "convexity_readings",
    "curvature_level",
    "embed",
    "find_sample_folders",
    "generated_bump_dent_layout",
    "implied_lights",
    "light_angles",
    "load_sample_set",
    "mean_curvature",
    "normal_distances",
    "reading_distances",
    "region_readings",
    "resize_normals",
    "sign_distances",
    "wasserstein",
]

#: Default cut of the sign and reading distances that separates interpretations.
READING_THRESHOLD = 0.2
#: Median :func:`curvature_level` (mean |reading| x smaller image side, dimensionless)
#: below which samples count as essentially flat.
FLAT_LEVEL = 0.25
#: Default cut (degrees) for the fallback distance on downsampled normal maps.
NORMAL_THRESHOLD_DEG = 15.0
#: What :func:`cluster_samples` can compare samples by.
FEATURES = ("auto", "signs", "readings", "normals")


class SampleSetError(ValueError):
    """A sample folder that cannot be analysed; the message names the file and problem."""


# --------------------------------------------------------------------------- loading


@dataclass
class SampleSet:
    """One folder written by ``mssfs sample``.

    Attributes:
        path: the folder.
        normals: ``(N, H, W, 3)`` float32.
        mask: ``(H, W)`` bool (from ``mask.npy``, else the union of the foregrounds).
        image: ``(H, W)`` float32 or None when ``image.npy`` is absent.
        lights: ``(N, 3)`` float32 or None when ``lights.npy`` is absent.
        meta: the parsed ``meta.json`` (empty when absent).
    """

    path: Path
    normals: np.ndarray
    mask: np.ndarray
    image: np.ndarray | None = None
    lights: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.meta.get("stem") or self.path.name)


def find_sample_folders(path: str | Path) -> list[Path]:
    """The sample folders at ``path``: itself if it holds ``normals.npy``, else its
    immediate sub-folders that do (sorted by name).

    Raises :class:`SampleSetError` when ``path`` is missing, not a folder or holds none.
    """
    path = Path(path)
    if not path.exists():
        raise SampleSetError(f"{path}: no such folder")
    if not path.is_dir():
        raise SampleSetError(f"{path}: is a file, not a sample folder")
    if (path / "normals.npy").is_file():
        return [path]
    found = sorted(p for p in path.iterdir() if p.is_dir() and (p / "normals.npy").is_file())
    if not found:
        raise SampleSetError(
            f"{path}: no samples found (expected normals.npy here or in its sub-folders, as written by 'mssfs sample')"
        )
    return found


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except Exception as exc:  # corrupt or not an NPY file
        raise SampleSetError(f"{path}: could not be read ({type(exc).__name__}: {exc})") from exc


def load_sample_set(folder: str | Path) -> SampleSet:
    """Read and check one sample folder (see :class:`SampleSet`)."""
    folder = Path(folder)
    if not (folder / "normals.npy").is_file():
        raise SampleSetError(f"{folder}: normals.npy is missing; is this a folder written by 'mssfs sample'?")
    normals = _load_npy(folder / "normals.npy")
    if normals.ndim == 3 and normals.shape[-1] == 3:
        normals = normals[None]
    if normals.ndim != 4 or normals.shape[-1] != 3 or normals.shape[0] == 0:
        raise SampleSetError(f"{folder / 'normals.npy'}: expected shape (N, H, W, 3), got {normals.shape}")
    if not np.issubdtype(normals.dtype, np.floating) or not np.all(np.isfinite(normals)):
        raise SampleSetError(f"{folder / 'normals.npy'}: normals must be finite floating-point values")
    normals = normals.astype(np.float32)
    n, h, w, _ = normals.shape

    def optional(name: str, shape: tuple) -> np.ndarray | None:
        p = folder / name
        if not p.is_file():
            return None
        arr = _load_npy(p)
        if arr.shape != shape:
            raise SampleSetError(f"{p}: expected shape {shape} to match normals.npy, got {arr.shape}")
        if arr.dtype != bool and not np.all(np.isfinite(arr)):
            raise SampleSetError(f"{p}: contains NaN or infinite values")
        return arr

    mask = optional("mask.npy", (h, w))
    mask = foreground_mask(normals).any(0) if mask is None else mask.astype(bool)
    if not mask.any():
        raise SampleSetError(f"{folder}: the mask is empty; there is nothing to analyse")
    image = optional("image.npy", (h, w))
    lights = optional("lights.npy", (n, 3))
    meta = {}
    if (folder / "meta.json").is_file():
        try:
            meta = json.loads((folder / "meta.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise SampleSetError(f"{folder / 'meta.json'}: not valid JSON ({exc})") from exc
    return SampleSet(
        path=folder,
        normals=normals,
        mask=mask,
        image=None if image is None else image.astype(np.float32),
        lights=None if lights is None else lights.astype(np.float32),
        meta=meta if isinstance(meta, dict) else {},
    )


# --------------------------------------------------------------------------- helpers


def resize_normals(normals: np.ndarray, size: tuple[int, int], mask: np.ndarray | None = None):
    """Resize normal maps with antialiasing and renormalise.

    Args:
        normals: ``(N, H, W, 3)`` or ``(H, W, 3)``.
        size: ``(h, w)`` target.
        mask: ``(H, W)`` foreground; defaults to the union of non-zero normals.
    Returns:
        ``(normals, mask)``: resized normals (same leading shape, float32) with ``(0, 0, 0)``
        where less than half of the resized pixel was foreground, and that ``(h, w)`` mask.
    """
    import torch
    import torch.nn.functional as F

    single = normals.ndim == 3
    x = np.asarray(normals, np.float32)[None] if single else np.asarray(normals, np.float32)
    if mask is None:
        mask = foreground_mask(x).any(0)
    h, w = size
    if x.shape[1:3] == (h, w):
        out, m = x, np.asarray(mask, bool)
    else:
        t = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2)
        mt = torch.from_numpy(np.asarray(mask, np.float32))[None, None]
        down = h <= x.shape[1] and w <= x.shape[2]
        kw = {"mode": "bilinear", "align_corners": False, "antialias": down}
        out = F.interpolate(t, size=(h, w), **kw).permute(0, 2, 3, 1).numpy()
        m = F.interpolate(mt, size=(h, w), **kw)[0, 0].numpy() >= 0.5
    out = np.where(m[..., None], normalize(out), 0.0).astype(np.float32)
    return (out[0] if single else out), m


def implied_lights(normals: np.ndarray, image: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """:func:`mssfs.lighting.estimate_light` (least squares ``n . l = I`` over lit pixels)
    for each of ``(N, H, W, 3)`` maps; returns ``(N, 3)`` (zeros where not estimable)."""
    return np.stack([estimate_light(n, image, mask) for n in normals])


def light_angles(light: np.ndarray) -> tuple[float, float]:
    """``(slant, tilt)`` in degrees of a ``(3,)`` light: angle from the view direction,
    and image-plane direction counter-clockwise from +x (90 = from above)."""
    l = np.asarray(light, np.float64)
    l = l / max(np.linalg.norm(l), 1e-12)
    return float(np.degrees(np.arccos(np.clip(l[2], -1, 1)))), float(np.degrees(np.arctan2(l[1], l[0])))


def _smooth_masked(x: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    """Normalised Gaussian smoothing of ``(..., H, W)`` inside ``mask`` (no bleeding)."""
    if sigma <= 0:
        return x
    axes_sigma = (0,) * (x.ndim - 2) + (sigma, sigma)
    m = mask.astype(np.float64)
    num = ndimage.gaussian_filter(x * m, axes_sigma, mode="nearest")
    den = ndimage.gaussian_filter(np.broadcast_to(m, x.shape), axes_sigma, mode="nearest")
    return np.where(mask, num / np.maximum(den, 1e-8), 0.0)


# --------------------------------------------------------------------------- modes


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


def reading_distances(readings: np.ndarray) -> np.ndarray:
    """Pairwise distances ``(N, N)`` in [0, 1] between ``(N, F)`` readings: half the L1
    distance between the readings scaled to unit L1 mass (0 for proportional readings)."""
    r = np.asarray(readings, np.float64)
    mass = np.abs(r).sum(1, keepdims=True)
    r = np.where(mass > 0, r / np.maximum(mass, 1e-300), 0.0)
    return 0.5 * np.abs(r[:, None, :] - r[None, :, :]).sum(-1)


def sign_distances(readings: np.ndarray) -> np.ndarray:
    """Pairwise distances ``(N, N)`` in [0, 1] between ``(N, F)`` readings: the share of
    the curvature two samples have in common that they read with opposite signs.

    With ``a``, ``b`` the readings scaled to unit L1 mass and ``w_c = min(|a_c|, |b_c|)``
    the curvature both put in cell ``c``,

        d(a, b) = sum_c w_c [sign a_c != sign b_c] / sum_c w_c

    0 when every shared cell has the same sign (however the strength is spread over the
    cells), 1 for the full convex/concave inversion, and 1 when the two share no curved
    cell.  Unlike :func:`reading_distances` it does not grow when two samples read the
    same regions the same way with the curvature spread differently among them (one disc
    drawn whole, another by its rim), which is how samples of one reading differ.
    """
    r = np.asarray(readings, np.float64)
    a = np.abs(r)
    mass = a.sum(1, keepdims=True)
    a = np.where(mass > 0, a / np.maximum(mass, 1e-300), 0.0)
    sign = np.sign(r)
    n = r.shape[0]
    d = np.ones((n, n))
    for i in range(n):
        w = np.minimum(a[i], a)  # (N, F)
        shared = w.sum(1)
        opposite = (w * (sign[i] * sign < 0)).sum(1)
        d[i] = np.where(shared > 0, opposite / np.maximum(shared, 1e-300), 1.0)
    d = np.maximum(d, d.T)
    np.fill_diagonal(d, 0.0)
    return d


def normal_distances(normals: np.ndarray, mask: np.ndarray, size: int = 16) -> np.ndarray:
    """Pairwise mean angle (degrees) ``(N, N)`` between maps downsampled to ``size x size``."""
    small, m = resize_normals(normals, (size, size), mask)
    if not m.any():
        m = np.ones_like(m)
    v = small[:, m].astype(np.float64)  # (N, P, 3)
    cos = np.einsum("ipc,jpc->ijp", v, v)
    return np.degrees(np.arccos(np.clip(cos, -1, 1))).mean(-1)


@dataclass
class Clustering:
    """Samples grouped into interpretations.

    Attributes:
        labels: ``(N,)`` int mode of each sample; mode 0 is the most frequent.
        shares: ``(K,)`` fraction of samples in each mode.
        representatives: ``(K,)`` index of each mode's medoid sample.
        distances: ``(N, N)`` the distance matrix used.
        features: ``"signs"``, ``"readings"`` or ``"normals"``.
        threshold: the cut used (None when the number of modes was fixed).
        levels: ``(N,)`` :func:`curvature_level` of each sample (the flat fallback
            compares their median with ``FLAT_LEVEL``).
    """

    labels: np.ndarray
    shares: np.ndarray
    representatives: np.ndarray
    distances: np.ndarray
    features: str
    threshold: float | None
    levels: np.ndarray

    @property
    def n_modes(self) -> int:
        return int(self.shares.size)


def cluster_samples(
    normals: np.ndarray,
    mask: np.ndarray,
    modes: int | str = "auto",
    features: str = "auto",
    threshold: float | None = None,
    grid: int = 16,
) -> Clustering:
    """Group ``(N, H, W, 3)`` samples into interpretations (see the module docstring).

    Args:
        modes: ``"auto"`` (cut the tree at ``threshold``) or a fixed number of modes.
        features: ``"signs"`` (convexity readings compared by :func:`sign_distances`),
            ``"readings"`` (the same readings by :func:`reading_distances`, the default
            before stop 22), ``"normals"`` (downsampled maps) or ``"auto"`` (signs unless
            the samples are essentially flat, then normals).
        threshold: distance cut; default 0.2 for signs and readings, 15 degrees for normals.
    """
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    normals = np.asarray(normals)
    n = normals.shape[0]
    if features not in FEATURES:
        raise ValueError(f"unknown features {features!r}; use one of: {', '.join(map(repr, FEATURES))}")
    r = convexity_readings(normals, mask, grid=grid)
    levels = curvature_level(r, normals.shape[1:3])
    if features == "auto":
        features = "normals" if np.median(levels) < FLAT_LEVEL else "signs"
    if features == "signs":
        dist = sign_distances(r)
    elif features == "readings":
        dist = reading_distances(r)
    else:
        dist = normal_distances(normals, mask)
    if threshold is None:
        threshold = NORMAL_THRESHOLD_DEG if features == "normals" else READING_THRESHOLD
    if n == 1:
        raw = np.ones(1, int)
    else:
        tree = linkage(squareform(dist, checks=False), method="average")
        if modes == "auto":
            raw = fcluster(tree, t=threshold, criterion="distance")
        else:
            k = int(modes)
            if k < 1:
                raise ValueError(f"the number of modes must be at least 1, got {k}")
            raw = fcluster(tree, t=min(k, n), criterion="maxclust")
    # Order modes by size (ties: earliest member first) so mode 0 is the most common.
    groups = sorted((np.flatnonzero(raw == c) for c in np.unique(raw)), key=lambda g: (-g.size, g[0]))
    labels = np.empty(n, int)
    reps = []
    for k, members in enumerate(groups):
        labels[members] = k
        within = dist[np.ix_(members, members)].sum(1)
        reps.append(int(members[np.argmin(within)]))
    shares = np.array([g.size / n for g in groups])
    cut = threshold if modes == "auto" else None
    return Clustering(labels, shares, np.array(reps), dist, features, cut, levels)


# --------------------------------------------------------------------------- spread, embedding


def angular_spread(normals: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Per-pixel angular standard deviation (degrees) of ``(N, H, W, 3)`` samples around
    their normalised mean: ``sqrt(mean_i angle(n_i, m)^2)``.  Returns ``(H, W)``, NaN
    outside the mask."""
    normals = np.asarray(normals, np.float64)
    if mask is None:
        mask = foreground_mask(normals).any(0)
    mean = normalize(normals.mean(0))
    ang = angular_error(normals, np.broadcast_to(mean, normals.shape), mask)
    return np.sqrt(np.mean(ang**2, axis=0))


def embed(normals: np.ndarray, mask: np.ndarray, seed: int = 0) -> tuple[np.ndarray, str]:
    """2-D embedding of ``(N, H, W, 3)`` maps resized to 32x32: t-SNE when N >= 10
    (perplexity ``min(30, (N - 1) / 3)``), PCA for 2 <= N < 10.

    Returns ``((N, 2) coordinates, method name)``.
    """
    n = normals.shape[0]
    if n == 1:
        return np.zeros((1, 2)), "none"
    small, _ = resize_normals(normals, (32, 32), mask)
    x = small.reshape(n, -1).astype(np.float64)
    if n >= 10:
        from sklearn.manifold import TSNE

        perplexity = min(30.0, (n - 1) / 3.0)
        y = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
        return y, f"t-SNE (perplexity {perplexity:.1f})"
    from sklearn.decomposition import PCA

    y = PCA(n_components=min(2, n), random_state=seed).fit_transform(x)
    if y.shape[1] < 2:
        y = np.pad(y, ((0, 0), (0, 2 - y.shape[1])))
    return y, "PCA"


def wasserstein(a: np.ndarray, b: np.ndarray, mask_a=None, mask_b=None) -> float:
    """Exact Wasserstein-1 (earth mover's) distance between two sets of normal maps.

    Each set is a uniform empirical distribution over its flattened maps; the ground cost
    is the Euclidean distance between maps (POT ``ot.emd2``).  If the two differ in size,
    both are resized to the smaller height and width (:func:`resize_normals`).

    Args:
        a: ``(N, H, W, 3)``; b: ``(M, H', W', 3)``; masks optional.
    """
    import ot

    a, b = np.asarray(a), np.asarray(b)
    if a.shape[1:3] != b.shape[1:3]:
        size = (min(a.shape[1], b.shape[1]), min(a.shape[2], b.shape[2]))
        a, _ = resize_normals(a, size, mask_a)
        b, _ = resize_normals(b, size, mask_b)
    x = a.reshape(a.shape[0], -1).astype(np.float64)
    y = b.reshape(b.shape[0], -1).astype(np.float64)
    cost = ot.dist(x, y, metric="euclidean")
    wa = np.full(x.shape[0], 1.0 / x.shape[0])
    wb = np.full(y.shape[0], 1.0 / y.shape[0])
    return float(ot.emd2(wa, wb, cost))


# --------------------------------------------------------------------------- stimulus scoring


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

    The normals are integrated to a height map (:func:`mssfs.geometry.depth_from_normals`);
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


@dataclass
class BumpDentLayout:
    """A generated relief of bumps and dents with everything known.

    Attributes:
        image: ``(H, W)`` float64 rendering in [0, 1].
        normals: ``(H, W, 3)`` true normals; mask: ``(H, W)`` bool (the whole frame).
        regions: ``(H, W)`` int labels 1..R (0 = flat ground); layout: ``(R,)`` int8,
        +1 bump / -1 dent; light: ``(3,)`` unit light; height: ``(H, W)`` pixels.
    """

    image: np.ndarray
    normals: np.ndarray
    mask: np.ndarray
    regions: np.ndarray
    layout: np.ndarray
    light: np.ndarray
    height: np.ndarray


def bump_dent_relief(features, signs, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Height ``(size, size)`` (pixels) and int32 region labels 1..R (0 = flat ground) of
    round features ``(cy, cx, r)`` (pixels) with ``signs`` +1 bump / -1 dent, each with the
    profile ``h(r) = s * 0.6 R (1 - (r/R)^2)^2`` (smooth at the rim)."""
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    height = np.zeros((size, size))
    regions = np.zeros((size, size), np.int32)
    for k, ((cy, cx, r), s) in enumerate(zip(features, signs), start=1):
        rho2 = ((rows - cy) ** 2 + (cols - cx) ** 2) / r**2
        inside = rho2 < 1
        height += np.where(inside, s * 0.6 * r * (1 - rho2) ** 2, 0.0)
        regions[inside] = k
    return height, regions


def generated_bump_dent_layout(seed: int, size: int = 128) -> BumpDentLayout:
    """Random bumps and dents on flat ground, rendered under a random light.

    2 to 6 round features (at least one bump and one dent) with radii between 8% and 18%
    of ``size`` at random non-overlapping positions (gap of 3 pixels or more), profile
    ``h(r) = s * 0.6 R (1 - (r/R)^2)^2`` (smooth at the rim; ``s`` = +1 bump, -1 dent),
    lit from a random direction 25 to 55 degrees from the view direction.  Unlike the
    circles stimulus, counts, sizes and light vary with ``seed``.
    """
    if size < 32:
        raise ValueError(f"size must be at least 32 pixels, got {size}")
    rng = np.random.default_rng(seed)
    count = int(rng.integers(2, 7))
    placed: list[tuple[float, float, float]] = []
    for _ in range(10000):
        if len(placed) == count:
            break
        r = rng.uniform(0.08, 0.18) * size
        cy, cx = rng.uniform(r + 2, size - r - 2, size=2)
        if all(math.hypot(cx - x, cy - y) > r + rr + 3 for y, x, rr in placed):
            placed.append((cy, cx, r))
    signs = rng.choice([-1, 1], size=len(placed))
    if len(placed) >= 2 and abs(signs.sum()) == len(placed):
        signs[rng.integers(len(placed))] *= -1
    height, regions = bump_dent_relief(placed, signs, size)
    slant = np.radians(rng.uniform(25, 55))
    tilt = rng.uniform(0, 2 * np.pi)
    light = np.array([np.sin(slant) * np.cos(tilt), np.sin(slant) * np.sin(tilt), np.cos(slant)])
    mask = np.ones((size, size), bool)
    normals = normals_from_depth(height, mask)
    image = render(normals, light)
    return BumpDentLayout(image, normals, mask, regions, signs.astype(np.int8), light, height)


# --------------------------------------------------------------------------- whole report


@dataclass
class Analysis:
    """Everything :func:`analyze` measures on one sample set.

    Attributes:
        clustering: the modes (:class:`Clustering`).
        lights: ``(N, 3)`` light implied by each sample; ``lights_source`` says whether
            they came from ``lights.npy`` or were estimated here (:func:`mssfs.lighting.estimate_light`).
        spread: ``(H, W)`` per-pixel angular spread of all samples (degrees, NaN outside).
        mode_spread: ``(K,)`` mean spread inside each mode (degrees).
        embedding: ``(N, 2)`` coordinates; ``embedding_method`` names the method.
    """

    clustering: Clustering
    lights: np.ndarray
    lights_source: str
    spread: np.ndarray
    mode_spread: np.ndarray
    embedding: np.ndarray
    embedding_method: str

    def to_json(self, samples: SampleSet) -> dict:
        """JSON-ready summary (the content of ``report.json``)."""
        c = self.clustering
        modes = []
        for k in range(c.n_modes):
            members = np.flatnonzero(c.labels == k)
            light = normalize(self.lights[members].mean(0))
            slant, tilt = light_angles(light)
            modes.append(
                {
                    "mode": k,
                    "share": float(c.shares[k]),
                    "count": int(members.size),
                    "members": members.tolist(),
                    "representative": int(c.representatives[k]),
                    "mean_light": [round(float(v), 6) for v in light],
                    "light_slant_deg": round(slant, 3),
                    "light_tilt_deg": round(tilt, 3),
                    "mean_spread_deg": float(self.mode_spread[k]),
                }
            )
        s = self.spread[np.isfinite(self.spread)]
        return {
            "folder": str(samples.path),
            "stem": samples.name,
            "n_samples": int(samples.normals.shape[0]),
            "size": list(samples.normals.shape[1:3]),
            "n_modes": c.n_modes,
            "modes": modes,
            "labels": c.labels.tolist(),
            "clustering": {
                "features": c.features,
                "distance": "half L1 distance between convexity readings scaled to unit mass"
                if c.features == "readings"
                else "mean angle between 16x16 maps (degrees)",
                "linkage": "average",
                "threshold": c.threshold,
                "curvature_level": {
                    "per_sample": np.round(c.levels, 4).tolist(),
                    "median": float(np.median(c.levels)),
                    "flat_below": FLAT_LEVEL,
                },
            },
            "spread_deg": {
                "mean": float(s.mean()),
                "median": float(np.median(s)),
                "p95": float(np.percentile(s, 95)),
                "max": float(s.max()),
            },
            "lights": {"source": self.lights_source, "per_sample": np.round(self.lights, 6).tolist()},
            "embedding": {"method": self.embedding_method, "coords": np.round(self.embedding, 4).tolist()},
        }


def analyze(
    samples: SampleSet, modes: int | str = "auto", features: str = "auto", threshold: float | None = None
) -> Analysis:
    """Cluster, measure spread, lights and embedding of one :class:`SampleSet`."""
    n = samples.normals
    clustering = cluster_samples(n, samples.mask, modes=modes, features=features, threshold=threshold)
    if samples.lights is not None:
        lights, source = normalize(samples.lights.astype(np.float64)), "lights.npy"
    elif samples.image is not None:
        lights, source = implied_lights(n, samples.image, samples.mask), "estimated (least squares n.l = I)"
    else:
        lights, source = np.tile([0.0, 0.0, 1.0], (n.shape[0], 1)), "unknown (no lights.npy or image.npy)"
    spread = angular_spread(n, samples.mask)
    mode_spread = []
    for k in range(clustering.n_modes):
        members = clustering.labels == k
        mode_spread.append(float(np.nanmean(angular_spread(n[members], samples.mask))))
    coords, method = embed(n, samples.mask)
    return Analysis(clustering, lights, source, spread, np.array(mode_spread), coords, method)
