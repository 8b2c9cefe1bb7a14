"""Choosing the torch device: one checked ``torch.device`` for sampling, evaluation and training."""

from __future__ import annotations

import torch

__all__ = ["resolve_device"]


def resolve_device(device, local_rank: int | None = None) -> torch.device:
    """A checked ``torch.device``; a clear error when CUDA is asked for but not there.

    ``"auto"`` picks CUDA when available, else the CPU.  With ``local_rank`` (a distributed
    training process), a bare ``cuda`` becomes ``cuda:<local_rank>``.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"unknown device {device!r} (use cpu, cuda or cuda:N)") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} asked for, but CUDA is not available in this torch build / machine")
        if local_rank is not None and dev.index is None:
            dev = torch.device("cuda", local_rank)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) present")
    return dev
