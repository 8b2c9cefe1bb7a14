"""Running the denoiser for the sampler: slices, worker threads, bf16 and CUDA graphs.

:class:`SlicedDenoiser` wraps a model with the call signature of the model, runs each call
as slices of patches (on worker threads on CPUs, or replayed from CUDA graphs) and counts
the calls and patch forwards it made.
"""

from __future__ import annotations

import contextlib
import functools
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import nn

from ..model.cudagraphs import GraphedCalls

__all__ = ["SlicedDenoiser"]


class SlicedDenoiser(nn.Module):
    """Wraps a denoiser: counts calls and patch forwards, optional bf16, slicing and workers.

    ``eps = counter(x_t, t, shading)`` returns float32 noise whatever the autocast dtype.
    With ``chunk``, a call on more than ``chunk`` patches runs the model on slices of at
    most ``chunk`` patches (one logical call; autograd sees every slice): on CPUs the
    per-patch cost is lowest for ~64-128 patches, as larger batches fall out of cache.

    With ``workers > 1`` (CPU), the slices of a call run on that many threads at once, each
    with one intra-op thread, forward and backward (a slice's gradient with respect to its
    input is computed on the worker that ran it).  Small convolutions split poorly over
    cores, independent slices do not.  Each slice is computed as in a one-thread run, so
    any ``workers > 1`` gives the numbers of ``workers=1`` under ``torch.set_num_threads(1)``.
    Gradients through the workers are for ``x_t`` only (what guidance needs): when the
    shading or the model's parameters require gradients (e.g. a model that was not frozen),
    a differentiable call runs the slices one after another instead.

    With ``cuda_graphs`` (CUDA only, no slicing, frozen model) every call is replayed from
    a CUDA graph captured on the first call of its shape (:class:`mssfs.model.cudagraphs.GraphedCalls`).
    """

    def __init__(self, model: nn.Module, bf16: bool = False, chunk: int | None = None, workers: int = 1,
                 cuda_graphs: bool = False):
        super().__init__()
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if cuda_graphs and chunk:
            raise ValueError("CUDA graphs need whole calls: use chunk=None with cuda_graphs")
        if cuda_graphs and any(p.requires_grad for p in model.parameters()):
            raise ValueError("CUDA graphs need a frozen model (model.requires_grad_(False))")
        self.model = model
        self.bf16 = bf16
        self.chunk = chunk
        self.workers = workers
        self.graphs = GraphedCalls(self.run_slice) if cuda_graphs else None
        self.calls = 0
        self.patch_forwards = 0

    def run_slice(self, x_t: torch.Tensor, t: torch.Tensor, shading: torch.Tensor) -> torch.Tensor:
        """The model on one slice, under bf16 autocast if asked, as float32."""
        # no autocast cache under CUDA graphs (a capture must not keep cached casts)
        ctx = (torch.autocast(x_t.device.type, dtype=torch.bfloat16, cache_enabled=self.graphs is None)
               if self.bf16 else contextlib.nullcontext())
        with ctx:
            return self.model(x_t, t, shading).float()

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, shading: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.patch_forwards += x_t.shape[0]
        if self.graphs is not None and x_t.device.type == "cuda":
            return self.graphs(x_t, t, shading)
        step = self.chunk or x_t.shape[0]
        if self.workers > 1 and x_t.shape[0] > step and x_t.device.type == "cpu":
            if not torch.is_grad_enabled() or not (x_t.requires_grad or shading.requires_grad):
                return torch.cat([e for _, e in _pooled_forward(self, x_t, t, shading, step, grad=False)])
            if not shading.requires_grad and not any(p.requires_grad for p in self.model.parameters()):
                return _PooledSlices.apply(x_t, t, shading, self, step)  # gradients for x_t only
        parts = [self.run_slice(x_t[i : i + step], t[i : i + step], shading[i : i + step])
                 for i in range(0, x_t.shape[0], step)]
        return parts[0] if len(parts) == 1 else torch.cat(parts)


@functools.cache
def _pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(workers, thread_name_prefix="mssfs-slice")


def _on_workers(fn, args: list, workers: int) -> list:
    """``[fn(*a) for a in args]`` on ``workers`` threads with one intra-op thread each."""
    threads = torch.get_num_threads()

    def task(a):
        torch.set_num_threads(1)  # per worker thread (OpenMP); the caller's count is restored below
        return fn(*a)

    try:
        return list(_pool(workers).map(task, args))
    finally:
        torch.set_num_threads(threads)


def _pooled_forward(counter: SlicedDenoiser, x_t, t, shading, step: int, grad: bool) -> list:
    """Run the slices on the workers; returns ``(input leaf, eps)`` per slice, with the
    slice's graph when ``grad``."""

    def one(i):
        xi = x_t[i : i + step].detach().requires_grad_(grad)
        with torch.set_grad_enabled(grad):  # grad mode is per thread
            return xi, counter.run_slice(xi, t[i : i + step], shading[i : i + step])

    return _on_workers(one, [(i,) for i in range(0, x_t.shape[0], step)], counter.workers)


class _PooledSlices(torch.autograd.Function):
    """``eps`` of all slices, run on the workers; backward runs each slice's vector-Jacobian
    product on the workers too (with respect to ``x_t`` only)."""

    @staticmethod
    def forward(ctx, x_t, t, shading, counter, step):
        ctx.parts, ctx.workers = _pooled_forward(counter, x_t, t, shading, step, grad=True), counter.workers
        return torch.cat([e.detach() for _, e in ctx.parts])

    @staticmethod
    def backward(ctx, grad_eps):
        parts, ctx.parts = ctx.parts, None
        grads = grad_eps.split([xi.shape[0] for xi, _ in parts])

        def vjp(k):
            xi, e = parts[k]
            return torch.autograd.grad(e, xi, grads[k])[0]

        return torch.cat(_on_workers(vjp, [(k,) for k in range(len(parts))], ctx.workers)), None, None, None, None
