"""Seam and integrability losses (docs/method.md#guided-ddim): zeros, plants, gradients, dtypes."""

import numpy as np
import pytest
import torch

from mssfs.core.frame import integrability_residual, normals_to_slopes
from mssfs.core.integrate import normals_from_depth
from mssfs.sampler.guidance import (
    image_tilt_axis,
    integrability_loss,
    lateral_floor,
    lock_tilt,
    safe_angle,
    seam_loss,
    shading_loss,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def height_normals(size=48, dtype=torch.float64):
    """(1, 3, size, size) normals of a smooth height field, y-up frame."""
    r = np.arange(size)[:, None]
    c = np.arange(size)[None, :]
    z = 6 * np.sin(r / 8.0) * np.cos(c / 6.0) + 0.01 * (r - 20) * (c - 10)
    n = normals_from_depth(z)
    return torch.tensor(n, dtype=dtype).permute(2, 0, 1)[None], n


def linear_field(size=48, dtype=torch.float64):
    """Unnormalised normals linear in pixel position: linear extrapolation is exact."""
    r = torch.arange(size, dtype=dtype)[:, None].expand(size, size)
    c = torch.arange(size, dtype=dtype)[None, :].expand(size, size)
    return torch.stack([0.01 * c - 0.2, 0.005 * r + 0.1, torch.ones_like(r)])[None]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_seam_loss_zero_on_constant_and_linear_fields(dtype, device):
    const = torch.tensor([0.3, -0.2, 0.9], dtype=dtype, device=device)[None, :, None, None].expand(2, 3, 32, 48)
    out = seam_loss(const)
    assert out.shape == (2,) and out.dtype == dtype and out.device.type == device
    assert torch.all(out.abs() < 1e-6)
    lin = linear_field(dtype=dtype).to(device)
    assert float(seam_loss(lin)) < (1e-6 if dtype == torch.float64 else 3e-3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_seam_loss_positive_across_planted_seam_and_mask_excludes_it(dtype):
    x = torch.tensor([0.0, 0.0, 1.0], dtype=dtype)[None, :, None, None].repeat(1, 1, 48, 48)
    planted = x.clone()
    planted[:, :, 16:32, 16:32] = torch.tensor([0.5, 0.5, 0.7], dtype=dtype)[None, :, None, None]
    clean, bad = float(seam_loss(x)), float(seam_loss(planted))
    assert clean < 1e-6 and bad > 0.05
    mask = torch.ones(48, 48, dtype=torch.bool)
    mask[16:32, 16:32] = False
    assert float(seam_loss(planted, mask=mask)) < 1e-6


def test_integrability_zero_on_height_field_and_sign_choice():
    x, n = height_normals()
    loss = float(integrability_loss(x))
    p, q = normals_to_slopes(n)
    expected = float(np.mean((2 * integrability_residual(p, q)) ** 2))  # bracket = 2 x geometry's curl
    assert loss == pytest.approx(expected, rel=1e-6, abs=1e-12)
    assert loss < 1e-4
    # The DESIGN frame's q = -ny/nz used in the published bracket would not vanish:
    flipped = x.clone()
    flipped[:, 1] *= -1
    assert float(integrability_loss(flipped)) > 100 * max(loss, 1e-8)


def test_integrability_positive_on_non_integrable_field():
    r = torch.arange(32, dtype=torch.float64)[:, None].expand(32, 32)
    c = torch.arange(32, dtype=torch.float64)[None, :].expand(32, 32)
    # Slopes p = 0.02 y, q = -0.02 x (y up): a rotation, the gradient of no height field.
    x = torch.stack([0.02 * r, 0.02 * c, torch.ones_like(r)])[None]
    assert float(integrability_loss(x)) > 1e-3


@pytest.mark.parametrize("loss_fn", [seam_loss, integrability_loss])
def test_gradcheck_float64(loss_fn):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, 32, 32, generator=g, dtype=torch.float64) * 0.3
    x[:, 2] = x[:, 2].abs() + 0.5  # keep nz away from the clamps so the function is smooth
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: loss_fn(v).sum(), (x,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("loss_fn", [seam_loss, integrability_loss])
def test_gradients_finite_on_degenerate_fields(loss_fn):
    x = torch.zeros(1, 3, 32, 32, dtype=torch.float32)
    x[:, 2] = 1.0
    x[:, :, :, 20:] *= -1  # antiparallel region and exact agreement
    x[:, 2, 5, 5] = 0.0  # nz = 0 somewhere
    x.requires_grad_(True)
    (g,) = torch.autograd.grad(loss_fn(x).sum(), x)
    assert torch.isfinite(g).all()


def test_losses_are_per_image():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 3, 32, 32, generator=g)
    for fn in (seam_loss, integrability_loss):
        batch = fn(x)
        single = torch.stack([fn(x[i : i + 1])[0] for i in range(3)])
        assert torch.allclose(batch, single, rtol=1e-5, atol=1e-6)


def test_safe_angle_values():
    a = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    b = torch.tensor([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [-1.0, 0.0, 0.0]])
    ang = safe_angle(a, b, dim=1)
    assert torch.allclose(ang, torch.tensor([0.0, np.pi / 2, np.pi]), atol=3e-3)


# ---------------------------------------------------------------- shading loss (ours)
def rendered(light=(0.3, 0.5, 0.8), albedo=0.8, size=48, dtype=torch.float64):
    """Normals of a height field, its mask-free shadowless Lambertian image (B=1)."""
    x, n = height_normals(size, dtype)
    l_vec = np.asarray(light) / np.linalg.norm(light)
    img = albedo * np.clip(n @ l_vec, 0, None)
    return x, torch.tensor(img, dtype=dtype)[None, None]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shading_loss_zero_when_one_light_explains_the_image(dtype, device):
    for light in [(0.3, 0.5, 0.8), (-0.6, 0.1, 0.7)]:
        x, img = rendered(light, dtype=dtype)
        x, img = x.to(device), img.to(device)
        assert float(shading_loss(2.5 * x, img)) < 1e-4  # scale of x0 does not matter
        flipped = x * torch.tensor([-1.0, -1.0, 1.0], dtype=dtype, device=device)[None, :, None, None]
        assert float(shading_loss(flipped, img)) < 1e-4  # the convex/concave flip fits the mirrored light
        flat = torch.zeros_like(x)
        flat[:, 2] = 1
        assert float(shading_loss(flat, img)) > 0.02  # a flat field cannot explain shading


def test_shading_loss_sees_a_planted_wrong_region_and_the_mask_hides_it():
    x, img = rendered()
    bad = x.clone()
    bad[:, 0, 10:30, 10:30] *= -1  # a region that reads the other way
    assert float(shading_loss(bad, img)) > 0.01
    mask = torch.ones(1, 1, 48, 48, dtype=torch.bool)
    mask[..., 8:32, 8:32] = False
    assert float(shading_loss(bad, img, mask)) < 1e-4
    with pytest.raises(ValueError, match="does not match"):
        shading_loss(x, img[..., :40])


def test_shading_loss_gradient_is_exact_without_ridge():
    # The light is held fixed; at its least-squares optimum the loss is stationary in the
    # light (envelope theorem), so with ridge 0 the gradient is the loss's full gradient.
    x, img = rendered()
    g = torch.Generator().manual_seed(0)
    x = (x + 0.1 * torch.randn(x.shape, generator=g, dtype=x.dtype)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: shading_loss(v, img, ridge=0.0).sum(), (x,), eps=1e-6, atol=1e-5)


def test_shading_loss_is_per_image():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 3, 32, 32, generator=g)
    img = torch.rand(3, 1, 32, 32, generator=g)
    batch = shading_loss(x, img)
    single = torch.stack([shading_loss(x[i : i + 1], img[i : i + 1])[0] for i in range(3)])
    assert torch.allclose(batch, single, rtol=1e-5, atol=1e-6)


