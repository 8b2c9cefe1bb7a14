"""The ``figures`` relief family (mssfs.data.shapes.figures) and its place outside the default mix."""

import dataclasses
import math

import numpy as np
import pytest

from mssfs.data import HeldoutImages, TrainingImages, shapes
from mssfs.data.shapes import figures
from mssfs.data.shapes.frame import pixel_grid

SIZE = 64
FLAT_NZ = math.cos(math.radians(1.0))


def _plan(seed):
    return figures.plan(shapes.family_rng("figures", seed))


def test_registered_as_a_relief_outside_the_default_mix():
    fam = shapes.FAMILIES["figures"]
    assert fam.kind == "reliefs" and "figures" in shapes.RELIEF_FAMILIES and fam.description
    assert "figures" not in shapes.DEFAULT_MIX
    assert "figures" not in TrainingImages(size=32).mix
    assert "figures" not in HeldoutImages(4, size=32, kind="reliefs").mix
    assert list(TrainingImages(size=32, mix={"figures": 3.0}).mix) == ["figures"]


def test_maps_are_unit_deterministic_and_mostly_flat():
    flat = []
    for seed in range(24):
        normals, mask = shapes.generate("figures", seed, SIZE)
        assert mask.all()
        np.testing.assert_allclose(np.linalg.norm(normals, axis=-1), 1.0, atol=1e-5)
        again, _ = shapes.generate("figures", seed, SIZE)
        assert np.array_equal(again, normals)
        share = float((normals[..., 2] > FLAT_NZ).mean())
        assert 0.3 < share < 0.995, f"seed {seed}: {share:.2f} of the ground is flat"
        flat.append(share)
        assert np.all(normals[normals[..., 2] > 1 - 1e-12][:, :2] == 0.0)  # flat ground is exactly (0, 0, 1)
    assert 0.55 < np.mean(flat) < 0.95
    assert not np.array_equal(shapes.generate("figures", 0, SIZE)[0], shapes.generate("figures", 1, SIZE)[0])


def test_layouts_reach_every_kind_sign_and_size():
    figs = [f for seed in range(60) for f in _plan(seed)]
    assert {f.kind for f in figs} == set(figures.KINDS)
    for kind in figures.KINDS:
        assert {f.sign for f in figs if f.kind == kind} == {-1.0, 1.0}, kind
    radii = np.array([f.radius for f in figs])
    lo, hi = figures.RADIUS_RANGE
    assert radii.min() >= lo and radii.max() <= hi
    assert radii.min() < 1.5 * lo and radii.max() > 0.7 * hi
    counts = {len(_plan(seed)) for seed in range(60)}
    assert 1 in counts and max(counts) >= 4


def _lone(kind, sign, radius=0.5, seed=0):
    """The first figure of ``kind`` in the seeds' layouts, moved to the centre with ``sign``."""
    for s in range(seed, seed + 200):
        for f in _plan(s):
            if f.kind == kind:
                return dataclasses.replace(f, cx=0.0, cy=0.0, radius=radius, sign=sign)
    raise AssertionError(f"no {kind} in 200 layouts")


@pytest.mark.parametrize("kind", figures.KINDS)
def test_each_kind_stays_in_its_footprint_and_is_a_gradient(kind):
    size = 128
    gx, gy = figures.slopes([_lone(kind, 1.0)], size)
    x, y = pixel_grid(size)
    g = np.hypot(gx, gy)
    assert g.max() > 0
    assert np.all(g[np.hypot(x, y) > 0.95] == 0.0), "ground beyond the figure is flat"
    # the slopes of a height field are curl-free: d(gx)/dy = d(gy)/dx up to discretisation
    px = 2.0 / size
    dgx_dy = -(gx[1:, :-1] + gx[1:, 1:] - gx[:-1, :-1] - gx[:-1, 1:]) / (2 * px)
    dgy_dx = (gy[:-1, 1:] + gy[1:, 1:] - gy[:-1, :-1] - gy[1:, :-1]) / (2 * px)
    curl = np.abs(dgx_dy - dgy_dx)
    scale = np.abs(dgx_dy) + np.abs(dgy_dx) + np.abs(np.diff(gx, axis=1)[:-1] / px)
    assert curl.mean() < 0.08 * scale.mean()


@pytest.mark.parametrize("kind", ["disc", "star"])
def test_raised_figures_rise_and_sunk_ones_sink(kind):
    size = 64
    x, _ = pixel_grid(size)
    for sign in (1.0, -1.0):
        gx, _ = figures.slopes([_lone(kind, sign, radius=0.6)], size)
        band = (np.abs(x) > 0.2) & (np.abs(x) < 0.5) & (np.abs(pixel_grid(size)[1]) < 0.05)
        # raised: the height falls away from the centre, so dz/dx < 0 right of it, > 0 left of it
        outward = np.sign(x[band]) * gx[band]
        assert np.sign(outward.sum()) == -sign


@pytest.mark.parametrize("profile", ["power", "bell", "mesa"])
def test_radial_profiles_meet_the_ground_and_the_centre_flat(profile):
    p = {"profile": profile, "gamma": 1.5, "shoulder": 0.3}
    u = np.array([0.0, 1.0 - 1e-9, 1.0, 1.5])
    assert np.allclose(figures._radial(p, u), 0.0, atol=1e-3)
    inner = figures._radial(p, np.linspace(0.05, 0.95, 50))
    assert np.all(inner <= 0.0) and inner.min() < -0.5


def test_default_stream_is_the_default_families_generated_maps():
    ds = TrainingImages(size=32, seed=3, grid_offset=False, augment=False)
    items = [item for item, _ in zip(ds, range(12))]
    assert all(item["family"] in shapes.DEFAULT_MIX for item in items)
    for item in items[:4]:
        normals, _ = shapes.generate(item["family"], item["seed"], 32)
        assert np.array_equal(item["normals"].permute(1, 2, 0).numpy(), normals)
    same = TrainingImages(size=32, seed=3, grid_offset=False, augment=False, mix=dict(shapes.DEFAULT_MIX))
    for a, (b, _) in zip(items, zip(same, range(12))):
        assert (a["family"], a["seed"]) == (b["family"], b["seed"]) and np.array_equal(a["image"], b["image"])
