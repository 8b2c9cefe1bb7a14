"""The patch U-Net: contract, size, conditioning, config round trip, regression helper."""

import json

import numpy as np
import pytest
import torch

from mssfs.model.regression import predict_regression
from mssfs.model.unet import (
    ChannelNorm,
    LinearAttention,
    UNet,
    UNetConfig,
    WSConv2d,
    count_parameters,
    flops_per_patch,
    linear_attention_reference,
    sinusoidal_embedding,
    upsample_nearest2x,
)

TINY = UNetConfig(base_width=8, mults=(1, 2), res_blocks=1, attn_heads=2, attn_head_dim=8, time_sin_dim=8, time_dim=16)


def _inputs(b, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, 3, 16, 16, generator=g), torch.randint(0, 300, (b,), generator=g),
            torch.rand(b, 1, 16, 16, generator=g))


def test_default_matches_published_size():
    model = UNet()
    n = count_parameters(model)
    assert abs(n - 2.57e6) / 2.57e6 < 0.01, n  # DESIGN §4: about 2.57 M parameters
    flops = flops_per_patch(model)
    assert abs(flops - 78.5e6) / 78.5e6 < 0.05, flops  # about 78.5 MFLOP per patch
    executed = flops_per_patch(model, direct=False)  # the re-associated linear attention
    assert executed < 0.95 * flops, executed
    assert all(m.reassociate for m in model.modules() if isinstance(m, LinearAttention))  # flags restored


def test_call_contract_shapes_and_dtype():
    torch.manual_seed(0)
    model = UNet(TINY)
    x, t, s = _inputs(5)
    eps = model(x, t, s)
    assert eps.shape == (5, 3, 16, 16) and eps.dtype == torch.float32
    assert torch.isfinite(eps).all()


def test_output_depends_on_t_and_shading_but_not_on_other_patches():
    torch.manual_seed(0)
    model = UNet(TINY).eval()
    x, t, s = _inputs(4)
    with torch.no_grad():
        base = model(x, t, s)
        assert not torch.allclose(model(x, (t + 100) % 300, s), base, atol=1e-4)
        assert not torch.allclose(model(x, t, 1 - s), base, atol=1e-4)
        alone = model(x[:1], t[:1], s[:1])
    torch.testing.assert_close(alone, base[:1], atol=1e-5, rtol=1e-4)


def test_weight_standardised_conv_ignores_kernel_scale():
    from mssfs.model.unet import WSConv2d

    conv = WSConv2d(4, 8, 3, padding=1, bias=False)
    x = torch.randn(2, 4, 8, 8)
    y = conv(x)
    with torch.no_grad():
        conv.weight.mul_(7.0).add_(0.3)  # standardisation removes per-filter scale and offset
    torch.testing.assert_close(conv(x), y, atol=1e-2, rtol=1e-2)  # up to the eps in the variance


def test_bf16_autocast_close_to_fp32():
    torch.manual_seed(0)
    model = UNet(TINY).eval()
    x, t, s = _inputs(3)
    with torch.no_grad():
        ref = model(x, t, s)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x, t, s)
    assert low.dtype == torch.bfloat16
    assert (low.float() - ref).abs().max() < 0.1 * ref.abs().max()


def test_config_json_round_trip_and_validation():
    cfg = UNetConfig(base_width=12, mults=(1, 3), groups=3)
    again = UNetConfig.from_dict(json.loads(cfg.to_json()))
    assert again == cfg and again.mults == (1, 3)
    with pytest.raises(ValueError, match="divisible"):
        UNetConfig(base_width=10, groups=4)
    with pytest.raises(ValueError, match="unknown"):
        UNetConfig.from_dict({"width": 3})
    with pytest.raises(ValueError, match="halved"):
        UNetConfig(mults=(1, 2, 2, 2, 2, 2))


def test_sinusoidal_embedding():
    e = sinusoidal_embedding(torch.arange(300), 16)
    assert e.shape == (300, 16)
    assert torch.allclose(e.norm(dim=1), torch.full((300,), 8**0.5), atol=1e-5)  # sin^2 + cos^2 per pair
    assert torch.cdist(e, e).add(torch.eye(300)).min() > 1e-3  # every timestep distinct


def test_predict_regression_pads_with_background_and_crops():
    torch.manual_seed(0)
    model = UNet(TINY).eval()
    rng = np.random.default_rng(0)
    img = rng.uniform(0.1, 1.0, (20, 24)).astype(np.float32)
    n = predict_regression(model, img)
    assert n.shape == (20, 24, 3) and n.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(n, axis=-1), 1.0, atol=1e-5)  # image > 0 everywhere
    padded = np.zeros((32, 32), np.float32)
    padded[:20, :24] = img
    np.testing.assert_allclose(predict_regression(model, padded)[:20, :24], n, atol=1e-5)
    with pytest.raises(ValueError, match="H, W"):
        predict_regression(model, img[None])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_upsample_nearest2x_equals_interpolate(dtype, channels_last):
    x = torch.randn(2, 3, 4, 5).to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = upsample_nearest2x(x)
    assert y.dtype == dtype and y.shape == (2, 3, 8, 10)
    assert torch.equal(y, torch.nn.functional.interpolate(x, scale_factor=2.0, mode="nearest"))


