"""mssfs.data.user_maps / `mssfs data import`: training shards from the user's own maps."""

import json

import numpy as np
import pytest

from mssfs.analysis.layouts import generated_bump_dent_layout
from mssfs.cli import main
from mssfs.core.integrate import normals_from_depth
from mssfs.core.normal_io import save_normals
from mssfs.core.resize import resize_normals_array
from mssfs.data.datasets import TrainingImages
from mssfs.data.shards import ShardSet
from mssfs.data.user_maps import MapImportError, import_maps, read_map
from mssfs.evaluation.metrics import angular_error


@pytest.fixture(scope="module")
def layout():
    return generated_bump_dent_layout(1, 96)


def decoded(folder):
    shards = ShardSet(folder)
    data = shards.load(0)
    return [shards.decode(data, i) for i in range(len(data["seed"]))]


def hemisphere(size=80, radius=30.0):
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    r2 = (rows - size / 2) ** 2 + (cols - size / 2) ** 2
    return np.where(r2 < radius**2, np.sqrt(np.maximum(radius**2 - r2, 0)), np.nan)


def test_normals_npy_png_height_and_depth_give_the_same_training_maps(tmp_path, layout):
    src = tmp_path / "in"
    src.mkdir()
    np.save(src / "a_normals.npy", layout.normals.astype(np.float32))
    save_normals(src / "b_normals.png", layout.normals)
    np.save(tmp_path / "height.npy", 0.5 * layout.height)
    np.save(tmp_path / "depth.npy", -0.5 * layout.height)
    import_maps([src], tmp_path / "n", size=64, progress=False)
    import_maps([tmp_path / "height.npy"], tmp_path / "h", kind="height", height_scale=2.0, size=64, progress=False)
    import_maps([tmp_path / "depth.npy"], tmp_path / "d", kind="depth", height_scale=2.0, size=64, progress=False)
    truth, _ = resize_normals_array(normals_from_depth(layout.height, layout.mask), (64, 64), layout.mask)
    items = decoded(tmp_path / "n") + decoded(tmp_path / "h") + decoded(tmp_path / "d")
    assert [it[2] for it in items] == ["imported"] * 4 and [it[3] for it in items] == [0, 1, 0, 0]
    for normals, mask, _, _ in items:
        assert mask.all()
        assert np.nanmax(angular_error(normals, truth, mask)) < 0.5  # int16 / 16-bit PNG rounding only
    manifest = json.loads((tmp_path / "n" / "manifest.json").read_text())
    assert manifest["count"] == 2 and [p.split("/")[-1] for p in manifest["shards"][0]["sources"]] == [
        "a_normals.npy",
        "b_normals.png",
    ]


def test_16_bit_png_height_map_with_its_scale(tmp_path, layout):
    from PIL import Image

    lo, hi = layout.height.min(), layout.height.max()
    Image.fromarray(np.round((layout.height - lo) / (hi - lo) * 65535).astype(np.uint16)).save(tmp_path / "h.png")
    n, mask = read_map(tmp_path / "h.png", "height", height_scale=hi - lo)
    assert mask.all()
    assert np.nanmax(angular_error(n, normals_from_depth(layout.height, layout.mask), mask)) < 0.1
    flat, _ = read_map(tmp_path / "h.png", "height", height_scale=(hi - lo) / 100)
    assert np.nanmean(angular_error(flat, n, mask)) > 1  # the scale matters


def test_height_with_nan_background_crop_and_flip_y(tmp_path):
    z = hemisphere()
    wide = np.full((80, 120), np.nan)
    wide[:, 20:100] = z  # central square crop recovers the hemisphere
    np.save(tmp_path / "wide.npy", wide)
    n, mask = read_map(tmp_path / "wide.npy", "height")
    assert mask.sum() == np.isfinite(z).sum()
    inner = np.zeros_like(mask)
    inner[:, 20:100] = np.isfinite(z) & (np.nan_to_num(z) > 8)  # away from the rim
    rows, cols = np.mgrid[0:80, 0:120].astype(np.float64)
    exact = np.stack([cols - 60, -(rows - 40), np.nan_to_num(wide)], -1)  # sphere normal, y up
    assert np.nanmax(angular_error(n, exact / np.linalg.norm(exact, axis=-1, keepdims=True), inner)) < 3
    import_maps([tmp_path / "wide.npy"], tmp_path / "out", kind="height", size=48, progress=False)
    ((_, m, _, _),) = decoded(tmp_path / "out")
    assert m.shape == (48, 48) and abs(m.mean() - np.isfinite(z).mean()) < 0.03  # the disc, not squashed
    # A y-down normal map read with flip_y equals the y-up map.
    down = n.copy()
    down[..., 1] *= -1
    np.save(tmp_path / "down.npy", down)
    flipped, _ = read_map(tmp_path / "down.npy", "normals", flip_y=True)
    assert np.allclose(flipped, n, atol=1e-6)


