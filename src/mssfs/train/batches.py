"""Training batches: patches cut from images drawn as a pure function of ``(seed, rank, step)``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ..core.patches import to_patches
from .config import TrainConfig, TrainingError

__all__ = ["PatchBatch", "StepBatches", "TrainingImagesSource", "derive_seed", "sample_patches"]


def derive_seed(*ints: int) -> int:
    """A 63-bit seed mixed from integers (``numpy.random.SeedSequence``)."""
    return int(np.random.SeedSequence([int(i) for i in ints]).generate_state(1, np.uint64)[0] >> 1)


class TrainingImagesSource:
    """Picklable factory ``(seed, rank, world_size) -> mssfs.data.datasets.TrainingImages``
    (shards ``data``, or maps rendered on the fly with the family ``mix``; None: the default)."""

    def __init__(self, data: str | None, size: int, mix: dict[str, float] | None = None):
        self.data, self.size, self.mix = data, size, mix

    def __call__(self, seed: int, rank: int, world_size: int) -> Iterable[dict]:
        from ..data.datasets import TrainingImages

        return TrainingImages(source=self.data, size=self.size, seed=seed, mix=self.mix, rank=rank, world_size=world_size)


ImageSource = Callable[[int, int, int], Iterable[dict]]


@dataclass
class PatchBatch:
    """Patches of one step: ``shading (N,1,P,P)``, ``normals (N,3,P,P)``, ``mask (N,1,P,P)``,
    timesteps ``t (N,)`` and noise ``(N,3,P,P)``."""

    shading: torch.Tensor
    normals: torch.Tensor
    mask: torch.Tensor
    t: torch.Tensor
    noise: torch.Tensor

    def to(self, device, non_blocking: bool = False) -> PatchBatch:
        return PatchBatch(*(getattr(self, f.name).to(device, non_blocking=non_blocking) for f in dataclasses.fields(self)))

    def pin_memory(self) -> PatchBatch:
        return PatchBatch(*(getattr(self, f.name).pin_memory() for f in dataclasses.fields(self)))


def _as_chw(x, name: str) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x, dtype=torch.float32)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise TrainingError(f"data item {name!r} has shape {tuple(x.shape)}; expected (C, H, W)")
    return x


def sample_patches(
    images: Iterator[dict], n: int, max_background_frac: float, gen: torch.Generator, min_images: int = 1,
    max_images: int = 10_000,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw images from ``images`` and pick ``n`` patches, at most ``floor(frac * n)`` of
    them background (mask all zero).  Returns ``shading (n,1,P,P), normals (n,3,P,P),
    mask (n,1,P,P)``; patch order is random."""
    n_bg_max = math.floor(max_background_frac * n)
    fg, bg = [], []
    n_fg = n_bg = drawn = 0
    while drawn < min_images or n_fg < n - min(n_bg, n_bg_max):
        if drawn >= max_images:
            raise TrainingError(f"{drawn} images gave only {n_fg} foreground patches; the data has too little foreground")
        try:
            item = next(images)
        except StopIteration:
            raise TrainingError("the data source ran out of images") from None
        drawn += 1
        planes = [_as_chw(item["image"], "image"), _as_chw(item["normals"], "normals"), _as_chw(item["mask"], "mask")]
        p = to_patches(torch.cat(planes)[None])  # (k, 5, P, P)
        is_bg = p[:, 4].flatten(1).amax(1) <= 0
        fg.append(p[~is_bg])
        bg.append(p[is_bg])
        n_fg += fg[-1].shape[0]
        n_bg += bg[-1].shape[0]
    k_bg = min(n_bg, n_bg_max)
    fg_all, bg_all = torch.cat(fg), torch.cat(bg)
    pick = [fg_all[torch.randperm(n_fg, generator=gen)[: n - k_bg]], bg_all[torch.randperm(n_bg, generator=gen)[:k_bg]]]
    p = torch.cat(pick)
    p = p[torch.randperm(p.shape[0], generator=gen)]
    return p[:, :1].contiguous(), p[:, 1:4].contiguous(), (p[:, 4:5] > 0).float()


class StepBatches(torch.utils.data.Dataset):
    """Map-style dataset: index ``step`` -> the :class:`PatchBatch` of that step for ``rank``.

    Everything random is seeded by ``derive_seed(seed, rank, step)``: the image stream, the
    patch choice, the timesteps and the noise.
    """

    def __init__(self, source: ImageSource, cfg: TrainConfig, rank: int = 0, world_size: int = 1):
        self.source, self.cfg, self.rank, self.world_size = source, cfg, rank, world_size
        self.n = cfg.patches_per_step // world_size

    def __len__(self) -> int:
        return self.cfg.steps

    def __getitem__(self, step: int) -> PatchBatch:
        seed = derive_seed(self.cfg.seed, self.rank, step)
        return make_batch(self.source, seed, self.rank, self.world_size, self.n, self.cfg)


def make_batch(source: ImageSource, seed: int, rank: int, world_size: int, n: int, cfg: TrainConfig) -> PatchBatch:
    gen = torch.Generator().manual_seed(seed)
    images = iter(source(seed, rank, world_size))
    shading, normals, mask = sample_patches(images, n, cfg.max_background_frac, gen, max(cfg.images_per_step, 1))
    t = torch.randint(0, cfg.timesteps, (n,), generator=gen)
    noise = torch.randn(normals.shape, generator=gen)
    return PatchBatch(shading, normals, mask, t, noise)


VAL_PATCHES_PER_IMAGE = 8


def validation_batch(source: ImageSource, cfg: TrainConfig) -> PatchBatch:
    """Held-out patches from their own seed stream; ``t`` evenly spread over ``[0, T-1]``.

    The patches are drawn from at least ``val_patches / 8`` images (64 for the default 512),
    so that no single shape decides the number: drawn like a training batch (as few images
    as fill it, ~200 patches each), 512 patches came from 3 images, and one run's validation
    loss rose six-fold on such a set while its loss on 64 other images fell.
    """
    seed = derive_seed(cfg.seed, 0x7A11D, 0xFFFF)
    gen = torch.Generator().manual_seed(seed)
    n = cfg.val_patches
    images = iter(source(seed, 0, 1))
    shading, normals, mask = sample_patches(images, n, cfg.max_background_frac, gen,
                                            max(1, n // VAL_PATCHES_PER_IMAGE))
    noise = torch.randn(normals.shape, generator=gen)
    t = (torch.arange(n) * cfg.timesteps) // n
    return PatchBatch(shading, normals, mask, t, noise)
