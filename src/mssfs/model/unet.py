"""The patch denoiser: a small conditional U-Net on 16 x 16 patches (docs/method.md#network).

``eps = model(x_t, t, shading)``

* ``x_t``: noisy normals ``(B, 3, P, P)``;
* ``t``: int64 timesteps ``(B,)`` in ``[0, T-1]``;
* ``shading``: the image patch ``(B, 1, P, P)`` in ``[0, 1]``;
* returns the predicted noise ``(B, 3, P, P)``, whatever the head was trained to predict
  (:attr:`UNetConfig.prediction`); ``model(x_t, t, shading, raw=True)`` returns the head's
  own output.

The network sees ``concat(shading, x_t)`` (4 channels).  The default
:class:`UNetConfig` is the published one (base width 16, multipliers ``(1, 2, 4, 8)``,
two weight-standardised residual blocks and a linear-attention residual per level,
space-to-depth downsampling, full attention in the middle): 2.57 M parameters and
78.5 MFLOP per patch forward (FLOPs = 2 x multiply-accumulates of the convolutions,
linear layers and attention matmuls, as counted by ``torch.utils.flop_counter``).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .diffusion import PREDICTIONS, NoiseSchedule, check_prediction, eps_from_prediction

__all__ = ["UNet", "UNetConfig", "count_parameters", "flops_per_patch", "linear_attention_reference", "sinusoidal_embedding"]


@dataclass
class UNetConfig:
    """Shape of the U-Net; JSON-serialisable with :meth:`to_dict` / :meth:`from_dict`.

    Attributes:
        base_width: channels of the first level.
        mults: width multiplier per level; level ``i`` has ``base_width * mults[i]``
            channels and runs at resolution ``P / 2**i``.
        res_blocks: residual blocks per level (down path; the up path mirrors it).
        groups: GroupNorm groups (every width must be divisible by it).
        time_sin_dim: size of the sinusoidal timestep encoding.
        time_dim: size of the time embedding after the MLP.
        attn_heads, attn_head_dim: heads and per-head width of both attention kinds.
        linear_attn_from: first level with a linear-attention residual (down and up
            path); the levels below it have none.  0 (every level) is the published
            network; 1 drops the two attentions at full patch resolution, a third of a
            CPU guidance iteration (docs/sampling.md), and needs training of its own.
        init_kernel: kernel size of the stem convolution.
        shading_channels, normal_channels: input channels (``concat(shading, x_t)``).
        patch: patch size the network is built for (must be divisible by
            ``2 ** (len(mults) - 1)``).
        prediction: what the head is trained to predict, one of ``"eps"`` (the noise: the
            published network and the default), ``"v"`` (``sqrt(abar) eps - sqrt(1 - abar)
            x0``) or ``"x0"`` (the normals).  :meth:`UNet.forward` returns the noise for
            every kind; the weights' format does not change.
        timesteps: ``T`` of the cosine schedule, used only to convert a ``"v"`` or ``"x0"``
            output to the noise (training sets it to the run's ``timesteps``).
    """

    base_width: int = 16
    mults: tuple[int, ...] = (1, 2, 4, 8)
    res_blocks: int = 2
    groups: int = 4
    time_sin_dim: int = 16
    time_dim: int = 128
    attn_heads: int = 4
    attn_head_dim: int = 32
    linear_attn_from: int = 0
    init_kernel: int = 7
    shading_channels: int = 1
    normal_channels: int = 3
    patch: int = 16
    prediction: str = "eps"
    timesteps: int = 300

    def __post_init__(self):
        self.mults = tuple(int(m) for m in self.mults)
        check_prediction(self.prediction)
        if isinstance(self.timesteps, bool) or not isinstance(self.timesteps, int) or self.timesteps < 2:
            raise ValueError(f"timesteps must be an integer >= 2, got {self.timesteps!r}")
        for w in self.widths():
            if w % self.groups:
                raise ValueError(f"width {w} is not divisible by groups={self.groups}")
        if self.patch % (2 ** (len(self.mults) - 1)):
            raise ValueError(f"patch {self.patch} cannot be halved {len(self.mults) - 1} times")
        if self.time_sin_dim % 2:
            raise ValueError("time_sin_dim must be even")
        if not 0 <= self.linear_attn_from <= len(self.mults):
            raise ValueError(f"linear_attn_from must be in [0, {len(self.mults)}], got {self.linear_attn_from}")

    def widths(self) -> list[int]:
        return [self.base_width * m for m in self.mults]

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["mults"] = list(self.mults)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> UNetConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


#: One-line help per :class:`UNetConfig` field (``mssfs train --help``).
FIELD_HELP = {
    "base_width": "channels of the first U-Net level",
    "mults": "width multiplier per level, comma-separated",
    "res_blocks": "residual blocks per level",
    "groups": "GroupNorm groups",
    "time_sin_dim": "size of the sinusoidal timestep encoding",
    "time_dim": "size of the time embedding after its MLP",
    "attn_heads": "attention heads (linear and full attention)",
    "attn_head_dim": "width per attention head",
    "linear_attn_from": "first level with linear attention (0: every level, as published; 1: none at full patch resolution)",
    "init_kernel": "kernel size of the stem convolution",
    "shading_channels": "input shading channels",
    "normal_channels": "normal channels (input x_t and output)",
    "patch": "patch size",
    "prediction": f"what the head is trained to predict: {', '.join(PREDICTIONS)} (the model still returns the noise)",
    "timesteps": "T of the schedule, for converting a v or x0 output (set from the run's timesteps)",
}


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """``(B,)`` timesteps -> ``(B, dim)`` as ``[sin(t w_k), cos(t w_k)]``, ``w_k`` geometric."""
    half = dim // 2
    k = torch.arange(half, device=t.device, dtype=torch.float32)
    freqs = torch.exp(-math.log(max_period) * k / max(half - 1, 1))
    args = t.float()[:, None] * freqs[None, :]
    return torch.cat([args.sin(), args.cos()], dim=-1)


class WSConv2d(nn.Conv2d):
    """Conv2d whose kernel is standardised per output channel (zero mean, unit variance)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.standardized_weight(), self.bias, self.stride, self.padding, self.dilation, self.groups)

    def standardized_weight(self) -> torch.Tensor:
        """The standardised kernel; computed once and reused while the weight is frozen.

        At inference (``requires_grad`` off, e.g. after ``model.requires_grad_(False)``) the
        kernel only changes when the weight is modified in place, which bumps its version
        counter; the cache is keyed on that, on the storage and on the dtype.
        """
        w = self.weight
        frozen = not w.requires_grad and not torch.is_inference(w)  # inference tensors have no version
        key = (w._version, w.data_ptr(), w.dtype, w.device) if frozen else None
        cache = getattr(self, "_ws_cache", None)
        if frozen and cache is not None and cache[0] == key:
            return cache[1]
        out = standardize_kernel(w)
        self._ws_cache = (key, out) if frozen else None
        return out


