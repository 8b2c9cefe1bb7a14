"""Image formation: shadowless Lambertian shading and training lights (docs/method.md#image-formation).

``I = albedo * max(0, n . l)``; background normals ``(0, 0, 0)`` give 0.  Normals and
lights are in the frame of :mod:`mssfs.core.frame` (x right, y up, z toward the viewer).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["MAX_LIGHT_ANGLE_DEG", "add_sensor_noise", "render", "sample_lights"]


#: Training lights lie within this angle of the view direction (l_z >= cos(0.4 pi)).
MAX_LIGHT_ANGLE_DEG = 72.0


def render(normals: np.ndarray, light, albedo=1.0) -> np.ndarray:
    """Shadowless Lambertian image with attached shadows.

    Args:
        normals: ``(..., H, W, 3)``; zero vectors are background.
        light: ``(3,)`` direction (normalised here), or ``(..., 3)`` broadcastable to
            one light per map.
        albedo: scalar, ``(H, W)`` map or anything broadcastable to ``(..., H, W)``.
    Returns:
        ``(..., H, W)`` image in the dtype of ``normals`` (float), 0 on the background.
    """
    normals = np.asarray(normals)
    dtype = normals.dtype if np.issubdtype(normals.dtype, np.floating) else np.float64
    light = np.asarray(light, dtype=np.float64)
    norm = np.linalg.norm(light, axis=-1, keepdims=True)
    if np.any(norm == 0):
        raise ValueError("the light direction is the zero vector")
    light = (light / norm)[..., None, None, :]
    shading = np.maximum(0.0, np.sum(normals * light, axis=-1))
    return (np.asarray(albedo) * shading).astype(dtype)


def sample_lights(n: int, rng: np.random.Generator, max_angle_deg: float = MAX_LIGHT_ANGLE_DEG) -> np.ndarray:
    """``(n, 3)`` unit lights uniform on the spherical cap within ``max_angle_deg`` of +z.

    Uniform on the sphere's area: ``l_z`` is uniform in ``[cos(max_angle), 1]``.
    """
    if not 0.0 <= max_angle_deg <= 180.0:
        raise ValueError(f"max_angle_deg must lie in [0, 180], got {max_angle_deg}")
    zmin = math.cos(math.radians(max_angle_deg))
    z = rng.uniform(zmin, 1.0, size=n)
    phi = rng.uniform(0.0, 2 * math.pi, size=n)
    r = np.sqrt(np.clip(1.0 - z**2, 0.0, None))
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=-1)


def add_sensor_noise(image: np.ndarray, std: float, rng: np.random.Generator, mask=None) -> np.ndarray:
    """Add zero-mean Gaussian noise of standard deviation ``std`` and clip to [0, 1].

    Background pixels (outside ``mask``) stay exactly 0 when a mask is given.
    """
    if std < 0:
        raise ValueError(f"noise std must be >= 0, got {std}")
    out = np.clip(image + rng.normal(0.0, std, size=np.shape(image)), 0.0, 1.0)
    if mask is not None:
        out = np.where(mask, out, 0.0)
    return out.astype(np.asarray(image).dtype)
