"""Does a denoiser use its shading input? Patch-level numbers for a weights export.

On foreground patches of held-out objects (seeds >= 2**30, never trained on) it reports:

* ``x0 error @ t``: mean angular error of the one-step prediction of x0 from the true
  ``x_t``, with the patch's shading and with the shading zeroed; the gap is how much the
  model uses the shading at that noise level;
* ``DDIM``: plain 50-step DDIM from noise per patch (no guidance): the angular error to the
  truth and the **shading-fit residual**: for each sample, the RMS residual of the best
  least-squares fit ``shading ~ n . b`` (``b`` = albedo x light, lit pixels), divided by
  the shading's standard deviation. The truth scores 0; samples that ignore the shading
  score about 1; a good posterior sample explains its own patch's shading under *some*
  light, whatever reading (bump or dent) it chose, so it should score well under 1;
* the regression baseline's error (optional) and the flat map's, for scale.

    python scripts/diagnose_denoiser.py src/mssfs/model/weights/default --regression src/mssfs/model/weights/regression
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import mssfs
from mssfs.core.patches import to_patches
from mssfs.data.datasets import HeldoutImages
from mssfs.evaluation.metrics import angular_error
from mssfs.model.diffusion import NoiseSchedule


def foreground_patches(n_images: int, size: int):
    """``shading (N,1,16,16)``, ``normals (N,3,16,16)``, ``mask (N,1,16,16)`` of patches > 50 % foreground."""
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


def mean_error(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean :func:`mssfs.evaluation.metrics.angular_error` (degrees) of ``(N,3,P,P)`` patches inside ``mask``."""
    def hwc(x):
        return x.permute(0, 2, 3, 1).double().numpy()

    return float(np.nanmean(angular_error(hwc(pred), hwc(gt), mask[:, 0].numpy() > 0)))


def shading_fit_residual(normals: torch.Tensor, shading: torch.Tensor, mask: torch.Tensor) -> float:
    out = []
    for n, s, m in zip(normals.double(), shading.double(), mask):
        N, S = n.reshape(3, -1).T, s.reshape(-1)
        lit = (m.reshape(-1) > 0) & (S > 1e-3)
        if lit.sum() < 10 or S[lit].std() < 1e-3:
            continue
        b = torch.linalg.lstsq(N[lit], S[lit, None]).solution
        out.append(float(((N[lit] @ b)[:, 0] - S[lit]).pow(2).mean().sqrt() / S[lit].std()))
    return float(np.mean(out))


@torch.no_grad()
def ddim_from_noise(model, sched: NoiseSchedule, shading: torch.Tensor, gen: torch.Generator, steps: int = 50):
    x = torch.randn(shading.shape[0], 3, 16, 16, generator=gen)
    grid = sched.ddim_grid(steps)
    for k, t in enumerate(grid):
        t_prev = grid[k + 1] if k + 1 < len(grid) else -1
        eps = model(x, torch.full((x.shape[0],), t, dtype=torch.long), shading)
        x = sched.ddim_step(x, eps, t, t_prev).prev_sample
    return x / x.norm(dim=1, keepdim=True).clamp(min=1e-6)


@torch.no_grad()
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("weights", help="an export folder (mssfs export), e.g. src/mssfs/model/weights/default")
    p.add_argument("--regression", help="a regression export to compare with")
    p.add_argument("--images", type=int, default=12, help="held-out object images (64 px)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    model = mssfs.load_model(args.weights)
    sched = NoiseSchedule(model.info["schedule"]["T"])
    shading, normals, mask = foreground_patches(args.images, 64)
    gen = torch.Generator().manual_seed(args.seed)
    flat = torch.zeros_like(normals)
    flat[:, 2] = 1
    print(f"{args.weights}: {shading.shape[0]} foreground patches of {args.images} held-out objects")
    print(f"flat map: error {mean_error(flat, normals, mask):.1f} deg, shading-fit residual "
          f"{shading_fit_residual(flat, shading, mask):.2f}; truth: residual {shading_fit_residual(normals, shading, mask):.2f}")
    print("| t | x0 error, with shading | x0 error, shading zeroed |\n|---:|---:|---:|")
    for t in (50, 150, 200, 250, 280):
        tt = torch.full((normals.shape[0],), t, dtype=torch.long)
        x_t = sched.add_noise(normals, torch.randn(normals.shape, generator=gen), tt)
        e_with = mean_error(sched.predict_x0(x_t, model(x_t, tt, shading), tt), normals, mask)
        e_zero = mean_error(sched.predict_x0(x_t, model(x_t, tt, torch.zeros_like(shading)), tt), normals, mask)
        print(f"| {t} | {e_with:.1f} | {e_zero:.1f} |")
    with_s = ddim_from_noise(model, sched, shading, gen)
    zero_s = ddim_from_noise(model, sched, torch.zeros_like(shading), gen)
    print(f"DDIM from noise: error {mean_error(with_s, normals, mask):.1f} deg, shading-fit residual "
          f"{shading_fit_residual(with_s, shading, mask):.2f} (shading zeroed: {shading_fit_residual(zero_s, shading, mask):.2f})")
    if args.regression:
        reg = mssfs.load_model(args.regression)
        out = reg(torch.zeros_like(normals), torch.zeros(normals.shape[0], dtype=torch.long), shading)
        print(f"regression: error {mean_error(out, normals, mask):.1f} deg, shading-fit residual "
              f"{shading_fit_residual(out, shading, mask):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
