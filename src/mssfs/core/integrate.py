"""Integrating normals to depth (Frankot-Chellappa, masked Poisson) and normals from depth.

Same frame and slope convention as :mod:`mssfs.core.frame`.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from .frame import foreground_mask, normals_to_slopes, slopes_to_normals

__all__ = ["PoissonIntegrator", "depth_from_normals", "normals_from_depth"]


def _frankot_chellappa(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    h, w = p.shape
    # Mirror-pad to make the field periodic (reduces boundary artefacts).
    pp = np.block([[p, -p[:, ::-1]], [p[::-1, :], -p[::-1, ::-1]]])
    # q is dz/dy with y up, i.e. -dz/drow.  Mirroring rows flips the sign of d/drow.
    qr = -q  # dz/drow
    qq = np.block([[qr, qr[:, ::-1]], [-qr[::-1, :], -qr[::-1, ::-1]]])
    H, W = pp.shape
    u = np.fft.fftfreq(W) * 2 * np.pi
    v = np.fft.fftfreq(H) * 2 * np.pi
    U, V = np.meshgrid(u, v)
    P, Q = np.fft.fft2(pp), np.fft.fft2(qq)
    denom = U**2 + V**2
    denom[0, 0] = 1.0
    Z = (-1j * U * P - 1j * V * Q) / denom
    Z[0, 0] = 0.0
    return np.real(np.fft.ifft2(Z))[:h, :w]


class PoissonIntegrator:
    """Masked least-squares integration of slopes, with the system factorised once.

    The unknowns are the heights of the ``K`` mask pixels; every pair of horizontal or
    vertical mask neighbours gives one equation (forward difference = mean slope of the
    pair, ``y`` up).  The normal equations ``(A^T A + 1e-8 I) z = A^T b`` depend on the
    mask only, so their LU factorisation (SuperLU) is computed here once and every
    :meth:`solve` is a pair of triangular solves: integrating ``N`` maps that share a
    mask costs one factorisation instead of ``N``.

    Args:
        mask: bool ``(H, W)``, at least one pixel.
    """

    def __init__(self, mask: np.ndarray):
        mask = np.asarray(mask, bool)
        h, w = mask.shape
        idx = -np.ones((h, w), dtype=np.int64)
        idx[mask] = np.arange(int(mask.sum()))
        # Horizontal neighbours: z[r, c+1] - z[r, c] = mean p.
        left, right = idx[:, :-1], idx[:, 1:]
        self._horizontal = (left >= 0) & (right >= 0)
        # Vertical neighbours (y up): z[r-1, c] - z[r, c] = mean q.
        lower, upper = idx[1:, :], idx[:-1, :]
        self._vertical = (lower >= 0) & (upper >= 0)
        kh, kv = int(self._horizontal.sum()), int(self._vertical.sum())
        eq_h, eq_v = np.arange(kh), kh + np.arange(kv)
        rows = np.concatenate([eq_h, eq_h, eq_v, eq_v])
        cols = np.concatenate([right[self._horizontal], left[self._horizontal],
                               upper[self._vertical], lower[self._vertical]])
        vals = np.concatenate([np.ones(kh), -np.ones(kh), np.ones(kv), -np.ones(kv)])
        n = int(mask.sum())
        self.mask = mask
        self._A = sp.csr_matrix((vals, (rows, cols)), shape=(kh + kv, n))
        # A tiny ridge pins each connected piece's free constant without biasing shape.
        self._lu = spla.splu((self._A.T @ self._A + 1e-8 * sp.identity(n)).tocsc())

    def solve(self, p: np.ndarray, q: np.ndarray) -> np.ndarray:
        """Heights ``(H, W)`` (0 outside the mask, free constant not yet removed) of the
        slopes ``p = dz/dx``, ``q = dz/dy`` ``(H, W)``."""
        b = np.concatenate([0.5 * (p[:, :-1] + p[:, 1:])[self._horizontal],
                            0.5 * (q[1:, :] + q[:-1, :])[self._vertical]])
        out = np.zeros(self.mask.shape)
        out[self.mask] = self._lu.solve(self._A.T @ b)
        return out


def depth_from_normals(
    n: np.ndarray, mask: np.ndarray | None = None, method: str = "poisson", clamp: float = 10.0,
    integrator: PoissonIntegrator | None = None,
) -> np.ndarray:
    """Integrate a normal map to a height map (pixel units, ``z`` toward the viewer).

    Args:
        n: ``(H, W, 3)`` normals.
        mask: boolean ``(H, W)``; defaults to the non-zero normals.
        method: ``"poisson"`` (masked least squares on forward differences: exact for
            integrable fields, respects holes and contours) or ``"fc"`` (Frankot–Chellappa,
            Fourier projection onto integrable fields over the whole frame; fast, but it
            smooths across the mask boundary).
        clamp: limit on ``|p|, |q|`` so contour pixels do not dominate.
        integrator: a :class:`PoissonIntegrator` of ``mask`` to reuse (``poisson`` only;
            several maps with one mask then share one factorisation).
    Returns:
        ``(H, W)`` float64 height, zero-mean inside each connected part of the mask,
        0 outside it.
    """
    n = np.asarray(n, np.float64)
    if n.ndim != 3 or n.shape[-1] != 3:
        raise ValueError(f"expected one normal map of shape (H, W, 3), got {n.shape}")
    if mask is None:
        mask = foreground_mask(n)
    mask = np.asarray(mask, bool)
    if not mask.any():
        raise ValueError("the mask is empty: no pixel to integrate")
    p, q = normals_to_slopes(n, clamp=clamp)
    p, q = np.where(mask, p, 0.0), np.where(mask, q, 0.0)
    if method == "poisson":
        if integrator is None:
            integrator = PoissonIntegrator(mask)
        elif integrator.mask.shape != mask.shape or not np.array_equal(integrator.mask, mask):
            raise ValueError("the integrator was built for another mask")
        z = integrator.solve(p, q)
    elif method == "fc":
        z = _frankot_chellappa(p, q)
    else:
        raise ValueError(f"unknown integration method {method!r}; use 'poisson' or 'fc'")
    from scipy.ndimage import label

    labels, count = label(mask)
    for i in range(1, count + 1):
        part = labels == i
        z[part] -= z[part].mean()
    return np.where(mask, z, 0.0)


def normals_from_depth(z: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Unit normals of a height map ``z`` (pixel units), central differences.

    Returns ``(H, W, 3)``; pixels outside ``mask`` get ``(0, 0, 0)``.
    """
    z = np.asarray(z, np.float64)
    dz_drow, dz_dcol = np.gradient(z)
    n = slopes_to_normals(dz_dcol, -dz_drow)
    if mask is not None:
        n = np.where(np.asarray(mask, bool)[..., None], n, 0.0)
    return n
