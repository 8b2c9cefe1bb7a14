"""Fault injection, inputs: corrupt, truncated and mismatched weights; oversized and odd-range images.

Each case is refused before any sampling with one error line and exit code 2, or runs.
"""

from __future__ import annotations

import json
import shutil
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from faults_support import (
    call_cli,
    expect_refusal,
    expect_success,
    fault_env,
    tiny_export,
)

KIND = "inputs"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return fault_env(tmp_path_factory.mktemp("faults_in"))


def sample(env, out, image=None, model=None, *extra):
    n = [] if "--samples" in extra else ["--samples", "1"]
    return call_cli(["sample", str(image or env.image), "--model", str(model or env.model), "--schedule",
                     str(env.schedule), *n, "--out", str(out), *extra])


# --------------------------------------------------------------------------- weights


def _broken_models(env, root: Path):
    """``(name, folder, words the error must contain)`` for every way an export can be broken."""
    cases = []

    def copy(name):
        dst = root / name
        shutil.copytree(env.model, dst)
        return dst

    def edit_config(folder, fn):
        cfg = json.loads((folder / "config.json").read_text())
        fn(cfg)
        (folder / "config.json").write_text(json.dumps(cfg))
        return folder

    cases.append(("typo", root / "no-such-model", "no such model folder"))
    empty = root / "empty"
    empty.mkdir()
    cases.append(("no config", empty, "config.json"))
    d = copy("truncated")
    w = d / "model.safetensors"
    w.write_bytes(w.read_bytes()[:-100])
    cases.append(("truncated weights", d, "model.safetensors"))
    d = copy("garbage-config")
    (d / "config.json").write_text("{not json")
    cases.append(("config not JSON", d, "config.json"))
    d = copy("list-config")
    (d / "config.json").write_text("[1, 2]")
    cases.append(("config a list", d, "config.json"))
    cases.append(("weights entry a string", edit_config(copy("weights-str"), lambda c: c.update(weights="model.safetensors")), "weights"))
    cases.append(("weights file outside", edit_config(copy("weights-up"), lambda c: c["weights"].update(file="../x.safetensors")), "weights"))
    cases.append(("model entry a list", edit_config(copy("model-list"), lambda c: c.update(model=[1])), "model"))
    cases.append(("model shape mismatch", edit_config(copy("mismatch"), lambda c: c["model"].update(base_width=16)), "model"))
    cases.append(("unknown model key", edit_config(copy("unknown-key"), lambda c: c["model"].update(wings=2)), "model"))
    cases.append(("schedule T wrong", edit_config(copy("bad-T"), lambda c: c["schedule"].update(T="many")), "schedule"))
    cases.append(("regression baseline", tiny_export(root / "regression", objective="regression"), "regression"))
    f = root / "a-file.txt"
    f.write_text("not a model")
    cases.append(("a text file", f, "config.json"))
    return cases


def test_broken_models_are_refused_by_sample_and_evaluate(env, tmp_path):
    cases = _broken_models(env, tmp_path)
    for name, folder, words in cases:
        code, err = sample(env, tmp_path / "out", None, folder)
        line = expect_refusal(code, err, contains=words, kind=KIND)
        assert "Traceback" not in err, name
        assert not (tmp_path / "out" / "ball").exists(), name
        assert line.startswith("mssfs sample: error:"), (name, line)
    for name, folder, words in cases[:3] + cases[-2:]:
        code, err = call_cli(["evaluate", "--suite", "stimuli", "--methods", "ours", "--n-layouts", "1",
                              "--stimuli", "none", "--samples", "1", "--model", folder, "--out", tmp_path / "ev"])
        expect_refusal(code, err, contains=words, kind=KIND)


# --------------------------------------------------------------------------- images


