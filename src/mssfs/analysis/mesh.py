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
from ..core.integrate import PoissonIntegrator, depth_from_normals

__all__ = ["RAKING_LIGHT", "Mesh", "depth_maps", "depth_png16", "mesh_from_depth", "read_obj", "read_ply", "relight", "tile", "write_obj", "write_ply"]


#: Default relighting direction: from the upper left, 25 degrees above the image plane.
RAKING_LIGHT = normalize(np.array([-np.cos(np.radians(25)) / np.sqrt(2), np.cos(np.radians(25)) / np.sqrt(2),
                                   np.sin(np.radians(25))]))


def depth_maps(normals: np.ndarray, mask: np.ndarray | None = None, method: str = "poisson", progress: bool = False):
    """Integrate ``(N, H, W, 3)`` normal maps sharing the ``(H, W)`` mask to ``(N, H, W)``
    float32 heights (pixels); ``poisson`` factorises its system once for all maps."""
    from tqdm import tqdm

    normals = np.asarray(normals)
    if mask is None:
        mask = foreground_mask(normals).any(0)
    out = np.zeros(normals.shape[:3], np.float32)
    # One factorisation of the Poisson system serves every map (they share the mask).
    integrator = PoissonIntegrator(np.asarray(mask, bool)) if method == "poisson" else None
    for i in tqdm(range(normals.shape[0]), desc="integrate", unit="map", disable=not progress):
        out[i] = depth_from_normals(normals[i], mask, method=method, integrator=integrator)
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


@dataclass(repr=False)
class Mesh:
    """Triangle mesh.

    Attributes:
        vertices: ``(V, 3)`` float32; faces: ``(F, 3)`` int32; normals: ``(V, 3)`` float32.
        colors: ``(V, 3)`` uint8 vertex colours (the input image's grey level) or None.
        uvs: ``(V, 2)`` float32 texture coordinates into the input image (``u`` right,
            ``v`` up, pixel centres, OBJ convention) or None.
    """

    vertices: np.ndarray
    faces: np.ndarray
    normals: np.ndarray
    colors: np.ndarray | None = None
    uvs: np.ndarray | None = None

    def __repr__(self) -> str:
        extras = [name for name in ("colors", "uvs") if getattr(self, name) is not None]
        return f"Mesh({len(self.vertices)} vertices, {len(self.faces)} faces{''.join(', ' + e for e in extras)})"


def mesh_from_depth(z: np.ndarray, mask: np.ndarray, image: np.ndarray | None = None) -> Mesh:
    """Mesh of a height map over the mask (see the module docstring for the layout).

    Args:
        z: ``(H, W)`` heights; mask: ``(H, W)`` bool.
        image: ``(H, W)`` intensities in [0, 1] for the vertex colours (None: no colours).
    UVs are always set: ``((col + 0.5) / W, 1 - (row + 0.5) / H)``.
    """
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
    colors = None
    if image is not None:
        image = np.asarray(image, np.float64)
        if image.shape != (h, w):
            raise ValueError(f"the image for vertex colours has shape {image.shape}, the height map {(h, w)}")
        grey = np.round(np.clip(image[mask], 0, 1) * 255).astype(np.uint8)
        colors = np.repeat(grey[:, None], 3, axis=1)
    uvs = np.stack([(cols + 0.5) / w, 1 - (rows + 0.5) / h], -1).astype(np.float32)
    return Mesh(verts.astype(np.float32), faces.astype(np.int32), normalize(vn).astype(np.float32), colors, uvs)


def _atomic(path, write) -> Path:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        write(f)
    return Path(path)


_XYZN = ("x", "y", "z", "nx", "ny", "nz")
_RGB = ("red", "green", "blue")


def _vertex_dtype(colors: bool) -> np.dtype:
    return np.dtype([(k, "<f4") for k in _XYZN] + ([(k, "u1") for k in _RGB] if colors else []))


