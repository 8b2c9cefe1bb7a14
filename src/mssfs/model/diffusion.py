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

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["PREDICTIONS", "T_DEFAULT", "DDIMStepOutput", "NoiseSchedule", "check_prediction", "cosine_betas",
           "eps_from_prediction", "prediction_target", "x0_from_prediction"]


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


#: What the denoiser's head may be trained to predict (docs/training.md#prediction-target):
#: the noise ``eps``, the velocity ``v = sqrt(abar) eps - sqrt(1 - abar) x0``, or ``x0``.
PREDICTIONS = ("eps", "v", "x0")


def check_prediction(kind: str) -> str:
    """``kind`` if it is one of :data:`PREDICTIONS`; else ``ValueError`` in one line."""
    if kind not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {', '.join(PREDICTIONS)}, got {kind!r}")
    return kind


# The three conversions below take the schedule's coefficients at each sample's timestep,
# ``a = sqrt(abar_t)`` and ``b = sqrt(1 - abar_t)``, as tensors broadcastable to the data
# (e.g. ``(B, 1, 1, 1)`` against ``(B, C, H, W)``), with ``x_t = a x0 + b eps``.  They are
# linear in the data, elementwise, and return the data's shape.


def prediction_target(kind: str, x0: torch.Tensor, noise: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """What a head of ``kind`` is trained to output for ``x_t = a x0 + b noise``:
    ``noise`` (eps), ``x0`` (x0) or ``a noise - b x0`` (v).  ``x0, noise (B,C,H,W)``."""
    check_prediction(kind)
    if kind == "eps":
        return noise
    if kind == "x0":
        return x0
    return a * noise - b * x0


def eps_from_prediction(kind: str, x_t: torch.Tensor, out: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The noise implied by a head output ``out (B,C,H,W)`` of ``kind`` at ``x_t (B,C,H,W)``:
    ``out`` (eps), ``(x_t - a out) / b`` (x0), ``a out + b x_t`` (v).

    The x0 form divides by ``b``, so it needs ``abar_t < 1`` (every ``t`` in ``[0, T-1]``).
    """
    check_prediction(kind)
    if kind == "eps":
        return out
    if kind == "x0":
        return (x_t - a * out) / b
    return a * out + b * x_t


def x0_from_prediction(kind: str, x_t: torch.Tensor, out: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The clean normals implied by a head output ``out (B,C,H,W)`` of ``kind`` at ``x_t``,
    unclipped: ``(x_t - b out) / a`` (eps), ``out`` (x0), ``a x_t - b out`` (v)."""
    check_prediction(kind)
    if kind == "eps":
        return (x_t - b * out) / a
    if kind == "x0":
        return out
    return a * x_t - b * out


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

    def to(self, device: torch.device | str) -> NoiseSchedule:
        """A copy whose tables live on ``device``: :meth:`abar` (and everything built on it)
        then looks ``t`` up there, so a CUDA ``t`` never goes through the host (no sync; a
        CUDA graph can capture it). The values are the same float64 table entries."""
        out = copy.copy(self)
        out.betas, out.alphas_cumprod = self.betas.to(device), self.alphas_cumprod.to(device)
        return out

    def abar(self, t, like: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """``abar_t`` broadcast to ``like``'s rank, on its device, in ``dtype`` (default: ``like``'s)."""
        table = self.alphas_cumprod
        t = torch.as_tensor(t, device=table.device).long()
        a = torch.where(t >= 0, table[t.clamp(min=0)], torch.ones((), dtype=torch.float64, device=table.device))
        a = a.to(device=like.device, dtype=dtype or like.dtype)
        return a.reshape(a.shape + (1,) * (like.ndim - a.ndim))

    def roots(self, t, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(sqrt(abar_t), sqrt(1 - abar_t))``, each ``(B, 1, ..., 1)`` at ``like``'s rank,
        computed in float64 and cast to ``like``'s dtype and device."""
        a = self.abar(t, like, dtype=torch.float64)
        return a.sqrt().to(like.dtype), (1 - a).sqrt().to(like.dtype)

    def target(self, kind: str, x0: torch.Tensor, noise: torch.Tensor, t) -> torch.Tensor:
        """Training target of a head predicting ``kind`` (:data:`PREDICTIONS`) for
        ``x_t = add_noise(x0, noise, t)``: ``noise``, ``x0``, or ``v = sqrt(abar_t) noise -
        sqrt(1 - abar_t) x0``.  ``x0, noise (B,C,H,W)``, ``t (B,)`` -> ``(B,C,H,W)``."""
        return prediction_target(kind, x0, noise, *self.roots(t, x0))

    def eps_from(self, kind: str, x_t: torch.Tensor, out: torch.Tensor, t) -> torch.Tensor:
        """The noise implied by a head output ``out (B,C,H,W)`` of ``kind`` at
        ``x_t (B,C,H,W)``, ``t (B,)`` in ``[0, T-1]`` (:func:`eps_from_prediction`)."""
        return eps_from_prediction(kind, x_t, out, *self.roots(t, x_t))

    def x0_from(self, kind: str, x_t: torch.Tensor, out: torch.Tensor, t) -> torch.Tensor:
        """The normals implied by a head output ``out (B,C,H,W)`` of ``kind`` at
        ``x_t (B,C,H,W)``, ``t (B,)``, unclipped (:func:`x0_from_prediction`)."""
        return x0_from_prediction(kind, x_t, out, *self.roots(t, x_t))

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
