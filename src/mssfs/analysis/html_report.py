"""``report.html``: one self-contained page for a sample folder (no network, no server).

The page shows the input, the samples grouped by interpretation (mode) with their
shares, each sample relit under a light the reader drags on a disc, its normal map, a
3-D view of its height mesh, the per-pixel spread map, the implied lights and the 2-D
embedding.  Everything comes from :func:`mssfs.analysis.analyze` (modes, shares,
representatives, lights, spread, embedding: the numbers of ``mssfs analyze``) and from
the sample folder; the page embeds it as one JSON block and draws it with inline
JavaScript written for this page (no libraries, no network requests):

* **Normals** are resized to at most :data:`NORMAL_SIDE` pixels on the longer side
  (:func:`mssfs.analysis.resize_normals`) and stored as ``uint8`` ``round((n + 1) / 2 * 255)``
  (``N x h x w x 3`` bytes, base64) with a ``uint8`` mask.  The page relights them as
  ``max(0, n . l)`` inside the mask (background dark), for the light ``l`` on the disc:
  ``(x, y, sqrt(1 - x^2 - y^2))`` with the disc's ``x`` to the right and ``y`` up, as
  in the normal frame.  The first light is the mean implied light of mode 0.
* **Height meshes**: each sample's normals resized to at most :data:`MESH_SIDE` cells and
  integrated with :func:`mssfs.analysis.mesh.depth_maps` (Poisson), heights in
  cell units stored as little-endian ``uint16`` over each sample's ``[min, max]``.  The
  page triangulates every 2x2 cell inside the mask, shades faces
  ``0.12 + 0.88 max(0, n . l)`` under the same light and draws them back to front in
  an orthographic view the reader can turn; a slider scales the relief.
* **Pictures** (input, spread in degrees with the ``magma`` colour map from 0 to the
  largest spread, at least 1 degree) are PNG data URIs at most :data:`PICTURE_SIDE`
  pixels on the longer side.

The file is written through :func:`mssfs.core.fileio.atomic_path` (temporary name, then
rename), so an interrupted run never leaves a half-written page.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

import numpy as np

from ..core.fileio import atomic_path
from ..core.resize import resize_normals_array
from .mesh import RAKING_LIGHT, depth_maps
from .report import analyze
from .sample_set import load_sample_set

__all__ = ["MESH_SIDE", "NORMAL_SIDE", "PICTURE_SIDE", "render_report", "report_data", "write_folder_report",
           "write_report"]

#: Longer side (pixels) of the normal maps embedded for relighting.
NORMAL_SIDE = 128
#: Longer side (cells) of the height meshes.
MESH_SIDE = 40
#: Longer side (pixels) of the input and spread pictures.
PICTURE_SIDE = 256
#: Background colour of the pictures (matches the page's dark canvas background).
_BACKGROUND = (29, 35, 43)


def _fit(shape: tuple[int, int], side: int) -> tuple[int, int]:
    """``(h, w)`` scaled so the longer side is at most ``side`` (never enlarged)."""
    h, w = shape
    scale = min(1.0, side / max(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _png_uri(rgb: np.ndarray, side: int = PICTURE_SIDE) -> str:
    """A PNG data URI of a uint8 ``(H, W)`` or ``(H, W, 3)`` picture fitted into ``side``."""
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(rgb))
    size = _fit(rgb.shape[:2], side)
    if size != rgb.shape[:2]:
        im = im.resize((size[1], size[0]), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + _b64(buf.getvalue())


def _spread_pictures(spread: np.ndarray) -> tuple[str, str, float]:
    """(spread map URI, colour bar URI, top of the scale in degrees) with the magma colour map."""
    from matplotlib import colormaps

    cmap = colormaps["magma"]
    inside = np.isfinite(spread)
    # the scale's top is the largest spread, at least 1 degree (float noise of identical samples stays dark)
    top = max(float(spread[inside].max()) if inside.any() else 0.0, 1.0)
    scaled = np.where(inside, spread / top, 0.0)
    rgb = np.round(cmap(np.clip(scaled, 0, 1))[..., :3] * 255).astype(np.uint8)
    rgb[~inside] = _BACKGROUND
    bar = np.round(cmap(np.linspace(0, 1, 256))[None, :, :3] * 255).astype(np.uint8)
    return _png_uri(rgb), _png_uri(bar, side=256), top


def _height_meshes(normals: np.ndarray, mask: np.ndarray, side: int) -> dict:
    """Heights of ``(N, H, W, 3)`` normals on a grid of at most ``side`` cells (see the module docstring)."""
    small, small_mask = resize_normals_array(normals, _fit(normals.shape[1:3], side), mask)
    n, h, w, _ = small.shape
    q = np.zeros((n, h, w), "<u2")
    ranges = [[0.0, 0.0]] * n
    if small_mask.any():  # a tiny object may vanish at this size
        z = depth_maps(small, small_mask).astype(np.float64)
        lo, hi = z[:, small_mask].min(1), z[:, small_mask].max(1)
        span = np.where(hi > lo, hi - lo, 1.0)[:, None, None]
        q[:] = np.where(small_mask, np.round((z - lo[:, None, None]) / span * 65535), 0).astype("<u2")
        ranges = [[round(float(a), 5), round(float(b), 5)] for a, b in zip(lo, hi)]
    return {"h": h, "w": w, "heights": _b64(q.tobytes()), "ranges": ranges,
            "mask": _b64(small_mask.astype(np.uint8).tobytes())}


def _facts(samples, n: int) -> list[str]:
    meta = samples.meta
    facts = [f"{n} sample{'s' if n != 1 else ''}", f"{samples.normals.shape[1]} x {samples.normals.shape[2]} pixels"]
    source = str(meta.get("input") or "")
    if source:
        facts.insert(0, f"input {source if source.startswith('stimulus:') else Path(source).name}")
    if meta.get("preset"):
        facts.append(f"preset {meta['preset']}")
    if "seed" in meta:
        facts.append(f"seed {meta['seed']}")
    model = meta.get("model") or {}
    if model.get("path"):
        facts.append(f"weights {model['path']}")
    timings = meta.get("timings") or {}
    if "total_s" in timings:
        facts.append(f"sampled in {timings['total_s']:.0f} s on {meta.get('device', '?')}")
    return facts


def report_data(samples, result, normal_side: int = NORMAL_SIDE, mesh_side: int = MESH_SIDE) -> dict:
    """Everything the page draws, as a JSON-ready dict.

    Args:
        samples: :class:`mssfs.analysis.SampleSet`; result: its :class:`mssfs.analysis.Analysis`.
        normal_side, mesh_side: longer side of the embedded normals and of the meshes.
    """
    from .. import __version__

    summary = result.to_json(samples)
    n = samples.normals.shape[0]
    small, small_mask = resize_normals_array(samples.normals, _fit(samples.normals.shape[1:3], normal_side), samples.mask)
    q = np.round((np.clip(small, -1, 1) + 1) * 127.5).astype(np.uint8)
    spread_png, bar_png, top = _spread_pictures(result.spread)
    image = samples.image
    c = result.clustering
    if c.features == "normals":
        rule = "mean angle between 16x16 normal maps"
    elif c.features == "readings":
        rule = "L1 distance between convexity readings"
    else:
        rule = "share of shared curvature read with opposite signs (bump vs dent)"
    cut = f"cut at {c.threshold:g}" if c.threshold is not None else "fixed number of modes"
    return {
        "title": samples.name,
        "n": n,
        "h": int(small.shape[1]),
        "w": int(small.shape[2]),
        "normals": _b64(q.tobytes()),
        "mask": _b64(small_mask.astype(np.uint8).tobytes()),
        "mesh": _height_meshes(samples.normals, samples.mask, mesh_side),
        "input_png": None if image is None else _png_uri(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)),
        "input_note": "" if image is None else f"{image.shape[0]} x {image.shape[1]} pixels",
        "spread_png": spread_png,
        "spread_bar_png": bar_png,
        "spread": {**summary["spread_deg"], "max_scale": top},
        "modes": summary["modes"],
        "labels": summary["labels"],
        "lights": summary["lights"]["per_sample"],
        "lights_source": summary["lights"]["source"],
        "embedding": summary["embedding"],
        "default_light": summary["modes"][0]["mean_light"],
        "raking_light": [round(float(v), 6) for v in RAKING_LIGHT],
        "clustering_note": f"{c.n_modes} mode(s) from {n} samples: average-linkage clustering of the {rule}, {cut}.",
        "facts": _facts(samples, n),
        "footer": f"Written by mssfs {__version__} on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC from "
        f"{samples.path}. The page is self-contained: it loads nothing from the network.",
    }


def render_report(samples, result, **kwargs) -> str:
    """The HTML text of the report (``kwargs`` as in :func:`report_data`)."""
    template = resources.files("mssfs.analysis").joinpath("report_template.html").read_text(encoding="utf-8")
    data = json.dumps(report_data(samples, result, **kwargs), separators=(",", ":"), allow_nan=False)
    # "</" would end the <script> block early; "<\/" is the same JSON string.
    data = data.replace("</", "<\\/")
    return template.replace("{{TITLE}}", html.escape(samples.name)).replace("{{DATA}}", data)


def write_report(path: str | os.PathLike, samples, result, **kwargs) -> Path:
    """Write :func:`render_report` to ``path`` atomically; returns the path."""
    path = Path(path)
    text = render_report(samples, result, **kwargs)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def write_folder_report(folder: str | os.PathLike, out: str | os.PathLike | None = None, modes="auto",
                        features: str = "auto", threshold: float | None = None) -> Path:
    """Load one sample folder, analyse it as ``mssfs analyze`` does and write its report
    (default ``FOLDER/report.html``).  Raises :class:`mssfs.analysis.SampleSetError` for a
    folder that cannot be read."""
    samples = load_sample_set(folder)
    result = analyze(samples, modes=modes, features=features, threshold=threshold)
    return write_report(Path(folder) / "report.html" if out is None else out, samples, result)