def standardize_kernel(w: torch.Tensor) -> torch.Tensor:
    """Per output channel zero mean and unit variance of a ``(O, I, kh, kw)`` kernel
    (eps 1e-5 in float32, 1e-3 in lower precision)."""
    eps = 1e-5 if w.dtype == torch.float32 else 1e-3
    mean = w.mean(dim=(1, 2, 3), keepdim=True)
    var = w.var(dim=(1, 2, 3), keepdim=True, unbiased=False)
    return (w - mean) * torch.rsqrt(var + eps)


class ConvNormAct(nn.Module):
    """WS-conv 3x3 -> GroupNorm -> optional ``(1 + scale), shift`` -> SiLU."""

    def __init__(self, cin: int, cout: int, groups: int):
        super().__init__()
        self.conv = WSConv2d(cin, cout, 3, padding=1)
        self.norm = nn.GroupNorm(groups, cout)

    def forward(self, x, scale_shift=None):
        x = self.norm(self.conv(x))
        if scale_shift is not None:
            scale, shift = scale_shift
            x = x * (scale + 1) + shift
        return F.silu(x)


class ResBlock(nn.Module):
    """Two :class:`ConvNormAct` with the time embedding as scale/shift of the first."""

    def __init__(self, cin: int, cout: int, time_dim: int, groups: int):
        super().__init__()
        self.time = nn.Linear(time_dim, 2 * cout)
        self.block1 = ConvNormAct(cin, cout, groups)
        self.block2 = ConvNormAct(cout, cout, groups)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.time(F.silu(temb))[:, :, None, None].chunk(2, dim=1)
        h = self.block1(x, (scale, shift))
        return self.block2(h) + self.skip(x)


