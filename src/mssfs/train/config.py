"""Training configuration: :class:`TrainConfig`, its option help and config files.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..core.patches import PATCH
from ..model.unet import UNetConfig

__all__ = ["TrainConfig", "TrainingError", "load_config_file"]


OBJECTIVES = ("diffusion", "regression")


#: Options that may change when a run is resumed (they do not alter what is computed).
RESUMABLE_KEYS = frozenset(
    {"steps", "val_every", "log_every", "checkpoint_every", "checkpoint_minutes", "keep_checkpoints",
     "num_workers", "compile", "device", "data", "max_minutes", "init", "accumulate", "cuda_graph",
     "prefetch"}
)


class TrainingError(Exception):
    """A problem with a training request (bad config, run directory in the way, ...)."""


@dataclass
class TrainConfig:
    """Everything that defines a training run; stored in every checkpoint as JSON.

    Attributes:
        objective: ``"diffusion"`` (noise prediction) or ``"regression"`` (normals from
            shading at ``t = 0`` with zero ``x_t``: a deterministic baseline).
        model: the U-Net shape and its prediction target (``model.prediction``: eps, v
            or x0; ``model.timesteps`` is set to ``timesteps``).
        steps: optimiser steps in total.
        patches_per_step: global batch in 16x16 patches (split evenly over processes).
        image_size: side of the training images requested from the data source.
        images_per_step: minimum images drawn per process and step (0: as many as the
            batch needs); more are drawn when background capping leaves too few patches.
        max_background_frac: the largest share of the batch that may be pure-background
            patches (mask all zero); the rest are patches touching the object.
        data: folder of shards written by ``mssfs data``, or ``None`` to render on the fly.
        mix: shape-family shares for maps rendered on the fly (``{family: share}``, or
            ``"figures=0.2,blob=0.1"``; normalised when used); ``None``: the default mix
            (:data:`mssfs.data.shapes.DEFAULT_MIX`). Not with ``data`` (shards hold their own).
        lr, betas, weight_decay: AdamW; lr warms up linearly over ``warmup_steps``.
        grad_clip: max gradient norm (0 disables).
        ema_decay: EMA decay, with warm-up ``min(decay, (1 + s) / (10 + s))``.
        precision: ``"auto"`` (bf16 autocast where the device has it natively), ``"bf16"`` or ``"fp32"``.
        compile, channels_last: ``torch.compile`` the model (static shapes) / use
            channels-last memory.
        cuda_graph: capture the whole training step (forward, loss, backward, clipping,
            AdamW, EMA) in one CUDA graph and replay it (:mod:`mssfs.train.graphstep`):
            the same update up to float rounding, without the per-kernel launch cost.
            CUDA only, one process, ``accumulate`` 1 (resumable-changeable).
        seed: base seed of data, timesteps and noise (per step and rank).
        timesteps: diffusion steps ``T`` of the cosine schedule.
        val_patches: held-out patches for the validation loss (fixed noise, fixed ``t``
            evenly spread over ``[0, T-1]``, computed with the EMA weights in fp32).
        val_every, log_every, checkpoint_every: in steps (0 disables).
        checkpoint_minutes: also checkpoint when this much wall time passed (0 disables).
        keep_checkpoints: how many recent checkpoints to keep (0 keeps all).
        num_workers: data-loader processes preparing batches ahead (the training maps'
            stream then depends on the number of workers).
        prefetch: batches prepared ahead by a background thread of the training process
            (:mod:`mssfs.train.prefetch`); unlike ``num_workers`` the batches stay exactly
            those of the plain loop. 0: none (resumable-changeable).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
        max_minutes: stop after this many minutes of training in this process (with a
            checkpoint, validation and log row, as at the last step); 0: no limit. The
            learning-rate schedule does not depend on it, so ``--resume`` continues the
            same run.
        init: an exported model folder (``mssfs export``, e.g. the package's
            ``weights/default``) whose weights start the model and its EMA; the optimiser
            starts fresh. Ignored when resuming (the checkpoint has the weights).
        min_snr_gamma: 0 (default, docs/method.md#diffusion): the plain Huber loss on the noise. > 0:
            each patch's loss is weighted by ``min(SNR_t, gamma) / SNR_t`` (min-SNR
            weighting for noise prediction; ``SNR_t = abar_t / (1 - abar_t)``), which
            keeps full weight on the noisy steps, where the shading decides the normals,
            and shrinks the nearly clean ones. Diffusion objective only; the validation
            loss stays unweighted so runs remain comparable.
        accumulate: split each process's batch into this many equal micro-batches, one
            forward and backward each, then one optimiser step: the same update as the
            whole batch at a fraction of the activation memory (resumable-changeable).
        teacher: an exported diffusion model folder to distil from (diffusion objective
            only; its schedule's ``T`` must be ``timesteps``); ``None``: no distillation.
        distill_weight: ``w`` in ``(1 - w) * data loss + w * Huber(student output,
            teacher's prediction in the student's target)``, in ``[0, 1]``; used only with
            ``teacher``.
    """

    objective: str = "diffusion"
    model: UNetConfig = field(default_factory=UNetConfig)
    steps: int = 100_000
    patches_per_step: int = 2048
    image_size: int = 256
    images_per_step: int = 0
    max_background_frac: float = 0.1
    data: str | None = None
    mix: dict[str, float] | None = None
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
    accumulate: int = 1
    teacher: str | None = None
    distill_weight: float = 0.5
    cuda_graph: bool = False
    prefetch: int = 0

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
        if self.model.timesteps != self.timesteps:  # the model converts v / x0 outputs on the run's schedule
            try:
                self.model = dataclasses.replace(self.model, timesteps=self.timesteps)
            except ValueError as exc:
                raise TrainingError(f"timesteps: {exc}") from None
        if self.model.prediction != "eps" and self.objective != "diffusion":
            raise TrainingError(f"prediction {self.model.prediction!r} applies to the diffusion objective only")
        if self.mix is not None:
            self.mix = _check_mix(self.mix, self.data)
        if self.max_minutes < 0:
            raise TrainingError("max_minutes must be >= 0 (0: no limit)")
        if self.min_snr_gamma < 0:
            raise TrainingError("min_snr_gamma must be >= 0 (0: unweighted loss)")
        if self.min_snr_gamma and self.objective != "diffusion":
            raise TrainingError("min_snr_gamma applies to the diffusion objective only")
        if isinstance(self.accumulate, bool) or not isinstance(self.accumulate, int) or self.accumulate < 1:
            raise TrainingError(f"accumulate must be a positive integer, got {self.accumulate!r}")
        if self.patches_per_step % self.accumulate:
            raise TrainingError(f"patches_per_step {self.patches_per_step} is not divisible by accumulate {self.accumulate}")
        if not 0.0 <= self.distill_weight <= 1.0:
            raise TrainingError(f"distill_weight must lie in [0, 1], got {self.distill_weight}")
        if self.teacher and self.objective != "diffusion":
            raise TrainingError("a teacher (distillation) applies to the diffusion objective only")
        if isinstance(self.prefetch, bool) or not isinstance(self.prefetch, int) or self.prefetch < 0:
            raise TrainingError(f"prefetch must be an integer >= 0, got {self.prefetch!r}")
        if self.cuda_graph and self.device.split(":")[0] not in ("auto", "cuda"):
            raise TrainingError(f"cuda_graph needs a CUDA device, got device {self.device!r}")
        if self.cuda_graph and self.accumulate > 1:
            raise TrainingError(f"cuda_graph captures one forward and backward per step; use accumulate 1 "
                                f"(got {self.accumulate})")

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
    "mix": "shape-family shares for maps rendered on the fly, e.g. 'figures=0.2,blob=0.1' (normalised; "
           "`mssfs data families` lists them; default: the default mix; not with --data)",
    "lr": "AdamW learning rate after warm-up",
    "betas": "AdamW betas",
    "weight_decay": "AdamW decoupled weight decay",
    "warmup_steps": "linear learning-rate warm-up steps",
    "grad_clip": "maximum gradient norm (0 disables clipping)",
    "ema_decay": "decay of the EMA weights (used for validation and export)",
    "precision": "auto (bf16 autocast where the device has it natively, else fp32), bf16 or fp32",
    "compile": "torch.compile the model (static shapes; fuses the element-wise work on a GPU)",
    "cuda_graph": "capture the whole training step in one CUDA graph and replay it (CUDA only, one process, "
                  "accumulate 1)",
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
    "prefetch": "batches prepared ahead by a background thread of the training process; the same batches "
                "as without it (0: none)",
    "device": "auto, cpu, cuda or cuda:N (under torchrun: the local rank's GPU)",
    "max_minutes": "stop with a checkpoint after this many minutes of training (0: no limit; --resume continues)",
    "min_snr_gamma": "0: plain Huber loss (the publication's); > 0: weight each patch by min(SNR, gamma)/SNR (diffusion only; validation stays unweighted)",
    "accumulate": "split each process's batch into K equal micro-batches (same update, less memory; "
                  "patches per process must be divisible by K)",
    "teacher": "distil from an exported diffusion model folder (diffusion objective only; same T)",
    "distill_weight": "weight w of the distillation term: (1 - w) * data loss + w * Huber(student, teacher); "
                      "only with --teacher",
    "init": "start the model and EMA from an exported model folder (written by `mssfs export`); fresh "
            "optimiser; without model options (config file or command line) the run takes the export's model shape",
}


def _check_mix(mix, data) -> dict[str, float]:
    """``mix`` validated (:func:`mssfs.data.shapes.parse_mix`) as ``{family: share}``, not normalised."""
    from ..data.shapes import parse_mix

    if data:
        raise TrainingError("mix applies to maps rendered on the fly; shards (data) hold their own mix, so give one of them")
    try:
        return parse_mix(mix, normalise=False)
    except (TypeError, ValueError) as exc:
        raise TrainingError(f"mix: {exc}") from None


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
