"""Reading shading images from files into float grayscale, with clear refusals.

Accepted: PNG and JPEG (8 or 16 bit, grey or colour), TIFF (integer or float) and NPY.
Colour images are converted to luminance (Rec. 601 weights) and a note says so; an alpha
channel is not part of the intensity (a note says so) but :func:`alpha_mask` reads it as
a foreground mask.  Integer images are scaled by their type's maximum, or by a given
``max_value`` (:func:`scale_integer`, which notes data that clearly uses fewer bits).
Refused with :class:`ImageError`, before any other work: missing or unreadable files,
NaN/inf values, empty images, constant images, images smaller than 16 pixels on a side,
and images above the pixel limit (:func:`check_pixels`, read from the file header before
decoding, the same for every format).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .outputs import safe_stem

__all__ = [
    "IMAGE_SUFFIXES",
    "MIN_SIZE",
    "ImageError",
    "alpha_mask",
    "check_pixels",
    "image_shape",
    "load_input",
    "load_input_with_alpha",
    "pil_pixels",
    "pixels_to_image",
    "read_image",
    "scale_integer",
    "validate_image",
]


MIN_SIZE = 16
#: File suffixes read as images (a folder input stands for its files with these).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".npy")


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


def image_shape(path: Path) -> tuple[int, int] | None:
    """``(height, width)`` of an image file from its header, without decoding the pixels
    (None when the header gives no size: the decoder then reports the problem).  Pages of
    a multi-page TIFF and leading axes of an NPY array count as more rows."""
    suffix = path.suffix.lower()
    if suffix == ".png":
        with open(path, "rb") as f:
            head = f.read(24)
        if len(head) == 24 and head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
            return int.from_bytes(head[20:24], "big"), int.from_bytes(head[16:20], "big")
        return None
    if suffix == ".npy":
        fmt = np.lib.format
        with open(path, "rb") as f:
            version = fmt.read_magic(f)
            read = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}.get(version)
            if read is None:
                return None
            shape = read(f)[0]
    elif suffix in (".tif", ".tiff"):
        import tifffile

        with tifffile.TiffFile(path) as tif:
            shape = tuple(tif.series[0].shape) if tif.series else ()
    else:
        import warnings

        from PIL import Image

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                with Image.open(path) as im:
                    return int(im.size[1]), int(im.size[0])
            except Image.DecompressionBombError:
                return 2**31, 2**31
    if len(shape) >= 3 and shape[-1] in (1, 2, 3, 4):
        shape = shape[:-1]
    if len(shape) < 2:
        return None
    return int(np.prod(shape[:-1], dtype=np.float64)), int(shape[-1])


def check_pixels(shape: tuple[int, int], name: str) -> None:
    """Refuse an ``(H, W)`` image above :func:`mssfs.core.limits.max_pixels` pixels."""
    from .limits import max_pixels

    limit, pixels = max_pixels(), int(shape[0]) * int(shape[1])
    if pixels > limit:
        raise ImageError(f"{name}: {shape[0]}x{shape[1]} = {pixels:,} pixels is above the limit of {limit:,} pixels; "
                         "shrink the image first (sampling works at a few hundred pixels), or raise the limit "
                         "with the environment variable MSSFS_MAX_PIXELS")


def scale_integer(arr: np.ndarray, name: str = "image", notes: list[str] | None = None,
                  max_value: float | None = None, alpha: bool = False) -> np.ndarray:
    """Integer (and bool) pixel values as float64 in [0, 1]: divided by ``max_value`` when
    given, else by the type's maximum (255 for uint8, 65535 for uint16, ...).

    When the data clearly uses fewer bits than its type (a type wider than 8 bits whose
    largest value needs at least 4 bits fewer, e.g. 10-bit data in a uint16 array) a note
    says so and how to pass the true range; data so small that the type's maximum would
    leave the image black (brightest pixel below 1/256) is refused with that diagnosis.
    ``alpha``: the last channel is alpha and not looked at.  Float arrays are returned
    unchanged (``max_value`` does not apply to them).

    Raises:
        ImageError: values above ``max_value``, or integer data far below the type's range.
    """
    if arr.dtype == bool:
        return arr.astype(np.float64)
    if not np.issubdtype(arr.dtype, np.integer):
        return arr
    notes = notes if notes is not None else []
    values = arr[..., :-1] if alpha else arr
    hi = int(values.max()) if values.size else 0
    if max_value is not None:
        if not max_value > 0:
            raise ImageError(f"{name}: the maximum value must be positive, got {max_value}")
        if hi > max_value:
            raise ImageError(f"{name}: values reach {hi}, above the given maximum value {max_value:g}")
        return arr.astype(np.float64) / float(max_value)
    info = np.iinfo(arr.dtype)
    top = float(info.max)
    type_bits = info.bits - (1 if info.min < 0 else 0)
    used = max(1, int(hi).bit_length())
    if type_bits > 8 and hi > 0 and used <= type_bits - 4:
        hint = f"--max-value {2**used - 1} (Python: max_value={2**used - 1})"
        if hi / top < 1 / 256:
            raise ImageError(
                f"{name}: {arr.dtype} values reach only {hi} ({used} of the type's {type_bits} bits); scaled by "
                f"the type's maximum {info.max} the image would be black; give the data's true range with {hint}"
            )
        notes.append(
            f"{name}: {arr.dtype} values reach only {hi} ({used} of {type_bits} bits): scaled by the type's maximum "
            f"{info.max} the image is at most {100 * hi / top:.1f} % bright; if the data has {used} bits, "
            f"give its range with {hint}"
        )
    return arr.astype(np.float64) / top


def read_image(path: str | os.PathLike, max_value: float | None = None) -> tuple[np.ndarray, list[str]]:
    """Read ``path`` as a float64 ``(H, W)`` image.

    ``max_value``: the value of integer data that means full brightness (default: the
    type's maximum; see :func:`scale_integer`).

    Returns:
        ``(image, notes)``: notes are human-readable remarks on conversions made.
    """
    image, _, notes = _read_with_alpha(path, max_value)
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


def _read_with_alpha(path: str | os.PathLike, max_value: float | None = None):
    """One read of the file: ``(image, alpha foreground or None, notes)``."""
    return pixels_to_image(_read_raw(Path(path)), str(path), max_value)


def pixels_to_image(raw: np.ndarray, name: str, max_value: float | None = None):
    """A pixel array as stored in a file -- ``(H, W)`` or ``(H, W, C)`` with ``C`` in 1..4,
    any real dtype -- to ``(image, alpha foreground or None, notes)``: integer types scaled
    by their type's maximum or ``max_value`` (:func:`scale_integer`), colour to luminance,
    alpha read by :func:`alpha_mask`'s rule.  Images above the pixel limit are refused
    (:func:`check_pixels`).

    Raises :class:`ImageError` naming ``name`` for any other shape or a bad image.
    """
    raw = np.asarray(raw)
    if raw.size and (raw.ndim not in (2, 3) or (raw.ndim == 3 and raw.shape[-1] not in (1, 2, 3, 4))):
        hint = " (channels first? give (H, W, C))" if raw.ndim == 3 and raw.shape[0] in (1, 3, 4) else ""
        raise ImageError(f"{name}: shape {raw.shape} is not an image; accepted: (H, W), (H, W, 1), (H, W, 3) "
                         f"or (H, W, 4){hint}")
    if raw.ndim >= 2:
        check_pixels(raw.shape[:2], name)
    notes: list[str] = []
    alpha = raw.ndim == 3 and raw.shape[-1] in (2, 4)
    image = validate_image(_to_gray(scale_integer(raw, name, notes, max_value, alpha=alpha), name, notes), name)
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
        shape = image_shape(path) if suffix in (".npy", ".tif", ".tiff", ".png", ".jpg", ".jpeg") else None
        if shape is not None:  # from the header, before decoding
            check_pixels(shape, name)
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
        return pil_pixels(im)


def pil_pixels(im) -> np.ndarray:
    """The pixel array of a PIL image as the file readers give it: 16-bit modes as
    uint16, ``F`` as float64, ``L``/``LA``/``RGB``/``RGBA`` as uint8, palette images with
    transparency as RGBA and any other mode as RGB."""
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


def load_input_with_alpha(spec: str | os.PathLike | np.ndarray, max_value: float | None = None):
    """:func:`load_input` plus the alpha foreground of an image file or an array with an
    alpha channel (:func:`alpha_mask`; None for stimuli and images without transparency),
    from one read of the file.  Arrays are converted as files are (:func:`pixels_to_image`).

    The stem is a plain folder name (:func:`mssfs.core.outputs.safe_stem`); ``max_value``
    as in :func:`scale_integer`.

    Returns:
        ``(image, alpha, stem, notes)``.
    """
    if isinstance(spec, np.ndarray):
        image, alpha, notes = pixels_to_image(spec, "array input", max_value)
        return image, alpha, "array", notes
    text = str(spec)
    if text.startswith("stimulus:"):
        from ..data import stimuli

        name = text.split(":", 1)[1]
        try:
            img = stimuli.load(name)
        except ValueError as exc:
            raise ImageError(str(exc)) from exc
        return validate_image(img, text), None, name, []
    img, alpha, notes = _read_with_alpha(text, max_value)
    return img, alpha, safe_stem(Path(text).stem), notes
