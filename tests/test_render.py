import math

import numpy as np
import pytest

from mssfs.core.render import add_sensor_noise, render, sample_lights


def test_render_hand_computed_values():
    n = np.array([[[0, 0, 1], [1, 0, 0], [0, 0, 0]], [[0, 0.6, 0.8], [-1, 0, 0], [0, -1, 0]]], float)
    light = np.array([0.0, 0.6, 0.8])
    img = render(n, light, albedo=0.5)
    expected = 0.5 * np.array([[0.8, 0.0, 0.0], [1.0, 0.0, 0.0]])
    expected[1, 2] = 0.0  # facing down, light from above: attached shadow, max(0, -0.6)
    assert np.allclose(img, expected)


def test_render_normalises_light_and_takes_albedo_map():
    n = np.zeros((2, 2, 3))
    n[..., 2] = 1
    alb = np.array([[0.5, 1.0], [0.75, 0.25]])
    assert np.allclose(render(n, [0, 0, 5.0], alb), alb)
    with pytest.raises(ValueError, match="zero vector"):
        render(n, [0, 0, 0])


def test_render_batched_lights():
    n = np.zeros((3, 4, 4, 3))
    n[..., 2] = 1
    lights = np.array([[0, 0, 1.0], [0, 0.6, 0.8], [1, 0, 0]])
    img = render(n, lights)
    assert img.shape == (3, 4, 4)
    assert np.allclose(img[:, 0, 0], [1.0, 0.8, 0.0])


def test_light_sampling_in_cone_and_uniform():
    rng = np.random.default_rng(0)
    lights = sample_lights(20000, rng)
    assert np.allclose(np.linalg.norm(lights, axis=1), 1)
    assert lights[:, 2].min() >= math.cos(math.radians(72)) - 1e-12
    # Uniform on the cap: l_z uniform on [cos 72deg, 1], azimuth uniform.
    zmin = math.cos(math.radians(72))
    assert abs(lights[:, 2].mean() - (1 + zmin) / 2) < 0.01
    assert abs(lights[:, 0].mean()) < 0.02 and abs(lights[:, 1].mean()) < 0.02


def test_sensor_noise_keeps_background_and_range():
    rng = np.random.default_rng(1)
    img = np.full((32, 32), 0.5)
    mask = np.zeros_like(img, bool)
    mask[8:24, 8:24] = True
    out = add_sensor_noise(img * mask, 0.05, rng, mask=mask)
    assert np.all(out[~mask] == 0)
    assert 0.03 < out[mask].std() < 0.07
    assert out.min() >= 0 and out.max() <= 1
    with pytest.raises(ValueError):
        add_sensor_noise(img, -1, rng)
