"""Analysis of a sample set: curvature readings, distances and clustering into interpretations,
spread and implied lights, embeddings, Wasserstein distances, region readings, bump/dent
layouts, depth meshes and relit renders, the report and its plots.
"""

from __future__ import annotations

from .clustering import Clustering, cluster_samples, mode_correlation
from .curvature import FLAT_LEVEL, convexity_readings, curvature_level, mean_curvature
from .distances import normal_distances, reading_distances, sign_distances
from .embedding import embed
from .layouts import BumpDentLayout, bump_dent_relief, generated_bump_dent_layout
from .mesh import (
    RAKING_LIGHT,
    Mesh,
    depth_maps,
    depth_png16,
    mesh_from_depth,
    read_obj,
    read_ply,
    relight,
    tile,
    write_obj,
    write_ply,
)
from .plots import normal_rgb, report_figure, save_figure
from .regions import consistency, disc_readings, radial_tilts, region_readings
from .report import Analysis, analyze
from .sample_set import SampleSet, SampleSetError, find_sample_folders, load_sample_set
from .spread import angular_spread, implied_lights, light_angles
from .wasserstein import wasserstein

__all__ = [
    "FLAT_LEVEL",
    "RAKING_LIGHT",
    "Analysis",
    "BumpDentLayout",
    "Clustering",
    "Mesh",
    "SampleSet",
    "SampleSetError",
    "analyze",
    "angular_spread",
    "bump_dent_relief",
    "cluster_samples",
    "consistency",
    "convexity_readings",
    "curvature_level",
    "depth_maps",
    "depth_png16",
    "disc_readings",
    "embed",
    "find_sample_folders",
    "generated_bump_dent_layout",
    "implied_lights",
    "light_angles",
    "load_sample_set",
    "mean_curvature",
    "mesh_from_depth",
    "mode_correlation",
    "normal_distances",
    "normal_rgb",
    "radial_tilts",
    "read_obj",
    "read_ply",
    "reading_distances",
    "region_readings",
    "relight",
    "report_figure",
    "save_figure",
    "sign_distances",
    "tile",
    "wasserstein",
    "write_obj",
    "write_ply",
]
