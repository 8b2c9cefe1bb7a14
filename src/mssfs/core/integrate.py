"""Integrating normals to depth (Frankot-Chellappa, masked Poisson) and normals from depth.

Same frame and slope convention as :mod:`mssfs.core.frame`.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from .frame import foreground_mask, normals_to_slopes, slopes_to_normals

__all__ = ["depth_from_normals", "normals_from_depth"]


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


def _poisson(p: np.ndarray, q: np.ndarray, mask: np.ndarray) -> np.ndarray:
    h, w = mask.shape
    idx = -np.ones((h, w), dtype=np.int64)
    idx[mask] = np.arange(int(mask.sum()))
    rows, cols, vals, rhs = [], [], [], []
    eq = 0
    # Horizontal neighbours: z[r, c+1] - z[r, c] = mean p.
    a, b = idx[:, :-1], idx[:, 1:]
    ok = (a >= 0) & (b >= 0)
    ra, rb = a[ok], b[ok]
    k = ra.size
    e = np.arange(eq, eq + k)
    rows += [e, e]
    cols += [rb, ra]
    vals += [np.ones(k), -np.ones(k)]
    rhs.append(0.5 * (p[:, :-1] + p[:, 1:])[ok])
    eq += k
    # Vertical neighbours (y up): z[r-1, c] - z[r, c] = mean q.
    a, b = idx[1:, :], idx[:-1, :]  # a = lower pixel (row r), b = upper pixel (row r-1)
    ok = (a >= 0) & (b >= 0)
    ra, rb = a[ok], b[ok]
    k = ra.size
    e = np.arange(eq, eq + k)
    rows += [e, e]
    cols += [rb, ra]
    vals += [np.ones(k), -np.ones(k)]
    rhs.append(0.5 * (q[1:, :] + q[:-1, :])[ok])
    eq += k
    n = int(mask.sum())
    A = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(eq, n))
    bvec = np.concatenate(rhs) if rhs else np.zeros(0)
    # A tiny ridge pins each connected piece's free constant without biasing shape.
    M = (A.T @ A + 1e-8 * sp.identity(n)).tocsc()
    z = spla.spsolve(M, A.T @ bvec)
    out = np.zeros((h, w))
    out[mask] = z
    return out


def depth_from_normals(
    n: np.ndarray, mask: np.ndarray | None = None, method: str = "poisson", clamp: float = 10.0
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
        z = _poisson(p, q, mask)
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
