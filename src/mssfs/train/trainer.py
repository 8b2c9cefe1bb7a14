"""Training the patch denoiser (docs/method.md#diffusion) as a library; ``mssfs train`` is a thin CLI.

One training step (per process):

1. draw images ``dict(image (1,h,w), normals (3,h,w), mask (1,h,w), ...)`` from a fresh
   data iterator seeded by ``(seed, rank, step)`` and cut them into 16x16 patches;
2. keep ``patches_per_step / world_size`` patches, at most ``max_background_frac`` of
   them pure background (mask all zero: zero shading, zero normals), drawing more images
   when the foreground patches run short;
3. diffusion objective: ``t ~ U{0..T-1}`` per patch, ``x_t`` from
   :meth:`mssfs.model.diffusion.NoiseSchedule.add_noise`, Huber
   loss between the true and the predicted noise; regression objective: the same network
   fed ``concat(shading, 0)`` at ``t = 0`` predicts the normals, Huber loss inside the mask;
4. AdamW (linear warm-up, then constant lr), gradient clipping, EMA of the weights.

Because every step's data, timesteps and noise are a pure function of ``(seed, rank,
step)``, a run resumed from a checkpoint continues exactly as if it had not stopped.
Batches are built by a map-style dataset indexed by the step, so ``num_workers > 0``
prepares them in background processes without changing them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from ..core.device import resolve_device
from ..model.checkpoint import (
    Checkpoint,
    CheckpointError,
    atomic_write_bytes,
    checkpoint_path,
    flatten_optimizer_state,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
    unflatten_optimizer_state,
)
from ..model.diffusion import NoiseSchedule
from ..model.unet import UNet
from .accumulate import loss_shares, micro_batches
from .batches import ImageSource, PatchBatch, StepBatches, TrainingImagesSource, derive_seed, validation_batch
from .config import RESUMABLE_KEYS, TrainConfig, TrainingError
from .distill import distill_loss, load_teacher
from .distributed import Dist, autocast_dtype, hardware_description, init_distributed
from .ema import EMA
from .losses import LOSSES, x0_loss
from .prefetch import prefetched
from .runlog import append_log, plot_log, truncate_log

__all__ = ["Trainer", "train"]


class Trainer:
    """Owns the model, EMA, optimiser and counters of one process; see :func:`train`."""

    def __init__(self, cfg: TrainConfig, run_dir: str | os.PathLike, source: ImageSource | None = None,
                 dist: Dist | None = None, progress: bool = True, load_init: bool = True):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.dist = dist or Dist()
        self.progress = progress
        self.device = resolve_device(cfg.device, self.dist.local_rank)
        self.source = source if source is not None else TrainingImagesSource(cfg.data, cfg.image_size, cfg.mix)
        if cfg.cuda_graph and (self.device.type != "cuda" or self.dist.world_size > 1):
            raise TrainingError(f"cuda_graph needs one process on a CUDA device; this run has {self.dist.world_size} "
                                f"process(es) on {self.device}")
        if cfg.patches_per_step % self.dist.world_size:
            raise TrainingError(f"patches_per_step {cfg.patches_per_step} is not divisible by {self.dist.world_size} processes")
        if (cfg.patches_per_step // self.dist.world_size) % cfg.accumulate:
            raise TrainingError(f"{cfg.patches_per_step // self.dist.world_size} patches per process cannot be split "
                                f"into accumulate {cfg.accumulate} equal micro-batches")
        self.amp_dtype = autocast_dtype(cfg.precision, self.device)
        self.schedule = NoiseSchedule(cfg.timesteps)
        # add_noise and alphas_cumprod for the losses, looked up on the device (no host sync)
        self.scheduler = self.schedule.to(self.device)
        torch.manual_seed(derive_seed(cfg.seed, 0x1417))  # identical initial weights on every rank
        self.model = UNet(cfg.model)
        self.init_info = initialise_from(self.model, cfg) if (cfg.init and load_init) else None
        self.model = self.model.to(self.device)
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.ema = EMA(self.model, cfg.ema_decay)
        self.teacher, self.teacher_info = load_teacher(cfg, self.device) if cfg.teacher else (None, None)
        self._params = list(self.model.parameters())
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, betas=cfg.betas,
                                     weight_decay=cfg.weight_decay, foreach=True)
        self.step = 0
        self.elapsed = 0.0  # training wall time over all segments, seconds
        self.patches_seen = 0
        self.last_val: float | None = None
        self.last_val_x0: float | None = None
        self._forward = None
        self._ddp = None  # the DistributedDataParallel wrapper, for no_sync while accumulating
        self._graphed = None  # the captured step (cfg.cuda_graph), made on the first step

    # model wrapping (DDP, compile) is done lazily so that loading a state comes first
    def forward_module(self):
        if self._forward is None:
            m = self.model
            if self.dist.world_size > 1:
                import warnings

                from torch.nn.parallel import DistributedDataParallel as DDP

                # 1x1-conv weight grads can carry arbitrary strides on their size-1 dims;
                # DDP then warns although the layouts agree element for element.
                warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
                m = self._ddp = DDP(m, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            if self.cfg.compile:
                m = torch.compile(m, dynamic=False)  # one shape per run: no dynamic-shape kernels
            self._forward = m
        return self._forward

    def lr_at(self, step: int) -> float:
        w = self.cfg.warmup_steps
        return self.cfg.lr * (min(1.0, (step + 1) / w) if w > 0 else 1.0)

    def autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        # a CUDA graph must not keep autocast's cast weights from its capture
        return torch.autocast(self.device.type, dtype=self.amp_dtype, cache_enabled=not self.cfg.cuda_graph)

    def _prepare(self, batch: PatchBatch) -> PatchBatch:
        batch = batch.to(self.device, non_blocking=True)
        if self.cfg.channels_last:
            for name in ("shading", "normals", "noise"):
                setattr(batch, name, getattr(batch, name).contiguous(memory_format=torch.channels_last))
        return batch

    def train_step(self, batch: PatchBatch) -> torch.Tensor:
        if self.cfg.cuda_graph:
            if self._graphed is None:
                from .graphstep import GraphedStep

                self._graphed = GraphedStep(self)
            loss = self._graphed(batch)
            self.step += 1
            self.patches_seen += self.cfg.patches_per_step
            return loss
        batch = self._prepare(batch)
        for g in self.opt.param_groups:
            g["lr"] = self.lr_at(self.step)
        self.opt.zero_grad(set_to_none=True)
        k = self.cfg.accumulate
        if k == 1:
            loss = self._loss(batch)
            loss.backward()
            loss = loss.detach()
        else:  # micro-batch losses scaled to sum to the batch's; gradients summed, all-reduced once
            micros = micro_batches(batch, k)
            loss = torch.zeros((), device=self.device)
            self.forward_module()  # wraps in DDP on first use: no_sync needs the wrapper
            for i, (micro, share) in enumerate(zip(micros, loss_shares(self.cfg.objective, micros))):
                sync = self._ddp is None or i == k - 1
                with nullcontext() if sync else self._ddp.no_sync():
                    part = self._loss(micro) * share
                    part.backward()
                loss += part.detach()
        if self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self._params, self.cfg.grad_clip, foreach=True)
        self.opt.step()
        self.ema.update(self.model, self.step)
        self.step += 1
        self.patches_seen += self.cfg.patches_per_step
        return loss

    def _loss(self, batch: PatchBatch) -> torch.Tensor:
        """The training loss of ``batch`` (under autocast), with the teacher's term when distilling."""
        weighting = {"min_snr_gamma": self.cfg.min_snr_gamma} if self.cfg.min_snr_gamma else {}
        fn = LOSSES[self.cfg.objective]
        with self.autocast():
            if self.teacher is None:
                return fn(self.forward_module(), batch, self.scheduler, **weighting)
            return distill_loss(fn, self.forward_module(), self.teacher, batch, self.scheduler, self.cfg.distill_weight,
                                student_prediction=self.cfg.model.prediction, **weighting)

    @torch.no_grad()
    def validate(self, batch: PatchBatch, chunk: int = 512) -> float:
        """Loss of the EMA weights on the fixed validation patches (fp32, deterministic), in
        the run's prediction target.  A diffusion run also sets ``last_val_x0``: the Huber
        loss of the predicted, clipped normals (:func:`x0_loss`), comparable across targets."""
        batch = batch.to(self.device)
        total, total_x0, n = 0.0, 0.0, batch.t.shape[0]
        fn = LOSSES[self.cfg.objective]
        for i in range(0, n, chunk):
            part = PatchBatch(*(getattr(batch, f.name)[i : i + chunk] for f in dataclasses.fields(batch)))
            total += float(fn(self.ema.model, part, self.scheduler)) * part.t.shape[0]
            if self.cfg.objective == "diffusion":
                total_x0 += float(x0_loss(self.ema.model, part, self.scheduler)) * part.t.shape[0]
        self.last_val_x0 = total_x0 / n if self.cfg.objective == "diffusion" else None
        return total / n

    # -- state -------------------------------------------------------------------------

    def state(self) -> Checkpoint:
        opt_state = self.opt.state_dict()
        if self.cfg.cuda_graph:  # saved as an eager run saves it
            from .graphstep import portable_optimizer_state

            opt_state = portable_optimizer_state(opt_state)
        opt_tensors, opt_info = flatten_optimizer_state(opt_state)
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        np_state = np.random.get_state()
        py_state = random.getstate()
        from .. import __version__

        meta = {
            "step": self.step,
            "elapsed_s": self.elapsed,
            "patches_seen": self.patches_seen,
            "last_val_loss": self.last_val,
            "last_val_x0": self.last_val_x0,
            "init": self.init_info,
            "teacher": self.teacher_info,
            "config": self.cfg.to_dict(),
            "optimizer": opt_info,
            "rng": {
                "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
                "python": [py_state[0], list(py_state[1]), py_state[2]],
            },
            "data_stream": {"seed": self.cfg.seed, "next_step": self.step,
                            "scheme": "batch of step s on rank r seeded by derive_seed(seed, r, s)"},
            "world_size": self.dist.world_size,
            "device": str(self.device),
            "host": hardware_description(self.device),
            "torch_threads": torch.get_num_threads(),
            "autocast": str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else "fp32",
            "versions": {"mssfs": __version__, "torch": torch.__version__},
        }
        return Checkpoint(
            tensors={"model": self.model.state_dict(), "ema": self.ema.model.state_dict(), "optim": opt_tensors, "rng": rng},
            meta=meta,
        )

    def load_state(self, ckpt: Checkpoint) -> None:
        where = ckpt.path or "checkpoint"
        try:
            self.model.load_state_dict(ckpt.tensors["model"])
            self.ema.model.load_state_dict(ckpt.tensors["ema"])
            self.opt.load_state_dict(unflatten_optimizer_state(ckpt.tensors.get("optim", {}), ckpt.meta["optimizer"]))
            self._graphed = None  # a captured step would point at the replaced optimiser state
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CheckpointError(f"{where}: does not fit this model/optimizer: {exc}") from exc
        m = ckpt.meta
        self.step, self.elapsed, self.patches_seen = int(m["step"]), float(m["elapsed_s"]), int(m["patches_seen"])
        self.last_val = m.get("last_val_loss")
        self.last_val_x0 = m.get("last_val_x0")
        self.init_info = m.get("init")
        theirs, ours = (m.get("teacher") or {}).get("sha256"), (self.teacher_info or {}).get("sha256")
        if theirs and ours and theirs != ours:
            raise TrainingError(f"--teacher {self.cfg.teacher}: its weights (sha256 {ours[:12]}...) are not the ones "
                                f"this run was distilled from ({theirs[:12]}...)")
        rng = ckpt.tensors.get("rng", {})
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        npst = m["rng"]["numpy"]
        np.random.set_state((npst[0], np.asarray(npst[1], dtype=np.uint32), npst[2], npst[3], npst[4]))
        pyst = m["rng"]["python"]
        random.setstate((pyst[0], tuple(pyst[1]), pyst[2]))

    def save(self) -> Path:
        path = save_checkpoint(checkpoint_path(self.run_dir, self.step), self.state())
        if self.cfg.keep_checkpoints > 0:
            for _, old in list_checkpoints(self.run_dir)[: -self.cfg.keep_checkpoints]:
                old.unlink(missing_ok=True)
        return path


