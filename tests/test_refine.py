"""Refinement by the shading: shapes fit the image, readings stay, the patch grid goes."""

import numpy as np
import pytest

from mssfs.analysis import region_readings
from mssfs.analysis.seams import seam_index
from mssfs.core.integrate import normals_from_depth
from mssfs.core.render import render
from mssfs.evaluation.metrics import angular_error
from mssfs.sampler.refine import (
    Refinement,
    fuse_mean,
    implied_light,
    refine,
    refine_samples,
    refinement_shape,
    turned_pixels,
)

LIGHT = np.array([0.45, 0.35, 0.82]) / np.linalg.norm([0.45, 0.35, 0.82])


def bump_and_dent(size=64):
    """A bump (left) and a dent (right) on flat ground, their regions and rendering."""
    y, x = np.mgrid[0:size, 0:size] + 0.5
    z = np.zeros((size, size))
    regions = np.zeros((size, size), np.int32)
    for k, (cx, s) in enumerate(((size * 0.28, 1), (size * 0.72, -1)), start=1):
        r2 = ((x - cx) ** 2 + (y - size / 2) ** 2) / (0.2 * size) ** 2
        z += np.where(r2 < 1, s * 0.12 * size * (1 - r2) ** 2, 0.0)
        regions[r2 < 1] = k
    mask = np.ones((size, size), bool)
    n = normals_from_depth(z, mask)
    return n, 0.8 * render(n, LIGHT), mask, regions


def patchy(n, degrees=10.0, seed=0):
    """``n`` with a random tilt per 16x16 patch and per-pixel noise (a sample's flaws)."""
    rng = np.random.default_rng(seed)
    out = n + 0.03 * rng.normal(size=n.shape)
    for r in range(0, n.shape[0], 16):
        for c in range(0, n.shape[1], 16):
            out[r : r + 16, c : c + 16, :2] += np.radians(degrees) * rng.normal(size=2)
    return out / np.linalg.norm(out, axis=-1, keepdims=True)


def test_refinement_fits_the_image_and_removes_the_grid_keeping_the_reading():
    truth, image, mask, regions = bump_and_dent()
    sample = patchy(truth)
    out = refine(sample, image, mask)
    assert out.shape == truth.shape and out.dtype == np.float32
    assert np.allclose(np.linalg.norm(out, axis=-1), 1, atol=1e-4)
    assert angular_error(out, truth, mask).mean() < 0.7 * angular_error(sample, truth, mask).mean()
    assert seam_index(sample, mask) > 3 and seam_index(out, mask) < 1.4  # a smooth relief gives 0.96
    assert region_readings(out, regions, mask).tolist() == [1, -1]


def test_the_inverted_reading_stays_inverted():
    """The same image read the other way (bump <-> dent, light flipped) keeps that reading."""
    truth, image, mask, regions = bump_and_dent()
    inverted = patchy(truth * np.array([-1, -1, 1]), seed=1)
    light, _ = implied_light(inverted, image, mask)
    assert light[:2] @ LIGHT[:2] < 0
    out = refine(inverted, image, mask)
    assert region_readings(out, regions, mask).tolist() == [-1, 1]
    assert angular_error(out, truth * np.array([-1, -1, 1]), mask).mean() < angular_error(inverted, truth * np.array([-1, -1, 1]), mask).mean()


def two_bumps_and_a_dent(size=64):
    """Two bumps (top) and a smaller dent (bottom) under ``LIGHT``, their regions and rendering."""
    y, x = np.mgrid[0:size, 0:size] + 0.5
    z = np.zeros((size, size))
    regions = np.zeros((size, size), np.int32)
    for k, (cx, cy, s, r) in enumerate(((0.27, 0.3, 1, 0.2), (0.73, 0.3, 1, 0.2), (0.5, 0.75, -1, 0.12)), start=1):
        r2 = ((x - cx * size) ** 2 + (y - cy * size) ** 2) / (r * size) ** 2
        z += np.where(r2 < 1, s * 0.1 * size * (1 - r2) ** 2, 0.0)
        regions[r2 < 1] = k
    mask = np.ones((size, size), bool)
    n = normals_from_depth(z, mask)
    return n, 0.8 * render(n, LIGHT), mask, regions