# ------------------------------------------------- floor on the fitted light's lateral part
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_lateral_floor_turns_only_steep_lights_and_keeps_length_direction_and_side(dtype, device):
    b = torch.tensor([[0.1, 0.0, 1.0], [0.0, 0.0, 2.0], [0.6, 0.0, 0.8], [0.03, -0.04, -1.0], [0.0, 0.0, 0.0]],
                     dtype=dtype, device=device)
    out = lateral_floor(b, 0.5)
    assert out.dtype == dtype and out.device == b.device
    assert torch.allclose(out.norm(dim=1), b.norm(dim=1), atol=1e-6)  # length kept
    share = out[:, :2].norm(dim=1) / out.norm(dim=1).clamp_min(1e-12)
    assert torch.allclose(share[[0, 3]], torch.full((2,), 0.5, dtype=dtype, device=device), atol=1e-6)
    assert torch.equal(out[[1, 2, 4]], b[[1, 2, 4]])  # on the axis, already lateral, zero: unchanged
    assert torch.allclose(out[3, :2] / out[3, :2].norm(), b[3, :2] / b[3, :2].norm(), atol=1e-6)  # direction kept
    assert out[3, 2] < 0 and out[0, 2] > 0  # side of the image plane kept
    assert torch.equal(lateral_floor(b, 0.0), b)
    per_light = lateral_floor(b, torch.tensor([0.5, 0.0, 0.0, 0.0, 0.0], dtype=dtype, device=device))
    assert torch.allclose(per_light[0], out[0]) and torch.equal(per_light[1:], b[1:])  # one floor per light
    with pytest.raises(ValueError, match="one per light"):
        lateral_floor(b, torch.zeros(3))
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="min_lateral"):
            lateral_floor(b, bad)


