"""Exponential moving average of the model weights.
"""

from __future__ import annotations

import copy

import torch

__all__ = ["EMA"]


class EMA:
    """Exponential moving average of a model's parameters (and copies of its buffers)."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    def decay_at(self, step: int) -> float:
        return min(self.decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int, weight: torch.Tensor | None = None) -> None:
        """``ema += w (p - ema)`` for every parameter, ``w = 1 - decay_at(step)``; buffers copied.

        ``weight``: ``w`` as a 0-dim tensor on the parameters' device instead (``step`` is
        then unused): read on the device, so a captured CUDA graph replays the update with
        whatever the tensor holds. Equal to the float form up to rounding.
        """
        if getattr(self, "_pairs", None) is None or self._pairs[0] is not model:
            self._pairs = (model, list(self.model.parameters()), list(model.parameters()),
                           list(zip(self.model.buffers(), model.buffers())))
        _, ema_p, p, buffers = self._pairs
        if weight is None:
            torch._foreach_lerp_(ema_p, p, 1.0 - self.decay_at(step))
        else:
            delta = torch._foreach_sub(p, ema_p)
            torch._foreach_mul_(delta, weight)
            torch._foreach_add_(ema_p, delta)
        for b_ema, b in buffers:
            b_ema.copy_(b)
