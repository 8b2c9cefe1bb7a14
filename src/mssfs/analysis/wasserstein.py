"""Exact Wasserstein distance between two sample sets.
"""

from __future__ import annotations

import numpy as np

from ..core.resize import resize_normals_array

__all__ = ["wasserstein"]


def wasserstein(a: np.ndarray, b: np.ndarray, mask_a=None, mask_b=None) -> float:
    """Exact Wasserstein-1 (earth mover's) distance between two sets of normal maps.

    Each set is a uniform empirical distribution over its flattened maps; the ground cost
    is the Euclidean distance between maps (POT ``ot.emd2``).  If the two differ in size,
    both are resized to the smaller height and width (:func:`resize_normals_array`).

    Args:
        a: ``(N, H, W, 3)``; b: ``(M, H', W', 3)``; masks optional.
    """
    import ot

    a, b = np.asarray(a), np.asarray(b)
    if a.shape[1:3] != b.shape[1:3]:
        size = (min(a.shape[1], b.shape[1]), min(a.shape[2], b.shape[2]))
        a, _ = resize_normals_array(a, size, mask_a)
        b, _ = resize_normals_array(b, size, mask_b)
    x = a.reshape(a.shape[0], -1).astype(np.float64)
    y = b.reshape(b.shape[0], -1).astype(np.float64)
    cost = ot.dist(x, y, metric="euclidean")
    wa = np.full(x.shape[0], 1.0 / x.shape[0])
    wb = np.full(y.shape[0], 1.0 / y.shape[0])
    return float(ot.emd2(wa, wb, cost))
