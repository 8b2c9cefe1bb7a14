"""Procedural ground-truth normal maps for training (docs/method.md#training-data).

Every map is a pure function of ``(family, seed, size)``::

    normals, mask = generate("blob", seed=7, size=256)   # (256, 256, 3) float32, (256, 256) bool

Two kinds of family:

* **objects** -- a closed smooth surface (implicit function, analytic gradient), randomly
  rotated, seen orthographically on a black background; normals reach ``nz -> 0`` at the
  occluding contour (:mod:`.objects`, :mod:`.raycast`);
* **reliefs** -- a height field filling the whole frame, from gentle to steep
  (:mod:`.reliefs`).

Normals follow :mod:`mssfs.core.frame` (x right, y up, z toward the viewer), are unit
length inside the mask and exactly ``(0, 0, 0)`` outside.

Seeds: training streams draw seeds in ``[0, TRAIN_SEED_LIMIT)`` (= ``2**30``); evaluation
and held-out sets use seeds ``>= HELDOUT_SEED_BASE`` (= ``2**30``), so the two never share
a map.  Shapes like the bundled test stimuli (discs in a grid, concentric rings, a star,
a snake-like stroke) are not generated on purpose: features are placed at random,
elliptical, of mixed sizes and signs.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import objects, reliefs
from .frame import normals_from_gradient, random_rotation, steepness_scale
from .raycast import fit_view, render_implicit

__all__ = [
    "DEFAULT_MIX",
    "FAMILIES",
    "GENERATOR_VERSION",
    "HELDOUT_SEED_BASE",
    "OBJECT_FAMILIES",
    "RELIEF_FAMILIES",
    "TRAIN_SEED_LIMIT",
    "Family",
    "family_rng",
    "generate",
    "parse_mix",
]

#: Changes whenever a family's output for a given (seed, size) changes.
GENERATOR_VERSION = "mssfs-shapes-1"
#: Training seeds lie in [0, TRAIN_SEED_LIMIT).
TRAIN_SEED_LIMIT = 2**30
#: Evaluation / held-out seeds are >= HELDOUT_SEED_BASE.
HELDOUT_SEED_BASE = 2**30


@dataclass(frozen=True)
class Family:
    """A shape family: ``make(rng, size) -> (normals, mask)``, its kind and a one-line description."""

    name: str
    kind: str  # "objects" or "reliefs"
    description: str
    make: Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]

    def __call__(self, rng: np.random.Generator, size: int):
        return self.make(rng, size)


def _object(cls):
    def make(rng: np.random.Generator, size: int):
        shape = cls(rng)
        view = fit_view(shape, random_rotation(rng), rng)
        return render_implicit(shape, size, view)

    return make


def _relief(fn, undulation: float = 0.35):
    """Relief family from ``fn``; a gentle random undulation (up to ``undulation`` of its slope) may be added."""

    def make(rng: np.random.Generator, size: int):
        gx, gy = fn(rng, size)
        k = steepness_scale(gx, gy, rng)
        gx, gy = gx * k, gy * k
        weight = rng.uniform(0.0, undulation) if undulation and rng.random() < 0.6 else 0.0
        if weight:
            ux, uy = reliefs.noise_field(rng, size)
            ku = weight * steepness_scale(ux, uy, rng)
            gx, gy = gx + ku * ux, gy + ku * uy
        return normals_from_gradient(gx, gy), np.ones((size, size), bool)

    return make


_FAMILY_LIST = [
    Family("blob", "objects", "sphere with random low-order spherical-harmonic radius bumps, stretched", _object(objects.PerturbedSphere)),
    Family("quadrics", "objects", "smooth union of 2-5 ellipsoids / superellipsoids", _object(objects.BlendedQuadrics)),
    Family("torus", "objects", "torus, oval and squashed or thickened, any orientation", _object(objects.Torus)),
    Family("capsules", "objects", "smooth union of 1-4 capsules (rounded limbs), chained or scattered", _object(objects.Capsules)),
    Family("revolution", "objects", "surface of revolution with a wavy profile (vase, pear, spindle)", _object(objects.Revolution)),
    Family("extrusion", "objects", "wavy 2-D outline extruded to a slab with rounded edges (pebble, cookie)", _object(objects.Extrusion)),
    Family("bumps", "reliefs", "6-40 elliptical bumps and dents of mixed sizes, overlapping", _relief(reliefs.bumps)),
    Family("ridges", "reliefs", "ridges and grooves along random smooth curves, 1-3 widths", _relief(reliefs.ridges)),
    Family("craters", "reliefs", "elliptical craters with rims, mesas and basins, overlapping", _relief(reliefs.craters)),
    Family("noise", "reliefs", "smooth random height field (power-law spectrum, anisotropic)", _relief(reliefs.noise_field, undulation=0.0)),
]

#: name -> :class:`Family`.
FAMILIES: dict[str, Family] = {f.name: f for f in _FAMILY_LIST}
OBJECT_FAMILIES = tuple(f.name for f in _FAMILY_LIST if f.kind == "objects")
RELIEF_FAMILIES = tuple(f.name for f in _FAMILY_LIST if f.kind == "reliefs")

#: Default share of each family in training data (60 % objects, 40 % reliefs).
DEFAULT_MIX: dict[str, float] = {
    "blob": 0.12,
    "quadrics": 0.14,
    "torus": 0.06,
    "capsules": 0.10,
    "revolution": 0.09,
    "extrusion": 0.09,
    "bumps": 0.11,
    "ridges": 0.10,
    "craters": 0.09,
    "noise": 0.10,
}


def family_rng(family: str, seed: int) -> np.random.Generator:
    """The generator behind ``generate(family, seed, ...)``: a function of the family name and seed only."""
    return np.random.default_rng([zlib.crc32(family.encode()), int(seed)])


def generate(family: str, seed: int, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """One ground-truth normal map of ``family`` for ``seed`` at ``size x size`` pixels.

    Returns:
        ``normals`` float32 ``(size, size, 3)`` (unit inside the mask, 0 outside) and
        ``mask`` bool ``(size, size)``.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown shape family {family!r}; known: {', '.join(FAMILIES)}")
    if int(seed) < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if int(size) < 8:
        raise ValueError(f"size must be at least 8, got {size}")
    normals, mask = FAMILIES[family](family_rng(family, seed), int(size))
    normals[~mask] = 0.0
    return normals, mask


def parse_mix(mix) -> dict[str, float]:
    """Validate a family mix (``{name: share}`` or ``"name=share,..."``) and normalise it to sum 1."""
    if isinstance(mix, str):
        out = {}
        for item in filter(None, (s.strip() for s in mix.split(","))):
            name, sep, share = item.partition("=")
            if not sep:
                raise ValueError(f"mix item {item!r} is not of the form family=share")
            try:
                out[name.strip()] = float(share)
            except ValueError:
                raise ValueError(f"share of {name.strip()!r} is not a number: {share!r}") from None
        mix = out
    mix = {str(k): float(v) for k, v in dict(mix).items()}
    unknown = [k for k in mix if k not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown shape family {', '.join(map(repr, unknown))}; known: {', '.join(FAMILIES)}")
    if any(not np.isfinite(v) or v < 0 for v in mix.values()):
        raise ValueError("family shares must be finite and >= 0")
    total = sum(mix.values())
    if total <= 0:
        raise ValueError("the family mix is empty (all shares are 0)")
    return {k: v / total for k, v in mix.items() if v > 0}
