"""One spelling per option across sub-commands; defaults that are the best we have; help
that a pip user can follow; --out for depth and analyze; depth --overwrite leaves no stale
meshes; train --print-config."""

import json
import re

import numpy as np
import pytest
import yaml
from test_sampling import sphere_image, tiny_model, tiny_schedule

from mssfs.cli import build_parser, main
from mssfs.sampler import api


def subparsers():
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return action.choices


def option_strings(p) -> set[str]:
    return {s for a in p._actions for s in a.option_strings if a.help != "==SUPPRESS=="}


def test_one_spelling_for_quiet_precision_and_device():
    subs = subparsers()
    for name in ("sample", "evaluate", "train", "depth", "analyze"):
        opts = option_strings(subs[name])
        assert {"--quiet", "-q"} <= opts, name
        assert "--no-progress" not in opts, name
    for name in ("sample", "evaluate", "train"):
        opts = option_strings(subs[name])
        assert "--precision" in opts and "--bf16" not in opts and "--device" in opts, name
    for name in ("sample", "evaluate", "depth", "analyze"):
        assert "--out" in option_strings(subs[name]), name


def test_old_spellings_still_parse():
    subs = subparsers()
    assert subs["sample"].parse_args(["x", "--out", "o", "--bf16"]).precision == "bf16"
    assert subs["train"].parse_args(["--no-progress"]).quiet


def test_sample_defaults():
    args = subparsers()["sample"].parse_args(["img.png", "--out", "r"])
    assert (args.preset, args.device, args.resolution, args.precision) == ("fast", "auto", "auto", "auto")
    assert subparsers()["evaluate"].parse_args(["--suite", "objects", "--out", "e"]).device == "auto"


@pytest.mark.parametrize("name", ["data", "train", "export", "sample", "analyze", "depth", "evaluate"])
def test_help_cites_no_source_tree_paths(name):
    text = subparsers()[name].format_help()
    for path in ("docs/", "configs/", "DESIGN", "scripts/", "weights/"):
        assert path not in text, (name, path)
    assert not re.search(r"(?<![a-z])stop ?[0-9]", text)


def test_an_unavailable_device_is_one_line_naming_the_available_ones(tmp_path, capsys):
    code = main(["sample", "stimulus:circles", "--device", "mps", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "'mps'" in err and "available here: cpu" in err
    assert not (tmp_path / "o").exists()


@pytest.fixture
def sample_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(api, "resolve_model", lambda path, device: (tiny_model().to(device), {"path": "x"}))
    sched = tmp_path / "tiny.json"
    sched.write_text(json.dumps(tiny_schedule(num_steps=2).to_dict()))
    images = tmp_path / "images"
    images.mkdir()
    np.save(images / "ball.npy", sphere_image(32, 40))
    np.save(images / "wide.npy", sphere_image(32, 48))
    assert main(["sample", str(images), "-n", "2", "--schedule", str(sched), "--device", "cpu",
                 "--out", str(tmp_path / "s"), "-q"]) == 0  # a folder input: every image in it
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["ball", "wide"]
    return tmp_path / "s"


def test_depth_out_and_overwrite_remove_replaced_meshes(sample_dir, tmp_path):
    shapes = tmp_path / "shapes"
    assert main(["depth", str(sample_dir), "--mesh", "obj", "--out", str(shapes), "-q"]) == 0
    assert not list(sample_dir.glob("*/mesh_*"))  # the sample folders are untouched
    assert sorted(p.name for p in (shapes / "ball").glob("mesh_*")) == ["mesh_00.obj", "mesh_01.obj"]
    assert main(["depth", str(sample_dir), "--mesh", "ply", "--out", str(shapes), "-q"]) == 2  # no overwrite
    assert main(["depth", str(sample_dir), "--mesh", "ply", "--out", str(shapes), "--overwrite", "-q"]) == 0
    assert sorted(p.name for p in (shapes / "ball").glob("mesh_*")) == ["mesh_00.ply", "mesh_01.ply"]
    assert main(["depth", str(sample_dir / "wide"), "--mesh", "none", "--overwrite", "-q"]) == 0
    assert not list((sample_dir / "wide").glob("mesh_*")) and (sample_dir / "wide" / "depth_01.npy").exists()


def test_analyze_out(sample_dir, tmp_path):
    assert main(["analyze", str(sample_dir), "--out", str(tmp_path / "reports"), "--no-plot", "-q"]) == 0
    assert (tmp_path / "reports" / "ball" / "report.json").exists()
    assert (tmp_path / "reports" / "wide" / "spread.npy").exists()
    assert not (sample_dir / "ball" / "report.json").exists()


def test_train_print_config_round_trips(tmp_path, capsys):
    assert main(["train", "--print-config", "--steps", "7"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["steps"] == 7 and "model" in cfg and cfg["device"] == "auto"
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", "--config", str(tmp_path / "c.yaml"), "--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == cfg
