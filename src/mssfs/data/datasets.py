"""Training and evaluation data sets: an infinite augmented stream and a fixed held-out set.

* :class:`TrainingImages` streams augmented training items, from shards
  (:class:`mssfs.data.shards.ShardSet`) or generated on the fly;
* :class:`HeldoutImages` is a fixed, deterministic evaluation set (seeds >= 2**30).

Item layout (both datasets): ``image`` (1, h, w) float32, ``normals`` (3, h, w) float32,
``mask`` (1, h, w) float32, ``light`` (3,) float32, ``albedo`` float, plus ``family``
(str) and ``seed`` (int).  Normals are in the frame of :mod:`mssfs.core.frame`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from ..core.patches import PATCH
from ..core.render import MAX_LIGHT_ANGLE_DEG, render, sample_lights
from . import shapes
from .augment import augment
from .shards import ShardSet, check_size

__all__ = ["HeldoutImages", "TrainingImages"]


def _item(normals, mask, family, seed, rng, light_max_angle, albedo_range, crop, transform):
    """Render one training item: fresh light and albedo, then crop / rotate / mirror."""
    size = normals.shape[0]
    if crop:
        oy, ox = (int(v) for v in rng.integers(0, PATCH, size=2))
        side = size - PATCH
        normals, mask = normals[oy : oy + side, ox : ox + side], mask[oy : oy + side, ox : ox + side]
    light = sample_lights(1, rng, light_max_angle)[0]
    albedo = float(rng.uniform(*albedo_range))
    image = render(normals, light, albedo)
    if transform:
        image, normals, mask, light = augment(image, normals, mask, light, int(rng.integers(4)), bool(rng.random() < 0.5))
    return {
        "image": torch.from_numpy(np.ascontiguousarray(image, np.float32))[None],
        "normals": torch.from_numpy(np.ascontiguousarray(np.moveaxis(normals, -1, 0), np.float32)),
        "mask": torch.from_numpy(np.ascontiguousarray(mask, np.float32))[None],
        "light": torch.from_numpy(np.asarray(light, np.float32)),
        "albedo": albedo,
        "family": family,
        "seed": int(seed),
    }


class TrainingImages(IterableDataset):
    """Infinite stream of augmented training items (see the module docstring for the layout).

    Args:
        source: a folder written by :func:`make_shards`, or None to generate maps on the
            fly (shape seeds in ``[0, 2**30)`` drawn by the stream).
        size: map size (multiple of 16, >= 32); with a ``source`` None means its size, and
            any other value must match it.
        seed: base seed; the stream of rank ``r``, DataLoader worker ``w`` is a function of
            ``(seed, r, w)`` and the numbers of ranks and workers.
        mix: family shares for on-the-fly generation (default ``shapes.DEFAULT_MIX``).
        rank, world_size: distributed rank; ranks (and workers) read disjoint shards (or,
            with fewer shards than streams, disjoint items) and on the fly draw disjoint seeds.
        light_max_angle: lights are uniform within this angle of the view direction.
        albedo: ``(low, high)``, uniform.
        grid_offset: crop ``(size - 16)^2`` at a random offset in ``[0, 16)`` so patch
            grids do not always align with the map; output side ``size - 16`` (e.g. 240),
            else ``size``.
        augment: random quarter turns and mirror flips of image, normals and light.

    Shards are visited in an order reshuffled every epoch (the same order on all streams,
    then split), items within a shard in a per-stream random order.
    """

    def __init__(
        self,
        source=None,
        size: int | None = 256,
        seed: int = 0,
        mix=None,
        rank: int = 0,
        world_size: int = 1,
        light_max_angle: float = MAX_LIGHT_ANGLE_DEG,
        albedo=(0.5, 1.0),
        grid_offset: bool = True,
        augment: bool = True,
    ):
        super().__init__()
        if not 0 <= int(rank) < int(world_size):
            raise ValueError(f"rank must lie in [0, world_size), got rank={rank}, world_size={world_size}")
        self.shards = ShardSet(source) if source is not None else None
        if self.shards is not None:
            if size is not None and int(size) != self.shards.size:
                raise ValueError(f"size {size} differs from the shards' size {self.shards.size} in {source}")
            size = self.shards.size
        self.size = check_size(256 if size is None else size)
        self.mix = shapes.parse_mix(shapes.DEFAULT_MIX if mix is None else mix)
        self.seed, self.rank, self.world_size = int(seed), int(rank), int(world_size)
        lo, hi = (float(a) for a in albedo)
        if not 0.0 < lo <= hi:
            raise ValueError(f"albedo range must satisfy 0 < low <= high, got {albedo}")
        self.albedo, self.light_max_angle = (lo, hi), float(light_max_angle)
        self.grid_offset, self.augment = bool(grid_offset), bool(augment)

    @property
    def out_size(self) -> int:
        """Side of the items' images: ``size - 16`` with ``grid_offset``, else ``size``."""
        return self.size - PATCH if self.grid_offset else self.size

    def _stream(self):
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        rng = np.random.default_rng([self.seed, self.rank, worker, self.world_size, workers])
        return rng, self.rank * workers + worker, self.world_size * workers

    def _make(self, normals, mask, family, seed, rng):
        return _item(normals, mask, family, seed, rng, self.light_max_angle, self.albedo, self.grid_offset, self.augment)

    def __iter__(self):
        rng, stream, streams = self._stream()
        if self.shards is None:
            names = list(self.mix)
            p = np.array([self.mix[k] for k in names])
            span = shapes.TRAIN_SEED_LIMIT // streams
            while True:
                family = names[int(rng.choice(len(names), p=p))]
                seed = int(rng.integers(span)) * streams + stream  # disjoint across streams
                normals, mask = shapes.generate(family, seed, self.size)
                yield self._make(normals, mask, family, seed, rng)
        yield from self._from_shards(rng, stream, streams)

    def _from_shards(self, rng, stream, streams):
        shards = self.shards
        epoch = 0
        while True:
            order = np.random.default_rng([self.seed, epoch]).permutation(len(shards.shards))
            split_items = len(order) < streams
            mine = order if split_items else order[stream::streams]
            for k in mine:
                data = shards.load(int(k))
                idx = np.arange(len(data["seed"]))
                if split_items:  # fewer shards than streams: share items by global position
                    base = sum(e["count"] for e in shards.manifest["shards"][: int(k)])
                    idx = idx[(base + idx) % streams == stream]
                for i in rng.permutation(idx):
                    normals, mask, family, seed = shards.decode(data, int(i))
                    yield self._make(normals, mask, family, seed, rng)
            epoch += 1


