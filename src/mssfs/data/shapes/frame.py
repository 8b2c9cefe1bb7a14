"""Pixel grids, rotations and slope-to-normal conversion shared by the shape families.

Frame coordinates: a ``size x size`` map covers ``[-1, 1]^2``; pixel ``(row, col)`` has
its centre at ``x = (col + 0.5) / size * 2 - 1`` (right) and
``y = 1 - (row + 0.5) / size * 2`` (**up**), as in :mod:`mssfs.core.frame`.  Shapes are
defined in these units, so one ``(family, seed)`` gives the same surface at every size.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["normals_from_gradient", "pixel_grid", "random_rotation", "steepness_scale"]


@functools.lru_cache(maxsize=8)
def pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Read-only float32 ``(size, size)`` arrays ``x`` (right) and ``y`` (up) of pixel centres."""
    c = (np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0
    x = np.ascontiguousarray(np.broadcast_to(c[None, :], (size, size)))
    y = np.ascontiguousarray(np.broadcast_to(-c[:, None], (size, size)))
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly distributed 3-D rotation matrix ``(3, 3)`` (float64), from a unit quaternion."""
    w, x, y, z = (float(v) for v in rng.normal(size=4))
    n = np.sqrt(w * w + x * x + y * y + z * z)
    w, x, y, z = w / n, x / n, y / n, z / n
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def normals_from_gradient(gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """Unit normals ``(H, W, 3)`` float32 of a height field with slopes ``dz/dx = gx``, ``dz/dy = gy`` (y up)."""
    inv = 1.0 / np.sqrt(1.0 + gx * gx + gy * gy)
    return np.stack([-gx * inv, -gy * inv, inv], axis=-1).astype(np.float32)


def steepness_scale(gx: np.ndarray, gy: np.ndarray, rng: np.random.Generator, degrees=(12.0, 70.0),
                    where: np.ndarray | None = None) -> float:
    """Factor that sets the 95th percentile of the slope angle to a random angle in ``degrees``.

    Reliefs multiply their height (hence their gradient) by this factor, so a map is
    anywhere from gentle to steep whatever its raw amplitude.  ``where`` (bool, the
    shape of ``gx``) restricts the percentile to those pixels (e.g. off flat ground).
    """
    g = np.sqrt(gx * gx + gy * gy)
    g = g[::2, ::2] if where is None else g[::2, ::2][where[::2, ::2]]
    p95 = float(np.percentile(g, 95.0)) if g.size else 0.0
    target = float(np.tan(np.radians(rng.uniform(*degrees))))
    return target / max(p95, 1e-12)
