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
import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..core.device import resolve_device
from ..core.resize import resize_normals_tensor
from .denoiser import SlicedDenoiser
from .inputs import PreparedInput, prepare_input
from .lighting import estimate_light
from .result import SampleResult
from .schedules import resolve_schedule
from .vcycle import run_vcycle

__all__ = ["resolve_model", "sample", "sample_many", "sample_seed"]


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


def _to_input_frame(fused: np.ndarray, item: PreparedInput) -> np.ndarray:
    """``(F, F, 3)`` fused normals -> ``(H, W, 3)`` at the input's size, background 0."""
    s = item.square.shape[0]
    h, w = item.image.shape
    n = resize_normals_tensor(torch.from_numpy(fused).permute(2, 0, 1)[None].float(), s)[0].permute(1, 2, 0).numpy()
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
    counter = SlicedDenoiser(net, bf16=bf16, chunk=chunk_patches, workers=int(workers), cuda_graphs=cuda_graphs)
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
                notes=list(item.notes),
                device=str(dev),
                bf16=bool(bf16),
                region_flips=out_region_flips[k],
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
