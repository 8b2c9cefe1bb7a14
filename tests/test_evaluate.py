"""``mssfs evaluate``: scoring on constructed predictions, ablation schedules, the CLI."""

import json
from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage
from test_sampling import sphere_image, tiny_model, tiny_schedule

from mssfs.analysis.layouts import generated_bump_dent_layout
from mssfs.cli import main
from mssfs.evaluation import methods as ev_methods
from mssfs.evaluation.figures import FIGURE_METHODS
from mssfs.evaluation.items import CIRCLES_LAYOUT, heldout_items, segment_features, stimulus_items
from mssfs.evaluation.methods import ablation_schedule, build_methods, method_schedule, scale_schedule
from mssfs.evaluation.metrics import (
    aggregate,
    fuse_samples,
    modes_match_readings,
    paired_difference,
    score_readings,
    score_samples,
    score_stimulus,
)
from mssfs.evaluation.runner import RunSettings, _images_per_call, _run_methods
from mssfs.sampler import api
from mssfs.sampler.schedules import get_preset


def tilted(theta_deg: float, shape=(24, 24), azimuth_deg: float = 0.0) -> np.ndarray:
    """A constant normal map tilted ``theta`` from the view direction."""
    t, a = np.radians(theta_deg), np.radians(azimuth_deg)
    n = np.array([np.sin(t) * np.cos(a), np.sin(t) * np.sin(a), np.cos(t)])
    return np.broadcast_to(n, shape + (3,)).copy()


# ----------------------------------------------------------------------------- objects scoring
def test_perfect_and_flat_predictions_have_known_errors():
    gt = tilted(30.0)
    perfect = score_samples(gt[None], gt)
    assert perfect.mean["mean"] == pytest.approx(0.0, abs=1e-5)
    assert perfect.fused["under_11.25"] == 1.0
    flat = score_samples(tilted(0.0)[None], gt)
    for scoring in (flat.mean, flat.best, flat.fused):
        assert scoring["mean"] == pytest.approx(30.0, abs=1e-6)
        assert scoring["under_22.5"] == 0.0 and scoring["under_30"] in (0.0, 1.0)


def test_best_of_n_mean_and_fused():
    gt = tilted(0.0)
    samples = np.stack([tilted(40.0), tilted(0.0), tilted(20.0)])
    sc = score_samples(samples, gt)
    assert sc.best_index == 1 and sc.best["mean"] == pytest.approx(0.0, abs=1e-5)
    assert sc.mean["mean"] == pytest.approx(20.0, abs=1e-5)  # (40 + 0 + 20) / 3
    assert [round(m["mean"]) for m in sc.per_sample] == [40, 0, 20]


def test_fused_is_the_renormalised_mean():
    a, b = tilted(25.0, azimuth_deg=0.0), tilted(25.0, azimuth_deg=180.0)
    fused = fuse_samples(np.stack([a, b]))
    np.testing.assert_allclose(fused, tilted(0.0), atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(fused, axis=-1), 1.0)
    sc = score_samples(np.stack([a, b]), tilted(0.0))
    assert sc.fused["mean"] == pytest.approx(0.0, abs=1e-5) and sc.mean["mean"] == pytest.approx(25.0, abs=1e-5)
    # Opposite normals cancel: the fused normal falls back to the view direction; the mask is kept.
    mask = np.zeros((24, 24), bool)
    mask[4:20, 4:20] = True
    fused = fuse_samples(np.stack([tilted(90.0), tilted(90.0, azimuth_deg=180.0)]), mask)
    assert np.allclose(fused[mask], (0, 0, 1)) and np.all(fused[~mask] == 0)


def test_aggregate_over_images():
    m1 = {"mean": 10.0, "median": 8.0, "under_11.25": 0.6, "under_22.5": 0.9, "under_30": 1.0}
    m2 = {"mean": 30.0, "median": 20.0, "under_11.25": 0.2, "under_22.5": 0.5, "under_30": 0.7}
    m3 = {"mean": 50.0, "median": 40.0, "under_11.25": 0.1, "under_22.5": 0.1, "under_30": 0.4}
    a = aggregate([m1, m2, m3])
    assert a["mean"] == pytest.approx(30.0) and a["median"] == pytest.approx(68 / 3)
    assert a["median_of_means"] == 30.0 and a["under_11.25"] == pytest.approx(0.3) and a["images"] == 3


