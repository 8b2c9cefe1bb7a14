import json

import numpy as np
import pytest

from mssfs.analysis.mesh import (
    RAKING_LIGHT,
    depth_maps,
    depth_png16,
    mesh_from_depth,
    read_obj,
    read_ply,
    relight,
    tile,
    write_obj,
    write_ply,
)
from mssfs.cli import main
from mssfs.core.frame import normalize


def hemisphere(size=48, radius=20.0, inner=0.85):
    """Analytic hemisphere bump z = sqrt(R^2 - r^2) (pixels) and its normals, on a disc
    mask of radius inner * R (slopes stay below about 1.6 there)."""
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    x, y = cols - size / 2 + 0.5, (size / 2 - 0.5) - rows
    r2 = x**2 + y**2
    mask = r2 < (inner * radius) ** 2
    z = np.sqrt(np.clip(radius**2 - r2, 0, None))
    n = np.stack([x, y, z], -1) / radius
    return np.where(mask, z, 0.0), np.where(mask[..., None], n, 0.0), mask


@pytest.mark.parametrize("method, tol", [("poisson", 0.005), ("fc", 0.02)])
def test_depth_recovers_hemisphere_up_to_a_constant(method, tol):
    z, n, mask = hemisphere()
    d = depth_maps(n[None], mask, method=method)[0]
    err = (d - z)[mask]
    err -= err.mean()  # heights are known up to a constant
    relief_height = z[mask].max() - z[mask].min()
    # Measured RMS: poisson 0.06% of the relief (discretisation of the averaged slopes),
    # fc 0.4% (it smooths across the mask edge); tolerances leave about 5x room.
    assert np.sqrt(np.mean(err**2)) < tol * relief_height
    assert np.all(d[~mask] == 0)


def test_depth_png16_scale_round_trip():
    z, _, mask = hemisphere()
    v, scale = depth_png16(z, mask)
    assert v.dtype == np.uint16 and v[mask].min() == 0 and v[mask].max() == 65535
    back = scale["min"] + (scale["max"] - scale["min"]) * v / 65535
    assert np.abs(back - z)[mask].max() < (scale["max"] - scale["min"]) / 65535


def count_cells(mask):
    return int((mask[:-1, :-1] & mask[:-1, 1:] & mask[1:, :-1] & mask[1:, 1:]).sum())


@pytest.mark.parametrize("fmt", ["ply", "ply-ascii", "obj"])
def test_mesh_files_parse_back(tmp_path, fmt):
    z, _n, mask = hemisphere(32, 12.0)
    mesh = mesh_from_depth(z, mask)
    assert len(mesh.vertices) == mask.sum()
    assert len(mesh.faces) == 2 * count_cells(mask)
    path = tmp_path / f"m.{fmt.split('-')[0]}"
    if fmt == "obj":
        write_obj(path, mesh)
        back = read_obj(path)
    else:
        write_ply(path, mesh, binary=fmt == "ply")
        back = read_ply(path)
    assert back.vertices.shape == mesh.vertices.shape and back.faces.shape == mesh.faces.shape
    assert np.allclose(back.vertices, mesh.vertices, atol=1e-4)
    assert np.array_equal(back.faces, mesh.faces)
    assert np.allclose(back.normals, mesh.normals, atol=1e-4)


def test_mesh_orientation_and_normals_match_the_surface():
    z, n, mask = hemisphere()
    mesh = mesh_from_depth(z, mask)
    v, f = mesh.vertices.astype(np.float64), mesh.faces
    face_n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    assert np.all(face_n[:, 2] > 0)  # counter-clockwise seen from the viewer
    # Interior vertex normals agree with the analytic normals within a few degrees.
    rows, cols = np.nonzero(mask)
    interior = ((rows - 24) ** 2 + (cols - 24) ** 2) < 12**2
    cos = np.sum(mesh.normals[interior] * n[rows[interior], cols[interior]], -1)
    assert np.degrees(np.arccos(np.clip(cos, -1, 1))).max() < 5


def test_relight_range_and_ambient():
    _, n, mask = hemisphere()
    img = relight(n, RAKING_LIGHT, mask)
    assert img[~mask].max() == 0
    assert img[mask].min() >= 0.1 - 1e-6 and img[mask].max() <= 1
    # Raking light from the upper left: the upper-left flank is brighter than the lower-right.
    assert img[14, 14] > img[34, 34] + 0.3


def test_tile_layout():
    imgs = np.ones((5, 4, 6), np.float32)
    grid = tile(imgs, gap=2)
    assert grid.shape == (2 * 4 + 2, 3 * 6 + 4)
    assert grid.sum() == 5 * 24


def make_folder(tmp_path, n_samples=3):
    _z, n, mask = hemisphere(32, 12.0)
    rng = np.random.default_rng(0)
    normals = np.stack([normalize(n + rng.normal(0, 0.01, n.shape)) * mask[..., None] for _ in range(n_samples)])
    folder = tmp_path / "set"
    folder.mkdir()
    np.save(folder / "normals.npy", normals.astype(np.float32))
    np.save(folder / "mask.npy", mask)
    return folder, mask


def test_cli_depth_writes_and_refuses_to_overwrite(tmp_path, capsys):
    folder, mask = make_folder(tmp_path)
    assert main(["depth", str(folder)]) == 0
    info = json.loads((folder / "depth.json").read_text())
    assert len(info["samples"]) == 3 and info["method"] == "poisson"
    for i in range(3):
        d = np.load(folder / f"depth_{i:02d}.npy")
        assert d.dtype == np.float32 and d.shape == mask.shape
        assert np.ptp(d[mask]) > 4.5  # the bump rises 5.7 pixels above the mask edge
        assert (folder / f"depth_{i:02d}.png").exists() and (folder / f"relit_{i:02d}.png").exists()
        mesh = read_ply(folder / f"mesh_{i:02d}.ply")
        assert len(mesh.vertices) == mask.sum() == info["samples"][i]["vertices"]
    assert (folder / "relit.png").exists()
    assert not list(folder.glob("*.part"))
    before = (folder / "depth_00.npy").stat().st_mtime_ns
    assert main(["depth", str(folder)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (folder / "depth_00.npy").stat().st_mtime_ns == before
    assert main(["depth", str(folder), "--overwrite", "--method", "fc", "--mesh", "obj", "--light", "1,0,1"]) == 0
    info = json.loads((folder / "depth.json").read_text())
    assert info["method"] == "fc" and info["relight"]["light"] == pytest.approx([2**-0.5, 0, 2**-0.5])
    assert len(read_obj(folder / "mesh_00.obj").faces) == 2 * count_cells(mask)


def test_cli_depth_errors(tmp_path, capsys):
    assert main(["depth", str(tmp_path / "missing")]) == 2
    assert "no such folder" in capsys.readouterr().err
    folder, _ = make_folder(tmp_path)
    with pytest.raises(SystemExit):
        main(["depth", str(folder), "--light", "0,0,0"])