def test_upsample_nearest2x_gradient():
    x = torch.randn(1, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(upsample_nearest2x, (x,))
    upsample_nearest2x(x).sum().backward()
    assert torch.equal(x.grad, torch.full_like(x, 4.0))  # each input feeds a 2x2 block


def test_ws_conv_caches_only_frozen_weights_and_follows_in_place_updates():
    conv = WSConv2d(3, 4, 3, padding=1)
    x = torch.randn(2, 3, 5, 5)

    def direct(x):
        w, eps = conv.weight, (1e-5 if x.dtype == torch.float32 else 1e-3)
        w = (w - w.mean((1, 2, 3), keepdim=True)) * torch.rsqrt(w.var((1, 2, 3), keepdim=True, unbiased=False) + eps)
        return torch.nn.functional.conv2d(x, w, conv.bias, padding=1)

    conv(x).sum().backward()
    assert conv._ws_cache is None and conv.weight.grad is not None  # trainable: no cache, gradients flow
    conv.requires_grad_(False)
    torch.testing.assert_close(conv(x), direct(x))
    assert conv._ws_cache is not None
    with torch.no_grad():
        conv.weight.mul_(-2.0).add_(0.3)  # in place, as load_state_dict and EMA updates do
    torch.testing.assert_close(conv(x), direct(x))
    conv.load_state_dict(WSConv2d(3, 4, 3, padding=1).state_dict())
    torch.testing.assert_close(conv(x), direct(x))
    conv.double()  # new parameter tensors and dtype
    y = conv(x.double())
    assert y.dtype == torch.float64
    torch.testing.assert_close(y, direct(x.double()))


# (dim, heads, head_dim, side): the first three take the re-associated branch
# (positions >= 2 x channels), the last the direct one.
ATTN_SHAPES = [(16, 4, 32, 16), (8, 2, 8, 8), (16, 1, 4, 8), (32, 2, 8, 4)]


def _attention(dim, heads, head_dim, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    m = LinearAttention(dim, heads, head_dim).to(dtype)
    with torch.no_grad():  # move the norms' gains and the biases off their initial values
        for p in m.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return m


@pytest.mark.parametrize("dim,heads,head_dim,side", ATTN_SHAPES)
def test_linear_attention_reassociated_equals_direct_form(dim, heads, head_dim, side):
    m = _attention(dim, heads, head_dim)
    x = torch.randn(3, dim, side, side, dtype=torch.float64, requires_grad=True)
    y = m(x)
    ref = linear_attention_reference(m, x)
    torch.testing.assert_close(y, ref, rtol=1e-10, atol=1e-10)
    # Same gradients for the input and every parameter (training runs this form too).
    g = torch.randn_like(y)
    got = torch.autograd.grad(y, [x, *m.parameters()], g)
    want = torch.autograd.grad(ref, [x, *m.parameters()], g)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


def test_linear_attention_gradcheck_and_flag():
    m = _attention(8, 2, 4)
    x = torch.randn(2, 8, 4, 4, dtype=torch.float64, requires_grad=True)  # 16 positions >= 2 x 8 channels
    assert torch.autograd.gradcheck(m, (x,))
    m.reassociate = False
    torch.testing.assert_close(m(x), linear_attention_reference(m, x), rtol=0, atol=0)


def test_linear_attention_bf16_autocast_no_worse_than_direct_form():
    m = _attention(16, 4, 32, dtype=torch.float32).requires_grad_(False)
    x = torch.randn(16, 16, 16, 16)
    with torch.no_grad():
        exact = linear_attention_reference(m.double(), x.double()).float()
        m.float()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            ours, direct = m(x).float(), linear_attention_reference(m, x).float()
    err_ours, err_direct = (ours - exact).abs().max(), (direct - exact).abs().max()
    assert err_ours <= 1.5 * err_direct and err_ours < 0.1, (err_ours, err_direct)


def test_channel_norm_equals_normalize_form():
    m = ChannelNorm(6).double()
    with torch.no_grad():
        m.gain.copy_(torch.rand(1, 6, 1, 1) + 0.5)
    x = torch.randn(2, 6, 3, 4, dtype=torch.float64)
    x[0, :, 1, 2] = 0  # a zero vector stays zero
    want = torch.nn.functional.normalize(x, dim=1) * m.gain * 6**0.5
    torch.testing.assert_close(m(x), want, rtol=1e-12, atol=1e-12)
    assert torch.all(m(x)[0, :, 1, 2] == 0)
    xg = torch.randn(1, 6, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(m, (xg,))


def test_linear_attn_from_drops_the_attentions_below_that_level():
    full, cut = UNet(), UNet(UNetConfig(linear_attn_from=1))
    assert sum(isinstance(m, LinearAttention) for m in full.modules()) == 8
    attns = [n for n, m in cut.named_modules() if isinstance(m, LinearAttention)]
    assert len(attns) == 6 and not any(n.startswith(("down.0.", "up.3.")) for n in attns)  # up.3 is level 0
    assert count_parameters(full) - count_parameters(cut) == 2 * sum(
        p.numel() for p in full.down[0].attn.parameters())
    x, t, s = _inputs(3)
    assert cut(x, t, s).shape == (3, 3, 16, 16)
    assert flops_per_patch(cut) < 0.85 * flops_per_patch(full)
    assert UNetConfig.from_dict(UNetConfig(linear_attn_from=2).to_dict()).linear_attn_from == 2
    old = UNetConfig().to_dict()
    del old["linear_attn_from"]  # config.json files written before the field existed
    assert UNetConfig.from_dict(old) == UNetConfig()
    with pytest.raises(ValueError, match="linear_attn_from"):
        UNetConfig(linear_attn_from=5)
