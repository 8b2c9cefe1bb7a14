"""Seeing a sampled shape: height maps, meshes and relit renderings.

* Height maps come from :func:`mssfs.core.integrate.depth_from_normals` (pixel units, ``z``
  toward the viewer, zero mean inside each connected part of the mask).
* A 16-bit PNG of a height map maps ``[min, max]`` inside the mask to ``[0, 65535]``
  (background 0); :func:`depth_png16` returns the scale to undo it:
  ``z = min + (max - min) * v / 65535``.
* Meshes: one vertex per mask pixel at ``(x, y, z) = (col, H - 1 - row, height)`` (pixel
  spacing 1, ``y`` up as in the normal frame), two triangles for every 2x2 cell whose four
  pixels are inside the mask, counter-clockwise seen from the viewer (+z), and per-vertex
  normals = area-weighted mean of the adjacent triangle normals.  Written as PLY (binary
  little-endian or ASCII) or Wavefront OBJ; small readers are included for checking.
* Relit renderings show a sample's normals under another light (default a raking light
  from the upper left) with a little ambient light so shadowed parts stay visible:
  ``I = ambient + (1 - ambient) max(0, n . l)`` inside the mask.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.fileio import atomic_path
from ..core.frame import foreground_mask, normalize
from ..core.integrate import depth_from_normals

__all__ = ["RAKING_LIGHT", "Mesh", "depth_maps", "depth_png16", "mesh_from_depth", "read_obj", "read_ply", "relight", "tile", "write_obj", "write_ply"]


#: Default relighting direction: from the upper left, 25 degrees above the image plane.
RAKING_LIGHT = normalize(np.array([-np.cos(np.radians(25)) / np.sqrt(2), np.cos(np.radians(25)) / np.sqrt(2),
                                   np.sin(np.radians(25))]))


def depth_maps(normals: np.ndarray, mask: np.ndarray | None = None, method: str = "poisson", progress: bool = False):
    """Integrate ``(N, H, W, 3)`` normal maps to ``(N, H, W)`` float32 heights (pixels)."""
    from tqdm import tqdm

    normals = np.asarray(normals)
    if mask is None:
        mask = foreground_mask(normals).any(0)
    out = np.zeros(normals.shape[:3], np.float32)
    for i in tqdm(range(normals.shape[0]), desc="integrate", unit="map", disable=not progress):
        out[i] = depth_from_normals(normals[i], mask, method=method)
    return out


def depth_png16(z: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, dict]:
    """``(H, W)`` height -> ``(uint16 (H, W), {"min", "max"})``; see the module docstring."""
    mask = np.asarray(mask, bool)
    lo, hi = float(z[mask].min()), float(z[mask].max())
    span = hi - lo
    v = np.zeros(z.shape, np.uint16)
    if span > 0:
        v[mask] = np.round((z[mask] - lo) / span * 65535).astype(np.uint16)
    return v, {"min": lo, "max": hi}


@dataclass
class Mesh:
    """Triangle mesh: ``vertices`` (V, 3) float32, ``faces`` (F, 3) int32, ``normals`` (V, 3) float32."""

    vertices: np.ndarray
    faces: np.ndarray
    normals: np.ndarray


def mesh_from_depth(z: np.ndarray, mask: np.ndarray) -> Mesh:
    """Mesh of a height map over the mask (see the module docstring for the layout)."""
    z = np.asarray(z, np.float64)
    mask = np.asarray(mask, bool)
    h, w = z.shape
    idx = -np.ones((h, w), np.int64)
    idx[mask] = np.arange(int(mask.sum()))
    rows, cols = np.nonzero(mask)
    verts = np.stack([cols, h - 1 - rows, z[mask]], -1).astype(np.float64)
    a, b = idx[:-1, :-1], idx[:-1, 1:]  # top-left, top-right
    c, d = idx[1:, :-1], idx[1:, 1:]  # bottom-left, bottom-right
    cell = (a >= 0) & (b >= 0) & (c >= 0) & (d >= 0)
    a, b, c, d = a[cell], b[cell], c[cell], d[cell]
    # Seen from +z with y up, (bottom-left, bottom-right, top-right) is counter-clockwise.
    faces = np.concatenate([np.stack([c, d, b], -1), np.stack([c, b, a], -1)]).astype(np.int64)
    vn = np.zeros_like(verts)
    if faces.size:
        fn = np.cross(verts[faces[:, 1]] - verts[faces[:, 0]], verts[faces[:, 2]] - verts[faces[:, 0]])
        for k in range(3):
            np.add.at(vn, faces[:, k], fn)
    lonely = np.linalg.norm(vn, axis=-1) == 0
    vn[lonely] = [0.0, 0.0, 1.0]
    return Mesh(verts.astype(np.float32), faces.astype(np.int32), normalize(vn).astype(np.float32))


def _atomic(path, write) -> Path:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        write(f)
    return Path(path)


def write_ply(path: str | os.PathLike, mesh: Mesh, binary: bool = True) -> Path:
    """PLY with vertex ``x y z nx ny nz`` (float) and ``vertex_indices`` (uchar, int) faces."""
    v = np.concatenate([mesh.vertices, mesh.normals], 1).astype("<f4")
    fmt = "binary_little_endian" if binary else "ascii"
    header = (
        f"ply\nformat {fmt} 1.0\ncomment written by mssfs (pixel units, y up)\n"
        f"element vertex {len(v)}\nproperty float x\nproperty float y\nproperty float z\n"
        "property float nx\nproperty float ny\nproperty float nz\n"
        f"element face {len(mesh.faces)}\nproperty list uchar int vertex_indices\nend_header\n"
    ).encode("ascii")

    def write(f):
        f.write(header)
        if binary:
            f.write(v.tobytes())
            faces = np.zeros(len(mesh.faces), dtype=[("n", "u1"), ("i", "<i4", (3,))])
            faces["n"] = 3
            faces["i"] = mesh.faces
            f.write(faces.tobytes())
        else:
            np.savetxt(f, v, fmt="%.6g")
            np.savetxt(f, np.concatenate([np.full((len(mesh.faces), 1), 3), mesh.faces], 1), fmt="%d")

    return _atomic(path, write)


def write_obj(path: str | os.PathLike, mesh: Mesh) -> Path:
    """Wavefront OBJ with ``v``, ``vn`` and ``f a//a b//b c//c`` lines (1-based)."""

    def write(f):
        f.write(b"# written by mssfs (pixel units, y up)\n")
        np.savetxt(f, mesh.vertices, fmt="v %.6g %.6g %.6g")
        np.savetxt(f, mesh.normals, fmt="vn %.6g %.6g %.6g")
        i = mesh.faces.astype(np.int64) + 1
        np.savetxt(f, np.repeat(i, 2, axis=1), fmt="f %d//%d %d//%d %d//%d")

    return _atomic(path, write)


