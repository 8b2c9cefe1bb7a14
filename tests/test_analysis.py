import json

import numpy as np
import pytest

from mssfs.analysis.clustering import cluster_samples
from mssfs.analysis.curvature import FLAT_LEVEL, convexity_readings, curvature_level, mean_curvature
from mssfs.analysis.distances import reading_distances, sign_distances
from mssfs.analysis.layouts import generated_bump_dent_layout
from mssfs.analysis.regions import consistency, region_readings
from mssfs.analysis.sample_set import SampleSetError, find_sample_folders, load_sample_set
from mssfs.analysis.spread import angular_spread, implied_lights
from mssfs.analysis.wasserstein import wasserstein
from mssfs.cli import main
from mssfs.core.frame import normalize
from mssfs.core.integrate import normals_from_depth
from mssfs.core.render import render
from mssfs.core.resize import resize_normals_array


def flip_regions(normals, regions, labels):
    """Read the given regions the other way round: (nx, ny, nz) -> (-nx, -ny, nz)."""
    out = normals.copy()
    for k in labels:
        m = regions == k
        out[m, :2] *= -1
    return out


def mode_samples(layout, counts, seed=0, noise=0.05):
    """Samples in len(counts) known interpretations (true, region 1 flipped, all flipped),
    each with a random relief strength (x0.8..1.2) and per-pixel noise; shuffled."""
    rng = np.random.default_rng(seed)
    flips = [[], [1], list(range(1, layout.layout.size + 1))]
    samples, truth = [], []
    for k, count in enumerate(counts):
        for _ in range(count):
            n = normals_from_depth(layout.height * rng.uniform(0.8, 1.2), layout.mask)
            n = flip_regions(n, layout.regions, flips[k])
            samples.append(normalize(n + rng.normal(0, noise, n.shape)))
            truth.append(k)
    order = rng.permutation(len(samples))
    return np.stack(samples).astype(np.float32)[order], np.array(truth)[order]


@pytest.fixture(scope="module")
def layout():
    return generated_bump_dent_layout(3, 64)


def write_set(folder, normals, image=None, mask=None, lights=None, stem="x"):
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "normals.npy", normals.astype(np.float32))
    if image is not None:
        np.save(folder / "image.npy", image.astype(np.float32))
    if mask is not None:
        np.save(folder / "mask.npy", mask)
    if lights is not None:
        np.save(folder / "lights.npy", lights.astype(np.float32))
    (folder / "meta.json").write_text(json.dumps({"stem": stem, "n_samples": len(normals)}))
    return folder


def test_cluster_recovers_three_modes_and_shares(layout):
    samples, truth = mode_samples(layout, [10, 6, 4])
    c = cluster_samples(samples, layout.mask)
    assert c.features == "signs"
    assert c.n_modes == 3
    assert c.shares.tolist() == [0.5, 0.3, 0.2]
    # Same partition as the truth (mode k is the k-th largest).
    assert np.array_equal(c.labels, truth)
    for k in range(3):
        assert c.labels[c.representatives[k]] == k


def test_cluster_fixed_number_of_modes(layout):
    samples, truth = mode_samples(layout, [10, 6, 4], seed=1)
    c = cluster_samples(samples, layout.mask, modes=2)
    assert c.n_modes == 2 and c.threshold is None
    # The two closest interpretations (true and one region flipped) merge.
    assert c.shares.tolist() == [0.8, 0.2]
    assert set(c.labels[truth == 2]) == {1}


def test_cluster_single_mode_for_one_interpretation(layout):
    samples, _ = mode_samples(layout, [8], seed=2)
    c = cluster_samples(samples, layout.mask)
    assert c.n_modes == 1 and c.shares.tolist() == [1.0]


def test_flat_samples_fall_back_to_normal_maps():
    rng = np.random.default_rng(0)
    flat = np.zeros((6, 32, 32, 3), np.float32)
    flat[..., 2] = 1
    tilted = normalize(flat + np.array([0.7, 0, 0], np.float32))
    samples = np.concatenate([flat, tilted])
    samples = normalize(samples + rng.normal(0, 0.01, samples.shape)).astype(np.float32)
    c = cluster_samples(samples, np.ones((32, 32), bool))
    assert c.features == "normals"
    assert c.n_modes == 2 and c.shares.tolist() == [0.5, 0.5]


