"""Preparing an input for sampling: the image, its foreground mask and notes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.images import ImageError, load_input_with_alpha, pixels_to_image
from ..core.patches import PATCH
from .input_types import as_pixels, check_input

__all__ = ["PreparedInput", "auto_mask", "prepare_input"]


#: Pixels at or below this value count as black background for the automatic mask.
BLACK_LEVEL = 1.0 / 512


@dataclass
class PreparedInput:
    """An input image as the sampler uses it.

    Attributes:
        image: ``(H, W)`` float64 in [0, 1], 0 outside ``mask``.
        mask: ``(H, W)`` bool foreground.
        square, square_mask: the edge-padded ``(S, S)`` image and mask (padding outside).
        offset: ``(top, left)`` of the image inside the square.
    """

    name: str
    stem: str
    image: np.ndarray
    mask: np.ndarray
    square: np.ndarray
    square_mask: np.ndarray
    offset: tuple[int, int]
    notes: list[str] = field(default_factory=list)


def auto_mask(image: np.ndarray) -> np.ndarray:
    """Foreground = everything except black pixels (``<= BLACK_LEVEL``) connected to the border.

    Dark pixels enclosed by the object (attached shadows) stay foreground.  An image with
    no black border region gives an all-True mask.
    """
    from scipy.ndimage import label

    dark = image <= BLACK_LEVEL
    labels, _ = label(dark)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    border = border[border > 0]
    return ~np.isin(labels, border)


def _read_mask(spec, shape: tuple[int, int]) -> np.ndarray:
    if isinstance(spec, (str, os.PathLike)):
        path = Path(spec)
        if not path.is_file():
            raise ImageError(f"{path}: no such mask file")
        try:
            if path.suffix.lower() == ".npy":
                m = np.load(path, allow_pickle=False)
            else:
                from PIL import Image

                with Image.open(path) as im:
                    m = np.asarray(im.convert("L")) >= 128
        except Exception as exc:
            raise ImageError(f"{path}: the mask could not be read ({type(exc).__name__}: {exc})") from exc
        name = str(path)
    else:
        m, name = np.asarray(spec), "mask"
    m = np.asarray(m)
    if m.ndim == 3 and m.shape[-1] in (1, 3, 4):
        m = m[..., 0]
    if m.shape != tuple(shape):
        raise ImageError(f"{name}: mask shape {m.shape} does not match the image's {tuple(shape)}")
    m = m > 0 if m.dtype != bool else m
    if m.sum() < PATCH:
        raise ImageError(f"{name}: the mask selects {int(m.sum())} pixel(s); nothing to sample")
    return m


def prepare_input(spec, mask=None, max_value: float | None = None) -> PreparedInput:
    """Load and check an input before any sampling work.

    Args:
        spec: one input (:data:`mssfs.sampler.input_types.ACCEPTED`): an image file path,
            ``stimulus:NAME``, a numpy array, a PIL image or a torch tensor; in-memory
            images are converted as image files are (integer types scaled by their
            type's maximum, colour to luminance, alpha as the mask).
        mask: None (automatic: an image's alpha channel if it has a transparent
            pixel, see :func:`mssfs.core.images.alpha_mask`, else :func:`auto_mask`), an
            ``(H, W)`` array or a mask file (PNG/JPEG: >= 128 is foreground; NPY: non-zero
            is foreground).
        max_value: the value of integer data that means full brightness (default: the
            type's maximum; :func:`mssfs.core.images.scale_integer`).
    Raises:
        ImageError with a message naming the problem; TypeError for an object of a
        kind not accepted.
    """
    check_input(spec)
    pixels = as_pixels(spec)
    if pixels is None:
        img, alpha, stem, notes = load_input_with_alpha(spec, max_value)
        name = str(spec)
    else:
        raw, name, stem = pixels
        img, alpha, notes = pixels_to_image(raw, name, max_value)
    lo, hi = float(img.min()), float(img.max())
    if lo < 0:
        img = (img - lo) / (hi - lo)
        notes.append(f"{name}: values in [{lo:g}, {hi:g}] rescaled linearly to [0, 1]")
    elif hi > 1:
        img = img / hi
        notes.append(f"{name}: values up to {hi:g} divided by {hi:g} to fit [0, 1]")
    if mask is None and alpha is None:
        m = auto_mask(img)
        if m.sum() < PATCH:
            raise ImageError(f"{name}: almost the whole image is black background; nothing to sample")
        if not m.all():
            notes.append(f"{name}: foreground mask from the black background ({int((~m).sum())} pixels outside)")
    else:
        if mask is not None:
            m = _read_mask(mask, img.shape)
        else:
            m = alpha
            if m.sum() < PATCH:
                raise ImageError(f"{name}: the alpha channel leaves {int(m.sum())} opaque pixel(s); nothing to "
                                 "sample (give a --mask, or an image without transparency)")
            notes.append(f"{name}: foreground mask from the alpha channel ({int((~m).sum())} transparent pixels outside)")
        if (img[~m] != 0).any():
            notes.append(f"{name}: pixels outside the mask set to 0")
    img = np.where(m, img, 0.0)
    h, w = img.shape
    s = max(h, w)
    top, left = (s - h) // 2, (s - w) // 2
    pad = ((top, s - h - top), (left, s - w - left))
    square = np.pad(img, pad, mode="edge")
    square_mask = np.pad(m, pad, mode="constant", constant_values=False)
    if h != w:
        notes.append(f"{name}: {h}x{w} padded to {s}x{s} by repeating the edge pixels (outside the mask)")
    return PreparedInput(name, stem, img, m, square, square_mask, (top, left), notes)
