"""Training the patch denoiser (DESIGN.md §5) as a library; ``mssfs train`` is a thin CLI.

One training step (per process):

1. draw images ``dict(image (1,h,w), normals (3,h,w), mask (1,h,w), ...)`` from a fresh
   data iterator seeded by ``(seed, rank, step)`` and cut them into 16x16 patches;
2. keep ``patches_per_step / world_size`` patches, at most ``max_background_frac`` of
   them pure background (mask all zero: zero shading, zero normals), drawing more images
   when the foreground patches run short;
3. diffusion objective: ``t ~ U{0..T-1}`` per patch, ``x_t`` from diffusers'
   ``DDPMScheduler.add_noise`` (betas of :class:`mssfs.diffusion.NoiseSchedule`), Huber
   loss between the true and the predicted noise; regression objective: the same network
   fed ``concat(shading, 0)`` at ``t = 0`` predicts the normals, Huber loss inside the mask;
4. AdamW (linear warm-up, then constant lr), gradient clipping, EMA of the weights.

Because every step's data, timesteps and noise are a pure function of ``(seed, rank,
step)``, a run resumed from a checkpoint continues exactly as if it had not stopped.
Batches are built by a map-style dataset indexed by the step, so ``num_workers > 0``
prepares them in background processes without changing them.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import io
import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .checkpoint import (
    Checkpoint,
    CheckpointError,
    atomic_write_bytes,
    checkpoint_path,
    flatten_optimizer_state,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
    unflatten_optimizer_state,
)
from .diffusion import NoiseSchedule
from .model import UNet, UNetConfig
from .patches import PATCH, to_patches

__all__ = [
    "EMA",
    "PatchBatch",
    "StepBatches",
    "TrainConfig",
    "Trainer",
    "TrainingError",
    "TrainingImagesSource",
    "derive_seed",
    "diffusion_loss",
    "load_config_file",
    "min_snr_weights",
    "regression_loss",
    "sample_patches",
    "train",
]

OBJECTIVES = ("diffusion", "regression")
LOG_FIELDS = ("step", "loss", "val_loss", "patches_per_s", "lr", "time")
#: Options that may change when a run is resumed (they do not alter what is computed).
RESUMABLE_KEYS = frozenset(
    {"steps", "val_every", "log_every", "checkpoint_every", "checkpoint_minutes", "keep_checkpoints",
     "num_workers", "compile", "device", "data", "max_minutes", "init"}
)


class TrainingError(Exception):
    """A problem with a training request (bad config, run directory in the way, ...)."""


@dataclass
class TrainConfig:
    """Everything that defines a training run; stored in every checkpoint as JSON.

    Attributes:
        objective: ``"diffusion"`` (noise prediction) or ``"regression"`` (normals from
            shading at ``t = 0`` with zero ``x_t``: a deterministic baseline).
        model: the U-Net shape.
        steps: optimiser steps in total.
        patches_per_step: global batch in 16x16 patches (split evenly over processes).
        image_size: side of the training images requested from the data source.
        images_per_step: minimum images drawn per process and step (0: as many as the
            batch needs); more are drawn when background capping leaves too few patches.
        max_background_frac: the largest share of the batch that may be pure-background
            patches (mask all zero); the rest are patches touching the object.
        data: folder of shards written by ``mssfs data``, or ``None`` to render on the fly.
        lr, betas, weight_decay: AdamW; lr warms up linearly over ``warmup_steps``.
        grad_clip: max gradient norm (0 disables).
        ema_decay: EMA decay, with warm-up ``min(decay, (1 + s) / (10 + s))``.
        precision: ``"auto"`` (bf16 autocast where supported), ``"bf16"`` or ``"fp32"``.
        compile, channels_last: ``torch.compile`` the model / use channels-last memory.
        seed: base seed of data, timesteps and noise (per step and rank).
        timesteps: diffusion steps ``T`` of the cosine schedule.
        val_patches: held-out patches for the validation loss (fixed noise, fixed ``t``
            evenly spread over ``[0, T-1]``, computed with the EMA weights in fp32).
        val_every, log_every, checkpoint_every: in steps (0 disables).
        checkpoint_minutes: also checkpoint when this much wall time passed (0 disables).
        keep_checkpoints: how many recent checkpoints to keep (0 keeps all).
        num_workers: data-loader processes preparing batches ahead.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
        max_minutes: stop after this many minutes of training in this process (with a
            checkpoint, validation and log row, as at the last step); 0: no limit. The
            learning-rate schedule does not depend on it, so ``--resume`` continues the
            same run.
        init: an exported model folder (``mssfs export``, e.g. the package's
            ``weights/default``) whose weights start the model and its EMA; the optimiser
            starts fresh. Ignored when resuming (the checkpoint has the weights).
        min_snr_gamma: 0 (default, DESIGN.md §5): the plain Huber loss on the noise. > 0:
            each patch's loss is weighted by ``min(SNR_t, gamma) / SNR_t`` (min-SNR
            weighting for noise prediction; ``SNR_t = abar_t / (1 - abar_t)``), which
            keeps full weight on the noisy steps, where the shading decides the normals,
            and shrinks the nearly clean ones. Diffusion objective only; the validation
            loss stays unweighted so runs remain comparable.
    """

    objective: str = "diffusion"
    model: UNetConfig = field(default_factory=UNetConfig)
    steps: int = 100_000
    patches_per_step: int = 2048
    image_size: int = 256
    images_per_step: int = 0
    max_background_frac: float = 0.1
    data: str | None = None
    lr: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.01
    warmup_steps: int = 200
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    precision: str = "auto"
    compile: bool = False
    channels_last: bool = False
    seed: int = 0
    timesteps: int = 300
    val_patches: int = 512
    val_every: int = 500
    log_every: int = 10
    checkpoint_every: int = 1000
    checkpoint_minutes: float = 0.0
    keep_checkpoints: int = 3
    num_workers: int = 0
    device: str = "auto"
    max_minutes: float = 0.0
    init: str | None = None
    min_snr_gamma: float = 0.0

    def __post_init__(self):
        if isinstance(self.model, dict):
            self.model = UNetConfig.from_dict(self.model)
        self.betas = tuple(float(b) for b in self.betas)
        if self.objective not in OBJECTIVES:
            raise TrainingError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise TrainingError(f"precision must be auto, bf16 or fp32, got {self.precision!r}")
        if self.image_size % PATCH or self.image_size <= 0:
            raise TrainingError(f"image_size {self.image_size} is not a positive multiple of {PATCH}")
        if not 0.0 <= self.max_background_frac <= 1.0:
            raise TrainingError("max_background_frac must lie in [0, 1]")
        for name in ("steps", "patches_per_step", "timesteps"):
            if getattr(self, name) <= 0:
                raise TrainingError(f"{name} must be positive")
        if self.max_minutes < 0:
            raise TrainingError("max_minutes must be >= 0 (0: no limit)")
        if self.min_snr_gamma < 0:
            raise TrainingError("min_snr_gamma must be >= 0 (0: unweighted loss)")
        if self.min_snr_gamma and self.objective != "diffusion":
            raise TrainingError("min_snr_gamma applies to the diffusion objective only")

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["model"] = self.model.to_dict()
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise TrainingError(f"unknown config keys: {sorted(unknown)}")
        try:
            return cls(**d)
        except (TypeError, ValueError) as exc:
            raise TrainingError(f"bad config: {exc}") from exc


#: One-line help per :class:`TrainConfig` field (``mssfs train --help``).
FIELD_HELP = {
    "objective": "diffusion (noise prediction) or regression (normals from shading, deterministic baseline)",
    "steps": "optimiser steps in total",
    "patches_per_step": "global batch in 16x16 patches, split evenly over processes",
    "image_size": "size of the training maps (the data crops 16 off for random patch-grid offsets)",
    "images_per_step": "minimum images drawn per process and step (0: as many as the batch needs)",
    "max_background_frac": "largest share of a batch that may be pure-background patches",
    "data": "folder of shards from `mssfs data make` (default: render on the fly)",
    "lr": "AdamW learning rate after warm-up",
    "betas": "AdamW betas",
    "weight_decay": "AdamW decoupled weight decay",
    "warmup_steps": "linear learning-rate warm-up steps",
    "grad_clip": "maximum gradient norm (0 disables clipping)",
    "ema_decay": "decay of the EMA weights (used for validation and export)",
    "precision": "auto (bf16 autocast where supported), bf16 or fp32",
    "compile": "torch.compile the model",
    "channels_last": "channels-last memory format",
    "seed": "base seed of data, timesteps and noise (mixed with rank and step)",
    "timesteps": "diffusion steps T of the cosine schedule",
    "val_patches": "held-out validation patches (0 disables validation)",
    "val_every": "validate every N steps (0 disables)",
    "log_every": "write a log row every N steps",
    "checkpoint_every": "checkpoint every N steps (0: only time-based and final)",
    "checkpoint_minutes": "also checkpoint after this many minutes of training (0 disables)",
    "keep_checkpoints": "keep the N most recent checkpoints (0 keeps all)",
    "num_workers": "data-loader processes preparing batches ahead (0: in the training process)",
    "device": "auto, cpu, cuda or cuda:N (under torchrun: the local rank's GPU)",
    "max_minutes": "stop with a checkpoint after this many minutes of training (0: no limit; --resume continues)",
    "min_snr_gamma": "0: plain Huber loss (DESIGN.md §5); > 0: weight each patch by min(SNR, gamma)/SNR (diffusion only; validation stays unweighted)",
    "init": "start the model and EMA from an exported model folder (e.g. src/mssfs/weights/default); fresh "
            "optimiser; without model options (config file or command line) the run takes the export's model shape",
}


def load_config_file(path: str | os.PathLike) -> dict:
    """Read a YAML (or JSON) training config into a plain dict (not yet validated)."""
    import yaml

    path = Path(path)
    try:
        d = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise TrainingError(f"config file {path} not found") from None
    except yaml.YAMLError as exc:
        raise TrainingError(f"config file {path} is not valid YAML: {exc}") from exc
    if d is None:
        return {}
    if not isinstance(d, dict):
        raise TrainingError(f"config file {path} must hold a mapping of options")
    return d


# -- data ------------------------------------------------------------------------------


def derive_seed(*ints: int) -> int:
    """A 63-bit seed mixed from integers (``numpy.random.SeedSequence``)."""
    return int(np.random.SeedSequence([int(i) for i in ints]).generate_state(1, np.uint64)[0] >> 1)


class TrainingImagesSource:
    """Picklable factory ``(seed, rank, world_size) -> mssfs.data.TrainingImages``."""

    def __init__(self, data: str | None, size: int):
        self.data, self.size = data, size

    def __call__(self, seed: int, rank: int, world_size: int) -> Iterable[dict]:
        from .data import TrainingImages

        return TrainingImages(source=self.data, size=self.size, seed=seed, rank=rank, world_size=world_size)


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


# -- objectives ------------------------------------------------------------------------


def diffusion_loss(model, batch: PatchBatch, scheduler, min_snr_gamma: float = 0.0) -> torch.Tensor:
    """Huber loss between ``batch.noise`` and ``model(x_t, t, shading)``; ``x_t`` from
    ``scheduler.add_noise`` (diffusers ``DDPMScheduler``).

    With ``min_snr_gamma > 0`` each patch's mean loss is weighted by
    ``min(SNR_t, gamma) / SNR_t`` before averaging (see :class:`TrainConfig`).
    """
    x_t = scheduler.add_noise(batch.normals, batch.noise, batch.t)
    eps = model(x_t, batch.t, batch.shading)
    if not min_snr_gamma:
        return F.smooth_l1_loss(eps.float(), batch.noise)
    per_patch = F.smooth_l1_loss(eps.float(), batch.noise, reduction="none").mean(dim=(1, 2, 3))
    return (min_snr_weights(scheduler, batch.t, min_snr_gamma) * per_patch).mean()


def min_snr_weights(scheduler, t: torch.Tensor, gamma: float) -> torch.Tensor:
    """``min(SNR_t, gamma) / SNR_t`` for int64 timesteps ``t (B,)``; ``SNR_t = abar_t / (1 - abar_t)``."""
    abar = scheduler.alphas_cumprod.to(t.device, torch.float64)[t]
    snr = abar / (1 - abar)
    return (snr.clamp(max=gamma) / snr).float()


def regression_loss(model, batch: PatchBatch, scheduler=None) -> torch.Tensor:
    """Huber loss between ``model(0, 0, shading)`` and the normals, inside the mask."""
    pred = model(torch.zeros_like(batch.normals), torch.zeros_like(batch.t), batch.shading).float()
    per_pixel = F.smooth_l1_loss(pred, batch.normals, reduction="none").sum(1, keepdim=True)
    return (per_pixel * batch.mask).sum() / (3 * batch.mask.sum()).clamp(min=1)


LOSSES = {"diffusion": diffusion_loss, "regression": regression_loss}


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


# -- distributed -----------------------------------------------------------------------


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


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(name)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local_rank)
    return dev


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
    """bf16 for ``"bf16"``, or for ``"auto"`` where supported (CPU; CUDA with bf16); else ``None``."""
    if precision == "fp32":
        return None
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        if precision == "bf16":
            raise TrainingError(f"{device} does not support bf16")
        return None
    return torch.bfloat16


# -- the trainer -----------------------------------------------------------------------


class Trainer:
    """Owns the model, EMA, optimiser and counters of one process; see :func:`train`."""

    def __init__(self, cfg: TrainConfig, run_dir: str | os.PathLike, source: ImageSource | None = None,
                 dist: Dist | None = None, progress: bool = True, load_init: bool = True):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.dist = dist or Dist()
        self.progress = progress
        self.device = resolve_device(cfg.device, self.dist.local_rank)
        self.source = source if source is not None else TrainingImagesSource(cfg.data, cfg.image_size)
        if cfg.patches_per_step % self.dist.world_size:
            raise TrainingError(f"patches_per_step {cfg.patches_per_step} is not divisible by {self.dist.world_size} processes")
        self.amp_dtype = autocast_dtype(cfg.precision, self.device)
        self.schedule = NoiseSchedule(cfg.timesteps)
        self.scheduler = self.schedule.diffusers_ddpm()
        torch.manual_seed(derive_seed(cfg.seed, 0x1417))  # identical initial weights on every rank
        self.model = UNet(cfg.model)
        self.init_info = initialise_from(self.model, cfg) if (cfg.init and load_init) else None
        self.model = self.model.to(self.device)
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.ema = EMA(self.model, cfg.ema_decay)
        self._params = list(self.model.parameters())
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, betas=cfg.betas,
                                     weight_decay=cfg.weight_decay, foreach=True)
        self.step = 0
        self.elapsed = 0.0  # training wall time over all segments, seconds
        self.patches_seen = 0
        self.last_val: float | None = None
        self._forward = None

    # model wrapping (DDP, compile) is done lazily so that loading a state comes first
    def forward_module(self):
        if self._forward is None:
            m = self.model
            if self.dist.world_size > 1:
                import warnings

                from torch.nn.parallel import DistributedDataParallel as DDP

                # 1x1-conv weight grads can carry arbitrary strides on their size-1 dims;
                # DDP then warns although the layouts agree element for element.
                warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
                m = DDP(m, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            if self.cfg.compile:
                m = torch.compile(m)
            self._forward = m
        return self._forward

    def lr_at(self, step: int) -> float:
        w = self.cfg.warmup_steps
        return self.cfg.lr * (min(1.0, (step + 1) / w) if w > 0 else 1.0)

    def autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _prepare(self, batch: PatchBatch) -> PatchBatch:
        batch = batch.to(self.device, non_blocking=True)
        if self.cfg.channels_last:
            for name in ("shading", "normals", "noise"):
                setattr(batch, name, getattr(batch, name).contiguous(memory_format=torch.channels_last))
        return batch

    def train_step(self, batch: PatchBatch) -> torch.Tensor:
        batch = self._prepare(batch)
        for g in self.opt.param_groups:
            g["lr"] = self.lr_at(self.step)
        weighting = {"min_snr_gamma": self.cfg.min_snr_gamma} if self.cfg.min_snr_gamma else {}
        with self.autocast():
            loss = LOSSES[self.cfg.objective](self.forward_module(), batch, self.scheduler, **weighting)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self._params, self.cfg.grad_clip, foreach=True)
        self.opt.step()
        self.ema.update(self.model, self.step)
        self.step += 1
        self.patches_seen += self.cfg.patches_per_step
        return loss.detach()

    @torch.no_grad()
    def validate(self, batch: PatchBatch, chunk: int = 512) -> float:
        """Loss of the EMA weights on the fixed validation patches (fp32, deterministic)."""
        batch = batch.to(self.device)
        total, n = 0.0, batch.t.shape[0]
        fn = LOSSES[self.cfg.objective]
        for i in range(0, n, chunk):
            part = PatchBatch(*(getattr(batch, f.name)[i : i + chunk] for f in dataclasses.fields(batch)))
            total += float(fn(self.ema.model, part, self.scheduler)) * part.t.shape[0]
        return total / n

    # -- state -------------------------------------------------------------------------

    def state(self) -> Checkpoint:
        opt_tensors, opt_info = flatten_optimizer_state(self.opt.state_dict())
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        np_state = np.random.get_state()
        py_state = random.getstate()
        from . import __version__

        meta = {
            "step": self.step,
            "elapsed_s": self.elapsed,
            "patches_seen": self.patches_seen,
            "last_val_loss": self.last_val,
            "init": self.init_info,
            "config": self.cfg.to_dict(),
            "optimizer": opt_info,
            "rng": {
                "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
                "python": [py_state[0], list(py_state[1]), py_state[2]],
            },
            "data_stream": {"seed": self.cfg.seed, "next_step": self.step,
                            "scheme": "batch of step s on rank r seeded by derive_seed(seed, r, s)"},
            "world_size": self.dist.world_size,
            "device": str(self.device),
            "host": hardware_description(self.device),
            "torch_threads": torch.get_num_threads(),
            "autocast": str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else "fp32",
            "versions": {"mssfs": __version__, "torch": torch.__version__},
        }
        return Checkpoint(
            tensors={"model": self.model.state_dict(), "ema": self.ema.model.state_dict(), "optim": opt_tensors, "rng": rng},
            meta=meta,
        )

    def load_state(self, ckpt: Checkpoint) -> None:
        where = ckpt.path or "checkpoint"
        try:
            self.model.load_state_dict(ckpt.tensors["model"])
            self.ema.model.load_state_dict(ckpt.tensors["ema"])
            self.opt.load_state_dict(unflatten_optimizer_state(ckpt.tensors.get("optim", {}), ckpt.meta["optimizer"]))
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CheckpointError(f"{where}: does not fit this model/optimizer: {exc}") from exc
        m = ckpt.meta
        self.step, self.elapsed, self.patches_seen = int(m["step"]), float(m["elapsed_s"]), int(m["patches_seen"])
        self.last_val = m.get("last_val_loss")
        self.init_info = m.get("init")
        rng = ckpt.tensors.get("rng", {})
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        npst = m["rng"]["numpy"]
        np.random.set_state((npst[0], np.asarray(npst[1], dtype=np.uint32), npst[2], npst[3], npst[4]))
        pyst = m["rng"]["python"]
        random.setstate((pyst[0], tuple(pyst[1]), pyst[2]))

    def save(self) -> Path:
        path = save_checkpoint(checkpoint_path(self.run_dir, self.step), self.state())
        if self.cfg.keep_checkpoints > 0:
            for _, old in list_checkpoints(self.run_dir)[: -self.cfg.keep_checkpoints]:
                old.unlink(missing_ok=True)
        return path


# -- run directory: log, plot ----------------------------------------------------------


def _read_log(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            try:
                int(row["step"])
                rows.append(row)
            except (KeyError, TypeError, ValueError):
                continue  # a line cut short by a kill
    return rows


def _truncate_log(path: Path, step: int) -> None:
    """Keep the log rows up to ``step`` (used when resuming)."""
    rows = [r for r in _read_log(path) if int(r["step"]) <= step]
    buf = io.StringIO()
    w = csv.DictWriter(buf, LOG_FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_bytes(path, buf.getvalue().encode())


def plot_log(log_path: Path, png_path: Path) -> None:
    """Training and validation loss against step, written atomically as a PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rows = _read_log(log_path)
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (("loss", "train (mean since last log)"), ("val_loss", "validation (EMA)")):
        pts = [(int(r["step"]), float(r[key])) for r in rows if r.get(key) not in (None, "")]
        if pts:
            ax.plot(*zip(*pts), label=label, marker="o" if key == "val_loss" else None, ms=3)
    ax.set_xlabel("step")
    ax.set_ylabel("Huber loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(png_path, buf.getvalue())


def prepare_run_dir(run_dir: Path, overwrite: bool) -> None:
    """Refuse to start over an existing run unless ``overwrite``; then clear its outputs."""
    existing = [run_dir / n for n in ("checkpoints", "log.csv", "config.json", "loss.png") if (run_dir / n).exists()]
    if existing and not overwrite:
        raise TrainingError(f"{run_dir} already holds a training run; use --resume {run_dir} to continue it "
                            "or --overwrite to start over")
    for p in existing:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)


