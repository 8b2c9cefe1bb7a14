"""``mssfs depth DIR``: height maps, meshes and relit renderings of sampled normal maps."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..core.fileio import save_json, save_npy, save_png
from . import UsageError

HELP = "integrate samples to height maps, meshes (PLY/OBJ) and relit renderings"


DESCRIPTION = """\
Turn each sampled normal map of DIR (a sample folder holding normals.npy, or a folder of
such folders) into a shape you can look at. For sample XX it writes, into the sample
folder:
  depth_XX.npy   float32 height (pixels, z toward the viewer, zero mean, 0 outside the mask)
  depth_XX.png   16-bit grayscale: min..max inside the mask -> 0..65535 (scales in depth.json)
  mesh_XX.ply    (or .obj) one vertex per mask pixel at (col, H-1-row, height), triangles
                 over 2x2 cells inside the mask, per-vertex normals
  relit_XX.png   the normals lit by --light (default: raking light from the upper left)
  relit.png      all relit samples in a grid
  depth.json     method, light, and for every sample its files and height range
Existing outputs are kept unless --overwrite is given.

examples:
  mssfs depth samples/circles
  mssfs depth samples --method fc --mesh obj --light -1,0,0.3
"""


_MESH = {"ply": ("ply", True), "ply-ascii": ("ply", False), "obj": ("obj", None), "none": (None, None)}


def _light(text: str):
    import numpy as np

    try:
        v = np.array([float(t) for t in text.split(",")])
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three numbers lx,ly,lz, got {text!r}") from None
    if v.shape != (3,) or not np.all(np.isfinite(v)) or np.linalg.norm(v) == 0:
        raise argparse.ArgumentTypeError(f"expected a non-zero direction lx,ly,lz, got {text!r}")
    return v / np.linalg.norm(v)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "depth", help=HELP, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("dir", metavar="DIR", help="a sample folder, or a folder of sample folders")
    p.add_argument(
        "--method", choices=("poisson", "fc"), default="poisson",
        help="integration: masked least squares (poisson, default) or Frankot-Chellappa (fc)",
    )
    p.add_argument(
        "--light", type=_light, default=None, metavar="LX,LY,LZ",
        help="relighting direction in the normal frame (x right, y up, z to the viewer); "
        "default: raking light from the upper left, 25 degrees above the image plane",
    )
    p.add_argument("--mesh", choices=tuple(_MESH), default="ply", help="mesh format (default: binary ply)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.set_defaults(func=run)


def _outputs(folder: Path, n: int, mesh: str) -> list[Path]:
    kind = _MESH[mesh][0]
    names = ["depth.json", "relit.png"]
    for i in range(n):
        names += [f"depth_{i:02d}.npy", f"depth_{i:02d}.png", f"relit_{i:02d}.png"]
        if kind:
            names.append(f"mesh_{i:02d}.{kind}")
    return [folder / name for name in names]


def _refuse_existing(folder: Path, n: int, mesh: str) -> None:
    existing = [p for p in _outputs(folder, n, mesh) if p.exists()]
    if existing:
        raise UsageError(
            f"{folder}: {len(existing)} output file(s) exist already (e.g. {existing[0].name}); "
            "use --overwrite to replace them"
        )


def process(folder: Path, method: str, light, mesh: str, overwrite: bool) -> dict:
    """Write the outputs for one sample folder; returns the content of depth.json."""
    import numpy as np

    from .. import analysis

    samples = analysis.load_sample_set(folder)
    n = samples.normals.shape[0]
    kind, binary = _MESH[mesh]
    if not overwrite:
        _refuse_existing(folder, n, mesh)
    light = analysis.mesh.RAKING_LIGHT if light is None else light
    depths = analysis.mesh.depth_maps(samples.normals, samples.mask, method=method, progress=True)
    relit = analysis.mesh.relight(samples.normals, light, samples.mask)
    entries = []
    for i in range(n):
        z = depths[i]
        save_npy(folder / f"depth_{i:02d}.npy", z)
        v, scale = analysis.mesh.depth_png16(z, samples.mask)
        save_png(folder / f"depth_{i:02d}.png", v)
        save_png(folder / f"relit_{i:02d}.png", np.round(relit[i] * 255).astype(np.uint8))
        entry = {
            "sample": i, "depth_npy": f"depth_{i:02d}.npy", "depth_png": f"depth_{i:02d}.png",
            "min": scale["min"], "max": scale["max"], "relit": f"relit_{i:02d}.png",
        }
        if kind:
            m = analysis.mesh.mesh_from_depth(z, samples.mask)
            path = folder / f"mesh_{i:02d}.{kind}"
            analysis.mesh.write_ply(path, m, binary=binary) if kind == "ply" else analysis.mesh.write_obj(path, m)
            entry.update(mesh=path.name, vertices=len(m.vertices), faces=len(m.faces))
        entries.append(entry)
    save_png(folder / "relit.png", np.round(analysis.mesh.tile(relit) * 255).astype(np.uint8))
    info = {
        "method": method,
        "units": "pixels (z toward the viewer; zero mean inside each part of the mask)",
        "png_scale": "height = min + (max - min) * value / 65535 inside the mask; background 0",
        "relight": {"light": [float(x) for x in light], "model": "0.1 + 0.9 max(0, n.l)"},
        "mesh": mesh,
        "samples": entries,
    }
    save_json(folder / "depth.json", info)
    return info


def run(args) -> int:
    from .. import analysis

    try:
        folders = analysis.find_sample_folders(args.dir)
    except analysis.SampleSetError as exc:
        raise UsageError(str(exc)) from None
    if not args.overwrite:  # refuse before writing anything anywhere
        import numpy as np

        for folder in folders:
            try:
                n = np.load(folder / "normals.npy", mmap_mode="r", allow_pickle=False).shape[0]
            except Exception as exc:  # noqa: BLE001 -- any reader error becomes a usage error
                raise UsageError(f"{folder / 'normals.npy'}: could not be read ({exc})") from None
            _refuse_existing(folder, n, args.mesh)
    for folder in folders:
        try:
            info = process(folder, args.method, args.light, args.mesh, args.overwrite)
        except analysis.SampleSetError as exc:
            raise UsageError(str(exc)) from None
        print(f"{folder}: {len(info['samples'])} height map(s), meshes: {args.mesh} -> {folder / 'depth.json'}")
    return 0
