"""Multiscale guided sampling: input policy, the V-cycle, fusion, outputs (DESIGN.md §7).

``mssfs.sample(image, n=8, seed=0)`` returns a :class:`SampleResult` with ``N`` normal
maps at the input's size.  All samples (and, through :func:`sample_many`, all inputs)
run as one batch of patches; each sample draws all of its noise from its own
``torch.Generator`` seeded from ``(seed, sample index)``, and lighting consistency runs
per sample, so the first ``k`` samples do not depend on how many are drawn (up to float
reduction order).

Input policy (see docs/sampling.md): the image is padded to a square by replicating its
edge pixels (the padding is outside the mask), resized to each stage's resolution, and
the fused result is resized back to the padded square and cropped, so the output keeps
the input's ``H x W``.  Background normals are ``(0, 0, 0)``.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import __version__
from .diffusion import NoiseSchedule
from .geometry import normals_to_slopes, save_normals, slopes_to_normals
from .images import ImageError, load_input_with_alpha
from .lighting import consistent_lighting, consistent_regions, estimate_light
from .patches import PATCH, from_patches, to_patches
from .sampling import CountingDenoiser, guided_ddim
from .schedules import Schedule, resolve_schedule

__all__ = [
    "PreparedInput",
    "SampleResult",
    "auto_mask",
    "prepare_input",
    "resolve_device",
    "resolve_model",
    "run_vcycle",
    "sample",
    "sample_many",
    "sample_seed",
]

#: Pixels at or below this value count as black background for the automatic mask.
BLACK_LEVEL = 1.0 / 512
#: Default slice size of denoiser calls on CPU (see :class:`mssfs.sampling.CountingDenoiser`).
CPU_CHUNK = 128


# ----------------------------------------------------------------------------- inputs
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


def prepare_input(spec, mask=None) -> PreparedInput:
    """Load and check an input before any sampling work.

    Args:
        spec: ``(H, W)`` array, image file path or ``stimulus:NAME``.
        mask: None (automatic: an image file's alpha channel if it has a transparent
            pixel, see :func:`mssfs.images.alpha_mask`, else :func:`auto_mask`), an
            ``(H, W)`` array or a mask file (PNG/JPEG: >= 128 is foreground; NPY: non-zero
            is foreground).
    Raises:
        ImageError with a message naming the problem.
    """
    img, alpha, stem, notes = load_input_with_alpha(spec)
    name = "array" if isinstance(spec, np.ndarray) else str(spec)
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


def sample_seed(seed: int, index: int) -> int:
    """The generator seed of sample ``index`` for the user seed ``seed`` (64-bit, well mixed)."""
    if seed < 0 or index < 0:
        raise ValueError(f"seed and sample index must be >= 0, got {seed}, {index}")
    return int(np.random.SeedSequence([seed, index]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def resolve_device(device) -> torch.device:
    """A checked ``torch.device``; a clear error when CUDA is asked for but not there."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"unknown device {device!r} (use cpu, cuda or cuda:N)") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} asked for, but CUDA is not available in this torch build / machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) present")
    return dev


def resolve_model(model, device: torch.device) -> tuple[nn.Module, dict]:
    """The denoiser (module as given, or loaded from a path / the package default) and its description."""
    path = None
    if not isinstance(model, nn.Module):
        import mssfs

        path = None if model is None else str(model)
        loader = getattr(mssfs, "load_model", None) or getattr(importlib.import_module(".model", __package__), "load_model", None)
        if loader is None:
            raise RuntimeError("no denoiser loader (mssfs.load_model) is available in this installation")
        model = loader(path, device=device)
    model = model.to(device).eval()
    info = {
        "path": path or "default",
        "class": type(model).__name__,
        "parameters": int(sum(p.numel() for p in model.parameters())),
    }
    for key in ("model_id", "version", "weights_sha256"):
        if getattr(model, key, None) is not None:
            info[key] = getattr(model, key)
    cfg = getattr(model, "config", None)
    if cfg is not None and hasattr(cfg, "to_dict"):
        info["config"] = cfg.to_dict()
    notice = (getattr(model, "info", None) or {}).get("notice")
    if notice:
        info["notice"] = str(notice)
    return model, info


