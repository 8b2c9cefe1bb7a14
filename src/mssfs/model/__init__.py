"""The patch denoiser: the U-Net, its noise schedule, checkpoints, shipped weights, the regression
baseline's prediction, CUDA-graph replay and a two-reading oracle for tests.
"""

from __future__ import annotations

from .checkpoint import (
    Checkpoint,
    CheckpointError,
    atomic_save_safetensors,
    atomic_write_bytes,
    checkpoint_path,
    flatten_optimizer_state,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
    unflatten_optimizer_state,
)
from .cudagraphs import GraphedCalls
from .diffusion import T_DEFAULT, DDIMStepOutput, NoiseSchedule, cosine_betas
from .oracle import TwoReadingOracle
from .regression import predict_regression
from .unet import UNet, UNetConfig, count_parameters, flops_per_patch, linear_attention_reference, sinusoidal_embedding
from .weights import DEFAULT_DIR, WEIGHTS_FORMAT, export_checkpoint, export_folder, load_model, read_export_config

__all__ = [
    "DEFAULT_DIR",
    "T_DEFAULT",
    "WEIGHTS_FORMAT",
    "Checkpoint",
    "CheckpointError",
    "DDIMStepOutput",
    "GraphedCalls",
    "NoiseSchedule",
    "TwoReadingOracle",
    "UNet",
    "UNetConfig",
    "atomic_save_safetensors",
    "atomic_write_bytes",
    "checkpoint_path",
    "cosine_betas",
    "count_parameters",
    "export_checkpoint",
    "export_folder",
    "flatten_optimizer_state",
    "flops_per_patch",
    "latest_checkpoint",
    "linear_attention_reference",
    "list_checkpoints",
    "load_checkpoint",
    "load_model",
    "predict_regression",
    "read_export_config",
    "save_checkpoint",
    "sinusoidal_embedding",
    "unflatten_optimizer_state",
]
