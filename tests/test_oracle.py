import numpy as np
import pytest
import torch

from mssfs.analysis.layouts import generated_bump_dent_layout
from mssfs.core.patches import to_patches
from mssfs.evaluation.methods import method_schedule
from mssfs.evaluation.metrics import score_stimulus
from mssfs.model.diffusion import NoiseSchedule
from mssfs.model.oracle import TwoReadingOracle
from mssfs.sampler.api import sample


def sphere_normals(size=32):
    r, c = np.mgrid[0:size, 0:size].astype(float)
    x, y = (c - size / 2 + 0.5) / size, -(r - size / 2 + 0.5) / size
    n = np.stack([x, y, np.ones_like(x)], -1)
    return n / np.linalg.norm(n, axis=-1, keepdims=True)


@pytest.mark.parametrize("t", [40, 150, 280])
def test_oracle_is_the_posterior_mean_of_the_two_readings(t):
    """x0 from the oracle's eps equals the posterior mean computed from Gaussian log-likelihoods."""
    noise = NoiseSchedule()
    g_map = torch.from_numpy(sphere_normals()).double()
    oracle = TwoReadingOracle(g_map.numpy(), n_samples=2, weight_true=0.7).double()
    g = to_patches(g_map.permute(2, 0, 1)[None]).repeat(2, 1, 1, 1)
    f = g * torch.tensor([-1.0, -1.0, 1.0], dtype=torch.float64).reshape(1, 3, 1, 1)
    gen = torch.Generator().manual_seed(t)
    abar = noise.alphas_cumprod[t].double()
    x0 = torch.where(torch.rand(g.shape[0], 1, 1, 1, generator=gen, dtype=torch.float64) < 0.5, g, f)
    x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * torch.randn(g.shape, generator=gen, dtype=torch.float64)
    tt = torch.full((g.shape[0],), t)
    got = noise.predict_x0(x_t, oracle(x_t, tt, torch.zeros(g.shape[0], 1, 16, 16)), tt, clip=False)
    lik = torch.distributions.Normal(0.0, (1 - abar).sqrt())
    log_g = lik.log_prob(x_t - abar.sqrt() * g).sum(dim=(1, 2, 3)) + np.log(0.7)
    log_f = lik.log_prob(x_t - abar.sqrt() * f).sum(dim=(1, 2, 3)) + np.log(0.3)
    w = torch.softmax(torch.stack([log_g, log_f]), dim=0)[:, :, None, None, None]
    assert torch.allclose(got, w[0] * g + w[1] * f, atol=1e-9)


def test_oracle_gradient_and_refusals():
    oracle = TwoReadingOracle(sphere_normals(), n_samples=1).double()
    x = torch.randn(4, 3, 16, 16, dtype=torch.float64, requires_grad=True)
    t = torch.full((4,), 200)
    s = torch.zeros(4, 1, 16, 16, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: oracle(x, t, s), (x,))
    with pytest.raises(ValueError, match="chunk_patches=None"):
        oracle(torch.zeros(3, 3, 16, 16), torch.zeros(3, dtype=torch.long), torch.zeros(3, 1, 16, 16))
    with pytest.raises(ValueError, match="square"):
        TwoReadingOracle(np.zeros((32, 16, 3)), 1)
    with pytest.raises(ValueError, match="between 0 and 1"):
        TwoReadingOracle(sphere_normals(), 1, weight_true=1.0)


def _regions_only(size):
    """``fast`` at ``size`` with region flips (every stage run and the fused result) in
    place of the patch flips."""
    from dataclasses import replace

    base = method_schedule("no-lighting", "fast", finest=size)
    return replace(base, name="regions-only", final_region_flips=True,
                   stages=tuple(replace(s, region_flips=True) for s in base.stages))


def _patches_only(size):
    """``fast`` at ``size`` with the publication's patch flips only (no region flips)."""
    from dataclasses import replace

    base = method_schedule("fast", "fast", finest=size)
    return replace(base, name="patches-only", final_region_flips=False,
                   stages=tuple(replace(s, region_flips=False) for s in base.stages))


def test_lighting_consistency_makes_oracle_samples_consistent():
    """With an ideal bistable patch denoiser, the sampler's lighting step is what makes
    whole samples read one way (docs/results.md#the-sampler-with-an-ideal-denoiser):
    most samples consistent and both readings present with it, few without it.  Region
    flips alone (no patch flips) do the same, and so does ``fast``, which has both."""
    size, n = 96, 8
    schedules = {"fast": method_schedule("fast", "fast", finest=size),
                 "patches-only": _patches_only(size),
                 "no-lighting": method_schedule("no-lighting", "fast", finest=size),
                 "regions-only": _regions_only(size)}
    consistent = {k: [] for k in schedules}
    readings = {k: set() for k in schedules}
    for seed in range(4):
        lay = generated_bump_dent_layout(seed, size)
        for name, sched in schedules.items():
            res = sample(lay.image, n=n, seed=0, schedule=sched, model=TwoReadingOracle(lay.normals, n),
                         mask=lay.mask, chunk_patches=None, workers=1)
            sc = score_stimulus(res.normals, lay.mask, lay.regions, lay.layout)
            consistent[name].append(sc.consistent)
            readings[name].update(c for c in sc.classes if c is not None)
            if name == "regions-only":
                assert all(len(f) == len(sched.runs()) + 1 for f in res.region_flips)
                assert all(f == [] for f in res.flips)  # no patch flips
    for name in ("fast", "patches-only", "regions-only"):
        assert np.mean(consistent[name]) >= 0.7
        assert np.mean(consistent[name]) >= np.mean(consistent["no-lighting"]) + 0.3
        assert readings[name] == {0, 1}  # the true reading and its inversion both occur
