"""Sharded training data: rendering ground-truth maps into ``.npz`` shards and reading them.

* :func:`make_shards` renders ``n`` ground-truth maps (:mod:`mssfs.data.shapes`) into ``.npz``
  shards plus a ``manifest.json``; :class:`ShardSet` reads them back.

Shard format (``shard-00000.npz``, plain arrays, no pickle)::

    normals_xy  int16 (N, S, S, 2)   round(32767 * (nx, ny)); nz = sqrt(1 - nx^2 - ny^2)
    mask_bits   uint8 (N, S, ceil(S/8))   np.packbits(mask, axis=-1)
    family      uint8 (N,)           index into manifest["families"]
    seed        int64 (N,)           generate(family, seed, S) reproduces the map
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from ..core.fileio import atomic_path, save_json
from ..core.patches import PATCH
from ..core.progress import progress_bar
from . import shapes

__all__ = ["SHARD_FORMAT", "ShardError", "ShardSet", "check_size", "decode_normals", "encode_normals", "make_shards",
           "verify_shards"]


SHARD_FORMAT = "mssfs-shards-1"
#: The arrays every shard file holds.
SHARD_ARRAYS = ("normals_xy", "mask_bits", "family", "seed")


class ShardError(ValueError):
    """A shard folder or file that cannot be read; the message names it."""



_XY_SCALE = 32767.0


def check_size(size: int) -> int:
    """Validate a training map size: a multiple of the patch size, at least 2 patches."""
    size = int(size)
    if size < 2 * PATCH or size % PATCH:
        raise ValueError(f"size must be a multiple of {PATCH} and at least {2 * PATCH}, got {size}")
    return size


def encode_normals(normals: np.ndarray, mask: np.ndarray):
    xy = np.round(np.clip(normals[..., :2], -1.0, 1.0) * _XY_SCALE).astype(np.int16)
    return xy, np.packbits(mask, axis=-1)


def decode_normals(xy: np.ndarray, bits: np.ndarray, size: int):
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
        xy[j], bits[j] = encode_normals(*shapes.generate(family, int(seed), size))
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

    Families are drawn from ``mix`` (default :data:`mssfs.data.shapes.DEFAULT_MIX`) and shape
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
    bar = progress_bar(n, "rendering maps", progress)
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


@functools.lru_cache(maxsize=4)
def _read_shard(path: str, mtime_ns: int) -> dict:
    """Arrays of one shard file; ``mtime_ns`` is part of the cache key so a rewritten file is re-read."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {key: z[key] for key in SHARD_ARRAYS}
    except Exception as exc:  # truncated or garbled: zip, npy and key errors alike
        raise ShardError(f"{path}: not a readable shard, truncated or corrupt ({type(exc).__name__}: {exc})") from exc


def verify_shards(folder) -> ShardSet:
    """Open the shard folder and check that every shard file opens and holds its arrays
    (the zip directory and array headers, not every byte), before any training work.

    Raises:
        ShardError: naming the folder or the first bad shard file.
    """
    try:
        shards = ShardSet(folder)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ShardError(f"{folder}: {exc}" if str(folder) not in str(exc) else str(exc)) from exc
    for name in shards.shards:
        path = Path(folder) / name
        try:
            with np.load(path, allow_pickle=False) as z:
                missing = [k for k in SHARD_ARRAYS if k not in z.files]
        except Exception as exc:
            raise ShardError(f"{path}: not a readable shard, truncated or corrupt ({type(exc).__name__}: {exc})") from exc
        if missing:
            raise ShardError(f"{path}: not an mssfs shard (no {', '.join(missing)})")
    return shards


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
        n, m = decode_normals(shard["normals_xy"][i], shard["mask_bits"][i], self.size)
        return n, m, self.families[int(shard["family"][i])], int(shard["seed"][i])