def test_heldout_items_are_deterministic_and_disjoint_from_training():
    from mssfs.data.shapes import HELDOUT_SEED_BASE

    a = heldout_items(2, 1, 32)
    b = heldout_items(2, 1, 32)
    assert [x.kind for x in a] == ["objects", "objects", "reliefs"]
    assert all(x.seed >= HELDOUT_SEED_BASE for x in a) and len({x.seed for x in a}) == 3
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.image, y.image)
    obj = a[0]
    assert obj.image.shape == (32, 32) and obj.normals.shape == (32, 32, 3)
    assert not obj.mask.all() and np.all(obj.image[~obj.mask] == 0)
    assert a[2].mask.all()


# ----------------------------------------------------------------------------- stimuli scoring
def test_score_readings_classes():
    layout = [1, 1, -1]
    r = np.array([[1, 1, -1], [-1, -1, 1], [1, -1, -1], [1, 1, 0]])
    s = score_readings(r, layout)
    assert s["classes"] == [0, 1, None, None]
    assert (s["true"], s["inverted"], s["consistent"]) == (0.25, 0.25, 0.5)


@pytest.fixture(scope="module")
def layout():
    return generated_bump_dent_layout(12345, 64)


def test_score_stimulus_consistent_inverted_mixed(layout):
    n = layout.normals
    inverted = n * np.array([-1.0, -1.0, 1.0])  # the convex/concave flip of everything
    region = ndimage.binary_dilation(layout.regions == 1, iterations=1)
    mixed = np.where(region[..., None], inverted, n)  # only the first feature flipped
    sc = score_stimulus(np.stack([n, inverted, mixed, n]), layout.mask, layout.regions, layout.layout)
    assert sc.classes == [0, 1, None, 0]
    assert (sc.true, sc.inverted, sc.consistent) == (0.5, 0.25, 0.75)
    assert sc.n_modes >= 2 and sc.spread > 0
    assert len(sc.labels) == 4 and sc.labels[0] == sc.labels[3] != sc.labels[1]  # same map, same mode
    assert np.bincount(sc.labels).tolist() == [round(x * 4) for x in sc.mode_shares]
    same = score_stimulus(np.stack([n, n]), layout.mask, layout.regions, layout.layout)
    assert same.n_modes == 1 and same.spread == pytest.approx(0.0, abs=1e-3) and same.true == 1.0
    no_regions = score_stimulus(n, layout.mask)
    assert no_regions.consistent is None and no_regions.n == 1


def test_modes_match_readings():
    readings = np.array([[1, -1], [1, -1], [-1, 1], [-1, 1], [1, 1], [1, 1]])
    assert modes_match_readings([2, 2, 0, 0, 1, 1], readings) == pytest.approx(1.0)  # same groups, other names
    assert modes_match_readings([0, 0, 0, 0, 1, 1], readings) < 1.0  # two readings merged into one mode
    assert modes_match_readings([0, 1, 0, 1, 0, 1], readings) < 0.0  # modes cut across every reading
    assert modes_match_readings([0, 0], readings[:2]) == pytest.approx(1.0)


def test_segment_features_recovers_generated_regions(layout):
    seg = segment_features(layout.image, len(layout.layout))
    assert seg.max() == len(layout.layout)
    for k in range(1, seg.max() + 1):
        ious = [((seg == k) & (layout.regions == j)).sum() / ((seg == k) | (layout.regions == j)).sum()
                for j in range(1, layout.regions.max() + 1)]
        assert max(ious) > 0.75


@pytest.mark.parametrize("size", [48, 128])
def test_circles_regions_in_reading_order(size):
    item = stimulus_items(size, 0, names=["circles"])[0]
    assert item.layout.tolist() == list(CIRCLES_LAYOUT)
    centres = ndimage.center_of_mass(item.regions > 0, item.regions, range(1, 5))
    half = size / 2
    quadrants = [(r > half, c > half) for r, c in centres]
    assert quadrants == [(False, False), (False, True), (True, False), (True, True)]
    areas = [(item.regions == k).sum() for k in range(1, 5)]
    assert max(areas) < 1.1 * min(areas)


