"""Training checkpoints as single safetensors files: tensors in the body, the rest as JSON.

A checkpoint holds named groups of tensors (``model``, ``ema``, ``optim`` state, RNG
byte states) and one JSON document (step, config, optimizer hyper-parameters, numpy and
Python RNG states, data-stream position, ...) stored in the safetensors metadata under
``"mssfs"``.  No pickle is involved anywhere.

Files are written atomically (temporary file in the same folder, ``fsync``, then
``os.replace``), so a killed writer leaves either the previous file or the new one.  A
SHA-256 digest of all tensor bytes is stored in the metadata and checked on load, so a
truncated or corrupted file raises :class:`CheckpointError` naming the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = ["Checkpoint", "CheckpointError", "atomic_save_safetensors", "atomic_write_bytes", "checkpoint_path", "flatten_optimizer_state", "latest_checkpoint", "list_checkpoints", "load_checkpoint", "save_checkpoint", "unflatten_optimizer_state"]


FORMAT = "mssfs-checkpoint/1"


_NAME = re.compile(r"^step_(\d{8,})\.safetensors$")


class CheckpointError(Exception):
    """A checkpoint (or exported weight file) is missing, truncated, corrupt or mismatched."""


@dataclass
class Checkpoint:
    """Content of a checkpoint.

    Attributes:
        tensors: ``{group: {name: tensor}}``, e.g. ``{"model": state_dict, "ema": ...}``.
        meta: JSON-serialisable dictionary (step, config, RNG states, ...).
        path: where it was read from (``None`` before saving).
    """

    tensors: dict[str, dict[str, torch.Tensor]]
    meta: dict
    path: Path | None = None


def _digest(flat: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for key in sorted(flat):
        t = flat[key].detach().cpu().contiguous()
        h.update(key.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_save_safetensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """``safetensors.torch.save`` to bytes, then :func:`atomic_write_bytes`."""
    from safetensors.torch import save

    flat = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write_bytes(path, save(flat, metadata=metadata))


def save_checkpoint(path: str | os.PathLike, ckpt: Checkpoint) -> Path:
    """Write ``ckpt`` atomically to ``path``; returns the path."""
    flat = {}
    for group, tensors in ckpt.tensors.items():
        if "/" in group:
            raise ValueError(f"group name {group!r} must not contain '/'")
        for name, t in tensors.items():
            flat[f"{group}/{name}"] = t.detach().cpu().contiguous()
    meta = {"format": FORMAT, "digest": _digest(flat), "meta": ckpt.meta}
    atomic_save_safetensors(path, flat, {"mssfs": json.dumps(meta)})
    return Path(path)


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read and verify a checkpoint; raises :class:`CheckpointError` naming the file."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        flat = {}
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("mssfs")
            for key in f.keys():  # noqa: SIM118 -- safe_open has keys() but is not iterable
                flat[key] = f.get_tensor(key)
    except CheckpointError:
        raise
    except Exception as exc:  # safetensors raises several types for truncated/garbled files
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint (truncated or corrupt?): {exc}") from exc
    if raw is None:
        raise CheckpointError(f"{path}: no mssfs metadata; not an mssfs training checkpoint")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: checkpoint metadata is not valid JSON: {exc}") from exc
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: unknown checkpoint format {meta.get('format')!r} (expected {FORMAT})")
    if _digest(flat) != meta.get("digest"):
        raise CheckpointError(f"{path}: checksum mismatch; the checkpoint is corrupt")
    tensors: dict[str, dict[str, torch.Tensor]] = {}
    for key, t in flat.items():
        group, _, name = key.partition("/")
        tensors.setdefault(group, {})[name] = t
    return Checkpoint(tensors=tensors, meta=meta["meta"], path=path)


def flatten_optimizer_state(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Split ``optimizer.state_dict()`` into tensors (``"<param>.<key>"``) and JSON."""
    tensors, scalars = {}, {}
    for pid, st in state_dict["state"].items():
        for key, value in st.items():
            if torch.is_tensor(value):
                tensors[f"{pid}.{key}"] = value
            else:
                scalars[f"{pid}.{key}"] = value
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in state_dict["param_groups"]]
    return tensors, {"scalars": scalars, "param_groups": groups}


def unflatten_optimizer_state(tensors: dict[str, torch.Tensor], info: dict) -> dict:
    """Inverse of :func:`flatten_optimizer_state`."""
    state: dict[int, dict] = {}
    for flat, value in list(tensors.items()) + list(info["scalars"].items()):
        pid, _, key = flat.partition(".")
        state.setdefault(int(pid), {})[key] = value
    groups = []
    for g in info["param_groups"]:
        g = dict(g)
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    return {"state": state, "param_groups": groups}


def checkpoint_path(run_dir: str | os.PathLike, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step_{step:08d}.safetensors"


def list_checkpoints(run_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """``[(step, path)]`` of the checkpoints in ``run_dir/checkpoints``, by step."""
    d = Path(run_dir) / "checkpoints"
    if not d.is_dir():
        return []
    out = [(int(m.group(1)), p) for p in d.iterdir() if (m := _NAME.match(p.name))]
    return sorted(out)


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None