def prepare_run_dir(run_dir: Path, overwrite: bool) -> None:
    """Refuse to start over an existing run unless ``overwrite``; then clear its outputs.

    A folder holding only the ``config.json`` of a run that stopped before its first log
    line or checkpoint is not a run: it is replaced without ``overwrite``.
    """
    existing = [run_dir / n for n in ("checkpoints", "log.csv", "config.json", "loss.png") if (run_dir / n).exists()]
    started = [p for p in existing if p.name != "config.json" and not (p.is_dir() and not any(p.iterdir()))]
    if started and not overwrite:
        raise TrainingError(f"{run_dir} already holds a training run; use --resume {run_dir} to continue it "
                            "or --overwrite to start over")
    for p in existing:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)


def resolve_resume(resume: str | os.PathLike) -> tuple[Path, Path]:
    """``resume`` (run dir or checkpoint file) -> ``(checkpoint, run_dir)``."""
    resume = Path(resume)
    if resume.is_dir():
        ckpt = latest_checkpoint(resume)
        if ckpt is None:
            raise TrainingError(f"{resume} holds no checkpoints to resume from")
        return ckpt, resume
    if resume.is_file():
        return resume, resume.parent.parent if resume.parent.name == "checkpoints" else resume.parent
    raise TrainingError(f"--resume {resume}: no such run directory or checkpoint")