class HeldoutImages(Dataset):
    """Deterministic evaluation set of ``n`` items, map ``i`` has seed ``seed_base + i`` (>= 2**30).

    Args:
        n: number of items.
        size: map size (multiple of 16, >= 32); items are not cropped or augmented.
        seed_base: first seed, at least :data:`mssfs.data.shapes.HELDOUT_SEED_BASE` so
            evaluation maps never occur in training streams.
        kind: ``"objects"``, ``"reliefs"`` or ``"all"``: which families to draw from
            (with their :data:`~mssfs.data.shapes.DEFAULT_MIX` shares, renormalised).

    Item ``i`` (same layout as :class:`TrainingImages`) depends only on
    ``(seed_base + i, size, kind)``.
    """

    KINDS = ("objects", "reliefs", "all")

    def __init__(
        self,
        n: int,
        size: int = 256,
        seed_base: int = shapes.HELDOUT_SEED_BASE,
        kind: str = "all",
        light_max_angle: float = MAX_LIGHT_ANGLE_DEG,
        albedo=(0.5, 1.0),
    ):
        if int(n) <= 0:
            raise ValueError(f"n must be positive, got {n}")
        if int(seed_base) < shapes.HELDOUT_SEED_BASE:
            raise ValueError(f"held-out seeds must be >= {shapes.HELDOUT_SEED_BASE} (2**30), got seed_base={seed_base}")
        if kind not in self.KINDS:
            raise ValueError(f"kind must be one of {', '.join(self.KINDS)}, got {kind!r}")
        self.n, self.size, self.seed_base, self.kind = int(n), check_size(size), int(seed_base), kind
        names = [k for k, f in shapes.FAMILIES.items() if kind == "all" or f.kind == kind]
        self.mix = shapes.parse_mix({k: shapes.DEFAULT_MIX.get(k, 0.0) for k in names})
        self.light_max_angle, self.albedo = float(light_max_angle), tuple(float(a) for a in albedo)

    def __len__(self) -> int:
        return self.n

    def family(self, i: int) -> str:
        """Family of item ``i``."""
        names = list(self.mix)
        rng = np.random.default_rng([self.seed_base + i, 0])
        return names[int(rng.choice(len(names), p=[self.mix[k] for k in names]))]

    def __getitem__(self, i: int) -> dict:
        if not -self.n <= i < self.n:
            raise IndexError(f"index {i} out of range for {self.n} items")
        i = i % self.n
        seed = self.seed_base + i
        family = self.family(i)
        normals, mask = shapes.generate(family, seed, self.size)
        rng = np.random.default_rng([seed, 1])
        return _item(normals, mask, family, seed, rng, self.light_max_angle, self.albedo, False, False)
