"""Gradient accumulation: one step's batch as ``K`` equal micro-batches.

A step's loss is a mean over the batch (the regression loss a mean over the masked
pixels). Each micro-batch's loss is scaled by its share of that mean, so the sum of the
scaled micro-batch losses is the full batch's loss and the sum of their gradients is the
full batch's gradient; only the peak memory (activations of one micro-batch) changes.
"""

from __future__ import annotations

import dataclasses

import torch

from .batches import PatchBatch
from .config import TrainingError

__all__ = ["loss_shares", "micro_batches"]


def micro_batches(batch: PatchBatch, k: int) -> list[PatchBatch]:
    """Split ``batch`` (``N`` patches) into ``k`` consecutive micro-batches of ``N / k``.

    Raises:
        TrainingError: ``N`` is not divisible by ``k``.
    """
    n = batch.t.shape[0]
    if k < 1 or n % k:
        raise TrainingError(f"a batch of {n} patches per process cannot be split into {k} equal micro-batches")
    m = n // k
    return [PatchBatch(*(getattr(batch, f.name)[i * m : (i + 1) * m] for f in dataclasses.fields(batch)))
            for i in range(k)]


def loss_shares(objective: str, micros: list[PatchBatch]) -> list[torch.Tensor | float]:
    """The factor of each micro-batch's loss so that the scaled losses sum to the full batch's.

    Diffusion (also min-SNR weighted, also with distillation): the loss is a mean over
    equally many patches per micro-batch, so every share is ``1 / K``. Regression: the
    loss is normalised by the mask's sum, so a micro-batch's share is its mask sum over the
    batch's (0 for a micro-batch of background only, whose loss is 0 anyway).
    """
    if objective != "regression":
        return [1.0 / len(micros)] * len(micros)
    sums = [m.mask.sum() for m in micros]
    total = torch.stack(sums).sum().clamp(min=1)
    return [s / total for s in sums]