def merge_resume_config(saved: dict, overrides: dict) -> dict:
    """The checkpoint's config with ``overrides`` applied; only :data:`RESUMABLE_KEYS` may differ."""
    cfg = dict(saved)
    for k, v in overrides.items():
        if (k == "model" or k not in RESUMABLE_KEYS) and (k not in cfg or _norm(cfg[k]) != _norm(v)):
            raise TrainingError(f"option {k!r} cannot change when resuming (checkpoint has {cfg.get(k)!r}, got {v!r})")
        cfg[k] = v
    return cfg


def _norm(v):
    if isinstance(v, dict):
        return {k: _norm(x) for k, x in v.items()}
    if isinstance(v, (tuple, list)):
        return [_norm(x) for x in v]
    return v


def train(
    config: TrainConfig | None,
    run_dir: str | os.PathLike | None = None,
    *,
    source: ImageSource | None = None,
    resume: str | os.PathLike | None = None,
    overrides: dict | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Trainer:
    """Train (or resume) a run; returns the :class:`Trainer` in its final state.

    Args:
        config: the run's config (ignored when resuming: the checkpoint's config is used,
            with ``overrides`` limited to :data:`RESUMABLE_KEYS`).
        run_dir: output folder (``config.json``, ``log.csv``, ``loss.png``,
            ``checkpoints/step_XXXXXXXX.safetensors``); with ``resume`` it defaults to
            the checkpoint's run.
        source: ``(seed, rank, world_size) -> iterable of image dicts``; default
            :class:`TrainingImagesSource` on ``config.data`` (or ``config.mix``).
        resume: run directory (latest checkpoint) or a checkpoint file.
        overwrite: start over an existing run directory.
    Under ``torchrun`` every process calls this; rank 0 alone writes files.
    """
    ckpt = None
    if resume is not None:
        ckpt_path, resumed_dir = resolve_resume(resume)
        ckpt = load_checkpoint(ckpt_path)  # a corrupt file raises; never a silent fresh start
        config = TrainConfig.from_dict(merge_resume_config(ckpt.meta["config"], overrides or {}))
        run_dir = Path(run_dir) if run_dir is not None else resumed_dir
    elif config is None:
        raise TrainingError("a config is needed to start a run")
    if run_dir is None:
        raise TrainingError("a run directory is needed")
    run_dir = Path(run_dir)

    if source is None and config.data:  # every shard readable before anything is written
        from ..data.shards import ShardError, verify_shards

        try:
            verify_shards(config.data)
        except ShardError as exc:
            raise TrainingError(f"data: {exc}") from None
    dist = init_distributed(resolve_device(config.device).type)
    try:
        trainer = Trainer(config, run_dir, source=source, dist=dist, progress=progress, load_init=ckpt is None)
        if dist.main:
            if ckpt is None:
                prepare_run_dir(run_dir, overwrite)
            else:
                run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(run_dir / "config.json", (json.dumps(config.to_dict(), indent=2) + "\n").encode())
        if dist.world_size > 1:
            torch.distributed.barrier()
        if ckpt is not None:
            trainer.load_state(ckpt)
        _loop(trainer)
        return trainer
    finally:
        if dist.owned and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _loop(tr: Trainer) -> None:
    cfg, main = tr.cfg, tr.dist.main
    log_path, png_path = tr.run_dir / "log.csv", tr.run_dir / "loss.png"
    val_on = cfg.val_every > 0 and cfg.val_patches > 0
    val = validation_batch(tr.source, cfg) if main and val_on else None
    if main:
        truncate_log(log_path, tr.step)
    start = tr.step
    if start >= cfg.steps:
        return
    loader = torch.utils.data.DataLoader(
        StepBatches(tr.source, cfg, tr.dist.rank, tr.dist.world_size),
        batch_size=None,
        sampler=range(start, cfg.steps),
        num_workers=cfg.num_workers,
        pin_memory=tr.device.type == "cuda",
        persistent_workers=False,
    )
    batches = prefetched(loader, cfg.prefetch)  # the same batches, prepared ahead by a thread
    bar = None
    if main and tr.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, initial=start, desc=f"train {cfg.objective}", unit="step", dynamic_ncols=True)
    run_loss, run_n = torch.zeros((), device=tr.device), 0
    t_seg, t_log, t_ckpt = time.perf_counter(), time.perf_counter(), time.perf_counter()
    elapsed0, step_log = tr.elapsed, start
    try:
        for batch in batches:
            run_loss += tr.train_step(batch)
            run_n += 1
            now = time.perf_counter()
            tr.elapsed = elapsed0 + (now - t_seg)
            s = tr.step
            last = s == cfg.steps or _time_is_up(tr, now - t_seg)
            do_val = val_on and (s % cfg.val_every == 0 or last)  # same decision on every rank
            do_log = (cfg.log_every > 0 and s % cfg.log_every == 0) or do_val or last
            if do_log:
                if tr.dist.world_size > 1:
                    torch.distributed.all_reduce(run_loss)
                    run_loss /= tr.dist.world_size
                loss = float(run_loss) / max(run_n, 1)
                rate = (s - step_log) * cfg.patches_per_step / max(now - t_log, 1e-9)
                run_loss.zero_()
                run_n, step_log, t_log = 0, s, now
            if main:
                if do_val:
                    tr.last_val = tr.validate(val)
                if do_log:
                    row = {"step": s, "loss": f"{loss:.6g}", "val_loss": f"{tr.last_val:.6g}" if do_val else "",
                           "val_x0": f"{tr.last_val_x0:.6g}" if do_val and tr.last_val_x0 is not None else "",
                           "patches_per_s": f"{rate:.1f}", "lr": f"{tr.lr_at(s - 1):.3g}", "time": f"{tr.elapsed:.1f}"}
                    append_log(log_path, row)
                    if bar is not None:
                        post = {"loss": f"{loss:.4f}", "patches/s": f"{rate:.0f}"}
                        if tr.last_val is not None:
                            post["val"] = f"{tr.last_val:.4f}"
                        bar.set_postfix(post, refresh=False)
                timed = cfg.checkpoint_minutes > 0 and now - t_ckpt >= 60 * cfg.checkpoint_minutes
                if last or timed or (cfg.checkpoint_every > 0 and s % cfg.checkpoint_every == 0):
                    tr.save()
                    t_ckpt = time.perf_counter()
                    plot_log(log_path, png_path)
                elif do_val:
                    plot_log(log_path, png_path)
                if do_val or do_log:
                    t_log = time.perf_counter()  # patches/s counts training time only
            if bar is not None:
                bar.update(1)
            if last:
                break
    finally:
        batches.close()  # stops the prefetching thread
        if bar is not None:
            bar.close()


