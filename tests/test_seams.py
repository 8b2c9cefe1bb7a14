"""Seam index: the patch grid's visibility, on constructed maps."""

import numpy as np
import pytest

from mssfs.analysis.seams import grid_lines, output_grid, seam_index


def sphere(size=128, radius=60):
    y, x = np.mgrid[0:size, 0:size] + 0.5
    u, v = (x - size / 2) / radius, -(y - size / 2) / radius
    r2 = u * u + v * v
    mask = r2 < 1
    n = np.stack([u, v, np.sqrt(np.clip(1 - r2, 0, 1))], -1)
    return np.where(mask[..., None], n, 0.0), mask


def patch_tilted(n, mask, degrees=8.0, seed=0, period=16):
    """Every ``period x period`` patch rotated by its own small random tilt."""
    rng = np.random.default_rng(seed)
    out = n.copy()
    h, w = mask.shape
    for r in range(0, h, period):
        for c in range(0, w, period):
            t = np.radians(degrees) * rng.normal(size=2)
            block = out[r : r + period, c : c + period]
            block[..., 0] += t[0]
            block[..., 1] += t[1]
    out /= np.maximum(np.linalg.norm(out, axis=-1, keepdims=True), 1e-12)
    return np.where(mask[..., None], out, 0.0)


def test_grid_lines_pick_the_pairs_across_each_line():
    assert grid_lines(64, 16).tolist() == [15, 31, 47]
    assert grid_lines(64, 16, origin=-8).tolist() == [7, 23, 39, 55]
    assert grid_lines(10, 16).tolist() == []
    with pytest.raises(ValueError, match="period"):
        grid_lines(64, 0)


def test_output_grid_follows_the_padding_and_the_scale():
    period, origin = output_grid((40, 80), 32)
    assert period == pytest.approx(16 * 80 / 32) and origin == (-20.0, 0.0)


def test_smooth_sphere_is_near_one_and_a_patch_grid_is_well_above():
    n, mask = sphere()
    smooth = seam_index(n, mask)
    assert 0.85 < smooth < 1.05  # 0.94 for this sphere
    tilted = patch_tilted(n, mask)
    assert seam_index(tilted, mask) > 2.0
    # The same tilts on a grid shifted by half a patch are invisible to the index.
    both = seam_index(np.stack([n, tilted]), mask)
    assert both.shape == (2,) and both[1] > both[0]
    assert seam_index(tilted, mask, origin=(8.0, 8.0)) < 1.2


def test_seam_index_checks_shapes_and_is_nan_without_pairs():
    n, mask = sphere(32, 14)
    with pytest.raises(ValueError, match="mask shape"):
        seam_index(n, mask[:-1])
    with pytest.raises(ValueError, match="normals"):
        seam_index(n[..., :2], mask)
    assert np.isnan(seam_index(n, mask, period=100.0))
