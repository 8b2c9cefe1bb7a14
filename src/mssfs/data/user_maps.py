"""Training shards from the user's own surfaces: normal maps or height / depth maps.

:func:`import_maps` turns files into the shard format of :mod:`mssfs.data`, so
``mssfs train --data DIR`` trains on them exactly as on ``mssfs data make`` shards (the
stream renders the shading under a fresh light and albedo for every item).

Accepted files (a folder stands for its ``*.npy`` and ``*.png`` files, sorted):

* ``kind="normals"``: ``.npy`` float ``(H, W, 3)`` in the project frame (x right, y up,
  z toward the viewer), background ``(0, 0, 0)`` or non-finite; or a ``.png`` normal map
  storing ``(n + 1) / 2`` (8 or 16 bit, as ``mssfs sample`` writes), background mid-grey
  or black.  ``flip_y`` converts maps whose y axis points down (the "DirectX" layout).
* ``kind="height"``: ``.npy`` float ``(H, W)`` height toward the viewer in pixel units
  (times ``height_scale``, default 1), background non-finite; or a grayscale ``.png``
  (8 or 16 bit, read as 0..1 of the full range, every pixel foreground) with an explicit
  ``height_scale`` that turns those values into pixel units.
* ``kind="depth"``: the same, but distance from the camera (height = -depth).

Each map is cropped to its central square and resized to ``size x size`` (antialiased,
renormalised; a pixel is foreground when at least half of it was).  Every file is read
and checked before anything is written; shards are written under temporary names and the
manifest last, so a failed or interrupted import leaves no manifest.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.fileio import atomic_path, save_json
from ..core.frame import normalize
from ..core.integrate import normals_from_depth
from ..core.normal_io import load_normals
from ..core.progress import progress_bar
from ..core.resize import resize_normals_array
from .shards import SHARD_FORMAT, check_size, encode_normals

__all__ = ["KINDS", "MapImportError", "find_map_files", "import_maps", "read_map", "square_map"]


KINDS = ("normals", "height", "depth")


FAMILY = "imported"


_SUFFIXES = (".npy", ".png")


#: Smallest foreground a map may have (pixels, and share of the map).
MIN_FOREGROUND_PIXELS, MIN_FOREGROUND_SHARE = 256, 0.01


#: Largest share of foreground normals that may point away from the viewer (nz < -0.05).
MAX_BACKFACING_SHARE = 0.01


class MapImportError(ValueError):
    """A file that cannot become a training map; the message names the file and problem."""


def find_map_files(paths) -> list[Path]:
    """Expand ``paths`` (files and folders) into the list of map files, in order.

    Raises:
        MapImportError: a path does not exist, a file has an unsupported suffix, or no
            map file was found.
    """
    files: list[Path] = []
    for p in (Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)):
        if p.is_dir():
            files += sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in _SUFFIXES)
        elif p.is_file():
            if p.suffix.lower() not in _SUFFIXES:
                raise MapImportError(f"{p}: unsupported file type {p.suffix!r}; use .npy or .png")
            files.append(p)
        else:
            raise MapImportError(f"{p}: no such file or folder")
    if not files:
        raise MapImportError("no .npy or .png map files found in " + ", ".join(str(p) for p in paths))
    return files


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - corrupt file, pickled object array, ...
        raise MapImportError(f"{path}: could not be read as a .npy array ({type(exc).__name__}: {exc})") from None


def read_map(path, kind: str = "normals", flip_y: bool = False, height_scale: float | None = None):
    """Read one file as ``(normals (H, W, 3) float32, mask (H, W) bool)`` in the project frame.

    Raises:
        MapImportError: unreadable file, wrong shape or type for ``kind``, too little
            foreground, or normals facing away from the viewer (another convention).
    """
    path = Path(path)
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    if kind == "normals":
        if path.suffix.lower() == ".png":
            try:
                n = load_normals(path).astype(np.float64)
            except Exception as exc:  # noqa: BLE001 - corrupt or not RGB
                raise MapImportError(f"{path}: could not be read as a normal-map PNG ({exc})") from None
        else:
            n = _load_npy(path)
            if n.ndim != 3 or n.shape[-1] != 3 or not np.issubdtype(n.dtype, np.floating):
                raise MapImportError(f"{path}: a normal map must be a float (H, W, 3) array, got {n.dtype} {n.shape}")
            n = np.where(np.isfinite(n), n, 0.0).astype(np.float64)
        mask = np.linalg.norm(n, axis=-1) > 0.5
    else:
        if path.suffix.lower() == ".png":
            if height_scale is None:
                raise MapImportError(
                    f"{path}: a PNG {kind} map needs an explicit height scale (--height-scale): its values are read "
                    "as 0..1 of the full 8/16-bit range, and the scale turns them into pixel units"
                )
            from ..core.images import ImageError, read_image

            try:
                z = read_image(path)[0]
            except ImageError as exc:
                raise MapImportError(str(exc)) from None
        else:
            z = _load_npy(path)
            if z.ndim != 2 or not np.issubdtype(z.dtype, np.floating):
                raise MapImportError(f"{path}: a {kind} map must be a float (H, W) array, got {z.dtype} {z.shape}")
        mask = np.isfinite(z)
        if mask.any():
            scale = 1.0 if height_scale is None else float(height_scale)
            z = np.where(mask, z, z[mask].mean()) * scale * (-1.0 if kind == "depth" else 1.0)
            if not mask.all():  # extend each foreground value outward so differences at the border stay finite
                from scipy import ndimage

                idx = ndimage.distance_transform_edt(~mask, return_distances=False, return_indices=True)
                z = z[tuple(idx)]
        n = normals_from_depth(z, mask)
    if n.shape[0] < 16 or n.shape[1] < 16:
        raise MapImportError(f"{path}: the map is {n.shape[1]} x {n.shape[0]} pixels; at least 16 x 16 is needed")
    count = int(mask.sum())
    if count < max(MIN_FOREGROUND_PIXELS, MIN_FOREGROUND_SHARE * mask.size):
        raise MapImportError(f"{path}: only {count} foreground pixels ({100 * count / mask.size:.1f} % of the map)")
    if flip_y:
        n[..., 1] *= -1
    back = float((n[..., 2][mask] < -0.05).mean())
    if back > MAX_BACKFACING_SHARE:
        raise MapImportError(
            f"{path}: {100 * back:.1f} % of the foreground normals point away from the viewer (z < 0); "
            "the map may use another convention (z into the screen?) - mssfs expects x right, y up, z toward the viewer"
        )
    n[..., 2] = np.maximum(n[..., 2], 0.0)
    n = np.where(mask[..., None], normalize(n), 0.0)
    return n.astype(np.float32), mask


def square_map(normals: np.ndarray, mask: np.ndarray, size: int):
    """Central square crop of ``(H, W, 3)`` normals and ``(H, W)`` mask, resized to ``size``."""
    h, w = mask.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = (slice(top, top + side), slice(left, left + side))
    return resize_normals_array(normals[crop], (size, size), mask[crop])


def import_maps(
    paths,
    out_dir,
    kind: str = "normals",
    size: int = 256,
    flip_y: bool = False,
    height_scale: float | None = None,
    shard_size: int = 256,
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write the maps in ``paths`` as training shards into ``out_dir``; returns the manifest path.

    Every file is read and checked first: if any fails, :class:`MapImportError` lists the
    problems and nothing is written.  The shards' ``family`` is ``"imported"`` and their
    ``seed`` the map's index in the import; the manifest lists each shard's source files.

    Raises:
        MapImportError: unusable files (all of them named).
        ValueError: bad ``kind``, ``size``, ``shard_size`` or ``height_scale``.
        FileExistsError: ``out_dir`` is not empty and ``overwrite`` is False.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    size, shard_size = check_size(size), int(shard_size)
    if shard_size <= 0:
        raise ValueError(f"shard_size must be positive, got {shard_size}")
    if height_scale is not None and not (np.isfinite(height_scale) and height_scale > 0):
        raise ValueError(f"height_scale must be a positive number, got {height_scale}")
    files = find_map_files(paths)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} is not empty; pass overwrite=True (--overwrite) to replace it")

    problems = []
    bar = progress_bar(len(files), "checking maps", progress)
    for f in files:
        try:
            read_map(f, kind, flip_y, height_scale)
        except MapImportError as exc:
            problems.append(str(exc))
        bar.update(1)
    bar.close()
    if problems:
        more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise MapImportError(f"{len(problems)} of {len(files)} file(s) cannot be used:\n  " + "\n  ".join(problems[:10]) + more)

    if out.exists():
        (out / "manifest.json").unlink(missing_ok=True)  # first, so no stale manifest survives a crash
        for old in list(out.glob("shard-*.npz")) + list(out.glob("*.part")):
            old.unlink()
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    bar = progress_bar(len(files), "writing shards", progress)
    try:
        for k, start in enumerate(range(0, len(files), shard_size)):
            chunk = files[start : start + shard_size]
            xy = np.empty((len(chunk), size, size, 2), np.int16)
            bits = np.empty((len(chunk), size, (size + 7) // 8), np.uint8)
            for j, f in enumerate(chunk):
                xy[j], bits[j] = encode_normals(*square_map(*read_map(f, kind, flip_y, height_scale), size))
                bar.update(1)
            name = f"shard-{k:05d}.npz"
            index = np.arange(start, start + len(chunk), dtype=np.int64)
            with atomic_path(out / name) as tmp, open(tmp, "wb") as fh:
                np.savez(fh, normals_xy=xy, mask_bits=bits, family=np.zeros(len(chunk), np.uint8), seed=index)
            entries.append({"file": name, "count": len(chunk), "sources": [str(f) for f in chunk]})
    finally:
        bar.close()
    manifest = {
        "format": SHARD_FORMAT,
        "source": "imported",
        "kind": kind,
        "flip_y": bool(flip_y),
        "height_scale": None if height_scale is None else float(height_scale),
        "size": size,
        "count": len(files),
        "families": [FAMILY],
        "family_counts": {FAMILY: len(files)},
        "normals_encoding": "int16 (nx, ny) * 32767; nz = sqrt(1 - nx^2 - ny^2); mask packed bits",
        "shards": entries,
    }
    path = out / "manifest.json"
    save_json(path, manifest)
    return path
