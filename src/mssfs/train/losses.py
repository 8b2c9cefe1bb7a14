"""Training objectives: the diffusion (noise prediction) loss and the regression loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .batches import PatchBatch

__all__ = ["diffusion_loss", "min_snr_weights", "regression_loss"]


def diffusion_loss(model, batch: PatchBatch, scheduler, min_snr_gamma: float = 0.0) -> torch.Tensor:
    """Huber loss between ``batch.noise`` and ``model(x_t, t, shading)``; ``x_t`` from
    ``scheduler.add_noise`` (a :class:`mssfs.model.diffusion.NoiseSchedule`, or anything
    with its ``add_noise(x0, noise, t)`` and ``alphas_cumprod``, e.g. diffusers'
    ``DDPMScheduler``).

    With ``min_snr_gamma > 0`` each patch's mean loss is weighted by
    ``min(SNR_t, gamma) / SNR_t`` before averaging (see :class:`TrainConfig`).
    """
    x_t = scheduler.add_noise(batch.normals, batch.noise, batch.t)
    eps = model(x_t, batch.t, batch.shading)
    if not min_snr_gamma:
        return F.smooth_l1_loss(eps.float(), batch.noise)
    per_patch = F.smooth_l1_loss(eps.float(), batch.noise, reduction="none").mean(dim=(1, 2, 3))
    return (min_snr_weights(scheduler, batch.t, min_snr_gamma) * per_patch).mean()


def min_snr_weights(scheduler, t: torch.Tensor, gamma: float) -> torch.Tensor:
    """``min(SNR_t, gamma) / SNR_t`` for int64 timesteps ``t (B,)``; ``SNR_t = abar_t / (1 - abar_t)``."""
    abar = scheduler.alphas_cumprod.to(t.device, torch.float64)[t]
    snr = abar / (1 - abar)
    return (snr.clamp(max=gamma) / snr).float()


def regression_loss(model, batch: PatchBatch, scheduler=None) -> torch.Tensor:
    """Huber loss between ``model(0, 0, shading)`` and the normals, inside the mask."""
    pred = model(torch.zeros_like(batch.normals), torch.zeros_like(batch.t), batch.shading).float()
    per_pixel = F.smooth_l1_loss(pred, batch.normals, reduction="none").sum(1, keepdim=True)
    return (per_pixel * batch.mask).sum() / (3 * batch.mask.sum()).clamp(min=1)


LOSSES = {"diffusion": diffusion_loss, "regression": regression_loss}
