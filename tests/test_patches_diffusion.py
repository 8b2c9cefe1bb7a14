import itertools

import numpy as np
import pytest
import torch

from mssfs.core.patches import from_patches, to_patches
from mssfs.model.diffusion import NoiseSchedule, cosine_betas


def test_patch_round_trip_and_order():
    x = torch.arange(2 * 3 * 32 * 48, dtype=torch.float32).reshape(2, 3, 32, 48)
    p = to_patches(x)
    assert p.shape == (2 * 2 * 3, 3, 16, 16)
    # Patch index b*6 + row*3 + col holds that block of image b.
    assert torch.equal(p[1 * 6 + 1 * 3 + 2], x[1, :, 16:32, 32:48])
    assert torch.equal(from_patches(p, 32, 48), x)
    with pytest.raises(ValueError, match="multiple"):
        to_patches(torch.zeros(1, 1, 20, 32))
    with pytest.raises(ValueError, match="tile"):
        from_patches(p, 32, 64)


def test_cosine_betas_match_design():
    b = cosine_betas()
    assert b.shape == (300,)
    assert b.min() >= 1e-4 and b.max() <= 0.9999
    # Unclipped middle of the schedule follows 1 - abar(t+1)/abar(t) exactly.
    f = lambda t: np.cos((t / 300 + 0.008) / 1.008 * np.pi / 2) ** 2
    for t in (50, 150, 250):
        assert b[t] == pytest.approx(1 - f(t + 1) / f(t), rel=1e-12)
    assert b[0] == pytest.approx(max(1e-4, 1 - f(1) / f(0)))


def test_diffusers_scheduler_uses_same_betas_and_noising():
    pytest.importorskip("diffusers")  # a test-only cross-check (the test extra)
    s = NoiseSchedule()
    ddpm = s.diffusers_ddpm()
    assert np.allclose(ddpm.betas.numpy(), s.betas.numpy(), rtol=1e-6)
    x0 = torch.randn(4, 3, 16, 16)
    noise = torch.randn_like(x0)
    t = torch.tensor([0, 100, 232, 299])
    assert torch.allclose(ddpm.add_noise(x0, noise, t), s.add_noise(x0, noise, t), atol=1e-5)


def test_ddim_grid():
    g = NoiseSchedule().ddim_grid(50)
    assert len(g) == 50 and g[0] == 299 and g[-1] == 0
    assert all(a > b for a, b in itertools.pairwise(g))


def test_ddim_step_matches_diffusers_on_uniform_grid():
    DDIMScheduler = pytest.importorskip("diffusers").DDIMScheduler  # test-only cross-check

    s = NoiseSchedule()
    sched = DDIMScheduler(num_train_timesteps=300, trained_betas=s.betas.numpy(), clip_sample=False, set_alpha_to_one=True)
    sched.set_timesteps(50)  # "leading" spacing: t = 294, 288, ..., 0 with step 6
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    eps = torch.randn_like(x)
    for t in sched.timesteps[:3].tolist() + [6]:
        ref = sched.step(eps, t, x, eta=0.0)
        ours = s.ddim_step(x, eps, t, t - 6, clip=False)
        assert torch.allclose(ours.prev_sample, ref.prev_sample.to(x.dtype), atol=1e-5)
        assert torch.allclose(ours.pred_original_sample, ref.pred_original_sample.to(x.dtype), atol=1e-5)


def test_ddim_step_recovers_x0_with_true_noise():
    s = NoiseSchedule()
    x0 = torch.rand(2, 3, 16, 16) * 1.8 - 0.9
    eps = torch.randn_like(x0)
    xt = s.add_noise(x0, eps, 200)
    out = s.ddim_step(xt, eps, 200, -1)
    assert torch.allclose(out.prev_sample, x0, atol=1e-4)


def test_clipped_ddim_step_rederives_noise():
    """With clipping, the step uses the noise consistent with the clipped x0 (as the
    publication's sampler does), so x_prev lies on the line between x0 and x_t."""
    s = NoiseSchedule()
    x = torch.randn(1, 3, 16, 16, dtype=torch.float64) * 3
    eps = torch.randn_like(x)
    out = s.ddim_step(x, eps, 150, 100)
    assert out.pred_original_sample.abs().max() <= 1
    a, ap = s.alphas_cumprod[150], s.alphas_cumprod[100]
    eps_used = (x - a.sqrt() * out.pred_original_sample) / (1 - a).sqrt()
    assert torch.allclose(out.prev_sample, ap.sqrt() * out.pred_original_sample + (1 - ap).sqrt() * eps_used)