def test_shading_loss_floor_is_free_under_a_lateral_light_and_costs_under_a_frontal_one():
    x, img = rendered((0.5, 0.4, 0.77))  # image-plane share 0.64
    assert float(shading_loss(x, img, min_lateral=0.5)) < 1e-4
    x, img = rendered((0.05, 0.0, 1.0))  # nearly frontal: the floor's prior is wrong here
    assert float(shading_loss(x, img)) < 1e-4
    assert float(shading_loss(x, img, min_lateral=0.5)) > 0.01


def test_shading_loss_floor_pushes_a_nearly_flat_estimate_harder_toward_slopes():
    # On a nearly flat estimate the fitted light lies close to the view axis, so without the
    # floor the loss hardly moves the normals' image-plane parts; with it the push is larger.
    # Here the fitted light's image-plane share is about 0.18, so the floor 0.5 lengthens
    # that part about 2.8 times, and the push on the image-plane parts grows with it.
    _, img = rendered((0.6, 0.3, 0.74))
    g = torch.Generator().manual_seed(2)
    flat = torch.zeros(1, 3, 48, 48, dtype=torch.float64)
    flat[:, 2] = 1
    flat = flat + 0.01 * torch.randn(flat.shape, generator=g, dtype=flat.dtype)
    push = []
    for floor in (0.0, 0.5):
        x = flat.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(shading_loss(x, img, min_lateral=floor).sum(), x)
        push.append(float(grad[:, :2].norm()))
    assert push[1] > 2 * push[0]


# ------------------------------------------------- the light's tilt from the image's shading axis
def bumps_image(tilt_deg, size=64, slant_deg=50.0, dtype=torch.float64):
    """(1, 1, size, size) shadowless image of round bumps and dents under a light of that tilt."""
    r, c = np.mgrid[0:size, 0:size].astype(float)
    z = np.zeros((size, size))
    for k, (cy, cx) in enumerate([(16, 16), (16, 48), (48, 16), (48, 48), (32, 32)]):
        z += (1 if k % 2 else -1) * 6 * np.exp(-((r - cy) ** 2 + (c - cx) ** 2) / 40.0)
    n = normals_from_depth(z)
    t, s = np.radians(tilt_deg), np.radians(slant_deg)
    light = np.array([np.sin(s) * np.cos(t), np.sin(s) * np.sin(t), np.cos(s)])
    return torch.tensor(np.clip(n @ light, 0, None), dtype=dtype)[None, None], light


