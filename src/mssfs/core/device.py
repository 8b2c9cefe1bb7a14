"""Choosing the torch device: one checked ``torch.device`` for sampling, evaluation and training."""

from __future__ import annotations

import torch

__all__ = ["available_devices", "resolve_device"]


def available_devices() -> list[str]:
    """The devices this machine and torch build can run on: ``cpu``, ``cuda:N`` for each
    GPU, ``mps`` where Apple's Metal backend is built and usable."""
    found = ["cpu"] + [f"cuda:{k}" for k in range(torch.cuda.device_count() if torch.cuda.is_available() else 0)]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    return found


def resolve_device(device, local_rank: int | None = None) -> torch.device:
    """A checked ``torch.device``; a one-line error naming the available devices when the
    one asked for is not there.

    ``"auto"`` picks CUDA when available, else the CPU.  With ``local_rank`` (a distributed
    process), a bare ``cuda`` becomes ``cuda:<local_rank>``.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    here = f"available here: {', '.join(available_devices())}"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"unknown device {device!r} (use auto, cpu, cuda or cuda:N; {here})") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} asked for, but CUDA is not available in this torch build / machine ({here})")
        if local_rank is not None and dev.index is None:
            dev = torch.device("cuda", local_rank)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) present ({here})")
    elif dev.type == "mps":
        if "mps" not in available_devices():
            raise ValueError(f"device {device!r} is not available in this torch build / machine ({here})")
    elif dev.type != "cpu":
        try:
            torch.empty(1, device=dev)
        except (RuntimeError, AssertionError) as exc:
            raise ValueError(f"device {device!r} is not usable here ({here})") from exc
    return dev
