"""Multiscale guided sampling: input preparation, schedules, guided DDIM with seam/integrability/
shading guidance, lighting consistency, the V-cycle, results and the ``sample`` API.
"""

from __future__ import annotations

from .api import resolve_model, sample, sample_many, sample_seed
from .ddim import StepInfo, guided_ddim
from .denoiser import SlicedDenoiser
from .guidance import (
    SLOPE_CLAMP,
    integrability_loss,
    lateral_floor,
    safe_angle,
    seam_loss,
    shading_loss,
    slopes_published,
)
from .inputs import PreparedInput, auto_mask, prepare_input
from .lighting import (
    LightingResult,
    RegionFlipResult,
    consistent_lighting,
    consistent_regions,
    estimate_light,
    flip_decisions,
    flip_normals,
    patch_lights,
    region_flip_decisions,
    select_pixels,
    shading_regions,
)
from .result import SampleResult
from .schedules import PRESETS, Schedule, Stage, StageCost, StageRun, get_preset, load_schedule, resolve_schedule
from .vcycle import run_vcycle

__all__ = [
    "PRESETS",
    "SLOPE_CLAMP",
    "LightingResult",
    "PreparedInput",
    "RegionFlipResult",
    "SampleResult",
    "Schedule",
    "SlicedDenoiser",
    "Stage",
    "StageCost",
    "StageRun",
    "StepInfo",
    "auto_mask",
    "consistent_lighting",
    "consistent_regions",
    "estimate_light",
    "flip_decisions",
    "flip_normals",
    "get_preset",
    "guided_ddim",
    "integrability_loss",
    "lateral_floor",
    "load_schedule",
    "patch_lights",
    "prepare_input",
    "region_flip_decisions",
    "resolve_model",
    "resolve_schedule",
    "run_vcycle",
    "safe_angle",
    "sample",
    "sample_many",
    "sample_seed",
    "seam_loss",
    "select_pixels",
    "shading_loss",
    "shading_regions",
    "slopes_published",
]