def write_ply(path: str | os.PathLike, mesh: Mesh, binary: bool = True) -> Path:
    """PLY with vertex ``x y z nx ny nz`` (float) [``red green blue`` (uchar) when the mesh
    has colours] and ``vertex_indices`` (uchar, int) faces."""
    has_rgb = mesh.colors is not None
    v = np.zeros(len(mesh.vertices), _vertex_dtype(has_rgb))
    for k, name in enumerate(_XYZN):
        v[name] = (mesh.vertices if k < 3 else mesh.normals)[:, k % 3]
    if has_rgb:
        for k, name in enumerate(_RGB):
            v[name] = mesh.colors[:, k]
    fmt = "binary_little_endian" if binary else "ascii"
    props = "".join(f"property float {k}\n" for k in _XYZN) + "".join(f"property uchar {k}\n" for k in _RGB if has_rgb)
    header = (
        f"ply\nformat {fmt} 1.0\ncomment written by mssfs (pixel units, y up)\n"
        f"element vertex {len(v)}\n{props}"
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
            np.savetxt(f, v, fmt=["%.6g"] * 6 + ["%d"] * (3 if has_rgb else 0))
            np.savetxt(f, np.concatenate([np.full((len(mesh.faces), 1), 3), mesh.faces], 1), fmt="%d")

    return _atomic(path, write)


def write_obj(path: str | os.PathLike, mesh: Mesh) -> Path:
    """Wavefront OBJ with ``v``, ``vn`` [and ``vt`` when the mesh has UVs] lines and
    ``f a/a/a b/b/b c/c/c`` (``a//a`` without UVs) faces, 1-based."""

    def write(f):
        f.write(b"# written by mssfs (pixel units, y up; vt: the input image, v up)\n")
        np.savetxt(f, mesh.vertices, fmt="v %.6g %.6g %.6g")
        if mesh.uvs is not None:
            np.savetxt(f, mesh.uvs, fmt="vt %.6g %.6g")
        np.savetxt(f, mesh.normals, fmt="vn %.6g %.6g %.6g")
        i = mesh.faces.astype(np.int64) + 1
        if mesh.uvs is not None:
            np.savetxt(f, np.repeat(i, 3, axis=1), fmt="f %d/%d/%d %d/%d/%d %d/%d/%d")
        else:
            np.savetxt(f, np.repeat(i, 2, axis=1), fmt="f %d//%d %d//%d %d//%d")

    return _atomic(path, write)


def read_ply(path: str | os.PathLike) -> Mesh:
    """Read a triangle PLY as written by :func:`write_ply` (binary LE or ASCII, with or
    without vertex colours)."""
    data = Path(path).read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    if not header or header[0] != "ply":
        raise ValueError(f"{path}: not a PLY file")
    fmt = next(line.split()[1] for line in header if line.startswith("format"))
    counts = {line.split()[1]: int(line.split()[2]) for line in header if line.startswith("element")}
    nv, nf = counts.get("vertex", 0), counts.get("face", 0)
    has_rgb = any(line.split()[-1] == "red" for line in header if line.startswith("property"))
    dtype = _vertex_dtype(has_rgb)
    if fmt == "binary_little_endian":
        v = np.frombuffer(data, dtype, count=nv, offset=end)
        faces = np.frombuffer(data, dtype=[("n", "u1"), ("i", "<i4", (3,))], count=nf, offset=end + nv * dtype.itemsize)
        if np.any(faces["n"] != 3):
            raise ValueError(f"{path}: only triangles are supported")
        f = faces["i"]
        cols = {k: v[k] for k in dtype.names}
    elif fmt == "ascii":
        lines = data[end:].decode("ascii").split("\n")
        table = np.array([line.split() for line in lines[:nv]], np.float64).reshape(nv, len(dtype.names))
        cols = dict(zip(dtype.names, table.T))
        f = np.array([line.split() for line in lines[nv : nv + nf]], np.int64).reshape(nf, 4)[:, 1:]
    else:
        raise ValueError(f"{path}: unsupported PLY format {fmt}")
    def stack(names, kind):
        return np.stack([cols[k] for k in names], -1).astype(kind)

    colors = stack(_RGB, np.uint8) if has_rgb else None
    return Mesh(stack(_XYZN[:3], np.float32), np.array(f, np.int32), stack(_XYZN[3:], np.float32), colors)


def read_obj(path: str | os.PathLike) -> Mesh:
    """Read ``v``/``vt``/``vn``/``f`` lines of an OBJ (triangles, ``a//a``, ``a/b/c`` or ``a``)."""
    verts, uvs, norms, faces = [], [], [], []
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "v":
            verts.append([float(t) for t in parts[1:4]])
        elif parts[0] == "vt":
            uvs.append([float(t) for t in parts[1:3]])
        elif parts[0] == "vn":
            norms.append([float(t) for t in parts[1:4]])
        elif parts[0] == "f":
            faces.append([int(t.split("/")[0]) - 1 for t in parts[1:4]])
    return Mesh(
        np.array(verts, np.float32).reshape(-1, 3),
        np.array(faces, np.int32).reshape(-1, 3),
        np.array(norms, np.float32).reshape(-1, 3),
        uvs=np.array(uvs, np.float32).reshape(-1, 2) if uvs else None,
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
