"""Surface geometry in the one frame mssfs uses everywhere.

The frame (DESIGN.md §1)
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
The differentiable losses used during sampling live in :mod:`mssfs.guidance`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from .fileio import atomic_path

__all__ = [
    "angular_error",
    "depth_from_normals",
    "error_metrics",
    "foreground_mask",
    "integrability_residual",
    "load_normals",
    "normalize",
    "normals_from_depth",
    "normals_to_slopes",
    "save_normals",
    "slopes_to_normals",
]


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


def angular_error(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Per-pixel angle in degrees between two normal maps.

    Args:
        pred, gt: ``(..., H, W, 3)`` normal maps (normalised here).
        mask: optional boolean ``(H, W)``; defaults to the foreground of ``gt``.
    Returns:
        ``(..., H, W)`` float64 degrees, NaN outside the mask.
    """
    if pred.shape[-3:] != gt.shape[-3:]:
        raise ValueError(f"normal maps differ in shape: {pred.shape} vs {gt.shape}")
    if mask is None:
        mask = foreground_mask(gt)
    cos = np.sum(normalize(np.asarray(pred, np.float64)) * normalize(np.asarray(gt, np.float64)), axis=-1)
    err = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
    return np.where(mask, err, np.nan)


def error_metrics(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> dict:
    """Summary of the angular error inside the mask.

    Returns:
        dict with ``mean``, ``median``, ``rmse`` (degrees) and ``under_11.25``,
        ``under_22.5``, ``under_30`` (share of pixels, in [0, 1]) and ``pixels``.
    """
    err = angular_error(pred, gt, mask)
    e = err[np.isfinite(err)]
    if e.size == 0:
        raise ValueError("the mask selects no pixel: nothing to score")
    return {
        "mean": float(e.mean()),
        "median": float(np.median(e)),
        "rmse": float(np.sqrt(np.mean(e**2))),
        "under_11.25": float(np.mean(e < 11.25)),
        "under_22.5": float(np.mean(e < 22.5)),
        "under_30": float(np.mean(e < 30.0)),
        "pixels": int(e.size),
    }


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


def save_normals(path: str | os.PathLike, n: np.ndarray, bits: int = 16) -> Path:
    """Write a normal map as NPY (float32, as is) or PNG storing ``(n + 1) / 2``.

    Args:
        n: ``(H, W, 3)`` for PNG; any shape for NPY.
        bits: 8 or 16 for PNG.
    The file is written to a temporary name and renamed, so a crash leaves no partial file.
    """
    path = Path(path)
    n = np.asarray(n, np.float32)
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".png"):
        raise ValueError(f"unsupported normal-map format {suffix!r}; use .png or .npy")
    if suffix == ".png" and (n.ndim != 3 or n.shape[-1] != 3):
        raise ValueError(f"a normal-map PNG needs shape (H, W, 3), got {n.shape}")
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, got {bits}")
    with atomic_path(path) as tmp:
        if suffix == ".npy":
            with open(tmp, "wb") as f:
                np.save(f, n)
        else:
            rgb = np.clip((n + 1.0) / 2.0, 0.0, 1.0)
            if bits == 8:
                from PIL import Image

                Image.fromarray(np.round(rgb * 255).astype(np.uint8), "RGB").save(tmp, format="PNG")
            else:
                _write_png16_rgb(tmp, np.round(rgb * 65535).astype(np.uint16))
    return path


def load_normals(path: str | os.PathLike, mask: np.ndarray | None = None) -> np.ndarray:
    """Read a normal map written by :func:`save_normals` (PNG 8/16-bit or NPY).

    PNG values are mapped back by ``2 v - 1`` and renormalised; pixels stored as
    mid-grey (the background :func:`save_normals` writes), pure black (the background of
    many other tools; no visible normal is stored as black) or outside ``mask`` become
    ``(0, 0, 0)``.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no normal map at {path}")
    if path.suffix.lower() == ".npy":
        return np.load(path, allow_pickle=False)
    if path.suffix.lower() != ".png":
        raise ValueError(f"unsupported normal-map format {path.suffix!r}; use .png or .npy")
    arr = _read_png_rgb(path)
    n = arr * 2.0 - 1.0
    background = (np.linalg.norm(n, axis=-1) < 0.05) | (arr.max(-1) == 0)
    n = normalize(n)
    n[background] = 0.0
    if mask is not None:
        n = np.where(np.asarray(mask, bool)[..., None], n, 0.0)
    return n.astype(np.float32)


def _write_png16_rgb(path: Path, rgb16: np.ndarray) -> None:
    """16-bit RGB PNG through pypng (Pillow cannot write 16-bit RGB)."""
    import png

    h, w, _ = rgb16.shape
    writer = png.Writer(width=w, height=h, bitdepth=16, greyscale=False)
    with open(path, "wb") as f:
        writer.write(f, rgb16.reshape(h, w * 3).tolist())


def _read_png_rgb(path: Path) -> np.ndarray:
    """Read an 8- or 16-bit RGB(A) PNG as float64 in [0, 1], shape (H, W, 3)."""
    import png

    w, h, rows, info = png.Reader(filename=str(path)).asDirect()
    planes, depth = info["planes"], info["bitdepth"]
    arr = np.vstack([np.asarray(r, dtype=np.float64) for r in rows]).reshape(h, w, planes)
    if planes < 3:
        raise ValueError(f"{path}: a normal-map PNG must be RGB, this one has {planes} channel(s)")
    return arr[..., :3] / float(2**depth - 1)