def axis_error_deg(axis, tilt_deg):
    a = np.degrees(np.arctan2(float(axis[1]), float(axis[0])))
    return abs((a - tilt_deg + 90) % 180 - 90)  # up to sign


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_image_tilt_axis_finds_the_light_tilt_of_round_bumps_up_to_sign(dtype, device):
    for tilt in (0.0, 35.0, 90.0, 150.0, -120.0):
        img, _ = bumps_image(tilt, dtype=dtype)
        axis = image_tilt_axis(img.to(device))
        assert axis.shape == (1, 2) and axis.dtype == dtype and axis.device.type == device
        assert abs(float(axis.norm()) - 1) < 1e-5 and float(axis[0, 1]) >= 0  # unit, upper half-plane
        assert axis_error_deg(axis[0].cpu(), tilt) < 5, tilt
    # a batch is per image, and a featureless image has no axis
    a, _ = bumps_image(20.0, dtype=dtype)
    b, _ = bumps_image(110.0, dtype=dtype)
    axes = image_tilt_axis(torch.cat([a, b, torch.full_like(a, 0.5)]).to(device))
    assert axis_error_deg(axes[0].cpu(), 20.0) < 5 and axis_error_deg(axes[1].cpu(), 110.0) < 5
    assert torch.equal(axes[2].cpu(), torch.zeros(2, dtype=dtype))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_signed_image_tilt_axis_follows_the_mean_gradient_and_else_the_light_above(dtype, device):
    rows, cols = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    for deg in (0.0, 60.0, 180.0, -100.0, -30.0):  # a shading ramp: the gradient is its direction
        t = np.radians(deg)
        ramp = (0.5 + 0.01 * (np.cos(t) * cols - np.sin(t) * rows)).to(dtype)[None, None].to(device)
        for frame_edge in (False, True):
            axis = image_tilt_axis(ramp, frame_edge=frame_edge, signed=True)[0].cpu()
            assert axis.dtype == dtype and abs(float(axis[0]) - np.cos(t)) < 1e-4 and abs(float(axis[1]) - np.sin(t)) < 1e-4
    # bumps on flat ground inside the frame: the gradients sum to the flat edge's, zero, so the
    # image says no sign and the light is taken from above, whichever side it comes from
    r = np.hypot(*np.meshgrid(np.arange(48.0) - 23.5, np.arange(48.0) - 23.5, indexing="ij"))
    z = 6.0 * np.clip(1 - (r / 12) ** 2, 0, None) ** 2  # a bump with a rim, flat ground around it
    t = np.radians(-120.0)
    light = np.array([0.6 * np.cos(t), 0.6 * np.sin(t), 0.8])
    img = torch.tensor(np.clip(normals_from_depth(z) @ light, 0, None), dtype=dtype)[None, None]
    for noise in (0.0, 1e-9):
        jitter = noise * torch.randn(img.shape, generator=torch.Generator().manual_seed(0), dtype=dtype)
        axis = image_tilt_axis((img + jitter).to(device), frame_edge=True, signed=True)[0].cpu()
        assert float(axis[1]) >= 0 and axis_error_deg(axis, -120.0) < 5


def test_image_tilt_axis_at_the_frame_edge_is_the_principal_axis_of_numpys_gradient():
    img, _ = bumps_image(35.0, dtype=torch.float64)
    img = img + 0.02 * torch.linspace(0, 1, 64, dtype=torch.float64)  # shading that reaches the edge
    mask = np.ones((64, 64), bool)
    mask[20:30, 5:15] = False  # a hole: its rim and the pixels next to it are left out
    g_row, g_col = np.gradient(img[0, 0].numpy())
    inner = mask.copy()
    inner[1:] &= mask[:-1]
    inner[:-1] &= mask[1:]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    grad = np.stack([g_col[inner], -g_row[inner]], -1)
    want = np.linalg.eigh(grad.T @ grad)[1][:, -1]
    got = image_tilt_axis(img, torch.from_numpy(mask), frame_edge=True)[0].numpy()
    assert abs(abs(float(got @ want)) - 1) < 1e-12
    assert abs(abs(float(image_tilt_axis(img, frame_edge=True)[0].numpy() @ want)) - 1) > 1e-9  # the hole counts


def test_image_tilt_axis_has_a_gradient():
    img, _ = bumps_image(35.0, dtype=torch.float64)
    img = img[..., 20:36, 20:36].clone().requires_grad_(True)
    for frame_edge in (False, True):
        assert torch.autograd.gradcheck(lambda x, e=frame_edge: image_tilt_axis(x, frame_edge=e, signed=True), (img,))


