"""CUDA graphs of denoiser calls (mssfs.model.cudagraphs): refusals everywhere, equivalence on CUDA."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from mssfs.model.cudagraphs import GraphedCalls
from mssfs.model.diffusion import NoiseSchedule
from mssfs.model.unet import UNet, UNetConfig
from mssfs.sampler.api import sample
from mssfs.sampler.ddim import guided_ddim
from mssfs.sampler.denoiser import SlicedDenoiser
from mssfs.sampler.schedules import Stage

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")


def tiny_unet(device="cpu") -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = UNetConfig(base_width=8, mults=(1, 2), res_blocks=1, attn_heads=2, attn_head_dim=8, time_dim=32)
    return UNet(cfg).to(device).eval().requires_grad_(False)


def inputs(n, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 16, 16, generator=g)
    t = torch.randint(0, 300, (n,), generator=g)
    s = torch.rand(n, 1, 16, 16, generator=g)
    return x.to(device), t.to(device), s.to(device)


def test_graphs_refuse_what_they_cannot_do():
    net = tiny_unet()
    with pytest.raises(ValueError, match="chunk=None"):
        SlicedDenoiser(net, chunk=128, cuda_graphs=True)
    with pytest.raises(ValueError, match="frozen"):
        SlicedDenoiser(tiny_unet().requires_grad_(True), cuda_graphs=True)
    with pytest.raises(ValueError, match="CUDA tensors"):
        GraphedCalls(net)(*inputs(2, "cpu"))
    if not torch.cuda.is_available():
        class Exploding(torch.nn.Module):
            def forward(self, *a):
                raise AssertionError("the model must not run")

        with pytest.raises(ValueError, match="CUDA"):
            sample(np.linspace(0.1, 0.9, 32 * 32).reshape(32, 32), n=1, model=Exploding(), cuda_graphs=True)


def test_cli_refuses_graphs_without_cuda(tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "mssfs", "sample", "stimulus:star", "--out", str(out), "--cuda-graphs", "-q"]
    res = subprocess.run(cmd + ["--chunk-patches", "64"], capture_output=True, text=True, check=False)
    assert res.returncode == 2 and "--chunk-patches" in res.stderr
    if not torch.cuda.is_available():
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        assert res.returncode == 2 and "needs a CUDA device" in res.stderr
    assert not out.exists()


@CUDA
def test_graphed_calls_match_eager_values_and_gradients():
    net = tiny_unet("cuda")
    graphed = GraphedCalls(net)
    for n in (3, 7, 3):  # a second shape, then the first again (replayed, not recaptured)
        x, t, s = inputs(n, "cuda", seed=n)
        with torch.no_grad():
            torch.testing.assert_close(graphed(x, t, s), net(x, t, s), atol=1e-5, rtol=1e-4)
        w = torch.randn_like(x)
        xe, xg = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        (ge,) = torch.autograd.grad((net(xe, t, s) * w).sum(), xe)
        (gg,) = torch.autograd.grad((graphed(xg, t, s) * w).sum(), xg)
        torch.testing.assert_close(gg, ge, atol=1e-5, rtol=1e-4)
    assert graphed.captures == 4  # (3 patches, 7 patches) x (plain, differentiable)


@CUDA
def test_second_forward_before_backward_is_refused():
    graphed = GraphedCalls(tiny_unet("cuda"))
    x, t, s = inputs(4, "cuda")
    a = graphed(x.clone().requires_grad_(True), t, s)
    graphed(x.clone().requires_grad_(True), t, s)
    with pytest.raises(RuntimeError, match="overwritten"):
        a.sum().backward()


@CUDA
@pytest.mark.parametrize("bf16", [False, True])
def test_guided_ddim_with_graphs_matches_eager(bf16):
    # A replayed call matches its eager call to ~1e-5 (test above), not bit for bit (cuDNN may
    # pick other kernels under capture), and the guided loop amplifies a per-call difference:
    # on the CPU, adding noise of size 1e-5 to every call's output of this net moves the
    # result by up to 3.4e-4 at lr 0.1 and up to 1e-2 at lr 1 (0.9 at lr 10, the clamp and
    # large steps make the loop chaotic). So the loop is compared at lr 0.1, with 3x room;
    # a stale buffer or a wrong gradient moves it by orders of magnitude more.
    net = tiny_unet("cuda")
    noise = NoiseSchedule()
    stage = Stage(48, 0.1, inner_iters_high=2, inner_iters_low=1, late_t=100)
    x, _, s = inputs(2 * 9, "cuda", seed=5)
    outs, calls = [], []
    for graphs in (False, True):
        counter = SlicedDenoiser(net, bf16=bf16, cuda_graphs=graphs)
        outs.append(guided_ddim(counter, x.clone(), s, noise, [250, 150, 60, 20], stage, 299, (48, 48)))
        calls.append(counter.calls)
    assert calls[0] == calls[1] > 0
    tol = {"atol": 2e-2, "rtol": 0.0} if bf16 else {"atol": 1e-3, "rtol": 0.0}
    torch.testing.assert_close(outs[1], outs[0], **tol)