def test_bad_files_are_all_named_and_nothing_is_written(tmp_path, layout):
    src = tmp_path / "in"
    src.mkdir()
    np.save(src / "good.npy", layout.normals.astype(np.float32))
    away = layout.normals.copy()
    away[..., 2] *= -1  # z into the screen
    np.save(src / "away.npy", away.astype(np.float32))
    np.save(src / "gray.npy", np.zeros((32, 32), np.float32))  # not a normal map
    tiny = np.zeros((64, 64, 3), np.float32)
    tiny[:4, :4, 2] = 1
    np.save(src / "tiny.npy", tiny)
    (src / "notes.txt").write_text("ignored: not a map file")
    out = tmp_path / "out"
    with pytest.raises(MapImportError) as err:
        import_maps([src], out, progress=False)
    text = str(err.value)
    assert text.startswith("3 of 4 file(s) cannot be used")
    assert "away.npy" in text and "point away from the viewer" in text
    assert "gray.npy" in text and "(H, W, 3)" in text
    assert "tiny.npy" in text and "foreground pixels" in text
    assert "good.npy" not in text
    assert not out.exists()
    with pytest.raises(MapImportError, match="needs an explicit height scale"):
        read_map(save_normals(tmp_path / "h.png", layout.normals), "height")
    with pytest.raises(MapImportError, match="no such file"):
        import_maps([tmp_path / "missing"], out, progress=False)
    with pytest.raises(MapImportError, match="unsupported file type"):
        import_maps([src / "notes.txt"], out, progress=False)


def test_imported_shards_train(tmp_path, layout):
    from mssfs.model.unet import UNetConfig
    from mssfs.train.config import TrainConfig
    from mssfs.train.trainer import train

    for k in range(3):
        np.save(tmp_path / f"m{k}.npy", np.rot90(layout.normals, k).astype(np.float32))
    import_maps([tmp_path / f"m{k}.npy" for k in range(3)], tmp_path / "shards", size=48, shard_size=2, progress=False)
    item = next(iter(TrainingImages(tmp_path / "shards", size=None, seed=0)))
    assert item["image"].shape == (1, 32, 32) and item["family"] == "imported"
    cfg = TrainConfig(model=UNetConfig(base_width=8, mults=(1, 2), res_blocks=1, attn_heads=1, attn_head_dim=8,
                                       time_sin_dim=8, time_dim=16),
                      steps=2, patches_per_step=4, image_size=48, val_patches=4, val_every=2, log_every=1,
                      checkpoint_every=2, warmup_steps=1, precision="fp32", keep_checkpoints=0, device="cpu",
                      data=str(tmp_path / "shards"))
    result = train(cfg, tmp_path / "run", progress=False)
    assert np.isfinite(result.last_val)


def test_cli_data_import(tmp_path, capsys, layout):
    np.save(tmp_path / "m.npy", layout.normals.astype(np.float32))
    out = tmp_path / "shards"
    assert main(["data", "import", str(tmp_path / "m.npy"), "--out", str(out), "--size", "32"]) == 0
    assert "imported 1 normals map(s) as 32x32" in capsys.readouterr().out
    assert main(["data", "import", str(tmp_path / "m.npy"), "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["data", "import", str(tmp_path / "m.npy"), "--out", str(out), "--overwrite", "--kind", "depth"]) == 2
    assert "must be a float (H, W) array" in capsys.readouterr().err
    assert (out / "manifest.json").exists()  # the refused run left the earlier shards alone
    assert main(["data", "import", str(tmp_path / "m.npy"), "--out", str(tmp_path / "x"), "--size", "40"]) == 2
    assert "--size" in capsys.readouterr().err
