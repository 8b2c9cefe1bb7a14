"""Processes and hardware: torch.distributed setup, device description, autocast dtype.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from .config import TrainingError


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owned: bool = False  # this module initialised the process group

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device_type: str) -> Dist:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1); gloo on CPU, nccl on CUDA."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if dist.is_initialized():
        return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), owned=True)


def hardware_description(device: torch.device) -> str:
    """E.g. ``"NVIDIA H100 80GB HBM3"`` or ``"AMD EPYC, 2 cores"``."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = ""
    try:
        with open("/proc/cpuinfo") as f:
            name = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    import platform

    return f"{name or platform.processor() or 'CPU'}, {os.cpu_count()} cores"


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 for ``"bf16"``, or for ``"auto"`` where it is native (a CPU with bfloat16
    instructions, :func:`mssfs.core.device.cpu_has_native_bf16`; CUDA with bf16); else ``None``."""
    from ..core.device import cpu_has_native_bf16

    if precision == "fp32":
        return None
    if device.type == "cpu" and precision == "auto" and not cpu_has_native_bf16():
        return None  # emulated bf16 is many times slower than fp32 on such a CPU
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        if precision == "bf16":
            raise TrainingError(f"{device} does not support bf16")
        return None
    return torch.bfloat16
