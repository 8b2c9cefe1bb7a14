"""The checks the release rules use, through their commands (``mssfs evaluate --compare``,
``mssfs evaluate --diagnose``, ``mssfs analyze --seed-or-image``, ``mssfs analyze --figure5``)
and their library functions."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from mssfs.cli import main
from mssfs.evaluation.compare import compare_runs, load_run_items, parse_item_range


def _write_run(path, errors, ids=None, method="ours", n_objects=8):
    """A results.json with one entry per image: ``n_objects`` objects, then reliefs."""
    items = [{"item": ids[i] if ids else f"img-{i}", "kind": "objects" if i < n_objects else "reliefs",
              **{sc: {"mean": float(e)} for sc in ("mean", "best", "fused")}} for i, e in enumerate(errors)]
    path.write_text(json.dumps({"items": {method: items}}))
    return str(path)


def _rows(out: str, prefix: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith(prefix)]


def test_compare_pairs_images_and_finds_a_consistent_gain(tmp_path, capsys):
    rng = np.random.default_rng(0)
    base = rng.uniform(20, 60, 12)  # images differ far more than the runs do
    a = _write_run(tmp_path / "a.json", base)
    better = _write_run(tmp_path / "b.json", base - 1.0 - rng.uniform(0, 0.2, 12))  # 1 degree lower everywhere
    noisy = _write_run(tmp_path / "c.json", base + rng.normal(0, 1.0, 12))
    assert main(["evaluate", "--compare", a, better]) == 0
    row = _rows(capsys.readouterr().out, "| objects | fused")[0]
    assert "8/8" in row and float(row.split("|")[-2]) < 0.05  # lower on all 8 objects, p < 0.05
    rows = compare_runs(load_run_items(a, "ours"), load_run_items(noisy, "ours"))
    assert all(r["p"] > 0.05 for r in rows if r["kind"] == "objects")  # noise alone is not a gain

    # --items: a slice of each kind's images (objects 4-7; the 4 reliefs have no images 4-7)
    assert main(["evaluate", "--compare", a, better, "--items", "4:8"]) == 0
    out = capsys.readouterr().out
    assert "| objects | fused | 4 |" in out and "| reliefs |" not in out
    rows = compare_runs(load_run_items(a, "ours"), load_run_items(better, "ours"), parse_item_range("0:2"))
    assert {r["kind"]: r["n"] for r in rows} == {"objects": 2, "reliefs": 2}
    sub = compare_runs(load_run_items(a, "ours"), load_run_items(noisy, "ours"), parse_item_range("2:5"))
    objs = [json.loads(Path(p).read_text())["items"]["ours"][2:5] for p in (a, noisy)]
    want = np.mean([y["fused"]["mean"] - x["fused"]["mean"] for x, y in zip(*objs)])
    assert next(r for r in sub if r["kind"] == "objects" and r["scoring"] == "fused")["diff"] == pytest.approx(want)

    # --kind: runs with different reliefs can still be paired on their objects
    fewer = _write_run(tmp_path / "e.json", base[:10])  # 8 objects, 2 reliefs
    assert main(["evaluate", "--compare", a, fewer]) == 2
    assert "different images" in capsys.readouterr().err
    assert main(["evaluate", "--compare", a, fewer, "--kind", "objects"]) == 0
    out = capsys.readouterr().out
    assert "| objects | fused | 8 |" in out and "reliefs" not in out.split("Wilcoxon p |")[1]
    # --items takes the slice of each run: the first 8 of a 12-object run pair with an 8-object run
    longer = _write_run(tmp_path / "f.json", np.r_[base[:8] - 2.0, rng.uniform(20, 60, 4)], n_objects=12)
    assert main(["evaluate", "--compare", a, longer, "--kind", "objects"]) == 2
    assert "different images" in capsys.readouterr().err
    assert main(["evaluate", "--compare", a, longer, "--kind", "objects", "--items", "0:8"]) == 0
    row = _rows(capsys.readouterr().out, "| objects | fused | 8 |")[0]
    assert "-2.00° ± 0.00" in row and "8/8" in row


@pytest.mark.parametrize("argv, message", [
    (["--items", "20"], "START:STOP"),
    (["--methods", "regression"], "no per-image results for method 'regression'"),
    (["--methods", "a,b,c"], "one method or two"),
])
def test_compare_refuses_bad_requests_in_one_line(tmp_path, capsys, argv, message):
    a = _write_run(tmp_path / "a.json", np.arange(12.0))
    assert main(["evaluate", "--compare", a, a, *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_compare_refuses_unreadable_files_and_stray_options(tmp_path, capsys):
    (tmp_path / "bad.json").write_text("{not json")
    a = _write_run(tmp_path / "a.json", np.arange(12.0))
    assert main(["evaluate", "--compare", a, str(tmp_path / "bad.json")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["evaluate", "--compare", a, str(tmp_path / "missing.json")]) == 2
    assert "missing.json" in capsys.readouterr().err
    assert main(["evaluate", "--suite", "objects", "--kind", "objects", "--out", str(tmp_path / "o")]) == 2
    assert "--compare" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    assert main(["evaluate", "--suite", "objects"]) == 2
    assert "--out is required" in capsys.readouterr().err


def test_compare_against_a_single_output_method(tmp_path, capsys):
    ids = [f"img-{i}" for i in range(8)]
    single = [{"item": i, "kind": "objects", "n": 1, "mean": {"mean": 30.0}, "best": {"mean": 30.0}} for i in ids]
    sampled = [{"item": i, "kind": "objects", "n": 4, "mean": {"mean": 40.0 + k}, "best": {"mean": 25.0 - k},
                "fused": {"mean": 33.0}} for k, i in enumerate(ids)]
    (tmp_path / "a.json").write_text(json.dumps({"items": {"regression": single}}))
    (tmp_path / "b.json").write_text(json.dumps({"items": {"ours": sampled}}))
    argv = ["evaluate", "--compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--methods", "regression,ours"]
    assert main(argv) == 0
    rows = {line.split("|")[2].strip(): line for line in _rows(capsys.readouterr().out, "| objects")}
    assert set(rows) == {"mean", "best", "fused"}  # the single result stands in for every scoring, fused included
    assert "30.0° | 33.0° | +3.00°" in rows["fused"] and "0/8" in rows["fused"]
    assert "8/8" in rows["best"] and "0/8" in rows["mean"]


def _sample_folder(folder, maps, seeds=(1, 2, 3, 4), image=None):
    from mssfs.core.frame import normalize

    folder.mkdir(parents=True)
    np.save(folder / "normals.npy", normalize(np.stack(maps)).astype(np.float32))
    if image is not None:
        np.save(folder / "image.npy", image.astype(np.float32))
    (folder / "meta.json").write_text(json.dumps({"stem": folder.name, "seeds": list(seeds)}))
    return folder


def test_seed_or_image_tells_seed_driven_from_image_driven_samples(tmp_path, capsys):
    from mssfs.analysis.layouts import generated_bump_dent_layout

    rng = np.random.default_rng(0)
    wiggles = [rng.normal(0, 0.15, (48, 48, 3)) for _ in range(4)]  # one pattern per seed
    layouts = [generated_bump_dent_layout(s, 48).normals for s in (1, 2)]
    flat = np.zeros((48, 48, 3))
    flat[..., 2] = 1
    for k in "ab":
        _sample_folder(tmp_path / "seed" / k, [flat + 0.3 * w for w in wiggles])
    for k, lay in zip("ab", layouts):
        _sample_folder(tmp_path / "image" / k, [lay + 0.02 * w for w in wiggles])

    def ratio(folder):
        assert main(["analyze", str(folder), "--seed-or-image", "--size", "32"]) == 0
        out = capsys.readouterr().out
        assert "compared at 32 x 32" in out
        return float(re.search(r"ratio \(images / seeds\): ([0-9.]+)", out).group(1))

    assert ratio(tmp_path / "seed") == pytest.approx(0, abs=1e-3)
    assert ratio(tmp_path / "image") > 2
    assert not list(tmp_path.rglob("report.json"))  # a check: no analysis written

    _sample_folder(tmp_path / "mixed" / "a", [flat] * 4)
    _sample_folder(tmp_path / "mixed" / "b", [flat] * 4, seeds=(5, 6, 7, 8))
    assert main(["analyze", str(tmp_path / "mixed"), "--seed-or-image"]) == 2
    assert "different seeds" in capsys.readouterr().err
    assert main(["analyze", str(tmp_path / "seed" / "a"), "--seed-or-image"]) == 2
    assert "at least two sample folders" in capsys.readouterr().err


def test_figure5_draws_the_analysed_folders(tmp_path, capsys):
    from mssfs.analysis.layouts import generated_bump_dent_layout

    for k, seed in (("circles", 1), ("rings", 2)):
        lay = generated_bump_dent_layout(seed, 32)
        inverted = lay.normals * np.array([-1.0, -1.0, 1.0])
        _sample_folder(tmp_path / "run" / k, [lay.normals, inverted, lay.normals], seeds=(0, 1, 2), image=lay.image)
    png = tmp_path / "fig5.png"
    assert main(["analyze", str(tmp_path / "run"), "--out", str(tmp_path / "reports"), "--no-plot",
                 "--figure5", str(png), "--figure-samples", "2", "-q"]) == 0
    assert png.is_file() and png.stat().st_size > 1000
    from PIL import Image

    w, h = Image.open(png).size
    assert h > w / 2  # two rows of three panels
    assert (tmp_path / "reports" / "rings" / "report.json").is_file()

    assert main(["analyze", str(tmp_path / "run"), "--figure5", str(tmp_path / "fig5.jpg")]) == 2
    assert ".png" in capsys.readouterr().err
    assert not (tmp_path / "run" / "circles" / "report.json").exists()  # refused before analysing
    from mssfs.analysis.figure5 import figure5

    with pytest.raises(ValueError, match="no report.json"):
        figure5([tmp_path / "run" / "circles"], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_diagnose_reports_patch_numbers_of_a_tiny_denoiser(monkeypatch, capsys):
    """The diagnosis of a model that ignores its shading input: the same x0 error with the
    shading and without, and a flat map's residual is about what ignoring the shading gives."""
    import torch
    from test_sampling import tiny_model

    import mssfs
    from mssfs.evaluation.diagnose import NOISE_LEVELS, diagnose_denoiser, foreground_patches, shading_fit_residual

    shading, normals, mask = foreground_patches(2)
    assert shading.shape[1:] == (1, 16, 16) and normals.shape[1:] == (3, 16, 16) and len(shading) > 0
    assert shading_fit_residual(normals, shading, mask) < 0.05  # the truth explains its shading

    class Blind(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = tiny_model()
            self.info = {"schedule": {"T": 300}}

        def forward(self, x, t, s):
            return self.net(x, t, torch.zeros_like(s))

    d = diagnose_denoiser(Blind(), n_images=2, seed=0)
    assert list(d.x0_error) == list(NOISE_LEVELS)
    assert all(w == pytest.approx(z) for w, z in d.x0_error.values())
    assert d.n_patches == len(shading) and 0 < d.ddim_error < 180 and d.truth_residual < d.flat_residual

    monkeypatch.setattr(mssfs, "load_model", lambda path=None, device="cpu": Blind())
    assert main(["evaluate", "--diagnose", "--model", "blind", "--regression-model", "blind", "--n-objects", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("blind: ") and "| 280 |" in out and "regression: error" in out
    assert main(["evaluate", "--diagnose", "--n-objects", "0"]) == 2
