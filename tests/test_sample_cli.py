"""``mssfs sample``: outputs, refusals, atomic writes and the torchrun input split."""

import json

import numpy as np
import pytest
from test_sampling import sphere_image, tiny_model, tiny_schedule

from mssfs.cli import main
from mssfs.sampler import api, result


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Tiny model instead of the package weights, a tiny schedule file and two inputs."""
    calls = []

    def fake_resolve(path, device):
        calls.append(path)
        return tiny_model().to(device), {"path": path or "default", "class": "tiny"}

    monkeypatch.setattr(api, "resolve_model", fake_resolve)
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    sched = tmp_path / "tiny.json"
    sched.write_text(json.dumps(tiny_schedule().to_dict()))
    a, b = tmp_path / "ball.npy", tmp_path / "wide.npy"
    np.save(a, sphere_image(40, 56))
    np.save(b, sphere_image(48, 32))
    return {"schedule": str(sched), "inputs": [str(a), str(b)], "calls": calls, "tmp": tmp_path}


def run(env, out, *extra, inputs=None):
    argv = ["sample", *(inputs or env["inputs"]), "--samples", "2", "--seed", "5", "--out", str(out),
            "--schedule", env["schedule"], "-q", *extra]
    return main(argv)


def test_writes_the_output_contract(env, tmp_path):
    out = tmp_path / "out"
    assert run(env, out) == 0
    d = out / "ball"
    normals = np.load(d / "normals.npy")
    assert normals.shape == (2, 40, 56, 3) and normals.dtype == np.float32
    assert np.load(d / "lights.npy").shape == (2, 3)
    assert np.load(d / "image.npy").shape == (40, 56) and np.load(d / "mask.npy").dtype == bool
    for name in ("sample_00.png", "sample_01.png", "samples.png", "stages.png"):
        assert (d / name).stat().st_size > 0
    meta = json.loads((d / "meta.json").read_text())
    for key in ("input", "stem", "preset", "seeds", "n_samples", "model", "timings"):
        assert key in meta
    assert meta["n_samples"] == 2 and meta["preset"] == "tiny" and len(meta["seeds"]) == 2
    assert np.load(out / "wide" / "normals.npy").shape == (2, 48, 32, 3)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_inputs_batched_together_give_the_same_samples(env, tmp_path, capsys):
    assert run(env, tmp_path / "one", "--batch-inputs", "no") == 0
    assert "batched with" not in capsys.readouterr().out
    assert run(env, tmp_path / "all", "--batch-inputs", "yes") == 0
    assert "batched with 1 other input(s)" in capsys.readouterr().out
    for stem in ("ball", "wide"):
        a, b = (np.load(tmp_path / d / stem / "normals.npy") for d in ("one", "all"))
        fg = np.linalg.norm(a, axis=-1) > 0
        assert np.degrees(np.arccos(np.clip((a * b).sum(-1)[fg], -1, 1))).max() < 1.0  # docs/sampling.md tolerance


def test_existing_output_needs_overwrite(env, tmp_path, capsys):
    out = tmp_path / "out"
    (out / "ball").mkdir(parents=True)
    (out / "ball" / "keep.txt").write_text("x")
    assert run(env, out) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert env["calls"] == []  # refused before loading the model
    assert (out / "ball" / "keep.txt").exists() and not (out / "wide").exists()
    assert run(env, out, "--overwrite") == 0
    assert not (out / "ball" / "keep.txt").exists() and (out / "ball" / "normals.npy").exists()


def test_bad_inputs_are_refused_cleanly(env, tmp_path, capsys):
    bad = tmp_path / "bad.npy"
    img = sphere_image()
    img[0, 0] = np.inf
    np.save(bad, img)
    assert run(env, tmp_path / "o", inputs=[env["inputs"][0], str(bad)]) == 2
    assert "NaN or infinite" in capsys.readouterr().err
    assert run(env, tmp_path / "o", inputs=["stimulus:nope"]) == 2
    assert "unknown stimulus" in capsys.readouterr().err
    assert run(env, tmp_path / "o", "--mask", "m.png") == 2  # one mask for two inputs
    assert run(env, tmp_path / "o", "--workers", "0") == 2
    assert "--workers must be >= 1" in capsys.readouterr().err
    assert env["calls"] == [] and not (tmp_path / "o").exists()


def test_interrupted_run_leaves_nothing(env, tmp_path, monkeypatch):
    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(result, "save_normals", boom)
    out = tmp_path / "out"
    assert run(env, out, inputs=[env["inputs"][0]]) == 130
    assert not out.exists()  # the folder the run created is removed too (no temporary folder, no lock)


def test_rank_split_equals_single_process(env, tmp_path, monkeypatch):
    single, split = tmp_path / "single", tmp_path / "split"
    assert run(env, single) == 0
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        assert run(env, split) == 0
        done = sorted(p.name for p in split.iterdir())
        assert done == (["ball"] if rank == 0 else ["ball", "wide"])
    for stem in ("ball", "wide"):
        np.testing.assert_array_equal(np.load(single / stem / "normals.npy"), np.load(split / stem / "normals.npy"))
    monkeypatch.setenv("RANK", "2")
    assert run(env, tmp_path / "x") == 2


def test_model_notice_is_printed_and_kept_in_meta(env, tmp_path, monkeypatch, capsys):
    def resolve_with_notice(path, device):
        return tiny_model().to(device), {"path": path or "default", "class": "tiny", "notice": "interim weights"}

    monkeypatch.setattr(api, "resolve_model", resolve_with_notice)
    out = tmp_path / "out"
    assert run(env, out, inputs=env["inputs"][:1]) == 0
    assert "note: model default: interim weights" in capsys.readouterr().err
    assert json.loads((out / "ball" / "meta.json").read_text())["model"]["notice"] == "interim weights"

