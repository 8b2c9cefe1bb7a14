"""Cutting images into non-overlapping P x P patches and putting them back.

Patch order is image-major, then patch rows top to bottom, then columns left to right:
patch ``k`` of image ``b`` on a grid of ``gh x gw`` patches has index
``b * gh * gw + row * gw + col``.
"""

from __future__ import annotations

import torch

__all__ = ["PATCH", "from_patches", "to_patches"]


PATCH = 16


def to_patches(x: torch.Tensor, patch: int = PATCH) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B * H/P * W/P, C, P, P)``; H and W must be multiples of P."""
    b, c, h, w = x.shape
    if h % patch or w % patch:
        raise ValueError(f"image size {h}x{w} is not a multiple of the patch size {patch}")
    gh, gw = h // patch, w // patch
    x = x.reshape(b, c, gh, patch, gw, patch).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b * gh * gw, c, patch, patch)


def from_patches(p: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`to_patches`: ``(B * gh * gw, C, P, P)`` -> ``(B, C, H, W)``."""
    n, c, patch, _ = p.shape
    gh, gw = height // patch, width // patch
    if gh * patch != height or gw * patch != width or n % (gh * gw):
        raise ValueError(f"{n} patches of {patch}x{patch} do not tile images of {height}x{width}")
    b = n // (gh * gw)
    x = p.reshape(b, gh, gw, c, patch, patch).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, c, height, width)
