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
    def update(self, model: torch.nn.Module, step: int) -> None:
        if getattr(self, "_pairs", None) is None or self._pairs[0] is not model:
            self._pairs = (model, list(self.model.parameters()), list(model.parameters()),
                           list(zip(self.model.buffers(), model.buffers())))
        _, ema_p, p, buffers = self._pairs
        torch._foreach_lerp_(ema_p, p, 1.0 - self.decay_at(step))
        for b_ema, b in buffers:
            b_ema.copy_(b)
