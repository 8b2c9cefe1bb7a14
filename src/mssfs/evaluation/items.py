"""Evaluation items: held-out objects and reliefs with ground truth, stimuli and generated
layouts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["CIRCLES_LAYOUT", "ObjectItem", "StimulusItem", "heldout_items", "segment_features", "stimulus_items"]


#: Held-out reliefs and bump/dent layouts use seeds this far above ``HELDOUT_SEED_BASE``,
#: so they never share a seed with the held-out objects.
RELIEF_SEED_OFFSET = 1 << 20


LAYOUT_SEED_OFFSET = 1 << 21


#: The circles stimulus (discs in reading order: top-left, top-right, bottom-left,
#: bottom-right) read with light from above: three bumps and one dent (as the publication reads it).
CIRCLES_LAYOUT = (1, 1, 1, -1)


@dataclass
class ObjectItem:
    """One held-out image with its ground truth."""

    name: str
    kind: str  # "objects" or "reliefs"
    family: str
    seed: int
    image: np.ndarray  # (H, W) float64
    normals: np.ndarray  # (H, W, 3) float32
    mask: np.ndarray  # (H, W) bool
    light: np.ndarray  # (3,)
    albedo: float


def heldout_items(n_objects: int = 50, n_reliefs: int = 20, size: int = 64, first: int = 0) -> list[ObjectItem]:
    """The objects suite: ``n_objects`` objects then ``n_reliefs`` reliefs.

    Objects use shape seeds ``2**30 + first + i``; reliefs ``2**30 + 2**20 + first + i``
    (``first`` > 0 picks items outside the held-out splits, e.g. the tuning ones).  Lights and
    albedos are those of :class:`mssfs.data.datasets.HeldoutImages` (a function of the seed).
    """
    from ..data.datasets import HeldoutImages
    from ..data.shapes import HELDOUT_SEED_BASE

    items = []
    for kind, n, base in (("objects", n_objects, HELDOUT_SEED_BASE), ("reliefs", n_reliefs, HELDOUT_SEED_BASE + RELIEF_SEED_OFFSET)):
        if n <= 0:
            continue
        ds = HeldoutImages(n, size=size, seed_base=base + first, kind=kind)
        for i in range(n):
            d = ds[i]
            items.append(
                ObjectItem(
                    name=f"{d['family']}-{d['seed']}",
                    kind=kind,
                    family=d["family"],
                    seed=int(d["seed"]),
                    image=d["image"][0].double().numpy(),
                    normals=d["normals"].permute(1, 2, 0).numpy(),
                    mask=d["mask"][0].numpy() > 0.5,
                    light=d["light"].double().numpy(),
                    albedo=float(d["albedo"]),
                )
            )
    return items


def segment_features(image: np.ndarray, count: int, threshold: float = 0.04, sigma: float | None = None) -> np.ndarray:
    """Regions of round bumps/dents on flat ground, from the image alone.

    The ground's intensity is the most frequent grey level (256-bin histogram); pixels
    whose Gaussian-smoothed (``sigma``, default ``max(1, min(H, W) / 128)`` pixels)
    absolute difference from it exceeds ``threshold`` are marked and their holes filled
    (the centre of a feature faces the viewer like the ground and has the ground's grey),
    and the ``count`` largest connected components kept.  Labels follow reading order:
    components are grouped into rows (centroids closer in row than the mean equivalent
    radius) from the top, and ordered left to right within a row.

    Args:
        image: ``(H, W)`` in [0, 1].
        count: number of features to keep.
    Returns:
        ``(H, W)`` int32 labels 1..count (0 = ground).
    Raises:
        ValueError when fewer than ``count`` components are found.
    """
    img = np.asarray(image, np.float64)
    hist, edges = np.histogram(img, bins=256, range=(0.0, 1.0))
    ground = edges[np.argmax(hist)] + 0.5 / 256
    if sigma is None:
        sigma = max(1.0, min(img.shape) / 128)
    marked = ndimage.binary_fill_holes(ndimage.gaussian_filter(np.abs(img - ground), sigma) > threshold)
    labels, k = ndimage.label(marked)
    if k < count:
        raise ValueError(f"found {k} feature(s) in the image, expected {count}")
    sizes = ndimage.sum(marked, labels, range(1, k + 1))
    keep = np.argsort(-sizes, kind="stable")[:count] + 1
    centres = ndimage.center_of_mass(marked, labels, keep)
    radius = float(np.mean(np.sqrt(sizes[keep - 1] / np.pi)))
    order = sorted(range(count), key=lambda j: centres[j][0])
    rows, row = [], [order[0]]
    for j in order[1:]:
        if centres[j][0] - np.mean([centres[r][0] for r in row]) < radius:
            row.append(j)
        else:
            rows.append(row)
            row = [j]
    rows.append(row)
    out = np.zeros(img.shape, np.int32)
    label = 1
    for row in rows:
        for j in sorted(row, key=lambda j: centres[j][1]):
            out[labels == keep[j]] = label
            label += 1
    return out


@dataclass
class StimulusItem:
    """An input of the stimuli suite; ``regions``/``layout`` None when not scored by regions."""

    name: str
    kind: str  # "bundled" or "layout"
    image: np.ndarray  # (H, W) float64
    mask: np.ndarray  # (H, W) bool
    regions: np.ndarray | None = None  # (H, W) int labels 1..R
    layout: np.ndarray | None = None  # (R,) +1 bump / -1 dent for the "true" reading
    notes: str = ""


def _resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """``(H, W)`` -> ``(size, size)`` float64 in [0, 1] with :func:`mssfs.core.resize.resize_tensor`."""
    import torch

    from ..core.resize import resize_tensor

    t = torch.from_numpy(np.asarray(image, np.float32))[None, None]
    return resize_tensor(t, size)[0, 0].clamp(0, 1).double().numpy()


def stimulus_items(size: int = 128, n_layouts: int = 10, names=None) -> list[StimulusItem]:
    """The bundled stimuli resized to ``size x size``, then ``n_layouts`` generated layouts
    (seeds ``2**30 + 2**21 + k``)."""
    from ..analysis.layouts import generated_bump_dent_layout
    from ..data import stimuli
    from ..data.shapes import HELDOUT_SEED_BASE

    items = []
    for name in names if names is not None else stimuli.NAMES:
        img = _resize_image(stimuli.load(name), size)
        mask = np.ones(img.shape, bool)
        if name == "circles":
            regions = segment_features(img, len(CIRCLES_LAYOUT))
            items.append(StimulusItem(name, "bundled", img, mask, regions, np.array(CIRCLES_LAYOUT, np.int8),
                                      "regions segmented from the image; true = light from above"))
        else:
            items.append(StimulusItem(name, "bundled", img, mask, notes="no region layout: modes and spread only"))
    for k in range(n_layouts):
        seed = HELDOUT_SEED_BASE + LAYOUT_SEED_OFFSET + k
        lay = generated_bump_dent_layout(seed, size)
        items.append(StimulusItem(f"layout-{seed}", "layout", lay.image, lay.mask, lay.regions, lay.layout))
    return items
