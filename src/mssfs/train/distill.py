"""Distillation: training a student network towards an exported teacher's predictions.

With ``TrainConfig.teacher`` the diffusion loss becomes

    (1 - w) * data loss + w * Huber(student output, teacher's prediction)

where the data loss is the usual diffusion loss (min-SNR weighted when configured) and the
teacher, frozen and in eval mode, sees the very ``x_t``, ``t`` and shading the student sees.
The student's output is compared in its own prediction target: the teacher's noise
prediction ``eps_T`` is turned into that target through ``x0_T = predict_x0(x_t, eps_T, t)``
(unclipped). The student may have any :class:`mssfs.model.unet.UNetConfig`; the teacher
must be a diffusion model on the same noise schedule (same ``T``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .config import TrainConfig, TrainingError

__all__ = ["distill_loss", "load_teacher"]


def load_teacher(cfg: TrainConfig, device: torch.device) -> tuple[torch.nn.Module, dict]:
    """The frozen teacher of ``cfg.teacher`` on ``device`` and its record
    ``{"path", "sha256", "distill_weight"}`` (stored in checkpoints and exports).

    Raises:
        TrainingError: the export is missing or corrupt, not a diffusion model, or on a
            schedule with another ``T`` than ``cfg.timesteps``.
    """
    from ..model.checkpoint import CheckpointError
    from ..model.weights import load_model

    try:
        teacher = load_model(cfg.teacher, device=device)
    except CheckpointError as exc:
        raise TrainingError(f"--teacher {cfg.teacher}: {exc}") from exc
    info = getattr(teacher, "info", {}) or {}
    if info.get("objective") != "diffusion":
        raise TrainingError(f"--teacher {cfg.teacher} holds a {info.get('objective')!r} model; "
                            "distillation needs a diffusion model")
    t_teacher = int(info.get("schedule", {}).get("T", 300))
    if t_teacher != cfg.timesteps:
        raise TrainingError(f"--teacher {cfg.teacher} was trained with T = {t_teacher}; this run has "
                            f"timesteps {cfg.timesteps}")
    record = {"path": str(cfg.teacher), "sha256": info.get("weights", {}).get("sha256"),
              "distill_weight": cfg.distill_weight}
    return teacher.eval().requires_grad_(False), record


class _Recorder:
    """Calls ``model`` and keeps its inputs and output (one forward serves both loss terms)."""

    def __init__(self, model):
        self.model = model
        self.seen = None

    def __call__(self, x_t, t, shading, **kwargs):
        out = self.model(x_t, t, shading, **kwargs)
        self.seen = (x_t, t, shading, kwargs, out)
        return out


def distill_loss(data_loss, model, teacher, batch, scheduler, weight: float, student_prediction: str = "eps",
                 **loss_options) -> torch.Tensor:
    """``(1 - weight) * data_loss(model, batch, scheduler, **loss_options) + weight * distillation``.

    ``data_loss`` is the diffusion loss; the student's output it compared with its target
    (``model(x_t, t, shading, **kw)``: the noise, or with ``raw=True`` the head's own output,
    of kind ``student_prediction``) is compared by Huber loss with the teacher's noise
    prediction ``teacher(x_t, t, shading)`` (under ``no_grad``) expressed in that kind.
    Shapes: ``x_t (B,3,P,P)``, ``t (B,)``, ``shading (B,1,P,P)``; returns a scalar.
    """
    rec = _Recorder(model)
    data = data_loss(rec, batch, scheduler, **loss_options)
    x_t, t, shading, kwargs, out = rec.seen
    with torch.no_grad():
        eps_teacher = teacher(x_t, t, shading).float()
        kind = student_prediction if kwargs.get("raw") else "eps"
        if kind == "eps":
            target = eps_teacher
        else:
            x0_teacher = scheduler.predict_x0(x_t.float(), eps_teacher, t, clip=False)
            target = scheduler.target(kind, x0_teacher, eps_teacher, t)
    distill = F.smooth_l1_loss(out.float(), target)
    return (1.0 - weight) * data + weight * distill