# ----------------------------------------------------------------------------- schedules
def test_ablation_schedules_are_built_from_the_preset():
    base = get_preset("fast")
    ng = ablation_schedule(base, "no-guidance")
    assert all(s.lr == 0 and not s.lighting for s in ng.stages)
    assert [s.resolution for s in ng.stages] == [s.resolution for s in base.stages]
    so = ablation_schedule(base, "seams-only")
    assert all(s.integrability_weight == 0 and not s.lighting for s in so.stages)
    assert [s.lr for s in so.stages] == [s.lr for s in base.stages]
    nl = ablation_schedule(base, "no-lighting")
    assert not any(s.lighting for s in nl.stages) and any(s.lighting for s in base.stages)
    assert [s.integrability_weight for s in nl.stages] == [s.integrability_weight for s in base.stages]
    ss = ablation_schedule(base, "single-scale")
    (stage,) = ss.stages
    first = base.stages[0]
    assert stage.resolution == base.finest and stage.restart_t >= 299 and not stage.lighting
    assert (stage.lr, stage.guidance_start_t, stage.inner_iters_high) == (first.lr, first.guidance_start_t, first.inner_iters_high)
    assert ss.fuse_last == 1 and ss.num_steps == base.num_steps
    # a schedule with shading guidance: seams-only drops it, the others keep it
    shaded = replace(base, stages=tuple(replace(s, shading_weight=100.0, seam_weight=2.0) for s in base.stages))
    so = ablation_schedule(shaded, "seams-only")
    assert all(s.shading_weight == 0 and s.seam_weight == 2 for s in so.stages)
    assert all(s.shading_weight == 100 for s in ablation_schedule(shaded, "no-lighting").stages)
    # fast's region flips: every ablation that drops lighting consistency drops them
    assert base.final_region_flips and all(s.region_flips for s in base.stages)
    for name in ("no-guidance", "seams-only", "no-lighting", "single-scale"):
        abl = ablation_schedule(base, name)
        assert not abl.final_region_flips and not any(s.region_flips for s in abl.stages), name
    with pytest.raises(ValueError, match="unknown ablation"):
        ablation_schedule(base, "nothing")


