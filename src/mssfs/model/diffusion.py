"""The diffusion process: cosine noise schedule, forward noising and the DDIM step.

Numerics follow docs/method.md#diffusion to #guided-ddim: ``T = 300`` steps, cosine schedule with ``s = 0.008``
and betas clipped to ``[1e-4, 0.9999]``; DDIM with ``eta = 0`` on a descending grid of
50 steps spaced evenly over ``[0, 299]`` (``g[0] = 299 ... g[49] = 0``), predicted
``x0`` clipped to ``[-1, 1]``.

Training noises patches with :meth:`NoiseSchedule.add_noise`; the DDIM update takes an
explicit ``(t, t_prev)`` pair because the sampler restarts at ``t = 232`` on a linspace
grid.  Tests check both against diffusers (a test-only dependency, the ``test`` extra):
the forward noising against ``DDPMScheduler.add_noise`` with the same betas, the DDIM
update against ``DDIMScheduler.step`` where their grids coincide.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["T_DEFAULT", "DDIMStepOutput", "NoiseSchedule", "cosine_betas"]


T_DEFAULT = 300


def cosine_betas(T: int = T_DEFAULT, s: float = 0.008, clip=(1e-4, 0.9999)) -> np.ndarray:
    """Betas of the cosine schedule: ``beta_t = 1 - abar(t+1)/abar(t)``, clipped.

    ``abar(t) = cos^2(((t/T) + s) / (1 + s) * pi / 2)``.  Returns float64 ``(T,)``.
    """
    steps = np.arange(T + 1, dtype=np.float64) / T
    f = np.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    abar = f / f[0]
    betas = 1.0 - abar[1:] / abar[:-1]
    return np.clip(betas, clip[0], clip[1])


@dataclass
class DDIMStepOutput:
    """Result of one DDIM step.

    Attributes:
        prev_sample: ``x_{t_prev}``, same shape as the input.
        pred_original_sample: the clipped ``x0`` estimate used for the step.
    """

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor


class NoiseSchedule:
    """Cumulative-alpha table of the forward process and the DDIM update.

    Shapes: ``x`` is ``(B, C, H, W)``; ``t`` is an int tensor ``(B,)`` or a Python int.
    Timestep ``-1`` stands for "clean" (``abar = 1``), the target of the last DDIM step.
    """

    def __init__(self, T: int = T_DEFAULT, s: float = 0.008):
        self.T = T
        self.betas = torch.from_numpy(cosine_betas(T, s))
        self.alphas_cumprod = torch.cumprod(1.0 - self.betas, dim=0)

    def abar(self, t, like: torch.Tensor) -> torch.Tensor:
        """``abar_t`` broadcast to ``like``'s rank, in its dtype and device."""
        t = torch.as_tensor(t, device="cpu").long()
        a = torch.where(t >= 0, self.alphas_cumprod[t.clamp(min=0)], torch.ones((), dtype=torch.float64))
        a = a.to(device=like.device, dtype=like.dtype)
        return a.reshape(a.shape + (1,) * (like.ndim - a.ndim))

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t) -> torch.Tensor:
        """Forward process ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise``."""
        a = self.abar(t, x0)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def predict_x0(self, x_t: torch.Tensor, eps: torch.Tensor, t, clip: bool = True) -> torch.Tensor:
        """``x0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)``, optionally clipped to [-1, 1]."""
        a = self.abar(t, x_t)
        x0 = (x_t - (1 - a).sqrt() * eps) / a.sqrt()
        return x0.clamp(-1.0, 1.0) if clip else x0

    def ddim_grid(self, num_steps: int = 50) -> list[int]:
        """Descending timesteps evenly spaced over ``[0, T-1]``: ``[299, ..., 0]`` by default."""
        return [int(v) for v in np.linspace(0, self.T - 1, num_steps).round()[::-1]]

    def ddim_step(self, x_t: torch.Tensor, eps: torch.Tensor, t: int, t_prev: int, clip: bool = True) -> DDIMStepOutput:
        """Deterministic DDIM (``eta = 0``) from ``t`` to ``t_prev`` (``-1`` = clean)."""
        x0 = self.predict_x0(x_t, eps, t, clip=clip)
        if clip:  # re-derive the noise consistent with the clipped x0
            a = self.abar(t, x_t)
            eps = (x_t - a.sqrt() * x0) / (1 - a).sqrt()
        a_prev = self.abar(t_prev, x_t)
        prev = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
        return DDIMStepOutput(prev_sample=prev, pred_original_sample=x0)

    def diffusers_ddpm(self):
        """A diffusers ``DDPMScheduler`` with exactly these betas, for cross-checks
        (diffusers is not a runtime dependency: install the ``test`` extra)."""
        from diffusers import DDPMScheduler

        return DDPMScheduler(num_train_timesteps=self.T, trained_betas=self.betas.numpy(), clip_sample=True)
