import numpy as np
import pytest
import tifffile
from PIL import Image

from mssfs.core.images import ImageError, alpha_mask, load_input, read_image, validate_image
from mssfs.data import stimuli


def ramp(h=32, w=40):
    return np.linspace(0, 1, h * w).reshape(h, w)


def test_png8_png16_jpeg_tiff_npy(tmp_path):
    img = ramp()
    Image.fromarray(np.round(img * 255).astype(np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.round(img * 65535).astype(np.uint16)).save(tmp_path / "b.png")
    Image.fromarray(np.round(img * 255).astype(np.uint8)).save(tmp_path / "c.jpg", quality=95)
    tifffile.imwrite(tmp_path / "d.tif", img.astype(np.float32))
    np.save(tmp_path / "e.npy", img)
    for name, tol in [("a.png", 1 / 255), ("b.png", 1 / 65535), ("c.jpg", 0.03), ("d.tif", 1e-6), ("e.npy", 0)]:
        out, notes = read_image(tmp_path / name)
        assert out.shape == img.shape and out.dtype == np.float64
        assert np.abs(out - img).max() <= tol + 1e-9, name
        assert notes == []


def test_rgb_converted_with_note(tmp_path):
    rgb = np.stack([ramp()] * 3, -1)
    Image.fromarray(np.round(rgb * 255).astype(np.uint8), "RGB").save(tmp_path / "rgb.png")
    out, notes = read_image(tmp_path / "rgb.png")
    assert out.shape == (32, 40)
    assert any("grayscale" in n for n in notes)
    assert np.abs(out - ramp()).max() < 2 / 255


def test_alpha_channel_read_as_mask_not_intensity(tmp_path):
    grey = np.round(ramp() * 255).astype(np.uint8)
    alpha = np.full(grey.shape, 255, np.uint8)
    alpha[:, :10] = 0
    alpha[:3, 10:] = 100  # below half: transparent
    Image.fromarray(np.stack([grey, alpha], -1), "LA").save(tmp_path / "la.png")
    Image.fromarray(np.stack([grey] * 3 + [alpha], -1), "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(np.stack([grey] * 3 + [np.full_like(alpha, 255)], -1), "RGBA").save(tmp_path / "opaque.png")
    a16 = np.stack([grey.astype(np.uint16) * 257] * 3 + [alpha.astype(np.uint16) * 257], -1)
    tifffile.imwrite(tmp_path / "rgba16.tif", a16)
    for name in ("la.png", "rgba.png", "rgba16.tif"):
        out, notes = read_image(tmp_path / name)
        assert np.abs(out - grey / 255).max() < 2 / 255, name  # alpha does not darken the intensity
        assert any("alpha channel not used as intensity" in n for n in notes), name
        m = alpha_mask(tmp_path / name)
        assert m is not None and m.dtype == bool and np.array_equal(m, alpha >= 128), name
    assert alpha_mask(tmp_path / "opaque.png") is None  # nothing transparent: no mask
    Image.fromarray(grey).save(tmp_path / "grey.png")
    assert alpha_mask(tmp_path / "grey.png") is None


def test_palette_png_transparency_becomes_alpha(tmp_path):
    idx = np.zeros((20, 24), np.uint8)
    idx[4:16, 5:20] = 1
    im = Image.fromarray(idx, "P")
    im.putpalette([0, 0, 0, 200, 200, 200] + [0] * 762)
    im.save(tmp_path / "p.png", transparency=0)
    m = alpha_mask(tmp_path / "p.png")
    assert m is not None and np.array_equal(m, idx == 1)
    out, _ = read_image(tmp_path / "p.png")
    assert out[10, 10] == pytest.approx(200 / 255, abs=1e-6)


@pytest.mark.parametrize(
    "array,message",
    [
        (np.zeros((0, 0)), "empty"),
        (np.full((32, 32), 0.3), "constant"),
        (np.ones((8, 64)) * np.arange(64), "smaller"),
        (np.where(np.eye(32) > 0, np.nan, 0.5), "NaN"),
        (np.where(np.eye(32) > 0, np.inf, 0.5), "NaN or infinite"),
        (np.zeros((4, 32, 32)), "grayscale"),
    ],
)
def test_bad_arrays_refused(array, message):
    with pytest.raises(ImageError, match=message):
        validate_image(array, "test")


def test_bad_files_refused(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "junk.png").write_bytes(b"not a png")
    with pytest.raises(ImageError, match="could not be read"):
        read_image(tmp_path / "junk.png")
    (tmp_path / "x.gif").write_bytes(b"GIF89a")
    with pytest.raises(ImageError, match="unsupported format"):
        read_image(tmp_path / "x.gif")
    with pytest.raises(ImageError, match="folder"):
        read_image(tmp_path)


def test_stimuli_bundled_unchanged():
    sizes = {"circles": 540, "rings": 512, "star": 256, "snake": 256}
    for name, size in sizes.items():
        a = stimuli.load(name)
        assert a.shape == (size, size) and a.dtype == np.float64
        assert 0 <= a.min() and a.max() <= 1
    assert "MIT License" in stimuli.notice()
    with pytest.raises(ValueError, match="unknown stimulus"):
        stimuli.load("square")


def test_load_input_stimulus_and_file(tmp_path):
    img, stem, _ = load_input("stimulus:circles")
    assert stem == "circles" and img.shape == (540, 540)
    with pytest.raises(ImageError, match="unknown stimulus"):
        load_input("stimulus:nope")
    np.save(tmp_path / "mine.npy", ramp())
    img, stem, _ = load_input(tmp_path / "mine.npy")
    assert stem == "mine"
