"""Every kind of input the Python API takes, converted exactly as image files are."""

import numpy as np
import pytest
import torch
from PIL import Image
from test_sampling import sphere_image, tiny_model, tiny_schedule

import mssfs
from mssfs.core.images import ImageError
from mssfs.sampler.input_types import ACCEPTED, expand_inputs
from mssfs.sampler.inputs import prepare_input


def dim_u8(h=40, w=48) -> np.ndarray:
    """A dim image: its brightest pixel is 97 of 255."""
    return np.round(sphere_image(h, w) * 97).astype(np.uint8)


def same(a, b):
    """Two prepared inputs hold the same image and mask."""
    np.testing.assert_allclose(a.image, b.image, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(a.mask, b.mask)


def test_integer_arrays_scaled_by_their_type_not_their_maximum(tmp_path):
    u8 = dim_u8()
    got = prepare_input(u8)
    assert got.image.max() == pytest.approx(97 / 255)  # not brightened to 1
    assert not any("divided by" in note for note in got.notes)
    Image.fromarray(u8).save(tmp_path / "dim.png")
    same(got, prepare_input(tmp_path / "dim.png"))
    u16 = (u8.astype(np.uint16) * 257)
    assert prepare_input(u16).image.max() == pytest.approx(97 / 255)
    assert prepare_input(u8.astype(np.int16) * 128).image.max() == pytest.approx(97 * 128 / 32767)


def test_float_arrays_keep_their_values():
    img = sphere_image() * 0.4
    np.testing.assert_allclose(prepare_input(img).image, np.where(prepare_input(img).mask, img, 0))


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "LA"])
def test_colour_and_alpha_arrays_match_the_same_png(tmp_path, mode):
    u8 = dim_u8()
    rgb = np.stack([u8, np.roll(u8, 3, axis=1), u8 // 2], -1)
    alpha = np.where(sphere_image(40, 48) > 0.05, 255, 0).astype(np.uint8)
    arr = {"RGB": rgb, "RGBA": np.dstack([rgb, alpha]), "LA": np.dstack([u8, alpha])}[mode]
    Image.fromarray(arr, mode).save(tmp_path / "x.png")
    from_file, from_array = prepare_input(tmp_path / "x.png"), prepare_input(arr)
    same(from_array, from_file)
    same(prepare_input(Image.fromarray(arr, mode)), from_file)
    if mode != "RGB":  # the alpha channel is the mask, as for files
        np.testing.assert_array_equal(from_array.mask, alpha >= 128)


def test_single_channel_and_16_bit_pil_images(tmp_path):
    u8 = dim_u8()
    same(prepare_input(u8[..., None]), prepare_input(u8))
    same(prepare_input(Image.fromarray(u8)), prepare_input(u8))
    u16 = u8.astype(np.uint16) * 257
    Image.fromarray(u16).save(tmp_path / "x16.png")
    same(prepare_input(Image.open(tmp_path / "x16.png")), prepare_input(u16))
    assert prepare_input(Image.open(tmp_path / "x16.png")).stem == "x16"


@pytest.mark.parametrize("shape", [(40, 48), (1, 40, 48), (1, 1, 40, 48)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8, torch.bfloat16])
def test_torch_tensors(shape, dtype):
    u8 = dim_u8()
    ref = prepare_input(u8 if dtype == torch.uint8 else u8 / 255.0)
    t = torch.from_numpy(u8).reshape(shape)
    t = t if dtype == torch.uint8 else (t.float() / 255).to(dtype)
    got = prepare_input(t)
    tol = 4e-3 if dtype == torch.bfloat16 else 1e-6
    np.testing.assert_allclose(got.image, ref.image, atol=tol)
    assert got.stem == "tensor"


def test_colour_tensor_channels_first_matches_the_array():
    rgb = np.stack([dim_u8()] * 3, -1)
    same(prepare_input(torch.from_numpy(rgb).permute(2, 0, 1)), prepare_input(rgb))


@pytest.mark.parametrize("bad", [42, 3.5, {"image": 1}, b"bytes", None, [[0.1, 0.2], [0.3, 0.4]]])
def test_other_objects_get_a_type_error_naming_them(bad):
    with pytest.raises(TypeError) as info:
        prepare_input(bad)
    assert type(bad).__name__ in str(info.value) and ACCEPTED in str(info.value)
    with pytest.raises(TypeError, match="input 1 of the list"):
        expand_inputs([dim_u8(), bad])


@pytest.mark.parametrize("bad, message", [
    (np.zeros((3, 40, 48)), "channels first"),
    (np.zeros((40, 48, 5)), r"shape \(40, 48, 5\) is not an image"),
    (np.zeros((2, 40, 48, 1)), "is not an image"),
    (torch.zeros(2, 1, 40, 48), "pass list\\(tensor\\)"),
    (torch.zeros(5, 40, 48), "is not an image"),
])
def test_bad_shapes_get_an_image_error(bad, message):
    with pytest.raises(ImageError, match=message):
        prepare_input(bad)


def test_folders_and_lists_expand_in_order(tmp_path):
    for name in ("b.png", "a.npy", "c.tif"):
        (tmp_path / name).touch()
    (tmp_path / "notes.txt").touch()
    items, several = expand_inputs(tmp_path)
    assert several and [p.name for p in items] == ["a.npy", "b.png", "c.tif"]
    items, several = expand_inputs(["stimulus:circles", str(tmp_path)])
    assert several and len(items) == 4 and items[0] == "stimulus:circles"
    assert expand_inputs("stimulus:circles") == (["stimulus:circles"], False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageError, match="no image files"):
        expand_inputs(tmp_path / "empty")
    with pytest.raises(ImageError, match="empty list"):
        expand_inputs([])


def test_sample_takes_lists_folders_and_mixed_objects(tmp_path):
    u8 = dim_u8(32, 32)
    np.save(tmp_path / "one.npy", sphere_image(32, 32))
    Image.fromarray(u8).save(tmp_path / "two.png")
    kw = dict(n=1, model=tiny_model(), schedule=tiny_schedule(num_steps=2), device="cpu")
    single = mssfs.sample(torch.from_numpy(u8), **kw)
    assert isinstance(single, mssfs.SampleResult) and single.normals.shape == (1, 32, 32, 3)
    several = mssfs.sample([Image.fromarray(u8), u8, torch.from_numpy(u8)], **kw)
    assert [type(r).__name__ for r in several] == ["SampleResult"] * 3
    for r in several:  # one conversion for every kind: the same samples
        np.testing.assert_allclose(r.normals, single.normals, atol=1e-5)
    folder = mssfs.sample(tmp_path, **kw)
    assert [r.stem for r in folder] == ["one", "two"]
    with pytest.raises(ValueError, match="list of masks"):
        mssfs.sample(tmp_path, mask=np.ones((32, 32), bool), **kw)