def _png_header_only(path: Path, width: int, height: int, bitdepth: int = 16) -> Path:
    """A PNG whose header claims ``width x height`` (grey, ``bitdepth``) with a tiny IDAT."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, bitdepth, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def test_huge_header_only_files_are_refused_before_decoding(env, tmp_path):
    png = _png_header_only(tmp_path / "huge.png", 30000, 30000)  # 1.7 GB of pixels in a few bytes
    npy = tmp_path / "huge.npy"
    with open(npy, "wb") as f:
        np.lib.format.write_array_header_2_0(f, {"descr": "<u2", "fortran_order": False, "shape": (30000, 30000)})
    for path in (png, npy):
        code, err = sample(env, tmp_path / "o", path)
        expect_refusal(code, err, contains="pixels is above the limit", kind=KIND)


@pytest.mark.parametrize("kind", ["png8", "png16", "jpeg", "tiff", "npy"])
def test_one_pixel_limit_for_every_decoder(env, tmp_path, monkeypatch, kind):
    from PIL import Image

    ramp = np.tile(np.linspace(0.1, 1, 48), (48, 1))
    path = tmp_path / {"png8": "a.png", "png16": "a.png", "jpeg": "a.jpg", "tiff": "a.tif", "npy": "a.npy"}[kind]
    if kind == "png16":
        import png

        png.from_array(np.round(ramp * 65535).astype(np.uint16).tolist(), "L;16").save(str(path))
    elif kind == "tiff":
        import tifffile

        tifffile.imwrite(path, np.round(ramp * 65535).astype(np.uint16))
    elif kind == "npy":
        np.save(path, ramp)
    else:
        Image.fromarray(np.round(ramp * 255).astype(np.uint8)).save(path)
    monkeypatch.setenv("MSSFS_MAX_PIXELS", "2000")
    code, err = sample(env, tmp_path / "o", path)
    expect_refusal(code, err, contains="48x48 = 2,304 pixels is above the limit of 2,000", kind=KIND)
    monkeypatch.setenv("MSSFS_MAX_PIXELS", "3000")
    code, err = sample(env, tmp_path / "o", path, None, "--check")
    expect_success(code, err, kind=KIND)


def test_integer_data_far_below_its_type_is_diagnosed(env, tmp_path):
    from mssfs.core.images import read_image

    ramp = np.tile(np.linspace(0, 255, 40).round(), (40, 1))
    np.save(tmp_path / "int64.npy", ramp.astype(np.int64))
    code, err = sample(env, tmp_path / "o", tmp_path / "int64.npy")
    expect_refusal(code, err, contains="--max-value 255", kind=KIND)
    code, err = sample(env, tmp_path / "o", tmp_path / "int64.npy", None, "--max-value", "255")
    expect_success(code, err, kind=KIND)
    img, _ = read_image(tmp_path / "int64.npy", max_value=255)
    assert img.max() == 1.0
    # 10-bit data in a uint16 array runs, with a note that says how to give its range
    np.save(tmp_path / "ten.npy", (ramp * 4).astype(np.uint16))
    img, notes = read_image(tmp_path / "ten.npy")
    assert img.max() == pytest.approx(1020 / 65535) and any("--max-value 1023" in n for n in notes)
    img, notes = read_image(tmp_path / "ten.npy", max_value=1023)
    assert img.max() == pytest.approx(1020 / 1023) and not any("max-value" in n for n in notes)
    code, err = sample(env, tmp_path / "o", tmp_path / "ten.npy", None, "--max-value", "100")
    expect_refusal(code, err, contains="above the given maximum", kind=KIND)


def test_plain_16_bit_and_8_bit_files_get_no_range_note(tmp_path):
    from PIL import Image

    from mssfs.core.images import read_image

    ramp = np.tile(np.linspace(0, 1, 40), (40, 1))
    Image.fromarray(np.round(ramp * 255).astype(np.uint8)).save(tmp_path / "a.png")
    np.save(tmp_path / "b.npy", np.round(ramp * 65535).astype(np.uint16))
    for name in ("a.png", "b.npy"):
        img, notes = read_image(tmp_path / name)
        assert img.max() == 1.0 and not any("bits" in n for n in notes)


# --------------------------------------------------------------------------- memory


def test_runs_that_cannot_fit_in_memory_are_refused_before_work(env, tmp_path, monkeypatch):
    code, err = sample(env, tmp_path / "o", None, None, "--samples", "1000000000")
    expect_refusal(code, err, contains="--samples 1000000000 needs about", kind=KIND)
    assert not (tmp_path / "o").exists()
    monkeypatch.setenv("MSSFS_MEMORY_BYTES", "300000000")
    code, err = sample(env, tmp_path / "o", None, None, "--samples", "200", "--check")
    expect_success(code, err, kind=KIND)
    assert "at a time (set --batch-samples to choose)" in err
    monkeypatch.setenv("MSSFS_MEMORY_BYTES", "1000")
    code, err = sample(env, tmp_path / "o", None, None, "--samples", "2")
    expect_refusal(code, err, contains="available", kind=KIND)
    assert not (tmp_path / "o").exists()
