"""``mssfs depth DIR``: height maps, meshes and relit renderings of sampled normal maps."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from ..core.fileio import save_json, save_npy, save_png
from . import UsageError
from .options import add_quiet

HELP = "integrate samples to height maps, meshes (PLY/OBJ) and relit renderings"


DESCRIPTION = """\
Turn each sampled normal map of DIR (a sample folder holding normals.npy, or a folder of
such folders) into a shape you can look at. For sample XX it writes, into the sample
folder (or, with --out OUT, into OUT/<sample folder name>/):
  depth_XX.npy   float32 height (pixels, z toward the viewer, zero mean, 0 outside the mask)
  depth_XX.png   16-bit grayscale: min..max inside the mask -> 0..65535 (scales in depth.json)
  mesh_XX.ply    (or .obj) one vertex per mask pixel at (col, H-1-row, height), triangles
                 over 2x2 cells inside the mask, per-vertex normals; PLY: vertex colours
                 from the input image; OBJ: texture coordinates into the input image
  relit_XX.png   the normals lit by --light (default: raking light from the upper left)
  relit.png      all relit samples in a grid
  depth.json     method, light, and for every sample its files and height range
Existing outputs are kept unless --overwrite is given, which also removes the earlier
height maps, renderings and meshes (of either format) that this run does not rewrite.

examples:
  mssfs depth samples/circles
  mssfs depth samples --method fc --mesh obj --light -1,0,0.3
  mssfs depth samples/circles --out shapes
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
    p.add_argument("--out", metavar="DIR", help="write into DIR/<sample folder name>/ instead of the sample folders")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (and remove stale ones)")
    add_quiet(p)
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


_STALE = ("depth_*.npy", "depth_*.png", "relit_*.png", "mesh_*.ply", "mesh_*.obj")


def _remove_stale(folder: Path, written: set[str]) -> list[str]:
    """Remove earlier outputs in ``folder`` that this run did not rewrite (another mesh
    format, samples beyond the current count); returns their names."""
    stale = sorted({p.name for pattern in _STALE for p in folder.glob(pattern)} - written)
    for name in stale:
        (folder / name).unlink()
    return stale


def process(folder: Path, method: str, light, mesh: str, overwrite: bool, dest: Path | None = None,
            progress: bool = True) -> dict:
    """Write the outputs for one sample folder into ``dest`` (default: the folder itself);
    returns the content of depth.json.  With ``overwrite``, earlier outputs this run does
    not rewrite are removed after the new ones are written."""
    import numpy as np

    from .. import analysis

    samples = analysis.load_sample_set(folder)
    n = samples.normals.shape[0]
    kind, binary = _MESH[mesh]
    folder = Path(folder) if dest is None else Path(dest)
    if not overwrite:
        _refuse_existing(folder, n, mesh)
    folder.mkdir(parents=True, exist_ok=True)
    light = analysis.mesh.RAKING_LIGHT if light is None else light
    depths = analysis.mesh.depth_maps(samples.normals, samples.mask, method=method, progress=progress)
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
            m = analysis.mesh.mesh_from_depth(z, samples.mask, samples.image)
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
    if overwrite:
        _remove_stale(folder, {p.name for p in _outputs(folder, n, mesh)})
    return info


def run(args) -> int:
    from .. import analysis
    from ..analysis.sample_set import temporary_notes

    try:
        folders = analysis.find_sample_folders(args.dir)
    except analysis.SampleSetError as exc:
        raise UsageError(str(exc)) from None
    for note in temporary_notes(args.dir):
        print(f"note: {note}", file=sys.stderr)

    def dest(folder: Path) -> Path:
        return folder if args.out is None else Path(args.out) / folder.name

    if args.out is not None and Path(args.out).exists() and not Path(args.out).is_dir():
        raise UsageError(f"--out {args.out} exists and is not a folder")
    if not args.overwrite:  # refuse before writing anything anywhere
        import numpy as np

        for folder in folders:
            try:
                n = np.load(folder / "normals.npy", mmap_mode="r", allow_pickle=False).shape[0]
            except Exception as exc:  # noqa: BLE001 -- any reader error becomes a usage error
                raise UsageError(f"{folder / 'normals.npy'}: could not be read ({exc})") from None
            _refuse_existing(dest(folder), n, args.mesh)
    with contextlib.ExitStack() as locks:  # every output folder writable and ours before any work
        for folder in folders:
            locks.enter_context(_lock(dest(folder)))
        for folder in folders:
            try:
                info = process(folder, args.method, args.light, args.mesh, args.overwrite, dest(folder), not args.quiet)
            except analysis.SampleSetError as exc:
                raise UsageError(str(exc)) from None
            print(f"{folder}: {len(info['samples'])} height map(s), meshes: {args.mesh} -> "
                  f"{dest(folder) / 'depth.json'}")
    return 0


def _lock(folder: Path):
    """Create ``folder`` if needed, check it is writable and lock it for this depth run
    (a concurrent one is refused at once); remove what killed depth runs left in it."""
    from ..core.outputs import OutputError, ensure_folder, folder_lock, remove_parts

    try:
        ensure_folder(folder)
        lock = folder_lock(folder, "depth")
    except OutputError as exc:
        raise UsageError(str(exc)) from None
    names = [p.name[1:].rsplit(".", 2)[0] for p in folder.glob(".*.part")]
    remove_parts(folder, [n for n in names if n.startswith(("depth", "relit", "mesh"))])
    return lock