def test_curvature_level_and_modes_do_not_depend_on_image_size(layout):
    samples, truth = mode_samples(layout, [4, 3, 2], seed=5)
    levels, labels = [], []
    for size in (64, 192, 448):  # 448 px: the old 0.002 / pixel cut called these flat
        n, m = resize_normals_array(samples, (size, size), layout.mask)
        levels.append(curvature_level(convexity_readings(n, m), (size, size)))
        c = cluster_samples(n, m)
        assert c.features == "signs"
        labels.append(c.labels)
    assert np.allclose(levels[1], levels[0], rtol=0.1) and np.allclose(levels[2], levels[0], rtol=0.1)
    assert np.median(levels[0]) > FLAT_LEVEL
    for lab in labels:
        assert np.array_equal(lab, truth)


def test_plane_has_zero_curvature_level():
    plane = np.zeros((3, 40, 50, 3))
    plane[..., 2] = 1
    assert np.allclose(curvature_level(convexity_readings(plane, np.ones((40, 50), bool)), (40, 50)), 0)


def test_classical_reconstructions_under_both_lights_form_two_modes():
    """Real reconstructions rather than constructed fields: Brooks-Horn SfS of one layout
    under its light and under the mirrored light (the convex/concave flip), each light
    perturbed by 8 degrees of tilt, read the regions true / inverted and cluster into
    exactly those two modes, at the computed size and resized 8x."""
    from mssfs.evaluation.baselines import classical_sfs

    lay = generated_bump_dent_layout(0, 64)
    slant, tilt = np.arccos(lay.light[2]), np.arctan2(lay.light[1], lay.light[0])
    outs, truth = [], []
    for flip in (0, 1):
        for dt in (0.0, 8.0, -8.0):
            t = tilt + np.pi * flip + np.radians(dt)
            light = np.array([np.sin(slant) * np.cos(t), np.sin(slant) * np.sin(t), np.cos(slant)])
            outs.append(classical_sfs(lay.image, lay.mask, light=light))
            truth.append(flip)
    outs = np.stack(outs)
    assert [consistency(r, lay.layout) for r in region_readings(outs, lay.regions)] == truth
    for size in (64, 512):
        n, m = resize_normals_array(outs, (size, size), lay.mask)
        c = cluster_samples(n, m)
        assert c.features == "signs" and c.n_modes == 2
        assert np.array_equal(c.labels, c.labels[0] ^ np.array(truth))


def test_reading_distance_range(layout):
    n = layout.normals[None]
    inverted = flip_regions(layout.normals, layout.regions, range(1, layout.layout.size + 1))[None]
    r = convexity_readings(np.concatenate([n, 2 * n / 2, inverted]), layout.mask)
    d = reading_distances(r)
    assert d[0, 1] == pytest.approx(0, abs=1e-9)
    assert d[0, 2] == pytest.approx(1, abs=1e-3)  # rim pixels just outside the regions stay unflipped
    assert np.allclose(d, d.T)


