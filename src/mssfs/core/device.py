"""Choosing the torch device: one checked ``torch.device`` for sampling, evaluation and training."""

from __future__ import annotations

import functools
import platform
from pathlib import Path

import torch

__all__ = ["available_devices", "cpu_has_native_bf16", "resolve_device", "resolve_precision"]


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


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bfloat16 instructions (x86 AVX-512 BF16 or AMX; Arm's BF16
    extension on Linux).  Without them torch emulates bfloat16 on the CPU, which made the
    denoiser about 15 times slower than in float32 on an AVX2 machine (docs/sampling.md)."""
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        check = getattr(torch.cpu, name, None)
        if check is not None and check():
            return True
    try:
        info = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    words = set(info.split())
    if platform.machine().lower() in ("aarch64", "arm64"):
        return "bf16" in words
    return bool(words & {"avx512_bf16", "amx_bf16"})


def resolve_precision(precision: str, device) -> tuple[bool, str | None]:
    """``(bf16, note)`` for ``--precision`` on ``device``.

    ``"auto"`` takes bf16 autocast only where it is fast: on a CPU with bfloat16
    instructions (:func:`cpu_has_native_bf16`); float32 on GPUs (no gain at these sizes)
    and on other CPUs.  ``"bf16"`` asked for on a CPU without those instructions is kept,
    with a one-line ``note`` saying it will be slow.
    """
    if precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"unknown precision {precision!r} (use auto, fp32 or bf16)")
    dev = torch.device(device)
    native = dev.type == "cpu" and cpu_has_native_bf16()
    if precision == "auto":
        return native, None
    if precision == "bf16" and dev.type == "cpu" and not native:
        return True, ("bf16 on this CPU is emulated (no AVX-512 BF16, AMX or Arm BF16 instructions) and runs "
                      "many times slower than fp32; --precision auto chooses fp32 here")
    return precision == "bf16", None
