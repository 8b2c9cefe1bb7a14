"""The result of sampling one input (:class:`SampleResult`), its output folder and figures.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__
from ..core.normal_io import save_normals
from ..core.outputs import claim, make_temp_dir, publish
from .result_methods import ResultMethods
from .schedules import Schedule

__all__ = ["SampleResult", "output_quality"]


@dataclass(kw_only=True, repr=False)
class SampleResult(ResultMethods):
    """``N`` samples for one input (built from named fields: ``SampleResult(normals=..., ...)``).

    Besides :meth:`save`: a short ``repr``, a thumbnail strip in notebooks,
    :meth:`depth`, :meth:`mesh`, :meth:`analyze` and :meth:`plot`
    (:class:`~mssfs.sampler.result_methods.ResultMethods`).

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
        fused: ``(H, W, 3)`` float32, the renormalised mean of the samples (refined by
            the shading when the schedule refines, and on an image with an occluding
            contour weighted by how well each renders the image with
            ``refine_contour_fuse``; :mod:`mssfs.sampler.refine`).
        quality: seam index and one-region consistency (:func:`output_quality`), computed
            on first use (saving computes it for ``meta.json``) and kept.
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
    fused: np.ndarray | None = None
    _quality: dict | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def n(self) -> int:
        return int(self.normals.shape[0])

    @property
    def quality(self) -> dict:
        if self._quality is None:
            self._quality = output_quality(self.normals, self.fused, self.image, self.mask,
                                           self.schedule.stages[-1].resolution)
        return self._quality

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
            "refined": bool(self.schedule.refine),
            "quality": self.quality,
        }

    def save(self, out_dir, overwrite: bool = False, tiff: bool = False) -> Path:
        """Write the output folder (see docs/sampling.md) atomically.

        The sample PNGs carry the mask as their alpha channel; with ``tiff`` the
        normals are also written as ``normals.tif`` (float32 ``(N, H, W, 3)``).

        Files are written into ``<parent>/.<name>.tmp-XXXX`` and the folder is renamed
        into place at the end, so an interrupted run leaves no half-written output;
        the folder is claimed for the whole write (:func:`mssfs.core.outputs.claim`), so
        a concurrent save into it is refused.  ``out_dir``'s name must be a plain folder
        name (:func:`mssfs.core.outputs.check_stem`).
        Raises FileExistsError if ``out_dir`` exists and ``overwrite`` is False.
        """
        out = Path(out_dir)
        with claim(out, exist_ok=True):
            if out.exists() and not overwrite:
                raise FileExistsError(f"{out} exists; pass overwrite=True (--overwrite) to replace it")
            self._write(out, make_temp_dir(out.parent, out.name), tiff)
        return out

    def _write(self, out: Path, tmp: Path, tiff: bool) -> None:
        """Write every file into the empty folder ``tmp``, then move it to ``out``."""
        try:
            np.save(tmp / "normals.npy", self.normals.astype(np.float32))
            np.save(tmp / "lights.npy", self.lights.astype(np.float32))
            np.save(tmp / "image.npy", self.image.astype(np.float32))
            np.save(tmp / "mask.npy", self.mask.astype(bool))
            if self.fused is not None:
                np.save(tmp / "fused.npy", self.fused.astype(np.float32))
            width = max(2, len(str(self.n - 1)))
            for i, n in enumerate(self.normals):
                save_normals(tmp / f"sample_{i:0{width}d}.png", n, mask=self.mask)
            if tiff:
                import tifffile

                tifffile.imwrite(tmp / "normals.tif", self.normals.astype(np.float32), photometric="rgb")
            labels = [f"{k + 1}: {s.resolution} px" for k, s in enumerate(self.schedule.stages)]
            _save_png(tmp / "stages.png", stages_grid(self.stages, mask=self.mask, labels=labels))
            _save_png(tmp / "samples.png", samples_strip(self.image, self.normals))
            (tmp / "meta.json").write_text(json.dumps(self.meta(), indent=2))
            publish(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def _finite(x) -> float | None:
    return float(x) if np.isfinite(x) else None


def output_quality(normals: np.ndarray, fused: np.ndarray | None, image: np.ndarray, mask: np.ndarray,
                   stage_resolution: int) -> dict:
    """The ``quality`` entry of ``meta.json`` for ``(N, H, W, 3)`` samples of one input.

    ``seam_index``: :func:`mssfs.analysis.seams.seam_index` of every sample and of the
    fused result on the patch grid of the last stage (``stage_resolution`` in the padded
    square; ``grid`` gives its period and origin in output pixels) and the samples' mean;
    ``one_region_consistency``: :func:`mssfs.analysis.one_region.one_region_consistency`
    of every sample under its own light and the mean (None where undefined).
    """
    from ..analysis.one_region import one_region_consistency
    from ..analysis.seams import output_grid, seam_index

    period, origin = output_grid(mask.shape, stage_resolution)
    seams = seam_index(normals, mask, period, origin)
    one = one_region_consistency(normals, image, mask)
    return {
        "seam_index": {
            "samples": [_finite(x) for x in seams],
            "mean": _finite(np.nanmean(seams)) if np.isfinite(seams).any() else None,
            "fused": None if fused is None else _finite(seam_index(fused, mask, period, origin)),
            "grid": {"stage_resolution": int(stage_resolution), "period": float(period), "origin": list(origin)},
        },
        "one_region_consistency": {
            "samples": [_finite(x) for x in one],
            "mean": _finite(np.nanmean(one)) if np.isfinite(one).any() else None,
        },
    }


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


def _square_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """The ``(H, W)`` mask placed in its centred square (as the sampler pads inputs) and
    resized to ``size x size`` (bool, more than half foreground)."""
    from PIL import Image

    h, w = mask.shape
    s = max(h, w)
    square = np.zeros((s, s), np.float32)
    top, left = (s - h) // 2, (s - w) // 2
    square[top : top + h, left : left + w] = mask
    return np.asarray(Image.fromarray(square, "F").resize((size, size), Image.BILINEAR)) > 0.5


def _label(text: str, width: int, height: int = 14) -> np.ndarray:
    """A white ``(height, width, 3)`` strip with ``text`` in black."""
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (width, height), "white")
    ImageDraw.Draw(im).text((2, 1), text, fill="black")
    return np.asarray(im)


