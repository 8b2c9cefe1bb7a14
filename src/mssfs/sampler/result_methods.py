"""What a :class:`~mssfs.sampler.result.SampleResult` can do besides being saved.

A short ``repr``, a thumbnail strip in notebooks (``_repr_html_``), height maps
(:meth:`ResultMethods.depth`), meshes (:meth:`ResultMethods.mesh`), the analysis that
``mssfs analyze`` writes (:meth:`ResultMethods.analyze`) and a matplotlib figure
(:meth:`ResultMethods.plot`).  The methods only read the result's fields (``normals``,
``mask``, ``image``, ``lights``, ``stem``, ...).
"""

from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path

import numpy as np

__all__ = ["ResultMethods"]

#: Mesh formats :meth:`ResultMethods.mesh` writes, by file suffix.
MESH_SUFFIXES = (".ply", ".obj")


class ResultMethods:
    """Mixed into :class:`~mssfs.sampler.result.SampleResult`."""

    def __repr__(self) -> str:
        h, w = self.normals.shape[1:3]
        seeds = f"seed={self.seed}" + (f" (samples 0..{self.n - 1})" if self.n > 1 else "")
        return (f"SampleResult({self.input!r}: {self.n} sample(s) of {h}x{w}, preset {self.schedule.name!r}, "
                f"{seeds}, {self.timings.get('total_s', float('nan')):.1f} s on {self.device})")

    def _repr_html_(self) -> str:
        from PIL import Image

        from .result import samples_strip

        strip = samples_strip(self.image, self.normals[:16], cell=96, per_row=8)
        buf = io.BytesIO()
        Image.fromarray(strip).save(buf, format="PNG")
        png = base64.b64encode(buf.getvalue()).decode("ascii")
        more = f" (first 16 of {self.n} shown)" if self.n > 16 else ""
        return (f"<div><code>{html.escape(repr(self))}</code>{more}<br>"
                f'<img src="data:image/png;base64,{png}" alt="input and samples"></div>')

    # ------------------------------------------------------------------ shapes
    def depth(self, method: str = "poisson") -> np.ndarray:
        """``(N, H, W)`` float32 height maps of the samples (pixel units, ``z`` toward the
        viewer, zero mean inside each part of the mask, 0 outside), as ``mssfs depth``
        writes them; computed once per ``method`` (``poisson`` or ``fc``) and kept."""
        from ..analysis.mesh import depth_maps

        cache = self.__dict__.setdefault("_depth_cache", {})
        if method not in cache:
            cache[method] = depth_maps(self.normals, self.mask, method=method)
        return cache[method]

    def mesh(self, i: int = 0, path: str | os.PathLike | None = None, method: str = "poisson", binary: bool = True):
        """The mesh of sample ``i`` (:func:`mssfs.analysis.mesh.mesh_from_depth`: vertex
        colours from the input image, UVs into it).

        Args:
            path: None to return the :class:`~mssfs.analysis.mesh.Mesh`; a ``.ply``
                (``binary`` or ASCII, with vertex colours) or ``.obj`` (with UVs) file to
                write it to.
        Returns:
            the mesh, or the written path.
        """
        from ..analysis.mesh import mesh_from_depth, write_obj, write_ply

        if not -self.n <= i < self.n:
            raise IndexError(f"sample {i} out of range: this result has {self.n} sample(s)")
        suffix = None if path is None else Path(path).suffix.lower()
        if suffix is not None and suffix not in MESH_SUFFIXES:
            raise ValueError(f"{path}: unsupported mesh format {suffix or '(no suffix)'}; use .ply or .obj")
        m = mesh_from_depth(self.depth(method)[i], self.mask, self.image)
        if path is None:
            return m
        return write_ply(path, m, binary=binary) if suffix == ".ply" else write_obj(path, m)

    # ------------------------------------------------------------------ analysis
    def sample_set(self):
        """This result as the :class:`~mssfs.analysis.sample_set.SampleSet` that
        ``mssfs analyze`` reads from its saved folder."""
        from ..analysis.sample_set import SampleSet

        return SampleSet(path=Path(self.stem), normals=self.normals, mask=self.mask, image=self.image,
                         lights=self.lights, meta=self.meta())

    def analyze(self, modes: int | str = "auto", features: str = "auto", threshold: float | None = None):
        """The :class:`~mssfs.analysis.report.Analysis` of the samples -- modes and their
        shares, spread, lights, embedding -- exactly as ``mssfs analyze`` computes it
        from the saved folder (same arguments as its options).  ``.to_json(result.sample_set())``
        gives the content of ``report.json``."""
        from ..analysis.report import analyze

        return analyze(self.sample_set(), modes=modes, features=features, threshold=threshold)

    def plot(self, path: str | os.PathLike | None = None, per_row: int = 8, cell: float = 1.6):
        """A matplotlib figure: the input, then every sample as a normal map (colour
        ``(n + 1) / 2``, background black), ``per_row`` panels per row.

        Args:
            path: also write the figure there (format from the suffix).
        Returns:
            ``matplotlib.figure.Figure`` (shown by notebooks; ``fig.savefig`` writes it).
        """
        from matplotlib.figure import Figure

        from ..analysis.plots import normal_rgb

        panels = 1 + self.n
        cols = min(per_row, panels)
        rows = -(-panels // cols)
        fig = Figure(figsize=(cell * cols, cell * rows + 0.3), layout="constrained")
        axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
        for ax in axes:
            ax.axis("off")
        axes[0].imshow(self.image, cmap="gray", vmin=0, vmax=1)
        axes[0].set_title("input", fontsize=8)
        for i in range(self.n):
            axes[1 + i].imshow(normal_rgb(self.normals[i]))
            axes[1 + i].set_title(f"sample {i}", fontsize=8)
        fig.suptitle(f"{self.input} ({self.schedule.name}, seed {self.seed})", fontsize=9)
        if path is not None:
            from ..core.fileio import atomic_path

            with atomic_path(path) as tmp:
                fig.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png", dpi=100)
        return fig