def resolve_resume(resume: str | os.PathLike) -> tuple[Path, Path]:
    """``resume`` (run dir or checkpoint file) -> ``(checkpoint, run_dir)``."""
    resume = Path(resume)
    if resume.is_dir():
        ckpt = latest_checkpoint(resume)
        if ckpt is None:
            raise TrainingError(f"{resume} holds no checkpoints to resume from")
        return ckpt, resume
    if resume.is_file():
        return resume, resume.parent.parent if resume.parent.name == "checkpoints" else resume.parent
    raise TrainingError(f"--resume {resume}: no such run directory or checkpoint")


def merge_resume_config(saved: dict, overrides: dict) -> dict:
    """The checkpoint's config with ``overrides`` applied; only :data:`RESUMABLE_KEYS` may differ."""
    cfg = dict(saved)
    for k, v in overrides.items():
        if (k == "model" or k not in RESUMABLE_KEYS) and (k not in cfg or _norm(cfg[k]) != _norm(v)):
            raise TrainingError(f"option {k!r} cannot change when resuming (checkpoint has {cfg.get(k)!r}, got {v!r})")
        cfg[k] = v
    return cfg


def _norm(v):
    if isinstance(v, dict):
        return {k: _norm(x) for k, x in v.items()}
    if isinstance(v, (tuple, list)):
        return [_norm(x) for x in v]
    return v