def test_image_tilt_axis_reads_only_inside_the_mask():
    img, _ = bumps_image(80.0)
    planted = img.clone()
    stripes = 0.5 + 0.5 * torch.sin(0.8 * torch.arange(24, dtype=img.dtype))  # varying along x only
    planted[..., :, 40:] = stripes
    assert axis_error_deg(image_tilt_axis(planted)[0], 80.0) > 45  # the stripes take over the axis
    mask = torch.ones(64, 64, dtype=torch.bool)
    mask[:, 38:] = False
    assert axis_error_deg(image_tilt_axis(planted, mask)[0], 80.0) < 10
    with pytest.raises(ValueError, match="B, 1, H, W"):
        image_tilt_axis(img[0])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_lock_tilt_sets_only_the_tilt_and_keeps_length_slant_and_side(dtype, device):
    b = torch.tensor([[0.3, 0.4, 0.8], [-0.5, 0.1, 0.6], [0.2, -0.2, -0.9], [0.0, 0.0, 1.0]], dtype=dtype, device=device)
    axis = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 0.0], [0.0, 1.0]], dtype=dtype, device=device)
    out = lock_tilt(b, axis)
    assert out.dtype == dtype and out.device == b.device
    assert torch.allclose(out.norm(dim=1), b.norm(dim=1), atol=1e-6)  # length
    assert torch.allclose(out[:, 2], b[:, 2])  # slant (and side of the image plane)
    assert torch.allclose(out[0, :2], torch.tensor([0.5, 0.0], dtype=dtype, device=device), atol=1e-6)
    # b_xy . axis < 0: the light stays on its own side of the axis
    assert torch.allclose(out[1, :2], -b[1, :2].norm() * axis[1], atol=1e-6)
    assert torch.equal(out[2], b[2])  # zero axis: free
    assert torch.equal(out[3], b[3])  # no image-plane part: nothing to turn
    with pytest.raises(ValueError, match="axis must be"):
        lock_tilt(b, axis[:2])
    with pytest.raises(ValueError, match="unit length"):
        lock_tilt(b, 2 * axis)


def test_shading_loss_with_the_true_tilt_is_free_and_with_a_wrong_one_costs():
    x, img = rendered((0.5, 0.4, 0.77))
    true_axis = torch.tensor([[0.5, 0.4]], dtype=torch.float64)
    true_axis = true_axis / true_axis.norm()
    assert float(shading_loss(x, img, tilt_axis=true_axis)) < 1e-4
    assert float(shading_loss(x, img, tilt_axis=-true_axis)) < 1e-4  # the sign stays free
    wrong = torch.tensor([[-0.4, 0.5]], dtype=torch.float64)
    wrong = wrong / wrong.norm()  # at right angles to the true tilt
    assert float(shading_loss(x, img, tilt_axis=wrong)) > 0.05
    assert torch.equal(shading_loss(x, img, tilt_axis=torch.zeros(1, 2, dtype=torch.float64)), shading_loss(x, img))
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(shading_loss(xg, img, tilt_axis=wrong).sum(), xg)
    assert torch.isfinite(grad).all() and float(grad.abs().max()) > 0  # the locked light pushes the normals


def test_floor_and_tilt_never_read_values_back_from_a_device_tensor():
    # On an accelerator, reading a value back waits for the device; the floor and the lock
    # must not do that at every guided iteration.  A "meta" tensor has no values at all, so
    # any read-back raises here.
    b = torch.zeros(4, 3, device="meta")
    out = lateral_floor(b, torch.full((4,), 0.5, device="meta"))
    assert out.shape == (4, 3) and out.device.type == "meta"
    locked = lock_tilt(b, torch.zeros(4, 2, device="meta"))
    assert locked.shape == (4, 3) and locked.device.type == "meta"


def test_shading_loss_with_a_given_light_fits_only_its_strength_and_decides_the_side():
    light = np.array([0.5, 0.4, 0.77]) / np.linalg.norm([0.5, 0.4, 0.77])
    x, img = rendered(tuple(light))
    given = torch.tensor(light, dtype=torch.float64)[None]
    flipped = x * torch.tensor([-1.0, -1.0, 1.0], dtype=torch.float64)[None, :, None, None]
    assert float(shading_loss(x, img, light=given)) < 1e-4  # the true light explains the image
    assert float(shading_loss(flipped, img)) < 1e-4  # free: the inversion fits the mirrored light
    assert float(shading_loss(flipped, img, light=given)) > 0.05  # given: the inversion costs
    assert float(shading_loss(1.7 * x, img, light=given)) < 1e-4  # strength (albedo) is still fitted
    assert torch.equal(shading_loss(x, img, light=torch.zeros(1, 3, dtype=torch.float64)), shading_loss(x, img))
    xg = flipped.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(shading_loss(xg, img, light=given).sum(), xg)
    assert torch.isfinite(grad).all() and float(grad.abs().max()) > 0
    # per image: a batch of the true normals and the inversion, with and without a light
    both = torch.cat([x, flipped])
    losses = shading_loss(both, img.expand(2, -1, -1, -1), light=torch.cat([given, torch.zeros(1, 3, dtype=torch.float64)]))
    assert float(losses[0]) < 1e-4 and float(losses[1]) < 1e-4
