"""Training the denoiser: configuration, patch batches, losses, EMA, distributed setup, the run log
and the trainer loop with exact resume.
"""

from __future__ import annotations

from .batches import PatchBatch, StepBatches, TrainingImagesSource, derive_seed, sample_patches
from .config import TrainConfig, TrainingError, load_config_file
from .ema import EMA
from .losses import diffusion_loss, min_snr_weights, regression_loss
from .runlog import append_log, read_log, truncate_log
from .trainer import Trainer, train

__all__ = [
    "EMA",
    "PatchBatch",
    "StepBatches",
    "TrainConfig",
    "Trainer",
    "TrainingError",
    "TrainingImagesSource",
    "append_log",
    "derive_seed",
    "diffusion_loss",
    "load_config_file",
    "min_snr_weights",
    "read_log",
    "regression_loss",
    "sample_patches",
    "train",
    "truncate_log",
]