def train(
    config: TrainConfig | None,
    run_dir: str | os.PathLike | None = None,
    *,
    source: ImageSource | None = None,
    resume: str | os.PathLike | None = None,
    overrides: dict | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Trainer:
    """Train (or resume) a run; returns the :class:`Trainer` in its final state.

    Args:
        config: the run's config (ignored when resuming: the checkpoint's config is used,
            with ``overrides`` limited to :data:`RESUMABLE_KEYS`).
        run_dir: output folder (``config.json``, ``log.csv``, ``loss.png``,
            ``checkpoints/step_XXXXXXXX.safetensors``); with ``resume`` it defaults to
            the checkpoint's run.
        source: ``(seed, rank, world_size) -> iterable of image dicts``; default
            :class:`TrainingImagesSource` on ``config.data``.
        resume: run directory (latest checkpoint) or a checkpoint file.
        overwrite: start over an existing run directory.
    Under ``torchrun`` every process calls this; rank 0 alone writes files.
    """
    ckpt = None
    if resume is not None:
        ckpt_path, resumed_dir = resolve_resume(resume)
        ckpt = load_checkpoint(ckpt_path)  # a corrupt file raises; never a silent fresh start
        config = TrainConfig.from_dict(merge_resume_config(ckpt.meta["config"], overrides or {}))
        run_dir = Path(run_dir) if run_dir is not None else resumed_dir
    elif config is None:
        raise TrainingError("a config is needed to start a run")
    if run_dir is None:
        raise TrainingError("a run directory is needed")
    run_dir = Path(run_dir)

    dist = init_distributed(resolve_device(config.device).type)
    try:
        trainer = Trainer(config, run_dir, source=source, dist=dist, progress=progress, load_init=ckpt is None)
        if dist.main:
            if ckpt is None:
                prepare_run_dir(run_dir, overwrite)
            else:
                run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(run_dir / "config.json", (json.dumps(config.to_dict(), indent=2) + "\n").encode())
        if dist.world_size > 1:
            torch.distributed.barrier()
        if ckpt is not None:
            trainer.load_state(ckpt)
        _loop(trainer)
        return trainer
    finally:
        if dist.owned and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _loop(tr: Trainer) -> None:
    cfg, main = tr.cfg, tr.dist.main
    log_path, png_path = tr.run_dir / "log.csv", tr.run_dir / "loss.png"
    val_on = cfg.val_every > 0 and cfg.val_patches > 0
    val = validation_batch(tr.source, cfg) if main and val_on else None
    if main:
        _truncate_log(log_path, tr.step)
    start = tr.step
    if start >= cfg.steps:
        return
    loader = torch.utils.data.DataLoader(
        StepBatches(tr.source, cfg, tr.dist.rank, tr.dist.world_size),
        batch_size=None,
        sampler=range(start, cfg.steps),
        num_workers=cfg.num_workers,
        pin_memory=tr.device.type == "cuda",
        persistent_workers=False,
    )
    bar = None
    if main and tr.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, initial=start, desc=f"train {cfg.objective}", unit="step", dynamic_ncols=True)
    run_loss, run_n = torch.zeros((), device=tr.device), 0
    t_seg, t_log, t_ckpt = time.perf_counter(), time.perf_counter(), time.perf_counter()
    elapsed0, step_log = tr.elapsed, start
    try:
        for batch in loader:
            run_loss += tr.train_step(batch)
            run_n += 1
            now = time.perf_counter()
            tr.elapsed = elapsed0 + (now - t_seg)
            s = tr.step
            last = s == cfg.steps or _time_is_up(tr, now - t_seg)
            do_val = val_on and (s % cfg.val_every == 0 or last)  # same decision on every rank
            do_log = (cfg.log_every > 0 and s % cfg.log_every == 0) or do_val or last
            if do_log:
                if tr.dist.world_size > 1:
                    torch.distributed.all_reduce(run_loss)
                    run_loss /= tr.dist.world_size
                loss = float(run_loss) / max(run_n, 1)
                rate = (s - step_log) * cfg.patches_per_step / max(now - t_log, 1e-9)
                run_loss.zero_()
                run_n, step_log, t_log = 0, s, now
            if main:
                if do_val:
                    tr.last_val = tr.validate(val)
                if do_log:
                    row = {"step": s, "loss": f"{loss:.6g}", "val_loss": f"{tr.last_val:.6g}" if do_val else "",
                           "patches_per_s": f"{rate:.1f}", "lr": f"{tr.lr_at(s - 1):.3g}", "time": f"{tr.elapsed:.1f}"}
                    _append_log(log_path, row)
                    if bar is not None:
                        post = {"loss": f"{loss:.4f}", "patches/s": f"{rate:.0f}"}
                        if tr.last_val is not None:
                            post["val"] = f"{tr.last_val:.4f}"
                        bar.set_postfix(post, refresh=False)
                timed = cfg.checkpoint_minutes > 0 and now - t_ckpt >= 60 * cfg.checkpoint_minutes
                if last or timed or (cfg.checkpoint_every > 0 and s % cfg.checkpoint_every == 0):
                    tr.save()
                    t_ckpt = time.perf_counter()
                    plot_log(log_path, png_path)
                elif do_val:
                    plot_log(log_path, png_path)
                if do_val or do_log:
                    t_log = time.perf_counter()  # patches/s counts training time only
            if bar is not None:
                bar.update(1)
            if last:
                break
    finally:
        if bar is not None:
            bar.close()


