"""Resizing images and normal maps: one function per array kind.

* torch ``(B, C, H, W)`` tensors: :func:`resize_tensor` (bilinear, antialiased when
  shrinking) and :func:`resize_normals_tensor` (the same, renormalised);
* NumPy ``(N, H, W, 3)`` maps with a mask: :func:`resize_normals_array`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .frame import foreground_mask, normalize

__all__ = ["resize_normals_array", "resize_normals_tensor", "resize_tensor"]


def resize_tensor(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear (antialiased when shrinking) resize of ``(B, C, H, W)`` to ``size x size``."""
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def resize_normals_tensor(n: torch.Tensor, size: int) -> torch.Tensor:
    """Resize ``(B, 3, H, W)`` normals and renormalise."""
    return F.normalize(resize_tensor(n, size), dim=1, eps=1e-6)


def resize_normals_array(normals: np.ndarray, size: tuple[int, int], mask: np.ndarray | None = None):
    """Resize normal maps with antialiasing and renormalise.

    Args:
        normals: ``(N, H, W, 3)`` or ``(H, W, 3)``.
        size: ``(h, w)`` target.
        mask: ``(H, W)`` foreground; defaults to the union of non-zero normals.
    Returns:
        ``(normals, mask)``: resized normals (same leading shape, float32) with ``(0, 0, 0)``
        where less than half of the resized pixel was foreground, and that ``(h, w)`` mask.
    """
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