def _time_is_up(tr: Trainer, seconds: float) -> bool:
    """``max_minutes`` reached (decided on rank 0 and shared, checked at log steps)."""
    cfg = tr.cfg
    if cfg.max_minutes <= 0 or tr.step % max(cfg.log_every, 1):
        return False
    up = seconds >= 60.0 * cfg.max_minutes
    if tr.dist.world_size > 1:
        flag = torch.tensor([float(up)], device=tr.device)
        torch.distributed.broadcast(flag, 0)
        up = bool(flag.item())
    return up


def initialise_from(model: UNet, cfg: TrainConfig) -> dict:
    """Load the exported weights ``cfg.init`` into ``model``; returns what was loaded.

    The prediction target may differ from the export's (every tensor still loads; the head
    then re-learns its output): the record's ``prediction`` says ``{"from", "to"}``.

    Raises:
        TrainingError: the export is missing, corrupt, of another shape or objective.
    """
    from ..model.checkpoint import CheckpointError
    from ..model.weights import load_model

    try:
        src = load_model(cfg.init)
    except CheckpointError as exc:
        raise TrainingError(f"--init {cfg.init}: {exc}") from exc
    info = getattr(src, "info", {}) or {}
    if info.get("objective", "diffusion") != cfg.objective:
        raise TrainingError(f"--init {cfg.init} holds a {info.get('objective')!r} model; this run trains {cfg.objective!r}")
    not_shape = ("prediction", "timesteps")
    theirs, ours = ({k: v for k, v in c.to_dict().items() if k not in not_shape} for c in (src.config, cfg.model))
    fewer_attn = ours["linear_attn_from"] >= theirs["linear_attn_from"]
    if {k: v for k, v in theirs.items() if k != "linear_attn_from"} != {
            k: v for k, v in ours.items() if k != "linear_attn_from"} or not fewer_attn:
        raise TrainingError(f"--init {cfg.init}: its model shape {theirs} differs from this run's {ours} "
                            "(only dropping linear attentions, a larger linear_attn_from, is allowed)")
    state = src.state_dict()
    wanted = model.state_dict().keys()
    dropped = sorted({k.rsplit(".attn.", 1)[0] + ".attn" for k in state if k not in wanted})
    model.load_state_dict({k: state[k] for k in wanted})  # every tensor of this model comes from the export
    tr = info.get("training", {})
    out = {"path": str(cfg.init), "sha256": info.get("weights", {}).get("sha256"),
           "steps": tr.get("steps"), "patches_seen": tr.get("patches_seen")}
    if dropped:
        out["dropped"] = dropped
    if src.config.prediction != cfg.model.prediction:
        out["prediction"] = {"from": src.config.prediction, "to": cfg.model.prediction}
    return out
