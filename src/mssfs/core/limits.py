"""Resource limits checked before any work: image size, memory of a sampling run.

* :data:`MAX_PIXELS`: the largest image (height x width) any decoder accepts, checked
  from the file header before decoding (``MSSFS_MAX_PIXELS`` raises or lowers it).
* :func:`sampling_memory` estimates what a sampling run needs: the results it holds
  (every sample's normal map and V-cycle stages) and the working set of one batch (the
  guidance backpropagates through the denoiser for every patch of the batch at once).
* :func:`plan_batches` compares that with the memory the machine has
  (:func:`available_memory`; ``MSSFS_MEMORY_BYTES`` overrides it): it lowers the number
  of samples per batch when one batch would not fit, and refuses with
  :class:`ResourceError` when even one sample at a time, or the results, would not.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = [
    "MAX_PIXELS",
    "MemoryPlan",
    "ResourceError",
    "available_memory",
    "format_bytes",
    "max_pixels",
    "plan_batches",
    "sampling_memory",
]

#: Largest image (pixels) accepted; 40 megapixels is e.g. 7,680 x 5,208.
MAX_PIXELS = 40_000_000
#: Denoiser memory per 16x16 patch and forward + backward, per unit of base width (bytes;
#: measured about 2 MB per patch for the bundled base width 16, with margin).
PATCH_BYTES_PER_WIDTH = 160_000
#: Share of the available memory a run may plan to use.
HEADROOM = 0.8


class ResourceError(ValueError):
    """A request that needs more memory (or pixels) than allowed; the message says how to lower it."""


def max_pixels() -> int:
    """:data:`MAX_PIXELS`, or the value of ``MSSFS_MAX_PIXELS`` when set."""
    text = os.environ.get("MSSFS_MAX_PIXELS", "").strip()
    if not text:
        return MAX_PIXELS
    try:
        value = int(float(text))
    except ValueError:
        raise ResourceError(f"MSSFS_MAX_PIXELS must be a number of pixels, got {text!r}") from None
    if value < 1:
        raise ResourceError(f"MSSFS_MAX_PIXELS must be positive, got {value}")
    return value


def format_bytes(n: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_available() -> int | None:
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        if limit == "max":
            return None
        with open("/sys/fs/cgroup/memory.current") as f:
            used = int(f.read().strip())
        return max(0, int(limit) - used)
    except (OSError, ValueError):
        return None


def available_memory(device=None) -> int | None:
    """Bytes a run can still allocate: free memory of a CUDA ``device``, else the machine's
    (``MemAvailable``, lowered by a cgroup limit); ``MSSFS_MEMORY_BYTES`` overrides both.
    None when unknown."""
    text = os.environ.get("MSSFS_MEMORY_BYTES", "").strip()
    if text:
        try:
            return int(float(text))
        except ValueError:
            raise ResourceError(f"MSSFS_MEMORY_BYTES must be a number of bytes, got {text!r}") from None
    if device is not None and getattr(device, "type", str(device)) == "cuda":
        import torch

        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except (RuntimeError, AssertionError):
            return None
    values = [v for v in (_meminfo_available(), _cgroup_available()) if v is not None]
    return min(values) if values else None


@dataclass
class MemoryPlan:
    """What a sampling run needs and how it will be batched.

    Attributes:
        held: bytes of the results held until they are saved (all inputs, all samples).
        per_sample: bytes of one sample's working set at its largest stage.
        batch: samples per batch.
        available: bytes available on the device (None: unknown, nothing is limited).
        notes: what was changed (a lowered batch).
    """

    held: int
    per_sample: int
    batch: int
    available: int | None
    notes: list


def sampling_memory(shapes, n: int, resolutions, base_width: int = 16) -> tuple[int, int]:
    """``(held, per_sample)`` bytes of sampling ``n`` samples of each input.

    Args:
        shapes: ``(H, W)`` of every input.
        resolutions: every stage's resolution (the working square sides).
        base_width: the denoiser's base width (its activations scale with it).
    """
    stages = sum(3 * 4 * r * r for r in resolutions)
    finest = max(resolutions)
    held = 0
    for h, w in shapes:
        s = max(h, w)
        # normals float32, the fused map (float64) and stage maps kept per sample, plus the
        # PNG rows written at save time
        held += n * (3 * 4 * h * w + 3 * 8 * finest * finest + stages + 3 * 2 * h * w + 4 * s * s)
    per_sample = (finest // 16) ** 2 * PATCH_BYTES_PER_WIDTH * max(1, int(base_width))
    return int(held), int(per_sample)


def plan_batches(shapes, n: int, resolutions, batch: int | None, device=None, base_width: int = 16,
                 samples_option: str = "--samples", batch_option: str = "--batch-samples") -> MemoryPlan:
    """Check a sampling run against the memory available before any work.

    ``batch`` is the requested number of samples per batch (None: all at once).  Raises
    :class:`ResourceError` when the results, or one sample's working set, do not fit.
    """
    jobs = n * max(1, len(shapes))
    held, per_sample = sampling_memory(shapes, n, resolutions, base_width)
    want = min(batch or jobs, jobs)
    cpu = available_memory(None)
    on_gpu = device is not None and getattr(device, "type", str(device)) == "cuda"
    dev = available_memory(device) if on_gpu else cpu
    notes: list[str] = []
    if cpu is not None and held > HEADROOM * cpu:
        per = held / max(1, jobs)
        raise ResourceError(
            f"{samples_option} {n} needs about {format_bytes(held)} of memory to hold the results "
            f"({format_bytes(per)} per sample), but {format_bytes(cpu)} is available; draw fewer samples per run "
            f"(at most about {int(HEADROOM * cpu // per) // max(1, len(shapes))})"
        )
    if dev is not None:
        budget = HEADROOM * dev - (0 if on_gpu else held)
        fits = int(budget // per_sample) if per_sample else want
        if fits < 1:
            raise ResourceError(
                f"one sample needs about {format_bytes(per_sample)} of working memory at stage resolution "
                f"{max(resolutions)}, but only {format_bytes(max(0, budget))} is left "
                f"({format_bytes(dev)} available); use a schedule with smaller resolutions or a device with "
                "more memory"
            )
        if fits < want:
            notes.append(
                f"{want} samples at once would need about {format_bytes(per_sample * want)} of working memory "
                f"({format_bytes(dev)} available): running {fits} at a time (set {batch_option} to choose)"
            )
            want = fits
    return MemoryPlan(held, per_sample, want, dev, notes)
