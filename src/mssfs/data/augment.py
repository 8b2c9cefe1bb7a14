"""Dihedral augmentation (rotations by 90 degrees and flips) of images, normal maps and lights.
"""

from __future__ import annotations

import numpy as np

__all__ = ["augment", "augment_grid", "augment_vectors"]


def augment_vectors(v: np.ndarray, k: int, flip: bool) -> np.ndarray:
    """Transform ``(..., 3)`` vectors like :func:`augment_grid`: mirror ``x`` if ``flip``, then rotate by ``k`` quarter turns counter-clockwise (y up)."""
    x, y = v[..., 0], v[..., 1]
    if flip:
        x = -x
    for _ in range(k % 4):
        x, y = -y, x
    return np.stack([x, y, v[..., 2]], axis=-1)


def augment_grid(a: np.ndarray, k: int, flip: bool) -> np.ndarray:
    """Mirror the columns of an ``(H, W, ...)`` array if ``flip``, then rotate it ``k`` quarter turns counter-clockwise."""
    if flip:
        a = a[:, ::-1]
    return np.ascontiguousarray(np.rot90(a, k, axes=(0, 1)))


def augment(image, normals, mask, light, k: int, flip: bool):
    """Apply one rotation/mirror to an image ``(H, W)``, its normals ``(H, W, 3)``, mask and light ``(3,)`` consistently.

    Rendering the returned normals under the returned light gives the returned image.
    """
    return (
        augment_grid(image, k, flip),
        augment_vectors(augment_grid(normals, k, flip), k, flip),
        augment_grid(mask, k, flip),
        augment_vectors(np.asarray(light), k, flip),
    )