def test_a_region_read_against_its_sample_light_keeps_the_sample_reading():
    """The sample reads the dent as a bump, against the light its other regions imply;
    a refinement without the reading check turns it to a dent, the refinement keeps it."""
    truth, image, mask, regions = two_bumps_and_a_dent()
    sample = truth.copy()
    sample[regions == 3, :2] *= -1
    sample = patchy(sample, seed=2)
    assert region_readings(sample, regions, mask).tolist() == [1, 1, 1]
    unchecked = refine(sample, image, mask, Refinement(keep_passes=0))
    assert region_readings(unchecked, regions, mask).tolist() == [1, 1, -1]
    assert turned_pixels(sample, unchecked, mask, regions)[regions == 3].all()
    out = refine(sample, image, mask)
    assert region_readings(out, regions, mask).tolist() == [1, 1, 1]
    assert not turned_pixels(sample, out, mask, regions)[regions > 0].any()
    # The regions read with the light are still fitted to the image.
    kept = regions == 1
    assert angular_error(out, truth, mask)[kept].mean() < angular_error(sample, truth, mask)[kept].mean()


def test_an_undecided_region_takes_the_reading_of_the_sample_light():
    """A disc read half as a bump and half as a dent (radial tilt about 0) has no reading
    to keep: with ``undecided_tilt`` it is solved from the shading under the light the
    decided discs imply and reads the way that light says; the decided discs keep theirs."""
    from mssfs.analysis.regions import radial_tilts
    from mssfs.sampler.refine import undecided_regions

    truth, image, mask, regions = two_bumps_and_a_dent()
    sample = truth.copy()
    cols = np.mgrid[0 : mask.shape[0], 0 : mask.shape[1]][1]
    centre = cols[regions == 1].mean()
    sample[(regions == 1) & (cols < centre), :2] *= -1  # disc 1: left half a dent, right half a bump
    sample = patchy(sample, seed=4)
    tilts = radial_tilts(sample, regions)
    assert abs(tilts[0]) < 0.1 and tilts[1] > 0.1 and tilts[2] < -0.1
    free = undecided_regions(sample, regions, 0.1)
    assert free[regions == 1].all() and not free[regions > 1].any()
    assert not undecided_regions(sample, regions, 0.0).any()
    out = refine(sample, image, mask, Refinement(undecided_tilt=0.1))
    after = radial_tilts(out, regions)
    assert after[0] > 0.1  # a bump, as the light of the other discs says
    assert after[1] > 0.1 and after[2] < -0.1  # the decided discs keep their readings
    with pytest.raises(ValueError, match="undecided_tilt"):
        Refinement(undecided_tilt=-1)


def test_only_round_regions_count_as_undecided_with_a_roundness_bound():
    from mssfs.sampler.refine import region_roundness, undecided_regions

    regions = np.zeros((64, 64), np.int32)
    rows, cols = np.mgrid[0:64, 0:64] + 0.5
    regions[(rows - 16) ** 2 + (cols - 16) ** 2 < 10**2] = 1  # a disc
    regions[40:60, 4:24] = 2  # a square
    regions[30:34, 30:62] = 3  # a bar
    round_ = region_roundness(regions)
    assert round_[0] > 0.85 and round_[1] == pytest.approx(2 / np.pi, abs=0.08) and round_[2] < 0.2
    flat = np.zeros((64, 64, 3))
    flat[..., 2] = 1  # every region undecided (radial tilt 0)
    assert undecided_regions(flat, regions, 0.1, 0.0)[regions > 0].all()
    only_disc = undecided_regions(flat, regions, 0.1, 0.8)
    assert only_disc[regions == 1].all() and not only_disc[regions > 1].any()
    with pytest.raises(ValueError, match="undecided_roundness"):
        Refinement(undecided_roundness=1.5)


def test_refine_samples_runs_at_the_capped_resolution_and_returns_the_input_size():
    truth, image, _, _ = bump_and_dent(48)
    big_image = np.kron(image, np.ones((2, 2)))[:90, :96]
    big_mask = np.ones(big_image.shape, bool)
    big_mask[:4] = False
    samples = np.stack([np.kron(patchy(truth, seed=s), np.ones((2, 2, 1)))[:90, :96] for s in range(2)])
    settings = Refinement(max_resolution=48, coarse_iters=20, fine_iters=5)
    assert refinement_shape(big_image.shape, 48) == (45, 48)
    refined, fused, read = refine_samples(samples, big_image, big_mask, settings)
    assert read is None  # no contour light asked for
    assert refined.shape == samples.shape and fused.shape == samples.shape[1:]
    assert not refined[:, ~big_mask].any() and not fused[~big_mask].any()
    assert np.allclose(np.linalg.norm(refined[:, big_mask], axis=-1), 1, atol=1e-3)