class ChannelNorm(nn.Module):
    """Layer norm over channels of a ``(B, C, H, W)`` map, with a learned gain."""

    def __init__(self, dim: int):
        super().__init__()
        self.gain = nn.Parameter(torch.ones(1, dim, 1, 1))

    def forward(self, x):
        # = F.normalize(x, dim=1) * gain * sqrt(C) (eps 1e-12 on the norm), in fewer passes
        sum_sq = (x * x).sum(1, keepdim=True)
        return x * sum_sq.clamp_min(1e-24).rsqrt() * (self.gain * math.sqrt(x.shape[1]))


class LinearAttention(nn.Module):
    """Residual linear attention (softmax over keys' positions and queries' channels).

    For each head ``h`` with queries, keys and values ``q_h, k_h, v_h = W_h xn`` (``d x n``,
    ``xn`` the channel-normalised input, ``n`` positions), the output before the final
    norm is ``W_out [C_1^T q'_1; ...; C_H^T q'_H] + b_out`` with ``q' = softmax_d(q) *
    d**-0.5`` and the context ``C_h = softmax_n(k_h) v_h^T``.  :meth:`forward` computes
    exactly this, but with the products re-associated so that the values and the
    ``heads * d``-channel attention output are never materialised (see
    :func:`linear_attention_reference` for the direct form)::

        C_h = (softmax_n(k_h) xn^T) Wv_h^T          # d x c, then d x d
        out = sum_h (W_out,h C_h^T) q'_h            # c x d matrices times q'

    Same parameters and the same function up to rounding (closer to float64 than the
    direct form under bf16 autocast); each product is a batched matrix product per patch,
    so a patch's rounding does not depend on the batch.  Used on CPUs where the positions
    are at least twice the channels (levels 0 and 1 of the published network): there a
    bf16 guidance iteration of the level-0 attention runs about 2x faster and the whole
    U-Net's about 1.4x (docs/benchmarks.md#per-denoiser-call-on-the-cpu).  Elsewhere,
    and with ``reassociate = False``, the direct form runs.
    """

    def __init__(self, dim: int, heads: int, head_dim: int):
        super().__init__()
        self.heads, self.scale = heads, head_dim**-0.5
        inner = heads * head_dim
        self.norm = ChannelNorm(dim)
        self.qkv = nn.Conv2d(dim, 3 * inner, 1, bias=False)
        self.out = nn.Sequential(nn.Conv2d(inner, dim, 1), ChannelNorm(dim))
        #: False: always compute the direct form (:func:`linear_attention_reference`).
        self.reassociate = True

    def forward(self, x):
        b, c, h, w = x.shape
        # The direct form where it does less work (few positions) and off the CPU (the
        # re-associated form launches more kernels; not measured on a GPU yet).
        if not self.reassociate or h * w < 2 * c or x.device.type != "cpu":
            return linear_attention_reference(self, x)
        heads = self.heads
        w_q, w_k, w_v = self.qkv.weight.flatten(1).chunk(3)  # (heads * d, c) each
        d = w_q.shape[0] // heads
        xn = self.norm(x).flatten(2)  # (b, c, n)
        xt = xn.transpose(1, 2)  # (b, n, c)
        # Each softmax runs over the last, contiguous dimension (queries as (b, n, heads, d),
        # keys as (b, heads, d, n)); batched products, one small matrix product per patch,
        # keep each patch's rounding independent of the batch size.
        q = torch.bmm(xt, w_q.t().expand(b, -1, -1)).unflatten(-1, (heads, d)).softmax(dim=-1)
        k = torch.bmm(w_k.expand(b, -1, -1), xn).unflatten(1, (heads, d)).softmax(dim=-1)
        kx = torch.matmul(k, xt.unsqueeze(1))  # (b, heads, d, c)
        context = torch.matmul(kx, w_v.view(heads, d, c).transpose(-1, -2))  # (b, heads, d, d)
        w_out = self.out[0].weight.flatten(1).view(-1, heads, d).transpose(0, 1)  # (heads, dim, d)
        mix = torch.matmul(context, w_out.transpose(-1, -2)) * self.scale  # (b, heads, d, dim)
        y = torch.matmul(q.flatten(2), mix.flatten(1, 2)) + self.out[0].bias  # (b, n, dim)
        return x + self.out[1](y.transpose(1, 2).reshape(b, -1, h, w))


