import numpy as np
import pytest
from test_geometry import sphere

from mssfs.analysis.layouts import generated_bump_dent_layout
from mssfs.core.frame import normalize
from mssfs.core.integrate import normals_from_depth
from mssfs.core.render import render
from mssfs.evaluation.baselines import classical_sfs, estimate_light_from_image, flat_normals
from mssfs.evaluation.metrics import error_metrics


def angle(a, b):
    return float(np.degrees(np.arccos(np.clip(normalize(a) @ normalize(b), -1, 1))))


LIGHTS = [(0.3, 0.4, 0.866), (-0.5, 0.2, 0.84), (0.6, -0.5, 0.62)]


def test_flat_normals():
    img = np.zeros((8, 8))
    img[2:6, 2:6] = 0.5
    n = flat_normals(img)
    assert n.dtype == np.float32 and n.shape == (8, 8, 3)
    assert np.all(n[2:6, 2:6] == (0, 0, 1)) and np.all(n[0] == 0)
    mask = np.ones((8, 8), bool)
    assert np.all(flat_normals(img, mask)[..., 2] == 1)


@pytest.mark.parametrize("light", LIGHTS)
def test_contour_light_estimate_on_sphere(light):
    n, mask = sphere()
    light = normalize(np.array(light))
    est = estimate_light_from_image(render(n, light, 0.8), mask)
    assert est.method == "contour"
    # Measured 1-2 degrees at 64 px (the outermost pixel centres are not exactly at grazing,
    # and the outward directions come from a smoothed pixel mask); 5 degrees leaves room.
    assert angle(est.light, light) < 5
    assert est.albedo == pytest.approx(0.8, rel=0.02)


@pytest.mark.parametrize("light", LIGHTS)
def test_classical_sfs_beats_flat_on_sphere(light):
    n, mask = sphere()
    img = render(n, normalize(np.array(light)), 0.8)
    flat = error_metrics(flat_normals(img, mask), n, mask)["mean"]
    ours = error_metrics(classical_sfs(img, mask), n, mask)["mean"]
    # Flat is 45 degrees on a sphere; measured about 6-10 degrees here.
    assert ours < 0.7 * flat
    assert ours < 15


def test_classical_sfs_output_format():
    n, mask = sphere(48)
    out = classical_sfs(render(n, (0, 0, 1)), mask, light=(0, 0, 1), iters=20)
    assert out.shape == (48, 48, 3) and out.dtype == np.float32
    assert np.all(out[~mask] == 0)
    assert np.allclose(np.linalg.norm(out[mask], axis=-1), 1, atol=1e-5)
    assert np.all(out[mask, 2] >= 0)


@pytest.mark.parametrize("seed", [1, 3, 4])
def test_statistics_light_estimate_on_relief_up_to_the_flip(seed):
    L = generated_bump_dent_layout(seed, 96)
    est = estimate_light_from_image(L.image, L.mask)
    assert est.method == "statistics"
    flipped = L.light * np.array([-1, -1, 1])
    # Measured about 1 degree from the light or its convex/concave flip.
    assert min(angle(est.light, L.light), angle(est.light, flipped)) < 5


def test_statistics_light_without_a_sign_in_the_image_is_taken_from_above():
    # bump and dent on flat ground inside the frame, lit from below: the gradients sum to the
    # flat edge's, so the mean gradient holds no sign and only rounding would pick one
    rows, cols = np.meshgrid(np.arange(64.0), np.arange(64.0), indexing="ij")
    z = np.zeros((64, 64))
    for (cy, cx), s in (((20, 22), 1.0), ((42, 40), -1.0)):
        r = np.hypot(rows - cy, cols - cx)
        z += s * 6.0 * np.clip(1 - (r / 11) ** 2, 0, None) ** 2
    light = normalize(np.array([0.3, -0.5, 0.8]))
    img = np.clip(normals_from_depth(z) @ light, 0, None)
    mask = np.ones(img.shape, bool)
    for noise in (0.0, 1e-10, -1e-10):
        est = estimate_light_from_image(img + noise * np.sin(cols), mask)
        assert est.method == "statistics" and est.light[1] >= 0
        assert angle(est.light, light * np.array([-1, -1, 1])) < 5  # the flip of the true light


def test_errors():
    with pytest.raises(ValueError, match="empty"):
        classical_sfs(np.zeros((16, 16)))
    with pytest.raises(ValueError, match="mask shape"):
        flat_normals(np.ones((4, 4)), np.ones((3, 3), bool))