# ----------------------------------------------------------------------------- resizing
def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear (antialiased when shrinking) resize of ``(B, C, H, W)`` to ``size x size``."""
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def resize_normals(n: torch.Tensor, size: int) -> torch.Tensor:
    """Resize ``(B, 3, H, W)`` normals and renormalise."""
    return F.normalize(resize(n, size), dim=1, eps=1e-6)


def fuse_gradients(maps: list[torch.Tensor], size: int, clamp: float = 10.0) -> np.ndarray:
    """Mean of normal maps in gradient space ``(p, q)`` at ``size``, renormalised.

    Args:
        maps: ``(B, 3, r_i, r_i)`` tensors.
    Returns:
        ``(B, size, size, 3)`` float64 normals.
    """
    ps, qs = [], []
    for m in maps:
        n = resize_normals(m.float(), size).permute(0, 2, 3, 1).double().cpu().numpy()
        p, q = normals_to_slopes(n, clamp=clamp)
        ps.append(p)
        qs.append(q)
    return slopes_to_normals(np.mean(ps, axis=0), np.mean(qs, axis=0))


# ----------------------------------------------------------------------------- V-cycle
@dataclass
class VCycleOutput:
    """Result of :func:`run_vcycle` for a batch of ``B`` samples.

    Attributes:
        stages: per V-cycle stage, ``(B, 3, r, r)`` unit normals (float32, CPU), after the
            lighting re-run where there is one.
        fused: ``(B, F, F, 3)`` float64 fused normals at the finest fused resolution.
        flips: per sample, the number of patches flipped at each lighting step.
        stage_seconds: wall time of every stage run.
        region_flips: per sample, the number of regions flipped at each region step
            (the stages' in order, then the fused result's).
    """

    stages: list[torch.Tensor]
    fused: np.ndarray
    flips: list[list[int]]
    stage_seconds: list[float]
    region_flips: list[list[int]] = field(default_factory=list)


def _draw(generators: list[torch.Generator], shape: tuple[int, ...], device) -> torch.Tensor:
    """Standard normal noise ``(B * shape[0], ...)``: each sample's block from its own generator."""
    return torch.cat([torch.randn(shape, generator=g) for g in generators]).to(device)


