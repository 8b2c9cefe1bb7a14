"""The result of sampling one input (:class:`SampleResult`), its output folder and figures.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__
from ..core.normal_io import save_normals
from .schedules import Schedule

__all__ = ["SampleResult"]


@dataclass(kw_only=True)
class SampleResult:
    """``N`` samples for one input (built from named fields: ``SampleResult(normals=..., ...)``).

    Attributes:
        normals: ``(N, H, W, 3)`` float32 unit normals at the input's size, ``(0, 0, 0)``
            outside the mask.
        lights: ``(N, 3)`` float32, the whole-image light each sample implies.
        image: ``(H, W)`` float32, the input as used; mask: ``(H, W)`` bool.
        stages: per V-cycle stage, ``(N, r, r, 3)`` float32 normals in the padded square
            frame at that stage's resolution.
        seeds: per-sample generator seeds (from ``seed`` and the sample index).
        flips, region_flips: per sample, the patches flipped at each lighting step and
            the regions flipped at each region step.
    """

    normals: np.ndarray
    lights: np.ndarray
    image: np.ndarray
    mask: np.ndarray
    stages: list[np.ndarray]
    seed: int
    seeds: list[int]
    input: str
    stem: str
    schedule: Schedule
    model_info: dict
    timings: dict
    work: dict
    flips: list[list[int]]
    notes: list[str]
    device: str
    bf16: bool
    region_flips: list[list[int]] = field(default_factory=list)

    @property
    def n(self) -> int:
        return int(self.normals.shape[0])

    def meta(self) -> dict:
        """The ``meta.json`` content."""
        return {
            "input": self.input,
            "stem": self.stem,
            "preset": self.schedule.name,
            "schedule": self.schedule.to_dict(),
            "seed": self.seed,
            "seeds": self.seeds,
            "n_samples": self.n,
            "model": self.model_info,
            "mssfs_version": __version__,
            "device": self.device,
            "bf16": self.bf16,
            "timings": self.timings,
            "work": self.work,
            "lighting_flips": self.flips,
            "region_flips": self.region_flips,
            "lights": self.lights.tolist(),
            "notes": self.notes,
            "shape": list(self.normals.shape[1:3]),
        }

    def save(self, out_dir, overwrite: bool = False) -> Path:
        """Write the output folder (see docs/sampling.md) atomically.

        Files are written into ``<parent>/.<name>.tmp-XXXX`` and the folder is renamed
        into place at the end, so an interrupted run leaves no half-written output.
        Raises FileExistsError if ``out_dir`` exists and ``overwrite`` is False.
        """
        out = Path(out_dir)
        if out.exists() and not overwrite:
            raise FileExistsError(f"{out} exists; pass overwrite=True (--overwrite) to replace it")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        try:
            np.save(tmp / "normals.npy", self.normals.astype(np.float32))
            np.save(tmp / "lights.npy", self.lights.astype(np.float32))
            np.save(tmp / "image.npy", self.image.astype(np.float32))
            np.save(tmp / "mask.npy", self.mask.astype(bool))
            width = max(2, len(str(self.n - 1)))
            for i, n in enumerate(self.normals):
                save_normals(tmp / f"sample_{i:0{width}d}.png", n)
            _save_png(tmp / "stages.png", stages_grid(self.stages))
            _save_png(tmp / "samples.png", samples_strip(self.image, self.normals))
            (tmp / "meta.json").write_text(json.dumps(self.meta(), indent=2))
            old = None
            if out.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
                os.replace(out, old / out.name)
            os.replace(tmp, out)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return out


def _to_rgb8(n: np.ndarray) -> np.ndarray:
    return np.round(np.clip((np.asarray(n, np.float64) + 1) / 2, 0, 1) * 255).astype(np.uint8)


def _fit(rgb: np.ndarray, cell: int) -> np.ndarray:
    from PIL import Image

    h, w = rgb.shape[:2]
    scale = cell / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    im = Image.fromarray(rgb).resize(size, Image.NEAREST if scale >= 1 else Image.BILINEAR)
    canvas = np.full((cell, cell, 3), 255, np.uint8)
    a = np.asarray(im)
    top, left = (cell - a.shape[0]) // 2, (cell - a.shape[1]) // 2
    canvas[top : top + a.shape[0], left : left + a.shape[1]] = a
    return canvas


def _tile(cells: list[list[np.ndarray]], gap: int = 2) -> np.ndarray:
    rows = [np.concatenate(sum([[c, np.full((c.shape[0], gap, 3), 255, np.uint8)] for c in row], [])[:-1], axis=1) for row in cells]
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.concatenate(sum([[r, np.full((gap, width, 3), 255, np.uint8)] for r in rows], [])[:-1], axis=0)


def stages_grid(stages: list[np.ndarray], cell: int | None = None) -> np.ndarray:
    """RGB uint8 grid: one row per sample, one column per stage (normal-map colours)."""
    n = stages[0].shape[0]
    if cell is None:
        cell = min(160, max(s.shape[1] for s in stages)) if n <= 16 else 96
    return _tile([[_fit(_to_rgb8(s[i]), cell) for s in stages] for i in range(n)])


def samples_strip(image: np.ndarray, normals: np.ndarray, cell: int = 256, per_row: int = 8) -> np.ndarray:
    """RGB uint8 sheet: the input image followed by every sample, ``per_row`` per row."""
    gray = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
    cells = [_fit(np.repeat(gray[..., None], 3, axis=-1), cell)] + [_fit(_to_rgb8(n), cell) for n in normals]
    return _tile([cells[i : i + per_row] for i in range(0, len(cells), per_row)])


def _save_png(path: Path, rgb: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(rgb, "RGB").save(path, format="PNG")
