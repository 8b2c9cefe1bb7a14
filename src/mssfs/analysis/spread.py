"""Per-pixel angular spread of samples and the light each sample implies.
"""

from __future__ import annotations

import numpy as np

from ..core.frame import foreground_mask, normalize
from ..evaluation.metrics import angular_error
from ..sampler.lighting import estimate_light

__all__ = ["angular_spread", "implied_lights", "light_angles"]


def implied_lights(normals: np.ndarray, image: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """:func:`mssfs.sampler.lighting.estimate_light` (least squares ``n . l = I`` over lit pixels)
    for each of ``(N, H, W, 3)`` maps; returns ``(N, 3)`` (zeros where not estimable)."""
    return np.stack([estimate_light(n, image, mask) for n in normals])


def light_angles(light: np.ndarray) -> tuple[float, float]:
    """``(slant, tilt)`` in degrees of a ``(3,)`` light: angle from the view direction,
    and image-plane direction counter-clockwise from +x (90 = from above)."""
    l = np.asarray(light, np.float64)
    l = l / max(np.linalg.norm(l), 1e-12)
    return float(np.degrees(np.arccos(np.clip(l[2], -1, 1)))), float(np.degrees(np.arctan2(l[1], l[0])))


def angular_spread(normals: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Per-pixel angular standard deviation (degrees) of ``(N, H, W, 3)`` samples around
    their normalised mean: ``sqrt(mean_i angle(n_i, m)^2)``.  Returns ``(H, W)``, NaN
    outside the mask."""
    normals = np.asarray(normals, np.float64)
    if mask is None:
        mask = foreground_mask(normals).any(0)
    mean = normalize(normals.mean(0))
    ang = angular_error(normals, np.broadcast_to(mean, normals.shape), mask)
    return np.sqrt(np.mean(ang**2, axis=0))