def _time_is_up(tr: Trainer, seconds: float) -> bool:
    """``max_minutes`` reached (decided on rank 0 and shared, checked at log steps)."""
    cfg = tr.cfg
    if cfg.max_minutes <= 0 or tr.step % max(cfg.log_every, 1):
        return False
    up = seconds >= 60.0 * cfg.max_minutes
    if tr.dist.world_size > 1:
        flag = torch.tensor([float(up)], device=tr.device)
        torch.distributed.broadcast(flag, 0)
        up = bool(flag.item())
    return up


def initialise_from(model: UNet, cfg: TrainConfig) -> dict:
    """Load the exported weights ``cfg.init`` into ``model``; returns what was loaded.

    Raises:
        TrainingError: the export is missing, corrupt, of another shape or objective.
    """
    from .checkpoint import CheckpointError
    from .weights import load_model

    try:
        src = load_model(cfg.init)
    except CheckpointError as exc:
        raise TrainingError(f"--init {cfg.init}: {exc}") from exc
    info = getattr(src, "info", {}) or {}
    if info.get("objective", "diffusion") != cfg.objective:
        raise TrainingError(f"--init {cfg.init} holds a {info.get('objective')!r} model; this run trains {cfg.objective!r}")
    theirs, ours = src.config.to_dict(), cfg.model.to_dict()
    fewer_attn = ours["linear_attn_from"] >= theirs["linear_attn_from"]
    if {k: v for k, v in theirs.items() if k != "linear_attn_from"} != {
            k: v for k, v in ours.items() if k != "linear_attn_from"} or not fewer_attn:
        raise TrainingError(f"--init {cfg.init}: its model shape {theirs} differs from this run's {ours} "
                            "(only dropping linear attentions, a larger linear_attn_from, is allowed)")
    state = src.state_dict()
    wanted = model.state_dict().keys()
    dropped = sorted({k.rsplit(".attn.", 1)[0] + ".attn" for k in state if k not in wanted})
    model.load_state_dict({k: state[k] for k in wanted})  # every tensor of this model comes from the export
    tr = info.get("training", {})
    out = {"path": str(cfg.init), "sha256": info.get("weights", {}).get("sha256"),
           "steps": tr.get("steps"), "patches_seen": tr.get("patches_seen")}
    if dropped:
        out["dropped"] = dropped
    return out


def _append_log(path: Path, row: dict) -> None:
    new = not path.is_file() or path.stat().st_size == 0
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, LOG_FIELDS, lineterminator="\n")
        if new:
            w.writeheader()
        w.writerow(row)
