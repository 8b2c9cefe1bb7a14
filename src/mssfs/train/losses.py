"""Training objectives: the diffusion (noise prediction) loss and the regression loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..model.diffusion import check_prediction
from .batches import PatchBatch

__all__ = ["diffusion_loss", "min_snr_weights", "prediction_of", "regression_loss", "x0_loss"]


def prediction_of(model) -> str:
    """The prediction target (``"eps"``, ``"v"``, ``"x0"``) of ``model``: its
    ``config.prediction``, looking through ``torch.compile`` (``_orig_mod``), DDP
    (``module``) and wrappers holding it as ``model``; ``"eps"`` for plain callables."""
    for _ in range(8):
        cfg = getattr(model, "config", None)
        if cfg is not None and hasattr(cfg, "prediction"):
            return cfg.prediction
        inner = next((getattr(model, a) for a in ("_orig_mod", "module", "model") if hasattr(model, a)), None)
        if inner is None:
            break
        model = inner
    return "eps"


def _head_and_target(model, batch: PatchBatch, scheduler, kind: str):
    """``(x_t, head output, its target)``; an eps model is called plainly and compared with
    ``batch.noise``, a v or x0 model with ``raw=True`` against ``scheduler.target``."""
    x_t = scheduler.add_noise(batch.normals, batch.noise, batch.t)
    if kind == "eps":
        return x_t, model(x_t, batch.t, batch.shading), batch.noise
    return (x_t, model(x_t, batch.t, batch.shading, raw=True),
            scheduler.target(kind, batch.normals, batch.noise, batch.t))


def diffusion_loss(model, batch: PatchBatch, scheduler, min_snr_gamma: float = 0.0) -> torch.Tensor:
    """Huber loss between the network's output and its target, in the model's prediction
    target (:func:`prediction_of`); ``x_t`` from ``scheduler.add_noise``.

    An eps model: ``model(x_t, t, shading)`` against ``batch.noise``; ``scheduler`` may be
    a :class:`mssfs.model.diffusion.NoiseSchedule` or anything with its ``add_noise(x0,
    noise, t)`` and ``alphas_cumprod`` (e.g. diffusers' ``DDPMScheduler``).  A v or x0
    model: ``model(x_t, t, shading, raw=True)`` against ``scheduler.target(kind, normals,
    noise, t)`` (a ``NoiseSchedule``).

    With ``min_snr_gamma > 0`` each patch's mean loss is weighted by
    :func:`min_snr_weights` of the target before averaging (see :class:`TrainConfig`).
    """
    kind = prediction_of(model)
    _, out, target = _head_and_target(model, batch, scheduler, kind)
    if not min_snr_gamma:
        return F.smooth_l1_loss(out.float(), target)
    per_patch = F.smooth_l1_loss(out.float(), target, reduction="none").mean(dim=(1, 2, 3))
    return (min_snr_weights(scheduler, batch.t, min_snr_gamma, kind) * per_patch).mean()


def min_snr_weights(scheduler, t: torch.Tensor, gamma: float, kind: str = "eps") -> torch.Tensor:
    """Min-SNR weights ``(B,)`` for int64 timesteps ``t (B,)``, ``SNR_t = abar_t / (1 - abar_t)``:
    ``min(SNR_t, gamma)`` on the x0 loss, which is ``min(SNR_t, gamma) / SNR_t`` on the eps
    loss and ``min(SNR_t, gamma) / (SNR_t + 1)`` on the v loss (the same weighting of the
    x0 error for every target)."""
    abar = scheduler.alphas_cumprod.to(t.device, torch.float64)[t]
    snr = abar / (1 - abar)
    per_x0 = snr.clamp(max=gamma)
    return {"eps": per_x0 / snr, "x0": per_x0, "v": per_x0 / (snr + 1)}[check_prediction(kind)].float()


def x0_loss(model, batch: PatchBatch, scheduler) -> torch.Tensor:
    """Mean Huber loss of the predicted normals against ``batch.normals`` (every element):
    the head's output converted to ``x0`` (:meth:`NoiseSchedule.x0_from`) and clipped to
    ``[-1, 1]``, as a DDIM step uses it.  It does not depend on the prediction target, so
    it compares runs with different targets (``val_x0`` in the training log)."""
    kind = prediction_of(model)
    x_t, out, _ = _head_and_target(model, batch, scheduler, kind)
    x0 = scheduler.x0_from(kind, x_t.float(), out.float(), batch.t).clamp(-1.0, 1.0)
    return F.smooth_l1_loss(x0, batch.normals.float())


def regression_loss(model, batch: PatchBatch, scheduler=None) -> torch.Tensor:
    """Huber loss between ``model(0, 0, shading)`` and the normals, inside the mask."""
    pred = model(torch.zeros_like(batch.normals), torch.zeros_like(batch.t), batch.shading).float()
    per_pixel = F.smooth_l1_loss(pred, batch.normals, reduction="none").sum(1, keepdim=True)
    return (per_pixel * batch.mask).sum() / (3 * batch.mask.sum()).clamp(min=1)


LOSSES = {"diffusion": diffusion_loss, "regression": regression_loss}
