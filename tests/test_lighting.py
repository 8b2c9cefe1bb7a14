"""Lighting consistency (docs/method.md#lighting-consistency): planted flipped patches are flipped back."""

import numpy as np
import pytest

from mssfs.analysis.layouts import bump_dent_relief, generated_bump_dent_layout
from mssfs.core.integrate import normals_from_depth
from mssfs.core.render import render
from mssfs.sampler.lighting import (
    consistent_lighting,
    consistent_regions,
    estimate_light,
    flip_decisions,
    flip_normals,
    patch_lights,
    region_flip_decisions,
    select_pixels,
    shading_regions,
)

LIGHT = np.array([0.3, 0.45, 0.84]) / np.linalg.norm([0.3, 0.45, 0.84])


def bumpy_field(size=96, seed=0):
    """Gentle random bumps filling the frame (no attached shadows under LIGHT)."""
    rng = np.random.default_rng(seed)
    r, c = np.mgrid[0:size, 0:size].astype(float)
    z = np.zeros((size, size))
    for _ in range(120):
        cr, cc = rng.uniform(0, size, 2)
        s = rng.uniform(3, 8)
        z += rng.uniform(-4, 4) * np.exp(-((r - cr) ** 2 + (c - cc) ** 2) / (2 * s**2))
    n = normals_from_depth(z)
    return n, render(n, LIGHT)


def test_planted_flipped_block_is_flipped_back_and_nothing_else():
    n, img = bumpy_field()
    assert img.min() > 0  # no shadows: the linear model is exact
    planted = n.copy()
    planted[16:48, 32:64] = flip_normals(planted[16:48, 32:64])  # a 2 x 2 block of patches
    res = consistent_lighting(planted, img)
    expected = np.zeros((6, 6), bool)
    expected[1:3, 2:4] = True
    assert res.valid[1:3, 2:4].all() and res.valid.mean() > 0.8
    np.testing.assert_array_equal(res.flipped, expected)
    np.testing.assert_allclose(res.normals, n, atol=1e-12)


def test_consistent_field_is_left_alone():
    n, img = bumpy_field(seed=3)
    res = consistent_lighting(n, img)
    assert not res.flipped.any()
    np.testing.assert_array_equal(res.normals, n)


def test_patch_lights_recover_the_light():
    n, img = bumpy_field(seed=1)
    lights, valid = patch_lights(n, img, select_pixels(img))
    assert valid.mean() > 0.8
    np.testing.assert_allclose(lights[valid], np.broadcast_to(LIGHT, lights[valid].shape), atol=1e-6)
    assert np.all(lights[~valid] == 0)


def test_select_pixels_is_upper_half_inside_mask():
    _, img = bumpy_field(seed=2)
    mask = np.zeros(img.shape, bool)
    mask[10:80, 5:90] = True
    sel = select_pixels(img, mask)
    assert not sel[~mask].any()
    assert 0.45 < sel[mask].mean() <= 0.55 + 1e-9


def test_patches_with_too_few_pixels_are_never_flipped():
    lights = np.array([LIGHT] * 6 + [flip_normals(LIGHT)] * 2)
    valid = np.ones(8, bool)
    assert flip_decisions(lights, valid).tolist() == [False] * 6 + [True] * 2
    valid[6] = False
    assert flip_decisions(lights, valid).tolist() == [False] * 7 + [True]
    n, img = bumpy_field()
    planted = n.copy()
    planted[:16, :16] = flip_normals(planted[:16, :16])
    res = consistent_lighting(planted, img, min_pixels=10_000)  # no patch qualifies
    assert not res.flipped.any()


def test_flip_needs_the_threshold():
    # A small cluster whose flip is barely closer than itself (difference < 0.1) stays.
    big = np.array([0.0, 0.0, 1.0])
    lights = np.array([big] * 6 + [np.array([0.7, 0.0, 0.714])] * 2)
    lights[6:] /= np.linalg.norm(lights[6:], axis=1, keepdims=True)
    # flipping (0.7, 0, 0.714) gives (-0.7, 0, 0.714): same cosine with +z, difference 0
    assert not flip_decisions(lights, np.ones(8, bool)).any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_estimate_light(dtype):
    n, img = bumpy_field(seed=4)
    l = estimate_light(n.astype(dtype), img.astype(dtype))
    np.testing.assert_allclose(l, LIGHT, atol=1e-5)
    assert np.allclose(estimate_light(np.zeros_like(n), img), 0)


# ----------------------------------------------------------------------------- region flips (ours)


def _matches(labels, truth):
    """Each true region lies (but for rim pixels, whose slope is ~0) in one found region,
    a different one for each, which stays within 4 pixels of it."""
    from scipy import ndimage

    found = set()
    for k in range(1, truth.max() + 1):
        vals, counts = np.unique(labels[truth == k], return_counts=True)
        best = vals[np.argmax(counts)]
        assert best > 0 and counts.max() >= 0.95 * (truth == k).sum()
        assert not ((labels == best) & ~ndimage.binary_dilation(truth == k, iterations=4)).any()
        found.add(int(best))
    return found


def test_shading_regions_find_the_features_of_layouts():
    # Generated layouts put features as close as 3 pixels; at a coarse resolution two of
    # them can touch and merge (3 of these 36 cases when this was written).
    exact = 0
    for size in (64, 96, 128):
        for seed in range(12):
            lay = generated_bump_dent_layout(seed, size)
            labels = shading_regions(lay.image)
            sizes = np.bincount(labels.ravel())[1:]
            assert np.all(np.diff(sizes) <= 0)  # ordered by size
            if labels.max() == lay.regions.max():
                assert len(_matches(labels, lay.regions)) == lay.regions.max()
                exact += 1
    assert exact >= 30


