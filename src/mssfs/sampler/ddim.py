"""Guided DDIM at one resolution (docs/method.md#guided-ddim).

The state is a batch of patches ``x`` ``(B * n, 3, P, P)``: the ``n = (H/P) * (W/P)``
patches of each of ``B`` images (any mix of images and seeds), in the order of
:mod:`mssfs.core.patches`.  Guidance assembles each image from its patches, so seams and
curl are measured on the whole image, while the denoiser only ever sees patches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..core.patches import from_patches
from ..model.diffusion import NoiseSchedule
from .guidance import image_tilt_axis, integrability_loss, seam_loss, shading_loss
from .schedules import Stage

__all__ = ["StepInfo", "guided_ddim"]


@dataclass
class StepInfo:
    """Progress report handed to the callback after every DDIM step."""

    step: int  # index within this run
    t: int
    t_prev: int
    guided_iters: int
    lr: float
    loss: float | None  # mean guidance loss of the last inner iteration (None if unguided)


def guided_ddim(
    model: Callable,
    x: torch.Tensor,
    shading: torch.Tensor,
    noise: NoiseSchedule,
    timesteps: list[int],
    stage: Stage,
    guidance_start_t: int,
    image_size: tuple[int, int],
    mask: torch.Tensor | None = None,
    callback: Callable[[StepInfo], None] | None = None,
    floor_images: torch.Tensor | None = None,
    contour_lights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Run guided DDIM over ``timesteps`` (descending) and return the clean patches.

    Args:
        model: ``eps = model(x_t, t, shading)``.
        x: ``(B * n, 3, P, P)`` patches at ``timesteps[0]``.
        shading: ``(B * n, 1, P, P)`` image patches.
        stage: step size, inner iterations, thresholds (see :class:`Stage`).
        guidance_start_t: guide the steps with ``t <= guidance_start_t``.
        image_size: ``(H, W)`` of each assembled image.
        mask: optional foreground ``(B, 1, H, W)`` for the losses.
        floor_images: optional bool ``(B,)``: the images that the stage's
            ``shading_min_lateral`` and ``shading_tilt_from_image`` apply to (None: every image).
        contour_lights: optional ``(B, 3)`` lights read off each image's occluding contour
            (zero rows: none), used by stages with ``shading_contour_light``.
    Returns:
        ``(B * n, 3, P, P)`` predicted clean normals after the last step (not normalised).
    """
    h, w = image_size
    lr = float(stage.lr)
    image = from_patches(shading, h, w) if stage.shading_weight > 0 else None
    # the floor and the tilt act on the images of floor_images only (a 0 floor / zero axis is free)
    gate = None if floor_images is None else torch.as_tensor(floor_images, device=x.device).to(torch.float64)
    min_lateral = stage.shading_min_lateral
    if gate is not None and min_lateral > 0:
        min_lateral = min_lateral * gate
    tilt_axis = None
    if image is not None and stage.shading_tilt_from_image:
        tilt_axis = image_tilt_axis(image.float(), mask)  # (B, 2)
        if gate is not None:
            tilt_axis = tilt_axis * gate.to(tilt_axis.dtype)[:, None]
    fixed_light = contour_lights if image is not None and stage.shading_contour_light else None
    for i, t in enumerate(timesteps):
        t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else -1
        tt = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
        late = t <= stage.late_t
        iters = stage.inner_iters(t) if (t <= guidance_start_t and stage.lr > 0) else 0
        last_loss = None  # kept on the device: read back only for the callback, once per step
        for _ in range(iters):
            if late:
                lr /= stage.lr_decay  # cumulative within the stage: guidance fades out
            with torch.enable_grad():
                x = x.detach().requires_grad_(True)
                x0 = noise.predict_x0(x, model(x, tt, shading), t)
                img = from_patches(x0, h, w)
                loss = stage.seam_weight * seam_loss(img, mask)
                if image is not None:
                    loss = loss + stage.shading_weight * shading_loss(img, image, mask, min_lateral=min_lateral, tilt_axis=tilt_axis,
                                                                          light=fixed_light)
                if late:
                    loss = loss + stage.integrability_weight * integrability_loss(img, mask)
                (grad,) = torch.autograd.grad(loss.sum(), x)  # per-image losses: samples stay independent
            x = (x - lr * grad.clamp(-stage.grad_clip, stage.grad_clip)).detach()
            last_loss = loss.detach()
        with torch.no_grad():
            x = noise.ddim_step(x, model(x, tt, shading), t, t_prev).prev_sample
        if callback is not None:
            loss_value = None if last_loss is None else float(last_loss.mean())
            callback(StepInfo(i, t, t_prev, iters, lr, loss_value))
    return x