def test_fuse_mean_and_bad_inputs():
    a = np.zeros((2, 4, 4, 3))
    a[0, ..., 0], a[1, ..., 0] = 1, -1  # cancel exactly
    mask = np.ones((4, 4), bool)
    mask[0, 0] = False
    f = fuse_mean(a, mask)
    assert (f[mask] == (0, 0, 1)).all() and (f[0, 0] == 0).all()
    truth, image, mask, _ = bump_and_dent(32)
    with pytest.raises(ValueError, match="do not match"):
        refine(truth[:-1], image, mask)
    with pytest.raises(ValueError, match="empty"):
        refine(truth, image, np.zeros_like(mask))
    with pytest.raises(ValueError, match="integrability"):
        Refinement(integrability=1.0)
    with pytest.raises(ValueError, match="keep_passes"):
        Refinement(keep_passes=-1)


def test_a_refining_schedule_refines_every_sample_and_records_the_quality(tmp_path):
    import json
    from dataclasses import replace

    from test_sampling import sphere_image, tiny_model, tiny_schedule

    from mssfs.sampler.api import sample
    from mssfs.sampler.refine import refine_samples
    from mssfs.sampler.schedules import Schedule

    img = sphere_image(40, 56)
    model = tiny_model()
    plain = sample(img, n=2, seed=3, model=model, schedule=tiny_schedule())
    sched = replace(tiny_schedule(), refine=True, refine_max_resolution=32)
    res = sample(img, n=2, seed=3, model=model, schedule=sched)
    expected, fused, _ = refine_samples(plain.normals, plain.image, plain.mask, sched.refinement())
    assert res.normals.shape == plain.normals.shape
    assert np.allclose(res.normals, expected, atol=1e-4) and np.allclose(res.fused, fused, atol=1e-4)
    assert not np.allclose(res.normals, plain.normals, atol=1e-2)
    assert res.timings["refine_s"] > 0 and plain.timings["refine_s"] == 0
    seams = res.quality["seam_index"]
    assert len(seams["samples"]) == 2 and seams["grid"]["stage_resolution"] == 48
    assert seams["grid"]["period"] == pytest.approx(16 * 56 / 48) and seams["grid"]["origin"] == [-8.0, 0.0]
    assert len(res.quality["one_region_consistency"]["samples"]) == 2
    res.save(tmp_path / "out")
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["refined"] is True and meta["schedule"]["refine_max_resolution"] == 32
    assert meta["quality"]["seam_index"]["samples"] == seams["samples"]
    assert np.load(tmp_path / "out" / "fused.npy").shape == (40, 56, 3)
    assert Schedule.from_dict(sched.to_dict()) == sched
    with pytest.raises(ValueError, match="refine_max_resolution"):
        replace(sched, refine_max_resolution=8)
    undecided = replace(sched, refine_undecided=0.1)
    assert undecided.refinement().undecided_tilt == 0.1 and sched.refinement().undecided_tilt == 0.0
    assert Schedule.from_dict(undecided.to_dict()) == undecided
    with pytest.raises(ValueError, match="undecided_tilt"):
        replace(sched, refine_undecided=-0.1)


def test_analyze_reports_the_seam_index_on_the_last_stage_grid(tmp_path):
    from test_sampling import sphere_image, tiny_model, tiny_schedule

    from mssfs.analysis.report import analyze
    from mssfs.analysis.sample_set import load_sample_set
    from mssfs.sampler.api import sample

    res = sample(sphere_image(40, 56), n=3, seed=1, model=tiny_model(), schedule=tiny_schedule())
    res.save(tmp_path / "out")
    samples = load_sample_set(tmp_path / "out")
    report = analyze(samples).to_json(samples)
    assert report["seam_index"]["grid"]["stage_resolution"] == 48
    assert report["seam_index"]["samples"] == pytest.approx(res.quality["seam_index"]["samples"], rel=1e-3)
    assert len(report["one_region_consistency"]["samples"]) == 3
    (tmp_path / "out" / "meta.json").unlink()
    bare = load_sample_set(tmp_path / "out")
    assert analyze(bare).to_json(bare)["seam_index"]["grid"] == {"stage_resolution": None, "period": 16.0, "origin": [0.0, 0.0]}


