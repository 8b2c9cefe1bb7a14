"""Do the samples follow the image or the seed? (``mssfs analyze DIR --seed-or-image``).

``mssfs sample`` draws sample ``i`` of every input from the same seed. A model that reads
shading gives different images different shapes, so sample ``i`` of one input should
differ from sample ``i`` of another at least as much as two seeds of one input differ. A
model that mostly ignores its shading input turns each seed's noise into nearly the same
map whatever the image. :func:`seed_or_image` measures both kinds of pairs; the ratio of
their mean angles is well below 1 when the samples are driven by the seed.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from ..core.resize import resize_normals_array
from ..evaluation.metrics import angular_error
from .sample_set import SampleSet

__all__ = ["SeedOrImage", "seed_or_image"]


@dataclass(frozen=True)
class SeedOrImage:
    """Mean per-pixel angles (degrees) between pairs of samples.

    ``across``: sample ``i`` of one folder against sample ``i`` of another (same seed,
    different images), one value per pair of folders and ``i``. ``within``: samples ``i``
    and ``j`` of one folder (same image, different seeds). ``n_samples`` samples per
    folder were compared, resized to ``size`` x ``size``.
    """

    n_folders: int
    n_samples: int
    size: int
    across: list[float]
    within: list[float]

    @property
    def ratio(self) -> float:
        """Mean of ``across`` over mean of ``within`` (images / seeds)."""
        return float(np.mean(self.across) / max(np.mean(self.within), 1e-12))

    def table(self) -> str:
        """A Markdown summary: count, mean, min and max of both kinds of pairs, and the ratio."""
        lines = [f"{self.n_folders} folders, {self.n_samples} samples each, compared at {self.size} x {self.size}",
                 "| pairs | count | mean angle (deg) | min | max |", "|---|---:|---:|---:|---:|"]
        for name, v in (("same seed, different images", self.across), ("same image, different seeds", self.within)):
            lines.append(f"| {name} | {len(v)} | {np.mean(v):.2f} | {min(v):.2f} | {max(v):.2f} |")
        lines.append(f"ratio (images / seeds): {self.ratio:.2f}")
        return "\n".join(lines)


def _mean_angle(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Mean angle (degrees) between two ``(H, W, 3)`` maps over the ``(H, W)`` ``mask``."""
    return float(np.nanmean(angular_error(a, b, mask)))


def seed_or_image(sets: list[SampleSet], size: int = 128) -> SeedOrImage:
    """Compare sample folders written by one ``mssfs sample`` run (same seeds).

    ``sets``: two or more :class:`SampleSet`, each with at least two samples; the first
    ``min(len)`` samples of each are used, resized to ``size`` x ``size`` and compared
    where both maps are foreground. Raises :class:`ValueError` for fewer than two sets,
    fewer than two samples, or sets whose ``meta.json`` lists different seeds.
    """
    if len(sets) < 2:
        raise ValueError("give at least two sample folders (different images, same seeds)")
    seeds = [s.meta.get("seeds") for s in sets]
    if any(sd is not None for sd in seeds) and any(sd != seeds[0] for sd in seeds):
        raise ValueError("the folders were sampled with different seeds; sample them in one mssfs sample call")
    n = min(len(s.normals) for s in sets)
    if n < 2:
        raise ValueError("each folder needs at least two samples")
    maps, masks = zip(*(resize_normals_array(s.normals[:n], (size, size), s.mask) for s in sets))
    across = [_mean_angle(maps[a][i], maps[b][i], masks[a] & masks[b])
              for a, b in itertools.combinations(range(len(sets)), 2) for i in range(n)]
    within = [_mean_angle(maps[a][i], maps[a][j], masks[a])
              for a in range(len(sets)) for i, j in itertools.combinations(range(n), 2)]
    return SeedOrImage(len(sets), n, size, across, within)
