"""Surface geometry in the one frame mssfs uses everywhere.

The frame (docs/method.md#conventions)
------------------------
* Images are grayscale floats in [0, 1], shape ``(H, W)``, row 0 at the top.
* Normals are unit vectors, shape ``(H, W, 3)`` for one map and ``(N, H, W, 3)`` for N.
  ``x`` points right (increasing column), ``y`` points **up** (decreasing row) and ``z``
  points toward the viewer.  Light directions live in the same frame.
* Background pixels have the normal ``(0, 0, 0)`` and intensity 0.
* Slopes: ``p = -nx / nz = dz/dx`` and ``q = -ny / nz = dz/dy`` with ``y`` up, so moving
  one row *down* the image changes the height by ``-q``.
* A normal-map PNG stores ``(n + 1) / 2`` as RGB (8 or 16 bit); background is stored as
  mid-grey ``(0.5, 0.5, 0.5)`` and read back as ``(0, 0, 0)`` when a mask is given.

All functions here work on NumPy arrays (float32 or float64) and keep the input dtype.
The differentiable losses used during sampling live in :mod:`mssfs.sampler.guidance`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["foreground_mask", "integrability_residual", "normalize", "normals_to_slopes", "slopes_to_normals"]


def normalize(n: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """Scale vectors along the last axis to unit length; zero vectors stay zero.

    Args:
        n: ``(..., 3)`` array.
    Returns:
        Array of the same shape and dtype.
    """
    n = np.asarray(n)
    length = np.linalg.norm(n, axis=-1, keepdims=True)
    out = np.where(length > eps, n / np.maximum(length, eps), 0.0)
    return out.astype(n.dtype if np.issubdtype(n.dtype, np.floating) else np.float64)


def foreground_mask(n: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Boolean ``(..., H, W)`` mask of the pixels whose normal is not the zero vector."""
    return np.linalg.norm(np.asarray(n), axis=-1) > eps


def normals_to_slopes(n: np.ndarray, clamp: float | None = None, min_nz: float = 1e-3):
    """Height slopes ``(p, q) = (-nx/nz, -ny/nz)`` of a normal map (``y`` up).

    ``nz`` is floored at ``min_nz`` so grazing normals give large but finite slopes;
    ``clamp`` optionally limits ``|p|, |q|``.  Returns two ``(..., H, W)`` arrays.
    """
    n = np.asarray(n)
    nz = np.maximum(n[..., 2], min_nz)
    p, q = -n[..., 0] / nz, -n[..., 1] / nz
    if clamp is not None:
        p, q = np.clip(p, -clamp, clamp), np.clip(q, -clamp, clamp)
    return p, q


def slopes_to_normals(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Unit normals ``(-p, -q, 1) / |.|`` from slopes; inverse of :func:`normals_to_slopes`."""
    n = np.stack([-p, -q, np.ones_like(p)], axis=-1)
    return normalize(n)


def integrability_residual(p: np.ndarray, q: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Discrete curl ``dp/dy - dq/dx`` on every 2x2 cell, ``(..., H-1, W-1)``.

    For slopes of a real height field it vanishes (up to discretisation).  With ``y`` up,
    ``dp/dy`` over a cell is (top row - bottom row).  Cells touching the outside of
    ``mask`` are set to 0.
    """
    p00, p01, p10, p11 = p[..., :-1, :-1], p[..., :-1, 1:], p[..., 1:, :-1], p[..., 1:, 1:]
    q00, q01, q10, q11 = q[..., :-1, :-1], q[..., :-1, 1:], q[..., 1:, :-1], q[..., 1:, 1:]
    dp_dy = 0.5 * ((p00 + p01) - (p10 + p11))
    dq_dx = 0.5 * ((q01 + q11) - (q00 + q10))
    curl = dp_dy - dq_dx
    if mask is not None:
        m = mask[..., :-1, :-1] & mask[..., :-1, 1:] & mask[..., 1:, :-1] & mask[..., 1:, 1:]
        curl = np.where(m, curl, 0.0)
    return curl
