"""Multiscale guided sampling: input policy, the V-cycle, fusion, outputs (docs/method.md#v-cycle).

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
import sys
import time
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..core.device import resolve_device, resolve_precision
from ..core.progress import interactive
from ..core.resize import resize_normals_tensor
from ..core.sfs import contour_light, has_occluding_contour
from .denoiser import SlicedDenoiser
from .input_types import expand_inputs
from .inputs import PreparedInput, prepare_input
from .lighting import estimate_light
from .refine import fuse_mean, refine_samples
from .result import SampleResult
from .schedules import Schedule, resolve_schedule, working_schedule
from .vcycle import run_vcycle

__all__ = ["WeightsNotice", "plan_memory", "resolve_model", "sample", "sample_many", "sample_seed"]


#: Default slice size of denoiser calls on CPU (see :class:`mssfs.sampler.denoiser.SlicedDenoiser`).
CPU_CHUNK = 128


def sample_seed(seed: int, index: int) -> int:
    """The generator seed of sample ``index`` for the user seed ``seed`` (64-bit, well mixed)."""
    if seed < 0 or index < 0:
        raise ValueError(f"seed and sample index must be >= 0, got {seed}, {index}")
    return int(np.random.SeedSequence([seed, index]).generate_state(1, np.uint64)[0] >> np.uint64(1))


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
    objective = (getattr(model, "info", None) or {}).get("objective", "diffusion")
    if objective != "diffusion":
        from ..model.checkpoint import CheckpointError

        raise CheckpointError(
            f"{path or 'the model'}: holds a {objective!r} model, not a diffusion denoiser; sampling needs a "
            "diffusion export (the regression baseline runs as 'mssfs evaluate --methods regression "
            "--regression-model PATH')"
        )
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


def plan_memory(items: list[PreparedInput], n: int, schedule=None, resolution: int | str = "auto",
                batch_samples: int | None = None, device="cpu", model=None, preset: str = "fast"):
    """Check that sampling ``n`` samples of each prepared input fits in memory, before any work.

    Returns the :class:`mssfs.core.limits.MemoryPlan` (its ``batch`` is the number of
    samples per batch to use: ``batch_samples``, or all at once, lowered when a batch
    would not fit).  Raises :class:`mssfs.core.limits.ResourceError` when even one
    sample at a time, or the results, would not fit.
    """
    from ..core.limits import plan_batches

    base = resolve_schedule(schedule, preset)
    resolutions = [s.resolution for it in items for s in working_schedule(base, it.square.shape[0], resolution).stages]
    width = getattr(getattr(model, "config", None), "base_width", 16)
    return plan_batches([it.image.shape for it in items], n, resolutions, batch_samples, device, width)


def _to_input_frame(fused: np.ndarray, item: PreparedInput) -> np.ndarray:
    """``(F, F, 3)`` fused normals -> ``(H, W, 3)`` at the input's size, background 0."""
    s = item.square.shape[0]
    h, w = item.image.shape
    n = resize_normals_tensor(torch.from_numpy(fused).permute(2, 0, 1)[None].float(), s)[0].permute(1, 2, 0).numpy()
    top, left = item.offset
    n = n[top : top + h, left : left + w]
    return np.where(item.mask[..., None], n, 0.0).astype(np.float32)


class WeightsNotice(UserWarning):
    """A notice that comes with the denoiser weights (e.g. interim weights); the CLI
    prints it as a note instead."""


