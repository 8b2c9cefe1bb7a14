"""What a SampleResult does besides save(): repr, notebook view, depth, meshes, analysis,
plots; the weights notice as a warning; progress by default only where someone watches;
the saved folder's alpha channel, TIFF and labelled stage grid."""

import base64
import inspect
import json
import re
import warnings

import numpy as np
import pytest
from PIL import Image
from test_sampling import sphere_image, tiny_model, tiny_schedule

import mssfs
from mssfs.analysis.mesh import depth_maps, read_obj, read_ply
from mssfs.cli import main
from mssfs.core.normal_io import load_normals
from mssfs.sampler import api
from mssfs.sampler.result import stages_grid


@pytest.fixture(scope="module")
def result():
    return mssfs.sample(sphere_image(40, 48), n=3, seed=2, model=tiny_model(), schedule=tiny_schedule(num_steps=3),
                        device="cpu")


def test_defaults_are_the_best_we_have():
    for fn in (mssfs.sample, mssfs.sample_many):
        params = inspect.signature(fn).parameters
        assert params["preset"].default == "fast"
        assert params["device"].default == "auto"
        assert params["resolution"].default == "auto"
        assert params["progress"].default is None


def test_short_repr_and_notebook_view(result):
    text = repr(result)
    assert len(text) < 200, text
    for part in ("3 sample(s)", "40x48", "'tiny'", "seed=2", " s on cpu"):
        assert part in text
    html = result._repr_html_()
    png = base64.b64decode(re.search(r'src="data:image/png;base64,([^"]+)"', html).group(1))
    assert png.startswith(b"\x89PNG")
    assert len(html) < 60_000


def test_depth_is_what_mssfs_depth_computes(result):
    z = result.depth()
    assert z.shape == (3, 40, 48) and z.dtype == np.float32
    np.testing.assert_array_equal(z, depth_maps(result.normals, result.mask))
    assert np.all(z[:, ~result.mask] == 0)
    assert result.depth() is z  # computed once
    assert not np.array_equal(result.depth("fc"), z)


def test_mesh_returned_or_written(result, tmp_path):
    m = result.mesh(1)
    assert len(m.vertices) == int(result.mask.sum()) and m.colors.shape == (len(m.vertices), 3)
    assert "vertices" in repr(m) and len(repr(m)) < 100
    grey = np.round(result.image[result.mask] * 255).astype(np.uint8)
    np.testing.assert_array_equal(m.colors[:, 0], grey)
    ply = read_ply(result.mesh(1, tmp_path / "one.ply"))
    np.testing.assert_array_equal(ply.colors, m.colors)
    np.testing.assert_allclose(ply.vertices, m.vertices)
    obj = read_obj(result.mesh(1, tmp_path / "one.obj"))
    np.testing.assert_allclose(obj.uvs, m.uvs, atol=1e-6)
    assert obj.uvs.min() > 0 and obj.uvs.max() < 1
    with pytest.raises(ValueError, match="unsupported mesh format"):
        result.mesh(0, tmp_path / "x.stl")
    with pytest.raises(IndexError, match="3 sample"):
        result.mesh(3)


def test_analyze_matches_the_cli_on_the_saved_folder(result, tmp_path):
    folder = result.save(tmp_path / "ball")
    assert main(["analyze", str(folder), "--no-plot", "-q"]) == 0
    cli = json.loads((folder / "report.json").read_text())
    ours = result.analyze().to_json(result.sample_set())
    for key in ("n_modes", "labels", "size"):
        assert ours[key] == cli[key]
    assert [m["share"] for m in ours["modes"]] == [m["share"] for m in cli["modes"]]
    assert ours["spread_deg"]["mean"] == pytest.approx(cli["spread_deg"]["mean"], rel=1e-5)


def test_plot(result, tmp_path):
    fig = result.plot(tmp_path / "p.png")
    assert len([ax for ax in fig.axes if ax.images]) == 1 + result.n
    with Image.open(tmp_path / "p.png") as im:
        assert im.width > 200