def stages_grid(stages: list[np.ndarray], cell: int | None = None, mask: np.ndarray | None = None,
                labels: list[str] | None = None) -> np.ndarray:
    """RGB uint8 grid: one row per sample, one column per stage (normal-map colours).

    Args:
        stages: per stage ``(N, r, r, 3)`` normals in the padded square frame.
        mask: the input's ``(H, W)`` mask: pixels outside it are shown mid-grey, the
            colour of a zero normal (None: everything shown).
        labels: one header per column (e.g. stage number and resolution).
    """
    n = stages[0].shape[0]
    if cell is None:
        cell = min(160, max(s.shape[1] for s in stages)) if n <= 16 else 96
    cols = []
    for s in stages:
        keep = np.ones(s.shape[1:3], bool) if mask is None else _square_mask(np.asarray(mask, bool), s.shape[1])
        cols.append([_fit(_to_rgb8(np.where(keep[..., None], s[i], 0.0)), cell) for i in range(n)])
    rows = [[col[i] for col in cols] for i in range(n)]
    if labels is not None:
        if len(labels) != len(stages):
            raise ValueError(f"{len(labels)} labels for {len(stages)} stages")
        rows.insert(0, [_label(text, cell) for text in labels])
    return _tile(rows)


def samples_strip(image: np.ndarray, normals: np.ndarray, cell: int = 256, per_row: int = 8) -> np.ndarray:
    """RGB uint8 sheet: the input image followed by every sample, ``per_row`` per row."""
    gray = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
    cells = [_fit(np.repeat(gray[..., None], 3, axis=-1), cell)] + [_fit(_to_rgb8(n), cell) for n in normals]
    return _tile([cells[i : i + per_row] for i in range(0, len(cells), per_row)])


def _save_png(path: Path, rgb: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(rgb, "RGB").save(path, format="PNG")
