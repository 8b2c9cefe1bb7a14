"""CUDA graphs of denoiser calls: one capture per input shape, replayed at every step.

On a GPU the U-Net of a sampling step is launch-bound (thousands of small kernels per
call; docs/sampling.md), so replaying a captured graph instead of launching each kernel
from Python should cut the per-call time.  :class:`GraphedCalls` wraps ``fn(x_t, t,
shading) -> eps`` and keeps, per ``(shape, dtype, device, grad)``, a captured forward and,
for calls that need ``d eps / d x_t`` (guidance), a captured backward (the vector-Jacobian
product with respect to ``x_t`` only).

Rules (checked where they can be):

* ``fn`` must not depend on anything but its three tensor arguments and must not sync
  with the host; parameters must be frozen (``requires_grad`` off): the graphs do not
  produce parameter gradients.
* Each captured shape keeps its own memory (activations saved for the backward included)
  until :meth:`GraphedCalls.clear`.
* A differentiable call's backward must run before the next differentiable call of the
  same shape (as in guidance: forward, loss, gradient); otherwise it raises.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["GraphedCalls", "warm_up"]


@dataclass
class _Entry:
    """Static buffers and graphs of one captured shape."""

    x: torch.Tensor
    t: torch.Tensor
    shading: torch.Tensor
    out: torch.Tensor
    forward: torch.cuda.CUDAGraph
    grad_out: torch.Tensor | None = None
    grad_in: torch.Tensor | None = None
    backward: torch.cuda.CUDAGraph | None = None
    pending: object = None  # token of the forward whose backward is still due

    def load(self, x: torch.Tensor, t: torch.Tensor, shading: torch.Tensor) -> None:
        self.x.detach().copy_(x)
        self.t.copy_(t)
        self.shading.copy_(shading)


class GraphedCalls:
    """``eps = calls(x_t, t, shading)``: ``fn`` replayed from CUDA graphs, captured lazily.

    Args:
        fn: ``eps = fn(x_t (B,3,P,P), t (B,) int64, shading (B,1,P,P))`` on a CUDA device.
        warmup: eager runs on the capture stream before each capture (kernel selection,
            allocator, library handles).
    """

    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor], warmup: int = 2):
        self.fn = fn
        self.warmup = warmup
        self.entries: dict[tuple, _Entry] = {}
        self.captures = 0

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, shading: torch.Tensor) -> torch.Tensor:
        if x_t.device.type != "cuda":
            raise ValueError(f"CUDA graphs need CUDA tensors, got x_t on {x_t.device}")
        if shading.requires_grad:
            raise ValueError("CUDA graphs give gradients for x_t only; the shading must not require grad")
        grad = torch.is_grad_enabled() and x_t.requires_grad
        key = (tuple(x_t.shape), tuple(shading.shape), x_t.dtype, shading.dtype, t.dtype, x_t.device, grad)
        entry = self.entries.get(key)
        if entry is None:
            entry = self.entries[key] = self._capture(x_t, t, shading, grad)
        if grad:
            return _Replay.apply(x_t, t, shading, entry)
        entry.load(x_t, t, shading)
        entry.forward.replay()
        return entry.out.clone()

    def clear(self) -> None:
        """Drop every graph and its memory."""
        self.entries.clear()

    def _capture(self, x_t, t, shading, grad: bool) -> _Entry:
        dev = x_t.device
        static_x = x_t.detach().clone().requires_grad_(grad)
        static_t, static_s = t.detach().clone(), shading.detach().clone()

        def run():
            with torch.set_grad_enabled(grad):
                out = self.fn(static_x, static_t, static_s)
                if grad:
                    torch.autograd.grad(out, static_x, torch.ones_like(out))

        stream = warm_up(run, self.warmup, dev)  # warm-up and both captures on one stream
        forward = torch.cuda.CUDAGraph()
        with torch.cuda.graph(forward, stream=stream), torch.set_grad_enabled(grad):
            out = self.fn(static_x, static_t, static_s)
        entry = _Entry(static_x, static_t, static_s, out, forward)
        if grad:
            if not out.requires_grad:
                raise ValueError("the captured call does not depend on x_t differentiably")
            entry.grad_out = torch.zeros_like(out)
            entry.backward = torch.cuda.CUDAGraph()
            with torch.cuda.graph(entry.backward, pool=forward.pool(), stream=stream):
                (entry.grad_in,) = torch.autograd.grad(out, static_x, entry.grad_out)
        self.captures += 1
        return entry


def warm_up(fn: Callable[[], object], times: int, device: torch.device) -> torch.cuda.Stream:
    """Run ``fn()`` ``times`` times on a fresh side stream of ``device``, ordered after the
    work already queued and before anything queued later; returns that stream.

    Before a capture: kernel selection, allocator pools, library handles and lazily built
    state are set up outside the graph (the capture should then run on the same stream).
    """
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        for _ in range(times):
            fn()
    torch.cuda.current_stream(device).wait_stream(stream)
    return stream


class _Replay(torch.autograd.Function):
    """Forward: replay the captured forward.  Backward: replay the captured VJP."""

    @staticmethod
    def forward(ctx, x_t, t, shading, entry: _Entry):
        entry.load(x_t, t, shading)
        entry.forward.replay()
        ctx.entry, ctx.token = entry, object()
        entry.pending = ctx.token
        return entry.out.detach().clone()

    @staticmethod
    def backward(ctx, grad_eps):
        entry = ctx.entry
        if entry.pending is not ctx.token:
            raise RuntimeError("a CUDA-graphed denoiser call of this shape ran again before the backward of "
                               "an earlier one; its saved activations were overwritten")
        entry.pending = None
        entry.grad_out.copy_(grad_eps)
        entry.backward.replay()
        return entry.grad_in.clone(), None, None, None
