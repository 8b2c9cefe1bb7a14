"""Reading sample sets: the folders ``mssfs sample`` writes (normals, lights, image, mask, meta).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.frame import foreground_mask

__all__ = ["SampleSet", "SampleSetError", "find_sample_folders", "load_sample_set", "temporary_folders",
           "temporary_notes"]


class SampleSetError(ValueError):
    """A sample folder that cannot be analysed; the message names the file and problem."""


@dataclass
class SampleSet:
    """One folder written by ``mssfs sample``.

    Attributes:
        path: the folder.
        normals: ``(N, H, W, 3)`` float32.
        mask: ``(H, W)`` bool (from ``mask.npy``, else the union of the foregrounds).
        image: ``(H, W)`` float32 or None when ``image.npy`` is absent.
        lights: ``(N, 3)`` float32 or None when ``lights.npy`` is absent.
        meta: the parsed ``meta.json`` (empty when absent).
    """

    path: Path
    normals: np.ndarray
    mask: np.ndarray
    image: np.ndarray | None = None
    lights: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.meta.get("stem") or self.path.name)


def find_sample_folders(path: str | Path) -> list[Path]:
    """The sample folders at ``path``: itself if it holds ``normals.npy``, else its
    immediate sub-folders that do (sorted by name).

    Temporary folders of runs that are writing or were killed (``.<stem>.tmp-*``,
    ``.<stem>.old-*``, :func:`mssfs.core.outputs.is_temporary`) are never results: they are
    skipped (:func:`temporary_folders` lists them) and refused when given directly.

    Raises :class:`SampleSetError` when ``path`` is missing, not a folder or holds none.
    """
    from ..core.outputs import is_temporary

    path = Path(path)
    if not path.exists():
        raise SampleSetError(f"{path}: no such folder")
    if not path.is_dir():
        raise SampleSetError(f"{path}: is a file, not a sample folder")
    if is_temporary(path.name):
        raise SampleSetError(f"{path}: is the temporary folder of an unfinished or interrupted 'mssfs sample' run, "
                             "not a result")
    if (path / "normals.npy").is_file():
        return [path]
    found = sorted(p for p in path.iterdir()
                   if p.is_dir() and not is_temporary(p.name) and (p / "normals.npy").is_file())
    if not found:
        raise SampleSetError(
            f"{path}: no samples found (expected normals.npy here or in its sub-folders, as written by 'mssfs sample')"
        )
    return found


def temporary_folders(path: str | Path) -> list[Path]:
    """The temporary folders of unfinished or interrupted runs directly in ``path``
    (:func:`find_sample_folders` skips them; the next ``mssfs sample`` of their stem
    removes them)."""
    from ..core.outputs import is_temporary

    path = Path(path)
    if not path.is_dir():
        return []
    return sorted(p for p in path.iterdir() if p.is_dir() and is_temporary(p.name))


def temporary_notes(path: str | Path) -> list[str]:
    """One note per temporary folder in ``path`` that :func:`find_sample_folders` skipped."""
    return [f"skipped {p}: the temporary folder of an unfinished or interrupted 'mssfs sample' run, not a result "
            "(the next run of that input removes it)" for p in temporary_folders(path)]


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except Exception as exc:  # corrupt or not an NPY file
        raise SampleSetError(f"{path}: could not be read ({type(exc).__name__}: {exc})") from exc


def load_sample_set(folder: str | Path) -> SampleSet:
    """Read and check one sample folder (see :class:`SampleSet`)."""
    folder = Path(folder)
    if not (folder / "normals.npy").is_file():
        raise SampleSetError(f"{folder}: normals.npy is missing; is this a folder written by 'mssfs sample'?")
    normals = _load_npy(folder / "normals.npy")
    if normals.ndim == 3 and normals.shape[-1] == 3:
        normals = normals[None]
    if normals.ndim != 4 or normals.shape[-1] != 3 or normals.shape[0] == 0:
        raise SampleSetError(f"{folder / 'normals.npy'}: expected shape (N, H, W, 3), got {normals.shape}")
    if not np.issubdtype(normals.dtype, np.floating) or not np.all(np.isfinite(normals)):
        raise SampleSetError(f"{folder / 'normals.npy'}: normals must be finite floating-point values")
    normals = normals.astype(np.float32)
    n, h, w, _ = normals.shape

    def optional(name: str, shape: tuple) -> np.ndarray | None:
        p = folder / name
        if not p.is_file():
            return None
        arr = _load_npy(p)
        if arr.shape != shape:
            raise SampleSetError(f"{p}: expected shape {shape} to match normals.npy, got {arr.shape}")
        if arr.dtype != bool and not np.all(np.isfinite(arr)):
            raise SampleSetError(f"{p}: contains NaN or infinite values")
        return arr

    mask = optional("mask.npy", (h, w))
    mask = foreground_mask(normals).any(0) if mask is None else mask.astype(bool)
    if not mask.any():
        raise SampleSetError(f"{folder}: the mask is empty; there is nothing to analyse")
    image = optional("image.npy", (h, w))
    lights = optional("lights.npy", (n, 3))
    meta = {}
    if (folder / "meta.json").is_file():
        try:
            meta = json.loads((folder / "meta.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise SampleSetError(f"{folder / 'meta.json'}: not valid JSON ({exc})") from exc
    return SampleSet(
        path=folder,
        normals=normals,
        mask=mask,
        image=None if image is None else image.astype(np.float32),
        lights=None if lights is None else lights.astype(np.float32),
        meta=meta if isinstance(meta, dict) else {},
    )
