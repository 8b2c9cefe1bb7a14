import numpy as np
import pytest

from mssfs.core.frame import integrability_residual, normalize, normals_to_slopes, slopes_to_normals
from mssfs.core.integrate import depth_from_normals, normals_from_depth
from mssfs.core.normal_io import load_normals, save_normals
from mssfs.evaluation.metrics import angular_error, error_metrics


def sphere(size=64, radius=0.8):
    """Analytic unit-sphere normals on a size x size grid in the y-up frame."""
    c = (np.arange(size) + 0.5) / size * 2 - 1
    x, yrow = np.meshgrid(c, c)
    y = -yrow
    r2 = (x**2 + y**2) / radius**2
    mask = r2 < 1
    nz = np.sqrt(np.clip(1 - r2, 0, None))
    n = np.stack([x / radius, y / radius, nz], -1) * mask[..., None]
    return n, mask


def test_normalize_unit_and_zero():
    n = np.array([[3.0, 0, 4], [0, 0, 0]])
    out = normalize(n)
    assert np.allclose(out[0], [0.6, 0, 0.8])
    assert np.all(out[1] == 0)
    assert normalize(n.astype(np.float32)).dtype == np.float32


def test_angular_error_known_angles():
    gt = np.zeros((2, 2, 3))
    gt[..., 2] = 1
    pred = gt.copy()
    pred[0, 0] = [1, 0, 0]  # 90 degrees
    pred[0, 1] = [1, 0, 1]  # 45 degrees
    err = angular_error(pred, gt)
    assert err[0, 0] == pytest.approx(90)
    assert err[0, 1] == pytest.approx(45)
    assert err[1, 1] == pytest.approx(0, abs=1e-6)
    m = error_metrics(pred, gt)
    assert m["mean"] == pytest.approx(135 / 4)
    assert m["under_11.25"] == pytest.approx(0.5)
    assert m["under_30"] == pytest.approx(0.5)
    assert m["pixels"] == 4


def test_error_metrics_respects_mask_and_refuses_empty():
    n, mask = sphere(32)
    assert np.isnan(angular_error(n, n)[~mask]).all()
    with pytest.raises(ValueError, match="no pixel"):
        error_metrics(n, n, np.zeros_like(mask))


def test_slopes_round_trip_and_sign_convention():
    n, mask = sphere(32)
    p, q = normals_to_slopes(n)
    back = slopes_to_normals(p, q)
    assert np.allclose(back[mask], n[mask], atol=1e-6)
    # Upper half of a bump faces up (ny > 0) and its height falls going up: q < 0.
    top = mask.copy()
    top[16:] = False
    assert (q[top & (n[..., 1] > 0.1)] < 0).all()
    # Right half faces right and its height falls to the right: p < 0.
    assert (p[mask & (n[..., 0] > 0.1)] < 0).all()


def height_field(size=48):
    c = np.arange(size, dtype=np.float64)
    x, r = np.meshgrid(c, c)
    y = size - 1 - r
    z = 6 * np.exp(-((x - 20) ** 2 + (y - 26) ** 2) / 80) - 4 * np.exp(-((x - 32) ** 2 + (y - 14) ** 2) / 50)
    return z + 0.05 * x - 0.03 * y


def test_integrability_residual_small_for_real_surface_and_large_for_rotated_field():
    z = height_field()
    n = normals_from_depth(z)
    p, q = normals_to_slopes(n)
    curl = integrability_residual(p, q)
    assert np.abs(curl[2:-2, 2:-2]).max() < 0.02
    # A rotational field (p, q) = (-y, x) has constant curl -2 in y-up units.
    c = np.arange(16.0)
    x, r = np.meshgrid(c, c)
    y = -r
    curl2 = integrability_residual(-y * 0.1, x * 0.1)
    assert np.allclose(curl2, -0.2)


@pytest.mark.parametrize("method", ["poisson", "fc"])
def test_depth_normals_depth_round_trip(method):
    z = height_field()
    mask = np.zeros(z.shape, bool)
    mask[4:44, 6:42] = True
    n = normals_from_depth(z, mask)
    zr = depth_from_normals(n, mask, method=method)
    ref = z - z[mask].mean()
    err = np.abs(zr - ref)[mask]
    tol = 0.05 if method == "poisson" else 0.6
    assert err.mean() < tol, err.mean()
    assert np.all(zr[~mask] == 0)


def test_depth_of_sphere_is_a_dome():
    n, mask = sphere(64)
    z = depth_from_normals(n, mask)
    assert z[32, 32] > z[mask].mean() + 5
    assert z[32, 32] > z[32, 10]


def test_depth_refuses_bad_input():
    with pytest.raises(ValueError, match="empty"):
        depth_from_normals(np.zeros((8, 8, 3)))
    with pytest.raises(ValueError, match="unknown integration"):
        depth_from_normals(sphere(16)[0], method="magic")
    with pytest.raises(ValueError, match="shape"):
        depth_from_normals(np.zeros((8, 3)))


@pytest.mark.parametrize("bits,tol", [(8, 0.02), (16, 1e-4)])
def test_normal_png_round_trip(tmp_path, bits, tol):
    n, mask = sphere(32)
    path = save_normals(tmp_path / "n.png", n, bits=bits)
    back = load_normals(path)
    assert back.shape == n.shape
    assert np.abs(back[mask] - n[mask]).max() < tol
    assert np.all(back[~mask] == 0)
    assert not list(tmp_path.glob("*.part"))


def test_normal_png_with_black_background(tmp_path):
    from PIL import Image

    n, mask = sphere(32)
    rgb = np.where(mask[..., None], np.round((n + 1) / 2 * 255), 0).astype(np.uint8)  # black outside
    Image.fromarray(rgb).save(tmp_path / "black.png")
    back = load_normals(tmp_path / "black.png")
    assert np.all(back[~mask] == 0)
    assert np.abs(back[mask] - n[mask]).max() < 0.02


def test_normal_npy_round_trip_and_errors(tmp_path):
    n, _ = sphere(16)
    save_normals(tmp_path / "n.npy", n)
    assert np.array_equal(load_normals(tmp_path / "n.npy"), n.astype(np.float32))
    with pytest.raises(ValueError, match="unsupported"):
        save_normals(tmp_path / "n.bmp", n)
    assert not (tmp_path / "n.bmp").exists()
    with pytest.raises(FileNotFoundError):
        load_normals(tmp_path / "missing.png")
