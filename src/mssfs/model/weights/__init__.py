"""Inference weights: exporting a training checkpoint and loading a model.

An export is a folder with

* ``model.safetensors``: the EMA weights (float32);
* ``config.json``: ``{"format", "architecture", "model" (UNetConfig), "objective",
  "schedule" {"T", "kind", "s"}, "generator_version", "training" {...}, "weights"
  {"file", "sha256"}}``;
* ``MODEL_CARD.md``: what the weights are, how and where they were trained.

:func:`load_model` with no path loads the package default in ``weights/default/``.
Every problem (missing file, bad JSON, checksum, missing/unexpected keys, wrong shapes)
raises :class:`mssfs.model.checkpoint.CheckpointError` naming the file.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

__all__ = ["DEFAULT_DIR", "WEIGHTS_FORMAT", "export_checkpoint", "export_folder", "load_model", "read_export_config"]


WEIGHTS_FORMAT = "mssfs-weights/1"


DEFAULT_DIR = Path(__file__).resolve().parent / "default"


WEIGHTS_FILE, CONFIG_FILE, CARD_FILE = "model.safetensors", "config.json", "MODEL_CARD.md"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def export_folder(path: str | os.PathLike | None) -> Path:
    """The export folder of ``path``: the folder itself, or the folder of a file in it
    (``config.json``, ``model.safetensors``); ``None`` is the package default."""
    folder = Path(path) if path is not None else DEFAULT_DIR
    return folder.parent if folder.is_file() else folder


def read_export_config(folder: str | os.PathLike) -> dict:
    """Parse and check ``config.json`` of the export ``folder`` (or of a file in it)."""
    from ..checkpoint import CheckpointError

    path = export_folder(folder) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: missing (not an exported mssfs model folder)")
    try:
        cfg = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(cfg, dict) or cfg.get("format") != WEIGHTS_FORMAT:
        got = cfg.get("format") if isinstance(cfg, dict) else type(cfg).__name__
        raise CheckpointError(f"{path}: unknown format {got!r} (expected {WEIGHTS_FORMAT})")
    for key in ("model", "objective", "schedule", "weights"):
        if key not in cfg:
            raise CheckpointError(f"{path}: missing key {key!r}")
    for key in ("model", "schedule", "weights"):
        if not isinstance(cfg[key], dict):
            raise CheckpointError(f"{path}: {key!r} must be a mapping, got {type(cfg[key]).__name__}")
    file = cfg["weights"].get("file", WEIGHTS_FILE)
    if not isinstance(file, str) or Path(file).name != file or file in ("", ".", ".."):
        raise CheckpointError(f"{path}: weights 'file' must be a file name in the export folder, got {file!r}")
    if not isinstance(cfg["weights"].get("sha256", ""), (str, type(None))):
        raise CheckpointError(f"{path}: weights 'sha256' must be a hex string")
    t = cfg["schedule"].get("T", 300)
    if isinstance(t, bool) or not isinstance(t, int) or t < 2:
        raise CheckpointError(f"{path}: schedule 'T' must be an integer >= 2, got {t!r}")
    if cfg["objective"] not in ("diffusion", "regression"):
        raise CheckpointError(f"{path}: unknown objective {cfg['objective']!r} (expected diffusion or regression)")
    return cfg


def load_model(path: str | os.PathLike | None = None, device="cpu"):
    """Load an exported model (a folder, or its ``config.json`` / ``model.safetensors``).

    ``path=None`` loads the package default (``mssfs/model/weights/default``).  Returns a
    :class:`mssfs.model.unet.UNet` in eval mode on ``device`` with ``model.info`` set to the
    export's ``config.json`` (objective, schedule, training summary).  The call contract
    is ``eps = model(x_t (B,3,16,16), t (B,) int64, shading (B,1,16,16))``, whatever the
    head predicts (``model.config.prediction``; a model config without it is eps, and its
    ``timesteps`` defaults to the schedule's ``T``).
    """
    import torch
    from safetensors.torch import load_file

    from ..checkpoint import CheckpointError
    from ..unet import UNet, UNetConfig

    folder = export_folder(path)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such model folder")
    cfg = read_export_config(folder)
    cfg_path = folder / CONFIG_FILE
    model_dict = dict(cfg["model"])
    if model_dict.setdefault("timesteps", cfg["schedule"].get("T", 300)) != cfg["schedule"].get("T", 300):
        raise CheckpointError(f"{cfg_path}: model 'timesteps' {model_dict['timesteps']!r} differs from the "
                              f"schedule's 'T' {cfg['schedule'].get('T', 300)!r}")
    try:
        model_cfg = UNetConfig.from_dict(model_dict)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise CheckpointError(f"{cfg_path}: bad model config: {exc}") from exc
    wpath = folder / cfg["weights"].get("file", WEIGHTS_FILE)
    if not wpath.is_file():
        raise CheckpointError(f"{wpath}: weights file missing")
    expected = cfg["weights"].get("sha256")
    if expected and _sha256(wpath) != expected:
        raise CheckpointError(f"{wpath}: SHA-256 differs from {cfg_path}; the file is corrupt or from another export")
    try:
        state = load_file(str(wpath))
    except Exception as exc:
        raise CheckpointError(f"{wpath}: not a readable safetensors file: {exc}") from exc
    try:
        model = UNet(model_cfg)
    except (TypeError, ValueError, RuntimeError, ZeroDivisionError) as exc:
        raise CheckpointError(f"{cfg_path}: the model config cannot be built: {exc}") from exc
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"{wpath}: does not match the model in {cfg_path}: "
            + (f"missing keys {missing[:5]}{' ...' if len(missing) > 5 else ''} " if missing else "")
            + (f"unexpected keys {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}" if unexpected else "")
        )
    bad = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in own.items() if state[k].shape != v.shape]
    if bad:
        raise CheckpointError(f"{wpath}: wrong tensor shapes for the model in {cfg_path}: {'; '.join(bad[:3])}")
    model.load_state_dict({k: v.float() for k, v in state.items()})
    model.info = cfg
    return model.to(torch.device(device)).eval().requires_grad_(False)


def export_checkpoint(
    checkpoint: str | os.PathLike, out_dir: str | os.PathLike, note: str = "", notice: str = ""
) -> Path:
    """Write an inference export of a training checkpoint (its EMA weights) to ``out_dir``.

    ``checkpoint`` may be a checkpoint file or a run directory (its latest checkpoint).
    ``note`` goes to the model card's Notes; ``notice`` (e.g. "interim weights, ...") is
    stored in ``config.json`` and shown by ``mssfs sample`` whenever the weights are used.
    The three files are each written atomically; ``model.safetensors`` first, and
    ``config.json`` (which carries the weights' SHA-256) after it.
    """
    from ... import __version__
    from ..checkpoint import (
        CheckpointError,
        atomic_save_safetensors,
        atomic_write_bytes,
        latest_checkpoint,
        load_checkpoint,
    )
    from ..unet import UNet, UNetConfig, count_parameters, flops_per_patch

    checkpoint = Path(checkpoint)
    if checkpoint.is_dir():
        found = latest_checkpoint(checkpoint)
        if found is None:
            raise CheckpointError(f"{checkpoint}: no checkpoints in this run directory")
        checkpoint = found
    ckpt = load_checkpoint(checkpoint)
    meta, tcfg = ckpt.meta, ckpt.meta["config"]
    model_cfg = UNetConfig.from_dict(tcfg["model"])
    ema = ckpt.tensors.get("ema")
    if ema is None:
        raise CheckpointError(f"{checkpoint}: holds no EMA weights")
    model = UNet(model_cfg)
    try:
        model.load_state_dict(ema)
    except RuntimeError as exc:
        raise CheckpointError(f"{checkpoint}: EMA weights do not fit the model config: {exc}") from exc
    try:
        from ...data.shapes import GENERATOR_VERSION
    except ImportError:  # pragma: no cover - data generator not installed
        GENERATOR_VERSION = None

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.float().contiguous() for k, v in model.state_dict().items()}
    atomic_save_safetensors(out / WEIGHTS_FILE, state, {"format": WEIGHTS_FORMAT})
    n_params, flops = count_parameters(model), flops_per_patch(model)
    training = {
        "checkpoint": checkpoint.name,
        "steps": int(meta["step"]),
        "patches_seen": int(meta["patches_seen"]),
        "wall_time_s": round(float(meta["elapsed_s"]), 1),
        "val_loss": meta.get("last_val_loss"),
        "val_x0": meta.get("last_val_x0"),
        "init": meta.get("init"),
        "teacher": meta.get("teacher"),
        "device": meta.get("device"),
        "world_size": meta.get("world_size", 1),
        "torch_threads": meta.get("torch_threads"),
        "autocast": meta.get("autocast"),
        "host": meta.get("host"),
        "config": tcfg,
        "versions": meta.get("versions"),
    }
    cfg = {
        "format": WEIGHTS_FORMAT,
        "architecture": "UNet",
        "model": model_cfg.to_dict(),
        "objective": tcfg.get("objective", "diffusion"),
        "schedule": {"T": int(tcfg.get("timesteps", 300)), "kind": "cosine", "s": 0.008},
        "generator_version": GENERATOR_VERSION,
        "mssfs_version": __version__,
        "parameters": n_params,
        "flops_per_patch": flops,
        "training": training,
        "weights": {"file": WEIGHTS_FILE, "sha256": _sha256(out / WEIGHTS_FILE), "dtype": "float32", "source": "EMA"},
    }
    if notice:
        cfg["notice"] = str(notice)
    atomic_write_bytes(out / CONFIG_FILE, (json.dumps(cfg, indent=2) + "\n").encode())
    atomic_write_bytes(out / CARD_FILE, model_card(cfg, note).encode())
    return out


#: The model card's words for each prediction target.
_PREDICTION_WORDS = {
    "eps": "the noise eps (the network's head predicts it directly).",
    "v": "the head predicts v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0; the call above converts it to the "
         "noise (float32), `model(x_t, t, shading, raw=True)` returns v.",
    "x0": "the head predicts the normals x0; the call above converts them to the noise (float32), "
          "`model(x_t, t, shading, raw=True)` returns x0.",
}


def model_card(cfg: dict, note: str = "") -> str:
    """Markdown model card for an export's ``config.json`` dictionary.

    The sections follow the usual model-card layout (model details, intended use and limits,
    how to use, training data, training procedure and compute, evaluation, licence, citation);
    everything in it is read from ``cfg``, so the card always describes the exported weights.
    """
    tr, m = cfg["training"], cfg["model"]
    tc = tr.get("config", {})
    hours = tr["wall_time_s"] / 3600
    val = tr.get("val_loss")
    dev = tr.get("device") or "unknown device"
    where = f"{dev}" + (f", {tr['world_size']} processes" if (tr.get("world_size") or 1) > 1 else "")
    if tr.get("host"):
        where += f" ({tr['host']})"
    regression = cfg["objective"] == "regression"
    lines = [
        "# Model card: mssfs patch denoiser" + (" (regression baseline)" if regression else ""),
        "",
        "## Model details",
        "",
        f"- **Architecture:** conditional U-Net on 16x16 patches: base width {m['base_width']}, "
        f"multipliers {tuple(m['mults'])}, {m['res_blocks']} residual blocks per level"
        + (f", no linear attention below level {m['linear_attn_from']}" if m.get("linear_attn_from") else "")
        + f"; {cfg['parameters']:,} parameters, {cfg['flops_per_patch'] / 1e6:.1f} MFLOP per patch forward "
        "(2 x multiply-accumulates).",
        "- **Call:** "
        + ("`normals = model(zeros (B,3,16,16), zeros (B,) int64, shading (B,1,16,16))`; "
           "see `mssfs.model.regression.predict_regression`."
           if regression
           else "`eps = model(x_t (B,3,16,16), t (B,) int64 in [0, T-1], shading (B,1,16,16) in [0, 1])`."),
    ]
    if not regression:
        lines.append("- **Prediction target:** " + _PREDICTION_WORDS[m.get("prediction", "eps")])
    lines += [
        "- **Files:** `model.safetensors` (EMA weights, float32), `config.json` (configuration and "
        "training summary).",
        f"- **Version:** exported by mssfs {cfg.get('mssfs_version')}, torch "
        f"{((tr.get('versions') or {}).get('torch'))}.",
        "",
        "## Intended use and limits",
        "",
        ("A per-patch regression baseline for `mssfs evaluate` (one deterministic answer per patch)."
         if regression else
         "A prior over surface normals of 16x16 shading patches for guided sampling (`mssfs sample`)."),
        "It was trained only on procedurally generated shapes under shadowless Lambertian shading with "
        "lights within 72 degrees of the view direction; other image formation (cast shadows, "
        "specularities, perspective, textures) is out of distribution.",
        "",
        "## How to use",
        "",
        "```bash",
        ("mssfs evaluate --regression-model THIS_FOLDER ..." if regression
         else "mssfs sample image.png --model THIS_FOLDER --out results"),
        "```",
        "",
        "## Training data",
        "",
        f"Procedural normal maps from `mssfs.data`, generator `{cfg.get('generator_version')}` "
        + ("(rendered on the fly)." if not tc.get("data") else f"(shards `{tc.get('data')}`)."),
        "",
        "## Training procedure and compute",
        "",
        f"- objective: {cfg['objective']}; noise schedule: {cfg['schedule']['kind']}, T = {cfg['schedule']['T']}",
        f"- where: {where}" + (f", {tr['torch_threads']} torch thread(s)" if tr.get("torch_threads") else ""),
        f"- steps: {tr['steps']:,}; patches seen: {tr['patches_seen']:,} "
        f"({tc.get('patches_per_step', '?')} per step)",
        f"- wall time: {tr['wall_time_s']:,.0f} s ({hours:.2f} h)",
    ]
    init = tr.get("init")
    if init:
        lines.append(f"- started from the weights in `{init.get('path')}` (sha256 {str(init.get('sha256'))[:12]}..., "
                     f"{init.get('steps') or 0:,} steps, {init.get('patches_seen') or 0:,} patches seen before this run)"
                     + (f", without its {', '.join(init['dropped'])}" if init.get("dropped") else "")
                     + (", its prediction target changed from {from} to {to} (the head re-learned its output)"
                        .format(**init["prediction"]) if init.get("prediction") else ""))
    teacher = tr.get("teacher")
    if teacher:
        lines.append(f"- distilled from the network in `{teacher.get('path')}` (sha256 {teacher.get('sha256')}): "
                     f"loss (1 - w) x data loss + w x Huber(student, teacher), w = {teacher.get('distill_weight')}")
    lines += [
        f"- optimiser: AdamW lr {tc.get('lr')}, weight decay {tc.get('weight_decay')}, EMA decay {tc.get('ema_decay')}, "
        f"precision {tr.get('autocast') or tc.get('precision')}",
        f"- exported from `{tr['checkpoint']}` (EMA weights, float32)",
        "",
        "## Evaluation",
        "",
        "- validation loss (Huber" + ("" if regression else f" on the {m.get('prediction', 'eps')} target")
        + ", EMA weights, fixed held-out patches and t): " + (f"{val:.4f}" if isinstance(val, (int, float)) else "not measured"),
    ]
    if isinstance(tr.get("val_x0"), (int, float)):
        lines.append(f"- validation x0 loss (Huber of the predicted normals, clipped; comparable across "
                     f"prediction targets): {tr['val_x0']:.4f}")
    lines += [
        "- suites: run `mssfs evaluate --model THIS_FOLDER` (see docs/evaluation.md in the mssfs "
        "repository); the shipped weights' results are in docs/results.md.",
    ]
    if note:
        lines += ["", "## Notes", "", note]
    lines += [
        "",
        "## Licence",
        "",
        "MIT, as mssfs.",
        "",
        "## Citation",
        "",
        "Han, Zickler, Nishino: *Multistable Shape from Shading Emerges from Patch Diffusion*, "
        "NeurIPS 2024 (arXiv:2405.14530); and the mssfs repository (CITATION.cff).",
    ]
    return "\n".join(lines) + "\n"