def test_sign_distance_ignores_how_one_reading_spreads_its_curvature(layout):
    """Two samples reading every region alike are 0 apart by signs however their relief is
    shared among the regions (the L1 reading distance is not); inversion is 1; flipping one
    region adds about its share; no shared curved cell is 1."""
    regions, k = layout.regions, layout.layout.size
    first_half = (regions > 0) & (regions <= k // 2)
    # one reading drawn two ways: the first half of the regions faint, or the others faint
    a = normals_from_depth(layout.height * np.where(first_half, 0.3, 1.0), layout.mask)
    b = normals_from_depth(layout.height * np.where(first_half, 1.0, 0.3), layout.mask)
    inverted = flip_regions(a, regions, range(1, k + 1))
    one_flipped = flip_regions(a, regions, [k])
    r = convexity_readings(np.stack([a, b, inverted, one_flipped]), layout.mask)
    signs, l1 = sign_distances(r), reading_distances(r)
    assert signs[0, 1] < 0.02 and l1[0, 1] > 0.2  # apart by L1 at the default cut, not by signs
    assert signs[0, 2] > 0.98
    share = np.abs(r[0, np.abs(r[3] - r[0]) > 1e-9]).sum() / np.abs(r[0]).sum()
    assert signs[0, 3] == pytest.approx(share, abs=0.05) and 0 < share < 0.5
    np.testing.assert_allclose(signs, signs.T)
    np.testing.assert_allclose(np.diag(signs), 0)
    apart = np.zeros((2, 4))
    apart[0, :2], apart[1, 2:] = 1.0, -1.0
    assert sign_distances(apart)[0, 1] == 1.0
    assert sign_distances(np.zeros((2, 4)))[0, 1] == 1.0  # nothing curved: nothing shared


def test_mean_curvature_sign_bump_positive():
    size = 48
    rows, cols = np.mgrid[0:size, 0:size]
    z = np.clip(400 - (rows - 24.0) ** 2 - (cols - 24.0) ** 2, 0, None) ** 0.5
    mask = np.ones((size, size), bool)
    n = normals_from_depth(z, mask)
    curv = mean_curvature(n, mask, sigma=1.0)
    assert curv[24, 24] > 0
    assert mean_curvature(normals_from_depth(-z, mask), mask)[24, 24] < 0


def test_spread_zero_for_identical_and_larger_where_samples_disagree(layout):
    same = np.repeat(layout.normals[None], 5, 0)
    assert np.nanmax(angular_spread(same, layout.mask)) == pytest.approx(0, abs=1e-3)
    flipped = flip_regions(layout.normals, layout.regions, [1])
    mixed = np.stack([layout.normals] * 3 + [flipped] * 3)
    spread = angular_spread(mixed, layout.mask)
    assert np.nanmean(spread[layout.regions == 1]) > 10
    assert np.nanmax(spread[layout.regions == 0]) < 1e-3


def test_wasserstein_zero_positive_symmetric(layout):
    a, _ = mode_samples(layout, [4, 2], seed=3)
    b, _ = mode_samples(layout, [1, 1, 4], seed=4)
    assert wasserstein(a, a) == pytest.approx(0, abs=1e-4)
    ab, ba = wasserstein(a, b), wasserstein(b, a)
    assert ab > 1
    assert ab == pytest.approx(ba, rel=1e-6)
    # Different sizes are resized to the smaller one.
    big = np.stack([normals_from_depth(np.kron(layout.height, np.ones((2, 2))) * 2, None)] * 2)
    assert wasserstein(big, layout.normals[None]) < wasserstein(big, b)


def test_implied_lights_recover_rendering_light_and_its_flip(layout):
    light = normalize(np.array([0.4, -0.3, 0.8]))
    image = render(layout.normals, light, 0.7)
    est = implied_lights(np.stack([layout.normals, -layout.normals * [1, 1, -1]]), image, layout.mask)
    assert np.degrees(np.arccos(est[0] @ light)) < 0.5
    flipped = light * [-1, -1, 1]  # the convex/concave flip implies the mirrored light
    assert np.degrees(np.arccos(np.clip(est[1] @ flipped, -1, 1))) < 0.5


def test_generated_layouts_are_valid_and_vary():
    counts = set()
    for seed in range(8):
        L = generated_bump_dent_layout(seed, 64)
        k = L.layout.size
        counts.add(k)
        assert 2 <= k <= 6
        assert set(np.unique(L.regions)) == set(range(k + 1))  # no region swallowed by an overlap
        assert set(L.layout.tolist()) == {-1, 1}
        assert L.image.min() >= 0 and L.image.max() <= 1
        for k, sign in enumerate(L.layout, start=1):
            assert np.all(np.sign(L.height[L.regions == k]) == sign)
    assert len(counts) > 1
    a, b = generated_bump_dent_layout(5, 64), generated_bump_dent_layout(5, 64)
    assert np.array_equal(a.image, b.image)
    assert not np.array_equal(a.image, generated_bump_dent_layout(6, 64).image)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_region_readings_and_consistency(seed):
    L = generated_bump_dent_layout(seed, 64)
    everything = range(1, L.layout.size + 1)
    stack = np.stack(
        [L.normals, flip_regions(L.normals, L.regions, everything), flip_regions(L.normals, L.regions, [2])]
    )
    r = region_readings(stack, L.regions, L.mask)
    assert r.shape == (3, L.layout.size)
    assert np.array_equal(r[0], L.layout)
    assert np.array_equal(r[1], -L.layout)
    assert consistency(r[0], L.layout) == 0
    assert consistency(r[1], L.layout) == 1
    assert consistency(r[2], L.layout) is None
    # A single map and a list of masks give the same answer.
    masks = [L.regions == k for k in everything]
    assert np.array_equal(region_readings(L.normals, masks), r[0])


def test_consistency_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="readings"):
        consistency([1, -1], [1, -1, 1])
    assert consistency([1, 0], [1, -1]) is None