def test_shading_regions_single_region_without_featureless_areas():
    _, img = bumpy_field()
    assert shading_regions(img).max() == 1
    mask = np.zeros(img.shape, bool)
    mask[20:70, 10:80] = True
    labels = shading_regions(img, mask)
    assert labels.max() == 1 and not labels[~mask].any()
    assert shading_regions(np.full((48, 48), 0.7)).max() == 0  # nothing featured
    with pytest.raises(ValueError, match="flat_gradient"):
        shading_regions(img, flat_gradient=0)
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        shading_regions(img[..., None])


def _layout(count_signs, size=128, light=LIGHT):
    """A relief of round features on flat ground: ``count_signs`` = list of (cy, cx, r, sign).

    The region labels are grown by 2 pixels: the finite-difference normals of a feature
    reach a pixel beyond its rim, and flipping ground pixels (normal +z) changes nothing.
    """
    from scipy import ndimage

    height, regions = bump_dent_relief([f[:3] for f in count_signs], [f[3] for f in count_signs], size)
    dist, (rows, cols) = ndimage.distance_transform_edt(regions == 0, return_indices=True)
    grown = np.where(dist <= 2, regions[rows, cols], 0)
    n = normals_from_depth(height)
    return n, render(n, light), grown


FOUR = [(32, 32, 18, 1), (32, 96, 18, 1), (96, 32, 18, 1), (96, 96, 18, -1)]


@pytest.mark.parametrize("planted", [[2], [4], [1, 3]])
def test_planted_flipped_regions_are_flipped_back(planted):
    n, img, regions = _layout(FOUR)
    bad = n.copy()
    for k in planted:
        bad[regions == k] = flip_normals(bad[regions == k])
    res = consistent_regions(bad, img)
    np.testing.assert_allclose(res.normals, n, atol=1e-12)
    assert res.flipped.sum() == len(planted)
    assert res.residual_after < 1e-6 < res.residual_before


def test_fewer_pixels_are_flipped_when_both_readings_fit():
    # Three of four features flipped: the consistent field with the fewest flips is the
    # full inversion of the truth (one feature flipped, the light mirrored).
    n, img, regions = _layout(FOUR)
    bad = n.copy()
    for k in (1, 2, 3):
        bad[regions == k] = flip_normals(bad[regions == k])
    res = consistent_regions(bad, img)
    assert res.flipped.sum() == 1
    expected = bad.copy()
    expected[regions == 4] = flip_normals(expected[regions == 4])
    np.testing.assert_allclose(res.normals, expected, atol=1e-12)
    assert res.residual_after < 1e-6


def test_consistent_and_single_region_fields_are_left_alone():
    n, img, _ = _layout(FOUR)
    res = consistent_regions(n, img)
    assert not res.flipped.any() and res.flipped.shape == (4,)
    np.testing.assert_array_equal(res.normals, n)
    # one feature: flipping it is the other reading of the whole image, never a repair
    n1, img1, reg1 = _layout([(64, 64, 30, 1)])
    flipped = n1.copy()
    flipped[reg1 == 1] = flip_normals(flipped[reg1 == 1])
    assert not consistent_regions(flipped, img1).flipped.any()


def test_region_flip_needs_the_threshold():
    n, img, regions = _layout(FOUR)
    bad = n.copy()
    bad[regions == 2] = flip_normals(bad[regions == 2])
    bad = bad + np.random.default_rng(0).normal(0, 0.05, bad.shape)  # no flip fits exactly
    bad /= np.linalg.norm(bad, axis=-1, keepdims=True)
    labels = shading_regions(img)
    flip, before, after = region_flip_decisions(bad, img, labels, threshold=0.0)
    assert flip.sum() == 1 and 0 < after < before
    drop = 1 - after / before  # the relative drop the flip brings
    assert region_flip_decisions(bad, img, labels, threshold=drop - 1e-6)[0].sum() == 1
    flip, b2, a2 = region_flip_decisions(bad, img, labels, threshold=drop + 1e-6)
    assert not flip.any() and a2 == b2 == before
    with pytest.raises(ValueError, match="shapes disagree"):
        region_flip_decisions(bad[:10], img, labels)


def test_many_regions_take_the_greedy_search():
    feats = [(14 + 25 * i, 14 + 25 * j, 9, 1 if (i + j) % 3 else -1) for i in range(5) for j in range(5)]
    n, img, regions = _layout(feats, size=128)
    labels = shading_regions(img)
    assert labels.max() == 25  # more than the 12 searched exhaustively
    bad = n.copy()
    for k in (3, 11, 19):
        bad[regions == k] = flip_normals(bad[regions == k])
    res = consistent_regions(bad, img)
    assert res.flipped.sum() == 3
    np.testing.assert_allclose(res.normals, n, atol=1e-12)


def test_region_flips_ignore_masked_and_dark_pixels():
    n, img, regions = _layout(FOUR)
    bad = n.copy()
    bad[regions == 2] = flip_normals(bad[regions == 2])
    mask = regions != 2  # the flipped feature is outside the foreground
    res = consistent_regions(bad, img, mask)
    assert not res.flipped.any() and not res.labels[~mask].any()
    np.testing.assert_array_equal(res.normals, bad)
    dark = consistent_regions(bad, np.zeros_like(img))
    assert not dark.flipped.any() and dark.residual_before == 0
