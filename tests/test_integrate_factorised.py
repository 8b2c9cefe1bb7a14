"""Poisson integration with the system factorised once per mask gives what a fresh
solve gives, for every map that shares the mask."""

import numpy as np
import pytest

from mssfs.analysis.mesh import depth_maps
from mssfs.core.frame import normalize
from mssfs.core.integrate import PoissonIntegrator, depth_from_normals


def ring_mask(h=30, w=36):
    r, c = np.mgrid[0:h, 0:w]
    d = np.hypot(r - h / 2, c - w / 2)
    return (d < 13) & (d > 4)  # a hole: two boundaries


def random_normals(seed, shape):
    n = np.random.default_rng(seed).normal(size=shape + (3,))
    n[..., 2] = np.abs(n[..., 2]) + 1
    return normalize(n)


def test_shared_factorisation_equals_fresh_solves():
    mask = ring_mask()
    maps = np.stack([random_normals(k, mask.shape) for k in range(4)]) * mask[None, ..., None]
    shared = depth_maps(maps, mask)
    for k in range(4):
        fresh = depth_from_normals(maps[k], mask).astype(np.float32)
        np.testing.assert_allclose(shared[k], fresh, rtol=0, atol=1e-5)
    integ = PoissonIntegrator(mask)
    np.testing.assert_allclose(depth_from_normals(maps[2], mask, integrator=integ),
                               depth_from_normals(maps[2], mask), atol=1e-9)


def test_an_integrator_refuses_another_mask():
    mask = ring_mask()
    other = mask.copy()
    other[0, 0] = True
    with pytest.raises(ValueError, match="another mask"):
        depth_from_normals(random_normals(0, mask.shape), other, integrator=PoissonIntegrator(mask))


def test_integrable_field_is_recovered():
    mask = ring_mask()
    r, c = np.mgrid[0:30, 0:36].astype(float)
    z = 0.02 * (c - 18) ** 2 - 0.03 * (r - 15) * (c - 18)
    p = np.gradient(z, axis=1)  # dz/dx (x right)
    q = -np.gradient(z, axis=0)  # dz/dy (y up)
    got = PoissonIntegrator(mask).solve(p, q)
    got[mask] -= got[mask].mean()
    want = np.where(mask, z - z[mask].mean(), 0)
    assert np.abs(got - want)[mask].max() < 1e-4  # central differences of a quadratic are exact
