"""Does a denoiser use its shading input? Patch-level numbers (``mssfs evaluate --diagnose``).

On the foreground patches (more than half foreground) of held-out objects (seeds >= 2**30,
never trained on), :func:`diagnose_denoiser` measures:

* the x0 error at noise level ``t``: mean angular error of the one-step prediction of x0
  from the true ``x_t``, with the patch's shading and with the shading zeroed; the gap is
  how much the model uses the shading at that noise level;
* plain DDIM from noise per patch (no guidance, :data:`DDIM_STEPS` steps): the angular error
  to the truth and the shading-fit residual (:func:`shading_fit_residual`), with the shading
  and with it zeroed;
* for scale, the flat map's error and residual and the truth's residual, and optionally a
  regression model's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..core.patches import PATCH, to_patches
from ..model.diffusion import NoiseSchedule
from .metrics import angular_error

__all__ = ["DDIM_STEPS", "NOISE_LEVELS", "Diagnosis", "diagnose_denoiser", "foreground_patches",
           "shading_fit_residual"]

#: Noise levels at which the one-step x0 prediction is scored.
NOISE_LEVELS = (50, 150, 200, 250, 280)
#: Steps of the unguided DDIM run from noise.
DDIM_STEPS = 50
#: Side of the held-out object images the patches are cut from.
IMAGE_SIZE = 64


def foreground_patches(n_images: int, size: int = IMAGE_SIZE) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``shading (N, 1, 16, 16)``, ``normals (N, 3, 16, 16)`` and ``mask (N, 1, 16, 16)`` of the
    patches more than half foreground of ``n_images`` held-out objects of ``size`` pixels."""
    from ..data.datasets import HeldoutImages

    ds = HeldoutImages(n_images, size=size, kind="objects")
    parts = []
    for i in range(n_images):
        it = ds[i]
        planes = [torch.as_tensor(np.asarray(it[k]), dtype=torch.float32).reshape(-1, size, size)
                  for k in ("image", "normals", "mask")]
        p = to_patches(torch.cat(planes)[None])
        parts.append(p[p[:, 4].flatten(1).mean(1) > 0.5])
    p = torch.cat(parts)
    return p[:, :1], p[:, 1:4], p[:, 4:5]


