"""An exact denoiser for a known two-reading patch prior: a test bench for the sampler.

For a shading image whose true normals ``g`` are known, the ambiguity a patch-local
observer faces under an unknown light is the convex/concave flip (docs/method.md#lighting-consistency): a patch
reads either as ``g`` or as ``f = (-gx, -gy, gz)``, which gives the same shading under the
mirrored light. If every patch's prior is exactly these two readings with equal weight,
the posterior mean of ``x0`` given ``x_t`` has a closed form (``a = sqrt(abar_t)``)::

    x0_hat = w g + (1 - w) f,   w = sigmoid((|x_t - a f|^2 - |x_t - a g|^2) / (2 (1 - abar_t)))
    eps    = (x_t - a x0_hat) / sqrt(1 - abar_t)

(squared norms over the whole patch). :class:`TwoReadingOracle` returns that ``eps``: it is
what a perfectly trained patch denoiser would be if the training data had exactly this
ambiguity and nothing else. Running the guided sampler with it separates what the sampler
does from what the trained network does: with this denoiser, every disagreement between
patches is a coin flip per patch, and only the seam, integrability and lighting steps can
make a sample globally consistent (``experiments/oracle_sampler.py``, docs/results.md).

The oracle is tied to one image and one batch layout: it is built with the true normals of
the (square) image the sampler runs on and the number of samples per call, and it cuts the
truth into patches at each stage's resolution exactly as the sampler cuts its image.
Run it with whole calls (``chunk_patches=None``), so that every call holds ``n_samples``
images' patches.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..core.patches import PATCH, to_patches
from .diffusion import NoiseSchedule

__all__ = ["TwoReadingOracle"]


class TwoReadingOracle(nn.Module):
    """``eps = oracle(x_t, t, shading)``, the exact denoiser of the two-reading prior.

    Args:
        normals: ``(S, S, 3)`` true unit normals of the square image the sampler runs on
            (the frame of docs/method.md; background pixels may be anything, they are never scored).
        n_samples: images per denoiser call (the sampler's samples per batch).
        noise: the noise schedule the sampler uses (default :class:`NoiseSchedule`).
        weight_true: prior weight of the true reading (0.5 = no preference).
    Shapes:
        ``x_t`` ``(n_samples * (r/16)**2, 3, 16, 16)`` at any stage resolution ``r``,
        ``t`` ``(B,)``, ``shading`` ``(B, 1, 16, 16)`` (unused); returns ``(B, 3, 16, 16)``.
    """

    def __init__(self, normals, n_samples: int, noise: NoiseSchedule | None = None, weight_true: float = 0.5):
        super().__init__()
        g = torch.as_tensor(np.asarray(normals, dtype=np.float32))
        if g.ndim != 3 or g.shape[-1] != 3 or g.shape[0] != g.shape[1]:
            raise ValueError(f"normals must be a square (S, S, 3) map, got shape {tuple(g.shape)}")
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        if not 0.0 < weight_true < 1.0:
            raise ValueError(f"weight_true must lie strictly between 0 and 1, got {weight_true}")
        self.register_buffer("truth", g.permute(2, 0, 1)[None].contiguous(), persistent=False)
        # the convex/concave flip (nx, ny, nz) -> (-nx, -ny, nz) of (B, 3, P, P) patches
        self.register_buffer("flip", torch.tensor([-1.0, -1.0, 1.0]).reshape(1, 3, 1, 1), persistent=False)
        self.abar = (noise or NoiseSchedule()).alphas_cumprod.double()  # cast per call to x_t's dtype
        self.n_samples = int(n_samples)
        self.log_prior_ratio = math.log(weight_true / (1.0 - weight_true))
        self._patches: dict[int, torch.Tensor] = {}

    def truth_patches(self, resolution: int) -> torch.Tensor:
        """The true normals at ``resolution`` (resized as the sampler resizes normals),
        cut into ``((resolution/16)**2, 3, 16, 16)`` patches."""
        if resolution not in self._patches:
            from ..core.resize import resize_normals_tensor

            self._patches[resolution] = to_patches(resize_normals_tensor(self.truth, resolution))
        return self._patches[resolution]

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, shading: torch.Tensor) -> torch.Tensor:
        b = x_t.shape[0]
        per_image, rest = divmod(b, self.n_samples)
        side = math.isqrt(per_image)
        if rest or side * side != per_image:
            raise ValueError(f"{b} patches are not {self.n_samples} square images' patches; "
                             "run the sampler with whole calls (chunk_patches=None)")
        g = self.truth_patches(side * PATCH).to(device=x_t.device, dtype=x_t.dtype).repeat(self.n_samples, 1, 1, 1)
        f = g * self.flip.to(device=x_t.device, dtype=x_t.dtype)
        abar = self.abar[t.cpu()].to(device=x_t.device, dtype=x_t.dtype)[:, None, None, None]
        a, s2 = abar.sqrt(), 1.0 - abar
        d_g = (x_t - a * g).square().sum(dim=(1, 2, 3), keepdim=True)
        d_f = (x_t - a * f).square().sum(dim=(1, 2, 3), keepdim=True)
        w = torch.sigmoid((d_f - d_g) / (2.0 * s2) + self.log_prior_ratio)
        x0 = w * g + (1.0 - w) * f
        return (x_t - a * x0) / s2.sqrt()
