"""Lighting consistency (DESIGN.md §8): planted flipped patches are flipped back."""

import numpy as np
import pytest

from mssfs.geometry import normals_from_depth
from mssfs.lighting import (
    consistent_lighting,
    estimate_light,
    flip_decisions,
    flip_normals,
    patch_lights,
    select_pixels,
)
from mssfs.render import render

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