def read_ply(path: str | os.PathLike) -> Mesh:
    """Read a triangle PLY as written by :func:`write_ply` (binary LE or ASCII)."""
    data = Path(path).read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    if not header or header[0] != "ply":
        raise ValueError(f"{path}: not a PLY file")
    fmt = next(line.split()[1] for line in header if line.startswith("format"))
    counts = {line.split()[1]: int(line.split()[2]) for line in header if line.startswith("element")}
    nv, nf = counts.get("vertex", 0), counts.get("face", 0)
    if fmt == "binary_little_endian":
        v = np.frombuffer(data, "<f4", count=nv * 6, offset=end).reshape(nv, 6)
        faces = np.frombuffer(data, dtype=[("n", "u1"), ("i", "<i4", (3,))], count=nf, offset=end + nv * 24)
        if np.any(faces["n"] != 3):
            raise ValueError(f"{path}: only triangles are supported")
        f = faces["i"]
    elif fmt == "ascii":
        lines = data[end:].decode("ascii").split("\n")
        v = np.array([line.split() for line in lines[:nv]], np.float32).reshape(nv, 6)
        f = np.array([line.split() for line in lines[nv : nv + nf]], np.int64).reshape(nf, 4)[:, 1:]
    else:
        raise ValueError(f"{path}: unsupported PLY format {fmt}")
    return Mesh(np.array(v[:, :3]), np.array(f, np.int32), np.array(v[:, 3:]))


def read_obj(path: str | os.PathLike) -> Mesh:
    """Read ``v``/``vn``/``f`` lines of an OBJ (triangles, ``a//a`` or ``a/b/c`` or ``a``)."""
    verts, norms, faces = [], [], []
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "v":
            verts.append([float(t) for t in parts[1:4]])
        elif parts[0] == "vn":
            norms.append([float(t) for t in parts[1:4]])
        elif parts[0] == "f":
            faces.append([int(t.split("/")[0]) - 1 for t in parts[1:4]])
    return Mesh(
        np.array(verts, np.float32).reshape(-1, 3),
        np.array(faces, np.int32).reshape(-1, 3),
        np.array(norms, np.float32).reshape(-1, 3),
    )


def relight(normals: np.ndarray, light=RAKING_LIGHT, mask: np.ndarray | None = None, ambient: float = 0.1):
    """``ambient + (1 - ambient) max(0, n . l)`` inside the mask, 0 outside.

    Args:
        normals: ``(..., H, W, 3)``; light: ``(3,)``; mask: ``(H, W)`` (default: non-zero normals).
    Returns:
        ``(..., H, W)`` float32 in [0, 1].
    """
    from ..core.render import render

    normals = np.asarray(normals)
    if mask is None:
        mask = foreground_mask(normals)
    shade = render(normals, light)
    return np.where(mask, ambient + (1 - ambient) * shade, 0.0).astype(np.float32)


def tile(images: np.ndarray, cols: int | None = None, gap: int = 2) -> np.ndarray:
    """Arrange ``(N, H, W)`` images in a grid (``cols`` default ``ceil(sqrt(N))``), gaps 0."""
    n, h, w = images.shape
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    out = np.zeros((rows * (h + gap) - gap, cols * (w + gap) - gap), images.dtype)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        out[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = im
    return out