def test_saved_pngs_carry_the_mask_as_alpha_and_tiff_on_request(result, tmp_path):
    import tifffile

    folder = result.save(tmp_path / "ball", tiff=True)
    np.testing.assert_array_equal(tifffile.imread(folder / "normals.tif"), result.normals)
    import png

    w, h, rows, info = png.Reader(filename=str(folder / "sample_00.png")).asDirect()
    assert info["alpha"] and info["bitdepth"] == 16
    alpha = np.vstack([np.asarray(r) for r in rows]).reshape(h, w, 4)[..., 3]
    np.testing.assert_array_equal(alpha == 65535, result.mask)
    np.testing.assert_allclose(load_normals(folder / "sample_00.png"), result.normals[0], atol=1e-4)
    assert not (tmp_path / "plain").exists()
    assert not (result.save(tmp_path / "plain") / "normals.tif").exists()


def test_stage_grid_labels_columns_and_greys_the_background(result):
    plain = stages_grid(result.stages)
    labelled = stages_grid(result.stages, mask=result.mask, labels=["a", "b", "c"])
    assert labelled.shape[0] > plain.shape[0] and labelled.shape[1] == plain.shape[1]
    corner = labelled[-3, 2]  # bottom-left of the last sample's first stage: background
    assert tuple(corner) == (128, 128, 128)
    with pytest.raises(ValueError, match="2 labels for 3 stages"):
        stages_grid(result.stages, labels=["a", "b"])


def test_weights_notice_warns_in_python_and_is_a_note_on_the_cli(monkeypatch, tmp_path, capsys):
    def with_notice(path, device):
        return tiny_model().to(device), {"path": "default", "class": "tiny", "notice": "interim weights"}

    monkeypatch.setattr(api, "resolve_model", with_notice)
    kw = dict(n=1, schedule=tiny_schedule(num_steps=2), device="cpu")
    with pytest.warns(api.WeightsNotice, match="interim weights"):
        mssfs.sample(sphere_image(32, 32), **kw)
    sched = tmp_path / "tiny.json"
    sched.write_text(json.dumps(tiny_schedule(num_steps=2).to_dict()))
    np.save(tmp_path / "ball.npy", sphere_image(32, 32))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(["sample", str(tmp_path / "ball.npy"), "-n", "1", "--schedule", str(sched), "--device", "cpu",
                     "--out", str(tmp_path / "out"), "-q"]) == 0
    assert "note: model default: interim weights" in capsys.readouterr().err


def test_progress_shows_only_where_someone_watches(capsys, monkeypatch):
    kw = dict(n=1, model=tiny_model(), schedule=tiny_schedule(num_steps=2), device="cpu")
    mssfs.sample(sphere_image(32, 32), **kw)  # pytest's captured stderr is no terminal
    assert "step" not in capsys.readouterr().err
    mssfs.sample(sphere_image(32, 32), progress=True, **kw)
    assert "step" in capsys.readouterr().err
    monkeypatch.setattr(api, "interactive", lambda: True)
    mssfs.sample(sphere_image(32, 32), **kw)
    assert "step" in capsys.readouterr().err


def test_resolution_auto_fits_small_inputs():
    kw = dict(n=1, model=tiny_model(), schedule=tiny_schedule(num_steps=2), device="cpu")
    small = mssfs.sample(sphere_image(24, 36), **kw)  # padded square 36 < the schedule's 48
    assert [s.shape[1] for s in small.stages] == [32, 32, 32] and small.schedule.name == "tiny@32"
    kept = mssfs.sample(sphere_image(24, 36), resolution="preset", **kw)
    assert [s.shape[1] for s in kept.stages] == [48, 32, 48]
    set_ = mssfs.sample(sphere_image(24, 36), resolution=64, **kw)
    assert set_.stages[-1].shape[1] == 64
    mixed = mssfs.sample_many([sphere_image(24, 36), sphere_image(48, 48)], **kw)
    assert [r.schedule.name for r in mixed] == ["tiny@32", "tiny"]
    assert mixed[1].normals.shape == (1, 48, 48, 3)
