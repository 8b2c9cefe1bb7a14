"""Distances between samples: by reading signs, by readings (L1) and by normals.
"""

from __future__ import annotations

import numpy as np

from ..core.resize import resize_normals_array

__all__ = ["normal_distances", "reading_distances", "sign_distances"]


#: Default cut (degrees) for the fallback distance on downsampled normal maps.
NORMAL_THRESHOLD_DEG = 15.0


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
    small, m = resize_normals_array(normals, (size, size), mask)
    if not m.any():
        m = np.ones_like(m)
    v = small[:, m].astype(np.float64)  # (N, P, 3)
    cos = np.einsum("ipc,jpc->ijp", v, v)
    return np.degrees(np.arccos(np.clip(cos, -1, 1))).mean(-1)
