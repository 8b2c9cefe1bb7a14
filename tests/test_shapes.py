"""Ground-truth normal maps of the procedural shape families (mssfs.data.shapes)."""

import numpy as np
import pytest

from mssfs.data import shapes
from mssfs.data.shapes import objects
from mssfs.data.shapes.frame import pixel_grid
from mssfs.data.shapes.raycast import View, render_implicit

SIZE = 64


def test_sphere_normals_are_analytic():
    size, radius, centre, scale = 96, 1.0, (0.1, -0.2), 1.3
    normals, mask = render_implicit(objects.Sphere(radius), size, View(np.eye(3), centre, scale))
    fx, fy = pixel_grid(size)
    x, y = centre[0] + scale * fx, centre[1] + scale * fy
    r2 = x**2 + y**2
    inside = r2 < radius**2
    # the mask is the disc (pixels within 1e-3 of the rim may go either way)
    clear = np.abs(np.sqrt(r2) - radius) > 1e-3
    assert np.array_equal(mask[clear], inside[clear])
    expected = np.stack([x, y, np.sqrt(np.clip(radius**2 - r2, 0, None))], -1) / radius
    err = np.linalg.norm(normals[mask] - expected[mask], axis=-1)
    # bisection to ~1e-5 of the radius: exact except at grazing rim pixels
    nz = expected[mask][:, 2]
    assert err[nz > 0.2].max() < 1e-4
    assert err.max() < 0.05
    assert np.all(normals[~mask] == 0)


@pytest.mark.parametrize(
    "cls",
    [objects.PerturbedSphere, objects.BlendedQuadrics, objects.Torus, objects.Capsules, objects.Revolution, objects.Extrusion],
)
def test_object_gradients_match_finite_differences(cls):
    rng = np.random.default_rng(1)
    for seed in range(3):
        shape = cls(np.random.default_rng(seed))
        p = rng.uniform(-0.8, 0.8, (3, 500)) * shape.bound
        g = np.stack(shape.gradient(*p))
        eps = 1e-6
        fd = np.stack([(shape.value(*(p + eps * e[:, None])) - shape.value(*(p - eps * e[:, None]))) / (2 * eps) for e in np.eye(3)])
        rel = np.linalg.norm(g - fd, axis=0) / (np.linalg.norm(fd, axis=0) + 1e-9)
        assert np.percentile(rel, 99) < 1e-5


def test_registry_and_mix():
    assert len(shapes.OBJECT_FAMILIES) >= 4 and len(shapes.RELIEF_FAMILIES) >= 3
    assert set(shapes.DEFAULT_MIX) <= set(shapes.FAMILIES)
    assert abs(sum(shapes.DEFAULT_MIX.values()) - 1.0) < 1e-9
    objects_share = sum(v for k, v in shapes.DEFAULT_MIX.items() if shapes.FAMILIES[k].kind == "objects")
    assert 0.5 <= objects_share <= 0.7
    assert all(f.description for f in shapes.FAMILIES.values())
    assert shapes.HELDOUT_SEED_BASE >= shapes.TRAIN_SEED_LIMIT


@pytest.mark.parametrize("family", list(shapes.FAMILIES))
def test_family_maps_are_valid_and_reproducible(family):
    for seed in (0, 1, 2):
        normals, mask = shapes.generate(family, seed, SIZE)
        assert normals.shape == (SIZE, SIZE, 3) and normals.dtype == np.float32
        assert mask.shape == (SIZE, SIZE) and mask.dtype == bool
        assert np.all(np.isfinite(normals))
        np.testing.assert_allclose(np.linalg.norm(normals[mask], axis=-1), 1.0, atol=1e-5)
        assert np.all(normals[~mask] == 0.0)
        assert np.all(normals[mask][:, 2] >= 0.0)  # visible side faces the viewer
        again, mask2 = shapes.generate(family, seed, SIZE)
        assert np.array_equal(again, normals) and np.array_equal(mask2, mask)
        if shapes.FAMILIES[family].kind == "objects":
            assert 0.02 < mask.mean() < 0.95
            border = np.concatenate([mask[0], mask[-1], mask[:, 0], mask[:, -1]])
            assert not border.any(), "objects lie inside the frame"
        else:
            assert mask.all()
            assert normals[..., 2].min() < 0.995, "a relief is not flat"
    other, _ = shapes.generate(family, 3, SIZE)
    assert not np.array_equal(other, normals)


@pytest.mark.parametrize("family", shapes.OBJECT_FAMILIES)
def test_object_contours_are_grazing(family):
    normals, mask = shapes.generate(family, 5, 128)
    inner = mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
    rim = mask[1:-1, 1:-1] & ~inner
    nz = normals[1:-1, 1:-1, 2]
    # at the occluding contour the surface turns away: rim pixels are much more oblique than the interior
    assert np.median(nz[rim]) < 0.45
    assert np.median(nz[rim]) < np.median(nz[inner]) - 0.3


@pytest.mark.parametrize("family", list(shapes.FAMILIES))
def test_same_shape_at_every_size(family):
    small, m_small = shapes.generate(family, 11, 64)
    large, m_large = shapes.generate(family, 11, 128)
    # block-average the large map down to 64x64 and compare where both are fully inside
    full = m_large.reshape(64, 2, 64, 2).all(axis=(1, 3)) & m_small
    down = large.reshape(64, 2, 64, 2, 3).mean(axis=(1, 3))
    down /= np.linalg.norm(down, axis=-1, keepdims=True) + 1e-12
    assert full.sum() > 20
    cos = np.sum(down[full] * small[full], axis=-1)
    assert np.median(cos) > 0.98


def test_generate_rejects_bad_arguments():
    with pytest.raises(ValueError, match="unknown shape family"):
        shapes.generate("teapot", 0, SIZE)
    with pytest.raises(ValueError, match="seed"):
        shapes.generate("blob", -1, SIZE)


def test_parse_mix():
    assert shapes.parse_mix("blob=1, bumps=3") == {"blob": 0.25, "bumps": 0.75}
    for bad in ("blob", "teapot=1", "blob=x", "blob=0", "blob=-1"):
        with pytest.raises(ValueError):
            shapes.parse_mix(bad)