def run_vcycle(
    model: nn.Module,
    squares: list[np.ndarray],
    masks: list[np.ndarray],
    generators: list[torch.Generator],
    schedule: Schedule,
    device: torch.device,
    noise: NoiseSchedule | None = None,
    progress=None,
) -> VCycleOutput:
    """Run the schedule's stages for ``B`` samples at once.

    Args:
        model: ``eps = model(x_t, t, shading)`` (e.g. a :class:`CountingDenoiser`).
        squares, masks: per sample, the square image ``(S_b, S_b)`` and its mask.
        generators: per sample, the CPU generator all its noise comes from.
        progress: optional tqdm bar, advanced by one per DDIM step.
    """
    noise = noise or NoiseSchedule()
    b = len(squares)
    cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def at(r: int):
        if r not in cache:
            img = torch.cat([resize(torch.from_numpy(s).float()[None, None], r) for s in squares])
            msk = torch.cat([resize(torch.from_numpy(m).float()[None, None], r) for m in masks]) > 0.5
            cache[r] = (img.clamp(0, 1).to(device), msk.to(device))
        return cache[r]

    stages: list[torch.Tensor] = []
    flips: list[list[int]] = [[] for _ in range(b)]
    region_flips: list[list[int]] = [[] for _ in range(b)]
    seconds: list[float] = []
    prev = None  # (B, 3, r, r) normals of the last run
    for run in schedule.runs(noise):
        start = time.perf_counter()
        s, r = run.stage, run.stage.resolution
        img, msk = at(r)
        n_patch = (r // PATCH) ** 2
        shading = to_patches(img)
        fresh = _draw(generators, (n_patch, 3, PATCH, PATCH), device)
        t0 = run.timesteps[0]
        if prev is None or (t0 >= noise.T - 1 and not run.rerun):
            x = fresh
        else:
            x = noise.add_noise(to_patches(resize_normals(prev, r)), fresh, t0)
        loss_mask = None if bool(msk.all()) else msk
        if progress is not None:
            progress.set_description(f"stage {run.index + 1}/{len(schedule.stages)} {r}px" + (" (re-run)" if run.rerun else ""))
        x = guided_ddim(
            model, x, shading, noise, run.timesteps, s, run.guidance_start_t, (r, r), loss_mask,
            callback=(lambda info: progress.update(1)) if progress is not None else None,
        )
        prev = F.normalize(from_patches(x, r, r).float(), dim=1, eps=1e-6)
        im_np, m_np = img[:, 0].cpu().double().numpy(), msk[:, 0].cpu().numpy()
        if s.region_flips:
            maps = prev.permute(0, 2, 3, 1).cpu().numpy()
            for k in range(b):
                reg = consistent_regions(maps[k], im_np[k], m_np[k], schedule.region_threshold, schedule.flat_gradient)
                maps[k] = reg.normals
                region_flips[k].append(int(reg.flipped.sum()))
            prev = torch.from_numpy(maps).permute(0, 3, 1, 2).to(device)
        if s.lighting and not run.rerun:
            maps = prev.permute(0, 2, 3, 1).cpu().numpy()
            for k in range(b):
                res = consistent_lighting(maps[k], im_np[k], m_np[k], schedule.min_pixels, schedule.flip_threshold)
                maps[k] = res.normals
                flips[k].append(int(res.flipped.sum()))
            prev = torch.from_numpy(maps).permute(0, 3, 1, 2).to(device)
        else:
            stages.append(prev.cpu())
        seconds.append(time.perf_counter() - start)
    fused = fuse_gradients(stages[-schedule.fuse_last :], schedule.finest)
    if schedule.final_region_flips:
        img, msk = at(schedule.finest)
        im_np, m_np = img[:, 0].cpu().double().numpy(), msk[:, 0].cpu().numpy()
        for k in range(b):
            reg = consistent_regions(fused[k], im_np[k], m_np[k], schedule.region_threshold, schedule.flat_gradient)
            fused[k] = reg.normals
            region_flips[k].append(int(reg.flipped.sum()))
    return VCycleOutput(stages, fused, flips, seconds, region_flips)


# ----------------------------------------------------------------------------- results
@dataclass
class SampleResult:
    """``N`` samples for one input.

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


# ----------------------------------------------------------------------------- API
def _to_input_frame(fused: np.ndarray, item: PreparedInput) -> np.ndarray:
    """``(F, F, 3)`` fused normals -> ``(H, W, 3)`` at the input's size, background 0."""
    s = item.square.shape[0]
    h, w = item.image.shape
    n = resize_normals(torch.from_numpy(fused).permute(2, 0, 1)[None].float(), s)[0].permute(1, 2, 0).numpy()
    top, left = item.offset
    n = n[top : top + h, left : left + w]
    return np.where(item.mask[..., None], n, 0.0).astype(np.float32)


def sample_many(
    inputs: list,
    n: int = 8,
    seed: int | Sequence[int] = 0,
    preset: str = "paper",
    device="cpu",
    model=None,
    masks: list | None = None,
    bf16: bool = False,
    schedule=None,
    batch_samples: int | None = None,
    progress: bool = False,
    chunk_patches: int | None | str = "auto",
    workers: int | str = "auto",
    cuda_graphs: bool = False,
) -> list[SampleResult]:
    """Sample ``n`` normal maps for each input, batching samples (and inputs) together.

    Args:
        inputs: arrays, image paths, ``stimulus:NAME`` strings or :class:`PreparedInput`.
        seed: the user seed of every input, or one seed per input (sample ``i`` of
            input ``k`` uses ``sample_seed(seed[k], i)`` either way).
        masks: per input, None (automatic, see :func:`prepare_input`) or a mask array / file.
        batch_samples: at most this many samples per batch (default: all at once).
            Results do not depend on it beyond float rounding.
        chunk_patches: run each denoiser call in slices of at most this many patches
            (``"auto"``: 128 on CPU, where larger slices fall out of cache; none on GPUs).
        workers: on CPU, run that many slices at once, one thread each (``"auto"``:
            ``torch.get_num_threads()``, i.e. ``OMP_NUM_THREADS`` or the core count; 1 on
            GPUs); any number above 1 gives the numbers of a one-thread run (docs/sampling.md).
        cuda_graphs: replay every denoiser call from a CUDA graph captured on the first
            call of its shape (CUDA only, frozen model, no ``chunk_patches``; experimental,
            see docs/sampling.md).
    Returns:
        one :class:`SampleResult` per input.
    """
    if n < 1:
        raise ValueError(f"the number of samples must be >= 1, got {n}")
    if workers != "auto" and int(workers) < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    seeds = [int(seed)] * len(inputs) if np.ndim(seed) == 0 else [int(s) for s in seed]
    if len(seeds) != len(inputs):
        raise ValueError(f"{len(seeds)} seeds for {len(inputs)} inputs")
    if min(seeds, default=0) < 0:
        raise ValueError(f"seeds must be >= 0, got {min(seeds)}")
    masks = masks if masks is not None else [None] * len(inputs)
    items = [x if isinstance(x, PreparedInput) else prepare_input(x, m) for x, m in zip(inputs, masks)]
    sched = resolve_schedule(schedule, preset)
    dev = resolve_device(device)
    if cuda_graphs and dev.type != "cuda":
        raise ValueError(f"CUDA graphs need a CUDA device, got {dev}")
    net, info = resolve_model(model, dev)
    if chunk_patches == "auto":
        chunk_patches = CPU_CHUNK if dev.type == "cpu" else None
    if workers == "auto":
        workers = torch.get_num_threads() if dev.type == "cpu" and chunk_patches else 1
    counter = CountingDenoiser(net, bf16=bf16, chunk=chunk_patches, workers=int(workers), cuda_graphs=cuda_graphs)
    jobs = [(k, i) for k in range(len(items)) for i in range(n)]
    batch = batch_samples or len(jobs)
    per_stage = [len(r.timesteps) for r in sched.runs()]
    out_normals = {k: [None] * n for k in range(len(items))}
    out_stages = {k: [None] * n for k in range(len(items))}
    out_flips = {k: [None] * n for k in range(len(items))}
    out_region_flips = {k: [None] * n for k in range(len(items))}
    stage_seconds = np.zeros(len(per_stage))
    from tqdm.auto import tqdm

    t_start = time.perf_counter()
    with torch.no_grad(), tqdm(total=sum(per_stage) * -(-len(jobs) // batch), disable=not progress, unit="step") as bar:
        for j in range(0, len(jobs), batch):
            chunk = jobs[j : j + batch]
            gens = [torch.Generator().manual_seed(sample_seed(seeds[k], i)) for k, i in chunk]
            res = run_vcycle(
                counter, [items[k].square for k, _ in chunk], [items[k].square_mask for k, _ in chunk],
                gens, sched, dev, progress=bar if progress else None,
            )
            stage_seconds += np.asarray(res.stage_seconds)
            for c, (k, i) in enumerate(chunk):
                out_normals[k][i] = _to_input_frame(res.fused[c], items[k])
                out_stages[k][i] = [st[c].permute(1, 2, 0).numpy() for st in res.stages]
                out_flips[k][i] = res.flips[c]
                out_region_flips[k][i] = res.region_flips[c]
    total = time.perf_counter() - t_start
    results = []
    for k, item in enumerate(items):
        normals = np.stack(out_normals[k])
        lights = np.stack([estimate_light(nm, item.image, item.mask) for nm in normals]).astype(np.float32)
        stages = [np.stack([out_stages[k][i][s] for i in range(n)]) for s in range(len(sched.stages))]
        timings = {
            "total_s": total,
            "per_sample_s": total / len(jobs),
            "stage_runs_s": stage_seconds.tolist(),
            "batch_samples": batch,
            "batched_with_inputs": len(items),
        }
        calls, patches = sched.total_cost()
        work = {
            "denoiser_calls_made": counter.calls,
            "patch_forwards_made": counter.patch_forwards,
            "denoiser_calls_per_sample_unbatched": calls,
            "patch_forwards_per_sample": patches,
            "cuda_graphs": counter.graphs is not None,
        }
        results.append(
            SampleResult(
                normals, lights, item.image.astype(np.float32), item.mask, stages, seeds[k],
                [sample_seed(seeds[k], i) for i in range(n)], item.name, item.stem, sched, info,
                timings, work, out_flips[k], list(item.notes), str(dev), bool(bf16), out_region_flips[k],
            )
        )
    return results


def sample(
    image,
    n: int = 8,
    seed: int = 0,
    preset: str = "paper",
    device="cpu",
    model=None,
    mask=None,
    bf16: bool = False,
    schedule=None,
    batch_samples: int | None = None,
    progress: bool = False,
    chunk_patches: int | None | str = "auto",
    workers: int | str = "auto",
    cuda_graphs: bool = False,
) -> SampleResult:
    """Draw ``n`` normal maps for one shading image.

    Args:
        image: ``(H, W)`` array (any size; values outside [0, 1] are rescaled with a
            note), an image file path, or ``stimulus:NAME``.
        n: number of samples; seed: user seed (sample ``i`` uses ``sample_seed(seed, i)``).
        preset: ``paper`` or ``fast`` (ignored when ``schedule`` is given).
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        model: a denoiser module, a weights path, or None for the package default.
        mask: foreground ``(H, W)`` array or mask file; None = automatic (an image
            file's alpha channel when it has transparent pixels, else the black
            background; see :func:`prepare_input`).
        bf16: run the denoiser under bfloat16 autocast.
        schedule: a :class:`Schedule`, dict, or YAML/JSON file path.
        batch_samples, progress, chunk_patches, workers, cuda_graphs: as in :func:`sample_many`.
    Returns:
        :class:`SampleResult`.
    """
    return sample_many(
        [image], n=n, seed=seed, preset=preset, device=device, model=model, masks=[mask], bf16=bf16,
        schedule=schedule, batch_samples=batch_samples, progress=progress, chunk_patches=chunk_patches,
        workers=workers, cuda_graphs=cuda_graphs,
    )[0]