def test_suites_score_the_refined_fused_result_and_report_seams(tmp_path):
    from dataclasses import replace

    from test_sampling import tiny_model, tiny_schedule

    from mssfs.evaluation import (
        RunSettings,
        build_methods,
        heldout_items,
        objects_table,
        run_objects,
        run_stimuli,
        stimuli_table,
        stimulus_items,
    )

    methods, _ = build_methods(["ours", "no-refine", "flat"], replace(tiny_schedule(), refine=True), max_finest=32)
    assert [m.schedule.refine if m.schedule else None for m in methods] == [True, False, None]
    settings = RunSettings(samples=2, model=tiny_model())
    items = heldout_items(n_objects=1, n_reliefs=0, size=32)
    res = run_objects(items, methods, settings, progress=False)
    ours, plain = res["items"]["ours"][0], res["items"]["no-refine"][0]
    assert ours["fused"]["mean"] != plain["fused"]["mean"]
    assert ours["seam_index"] is not None and plain["seam_index"] is not None
    assert res["items"]["flat"][0]["seam_index"] is None  # no jump anywhere: undefined
    assert res["summary"]["ours"]["objects"]["seam_index"] == pytest.approx(ours["seam_index"])
    assert "seam index" in objects_table(res, methods, {}, "objects")
    stim = run_stimuli(stimulus_items(32, 1, names=[]), methods[:1], settings, progress=False)
    row = stim["items"]["ours"][0]
    assert row["one_region"] is None or 0 <= row["one_region"] <= 1
    assert "one-region" in stimuli_table(stim, methods[:1], {}) and "seam_index" in stim["summary"]["ours"]["layouts"]


def sphere(size=64, light=LIGHT):
    """A sphere filling most of the frame (an occluding contour), its mask and rendering."""
    y, x = np.mgrid[0:size, 0:size] + 0.5
    u, v = (x - size / 2) / (0.42 * size), -(y - size / 2) / (0.42 * size)
    mask = u**2 + v**2 < 1
    n = np.zeros((size, size, 3))
    n[mask] = np.stack([u[mask], v[mask], np.sqrt(np.clip(1 - u[mask] ** 2 - v[mask] ** 2, 0, 1))], -1)
    return n, 0.8 * render(n, light), mask


def test_contour_light_fixes_the_side_of_the_light():
    from mssfs.core.sfs import contour_light

    for light in (LIGHT, np.array([-0.6, 0.1, 0.79]), np.array([0.05, -0.5, 0.86])):
        light = light / np.linalg.norm(light)
        _, image, mask = sphere(light=light)
        direction, albedo = contour_light(image, mask)
        assert np.degrees(np.arccos(np.clip(direction @ light, -1, 1))) < 8
        assert abs(albedo - 0.8) < 0.05
    _, image, mask, _ = bump_and_dent()
    assert contour_light(image, mask) is None  # a relief filling the frame has no contour


def test_the_contour_light_turns_an_object_read_the_wrong_way_round():
    """An object read inside out (the convex/concave flip with the light mirrored) is turned
    by the contour's light; with the sample's light the refinement keeps the wrong reading."""
    truth, image, mask = sphere()
    inverted = truth * np.array([-1.0, -1.0, 1.0])  # renders the same image under the mirrored light
    sample = patchy(inverted)
    kept = refine(sample, image, mask)
    turned = refine(sample, image, mask, Refinement(contour_light=True))
    assert angular_error(sample, truth, mask)[mask].mean() > 80
    assert angular_error(kept, truth, mask)[mask].mean() > 60  # 85 degrees: still inside out
    assert angular_error(turned, truth, mask)[mask].mean() < 40  # 30 degrees: turned, the anchor holds some back
    assert np.allclose(np.linalg.norm(turned[mask], axis=-1), 1, atol=1e-4)


def test_the_contour_light_leaves_images_without_a_contour_alone():
    truth, image, mask, _ = bump_and_dent()
    sample = patchy(truth)
    assert np.array_equal(refine(sample, image, mask), refine(sample, image, mask, Refinement(contour_light=True)))
    with pytest.raises(ValueError, match="refine_contour_light must be true or false"):
        Refinement(contour_light=1)