def test_scaled_schedules():
    base = get_preset("fast")
    half = scale_schedule(base, base.finest // 2)
    assert half.finest == base.finest // 2
    assert all(s.resolution % 16 == 0 and s.resolution >= 32 for s in half.stages)
    assert [s.lr for s in half.stages] == [s.lr for s in base.stages]
    assert scale_schedule(base, base.finest) is base
    assert method_schedule("ours", "fast", max_finest=64).finest == 64
    assert method_schedule("ours", "fast", max_finest=1024).finest == base.finest
    assert method_schedule("paper", "fast").name == "paper"
    assert method_schedule("single-scale", "paper", max_finest=64).stages[0].resolution == 64


def test_build_methods_and_regression(tmp_path, monkeypatch):
    monkeypatch.setattr(ev_methods, "DEFAULT_REGRESSION_DIR", tmp_path / "none")
    methods, skipped = build_methods(["ours", "flat", "regression", "ours"])
    assert [m.name for m in methods] == ["ours", "flat"] and "regression" in skipped
    with pytest.raises(ValueError, match="unknown method"):
        build_methods(["ours", "magic"])
    methods, skipped = build_methods(["regression", "flat"], regression_model=tiny_model())
    assert not skipped
    img = sphere_image(32, 32)
    mask = img > 0
    for m in methods:
        out = m.run(img, mask, n=3, seed=0)
        assert out.shape == (1, 32, 32, 3) and not m.stochastic
        np.testing.assert_allclose(np.linalg.norm(out[0][mask], axis=-1), 1.0, atol=1e-5)
        assert np.all(out[0][~mask] == 0)


# ----------------------------------------------------------------------------- CLI
@pytest.fixture
def cli_env(monkeypatch):
    """Tiny model for the package weights and a tiny schedule for every preset."""
    calls = []

    def fake_resolve(path, device):
        calls.append(path)
        return tiny_model().to(device), {"path": path or "default", "class": "tiny"}

    monkeypatch.setattr(api, "resolve_model", fake_resolve)
    monkeypatch.setattr(ev_methods, "get_preset", lambda name: tiny_schedule(num_steps=4))
    return calls


def test_cli_objects_end_to_end(cli_env, tmp_path, capsys):
    out = tmp_path / "ev"
    argv = ["evaluate", "--suite", "objects", "--n-objects", "1", "--n-reliefs", "1", "--size", "48",
            "--samples", "2", "--methods", "ours,no-guidance,flat", "-q", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    md = (out / "results.md").read_text()
    assert "| ours | mean of samples |" in md and "| flat | single (N = 1) |" in md and "### Reliefs (1)" in md
    assert "| ours | mean of samples |" in printed
    data = json.loads((out / "results.json").read_text())
    assert set(data["summary"]) == {"ours", "no-guidance", "flat"}
    assert data["methods"]["no-guidance"]["schedule"]["stages"][0]["lr"] == 0
    rows = data["items"]["ours"]
    assert [r["kind"] for r in rows] == ["objects", "reliefs"] and rows[0]["n"] == 2
    assert data["items"]["flat"][0]["n"] == 1
    for subset in ("objects", "reliefs"):
        s = data["summary"]["ours"][subset]
        assert s["best"]["mean"] <= s["mean"]["mean"] + 1e-9  # best of N is never worse than the average
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_cli_objects_first_picks_a_later_split(cli_env, tmp_path):
    """``--first K`` scores the items ``heldout_items(..., first=K)`` makes, not the release split."""
    from mssfs.evaluation import heldout_items

    out = tmp_path / "ev"
    argv = ["evaluate", "--suite", "objects", "--n-objects", "1", "--n-reliefs", "0", "--size", "32",
            "--samples", "1", "--methods", "flat", "--first", "7", "-q", "--out", str(out)]
    assert main(argv) == 0
    data = json.loads((out / "results.json").read_text())
    assert data["settings"]["first"] == 7 and "--first 7" in data["command"]
    names = {r["item"] for r in data["items"]["flat"]}
    assert names == {heldout_items(1, 0, 32, 7)[0].name} != {heldout_items(1, 0, 32, 0)[0].name}


def test_cli_objects_with_a_schedule_file(cli_env, tmp_path):
    """``--schedule FILE`` replaces the preset for ours and the ablations, not for 'fast'."""
    sched = tmp_path / "mine.yaml"
    sched.write_text("name: mine\nnum_steps: 3\nfuse_last: 1\nstages:\n"
                     "  - {resolution: 64, lr: 3.5, restart_t: 299, inner_iters_high: 2}\n")
    out = tmp_path / "ev"
    argv = ["evaluate", "--suite", "objects", "--n-objects", "1", "--n-reliefs", "0", "--size", "32",
            "--samples", "1", "--methods", "ours,no-lighting,fast", "--schedule", str(sched), "-q", "--out", str(out)]
    assert main(argv) == 0
    data = json.loads((out / "results.json").read_text())
    ours, abl, fast = (data["methods"][m]["schedule"] for m in ("ours", "no-lighting", "fast"))
    assert ours["num_steps"] == 3 and [s["lr"] for s in ours["stages"]] == [3.5]
    assert [s["resolution"] for s in ours["stages"]] == [32]  # scaled down to the image, as presets are
    assert abl["num_steps"] == 3 and abl["stages"][0]["inner_iters_high"] == 2
    assert fast["num_steps"] == 4 and 3.5 not in [s["lr"] for s in fast["stages"]]  # cli_env's tiny preset
    assert "--schedule " + str(sched) in data["command"] and data["settings"]["schedule_file"] == str(sched)


def test_batched_images_match_image_by_image(cli_env):
    """All images in one sampler call give the samples of one call per image (seed S + i)."""
    items = heldout_items(2, 1, 32)
    methods, _ = build_methods(["ours", "flat"])
    model, _ = api.resolve_model(None, "cpu")
    rows = {}
    for batch in (0, 1):
        settings = RunSettings(samples=2, seed=5, model=model, batch_images=batch)
        rows[batch], _ = _run_methods(items, methods, settings, False, lambda it, n, fused, last: n)
    for a, b in zip(rows[0]["ours"], rows[1]["ours"]):  # the tolerance of docs/sampling.md
        assert a.shape == (2, 32, 32, 3)
        fg = np.linalg.norm(a, axis=-1) > 0
        cos = np.clip((a * b).sum(-1)[fg], -1, 1)
        assert np.degrees(np.arccos(cos)).max() < 1.0
    assert not np.allclose(rows[0]["ours"][0], rows[0]["ours"][1])  # images differ (other seed, other image)
    np.testing.assert_array_equal(rows[0]["flat"][2], rows[1]["flat"][2])
    sched = methods[0].schedule
    per_image = 2 * (sched.finest // 16) ** 2  # patches of 2 samples at the finest stage
    assert _images_per_call(RunSettings(samples=2, device="cpu"), sched) == 1024 // per_image
    assert _images_per_call(RunSettings(samples=2, device="cuda:1"), sched) == 16384 // per_image
    assert _images_per_call(RunSettings(samples=2000, device="cpu"), sched) == 1
    assert _images_per_call(RunSettings(samples=2, batch_images=3), sched) == 3


def test_cli_stimuli_end_to_end(cli_env, tmp_path):
    out = tmp_path / "st"
    argv = ["evaluate", "--suite", "stimuli", "--n-layouts", "1", "--size", "48", "--samples", "2",
            "--methods", "no-guidance,flat", "-q", "--out", str(out)]
    assert main(argv) == 0
    data = json.loads((out / "results.json").read_text())
    items = data["items"]["no-guidance"]
    assert [r["item"] for r in items][:4] == ["circles", "rings", "star", "snake"] and items[-1]["kind"] == "layout"
    circles = items[0]
    assert len(circles["readings"]) == 2 and len(circles["readings"][0]) == 4
    assert 0 <= circles["consistent"] <= 1 and items[1]["consistent"] is None
    assert data["summary"]["flat"]["layouts"]["consistent"] == 0.0  # a flat map reads no region as bump or dent
    assert -1 <= data["summary"]["no-guidance"]["layouts"]["reading_ari"] <= 1
    assert data["summary"]["flat"]["layouts"]["reading_ari"] is None  # one prediction: no modes to compare
    assert circles["reading_ari"] is not None and items[1]["reading_ari"] is None
    md = (out / "results.md").read_text()
    assert "layouts (mean of 1)" in md and "modes ~ readings (ARI)" in md
    # strict scoring: discs from their tilt, per-sample strict one-region shares, the mode pair
    assert np.shape(circles["disc_readings"]) == (2, 4) and 0 <= circles["strict_consistent"] <= 1
    assert len(items[2]["strict_one_region"]) == 2 and 0 <= items[2]["strict_consistent"] <= 1
    per_sample = [x for x in items[2]["one_region_samples"] if x is not None]  # the mean is of these
    assert len(items[2]["one_region_samples"]) == 2 and items[2]["one_region"] == pytest.approx(np.mean(per_sample))
    assert 0 < items[2]["pair_share"] <= 1
    assert data["summary"]["flat"]["layouts"]["strict_consistent"] == 0.0
    strict = md[md.index("### Strict scoring"):]
    assert "| star | no-guidance | 2 |" in strict and "| flat |" not in strict


def test_cli_stimuli_subset_reuses_the_full_suites_layout_seeds(cli_env, tmp_path):
    """``--stimuli none --seed 4`` samples each layout with the seed the full suite gives it."""
    full, only = tmp_path / "full", tmp_path / "only"
    common = ["--n-layouts", "1", "--size", "32", "--samples", "2", "--methods", "no-guidance", "-q"]
    assert main(["evaluate", "--suite", "stimuli", *common, "--out", str(full)]) == 0
    assert main(["evaluate", "--suite", "stimuli", "--stimuli", "none", "--seed", "4", *common, "--out", str(only)]) == 0
    a = json.loads((full / "results.json").read_text())
    b = json.loads((only / "results.json").read_text())
    assert [r["item"] for r in b["items"]["no-guidance"]] == [a["items"]["no-guidance"][-1]["item"]]
    assert b["items"]["no-guidance"][0]["readings"] == a["items"]["no-guidance"][-1]["readings"]
    assert b["settings"]["stimuli"] == [] and a["settings"]["stimuli"] == ["circles", "rings", "star", "snake"]
    assert "--stimuli none" in b["command"] and "--stimuli" not in a["command"]
    sub = tmp_path / "sub"
    assert main(["evaluate", "--suite", "stimuli", "--stimuli", "star,circles,star", "--n-layouts", "0",
                 "--size", "32", "--methods", "flat", "-q", "--out", str(sub)]) == 0
    assert [r["item"] for r in json.loads((sub / "results.json").read_text())["items"]["flat"]] == ["star", "circles"]


def test_cli_ablation_figure(cli_env, tmp_path, capsys):
    img = tmp_path / "ball.npy"
    np.save(img, sphere_image(48, 48))
    out = tmp_path / "fig" / "ablation.png"
    assert main(["evaluate", "--ablation-figure", str(img), "--samples", "2", "-q", "--out", str(out)]) == 0
    assert out.stat().st_size > 1000
    text = capsys.readouterr().out
    for name in FIGURE_METHODS:
        assert name in text


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--suite", "bogus"], "unknown suite"),
        (["--suite", "objects", "--methods", "ours,magic"], "unknown method"),
        (["--suite", "objects", "--samples", "0"], "--samples must be >= 1"),
        (["--suite", "objects", "--batch-images", "-2"], "--batch-images must be >= 0"),
        (["--suite", "objects", "--n-objects", "0", "--n-reliefs", "0"], "nothing to evaluate"),
        (["--suite", "objects", "--n-objects", "-1"], "--n-objects must be >= 0"),
        (["--suite", "objects", "--first", "-3"], "--first must be >= 0"),
        (["--suite", "objects", "--size", "40"], "--size must be a multiple of 16"),
        (["--suite", "stimuli", "--resolution", "20"], "--resolution must be"),
        (["--suite", "stimuli", "--stimuli", "circle,star"], "unknown stimulus name(s) in --stimuli 'circle,star': circle"),
        (["--suite", "stimuli", "--stimuli", ","], "unknown stimulus name(s)"),
        (["--suite", "stimuli", "--stimuli", "none", "--n-layouts", "0"], "nothing to evaluate"),
        (["--ablation-figure", "stimulus:circles", "--methods", "flat"], "sampler methods only"),
        (["--ablation-figure", "stimulus:nope"], "unknown stimulus"),
        (["--suite", "objects", "--schedule", "no/such/schedule.yaml"], "--schedule: no/such/schedule.yaml: no such schedule file"),
    ],
)
def test_bad_arguments_are_usage_errors(cli_env, tmp_path, capsys, extra, message):
    out = tmp_path / ("x.png" if "--ablation-figure" in extra else "x")
    assert main(["evaluate", *extra, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert cli_env == [] and not out.exists()


def test_figure_needs_a_png_path(cli_env, tmp_path, capsys):
    assert main(["evaluate", "--ablation-figure", "stimulus:circles", "--out", str(tmp_path / "dir")]) == 2
    assert ".png" in capsys.readouterr().err


def test_suite_and_figure_are_exclusive(tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--suite", "objects", "--ablation-figure", "stimulus:circles", "--out", str(tmp_path)])
    assert exc.value.code == 2


def test_paired_difference():
    r = paired_difference([10, 12, 14, 16, 18, 20], [9, 11, 13, 15, 17, 21])
    assert r["n"] == 6 and r["b_lower"] == 5 and abs(r["diff"] - (-4 / 6)) < 1e-12
    assert abs(r["a"] - 15) < 1e-12 and r["se"] > 0 and 0 < r["p"] < 1
    assert np.isnan(paired_difference([1, 2], [0, 1], min_n_for_p=6)["p"])  # too few images for a p-value
    assert paired_difference([1, 2, 3], [1, 2, 3])["p"] == 1.0  # no difference at all
    assert np.isnan(paired_difference([1.0], [0.5])["se"])