def _mean_error(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean angular error (degrees) of ``(N, 3, P, P)`` patches inside ``mask (N, 1, P, P)``."""
    def hwc(x):
        return x.permute(0, 2, 3, 1).double().numpy()

    return float(np.nanmean(angular_error(hwc(pred), hwc(gt), mask[:, 0].numpy() > 0)))


def shading_fit_residual(normals: torch.Tensor, shading: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean over patches of how badly one light explains each patch's shading.

    ``normals (N, 3, P, P)``, ``shading (N, 1, P, P)``, ``mask (N, 1, P, P)``. Per patch: the
    RMS residual of the least-squares fit ``shading ~ n . b`` (``b`` = albedo x light) over
    its lit foreground pixels, divided by the shading's standard deviation there; patches
    with fewer than 10 lit pixels or nearly constant shading are skipped. The truth scores
    0; maps that ignore the shading score about 1; a posterior sample explains its patch's
    shading under some light, bump or dent, so it scores well under 1.
    """
    out = []
    for n, s, m in zip(normals.double(), shading.double(), mask):
        N, S = n.reshape(3, -1).T, s.reshape(-1)
        lit = (m.reshape(-1) > 0) & (S > 1e-3)
        if lit.sum() < 10 or S[lit].std() < 1e-3:
            continue
        b = torch.linalg.lstsq(N[lit], S[lit, None]).solution
        out.append(float(((N[lit] @ b)[:, 0] - S[lit]).pow(2).mean().sqrt() / S[lit].std()))
    return float(np.mean(out)) if out else float("nan")


@torch.no_grad()
def _ddim_from_noise(model, sched: NoiseSchedule, shading: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Unguided DDIM per patch: ``shading (N, 1, P, P)`` -> unit normals ``(N, 3, P, P)``."""
    x = torch.randn(shading.shape[0], 3, PATCH, PATCH, generator=gen)
    grid = sched.ddim_grid(DDIM_STEPS)
    for k, t in enumerate(grid):
        t_prev = grid[k + 1] if k + 1 < len(grid) else -1
        eps = model(x, torch.full((x.shape[0],), t, dtype=torch.long), shading)
        x = sched.ddim_step(x, eps, t, t_prev).prev_sample
    return x / x.norm(dim=1, keepdim=True).clamp(min=1e-6)


@dataclass
class Diagnosis:
    """What :func:`diagnose_denoiser` measured. Errors in degrees, residuals as in
    :func:`shading_fit_residual`.

    ``x0_error``: ``{t: (with shading, shading zeroed)}``; ``ddim_error``,
    ``ddim_residual``, ``ddim_residual_zeroed``: the unguided DDIM samples; ``flat_*`` and
    ``truth_residual``: references; ``regression_*``: a regression model's, when given.
    """

    n_patches: int
    n_images: int
    flat_error: float
    flat_residual: float
    truth_residual: float
    x0_error: dict[int, tuple[float, float]] = field(default_factory=dict)
    ddim_error: float = float("nan")
    ddim_residual: float = float("nan")
    ddim_residual_zeroed: float = float("nan")
    regression_error: float | None = None
    regression_residual: float | None = None

    def report(self) -> str:
        """The numbers as printed text with a Markdown table of the x0 errors."""
        lines = [f"{self.n_patches} foreground patches of {self.n_images} held-out objects",
                 f"flat map: error {self.flat_error:.1f} deg, shading-fit residual {self.flat_residual:.2f}; "
                 f"truth: residual {self.truth_residual:.2f}",
                 "| t | x0 error, with shading | x0 error, shading zeroed |", "|---:|---:|---:|"]
        lines += [f"| {t} | {w:.1f} | {z:.1f} |" for t, (w, z) in self.x0_error.items()]
        lines.append(f"DDIM from noise: error {self.ddim_error:.1f} deg, shading-fit residual "
                     f"{self.ddim_residual:.2f} (shading zeroed: {self.ddim_residual_zeroed:.2f})")
        if self.regression_error is not None:
            lines.append(f"regression: error {self.regression_error:.1f} deg, shading-fit residual "
                         f"{self.regression_residual:.2f}")
        return "\n".join(lines)


@torch.no_grad()
def diagnose_denoiser(model, regression=None, n_images: int = 12, seed: int = 0) -> Diagnosis:
    """Patch-level diagnosis of the denoiser ``model`` (as :func:`mssfs.load_model` returns it,
    on the CPU) on ``n_images`` held-out objects; ``regression``: a regression model to
    score alongside. ``seed`` draws the noise; the patches do not depend on it."""
    if n_images < 1:
        raise ValueError(f"the number of images must be at least 1, got {n_images}")
    sched = NoiseSchedule(model.info["schedule"]["T"])
    shading, normals, mask = foreground_patches(n_images)
    gen = torch.Generator().manual_seed(seed)
    flat = torch.zeros_like(normals)
    flat[:, 2] = 1
    d = Diagnosis(shading.shape[0], n_images, _mean_error(flat, normals, mask),
                  shading_fit_residual(flat, shading, mask), shading_fit_residual(normals, shading, mask))
    zero = torch.zeros_like(shading)
    for t in NOISE_LEVELS:
        tt = torch.full((normals.shape[0],), t, dtype=torch.long)
        x_t = sched.add_noise(normals, torch.randn(normals.shape, generator=gen), tt)
        d.x0_error[t] = tuple(_mean_error(sched.predict_x0(x_t, model(x_t, tt, s), tt), normals, mask)
                              for s in (shading, zero))
    with_s = _ddim_from_noise(model, sched, shading, gen)
    zero_s = _ddim_from_noise(model, sched, zero, gen)
    d.ddim_error = _mean_error(with_s, normals, mask)
    d.ddim_residual = shading_fit_residual(with_s, shading, mask)
    d.ddim_residual_zeroed = shading_fit_residual(zero_s, shading, mask)
    if regression is not None:
        out = regression(torch.zeros_like(normals), torch.zeros(normals.shape[0], dtype=torch.long), shading)
        d.regression_error = _mean_error(out, normals, mask)
        d.regression_residual = shading_fit_residual(out, shading, mask)
    return d
