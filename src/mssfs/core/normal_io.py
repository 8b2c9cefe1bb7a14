"""Normal maps as files: ``.npy`` and 8/16-bit RGB(A) PNGs storing ``(n + 1) / 2``.

Background is stored as mid-grey (and, with a mask, as transparent) and read back as
``(0, 0, 0)`` (:mod:`mssfs.core.frame`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .fileio import atomic_path
from .frame import normalize

__all__ = ["load_normals", "save_normals"]


def save_normals(path: str | os.PathLike, n: np.ndarray, bits: int = 16, mask: np.ndarray | None = None) -> Path:
    """Write a normal map as NPY (float32, as is) or PNG storing ``(n + 1) / 2``.

    Args:
        n: ``(H, W, 3)`` for PNG; any shape for NPY.
        bits: 8 or 16 for PNG.
        mask: ``(H, W)`` bool foreground (PNG only): written as the alpha channel
            (opaque inside, transparent outside), so image viewers and editors show the
            background as transparent.  None: RGB without alpha.
    The file is written to a temporary name and renamed, so a crash leaves no partial file.
    """
    path = Path(path)
    n = np.asarray(n, np.float32)
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".png"):
        raise ValueError(f"unsupported normal-map format {suffix!r}; use .png or .npy")
    if suffix == ".png" and (n.ndim != 3 or n.shape[-1] != 3):
        raise ValueError(f"a normal-map PNG needs shape (H, W, 3), got {n.shape}")
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, got {bits}")
    if mask is not None and (suffix != ".png" or np.shape(mask) != n.shape[:2]):
        raise ValueError(f"a mask goes with a PNG and must have shape {n.shape[:2]}, got {np.shape(mask)}")
    with atomic_path(path) as tmp:
        if suffix == ".npy":
            with open(tmp, "wb") as f:
                np.save(f, n)
        else:
            rgb = np.clip((n + 1.0) / 2.0, 0.0, 1.0)
            if mask is not None:
                rgb = np.concatenate([rgb, np.asarray(mask, bool)[..., None].astype(np.float32)], -1)
            if bits == 8:
                from PIL import Image

                Image.fromarray(np.round(rgb * 255).astype(np.uint8), "RGB" if mask is None else "RGBA").save(
                    tmp, format="PNG")
            else:
                _write_png16(tmp, np.round(rgb * 65535).astype(np.uint16))
    return path


def load_normals(path: str | os.PathLike, mask: np.ndarray | None = None) -> np.ndarray:
    """Read a normal map written by :func:`save_normals` (PNG 8/16-bit or NPY).

    PNG values are mapped back by ``2 v - 1`` and renormalised; pixels stored as
    mid-grey (the background :func:`save_normals` writes), pure black (the background of
    many other tools; no visible normal is stored as black), transparent (alpha below
    one half) or outside ``mask`` become ``(0, 0, 0)``.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no normal map at {path}")
    if path.suffix.lower() == ".npy":
        return np.load(path, allow_pickle=False)
    if path.suffix.lower() != ".png":
        raise ValueError(f"unsupported normal-map format {path.suffix!r}; use .png or .npy")
    arr, alpha = _read_png_rgb(path)
    n = arr * 2.0 - 1.0
    background = (np.linalg.norm(n, axis=-1) < 0.05) | (arr.max(-1) == 0)
    if alpha is not None:
        background |= alpha < 0.5
    n = normalize(n)
    n[background] = 0.0
    if mask is not None:
        n = np.where(np.asarray(mask, bool)[..., None], n, 0.0)
    return n.astype(np.float32)


def _write_png16(path: Path, pixels: np.ndarray) -> None:
    """16-bit RGB or RGBA PNG of ``(H, W, 3 | 4)`` uint16 through pypng (Pillow cannot write those)."""
    import png

    h, w, c = pixels.shape
    writer = png.Writer(width=w, height=h, bitdepth=16, greyscale=False, alpha=c == 4)
    with open(path, "wb") as f:
        writer.write(f, pixels.reshape(h, w * c).tolist())


def _read_png_rgb(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Read an 8- or 16-bit RGB(A) PNG as float64 in [0, 1]: ``(H, W, 3)`` colour and the
    ``(H, W)`` alpha (None without one)."""
    import png

    w, h, rows, info = png.Reader(filename=str(path)).asDirect()
    planes, depth = info["planes"], info["bitdepth"]
    arr = np.vstack([np.asarray(r, dtype=np.float64) for r in rows]).reshape(h, w, planes)
    if planes < 3:
        raise ValueError(f"{path}: a normal-map PNG must be RGB, this one has {planes} channel(s)")
    arr = arr / float(2**depth - 1)
    return arr[..., :3], (arr[..., 3] if planes == 4 else None)
