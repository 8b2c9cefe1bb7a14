"""Fault injection, generated cases: fuzzed schedule files and option values, degenerate sample sets.

Schedules and options go through ``mssfs sample --check`` (every check of a run, no
sampling), a few of the accepted ones through a real run.  Each case must end in one
error line with exit code 2 or in success; never a traceback.  The generators are seeded,
so the cases (and their counts in docs/reliability.md) are the same on every run.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from faults_support import (
    TINY_SCHEDULE,
    call_cli,
    expect_refusal,
    expect_success,
    run_cli,
    shading_png,
    tiny_export,
)

KIND = "fuzz"
N_SCHEDULES = 200
N_OPTIONS = 100

HOSTILE = [0, -1, -32, 1.5, 32.5, "32", "no", "yes", True, False, None, [], {}, [32], 1e9, 160000, 2**63,
           float("inf"), float("nan"), "", "x" * 50, 1e-300]
FRIENDLY = {"resolution": [32, 48, 64, 32.0], "lr": [0, 0.5, 1, 10], "restart_t": [299, 232, 100, 0],
            "guidance_start_t": [299, 250, 0], "lighting": [True, False], "region_flips": [True, False],
            "inner_iters_high": [0, 1, 2], "inner_iters_low": [0, 1], "num_steps": [2, 3, 4],
            "fuse_last": [1], "seam_weight": [0, 1, 2.5], "shading_weight": [0, 1], "lr_decay": [1.5, 1],
            "grad_clip": [5, 0.1], "late_t": [55, 0], "high_iters_min_t": [207, 0]}
STAGE_KEYS = ["resolution", "lr", "restart_t", "guidance_start_t", "lighting", "region_flips", "inner_iters_high",
              "inner_iters_low", "seam_weight", "shading_weight", "lr_decay", "grad_clip", "late_t",
              "high_iters_min_t", "lighting_restart_t", "integrability_weight"]
TOP_KEYS = ["num_steps", "fuse_last", "min_pixels", "flip_threshold", "region_threshold", "flat_gradient",
            "final_region_flips", "name", "description"]


def fuzzed_schedule(rng: random.Random):
    """A mutation of the tiny schedule: 1-3 fields set to friendly or hostile values,
    keys dropped or invented, or the structure replaced."""
    d = json.loads(json.dumps(TINY_SCHEDULE))
    if rng.random() < 0.3:
        d["stages"].append(dict(d["stages"][0], restart_t=232))
    for _ in range(rng.randint(1, 3)):
        r = rng.random()
        stage = rng.choice(d["stages"]) if isinstance(d.get("stages"), list) and d["stages"] else None
        if r < 0.45 and isinstance(stage, dict):
            key = rng.choice(STAGE_KEYS)
            stage[key] = rng.choice(FRIENDLY.get(key, [1]) + HOSTILE) if rng.random() < 0.5 else rng.choice(HOSTILE)
        elif r < 0.75:
            key = rng.choice(TOP_KEYS)
            d[key] = rng.choice(FRIENDLY.get(key, [1]) + HOSTILE)
        elif r < 0.82:
            d.pop(rng.choice(["name", "stages", "num_steps", "fuse_last"]), None)
        elif r < 0.88 and isinstance(stage, dict):
            stage.pop(rng.choice(["resolution", "lr", "restart_t"]), None)
        elif r < 0.93:
            d[rng.choice(["stage", "Stages", "extra"])] = 1
        else:
            d["stages"] = rng.choice([[], "stages", 3, {"resolution": 32}, [None], [[32, 1]]])
    if rng.random() < 0.03:
        return rng.choice([[], "just text", 42, None])
    return d


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults_fuzz")
    return SimpleNamespace(root=root, model=tiny_export(root / "model"), image=shading_png(root / "ball.png"))


def _write(path: Path, data, as_yaml: bool) -> Path:
    if as_yaml:
        import yaml

        path = path.with_suffix(".yaml")
        try:
            path.write_text(yaml.safe_dump(data))
        except yaml.YAMLError:
            path.write_text(json.dumps(data))  # YAML cannot write it: JSON text is YAML too
    else:
        path.write_text(json.dumps(data))
    return path


def test_fuzzed_schedule_files(env, tmp_path):
    rng = random.Random(2028)
    accepted = []
    for k in range(N_SCHEDULES):
        data = fuzzed_schedule(rng)
        path = _write(tmp_path / f"s{k}.json", data, as_yaml=rng.random() < 0.3)
        code, err = call_cli(["sample", env.image, "--model", env.model, "--schedule", path, "--samples", "1",
                              "--out", tmp_path / "o", "--check"])
        if code == 0:
            expect_success(code, err, kind=KIND)
            accepted.append(path)
        else:
            expect_refusal(code, err, kind=KIND)
    assert 10 < len(accepted) < N_SCHEDULES - 50  # the generator makes both kinds
    from mssfs.sampler.schedules import load_schedule

    small = [p for p in accepted if load_schedule(p).total_cost()[1] <= 400][:4]
    assert small
    for k, path in enumerate(small):  # accepted schedules do run
        code, err = call_cli(["sample", env.image, "--model", env.model, "--schedule", path, "--samples", "1",
                              "--out", tmp_path / f"run{k}"])
        expect_success(code, err, kind=KIND)
        assert np.isfinite(np.load(tmp_path / f"run{k}" / "ball" / "normals.npy")).all()


OPTION_VALUES = {
    "--samples": ["1", "2", "0", "-3", "abc", "1000000000", "200000", "1.5", ""],
    "--seed": ["0", "7", "-1", "x", "99999999999999999999"],
    "--batch-samples": ["1", "0", "-2", "z"],
    "--chunk-patches": ["1", "64", "0", "-1"],
    "--workers": ["1", "2", "0", "many"],
    "--device": ["cpu", "cuda:99", "tpu", "", "cpu:0", "cuda:-1"],
    "--preset": ["paper", "fast", "slow"],
    "--max-value": ["255", "0", "-1", "nan", "inf", "1e400", "abc"],
    "--mask": ["MISSING", "IMAGE", "TEXT"],
}


def test_fuzzed_option_values(env, tmp_path):
    rng = random.Random(928)
    text = tmp_path / "t.txt"
    text.write_text("no mask")
    for _ in range(N_OPTIONS):
        args = ["sample", env.image, "--model", env.model, "--out", tmp_path / "o", "--check"]
        for flag in rng.sample(sorted(OPTION_VALUES), rng.randint(1, 3)):
            value = rng.choice(OPTION_VALUES[flag])
            value = {"MISSING": tmp_path / "none.png", "IMAGE": env.image, "TEXT": text}.get(value, value)
            args += [flag, value]
        if "--preset" not in args:
            args += ["--schedule", _write(tmp_path / "tiny.json", TINY_SCHEDULE, False)]
        code, err = call_cli(args)
        if code == 0:
            expect_success(code, err, kind=KIND)
        else:
            expect_refusal(code, err, kind=KIND)


# --------------------------------------------------------------------------- degenerate sets


def _set(folder: Path, normals: np.ndarray) -> None:
    folder.mkdir(parents=True)
    np.save(folder / "normals.npy", normals.astype(np.float32))


def test_degenerate_sample_sets_are_analysed_without_crashing(tmp_path):
    rng = np.random.default_rng(0)
    flat = np.zeros((12, 24, 24, 3))
    flat[..., 2] = 1
    y, x = np.mgrid[-1:1:24j, -1:1:24j]
    z = np.sqrt(np.clip(1.2 - x**2 - y**2, 0.05, None))
    bump = np.stack([x, y, z], -1) / np.linalg.norm(np.stack([x, y, z], -1), axis=-1, keepdims=True)
    near = np.repeat(bump[None], 12, 0) + rng.normal(0, 1e-7, (12, 24, 24, 3))
    sets = {
        "flat12": flat, "bump12": np.repeat(bump[None], 12, 0), "near12": near, "one": bump[None],
        "two": np.repeat(bump[None], 2, 0), "flat1": flat[:1], "mixed": np.concatenate([np.repeat(bump[None], 10, 0), flat[:3]]),
    }
    for name, normals in sets.items():
        _set(tmp_path / "sets" / name, normals)
    proc = run_cli(["analyze", tmp_path / "sets", "--no-plot"], timeout=300)  # a crash must not take pytest down
    expect_success(proc.returncode, proc.stderr, kind=KIND)
    for name, normals in sets.items():
        report = json.loads((tmp_path / "sets" / name / "report.json").read_text())
        assert report["n_samples"] == normals.shape[0]
        assert np.isfinite(np.asarray(report["embedding"]["coords"])).all()
        if name in ("flat12", "bump12", "near12", "two", "flat1", "one"):
            assert report["n_modes"] == 1, name
    _set(tmp_path / "empty" / "zero", np.zeros((3, 24, 24, 3)))
    code, err = call_cli(["analyze", tmp_path / "empty" / "zero"])
    expect_refusal(code, err, contains="mask is empty", kind=KIND)


def test_identical_samples_embed_to_finite_coordinates():
    from mssfs.analysis.embedding import embed

    n = np.zeros((12, 16, 16, 3))
    n[..., 2] = 1
    coords, _method = embed(n, np.ones((16, 16), bool))
    assert coords.shape == (12, 2) and np.isfinite(coords).all() and np.all(coords == coords[0])
