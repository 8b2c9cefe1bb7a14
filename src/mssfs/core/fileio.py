"""Writing files so that a crash never leaves a half-written one.

Every writer in mssfs goes through :func:`atomic_path`: the content is written to a
temporary name beside the target and renamed over it only once complete.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .outputs import umask

__all__ = ["atomic_path", "save_json", "save_npy", "save_png"]


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` if the block succeeds.

    On any exception the temporary file is removed and ``path`` is left as it was.  The
    temporary name (``.<name>.XXXXXXXX.part``) is unique, so writers of the same file in
    several processes never collide.
    The temporary name keeps no meaningful suffix, so pass an explicit format to
    writers that guess it from the name (PIL, matplotlib).
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, 0o666 & ~umask())  # mkstemp's 0600 -> what the umask gives any new file
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_npy(path: str | os.PathLike, array) -> Path:
    """``np.save`` through :func:`atomic_path` (no pickle: object arrays are refused)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, np.asarray(array), allow_pickle=False)
    return Path(path)


def save_json(path: str | os.PathLike, data) -> Path:
    """Indented JSON through :func:`atomic_path`."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")
    return Path(path)


def save_png(path: str | os.PathLike, array: np.ndarray) -> Path:
    """A PNG of a uint8 ``(H, W)`` / ``(H, W, 3)`` array, or a uint16 ``(H, W)`` one (16-bit grey)."""
    array = np.asarray(array)
    with atomic_path(path) as tmp:
        if array.dtype == np.uint16:
            import png

            if array.ndim != 2:
                raise ValueError(f"16-bit PNGs are written for (H, W) arrays only, got {array.shape}")
            with open(tmp, "wb") as f:
                png.Writer(width=array.shape[1], height=array.shape[0], bitdepth=16, greyscale=True).write(
                    f, array.tolist()
                )
        elif array.dtype == np.uint8:
            from PIL import Image

            Image.fromarray(array).save(tmp, format="PNG")
        else:
            raise ValueError(f"save_png takes uint8 or uint16 arrays, got {array.dtype}")
    return Path(path)