def test_contour_integrability_applies_on_the_contour_path_only():
    truth, image, mask = sphere()
    sample = patchy(truth)
    half = refine(sample, image, mask, Refinement(contour_light=True))
    none = refine(sample, image, mask, Refinement(contour_light=True, contour_integrability=0.0))
    assert not np.allclose(half, none, atol=1e-3)  # the contour path takes its own weight
    assert np.array_equal(refine(sample, image, mask, Refinement(contour_integrability=0.0)),
                          refine(sample, image, mask))  # without the contour light it is unused
    relief, r_image, r_mask, _ = bump_and_dent()
    r_sample = patchy(relief)
    assert np.array_equal(refine(r_sample, r_image, r_mask, Refinement(contour_light=True, contour_integrability=0.0)),
                          refine(r_sample, r_image, r_mask))  # no contour: untouched
    with pytest.raises(ValueError, match="refine_contour_integrability must lie in"):
        Refinement(contour_integrability=1.0)


def test_shading_residual_and_fusion_weights():
    from mssfs.sampler.refine import fusion_weights, shading_residual

    truth, image, mask = sphere()
    assert shading_residual(truth, image, mask, LIGHT / np.linalg.norm(LIGHT), 0.8) < 1e-6  # the truth renders it
    flat = np.where(mask[..., None], np.array([0.0, 0.0, 1.0]), 0.0)
    assert shading_residual(flat, image, mask, LIGHT / np.linalg.norm(LIGHT), 0.8) > 0.05
    w = fusion_weights([0.02, 0.01, 0.03], 0.5)
    assert w[1] == 1 and np.allclose(w[[0, 2]], np.exp([-2.0, -4.0]))  # exp(-(r - r_min) / (0.5 r_min))
    assert np.array_equal(fusion_weights([0.02, 0.01], 0.0), [1.0, 1.0])  # 0: the plain mean
    assert np.array_equal(fusion_weights([0.0, 0.01, 0.0], 0.2), [1.0, 0.0, 1.0])  # exact renderings only
    with pytest.raises(ValueError, match="refine_contour_fuse must be >= 0"):
        Refinement(contour_fuse=-0.1)


def test_contour_fuse_weights_the_samples_that_explain_the_image():
    """On the contour path the fused result leans toward the refined sample that renders the
    image best; with 0 it is the plain mean, and without a contour nothing changes."""
    from dataclasses import replace

    from mssfs.core.frame import normalize
    from mssfs.core.sfs import contour_light
    from mssfs.sampler.refine import fuse_mean, refine_samples, shading_residual

    truth, image, mask = sphere()
    good = patchy(truth)
    bad = patchy(normalize(truth + np.array([0.6, -0.4, 0.0])) * mask[..., None])  # a tilted, wrong shape
    samples = np.stack([good, bad, bad])
    base = Refinement(contour_light=True, contour_integrability=0.0)
    refined, plain, read = refine_samples(samples, image, mask, base)
    weighted = refine_samples(samples, image, mask, replace(base, contour_fuse=0.2)).fused
    assert read is not None and np.allclose(read[0], contour_light(image, mask)[0])  # the light it used, said
    err = lambda n: angular_error(n, truth, mask)[mask].mean()
    assert err(weighted) < err(plain) - 1  # the two bad samples no longer outvote the good one
    assert np.array_equal(plain, refine(fuse_mean(refined, mask), image, mask, base))
    light = LIGHT / np.linalg.norm(LIGHT)
    res = [shading_residual(r, image, mask, light, 0.8) for r in refined]
    assert res[0] < min(res[1:])
    relief, r_image, r_mask, _ = bump_and_dent()
    r_samples = np.stack([patchy(relief), patchy(relief * np.array([-1.0, -1.0, 1.0]))])
    weighted, plain = (refine_samples(r_samples, r_image, r_mask, replace(base, contour_fuse=t)) for t in (0.2, 0.0))
    assert weighted.contour is None and plain.contour is None  # no lit contour to read ...
    assert np.array_equal(weighted.refined, plain.refined) and np.array_equal(weighted.fused, plain.fused)  # ... so the plain mean


def test_a_contour_light_read_once_gives_what_refine_reads_itself():
    from mssfs.core.sfs import contour_light

    truth, image, mask = sphere()
    sample = patchy(truth)
    s = Refinement(contour_light=True, contour_integrability=0.0)
    fitted = contour_light(image, mask)
    assert np.array_equal(refine(sample, image, mask, s, contour=fitted), refine(sample, image, mask, s))
    with pytest.raises(ValueError, match="contour must be"):
        refine(sample, image, mask, s, contour="yes")
    # None: no lit contour, so the sample's own light, as without the contour light
    assert np.array_equal(refine(sample, image, mask, s, contour=None),
                          refine(sample, image, mask, Refinement(contour_integrability=0.0)))
