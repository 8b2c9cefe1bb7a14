"""What the Python API accepts as an input image, turned into what the file reader gives.

:func:`expand_inputs` turns one input or a list of inputs into a flat list (folders give
their images, sorted by name); :func:`as_pixels` turns an in-memory image -- a numpy
array, a PIL image or a torch tensor -- into the pixel array an image file would give
(channels last, its own dtype), so every kind of input goes through the conversion of
image files (:func:`mssfs.core.images.pixels_to_image`): integer types scaled by their
type's maximum, colour to luminance, an alpha channel read as the foreground mask.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from ..core.images import IMAGE_SUFFIXES, ImageError

__all__ = ["ACCEPTED", "as_pixels", "check_input", "describe", "expand_inputs", "image_files"]

#: One line naming every accepted input, for error messages.
ACCEPTED = (
    "an image file (PNG, JPEG, TIFF, NPY), a folder of them, 'stimulus:NAME', a numpy array "
    "(H, W), (H, W, 1), (H, W, 3) or (H, W, 4), a PIL image, a torch tensor (H, W), (1, H, W) or "
    "(1, 1, H, W), or a list of these"
)


def describe(obj) -> str:
    """A short description of ``obj`` for messages: its type and, for arrays, shape and dtype."""
    kind = f"{type(obj).__module__}.{type(obj).__qualname__}".removeprefix("builtins.")
    shape = getattr(obj, "shape", None)
    if shape is not None:
        return f"{kind} of shape {tuple(shape)} ({getattr(obj, 'dtype', '?')})"
    return kind


def _is_torch_tensor(obj) -> bool:
    torch = sys.modules.get("torch")  # a tensor exists only if torch was imported
    return torch is not None and isinstance(obj, torch.Tensor)


def _is_pil_image(obj) -> bool:
    pil = sys.modules.get("PIL.Image")
    return pil is not None and isinstance(obj, pil.Image)


def image_files(folder: str | os.PathLike) -> list[Path]:
    """The image files (by suffix) directly inside ``folder``, sorted by name.

    Raises :class:`ImageError` when there is none.
    """
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ImageError(f"{folder}: the folder holds no image files ({', '.join(IMAGE_SUFFIXES)})")
    return files


def check_input(obj, where: str = "the input") -> None:
    """Raise ``TypeError`` naming ``obj``'s type and what is accepted unless ``obj`` is one
    input: a path, ``stimulus:NAME``, a numpy array, a PIL image, a torch tensor or a
    :class:`~mssfs.sampler.inputs.PreparedInput`."""
    from .inputs import PreparedInput

    if isinstance(obj, (str, os.PathLike, np.ndarray, PreparedInput)) or _is_torch_tensor(obj) or _is_pil_image(obj):
        return
    hint = " (a list stands for several inputs; use numpy.asarray for pixel data)" if isinstance(obj, (list, tuple)) else ""
    raise TypeError(f"{where} has type {describe(obj)}{hint}; accepted: {ACCEPTED}")


def expand_inputs(obj) -> tuple[list, bool]:
    """``(inputs, several)``: the single inputs that ``obj`` stands for, and whether it
    stands for several (a list or tuple, or a folder) rather than one.

    Raises:
        TypeError: ``obj`` (or an item of a list) is of a kind not accepted.
        ImageError: a folder without images, an empty list.
    """
    several = isinstance(obj, (list, tuple))
    items = list(obj) if several else [obj]
    if several and not items:
        raise ImageError("an empty list of inputs; give at least one")
    out = []
    for k, item in enumerate(items):
        check_input(item, f"input {k} of the list" if several else "the input")
        if isinstance(item, (str, os.PathLike)) and not str(item).startswith("stimulus:") and Path(item).is_dir():
            out += image_files(item)
            several = True
        else:
            out.append(item)
    return out, several


def as_pixels(obj) -> tuple[np.ndarray, str, str] | None:
    """The pixel array of an in-memory image, as an image file of it would hold it.

    numpy arrays are returned as they are (:func:`mssfs.core.images.pixels_to_image`
    checks their shape); PIL images as the file readers give them; torch tensors
    ``(H, W)``, ``(1, H, W)`` or ``(1, 1, H, W)`` (3 or 4 channels in place of the 1: a
    colour image, channels first as torchvision holds them) as ``(H, W[, C])`` numpy.

    Returns:
        ``(pixels, name, stem)`` or None when ``obj`` is not an in-memory image (a path
        or ``stimulus:NAME``).
    Raises:
        ImageError: a tensor whose shape is not an image's.
    """
    if isinstance(obj, np.ndarray):
        return obj, "array input", "array"
    if _is_pil_image(obj):
        from ..core.images import pil_pixels

        stem = Path(obj.filename).stem if getattr(obj, "filename", "") else "image"
        return pil_pixels(obj), f"PIL image ({obj.mode} {obj.width}x{obj.height})", stem
    if not _is_torch_tensor(obj):
        return None
    import torch

    name, shape, t = "tensor input", tuple(obj.shape), obj.detach()
    if t.ndim == 4 and t.shape[0] == 1:
        t = t[0]
    if t.ndim == 3 and t.shape[0] in (1, 3, 4):
        t = t.permute(1, 2, 0)
    if t.ndim not in (2, 3):
        hint = f"; for a batch of {shape[0]} images pass list(tensor)" if len(shape) == 4 else ""
        raise ImageError(f"{name}: shape {shape} is not an image; accepted: (H, W), (1, H, W) or (1, 1, H, W) "
                         f"(3 or 4 colour channels in place of the 1){hint}")
    if t.dtype in (torch.bfloat16, torch.float16):
        t = t.float()
    return t.cpu().numpy(), name, "tensor"
