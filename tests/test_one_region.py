"""One-region consistency and where its strict share is lost, on constructed bumps read whole,
inverted, half inverted, shallow and flat."""

import numpy as np
import pytest

from mssfs.analysis.one_region import BREAKDOWN, one_region_consistency, strict_breakdown
from mssfs.core.integrate import normals_from_depth
from mssfs.core.render import render

LIGHT = np.array([0.5, 0.3, 0.81]) / np.linalg.norm([0.5, 0.3, 0.81])


@pytest.fixture(scope="module")
def bump():
    size = 96
    y, x = np.mgrid[0:size, 0:size] + 0.5
    z = 22 * np.exp(-((x - 48) ** 2 + (y - 48) ** 2) / (2 * 14**2))
    mask = np.ones((size, size), bool)
    n = normals_from_depth(z, mask)
    return n, 0.7 * render(n, LIGHT), mask


def flipped(n, where=None):
    out = n.copy()
    sel = np.ones(n.shape[:2], bool) if where is None else where
    out[sel, :2] *= -1
    return out


def test_a_bump_read_whole_either_way_is_consistent(bump):
    n, image, mask = bump
    assert one_region_consistency(n, image, mask, LIGHT) == pytest.approx(1.0)
    assert one_region_consistency(n, image, mask) == pytest.approx(1.0)  # its own light
    inv = flipped(n)
    assert one_region_consistency(inv, image, mask, LIGHT) == pytest.approx(0.0)
    assert one_region_consistency(inv, image, mask) == pytest.approx(1.0)  # the flipped light explains it


def test_a_bump_read_half_inverted_gives_half(bump):
    n, image, mask = bump
    left = np.zeros(mask.shape, bool)
    left[:, :48] = True
    quarter = np.zeros(mask.shape, bool)
    quarter[:48, :48] = True
    out = one_region_consistency(np.stack([flipped(n, left), flipped(n, quarter)]), image, mask, LIGHT)
    assert out.shape == (2,)
    assert out[0] == pytest.approx(0.5, abs=0.05)
    assert out[1] == pytest.approx(0.75, abs=0.06)


def test_undefined_cases_and_bad_shapes(bump):
    n, image, mask = bump
    assert np.isnan(one_region_consistency(n, image, mask, np.array([0.0, 0.0, 1.0])))
    flat = np.zeros_like(n)
    flat[..., 2] = 1
    assert np.isnan(one_region_consistency(flat, image, mask, LIGHT))
    with pytest.raises(ValueError, match="do not match"):
        one_region_consistency(n[:-1], image, mask)
    with pytest.raises(ValueError, match="mask shape"):
        one_region_consistency(n, image, mask[:-1])


def test_strict_counts_flat_and_shallow_parts_against_the_sample(bump):
    n, image, mask = bump
    assert one_region_consistency(n, image, mask, LIGHT, strict=True) > 0.95
    assert one_region_consistency(flipped(n), image, mask, strict=True) > 0.95  # inverted with its light
    assert one_region_consistency(flipped(n), image, mask, LIGHT, strict=True) < 0.05
    rows, cols = np.mgrid[0:96, 0:96] + 0.5
    side = LIGHT[0] * (48 - rows) - LIGHT[1] * (cols - 48) > 0  # one half of the bump, cut along the light
    half_flat = n.copy()
    half_flat[side] = (0.0, 0.0, 1.0)
    # the curvature-weighted measure ignores the flat half; the strict one counts it against
    assert one_region_consistency(half_flat, image, mask, LIGHT) > 0.95
    assert one_region_consistency(half_flat, image, mask, LIGHT, strict=True) == pytest.approx(0.5, abs=0.1)
    # a bump of a fifth of the height renders too little of the image's shading
    shallow = normals_from_depth(0.2 * depth_of(n), mask)
    assert one_region_consistency(shallow, image, mask, LIGHT, strict=True) < 0.2
    flat = np.zeros_like(n)
    flat[..., 2] = 1
    assert one_region_consistency(flat, image, mask, LIGHT, strict=True) == 0.0
    assert one_region_consistency(n, image, mask, np.array([0.0, 0.0, 1.0]), strict=True) == 0.0  # undecided light
    assert np.isnan(one_region_consistency(n, np.full(mask.shape, 0.5), mask, LIGHT, strict=True))  # no shading


def depth_of(n):
    size = n.shape[0]
    y, x = np.mgrid[0:size, 0:size] + 0.5
    return 22 * np.exp(-((x - 48) ** 2 + (y - 48) ** 2) / (2 * 14**2))


def test_strict_breakdown_says_where_the_strict_share_is_lost(bump):
    n, image, mask = bump
    flat = np.zeros_like(n)
    flat[..., 2] = 1
    shallow = normals_from_depth(0.2 * depth_of(n), mask)
    left = np.zeros(mask.shape, bool)
    left[:, :48] = True
    maps = np.stack([n, flipped(n), shallow, flat, flipped(n, left)])
    parts = strict_breakdown(maps, image, mask, LIGHT)
    assert parts.shape == (5, len(BREAKDOWN)) and BREAKDOWN[0] == "read"
    np.testing.assert_allclose(parts.sum(axis=1), 1.0)
    # the read share is the strict one-region consistency, map by map
    np.testing.assert_allclose(parts[:, 0], one_region_consistency(maps, image, mask, LIGHT, strict=True))
    read, shallow_, inverted, other = parts.T
    assert read[0] > 0.95  # the bump as lit
    assert inverted[1] > 0.95  # the dent under the same light
    assert shallow_[2] > 0.8  # the right way, a fifth of the height
    assert other[3] == 1.0  # flat: neither light renders any gradient (a tie)
    # half inverted: read and inverted share the shading (unequally: the light lies across the cut)
    assert read[4] + inverted[4] > 0.95 and min(read[4], inverted[4]) > 0.3
    # a light without image-plane part decides nothing; one map gives one row
    np.testing.assert_allclose(strict_breakdown(n, image, mask, np.array([0.0, 0.0, 1.0])), [0, 0, 0, 1])
    assert np.isnan(strict_breakdown(n, np.full(mask.shape, 0.5), mask, LIGHT)).all()  # no shading
    with pytest.raises(ValueError, match="do not match"):
        strict_breakdown(n[:-1], image, mask)