# ---------------------------------------------------------------- files and CLI


def test_load_sample_set_checks_files(tmp_path, layout):
    with pytest.raises(SampleSetError, match="no such folder"):
        find_sample_folders(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SampleSetError, match="no samples found"):
        find_sample_folders(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    np.save(bad / "normals.npy", np.zeros((2, 8, 8)))
    with pytest.raises(SampleSetError, match=r"\(N, H, W, 3\)"):
        load_sample_set(bad)
    ok = write_set(tmp_path / "ok", layout.normals[None], mask=np.ones((10, 10), bool))
    with pytest.raises(SampleSetError, match="mask.npy"):
        load_sample_set(ok)


def test_cli_analyze_writes_reports(tmp_path, layout, capsys):
    samples, _truth = mode_samples(layout, [6, 3, 1], seed=5)
    lights = np.tile(layout.light, (len(samples), 1))
    root = tmp_path / "run"
    write_set(root / "a", samples, layout.image, layout.mask, lights, stem="a")
    write_set(root / "b", samples[:4], layout.image, layout.mask, None, stem="b")
    other = write_set(tmp_path / "other" / "a", samples[::-1], layout.image, layout.mask, lights)
    assert main(["analyze", str(root), "--compare", str(other.parent)]) == 0
    out = capsys.readouterr().out
    assert "Wasserstein distance" in out
    for name in ("a", "b"):
        assert (root / name / "report.png").stat().st_size > 1000
        assert (root / name / "spread.npy").exists()
    rep = json.loads((root / "a" / "report.json").read_text())
    assert rep["n_samples"] == 10 and rep["n_modes"] == 3
    assert [m["share"] for m in rep["modes"]] == [0.6, 0.3, 0.1]
    assert rep["compare"]["wasserstein"] == pytest.approx(0, abs=1e-4)  # same set, reordered
    assert rep["lights"]["source"] == "lights.npy"
    level = rep["clustering"]["curvature_level"]
    assert len(level["per_sample"]) == 10 and level["median"] > level["flat_below"] == FLAT_LEVEL
    assert len(rep["embedding"]["coords"]) == 10 and rep["embedding"]["method"].startswith("t-SNE")
    rep_b = json.loads((root / "b" / "report.json").read_text())
    assert rep_b["lights"]["source"].startswith("estimated")
    assert rep_b["embedding"]["method"] == "PCA"
    assert "compare" not in rep_b


def test_cli_analyze_notes_flat_and_unrelated_samples(tmp_path, layout, capsys):
    rng = np.random.default_rng(1)
    flat = np.zeros((5, 64, 64, 3))
    flat[..., 2] = 1
    write_set(tmp_path / "flat", normalize(flat + rng.normal(0, 0.01, flat.shape)), stem="flat")
    # Each sample reads a different region as a bump (one region each): no reading recurs.
    singles = np.stack([flip_regions(layout.normals, layout.regions, [k]) for k in range(1, 5)])
    write_set(tmp_path / "singles", singles, stem="singles")
    write_set(tmp_path / "modes", mode_samples(layout, [4, 3])[0], stem="modes")
    assert main(["analyze", str(tmp_path), "--no-plot"]) == 0
    out = capsys.readouterr().out
    notes = {name: [line for line in out.splitlines() if line.startswith(str(tmp_path / name) + ": ") and "->" not in line]
             for name in ("flat", "singles", "modes")}
    assert len(notes["flat"]) == 1 and "essentially flat" in notes["flat"][0]
    assert len(notes["singles"]) == 1 and "every sample is its own mode" in notes["singles"][0]
    assert notes["modes"] == []


def test_cli_analyze_errors(tmp_path, capsys):
    assert main(["analyze", str(tmp_path / "nope")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(["analyze", str(tmp_path)]) == 2
    assert "no samples found" in capsys.readouterr().err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "normals.npy").write_bytes(b"not an npy file")
    assert main(["analyze", str(bad)]) == 2
    assert "could not be read" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["analyze", str(bad), "--modes", "zero"])
