"""Shared pieces of the fault-injection tests (tests/test_faults_*.py).

* :func:`tiny_export` writes a randomly initialised tiny denoiser through the project's
  own checkpoint and export functions (so ``--model DIR`` loads it like real weights).
* :func:`tiny_schedule_file` writes a schedule small enough for a run of a second.
* :func:`run_cli` runs ``mssfs`` in a subprocess; :func:`call_cli` runs ``mssfs.cli.main``
  in this process, capturing its exit code and stderr.
* :func:`expect_refusal` / :func:`expect_success` assert the two allowed outcomes and
  count them in :data:`TALLY`; with ``MSSFS_FAULT_TALLY=FILE`` the counts are written to
  FILE at the end of the session (docs/reliability.md quotes them).
* :func:`snapshot` records every file under a folder with its bytes, to prove earlier
  results were left byte-identical.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np

#: Outcome counts of every case tried: refused / succeeded / lost, per test file.
TALLY: Counter = Counter()

TINY_MODEL = dict(base_width=8, mults=(1, 2), attn_heads=1, attn_head_dim=8, time_dim=32)
TINY_SCHEDULE = {
    "name": "tiny",
    "num_steps": 3,
    "fuse_last": 1,
    "stages": [{"resolution": 32, "lr": 1.0, "restart_t": 299, "inner_iters_high": 1, "inner_iters_low": 1}],
}


def tiny_export(folder: Path, objective: str = "diffusion", seed: int = 0) -> Path:
    """A tiny randomly initialised UNet exported with :func:`mssfs.model.weights.export_checkpoint`."""
    import torch

    from mssfs.model.checkpoint import Checkpoint, save_checkpoint
    from mssfs.model.unet import UNet, UNetConfig
    from mssfs.model.weights import export_checkpoint

    torch.manual_seed(seed)
    cfg = UNetConfig(**TINY_MODEL)
    state = UNet(cfg).state_dict()
    meta = {"step": 0, "patches_seen": 0, "elapsed_s": 0.0,
            "config": {"model": cfg.to_dict(), "objective": objective, "timesteps": 300}}
    ckpt = folder.parent / f"{folder.name}.ckpt.safetensors"
    ema = {k: v.clone() for k, v in state.items()}
    save_checkpoint(ckpt, Checkpoint(tensors={"model": state, "ema": ema}, meta=meta))
    out = export_checkpoint(ckpt, folder)
    ckpt.unlink()
    return out


def tiny_schedule_file(folder: Path, **changes) -> Path:
    path = folder / "tiny_schedule.json"
    path.write_text(json.dumps({**TINY_SCHEDULE, **changes}))
    return path


def shading_png(path: Path, size: int = 32) -> Path:
    """A small 8-bit shading image of a sphere on black."""
    from PIL import Image

    r, c = np.mgrid[0:size, 0:size].astype(float)
    x, y = (c - size / 2) / (0.45 * size), -(r - size / 2) / (0.45 * size)
    z2 = 1 - x**2 - y**2
    img = np.where(z2 > 0, np.clip((0.3 * x + 0.3 * y + 0.9 * np.sqrt(np.clip(z2, 0, 1))), 0, 1), 0)
    Image.fromarray(np.round(img * 255).astype(np.uint8)).save(path)
    return path


def fault_env(root: Path):
    """The shared test material in ``root``: a tiny exported model, a tiny schedule file, a shading PNG."""
    from types import SimpleNamespace

    return SimpleNamespace(root=root, model=tiny_export(root / "model"), schedule=tiny_schedule_file(root),
                           image=shading_png(root / "ball.png"))


def cli_env(**extra) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("MSSFS_DEBUG", None)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_cli(args: list[str], timeout: float = 120, **popen) -> subprocess.CompletedProcess:
    """``python -m mssfs ARGS`` in a subprocess (stdout and stderr captured as text)."""
    env = popen.pop("env", None) or cli_env()
    return subprocess.run([sys.executable, "-m", "mssfs", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env, check=False, **popen)


def start_cli(args: list[str], **popen) -> subprocess.Popen:
    env = popen.pop("env", None) or cli_env()
    return subprocess.Popen([sys.executable, "-m", "mssfs", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **popen)


def call_cli(args: list[str]) -> tuple[int, str]:
    """``mssfs.cli.main(ARGS)`` in this process: ``(exit code, stderr)``; argparse exits count."""
    from mssfs.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 2
    return code, err.getvalue()


def error_lines(stderr: str) -> list[str]:
    """The lines of ``stderr`` that are not notes, warnings or progress output."""
    keep = []
    for line in stderr.splitlines():
        s = line.strip()
        if not s or s.startswith(("note:", "warning:")) or "it/s]" in s or "s/it]" in s or "step/s]" in s:
            continue
        keep.append(s)
    return keep


def expect_refusal(code: int, stderr: str, *, contains: str | None = None, kind: str = "") -> str:
    """Assert a clean refusal: exit code 2, no traceback, one error line (after argparse's
    usage line, if any) naming the problem; counts it."""
    TALLY[f"{kind}:tried"] += 1
    assert "Traceback" not in stderr, stderr
    assert code == 2, (code, stderr)
    lines = [ln for ln in error_lines(stderr) if not ln.startswith("usage:") and not ln.startswith("[")]
    errors = [ln for ln in lines if "error:" in ln]
    assert len(errors) == 1, stderr
    if contains is not None:
        assert contains.lower() in errors[0].lower(), (contains, stderr)
    TALLY[f"{kind}:refused"] += 1
    return errors[0]


def expect_success(code: int, stderr: str, *, kind: str = "") -> None:
    TALLY[f"{kind}:tried"] += 1
    assert "Traceback" not in stderr, stderr
    assert code == 0, (code, stderr)
    TALLY[f"{kind}:succeeded"] += 1


def count_lost(n: int, kind: str = "") -> None:
    """Record results lost (every test asserts this is 0 before calling it)."""
    TALLY[f"{kind}:lost"] += n


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every regular file under ``folder`` (relative path -> bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_kept(before: dict[str, bytes], folder: Path, kind: str = "") -> None:
    """Every file of ``before`` is still under ``folder`` with the same bytes; counts losses."""
    now = snapshot(folder)
    lost = [k for k, v in before.items() if now.get(k) != v]
    count_lost(len(lost), kind)
    assert not lost, lost[:5]


def write_tally(path: str | os.PathLike) -> None:
    kinds = sorted({k.split(":")[0] for k in TALLY})
    table = {k: {what: TALLY[f"{k}:{what}"] for what in ("tried", "refused", "succeeded", "lost")} for k in kinds}
    Path(path).write_text(json.dumps(table, indent=2) + "\n")


if os.environ.get("MSSFS_FAULT_TALLY"):
    import atexit

    atexit.register(write_tally, os.environ["MSSFS_FAULT_TALLY"])
