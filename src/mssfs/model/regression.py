"""The regression baseline: the denoiser's network run once at ``t = 0`` to predict normals.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["predict_regression"]


@torch.no_grad()
def predict_regression(model: nn.Module, image, chunk: int = 1024):
    """Normals from a shading image with a regression-trained network, patch by patch.

    Args:
        model: a :class:`UNet` trained with ``objective="regression"``.
        image: ``(H, W)`` array or tensor in ``[0, 1]``.  Sizes that are not multiples of
            16 are zero-padded at the bottom and right (zero = background) and the result
            is cropped back; nothing is resized.
        chunk: patches per forward pass.
    Returns:
        float32 numpy ``(H, W, 3)`` unit normals, ``(0, 0, 0)`` where the image is
        background (intensity 0 and a predicted normal of near-zero length).
    """
    import numpy as np

    from ..core.frame import normalize
    from ..core.patches import from_patches, to_patches

    p = next(model.parameters())
    img = torch.as_tensor(np.asarray(image, dtype=np.float32))
    if img.ndim != 2:
        raise ValueError(f"image must be (H, W), got shape {tuple(img.shape)}")
    h, w = img.shape
    size = model.config.patch
    ph, pw = -h % size, -w % size
    padded = F.pad(img, (0, pw, 0, ph))[None, None].to(p.device, p.dtype)
    shading = to_patches(padded, size)
    out = torch.empty(shading.shape[0], model.config.normal_channels, size, size, device=p.device, dtype=p.dtype)
    for i in range(0, shading.shape[0], chunk):
        s = shading[i : i + chunk]
        zeros = torch.zeros(s.shape[0], model.config.normal_channels, size, size, device=p.device, dtype=p.dtype)
        out[i : i + chunk] = model(zeros, torch.zeros(s.shape[0], dtype=torch.long, device=p.device), s)
    n = from_patches(out, h + ph, w + pw)[0, :, :h, :w].permute(1, 2, 0).float().cpu().numpy()
    length = np.linalg.norm(n, axis=-1, keepdims=True)
    fg = (np.asarray(image) > 0)[..., None] | (length > 0.5)
    return np.where(fg, normalize(n), 0.0).astype(np.float32)
