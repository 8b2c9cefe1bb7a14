"""Core numerics shared by every stage: the normal frame and slopes, integration to depth, normal-map
and image files, rendering, 16x16 patches, resizing, devices and progress bars.
"""

from __future__ import annotations

from .device import resolve_device
from .fileio import atomic_path, save_json, save_npy, save_png
from .frame import foreground_mask, integrability_residual, normalize, normals_to_slopes, slopes_to_normals
from .images import MIN_SIZE, ImageError, alpha_mask, load_input, load_input_with_alpha, read_image, validate_image
from .integrate import depth_from_normals, normals_from_depth
from .normal_io import load_normals, save_normals
from .patches import PATCH, from_patches, to_patches
from .progress import progress_bar
from .render import MAX_LIGHT_ANGLE_DEG, add_sensor_noise, render, sample_lights
from .resize import resize_normals_array, resize_normals_tensor, resize_tensor

__all__ = [
    "MAX_LIGHT_ANGLE_DEG",
    "MIN_SIZE",
    "PATCH",
    "ImageError",
    "add_sensor_noise",
    "alpha_mask",
    "atomic_path",
    "depth_from_normals",
    "foreground_mask",
    "from_patches",
    "integrability_residual",
    "load_input",
    "load_input_with_alpha",
    "load_normals",
    "normalize",
    "normals_from_depth",
    "normals_to_slopes",
    "progress_bar",
    "read_image",
    "render",
    "resize_normals_array",
    "resize_normals_tensor",
    "resize_tensor",
    "resolve_device",
    "sample_lights",
    "save_json",
    "save_normals",
    "save_npy",
    "save_png",
    "slopes_to_normals",
    "to_patches",
    "validate_image",
]
