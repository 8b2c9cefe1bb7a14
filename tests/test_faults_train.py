"""Fault injection beyond sampling: training data and runs, depth, analyze, export, data make.

Refusals leave nothing behind; SIGKILLed training resumes; concurrent and killed
``mssfs depth`` runs never leave a half-written or half-read file.
"""

from __future__ import annotations

import json
import random
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from faults_support import (
    TINY_MODEL,
    assert_kept,
    call_cli,
    expect_refusal,
    expect_success,
    snapshot,
    start_cli,
)

KIND = "train-depth"
TRAIN = {"model": dict(TINY_MODEL, mults=[1, 2]), "steps": 3, "patches_per_step": 2, "image_size": 32,
         "val_patches": 4, "val_every": 0, "checkpoint_every": 1, "precision": "fp32", "keep_checkpoints": 0,
         "log_every": 1}


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults_train")
    code, err = call_cli(["data", "make", "--n", "4", "--size", "32", "--shard-size", "2", "--out", root / "shards"])
    expect_success(code, err, kind=KIND)
    return root / "shards"


def _config(path: Path, **changes) -> Path:
    path.write_text(json.dumps({**TRAIN, **changes}))
    return path


def test_train_refusals_leave_nothing(tmp_path, shards):
    cfg = _config(tmp_path / "c.json")
    run = tmp_path / "run"
    code, err = call_cli(["train", "--config", cfg, "--data", tmp_path / "nosuchdir", "--out", run, "--quiet"])
    expect_refusal(code, err, contains="nosuchdir", kind=KIND)
    assert not run.exists()
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in shards.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    victim = min(bad.glob("*.npz"))
    victim.write_bytes(victim.read_bytes()[:200])
    code, err = call_cli(["train", "--config", cfg, "--data", bad, "--out", run, "--quiet"])
    expect_refusal(code, err, contains=victim.name, kind=KIND)
    assert not run.exists()
    # the corrected command then runs
    code, err = call_cli(["train", "--config", cfg, "--data", shards, "--out", run, "--quiet"])
    expect_success(code, err, kind=KIND)


def test_sigkilled_training_resumes(tmp_path, shards):
    from mssfs.model.checkpoint import list_checkpoints, load_checkpoint

    cfg = _config(tmp_path / "c.json", steps=400)
    run = tmp_path / "run"
    p = start_cli(["train", "--config", cfg, "--data", shards, "--out", run, "--quiet"])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list_checkpoints(run)) < 2 and p.poll() is None:
        time.sleep(0.2)
    time.sleep(random.Random(5).uniform(0.0, 0.5))
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    found = list_checkpoints(run)
    assert found, "the run was killed before its first checkpoint"
    for _, path in found:
        load_checkpoint(path)  # every checkpoint on disk is whole
    step = found[-1][0]
    code, err = call_cli(["train", "--resume", run, "--steps", str(step + 2), "--quiet"])
    expect_success(code, err, kind=KIND)
    assert list_checkpoints(run)[-1][0] == step + 2


# --------------------------------------------------------------------------- depth, analyze


@pytest.fixture()
def sample_dir(tmp_path):
    y, x = np.mgrid[-1:1:32j, -1:1:32j]
    v = np.stack([x, y, np.full_like(x, 1.5)], -1)
    n = np.repeat((v / np.linalg.norm(v, axis=-1, keepdims=True))[None], 6, 0)
    folder = tmp_path / "samples" / "ball"
    folder.mkdir(parents=True)
    np.save(folder / "normals.npy", n.astype(np.float32))
    np.save(folder / "mask.npy", np.ones((32, 32), bool))
    return folder


def test_concurrent_depth_overwrite_runs_do_not_collide(sample_dir):
    before = snapshot(sample_dir)
    procs = [start_cli(["depth", sample_dir, "--overwrite"]) for _ in range(3)]
    codes = []
    for p in procs:  # each run finishes, or is refused at once while another one writes
        code, err = p.wait(timeout=180), p.stderr.read()
        codes.append(code)
        if code == 0:
            expect_success(code, err, kind=KIND)
        else:
            expect_refusal(code, err, contains="another mssfs depth run", kind=KIND)
    assert 0 in codes
    assert_kept(before, sample_dir, kind=KIND)
    info = json.loads((sample_dir / "depth.json").read_text())
    for entry in info["samples"]:
        assert np.load(sample_dir / entry["depth_npy"]).shape == (32, 32)
    assert not [p for p in sample_dir.iterdir() if p.name.startswith(".")]


def test_sigkilled_depth_then_rerun(sample_dir):
    before = snapshot(sample_dir)
    p = start_cli(["depth", sample_dir, "--overwrite"])
    time.sleep(random.Random(7).uniform(2.0, 5.0))
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    assert_kept(before, sample_dir, kind=KIND)
    for f in sample_dir.glob("depth_*.npy"):  # whatever was written is whole
        assert np.load(f).shape == (32, 32)
    code, err = call_cli(["depth", sample_dir, "--overwrite"])
    expect_success(code, err, kind=KIND)
    assert not [p for p in sample_dir.iterdir() if p.name.startswith(".")]


def test_readers_skip_temporary_folders(sample_dir):
    parent = sample_dir.parent
    partial = parent / ".ball.tmp-abc12345"
    partial.mkdir()
    (partial / "normals.npy").write_bytes(b"\x93NUMPY partial")
    for command in (["analyze", parent, "--no-plot"], ["depth", parent]):
        code, err = call_cli(command)
        expect_success(code, err, kind=KIND)
        assert "temporary" in err
    assert sorted(p.name for p in partial.iterdir()) == ["normals.npy"]
    code, err = call_cli(["analyze", partial])
    expect_refusal(code, err, contains="temporary", kind=KIND)


# --------------------------------------------------------------------------- unwritable places


@pytest.mark.parametrize("command", [
    ["data", "make", "--n", "2", "--size", "32", "--out", "FILE/sub"],
    ["data", "preview", "generated", "--n", "2", "--size", "32", "--out", "FILE/sheet.png"],
    ["export", "NOCKPT", "--out", "FILE/exp"],
    ["analyze", "FILE/x"],
    ["depth", "FILE/x"],
    ["train", "--config", "CFG", "--out", "FILE/run", "--quiet"],
])
def test_paths_under_a_file_are_refused(tmp_path, command):
    f = tmp_path / "file"
    f.write_text("x")
    _config(tmp_path / "c.json")
    args = [a.replace("FILE", str(f)).replace("NOCKPT", str(tmp_path / "none.safetensors"))
            .replace("CFG", str(tmp_path / "c.json")) for a in command]
    code, err = call_cli(args)
    expect_refusal(code, err, kind=KIND)
    assert f.read_text() == "x"
