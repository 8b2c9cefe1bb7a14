"""Evaluation against ground truth and on ambiguous stimuli: baselines, metrics, methods and
ablations, evaluation items, the runner, tables and figures.
"""

from __future__ import annotations

from .baselines import LightEstimate, classical_sfs, estimate_light_from_image, flat_normals
from .figures import FIGURE_METHODS, ablation_figure
from .items import CIRCLES_LAYOUT, ObjectItem, StimulusItem, heldout_items, segment_features, stimulus_items
from .methods import (
    ABLATIONS,
    BASELINES,
    DEFAULT_METHODS,
    METHODS,
    SAMPLER_METHODS,
    Method,
    ablation_schedule,
    build_methods,
    method_schedule,
    scale_schedule,
)
from .metrics import (
    ImageScores,
    StimulusScores,
    aggregate,
    angular_error,
    error_metrics,
    fuse_samples,
    score_readings,
    score_samples,
    score_stimulus,
)
from .runner import RunSettings, run_objects, run_stimuli
from .tables import objects_table, stimuli_table, strict_table, write_results

__all__ = [
    "ABLATIONS",
    "BASELINES",
    "CIRCLES_LAYOUT",
    "DEFAULT_METHODS",
    "FIGURE_METHODS",
    "METHODS",
    "SAMPLER_METHODS",
    "ImageScores",
    "LightEstimate",
    "Method",
    "ObjectItem",
    "RunSettings",
    "StimulusItem",
    "StimulusScores",
    "ablation_figure",
    "ablation_schedule",
    "aggregate",
    "angular_error",
    "build_methods",
    "classical_sfs",
    "error_metrics",
    "estimate_light_from_image",
    "flat_normals",
    "fuse_samples",
    "heldout_items",
    "method_schedule",
    "objects_table",
    "run_objects",
    "run_stimuli",
    "scale_schedule",
    "score_readings",
    "score_samples",
    "score_stimulus",
    "segment_features",
    "stimuli_table",
    "stimulus_items",
    "strict_table",
    "write_results",
]
