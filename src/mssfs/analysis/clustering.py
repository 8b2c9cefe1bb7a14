"""Grouping samples into interpretations (modes) by agglomerative clustering.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .curvature import FLAT_LEVEL, READING_THRESHOLD, convexity_readings, curvature_level
from .distances import NORMAL_THRESHOLD_DEG, normal_distances, reading_distances, sign_distances

__all__ = ["INVERSION_CORRELATION", "Clustering", "cluster_samples", "mode_correlation"]


#: The two largest modes are a reading and its inversion when the image-plane parts of
#: their medoids correlate at most this (:func:`mode_correlation`; -1 for an exact
#: convex/concave inversion, about 0 for unrelated readings, +1 for the same reading).
INVERSION_CORRELATION = -0.5


#: What :func:`cluster_samples` can compare samples by.
FEATURES = ("auto", "signs", "readings", "normals")


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
            ``"readings"`` (the same readings by :func:`reading_distances`), ``"normals"``
            (downsampled maps) or ``"auto"`` (signs unless the samples are essentially flat,
            then normals).
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


def mode_correlation(normals: np.ndarray, mask: np.ndarray, clustering: Clustering) -> float | None:
    """Correlation of the image-plane normals of the two largest modes' medoids.

    ``sum(a_xy . b_xy) / sqrt(sum |a_xy|^2 sum |b_xy|^2)`` over the mask, with ``a`` and
    ``b`` the medoid samples (:attr:`Clustering.representatives`) of modes 0 and 1 of
    ``(N, H, W, 3)`` ``normals``.  The convex/concave inversion of a reading negates
    ``n_x`` and ``n_y``, so a reading and its inversion give about -1
    (:data:`INVERSION_CORRELATION` is the cut).  None with fewer than two modes or a flat medoid.
    """
    if clustering.n_modes < 2:
        return None
    m = np.asarray(mask, bool)
    a, b = (np.asarray(normals[i], np.float64)[m][:, :2] for i in clustering.representatives[:2])
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 1e-12 else None
