"""Generated bump/dent images with a known layout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..core.integrate import normals_from_depth
from ..core.render import render

__all__ = ["BumpDentLayout", "bump_dent_relief", "generated_bump_dent_layout"]


@dataclass
class BumpDentLayout:
    """A generated relief of bumps and dents with everything known.

    Attributes:
        image: ``(H, W)`` float64 rendering in [0, 1].
        normals: ``(H, W, 3)`` true normals; mask: ``(H, W)`` bool (the whole frame).
        regions: ``(H, W)`` int labels 1..R (0 = flat ground); layout: ``(R,)`` int8,
        +1 bump / -1 dent; light: ``(3,)`` unit light; height: ``(H, W)`` pixels.
    """

    image: np.ndarray
    normals: np.ndarray
    mask: np.ndarray
    regions: np.ndarray
    layout: np.ndarray
    light: np.ndarray
    height: np.ndarray


def bump_dent_relief(features, signs, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Height ``(size, size)`` (pixels) and int32 region labels 1..R (0 = flat ground) of
    round features ``(cy, cx, r)`` (pixels) with ``signs`` +1 bump / -1 dent, each with the
    profile ``h(r) = s * 0.6 R (1 - (r/R)^2)^2`` (smooth at the rim)."""
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    height = np.zeros((size, size))
    regions = np.zeros((size, size), np.int32)
    for k, ((cy, cx, r), s) in enumerate(zip(features, signs), start=1):
        rho2 = ((rows - cy) ** 2 + (cols - cx) ** 2) / r**2
        inside = rho2 < 1
        height += np.where(inside, s * 0.6 * r * (1 - rho2) ** 2, 0.0)
        regions[inside] = k
    return height, regions


def generated_bump_dent_layout(seed: int, size: int = 128) -> BumpDentLayout:
    """Random bumps and dents on flat ground, rendered under a random light.

    2 to 6 round features (at least one bump and one dent) with radii between 8% and 18%
    of ``size`` at random non-overlapping positions (gap of 3 pixels or more), profile
    ``h(r) = s * 0.6 R (1 - (r/R)^2)^2`` (smooth at the rim; ``s`` = +1 bump, -1 dent),
    lit from a random direction 25 to 55 degrees from the view direction.  Unlike the
    circles stimulus, counts, sizes and light vary with ``seed``.
    """
    if size < 32:
        raise ValueError(f"size must be at least 32 pixels, got {size}")
    rng = np.random.default_rng(seed)
    count = int(rng.integers(2, 7))
    placed: list[tuple[float, float, float]] = []
    for _ in range(10000):
        if len(placed) == count:
            break
        r = rng.uniform(0.08, 0.18) * size
        cy, cx = rng.uniform(r + 2, size - r - 2, size=2)
        if all(math.hypot(cx - x, cy - y) > r + rr + 3 for y, x, rr in placed):
            placed.append((cy, cx, r))
    signs = rng.choice([-1, 1], size=len(placed))
    if len(placed) >= 2 and abs(signs.sum()) == len(placed):
        signs[rng.integers(len(placed))] *= -1
    height, regions = bump_dent_relief(placed, signs, size)
    slant = np.radians(rng.uniform(25, 55))
    tilt = rng.uniform(0, 2 * np.pi)
    light = np.array([np.sin(slant) * np.cos(tilt), np.sin(slant) * np.sin(tilt), np.cos(slant)])
    mask = np.ones((size, size), bool)
    normals = normals_from_depth(height, mask)
    image = render(normals, light)
    return BumpDentLayout(image, normals, mask, regions, signs.astype(np.int8), light, height)
