"""The whole training step in one CUDA graph (``TrainConfig.cuda_graph``).

At 8,192 patches per step the U-Net's channels (16-128) and images (16x16 down to 2x2)
are so small that an eager GPU step is bound by launching its thousands of kernels
(docs/benchmarks.md#training-throughput).  :class:`GraphedStep` captures one complete
step -- forward, loss, backward, gradient clipping, AdamW and the EMA update -- once, and
then replays it with one launch per step:

* the batch is copied into static input buffers (from pinned memory without waiting,
  when the data loader pins it);
* the learning rate and the EMA weight ``1 - decay_at(step)`` are 0-dim device tensors
  filled before each replay, so warm-up and the EMA schedule work inside the graph;
* AdamW runs with ``capturable=True`` (its step counters live on the device), and
  clipping is :func:`torch.nn.utils.clip_grad_norm_` (``foreach``), whose norm is never
  read on the host;
* the loss is a device tensor; the training loop reads it only at log steps;
* after each replay the version counters of the weights it changed are bumped, so caches
  keyed on them (:class:`mssfs.model.unet.WSConv2d` of the frozen EMA copy) stay valid;
* the host queues at most :data:`AHEAD` steps before waiting for the oldest to finish.

The update is the eager step's up to float rounding (the tensor learning rate and the
capturable AdamW round differently in the last bits).  A checkpoint holds the same
tensors as an eager run's (:func:`portable_optimizer_state`), so either kind of run
resumes the other.  The graph needs: a CUDA device, one process, one micro-batch per step
and a step without host syncs (every loss of :mod:`mssfs.train.losses` qualifies with
the device-resident :class:`mssfs.model.diffusion.NoiseSchedule` the trainer uses).
"""

from __future__ import annotations

import collections
import dataclasses

import torch

from ..model.cudagraphs import warm_up
from .batches import PatchBatch

__all__ = ["GraphedStep", "capturable_adam_state", "portable_optimizer_state"]

#: Steps the host may queue ahead of the GPU.
AHEAD = 2


class GraphedStep:
    """``loss = step(batch)``: one training step of ``trainer`` replayed from a CUDA graph.

    The graph is captured on the first call (after ``warmup`` eager forward and backward
    passes on a side stream that leave weights, optimiser and EMA untouched); every call,
    the first included, then replays it once.  Batches must keep the first one's shapes.

    Args:
        trainer: a :class:`mssfs.train.trainer.Trainer` on a CUDA device; its model,
            optimiser and EMA are updated in place.
        warmup: eager passes before the capture.
    """

    def __init__(self, trainer, warmup: int = 3):
        if trainer.device.type != "cuda":
            raise ValueError(f"a CUDA graph needs a CUDA device, got {trainer.device}")
        self.trainer = trainer
        self.warmup = warmup
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static: PatchBatch | None = None
        self.loss: torch.Tensor | None = None
        dev = trainer.device
        self.lr = torch.zeros((), dtype=torch.float32, device=dev)
        self.ema_weight = torch.zeros((), dtype=torch.float32, device=dev)
        self._done: collections.deque[torch.cuda.Event] = collections.deque()

    def __call__(self, batch: PatchBatch) -> torch.Tensor:
        tr = self.trainer
        if self.graph is None:
            self._capture(batch)
        else:
            for f in dataclasses.fields(batch):
                src, dst = getattr(batch, f.name), getattr(self.static, f.name)
                if src.shape != dst.shape:
                    raise ValueError(f"batch {f.name} has shape {tuple(src.shape)}; the CUDA graph was captured "
                                     f"for {tuple(dst.shape)}")
                dst.copy_(src, non_blocking=True)
        self.lr.fill_(tr.lr_at(tr.step))
        self.ema_weight.fill_(1.0 - tr.ema.decay_at(tr.step))
        self.graph.replay()
        # The replay changed these in place behind autograd's back: bump their version
        # counters, or a frozen copy's cached standardised kernels (the EMA model's
        # WSConv2d at validation) would be taken for current.
        torch.autograd.graph.increment_version(self._written)
        loss = self.loss.clone()
        # Queue at most AHEAD steps: waiting for an older step's end keeps the GPU busy
        # while bounding the pinned batches and launches waiting in the queue.
        self._done.append(torch.cuda.Event())
        self._done[-1].record(torch.cuda.current_stream(tr.device))
        if len(self._done) > AHEAD:
            self._done.popleft().synchronize()
        return loss

    def _capture(self, batch: PatchBatch) -> None:
        tr = self.trainer
        dev = tr.device
        self.static = tr._prepare(batch)
        self.static = PatchBatch(*(getattr(self.static, f.name).clone() for f in dataclasses.fields(self.static)))
        capturable_adam_state(tr.opt, self.lr)
        params = tr._params

        def forward_backward():
            loss = tr._loss(self.static)
            loss.backward()
            if tr.cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, tr.cfg.grad_clip, foreach=True)
            return loss

        def warm():  # weights, optimiser and EMA stay as they are
            forward_backward()
            tr.opt.zero_grad(set_to_none=True)

        tr.opt.zero_grad(set_to_none=True)
        stream = warm_up(warm, self.warmup, dev)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=stream):
            loss = forward_backward()  # the gradients are allocated, not accumulated: static from here on
            tr.opt.step()
            tr.ema.update(tr.model, tr.step, weight=self.ema_weight)
            self.loss = loss.detach()
        self.graph = graph
        self._written = [*tr.model.parameters(), *tr.ema.model.parameters(), *tr.ema.model.buffers()]


def capturable_adam_state(opt: torch.optim.Optimizer, lr: torch.Tensor) -> None:
    """Make an Adam/AdamW ``opt`` replayable from a CUDA graph, in place: every group
    ``capturable`` with learning rate ``lr`` (a 0-dim device tensor), and every parameter's
    state present (a fresh one as the optimiser would create it on its first step:
    ``step`` 0, zero moments) with its ``step`` counter a float32 tensor on the
    parameter's device.  Creating state inside a capture would replay as a reset."""
    for group in opt.param_groups:
        group["capturable"] = True
        group["lr"] = lr
        for p in group["params"]:
            state = opt.state[p]
            if not state:
                state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                if group.get("amsgrad"):
                    state["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            else:
                state["step"] = state["step"].to(device=p.device, dtype=torch.float32)


def portable_optimizer_state(state_dict: dict) -> dict:
    """``opt.state_dict()`` of a :func:`capturable_adam_state` optimiser in the form an
    eager run saves: learning rates as floats, ``capturable`` off, ``step`` counters as
    float32 CPU tensors (the other tensors are untouched).  A plain state dict comes back
    equal."""
    groups = [{**g, "lr": float(g["lr"]), "capturable": False} if "capturable" in g else dict(g)
              for g in state_dict["param_groups"]]
    state = {pid: {k: (v.detach().to("cpu", torch.float32) if k == "step" and torch.is_tensor(v) else v)
                   for k, v in st.items()}
             for pid, st in state_dict["state"].items()}
    return {"state": state, "param_groups": groups}
