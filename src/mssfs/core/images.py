"""Reading shading images from files into float grayscale, with clear refusals.

Accepted: PNG and JPEG (8 or 16 bit, grey or colour), TIFF (integer or float) and NPY.
Colour images are converted to luminance (Rec. 601 weights) and a note says so; an alpha
channel is not part of the intensity (a note says so) but :func:`alpha_mask` reads it as
a foreground mask.  Integer images are scaled by their type's maximum.
Refused with :class:`ImageError`, before any other work: missing or unreadable files,
NaN/inf values, empty images, constant images and images smaller than 16 pixels on a side.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["MIN_SIZE", "ImageError", "alpha_mask", "load_input", "load_input_with_alpha", "read_image", "validate_image"]


MIN_SIZE = 16


_LUMA = np.array([0.299, 0.587, 0.114])


class ImageError(ValueError):
    """An input image that cannot be used; the message says what is wrong."""


def validate_image(img: np.ndarray, name: str = "image") -> np.ndarray:
    """Check a grayscale array and return it as float64 ``(H, W)``.

    Raises :class:`ImageError` naming ``name`` and the problem.
    """
    img = np.asarray(img)
    if img.size == 0:
        raise ImageError(f"{name}: the image is empty (shape {img.shape})")
    if img.ndim != 2:
        raise ImageError(f"{name}: expected a grayscale image of shape (H, W), got shape {img.shape}")
    if not np.issubdtype(img.dtype, np.number) or np.issubdtype(img.dtype, np.complexfloating):
        raise ImageError(f"{name}: pixel type {img.dtype} is not a real number type")
    img = img.astype(np.float64)
    bad = ~np.isfinite(img)
    if bad.any():
        raise ImageError(f"{name}: {int(bad.sum())} pixel(s) are NaN or infinite; fix or mask them first")
    h, w = img.shape
    if h < MIN_SIZE or w < MIN_SIZE:
        raise ImageError(f"{name}: {h}x{w} pixels is smaller than the {MIN_SIZE}x{MIN_SIZE} patch size")
    if img.max() == img.min():
        raise ImageError(f"{name}: the image is constant (every pixel is {img.flat[0]:g}); there is no shading to read")
    return img


def _to_gray(arr: np.ndarray, name: str, notes: list[str]) -> np.ndarray:
    if arr.ndim == 3:
        channels = arr.shape[-1]
        if channels in (2, 4):
            notes.append(f"{name}: alpha channel not used as intensity")
            arr = arr[..., :-1]
            channels -= 1
        if channels == 3:
            notes.append(f"{name}: colour image converted to grayscale (luminance 0.299 R + 0.587 G + 0.114 B)")
            arr = arr.astype(np.float64) @ _LUMA
        elif channels == 1:
            arr = arr[..., 0]
    return arr


def _scale_integer(arr: np.ndarray) -> np.ndarray:
    if np.issubdtype(arr.dtype, np.integer):
        return arr.astype(np.float64) / float(np.iinfo(arr.dtype).max)
    if arr.dtype == bool:
        return arr.astype(np.float64)
    return arr


def read_image(path: str | os.PathLike) -> tuple[np.ndarray, list[str]]:
    """Read ``path`` as a float64 ``(H, W)`` image.

    Returns:
        ``(image, notes)``: notes are human-readable remarks on conversions made.
    """
    image, _, notes = _read_with_alpha(path)
    return image, notes


def alpha_mask(path: str | os.PathLike, threshold: float = 0.5) -> np.ndarray | None:
    """The foreground an image file's alpha channel marks, or None.

    Images with 2 (grey + alpha) or 4 (RGBA) channels have one: pixels whose alpha, scaled
    to [0, 1] like the intensity, is at least ``threshold`` are foreground.  Returns None
    when the image has no alpha channel or every pixel is opaque (nothing to mask).

    Returns:
        bool ``(H, W)`` or None.
    """
    return _alpha_foreground(_read_raw(Path(path)), threshold)


def _alpha_foreground(arr: np.ndarray, threshold: float = 0.5) -> np.ndarray | None:
    if arr.ndim != 3 or arr.shape[-1] not in (2, 4):
        return None
    fg = _scale_integer(arr[..., -1]) >= threshold
    return None if fg.all() else fg


def _read_with_alpha(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """One read of the file: ``(image, alpha foreground or None, notes)``."""
    name = str(path)
    notes: list[str] = []
    raw = _read_raw(Path(path))
    image = validate_image(_to_gray(_scale_integer(raw), name, notes), name)
    return image, _alpha_foreground(raw), notes


def _read_raw(path: Path) -> np.ndarray:
    """The file's pixel array as stored (integer or float, 2-D or with channels last)."""
    name = str(path)
    if not path.exists():
        raise ImageError(f"{name}: no such file")
    if path.is_dir():
        raise ImageError(f"{name}: is a folder, not an image file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        elif suffix in (".tif", ".tiff"):
            import tifffile

            arr = tifffile.imread(path)
        elif suffix in (".png", ".jpg", ".jpeg"):
            arr = _read_pil(path)
        else:
            raise ImageError(f"{name}: unsupported format {suffix or '(no extension)'}; use PNG, JPEG, TIFF or NPY")
    except ImageError:
        raise
    except Exception as exc:  # unreadable or corrupt file
        raise ImageError(f"{name}: could not be read ({_describe(exc)})") from exc
    return np.asarray(arr)


def _describe(exc: Exception) -> str:
    """``Type: message`` without repeating a type name the message already starts with."""
    kind, text = type(exc).__name__, str(exc)
    return text if text.startswith(kind) else f"{kind}: {text}"


def _read_pil(path: Path) -> np.ndarray:
    from PIL import Image

    if path.suffix.lower() == ".png":
        arr16 = _maybe_png16(path)
        if arr16 is not None:
            return arr16
    with Image.open(path) as im:
        im.load()
        if im.mode in ("I;16", "I;16B", "I;16L"):
            return np.asarray(im, dtype=np.uint16)
        if im.mode == "I":
            return np.asarray(im, dtype=np.int64).clip(0, 65535).astype(np.uint16)
        if im.mode == "F":
            return np.asarray(im, dtype=np.float64)
        if im.mode in ("L", "RGB", "RGBA", "LA"):
            return np.asarray(im)
        if im.mode == "PA" or "transparency" in im.info:  # palette images with transparency
            return np.asarray(im.convert("RGBA"))
        return np.asarray(im.convert("RGB"))


def _maybe_png16(path: Path) -> np.ndarray | None:
    """Full-precision read of a 16-bit colour PNG (Pillow truncates those to 8 bit)."""
    import png

    reader = png.Reader(filename=str(path))
    w, h, rows, info = reader.asDirect()
    if info["bitdepth"] != 16:
        return None
    planes = info["planes"]
    arr = np.vstack([np.asarray(r, dtype=np.uint16) for r in rows]).reshape(h, w, planes)
    return arr[..., 0] if planes == 1 else arr


def load_input(spec: str | os.PathLike | np.ndarray) -> tuple[np.ndarray, str, list[str]]:
    """Resolve a user input: an array, ``stimulus:NAME`` or an image file.

    Returns:
        ``(image, stem, notes)``: float64 ``(H, W)`` image, a short name for output
        folders (``circles`` for ``stimulus:circles``, the file stem otherwise), notes.
    """
    image, _, stem, notes = load_input_with_alpha(spec)
    return image, stem, notes


def load_input_with_alpha(spec: str | os.PathLike | np.ndarray):
    """:func:`load_input` plus the alpha foreground of an image file (:func:`alpha_mask`;
    None for arrays, stimuli and files without transparency), from one read of the file.

    Returns:
        ``(image, alpha, stem, notes)``.
    """
    if isinstance(spec, np.ndarray):
        return validate_image(spec, "array input"), None, "array", []
    text = str(spec)
    if text.startswith("stimulus:"):
        from ..data import stimuli

        name = text.split(":", 1)[1]
        try:
            img = stimuli.load(name)
        except ValueError as exc:
            raise ImageError(str(exc)) from exc
        return validate_image(img, text), None, name, []
    img, alpha, notes = _read_with_alpha(text)
    return img, alpha, Path(text).stem, notes