def linear_attention_reference(attn: LinearAttention, x: torch.Tensor) -> torch.Tensor:
    """The direct form of :class:`LinearAttention` (values and attention output
    materialised, as the publication computes it): what its forward runs where the
    re-association does not pay, and the reference in tests and benchmarks."""
    b, _, h, w = x.shape
    q, k, v = attn.qkv(attn.norm(x)).reshape(b, 3, attn.heads, -1, h * w).unbind(1)  # (b, heads, d, n)
    q = q.softmax(dim=-2) * attn.scale
    k = k.softmax(dim=-1)
    context = torch.einsum("bhdn,bhen->bhde", k, v)
    out = torch.einsum("bhde,bhdn->bhen", context, q).reshape(b, -1, h, w)
    return x + attn.out(out)


class Attention(nn.Module):
    """Residual full softmax self-attention over the spatial positions."""

    def __init__(self, dim: int, heads: int, head_dim: int):
        super().__init__()
        self.heads = heads
        inner = heads * head_dim
        self.norm = ChannelNorm(dim)
        self.qkv = nn.Conv2d(dim, 3 * inner, 1, bias=False)
        self.out = nn.Conv2d(inner, dim, 1)

    def forward(self, x):
        b, _, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, -1, h * w).transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q, k, v)  # (b, heads, n, d)
        return x + self.out(out.transpose(-1, -2).reshape(b, -1, h, w))


class Downsample(nn.Module):
    """Space-to-depth by 2 then a 1x1 conv: ``(B, C, H, W) -> (B, cout, H/2, W/2)``."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.proj = nn.Conv2d(4 * cin, cout, 1)

    def forward(self, x):
        return self.proj(F.pixel_unshuffle(x, 2))


class Upsample(nn.Module):
    """Nearest-neighbour upsampling by 2 then a 3x3 conv."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.proj = nn.Conv2d(cin, cout, 3, padding=1)

    def forward(self, x):
        return self.proj(upsample_nearest2x(x))


