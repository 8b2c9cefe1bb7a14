"""The research studies in experiments/ run on tiny inputs; experiments/validation_loss.py scores an
export exactly as its run's own validation did."""

import re

import numpy as np
import pytest
from repo_files import load_repo_module

from mssfs.model.unet import UNetConfig
from mssfs.model.weights import export_checkpoint
from mssfs.train.config import TrainConfig
from mssfs.train.trainer import train


def _load_experiment(name):
    return load_repo_module("experiments", name)


def test_validation_loss_script_matches_the_runs_own_validation(tmp_path, capsys):
    mod = _load_experiment("validation_loss")
    cfg = TrainConfig(model=UNetConfig(base_width=8, mults=(1, 2), res_blocks=1, attn_heads=1, attn_head_dim=8,
                                       time_sin_dim=8, time_dim=16),
                      steps=4, patches_per_step=4, image_size=32, val_patches=8, val_every=4, log_every=2,
                      checkpoint_every=4, warmup_steps=1, precision="fp32", keep_checkpoints=0, device="cpu")
    tr = train(cfg, tmp_path / "run", progress=False)  # procedural data, as the script re-creates it
    export_checkpoint(tmp_path / "run", tmp_path / "exp")
    assert mod.main(["--run", str(tmp_path / "run"), str(tmp_path / "exp")]) == 0
    score = float(re.search(r"\| \S*exp \| ([0-9.]+) \|", capsys.readouterr().out).group(1))
    assert score == pytest.approx(tr.last_val, rel=1e-4)

    # --by-t: two equal t ranges of 4 patches each (t evenly spread), so their mean is the
    # unweighted loss; min-SNR weights are <= 1, so the weighted loss is not larger
    plot = tmp_path / "val.png"
    assert mod.main(["--run", str(tmp_path / "run"), str(tmp_path / "exp"), "--by-t", "2", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "| t 0-149 | t 150-299 |" in out
    row = next(line for line in out.splitlines() if line.startswith(f"| {tmp_path / 'exp'} |"))
    total, weighted, low, high = (float(v) for v in row.strip(" |").split(" | ")[1:])
    assert total == pytest.approx(score, rel=1e-5)
    assert (low + high) / 2 == pytest.approx(total, rel=1e-3) and weighted <= total
    assert plot.is_file() and plot.stat().st_size > 1000
    assert mod.seen_in_all([str(tmp_path / "exp")]) == [4 * 4]  # 4 steps of 4 patches, no init
    import json
    import shutil

    child = tmp_path / "child"  # an export continued from "exp" adds exp's count; its own init count otherwise
    shutil.copytree(tmp_path / "exp", child)
    cfg_child = json.loads((child / "config.json").read_text())
    parent_sha = cfg_child["weights"]["sha256"]
    cfg_child["weights"]["sha256"] = "0" * 64
    cfg_child["training"].update(patches_seen=10, init={"sha256": parent_sha, "patches_seen": 999})
    (child / "config.json").write_text(json.dumps(cfg_child))
    assert mod.seen_in_all([str(child), str(tmp_path / "exp")]) == [26, 16]
    assert mod.seen_in_all([str(child)]) == [10 + 999]


def test_clustering_diagnostics_reads_a_sample_folder(tmp_path, capsys):
    import json

    import numpy as np

    from mssfs.analysis.layouts import generated_bump_dent_layout

    mod = _load_experiment("clustering_diagnostics")
    lay = generated_bump_dent_layout(7, 64)
    inverted = lay.normals * np.array([-1.0, -1.0, 1.0])
    folder = tmp_path / "s"
    folder.mkdir()
    np.save(folder / "normals.npy", np.stack([lay.normals, lay.normals, inverted]).astype(np.float32))
    np.save(folder / "image.npy", lay.image.astype(np.float32))
    (folder / "meta.json").write_text(json.dumps({"stem": "s", "n_samples": 3}))
    k = len(lay.layout)
    assert mod.main([str(folder), "--regions", str(k), "--sizes", "32", "--against", str(folder)]) == 0
    out = capsys.readouterr().out
    inside = re.search(r"in the \d+ regions: ([0-9.]+)-([0-9.]+) of the total; they cover ([0-9.]+)", out)
    assert float(inside.group(1)) > float(inside.group(3))  # a true layout's curvature sits in its features
    assert "same region reading: 0.00 (1 pairs)" in out  # the two identical samples
    assert "modes at the default cut: 2" in out
    assert "max 0.00 degrees" in out
    assert mod.main([str(tmp_path / "missing")]) == 2


def test_fused_vs_samples_scores_prefixes_as_runs_with_fewer_samples(tmp_path, monkeypatch, capsys):
    """The k-prefix rows equal a run drawing k samples, and the reference is paired per image."""
    import json

    from test_sampling import tiny_model

    import mssfs.model.weights

    mod = _load_experiment("fused_vs_samples")
    monkeypatch.setattr(mssfs.model.weights, "load_model", lambda path=None, device="cpu": tiny_model().to(device))
    common = ["--n-objects", "2", "--n-reliefs", "1", "--size", "32", "--model", "tiny"]
    assert mod.main([*common, "--samples", "2", "--prefixes", "1,2", "--out", str(tmp_path / "two.json")]) == 0
    assert mod.main([*common, "--samples", "3", "--prefixes", "2,3", "--out", str(tmp_path / "three.json")]) == 0
    two = json.loads((tmp_path / "two.json").read_text())["items"]
    three = json.loads((tmp_path / "three.json").read_text())["items"]
    assert [r["item"] for r in two] == [r["item"] for r in three] and len(two) == 3
    for a, b in zip(two, three):
        for s in ("mean", "best", "fused"):
            assert abs(a["k"]["2"][s] - b["k"]["2"][s]) < 0.5  # same samples up to float rounding
        one = a["k"]["1"]  # one sample: all alike (fused renormalises it: equal to float rounding)
        assert one["best"] == one["mean"] and one["fused"] == pytest.approx(one["mean"], abs=1e-9)
    ref = {"items": {"regression": [{"item": r["item"], "mean": {"mean": r["k"]["2"]["fused"] + 1.0}} for r in two]}}
    (tmp_path / "ref.json").write_text(json.dumps(ref))
    capsys.readouterr()
    assert mod.main([*common, "--samples", "2", "--prefixes", "2", "--reference", str(tmp_path / "ref.json")]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| objects | 2 |")]
    assert len(rows) == 1 and rows[0].rstrip(" |").endswith("-1.00° ± 0.00; 2/2; 0.500")
    a, b = mod.fit_limit([1, 2, 4, 8], [30 + 6 / k for k in (1, 2, 4, 8)])
    assert abs(a - 30) < 1e-9 and abs(b - 6) < 1e-9  # the limit with endless samples
    with pytest.raises(SystemExit):
        mod.main([*common, "--samples", "2", "--prefixes", "3"])
    capsys.readouterr()  # a saved run re-printed without sampling gives the same rows
    assert mod.main(["--from-json", str(tmp_path / "two.json"), "--samples", "2", "--prefixes", "1,2"]) == 0
    reprinted = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| objects | 2 |")]
    k2 = [r["k"]["2"]["best"] for r in two if r["kind"] == "objects"]
    assert len(reprinted) == 1 and f"| {sum(k2) / len(k2):.1f}° |" in reprinted[0]


def test_fused_vs_samples_prefix_scores_equal_the_suites_scoring():
    import numpy as np

    from mssfs.core.frame import normalize
    from mssfs.evaluation.metrics import score_samples

    mod = _load_experiment("fused_vs_samples")
    rng = np.random.default_rng(0)
    gt = normalize(rng.normal(size=(32, 32, 3)) + [0, 0, 2])
    mask = rng.random((32, 32)) > 0.2
    samples = normalize(rng.normal(size=(6, 32, 32, 3)) + [0, 0, 1.5]).astype(np.float32)
    scores = mod.score_prefixes(samples, gt, mask, [1, 4, 6])
    for k, got in scores.items():
        ref = score_samples(samples[:k], gt, mask)
        assert got == pytest.approx({"mean": ref.mean["mean"], "best": ref.best["mean"], "fused": ref.fused["mean"]})


def test_fused_vs_samples_refuses_an_out_path_in_a_missing_folder(tmp_path):
    mod = _load_experiment("fused_vs_samples")
    with pytest.raises(SystemExit):
        mod.main(["--n-objects", "1", "--n-reliefs", "0", "--out", str(tmp_path / "missing" / "x.json")])
    assert not (tmp_path / "missing").exists()


def test_guidance_strength_variants_and_seams(tmp_path, monkeypatch, capsys):
    """Variants scale or set stage fields; stronger guidance gives smaller seams."""
    import json

    from test_sampling import Squash, tiny_schedule

    import mssfs

    mod = _load_experiment("guidance_strength")
    base = tiny_schedule()
    doubled = mod.apply_variant(base, "lr*=2, inner_iters_low=3")
    assert [s.lr for s in doubled.stages] == [2 * s.lr for s in base.stages]
    assert all(s.inner_iters_low == 3 and isinstance(s.inner_iters_low, int) for s in doubled.stages)
    assert mod.apply_variant(base, "lighting=0").stages[0].lighting is False
    with pytest.raises(ValueError, match="speed"):
        mod.apply_variant(base, "speed=2")
    with pytest.raises(ValueError, match="whole number"):
        mod.apply_variant(base, "inner_iters_low=2.5")

    import numpy as np

    from mssfs.core.frame import normalize
    from mssfs.core.integrate import normals_from_depth

    yy, xx = np.mgrid[0:32, 0:32] / 32.0
    smooth = normals_from_depth(np.sin(3 * xx) * np.cos(2 * yy))[None]  # a height field: no curl
    noisy = normalize(np.random.default_rng(0).normal(size=(1, 32, 32, 3)) + [0, 0, 2])
    full = np.ones((32, 32), bool)
    assert mod.curl(smooth, full)[1] < 0.05 < mod.curl(noisy, full)[1]

    (tmp_path / "tiny.json").write_text(json.dumps(base.to_dict()))
    monkeypatch.setattr(mssfs, "load_model", lambda path=None, device="cpu": Squash())
    out = tmp_path / "g.json"
    argv = ["--base", str(tmp_path / "tiny.json"), "--size", "64", "--samples", "2", "--model", "squash",
            "--variant", "lr=0", "--out", str(out)]
    assert mod.main(argv) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["variant"] for r in rows] == ["tiny", "lr=0"] and len(rows[0]["seam_stages"]) == 3
    assert rows[0]["seam_output"] < rows[1]["seam_output"]  # guidance removes seams
    assert all(0 <= r["consistent"] <= 1 and r["tilt"] > 0 for r in rows)  # circles: scored by regions
    table = capsys.readouterr().out
    assert "| lr=0 |" in table and "seam, stage 3 (48)" in table
    assert mod.main([*argv[:-2], "--out", str(tmp_path / "missing" / "g.json")]) == 2
    assert mod.main(["--variant", "nonsense"]) == 2


def test_mode_samples_keeps_layout_samples_and_scores_them(tmp_path, monkeypatch, capsys):
    """experiments/mode_samples.py writes each layout's samples with their region readings, and
    --score clusters them with both distances."""
    import numpy as np
    from test_sampling import tiny_model

    import mssfs.model.weights
    from mssfs.analysis.layouts import generated_bump_dent_layout
    from mssfs.analysis.regions import region_readings
    from mssfs.data.shapes import HELDOUT_SEED_BASE
    from mssfs.evaluation.items import LAYOUT_SEED_OFFSET

    mod = _load_experiment("mode_samples")
    monkeypatch.setattr(mssfs.model.weights, "load_model", lambda path=None, device="cpu": tiny_model().to(device))
    out = tmp_path / "m.npz"
    assert mod.main(["--layouts", "3:5", "--samples", "2", "--size", "32", "--out", str(out)]) == 0
    z = np.load(out)
    assert sorted(z.files) == sorted(f"{a}_{k}" for a in ("normals", "image", "regions", "layout", "readings") for k in (3, 4))
    lay = generated_bump_dent_layout(HELDOUT_SEED_BASE + LAYOUT_SEED_OFFSET + 4, 32)
    np.testing.assert_array_equal(z["layout_4"], lay.layout)
    np.testing.assert_allclose(z["image_4"], lay.image, atol=1e-6)
    n = z["normals_4"]
    assert n.shape == (2, 32, 32, 3) and n.dtype == np.float16
    # the kept readings are those of the kept samples (read here from their float16 copy)
    agree = region_readings(n.astype(np.float64), z["regions_4"], lay.mask) == z["readings_4"]
    assert agree.all()
    assert not list(tmp_path.glob("*.partial.npz"))
    capsys.readouterr()
    assert mod.main(["--score", str(out)]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith(f"| {out} |")]
    assert [r.split("|")[2].strip() for r in rows] == ["signs", "readings"]
    with pytest.raises(SystemExit, match="exists"):
        mod.main(["--layouts", "0:1", "--out", str(out)])
    with pytest.raises(SystemExit, match="START:STOP"):
        mod.main(["--layouts", "2", "--out", str(tmp_path / "x.npz")])
    with pytest.raises(SystemExit, match="does not exist"):
        mod.main(["--layouts", "0:1", "--out", str(tmp_path / "no" / "x.npz")])
    with pytest.raises(SystemExit, match="no such file"):
        mod.main(["--score", str(tmp_path / "missing.npz")])


def test_oracle_sampler_reads_the_layouts_as_one_of_their_two_readings(tmp_path, capsys):
    """With the ideal two-reading denoiser, each sample is one of the two readings and the
    circles-like layout is consistent with one light (docs/results.md)."""
    import json

    mod = _load_experiment("oracle_sampler")
    out = tmp_path / "oracle.json"
    assert mod.main(["--methods", "fast", "--layouts", "1", "--samples", "2", "--size", "64", "--out", str(out)]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| fast |")]
    assert len(rows) == 1
    items = json.loads(out.read_text())["results"]["fast"]
    assert "circles-like" in items and len(items) == 2
    assert items["circles-like"]["consistent"] == 1.0
    assert all(r["error_to_nearer_reading"] < 5 for r in items.values())


def test_profile_train_step_prints_a_step_time_and_an_operator_table(capsys):
    mod = _load_experiment("profile_train_step")
    assert mod.main(["--device", "cpu", "--patches", "2", "--bf16", "false", "--rows", "3"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"cpu 2 patches, bf16 false, channels_last False: [0-9.]+ ms/step", out)
    assert "Self CPU" in out and "backward" in out


def test_tilt_axis_accuracy_measures_the_axis_against_each_reliefs_light(tmp_path, capsys):
    import json

    mod = _load_experiment("tilt_axis_accuracy")
    out = tmp_path / "axis.json"
    assert mod.main(["--n-reliefs", "3", "--size", "32", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["summary"]["reliefs"] == 3 and len(data["items"]) == 3
    assert all(0 <= r["error_deg"] <= 90 and 0 <= r["lateral"] <= 1 for r in data["items"])
    assert "| all | 3 |" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        mod.main(["--n-reliefs", "0"])
    with pytest.raises(SystemExit):  # refused before any work, nothing written
        mod.main(["--n-reliefs", "1", "--out", str(tmp_path / "missing" / "x.json")])
    assert not (tmp_path / "missing").exists()


def test_refinement_check_summary_pairs_two_scorings(tmp_path, capsys):
    import json

    check = _load_experiment("refinement_check")
    rows = [{"ref_mean": 30.0 + k, "ref_best": 20.0, "ref_fused": 25.0 + k, "ref2_mean": 20.0 + k,
             "ref2_best": 20.5 - (k % 2), "ref2_fused": 18.0 + k, "refine_s": 1.0, "refine2_s": 0.5,
             "classical": 16.0 + k} for k in range(8)]
    files = []
    for part in (rows[:5], rows[5:]):  # items of several files are pooled
        files.append(tmp_path / f"part{len(files)}.json")
        files[-1].write_text(json.dumps({"items": part}))
    assert check.main(["--summary", *map(str, files), "--pair", "ref,ref2", "--out", str(tmp_path / "s.json")]) == 0
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["n"] == 8 and s["pair"] == ["ref", "ref2"]
    assert s["fused"]["diff"] == pytest.approx(-7.0) and s["fused"]["lower"] == 8 and s["fused"]["p"] < 0.01
    assert s["mean"]["diff"] == pytest.approx(-10.0)
    assert s["best"]["diff"] == pytest.approx(0.0) and s["best"]["lower"] == 4
    assert s["fused"]["diff_classical"] == pytest.approx(2.0)
    assert s["time_ratio"] == pytest.approx(0.5)
    with pytest.raises(SystemExit):
        check.main(["--out", str(tmp_path / "x.json")])  # neither a split nor --summary
    # --versus: scoring B from another run on the same items, paired by name
    named = [dict(r, item=f"o{k}") for k, r in enumerate(rows)]
    other = [dict(r, item=f"o{k}", ref_fused=r["ref_fused"] - 1.0 - k % 2) for k, r in enumerate(rows)][::-1]
    (tmp_path / "a.json").write_text(json.dumps({"items": named}))
    (tmp_path / "b.json").write_text(json.dumps({"items": other}))
    assert check.main(["--summary", str(tmp_path / "a.json"), "--versus", str(tmp_path / "b.json"), "--pair", "ref,ref",
                       "--out", str(tmp_path / "v.json")]) == 0
    v = json.loads((tmp_path / "v.json").read_text())
    assert v["fused"]["diff"] == pytest.approx(-1.5) and v["fused"]["lower"] == 8 and v["mean"]["diff"] == 0.0
    assert v["fused"]["ref_versus"] == pytest.approx(v["fused"]["ref"] - 1.5) and v["mean"]["p"] == 1.0
    (tmp_path / "c.json").write_text(json.dumps({"items": other[:3]}))
    with pytest.raises(SystemExit):  # not the same items
        check.main(["--summary", str(tmp_path / "a.json"), "--versus", str(tmp_path / "c.json"), "--out", str(tmp_path / "w.json")])
    # FILE@TAG: that file's scoring TAG pools as the pair's first scoring
    assert check.main(["--summary", f"{files[0]}@ref2", str(files[1]), "--pair", "ref,ref",
                       "--out", str(tmp_path / "p.json")]) == 0
    p = json.loads((tmp_path / "p.json").read_text())
    expected = [r["ref2_fused"] for r in rows[:5]] + [r["ref_fused"] for r in rows[5:]]
    assert p["fused"]["ref"] == pytest.approx(np.mean(expected))
    assert p["fused"]["diff_classical"] == pytest.approx(np.mean(expected) - np.mean([r["classical"] for r in rows]))
    assert p["fused"]["lower_classical"] == 0 and p["fused"]["se_classical"] > 0
    assert p["time_ratio"] == 1.0
    # in a --versus file the tag stands for the pair's second scoring
    assert check.main(["--summary", str(tmp_path / "a.json"), "--versus", f"{tmp_path / 'b.json'}@ref2",
                       "--pair", "ref,ref", "--out", str(tmp_path / "t.json")]) == 0
    t = json.loads((tmp_path / "t.json").read_text())
    assert t["fused"]["ref_versus"] == pytest.approx(np.mean([r["ref2_fused"] for r in other]))
    assert t["fused"]["ref"] == pytest.approx(np.mean([r["ref_fused"] for r in named]))
    for bad in (f"{files[0]}@ref9", str(tmp_path / "nowhere.json")):  # no such scoring; no such file
        with pytest.raises(SystemExit):
            check.main(["--summary", bad, "--pair", "ref,ref", "--out", str(tmp_path / "q.json")])
    assert not (tmp_path / "q.json").exists()


def test_refinement_check_scores_the_baselines_alone(tmp_path):
    import json

    from mssfs.analysis.layouts import generated_bump_dent_layout
    from mssfs.analysis.seams import seam_index
    from mssfs.data.shapes import HELDOUT_SEED_BASE
    from mssfs.evaluation.baselines import classical_sfs
    from mssfs.evaluation.items import LAYOUT_SEED_OFFSET
    from mssfs.evaluation.metrics import error_metrics

    check = _load_experiment("refinement_check")
    out = tmp_path / "b.json"
    with pytest.raises(SystemExit):  # nothing to score without --baselines
        check.main(["--split", "layouts", "--first", "3", "--count", "1", "--samples", "0", "--out", str(out)])
    with pytest.raises(SystemExit):  # a negative count is refused, not read as none
        check.main(["--split", "layouts", "--first", "3", "--count", "1", "--samples", "-1", "--baselines",
                    "--out", str(out)])
    assert not out.exists()
    assert check.main(["--split", "layouts", "--first", "3", "--count", "1", "--samples", "0", "--baselines", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["baselines_only"] and len(data["items"]) == 1
    row = data["items"][0]
    lay = generated_bump_dent_layout(HELDOUT_SEED_BASE + LAYOUT_SEED_OFFSET + 3, 128)
    assert row["item"] == f"layout-{HELDOUT_SEED_BASE + LAYOUT_SEED_OFFSET + 3}"
    pred = classical_sfs(lay.image, lay.mask)
    assert row["classical"] == pytest.approx(error_metrics(pred, lay.normals, lay.mask)["mean"])
    assert row["seam_classical"] == pytest.approx(seam_index(pred, lay.mask))
    assert row["flat"] > 0 and "seam_flat" in row and not any(k.startswith(("raw_", "ref_")) for k in row)
