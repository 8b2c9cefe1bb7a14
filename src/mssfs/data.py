"""Training and evaluation data: sharded data sets, an infinite augmented stream, held-out sets.

* :func:`make_shards` renders ``n`` ground-truth maps (:mod:`mssfs.shapes`) into ``.npz``
  shards plus a ``manifest.json``;
* :class:`TrainingImages` streams augmented training items, from shards or generated on
  the fly;
* :class:`HeldoutImages` is a fixed, deterministic evaluation set (seeds >= 2**30).

Shard format (``shard-00000.npz``, plain arrays, no pickle)::

    normals_xy  int16 (N, S, S, 2)   round(32767 * (nx, ny)); nz = sqrt(1 - nx^2 - ny^2)
    mask_bits   uint8 (N, S, ceil(S/8))   np.packbits(mask, axis=-1)
    family      uint8 (N,)           index into manifest["families"]
    seed        int64 (N,)           generate(family, seed, S) reproduces the map

Item layout (both datasets): ``image`` (1, h, w) float32, ``normals`` (3, h, w) float32,
``mask`` (1, h, w) float32, ``light`` (3,) float32, ``albedo`` float, plus ``family``
(str) and ``seed`` (int).  Normals are in the frame of :mod:`mssfs.geometry`.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from . import shapes
from .fileio import atomic_path, save_json
from .patches import PATCH
from .render import MAX_LIGHT_ANGLE_DEG, render, sample_lights

__all__ = [
    "SHARD_FORMAT",
    "HeldoutImages",
    "ShardSet",
    "TrainingImages",
    "augment",
    "augment_grid",
    "augment_vectors",
    "check_size",
    "make_shards",
]

SHARD_FORMAT = "mssfs-shards-1"
_XY_SCALE = 32767.0


def check_size(size: int) -> int:
    """Validate a training map size: a multiple of the patch size, at least 2 patches."""
    size = int(size)
    if size < 2 * PATCH or size % PATCH:
        raise ValueError(f"size must be a multiple of {PATCH} and at least {2 * PATCH}, got {size}")
    return size


# ---------------------------------------------------------------------------- shards


def _encode(normals: np.ndarray, mask: np.ndarray):
    xy = np.round(np.clip(normals[..., :2], -1.0, 1.0) * _XY_SCALE).astype(np.int16)
    return xy, np.packbits(mask, axis=-1)


def _decode(xy: np.ndarray, bits: np.ndarray, size: int):
    """``(S, S, 2)`` int16 and packed mask -> normals ``(S, S, 3)`` float32, mask ``(S, S)`` bool."""
    mask = np.unpackbits(bits, axis=-1, count=size).astype(bool)
    n = np.empty(xy.shape[:-1] + (3,), np.float32)
    n[..., :2] = xy * np.float32(1.0 / _XY_SCALE)
    n[..., 2] = np.sqrt(np.maximum(0.0, 1.0 - n[..., 0] ** 2 - n[..., 1] ** 2))
    n /= np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)
    n[~mask] = 0.0
    return n, mask


def _render_shard(job) -> tuple[np.ndarray, np.ndarray]:
    """``(families, seeds, size)`` -> encoded ``normals_xy (k,S,S,2)`` int16, ``mask_bits``."""
    families, seeds, size = job
    xy = np.empty((len(seeds), size, size, 2), np.int16)
    bits = np.empty((len(seeds), size, (size + 7) // 8), np.uint8)
    for j, (family, seed) in enumerate(zip(families, seeds)):
        xy[j], bits[j] = _encode(*shapes.generate(family, int(seed), size))
    return xy, bits


def make_shards(
    out_dir,
    n: int,
    size: int = 256,
    seed: int = 0,
    mix=None,
    shard_size: int = 256,
    progress: bool = True,
    overwrite: bool = False,
    workers: int = 1,
) -> Path:
    """Render ``n`` training maps into ``out_dir`` as shards and a manifest; returns the manifest path.

    Families are drawn from ``mix`` (default :data:`mssfs.shapes.DEFAULT_MIX`) and shape
    seeds, all distinct, from ``[0, 2**30)``, both by a generator seeded with ``seed``.
    Each shard is written under a temporary name and renamed; ``manifest.json`` comes
    last, so an interrupted run never leaves a manifest that names a missing shard.
    ``workers > 1`` renders shards in that many processes; the output is the same
    byte for byte (every map is a function of its family and seed alone).

    Raises:
        ValueError: bad ``n``, ``size``, ``shard_size`` or ``mix``.
        FileExistsError: ``out_dir`` exists and is not empty, and ``overwrite`` is False.
    """
    n, shard_size = int(n), int(shard_size)
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    if shard_size <= 0:
        raise ValueError(f"shard_size must be positive, got {shard_size}")
    size = check_size(size)
    mix = shapes.parse_mix(shapes.DEFAULT_MIX if mix is None else mix)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} is not empty; pass overwrite=True (--overwrite) to replace it")
        (out / "manifest.json").unlink(missing_ok=True)  # first, so no stale manifest survives a crash
        for old in list(out.glob("shard-*.npz")) + list(out.glob("*.part")):
            old.unlink()
    out.mkdir(parents=True, exist_ok=True)

    names = list(shapes.FAMILIES)
    rng = np.random.default_rng(int(seed))
    fam_idx = rng.choice(len(names), size=n, p=[mix.get(k, 0.0) for k in names]).astype(np.uint8)
    seeds = rng.choice(shapes.TRAIN_SEED_LIMIT, size=n, replace=False).astype(np.int64)
    spans = [(start, min(n, start + shard_size)) for start in range(0, n, shard_size)]
    jobs = [([names[f] for f in fam_idx[a:b]], seeds[a:b], size) for a, b in spans]
    entries = []
    bar = _progress(n, "rendering maps", progress)
    pool = None
    try:
        if int(workers) > 1 and len(jobs) > 1:
            from concurrent.futures import ProcessPoolExecutor

            pool = ProcessPoolExecutor(min(int(workers), len(jobs)))
            rendered = pool.map(_render_shard, jobs)
        else:
            rendered = map(_render_shard, jobs)
        for k, ((start, stop), (xy, bits)) in enumerate(zip(spans, rendered)):
            bar.update(stop - start)
            name = f"shard-{k:05d}.npz"
            arrays = dict(normals_xy=xy, mask_bits=bits, family=fam_idx[start:stop], seed=seeds[start:stop])
            with atomic_path(out / name) as tmp, open(tmp, "wb") as f:
                np.savez(f, **arrays)
            entries.append({"file": name, "count": stop - start, "seeds": [int(s) for s in seeds[start:stop]]})
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        bar.close()
    counts = np.bincount(fam_idx, minlength=len(names))
    manifest = {
        "format": SHARD_FORMAT,
        "generator_version": shapes.GENERATOR_VERSION,
        "size": size,
        "count": n,
        "seed": int(seed),
        "seed_range": [0, shapes.TRAIN_SEED_LIMIT],
        "mix": mix,
        "families": names,
        "family_counts": {name: int(c) for name, c in zip(names, counts) if c},
        "normals_encoding": "int16 (nx, ny) * 32767; nz = sqrt(1 - nx^2 - ny^2); mask packed bits",
        "shards": entries,
    }
    path = out / "manifest.json"
    save_json(path, manifest)
    return path


class _NoBar:
    def update(self, k):
        pass

    def close(self):
        pass


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="map")


@functools.lru_cache(maxsize=4)
def _read_shard(path: str, mtime_ns: int) -> dict:
    """Arrays of one shard file; ``mtime_ns`` is part of the cache key so a rewritten file is re-read."""
    with np.load(path, allow_pickle=False) as z:
        return {key: z[key] for key in ("normals_xy", "mask_bits", "family", "seed")}


class ShardSet:
    """Read access to a folder written by :func:`make_shards`."""

    def __init__(self, folder):
        self.folder = Path(folder)
        path = self.folder / "manifest.json"
        if not path.is_file():
            raise FileNotFoundError(f"no manifest.json in {self.folder} (write one with `mssfs data make`)")
        try:
            self.manifest = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON: {exc}") from None
        if self.manifest.get("format") != SHARD_FORMAT:
            raise ValueError(f"{path}: unknown shard format {self.manifest.get('format')!r}, expected {SHARD_FORMAT!r}")
        self.size = int(self.manifest["size"])
        self.families = list(self.manifest["families"])
        self.shards = [e["file"] for e in self.manifest["shards"]]
        missing = [s for s in self.shards if not (self.folder / s).is_file()]
        if missing:
            raise FileNotFoundError(f"{self.folder}: the manifest names missing shard(s) {', '.join(missing[:3])}")

    def __len__(self) -> int:
        return int(self.manifest["count"])

    def load(self, k: int) -> dict:
        """Shard ``k`` as its raw arrays (``normals_xy``, ``mask_bits``, ``family``, ``seed``).

        The last few shards read are kept in memory (shared by every ``ShardSet`` of the
        process), so a trainer that opens a fresh stream per step does not re-read them.
        """
        path = (self.folder / self.shards[k]).resolve()
        return _read_shard(str(path), path.stat().st_mtime_ns)

    def decode(self, shard: dict, i: int):
        """Item ``i`` of a loaded shard: ``(normals (S,S,3) float32, mask (S,S) bool, family, seed)``."""
        n, m = _decode(shard["normals_xy"][i], shard["mask_bits"][i], self.size)
        return n, m, self.families[int(shard["family"][i])], int(shard["seed"][i])


# ---------------------------------------------------------------------- augmentation


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


# ---------------------------------------------------------------------------- streams


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
        seed_base: first seed, at least :data:`mssfs.shapes.HELDOUT_SEED_BASE` so
            evaluation maps never occur in training streams.
        kind: ``"objects"``, ``"reliefs"`` or ``"all"``: which families to draw from
            (with their :data:`~mssfs.shapes.DEFAULT_MIX` shares, renormalised).

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