def _caller_level() -> int:
    """The ``stacklevel`` that points a warning at the first frame outside mssfs."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith("mssfs."):
        frame, level = frame.f_back, level + 1
    return level


def _groups(scheds: list[Schedule]) -> list[list[int]]:
    """Indices of inputs that share a schedule (they can run in one batch), in input order."""
    groups: dict[str, list[int]] = {}
    for k, s in enumerate(scheds):
        groups.setdefault(json.dumps(s.to_dict(), sort_keys=True), []).append(k)
    return list(groups.values())


def sample_many(
    inputs,
    n: int = 8,
    seed: int | Sequence[int] = 0,
    preset: str = "fast",
    device="auto",
    model=None,
    masks: list | None = None,
    bf16: bool | str = False,
    schedule=None,
    resolution: int | str = "auto",
    batch_samples: int | None = None,
    progress: bool | None = None,
    chunk_patches: int | None | str = "auto",
    workers: int | str = "auto",
    cuda_graphs: bool = False,
) -> list[SampleResult]:
    """Sample ``n`` normal maps for each input, batching samples (and inputs) together.

    Args:
        inputs: one input or a list of them (:data:`mssfs.sampler.input_types.ACCEPTED`:
            image files, folders of them, ``stimulus:NAME``, numpy arrays, PIL images,
            torch tensors, :class:`PreparedInput`); a folder stands for its images, sorted.
        seed: the user seed of every input, or one seed per input (sample ``i`` of
            input ``k`` uses ``sample_seed(seed[k], i)`` either way).
        preset: ``fast`` (default: ours, the preset that meets the quality bars) or
            ``paper`` (the publication's V-cycle); ignored when ``schedule`` is given.
        device: ``auto`` (CUDA when available, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``.
        masks: per input, None (automatic, see :func:`prepare_input`) or a mask array / file.
        bf16: run the denoiser under bfloat16 autocast: True, False (default: float32,
            the same numbers on every CPU) or ``"auto"`` (bf16 only on a CPU with
            bfloat16 instructions, as ``--precision auto`` of the command line,
            :func:`mssfs.core.device.resolve_precision`); the result's ``bf16`` says which ran.
        resolution: ``auto`` (default: the schedule, scaled down for an input smaller
            than its finest resolution), ``preset`` (as it is) or an int, the finest
            working resolution (:func:`mssfs.sampler.schedules.working_schedule`).
            Inputs whose working schedules differ run in separate batches.
        batch_samples: at most this many samples per batch (default: all at once).
            Results do not depend on it beyond float rounding.
        progress: show a progress bar (default None: in an interactive session -- a
            terminal or a notebook -- only).
        chunk_patches: run each denoiser call in slices of at most this many patches
            (``"auto"``: 128 on CPU, where larger slices fall out of cache; none on GPUs).
        workers: on CPU, run that many slices at once, one thread each (``"auto"``:
            ``torch.get_num_threads()``, i.e. ``OMP_NUM_THREADS`` or the core count; 1 on
            GPUs); any number above 1 gives the numbers of a one-thread run (docs/sampling.md).
        cuda_graphs: replay every denoiser call from a CUDA graph captured on the first
            call of its shape (CUDA only, frozen model, no ``chunk_patches``; experimental,
            see docs/sampling.md).
    Returns:
        one :class:`SampleResult` per input (per image of a folder).
    Raises:
        TypeError: an input of a kind not accepted; ImageError: an input that cannot be
        used; ValueError: other bad arguments.  All before any sampling work.
    Warns:
        WeightsNotice: the weights come with a notice (e.g. interim weights).
    """
    if n < 1:
        raise ValueError(f"the number of samples must be >= 1, got {n}")
    if workers != "auto" and int(workers) < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if not isinstance(bf16, bool) and bf16 != "auto":
        raise ValueError(f"bf16 must be True, False or 'auto', got {bf16!r}")
    inputs, _ = expand_inputs(inputs)
    seeds = [int(seed)] * len(inputs) if np.ndim(seed) == 0 else [int(s) for s in seed]
    if len(seeds) != len(inputs):
        raise ValueError(f"{len(seeds)} seeds for {len(inputs)} inputs")
    if min(seeds, default=0) < 0:
        raise ValueError(f"seeds must be >= 0, got {min(seeds)}")
    masks = masks if masks is not None else [None] * len(inputs)
    if len(masks) != len(inputs):
        raise ValueError(f"{len(masks)} masks for {len(inputs)} inputs; give one per input (None: automatic)")
    items = [x if isinstance(x, PreparedInput) else prepare_input(x, m) for x, m in zip(inputs, masks)]
    base = resolve_schedule(schedule, preset)
    scheds = [working_schedule(base, item.square.shape[0], resolution) for item in items]
    dev = resolve_device(device)
    if bf16 == "auto":
        bf16 = resolve_precision("auto", dev)[0]
    if cuda_graphs and dev.type != "cuda":
        raise ValueError(f"CUDA graphs need a CUDA device, got {dev}")
    net, info = resolve_model(model, dev)
    if info.get("notice"):
        warnings.warn(f"model {info['path']}: {info['notice']}", WeightsNotice, stacklevel=_caller_level())
    if chunk_patches == "auto":
        chunk_patches = CPU_CHUNK if dev.type == "cpu" else None
    if workers == "auto":
        workers = torch.get_num_threads() if dev.type == "cpu" and chunk_patches else 1
    plan = plan_memory(items, n, base, resolution, batch_samples, dev, net)
    for note in plan.notes:
        warnings.warn(note, stacklevel=_caller_level())
    if plan.batch < n * len(items):
        batch_samples = plan.batch
    counter = SlicedDenoiser(net, bf16=bf16, chunk=chunk_patches, workers=int(workers), cuda_graphs=cuda_graphs)
    groups = _groups(scheds)
    batches = [(g, batch_samples or len(g) * n) for g in groups]
    steps = sum(sum(len(r.timesteps) for r in scheds[g[0]].runs()) * -(-len(g) * n // b) for g, b in batches)
    from tqdm.auto import tqdm

    results: list[SampleResult | None] = [None] * len(items)
    show = interactive() if progress is None else bool(progress)
    with torch.no_grad(), tqdm(total=steps, disable=not show, unit="step") as bar:
        for group, batch in batches:
            done = _sample_group(
                [items[k] for k in group], [seeds[k] for k in group], n, scheds[group[0]], dev, counter, info,
                batch, bar if show else None, bf16,
            )
            for k, result in zip(group, done):
                results[k] = result
    return results


def _light_notes(floors: list[float], tilt: bool, item: PreparedInput, contour: bool, guided_light: bool,
                 refined_light: bool, fused_by_shading: bool = False) -> list[str]:
    """Where the schedule constrains a light (``floors``, the non-zero
    ``Stage.shading_min_lateral`` values; ``tilt``, any ``Stage.shading_tilt_from_image``;
    ``guided_light``: the shading guidance kept the contour's light,
    ``Stage.shading_contour_light``; ``refined_light``: the refinement took it,
    ``refine_contour_light``, and ``fused_by_shading``: weighted the fusion by it,
    ``refine_contour_fuse``): what it did on this input."""
    if contour:
        said = []
        if guided_light:
            said.append("the shading guidance keeps the light read off the contour (shading_contour_light)")
        elif floors or tilt:
            said.append("the shading guidance fits its light freely")
        if refined_light:
            said.append("the refinement reads its light off the contour, which decides the reading (refine_contour_light)")
            if fused_by_shading:
                said.append("the fused result weights the refined samples by how well they render the image "
                            "under that light (refine_contour_fuse)")
        return [f"{item.name}: occluding contour in the mask: " + "; ".join(said)] if said else []
    if not floors and not tilt:
        return []
    said = []
    if floors:
        share = ", ".join(f"{f:g}" for f in floors)
        said.append(f"keeps its light's image-plane share at least {share} (shading_min_lateral)")
    if tilt:
        said.append("sets its light's tilt to the image's shading axis, up to sign (shading_tilt_from_image)")
    return [f"{item.name}: no occluding contour: the shading guidance " + " and ".join(said)]


def _sample_group(items, seeds, n, sched, dev, counter, info, batch, bar, bf16) -> list[SampleResult]:
    """:func:`sample_many` for inputs that share the schedule ``sched``."""
    calls0, forwards0 = counter.calls, counter.patch_forwards
    jobs = [(k, i) for k in range(len(items)) for i in range(n)]
    per_stage = [len(r.timesteps) for r in sched.runs()]
    out_normals = {k: [None] * n for k in range(len(items))}
    out_stages = {k: [None] * n for k in range(len(items))}
    out_flips = {k: [None] * n for k in range(len(items))}
    out_region_flips = {k: [None] * n for k in range(len(items))}
    stage_seconds = np.zeros(len(per_stage))
    # the floor and the tilt of the shading loss's light are for images without an occluding
    # contour (Stage.shading_min_lateral, Stage.shading_tilt_from_image) ...
    floors = sorted({st.shading_min_lateral for st in sched.stages if st.shading_min_lateral > 0})
    tilt = any(st.shading_tilt_from_image for st in sched.stages)
    # ... and the contour's light for images with one (Stage.shading_contour_light)
    lit = sched.guides_by_contour_light
    refinement = sched.refinement()
    wants_contour = floors or tilt or lit or (refinement is not None and refinement.contour_light)
    contours = [has_occluding_contour(item.mask) if wants_contour else False for item in items]
    fitted = [contour_light(item.image, item.mask) if lit and contours[k] else None for k, item in enumerate(items)]
    guide_lights = [None if v is None else v[0] for v in fitted]  # read once, at the input's own resolution
    t_start = time.perf_counter()
    for j in range(0, len(jobs), batch):
        chunk = jobs[j : j + batch]
        gens = [torch.Generator().manual_seed(sample_seed(seeds[k], i)) for k, i in chunk]
        res = run_vcycle(
            counter, [items[k].square for k, _ in chunk], [items[k].square_mask for k, _ in chunk],
            gens, sched, dev, progress=bar, floor_images=[not contours[k] for k, _ in chunk],
            contour_lights=[guide_lights[k] for k, _ in chunk],
        )
        stage_seconds += np.asarray(res.stage_seconds)
        for c, (k, i) in enumerate(chunk):
            out_normals[k][i] = _to_input_frame(res.fused[c], items[k])
            out_stages[k][i] = [st[c].permute(1, 2, 0).numpy() for st in res.stages]
            out_flips[k][i] = res.flips[c]
            out_region_flips[k][i] = res.region_flips[c]
    finals, refine_seconds, refined_light = {}, {}, {}
    for k, item in enumerate(items):
        t_refine = time.perf_counter()
        normals = np.stack(out_normals[k])
        if refinement is not None:
            normals, fused, read = refine_samples(normals, item.image, item.mask, refinement)
        else:
            fused, read = fuse_mean(normals, item.mask).astype(np.float32), None
        finals[k] = normals, fused
        refined_light[k] = read is not None  # the refinement took the contour's light
        refine_seconds[k] = time.perf_counter() - t_refine if refinement is not None else 0.0
    total = time.perf_counter() - t_start
    results = []
    for k, item in enumerate(items):
        normals, fused = finals[k]
        lights = np.stack([estimate_light(nm, item.image, item.mask) for nm in normals]).astype(np.float32)
        stages = [np.stack([out_stages[k][i][s] for i in range(n)]) for s in range(len(sched.stages))]
        timings = {
            "total_s": total,
            "per_sample_s": total / len(jobs),
            "stage_runs_s": stage_seconds.tolist(),
            "refine_s": refine_seconds[k],
            "batch_samples": batch,
            "batched_with_inputs": len(items),
        }
        calls, patches = sched.total_cost()
        work = {
            "denoiser_calls_made": counter.calls - calls0,
            "patch_forwards_made": counter.patch_forwards - forwards0,
            "denoiser_calls_per_sample_unbatched": calls,
            "patch_forwards_per_sample": patches,
            "cuda_graphs": counter.graphs is not None,
        }
        results.append(
            SampleResult(
                normals=normals,
                lights=lights,
                image=item.image.astype(np.float32),
                mask=item.mask,
                stages=stages,
                seed=seeds[k],
                seeds=[sample_seed(seeds[k], i) for i in range(n)],
                input=item.name,
                stem=item.stem,
                schedule=sched,
                model_info=info,
                timings=timings,
                work=work,
                flips=out_flips[k],
                notes=list(item.notes) + _light_notes(
                    floors, tilt, item, contours[k], guide_lights[k] is not None, refined_light[k],
                    refined_light[k] and refinement.contour_fuse > 0),
                device=str(dev),
                bf16=bool(bf16),
                region_flips=out_region_flips[k],
                fused=fused,
            )
        )
    return results


def sample(
    image,
    n: int = 8,
    seed: int = 0,
    preset: str = "fast",
    device="auto",
    model=None,
    mask=None,
    bf16: bool | str = False,
    schedule=None,
    resolution: int | str = "auto",
    batch_samples: int | None = None,
    progress: bool | None = None,
    chunk_patches: int | None | str = "auto",
    workers: int | str = "auto",
    cuda_graphs: bool = False,
) -> SampleResult | list[SampleResult]:
    """Draw ``n`` normal maps for a shading image.

    Args:
        image: an image file path, ``stimulus:NAME``, a numpy array ``(H, W)``,
            ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)``, a PIL image or a torch tensor
            ``(H, W)``, ``(1, H, W)`` or ``(1, 1, H, W)`` -- converted as image files are
            (integer types scaled by their type's maximum, colour to luminance, alpha as
            the mask; float values outside [0, 1] rescaled with a note) -- or a folder of
            images or a list of inputs, for several.
        n: number of samples; seed: user seed (sample ``i`` uses ``sample_seed(seed, i)``).
        preset: ``fast`` (default: ours, meets the quality bars with the bundled weights)
            or ``paper`` (the publication's V-cycle, ~11x the work); ignored when
            ``schedule`` is given.
        device: ``auto`` (default: CUDA when available, else the CPU), ``cpu``, ``cuda``
            or ``cuda:N``.
        model: a denoiser module, a weights path, or None for the package default.
        mask: foreground ``(H, W)`` array or mask file (a list of them, or None, for
            several inputs); None = automatic (the image's alpha channel when it has
            transparent pixels, else the black background; see :func:`prepare_input`).
        bf16: True, False (default) or ``"auto"``, as in :func:`sample_many`.
        schedule: a :class:`Schedule`, dict, or YAML/JSON file path.
        resolution, batch_samples, progress, chunk_patches, workers, cuda_graphs: as in
            :func:`sample_many`.
    Returns:
        :class:`SampleResult`; a list of them, one per input, for a list or a folder.
    """
    inputs, several = expand_inputs(image)
    if several:
        if mask is not None and not isinstance(mask, (list, tuple)):
            raise ValueError(f"{len(inputs)} inputs and one mask; give a list of masks, one per input (or None)")
        masks = mask
    else:
        masks = [mask]
    results = sample_many(
        inputs, n=n, seed=seed, preset=preset, device=device, model=model, masks=masks, bf16=bf16,
        schedule=schedule, resolution=resolution, batch_samples=batch_samples, progress=progress,
        chunk_patches=chunk_patches, workers=workers, cuda_graphs=cuda_graphs,
    )
    return results if several else results[0]
