"""Fault injection, output folders: concurrent runs, SIGKILL, hostile names, unwritable and full locations.

Every case ends in one of two ways, asserted exactly: a one-line error with exit code 2,
or success with every earlier result byte-identical (faults_support.py).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from faults_support import (
    assert_kept,
    call_cli,
    cli_env,
    expect_refusal,
    expect_success,
    fault_env,
    run_cli,
    shading_png,
    snapshot,
    start_cli,
)

from mssfs.core import outputs

KIND = "outputs"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return fault_env(tmp_path_factory.mktemp("faults_out"))


def sample_args(env, inputs, out, *extra, n=2):
    return ["sample", *map(str, inputs), "--model", env.model, "--schedule", env.schedule, "--samples", str(n),
            "--out", str(out), *extra]


def complete(folder: Path, n: int = 2) -> bool:
    """A finished sample folder: normals.npy of n samples and a readable meta.json."""
    try:
        normals = np.load(folder / "normals.npy", allow_pickle=False)
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    return normals.shape[0] == n and meta["n_samples"] == n


def leftovers(out: Path) -> list[str]:
    return [p.name for p in out.iterdir() if outputs.is_temporary(p.name) or p.name.endswith(".lock")]


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(("name", "stem"), [
    ("..png", "input"), (".png", "png"), ("..", "input"), ("", "input"), ("...", "input"),
    ("a\nb", "a_b"), ("a/b", "a_b"), ("a\\b", "a_b"), (" x ", "x"), (".hidden", "hidden"),
    ("ok-name_1", "ok-name_1"), ("x" * 300, "x" * outputs.MAX_STEM),
])
def test_safe_stem_is_one_plain_name(name, stem):
    assert outputs.safe_stem(Path(name).stem if name.endswith(".png") else name) == stem
    assert outputs.check_stem(stem) == stem


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", ".x", "a\nb", ".x.tmp-abcdef12"])
def test_check_stem_refuses_names_that_leave_the_folder(bad):
    with pytest.raises(outputs.OutputError):
        outputs.check_stem(bad)


def test_hostile_input_names_never_touch_other_results(env, tmp_path):
    out = tmp_path / "results"
    code, err = call_cli(sample_args(env, [env.image], out))
    expect_success(code, err, kind=KIND)
    keep = snapshot(out)
    names = ["..png", ".png", "new\nline.png", "back\\slash.png", "sp ace.png", "-dash.png"]
    for name in names:
        src = tmp_path / "in" / name
        src.parent.mkdir(exist_ok=True)
        src.write_bytes(env.image.read_bytes())
        code, err = call_cli(sample_args(env, [src], out, "--overwrite"))
        if not Path(name).suffix:  # ".png" is a hidden file without an extension
            expect_refusal(code, err, contains="unsupported format", kind=KIND)
        else:
            expect_success(code, err, kind=KIND)
            assert complete(out / outputs.safe_stem(Path(name).stem)), name
        assert_kept({k: v for k, v in keep.items() if k.startswith("ball/")}, out, kind=KIND)
    made = {outputs.safe_stem(Path(n).stem) for n in names if Path(n).suffix}
    assert made == {"input", "new_line", "back_slash", "sp ace", "-dash"}
    assert sorted(p.name for p in out.iterdir()) == sorted({"ball", *made})


def test_stimulus_name_with_a_path_is_refused(env, tmp_path):
    code, err = call_cli(sample_args(env, ["stimulus:../../x"], tmp_path / "o"))
    expect_refusal(code, err, contains="stimulus", kind=KIND)


# --------------------------------------------------------------------------- claims


def test_second_claim_is_refused_until_the_first_is_released(tmp_path):
    first = outputs.claim(tmp_path / "o" / "a")
    assert (tmp_path / "o" / ".a.lock").exists()
    code = os.fork() if hasattr(os, "fork") else None
    if code == 0:  # child: another process must be refused while the parent holds the claim
        outputs._HELD.clear()  # the child inherited the parent's table, not its lock
        try:
            outputs.claim(tmp_path / "o" / "a")
            os._exit(1)
        except outputs.OutputError as exc:
            os._exit(0 if "another mssfs run" in str(exc) else 3)
    if code is not None:
        assert os.waitpid(code, 0)[1] == 0
    first.release()
    assert not (tmp_path / "o" / ".a.lock").exists()
    with outputs.claim(tmp_path / "o" / "a"):
        pass


def test_interrupted_overwrite_between_the_two_renames_is_undone(tmp_path, monkeypatch):
    target = tmp_path / "o" / "s"
    target.mkdir(parents=True)
    (target / "normals.npy").write_bytes(b"old result")
    tmp = outputs.make_temp_dir(tmp_path / "o", "s")
    (tmp / "normals.npy").write_bytes(b"new result")
    real = os.replace
    calls = []

    def dies_on_second(a, b):
        calls.append((a, b))
        if len(calls) == 2:
            raise KeyboardInterrupt  # the process is stopped after moving the old result aside
        real(a, b)

    monkeypatch.setattr(outputs.os, "replace", dies_on_second)
    with pytest.raises(KeyboardInterrupt):
        outputs.publish(tmp, target)
    monkeypatch.setattr(outputs.os, "replace", real)
    assert not target.exists()
    with outputs.claim(target, exist_ok=True) as c:
        assert (target / "normals.npy").read_bytes() == b"old result"
        assert any("restored" in n for n in c.notes) and any("removed 1" in n for n in c.notes)
    assert leftovers(tmp_path / "o") == []


def test_output_folders_follow_the_umask(env, tmp_path):
    old = os.umask(0o022)
    try:
        code, err = call_cli(sample_args(env, [env.image], tmp_path / "o"))
    finally:
        os.umask(old)
    expect_success(code, err, kind=KIND)
    assert (tmp_path / "o" / "ball").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "o" / "ball" / "normals.npy").stat().st_mode & 0o777 == 0o644


def test_three_concurrent_runs_into_one_folder_lose_nothing(env, tmp_path):
    out = tmp_path / "o"
    procs = [start_cli(sample_args(env, [env.image], out)) for _ in range(3)]
    results = [(p.wait(timeout=180), p.stderr.read()) for p in procs]
    wins = [r for r in results if r[0] == 0]
    assert len(wins) == 1, results
    for code, err in results:
        if code == 0:
            expect_success(code, err, kind=KIND)
        else:
            expect_refusal(code, err, kind=KIND)
            assert "another mssfs run" in err or "exists already" in err, err
    assert complete(out / "ball") and leftovers(out) == []


# --------------------------------------------------------------------------- kills


def test_sigkill_at_random_points_of_sampling_loses_nothing(env, tmp_path):
    out = tmp_path / "o"
    code, err = call_cli(sample_args(env, [env.image], out, n=3))
    expect_success(code, err, kind=KIND)
    other = tmp_path / "other.png"
    other.write_bytes(env.image.read_bytes())
    code, err = call_cli(sample_args(env, [other], out))
    expect_success(code, err, kind=KIND)
    before = snapshot(out)
    rng = random.Random(28)
    # kill points: a random moment after the run claimed its folder (model loading or
    # sampling), and the moment its temporary folder appears (while saving)
    for point in ("claimed", "saving"):
        p = start_cli(sample_args(env, [env.image], out, "--overwrite", n=24))
        deadline = time.monotonic() + 120
        while p.poll() is None and time.monotonic() < deadline:
            names = [q.name for q in out.iterdir()]
            if point == "claimed" and ".ball.lock" in names:
                time.sleep(rng.uniform(0.0, 1.5))
                break
            if point == "saving" and any(n.startswith(".ball.tmp-") for n in names):
                break
            time.sleep(0.005)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=60)
        # the old result is whole, or the new one is (if the run had finished)
        assert complete(out / "ball", 3) or complete(out / "ball", 24)
        assert_kept({k: v for k, v in before.items() if k.startswith("other/")}, out, kind=KIND)
        # readers never take the leftovers for results
        code, err = call_cli(["analyze", out, "--no-plot"])
        expect_success(code, err, kind=KIND)
        assert not any(outputs.is_temporary(p.name) for p in out.iterdir() if (p / "report.json").exists())
    code, err = call_cli(sample_args(env, [env.image], out, "--overwrite", n=3))
    expect_success(code, err, kind=KIND)
    assert leftovers(out) == []
    assert complete(out / "ball", 3)
    assert_kept({k: v for k, v in before.items() if k.startswith("other/")}, out, kind=KIND)


# --------------------------------------------------------------------------- unwritable and full


def test_out_under_a_file_is_refused_before_any_work(env, tmp_path):
    (tmp_path / "file").write_text("x")
    code, err = call_cli(sample_args(env, [env.image], tmp_path / "file" / "sub"))
    expect_refusal(code, err, contains="file", kind=KIND)
    assert (tmp_path / "file").read_text() == "x"


def test_out_where_nothing_can_be_created_is_refused(env):
    code, err = call_cli(sample_args(env, [env.image], "/proc/mssfs-no-such/out"))
    expect_refusal(code, err, contains="/proc/mssfs-no-such", kind=KIND)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_out_is_refused_before_any_work(env, tmp_path):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        code, err = call_cli(sample_args(env, [env.image], out))
    finally:
        out.chmod(0o755)
    expect_refusal(code, err, contains=str(out), kind=KIND)
    assert list(out.iterdir()) == []


def test_full_disk_during_save_keeps_earlier_results(env, tmp_path):
    import resource

    out = tmp_path / "o"
    code, err = call_cli(sample_args(env, [env.image], out))
    expect_success(code, err, kind=KIND)
    before = snapshot(out)
    other = tmp_path / "big.png"
    other.write_bytes(shading_png(tmp_path / "tmp.png", size=64).read_bytes())

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    proc = run_cli(sample_args(env, [other, env.image], out, "--overwrite", n=4), preexec_fn=limit,
                   env=cli_env(PYTHONDONTWRITEBYTECODE=1))
    expect_refusal(proc.returncode, proc.stderr, contains="nothing was half-written", kind=KIND)
    assert_kept(before, out, kind=KIND)
    assert leftovers(out) == [] and not (out / "big").exists()