def upsample_nearest2x(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W) -> (B, C, 2H, 2W)``, each pixel repeated 2x2 (= nearest interpolation).

    The same values as ``F.interpolate(x, scale_factor=2, mode="nearest")``; its backward
    adds the four gradients of each 2x2 block elementwise, in a fixed order, instead of
    the scatter kernel that took 11 % of a bf16 training step on an H200
    (docs/benchmarks.md#training-throughput). Elementwise adds also keep the result of
    one sample independent of what else is in the batch.
    """
    return _UpsampleNearest2x.apply(x)


class _UpsampleNearest2x(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        b, c, h, w = x.shape
        return x[:, :, :, None, :, None].expand(b, c, h, 2, w, 2).reshape(b, c, 2 * h, 2 * w)

    @staticmethod
    def backward(ctx, grad):
        b, c, h2, w2 = grad.shape
        g = grad.reshape(b, c, h2 // 2, 2, w2 // 2, 2)
        return ((g[:, :, :, 0, :, 0] + g[:, :, :, 0, :, 1]) + g[:, :, :, 1, :, 0]) + g[:, :, :, 1, :, 1]


class _Level(nn.Module):
    """One U-Net level: residual blocks, a linear-attention residual (or identity), a resampler."""

    def __init__(self, blocks: list[ResBlock], attn: nn.Module, resample: nn.Module):
        super().__init__()
        self.blocks, self.attn, self.resample = nn.ModuleList(blocks), attn, resample


class UNet(nn.Module):
    """Conditional U-Net denoiser; see the module docstring for the call signature."""

    def __init__(self, config: UNetConfig | None = None):
        super().__init__()
        self.config = cfg = config or UNetConfig()
        widths = cfg.widths()
        c0, td, g = cfg.base_width, cfg.time_dim, cfg.groups
        heads, hd = cfg.attn_heads, cfg.attn_head_dim
        cin = cfg.shading_channels + cfg.normal_channels
        self.stem = nn.Conv2d(cin, c0, cfg.init_kernel, padding=cfg.init_kernel // 2)
        self.time_mlp = nn.Sequential(
            nn.Linear(cfg.time_sin_dim, td), nn.GELU(), nn.Linear(td, td)
        )
        # Level i runs at width w_in = widths[i-1] (c0 for i = 0) and hands w_out = widths[i]
        # to the next level; the last level changes width with a 3x3 conv instead of halving.
        ins = [c0] + widths[:-1]
        n = len(widths)
        self.down = nn.ModuleList()
        for i, (a, b) in enumerate(zip(ins, widths)):
            last = i == n - 1
            self.down.append(
                _Level(
                    [ResBlock(a, a, td, g) for _ in range(cfg.res_blocks)],
                    LinearAttention(a, heads, hd) if i >= cfg.linear_attn_from else nn.Identity(),
                    nn.Conv2d(a, b, 3, padding=1) if last else Downsample(a, b),
                )
            )
        mid = widths[-1]
        self.mid1 = ResBlock(mid, mid, td, g)
        self.mid_attn = Attention(mid, heads, hd)
        self.mid2 = ResBlock(mid, mid, td, g)
        self.up = nn.ModuleList()
        for i, (a, b) in reversed(list(enumerate(zip(ins, widths)))):
            first = i == 0
            self.up.append(
                _Level(
                    [ResBlock(b + a, b, td, g) for _ in range(cfg.res_blocks)],
                    LinearAttention(b, heads, hd) if i >= cfg.linear_attn_from else nn.Identity(),
                    nn.Conv2d(b, a, 3, padding=1) if first else Upsample(b, a),
                )
            )
        self.final = ResBlock(2 * c0, c0, td, g)
        self.head = nn.Conv2d(c0, cfg.normal_channels, 1)
        if cfg.prediction != "eps":  # (2, T) float32: sqrt(abar_t), sqrt(1 - abar_t); not saved
            a = NoiseSchedule(cfg.timesteps).alphas_cumprod
            self.register_buffer("roots", torch.stack([a.sqrt(), (1 - a).sqrt()]).float(), persistent=False)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, shading: torch.Tensor, *, raw: bool = False) -> torch.Tensor:
        """``(B,3,P,P), (B,), (B,1,P,P) -> (B,3,P,P)`` predicted noise (or normals for regression).

        ``raw=True``: the head's own output (of kind ``config.prediction``; what the
        training loss compares).  A ``"v"`` or ``"x0"`` head's output is converted to the
        noise in float32 (:func:`mssfs.model.diffusion.eps_from_prediction`).
        """
        out = self._head_output(x_t, t, shading)
        if raw or self.config.prediction == "eps":
            return out
        a, b = self.roots[:, t].float().reshape(2, -1, 1, 1, 1)
        return eps_from_prediction(self.config.prediction, x_t.float(), out.float(), a, b)

    def _head_output(self, x_t: torch.Tensor, t: torch.Tensor, shading: torch.Tensor) -> torch.Tensor:
        x = self.stem(torch.cat([shading, x_t], dim=1).to(self.stem.weight.dtype))
        temb = self.time_mlp(sinusoidal_embedding(t, self.config.time_sin_dim).to(x.dtype))
        first = x
        skips = []
        for level in self.down:
            for block in level.blocks:
                x = block(x, temb)
                skips.append(x)
            x = level.resample(level.attn(x))
        x = self.mid2(self.mid_attn(self.mid1(x, temb)), temb)
        for level in self.up:
            for block in level.blocks:
                x = block(torch.cat([x, skips.pop()], dim=1), temb)
            x = level.resample(level.attn(x))
        x = self.final(torch.cat([x, first], dim=1), temb)
        return self.head(x)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@torch.no_grad()
def flops_per_patch(model: nn.Module, batch: int = 4, direct: bool = True) -> float:
    """Forward FLOPs per 16x16 patch, counted as 2 x multiply-accumulates.

    Measured with :class:`torch.utils.flop_counter.FlopCounterMode` (convolutions, linear
    layers, matmuls and attention); normalisations and pointwise ops are not counted.
    ``direct=True`` counts the linear attention in its direct form, as the publication
    computes it (the architecture's nominal cost, docs/method.md#network: 78.5 MFLOP for the
    published configuration); ``direct=False`` counts what :meth:`UNet.forward` executes
    (fewer FLOPs: see :class:`LinearAttention`).
    """
    from torch.utils.flop_counter import FlopCounterMode

    cfg = model.config
    p = next(model.parameters())
    x = torch.zeros(batch, cfg.normal_channels, cfg.patch, cfg.patch, device=p.device)
    s = torch.zeros(batch, cfg.shading_channels, cfg.patch, cfg.patch, device=p.device)
    t = torch.zeros(batch, dtype=torch.long, device=p.device)
    attns = [m for m in model.modules() if isinstance(m, LinearAttention)]
    saved = [m.reassociate for m in attns]
    counter = FlopCounterMode(display=False)
    try:
        for m in attns:
            m.reassociate = m.reassociate and not direct
        with counter:
            model(x, t, s)
    finally:
        for m, r in zip(attns, saved):
            m.reassociate = r
    return counter.get_total_flops() / batch
