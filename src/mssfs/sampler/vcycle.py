"""The multiscale V-cycle: guided DDIM stage by stage, lighting and region flips, fusion
of the final normals by their gradients (docs/method.md#v-cycle).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core.frame import normals_to_slopes, slopes_to_normals
from ..core.patches import PATCH, from_patches, to_patches
from ..core.resize import resize_normals_tensor, resize_tensor
from ..model.diffusion import NoiseSchedule
from .ddim import guided_ddim
from .lighting import consistent_lighting, consistent_regions
from .schedules import Schedule

__all__ = ["run_vcycle"]


def fuse_gradients(maps: list[torch.Tensor], size: int, clamp: float = 10.0) -> np.ndarray:
    """Mean of normal maps in gradient space ``(p, q)`` at ``size``, renormalised.

    Args:
        maps: ``(B, 3, r_i, r_i)`` tensors.
    Returns:
        ``(B, size, size, 3)`` float64 normals.
    """
    ps, qs = [], []
    for m in maps:
        n = resize_normals_tensor(m.float(), size).permute(0, 2, 3, 1).double().cpu().numpy()
        p, q = normals_to_slopes(n, clamp=clamp)
        ps.append(p)
        qs.append(q)
    return slopes_to_normals(np.mean(ps, axis=0), np.mean(qs, axis=0))


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


def _each_sample(step, normals, images: np.ndarray, masks: np.ndarray, counts: list[list[int]], *options):
    """Replace each sample ``k`` of ``normals`` by ``step(normals_k, images[k], masks[k],
    *options).normals`` (``consistent_regions`` or ``consistent_lighting``) and append the
    count of units it flipped (``.flipped.sum()``) to ``counts[k]``.

    ``normals``: ``(B, 3, H, W)`` tensor (a tensor on the same device is returned) or
    ``(B, H, W, 3)`` array (changed in place and returned)."""
    tensor = torch.is_tensor(normals)
    maps = normals.permute(0, 2, 3, 1).cpu().numpy() if tensor else normals
    for k in range(len(maps)):
        res = step(maps[k], images[k], masks[k], *options)
        maps[k] = res.normals
        counts[k].append(int(res.flipped.sum()))
    return torch.from_numpy(maps).permute(0, 3, 1, 2).to(normals.device) if tensor else maps


def run_vcycle(
    model: nn.Module,
    squares: list[np.ndarray],
    masks: list[np.ndarray],
    generators: list[torch.Generator],
    schedule: Schedule,
    device: torch.device,
    noise: NoiseSchedule | None = None,
    progress=None,
    floor_images: list[bool] | None = None,
    contour_lights: list | None = None,
) -> VCycleOutput:
    """Run the schedule's stages for ``B`` samples at once.

    Args:
        model: ``eps = model(x_t, t, shading)`` (e.g. a :class:`SlicedDenoiser`).
        squares, masks: per sample, the square image ``(S_b, S_b)`` and its mask.
        generators: per sample, the CPU generator all its noise comes from.
        progress: optional tqdm bar, advanced by one per DDIM step.
        floor_images: per sample, whether the stages' floor and tilt on the shading loss's
            light (``Stage.shading_min_lateral``, ``Stage.shading_tilt_from_image``) apply to
            it; the sampler passes True for images without an occluding contour (None: every
            sample).
        contour_lights: per sample, the ``(3,)`` light read off its image's occluding
            contour, or None (no contour); for stages with ``shading_contour_light``.
    """
    noise = noise or NoiseSchedule()
    b = len(squares)
    floors = None if floor_images is None else torch.tensor([bool(f) for f in floor_images])
    if floors is not None and floors.numel() != b:
        raise ValueError(f"floor_images has {floors.numel()} entries for {b} samples")
    cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    lights = None
    if contour_lights is not None and schedule.guides_by_contour_light:
        if len(contour_lights) != b:
            raise ValueError(f"contour_lights has {len(contour_lights)} entries for {b} samples")
        lights = torch.tensor(np.stack([np.zeros(3) if v is None else np.asarray(v, np.float64) for v in contour_lights]),
                              dtype=torch.float32, device=device)

    def at(r: int):
        if r not in cache:
            img = torch.cat([resize_tensor(torch.from_numpy(s).float()[None, None], r) for s in squares])
            msk = torch.cat([resize_tensor(torch.from_numpy(m).float()[None, None], r) for m in masks]) > 0.5
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
            x = noise.add_noise(to_patches(resize_normals_tensor(prev, r)), fresh, t0)
        loss_mask = None if bool(msk.all()) else msk
        if progress is not None:
            progress.set_description(f"stage {run.index + 1}/{len(schedule.stages)} {r}px" + (" (re-run)" if run.rerun else ""))
        x = guided_ddim(
            model, x, shading, noise, run.timesteps, s, run.guidance_start_t, (r, r), loss_mask,
            callback=(lambda info: progress.update(1)) if progress is not None else None, floor_images=floors,
            contour_lights=lights,
        )
        prev = F.normalize(from_patches(x, r, r).float(), dim=1, eps=1e-6)
        im_np, m_np = img[:, 0].cpu().double().numpy(), msk[:, 0].cpu().numpy()
        if s.region_flips:
            prev = _each_sample(consistent_regions, prev, im_np, m_np, region_flips,
                                schedule.region_threshold, schedule.flat_gradient)
        if s.lighting and not run.rerun:
            prev = _each_sample(consistent_lighting, prev, im_np, m_np, flips, schedule.min_pixels,
                                schedule.flip_threshold)
        else:
            stages.append(prev.cpu())
        seconds.append(time.perf_counter() - start)
    fused = fuse_gradients(stages[-schedule.fuse_last :], schedule.finest)
    if schedule.final_region_flips:
        img, msk = at(schedule.finest)
        im_np, m_np = img[:, 0].cpu().double().numpy(), msk[:, 0].cpu().numpy()
        fused = _each_sample(consistent_regions, fused, im_np, m_np, region_flips,
                             schedule.region_threshold, schedule.flat_gradient)
    return VCycleOutput(stages, fused, flips, seconds, region_flips)
