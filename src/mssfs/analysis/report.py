"""Seeing and measuring a distribution of sampled normal maps (docs/method.md#analysis).

A *sample set* is what ``mssfs sample`` writes into one folder: ``normals.npy``
``(N, H, W, 3)``, ``lights.npy`` ``(N, 3)``, ``image.npy`` ``(H, W)``, ``mask.npy``
``(H, W)`` and ``meta.json``.  This module reads such folders and measures them:

* **Interpretations (modes).**  Each sample is summarised by its *convexity readings*: the
  mean curvature ``H = div(nx, ny) / 2`` (positive on bumps, negative in dents), computed
  from normals smoothed by a Gaussian of 2% of the image size, and averaged over a
  coarse ``grid x grid`` cell layout (16x16).  Two samples that read the same regions as
  bumps and dents have readings of the same signs; reading one region the other way round
  flips the sign of that region's cells.  The distance between two samples
  (:func:`sign_distances`, the default) is the share of the curvature they have in common
  that they read with opposite signs: with ``a``, ``b`` scaled to unit L1 mass,

      d(a, b) = sum_c min(|a_c|, |b_c|) [sign a_c != sign b_c] / sum_c min(|a_c|, |b_c|)

  (0 = same reading, 1 = full inversion), so it depends neither on how strongly curved each
  surface is nor on how the curvature is spread over the regions (one sample drawing a
  disc whole, another its rim only), and reading a region the other way round adds about
  that region's share of the shared curvature.  ``features="readings"`` gives the L1
  distance used before, ``1/2 sum |a / |a|_1 - b / |b|_1|``.  Samples are grouped by
  average linkage agglomerative clustering, cut at ``threshold`` (default 0.2: a
  difference in about a fifth of the curved area makes a new interpretation) or into a
  fixed number of modes.  Small changes of shape, noise and the strength of relief move
  ``d`` little.  When the samples are essentially flat (:func:`curvature_level`, the mean
  absolute cell reading times the smaller image side, has a median over samples below
  ``FLAT_LEVEL`` = 0.25), the features fall back to normal maps downsampled to 16x16 with
  the mean angle between them (degrees, threshold 15) as distance.  The level is
  dimensionless, so resizing a sample set does not change the decision (a hemisphere
  filling the frame has about 1.5; generated bump/dent layouts 0.4 to 2; the cut equals the
  former 0.002 / pixel at 128 pixels).
* **Mode summaries.**  Share (fraction of samples), a representative (the medoid: the
  member with the smallest summed distance to the other members) and the mean implied light.
* **Per-pixel spread.**  The angular standard deviation ``sqrt(mean_i angle(n_i, m)^2)``
  (degrees) around the normalised mean normal ``m``; 0 where all samples agree.
* **Embedding.**  t-SNE of the maps resized to 32x32 (when N >= 10, perplexity
  ``min(30, (N - 1) / 3)``), PCA for fewer samples.
* **Wasserstein distance** between two sample sets: exact optimal transport (POT ``emd2``)
  between the uniform empirical distributions of flattened normal maps with Euclidean cost;
  sets of different size are resized to the smaller height and width first.
* **Stimulus scoring.**  :func:`region_readings` reads each known region as a bump (+1) or
  a dent (-1) from the integrated height, and :func:`consistency` tells whether a sample's
  readings agree with one light: the true layout (0), its full inversion (1) or neither.
  :func:`generated_bump_dent_layout` draws random bump/dent images with a known layout.
* **Seam index** (:mod:`mssfs.analysis.seams`): how visible the last stage's patch grid is
  in each sample (about 1 without a grid).  **One-region consistency**
  (:mod:`mssfs.analysis.one_region`): the share of a sample's curved area that reads the
  way its own light says, for stimuli that are one shading region.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.frame import normalize
from .clustering import Clustering, cluster_samples
from .curvature import FLAT_LEVEL
from .embedding import embed
from .one_region import one_region_consistency
from .sample_set import SampleSet
from .seams import output_grid, seam_index
from .spread import angular_spread, implied_lights, light_angles

__all__ = ["Analysis", "analyze"]


@dataclass
class Analysis:
    """Everything :func:`analyze` measures on one sample set.

    Attributes:
        clustering: the modes (:class:`Clustering`).
        lights: ``(N, 3)`` light implied by each sample; ``lights_source`` says whether
            they came from ``lights.npy`` or were estimated here (:func:`mssfs.sampler.lighting.estimate_light`).
        spread: ``(H, W)`` per-pixel angular spread of all samples (degrees, NaN outside).
        mode_spread: ``(K,)`` mean spread inside each mode (degrees).
        embedding: ``(N, 2)`` coordinates; ``embedding_method`` names the method.
        seams: ``(N,)`` seam index of each sample (:func:`mssfs.analysis.seams.seam_index`)
            on ``seam_grid`` ``{"stage_resolution", "period", "origin"}``: the last stage's
            patch grid from ``meta.json``, or a 16-pixel grid of the output without one.
        one_region: ``(N,)`` one-region consistency of each sample under its own light
            (:func:`mssfs.analysis.one_region.one_region_consistency`; None without ``image.npy``).
    """

    clustering: Clustering
    lights: np.ndarray
    lights_source: str
    spread: np.ndarray
    mode_spread: np.ndarray
    embedding: np.ndarray
    embedding_method: str
    seams: np.ndarray | None = None
    seam_grid: dict | None = None
    one_region: np.ndarray | None = None

    def to_json(self, samples: SampleSet) -> dict:
        """JSON-ready summary (the content of ``report.json``)."""
        c = self.clustering
        modes = []
        for k in range(c.n_modes):
            members = np.flatnonzero(c.labels == k)
            light = normalize(self.lights[members].mean(0))
            slant, tilt = light_angles(light)
            modes.append(
                {
                    "mode": k,
                    "share": float(c.shares[k]),
                    "count": int(members.size),
                    "members": members.tolist(),
                    "representative": int(c.representatives[k]),
                    "mean_light": [round(float(v), 6) for v in light],
                    "light_slant_deg": round(slant, 3),
                    "light_tilt_deg": round(tilt, 3),
                    "mean_spread_deg": float(self.mode_spread[k]),
                }
            )
        s = self.spread[np.isfinite(self.spread)]
        return {
            "folder": str(samples.path),
            "stem": samples.name,
            "n_samples": int(samples.normals.shape[0]),
            "size": list(samples.normals.shape[1:3]),
            "n_modes": c.n_modes,
            "modes": modes,
            "labels": c.labels.tolist(),
            "clustering": {
                "features": c.features,
                "distance": "half L1 distance between convexity readings scaled to unit mass"
                if c.features == "readings"
                else "mean angle between 16x16 maps (degrees)",
                "linkage": "average",
                "threshold": c.threshold,
                "curvature_level": {
                    "per_sample": np.round(c.levels, 4).tolist(),
                    "median": float(np.median(c.levels)),
                    "flat_below": FLAT_LEVEL,
                },
            },
            "spread_deg": {
                "mean": float(s.mean()),
                "median": float(np.median(s)),
                "p95": float(np.percentile(s, 95)),
                "max": float(s.max()),
            },
            "lights": {"source": self.lights_source, "per_sample": np.round(self.lights, 6).tolist()},
            "embedding": {"method": self.embedding_method, "coords": np.round(self.embedding, 4).tolist()},
            "seam_index": _per_sample(self.seams, grid=self.seam_grid),
            "one_region_consistency": _per_sample(self.one_region),
        }


def _per_sample(values: np.ndarray | None, **extra) -> dict | None:
    """``{"samples": [...], "mean": x, **extra}`` with None for NaN; None for no values."""
    if values is None:
        return None
    v = np.asarray(values, np.float64)
    finite = np.isfinite(v)
    return {"samples": [round(float(x), 4) if ok else None for x, ok in zip(v, finite)],
            "mean": round(float(v[finite].mean()), 4) if finite.any() else None, **extra}


def seam_grid_of(samples: SampleSet) -> dict:
    """The patch grid the seam index of ``samples`` is measured on: the last stage's, from
    the schedule in ``meta.json``, else a 16-pixel grid from the output's corner."""
    try:
        resolution = int(samples.meta["schedule"]["stages"][-1]["resolution"])
    except (KeyError, IndexError, TypeError, ValueError):
        return {"stage_resolution": None, "period": 16.0, "origin": [0.0, 0.0]}
    period, origin = output_grid(samples.normals.shape[1:3], resolution)
    return {"stage_resolution": resolution, "period": period, "origin": list(origin)}


def analyze(
    samples: SampleSet, modes: int | str = "auto", features: str = "auto", threshold: float | None = None
) -> Analysis:
    """Cluster, measure spread, lights and embedding of one :class:`SampleSet`."""
    n = samples.normals
    clustering = cluster_samples(n, samples.mask, modes=modes, features=features, threshold=threshold)
    if samples.lights is not None:
        lights, source = normalize(samples.lights.astype(np.float64)), "lights.npy"
    elif samples.image is not None:
        lights, source = implied_lights(n, samples.image, samples.mask), "estimated (least squares n.l = I)"
    else:
        lights, source = np.tile([0.0, 0.0, 1.0], (n.shape[0], 1)), "unknown (no lights.npy or image.npy)"
    spread = angular_spread(n, samples.mask)
    mode_spread = []
    for k in range(clustering.n_modes):
        members = clustering.labels == k
        mode_spread.append(float(np.nanmean(angular_spread(n[members], samples.mask))))
    coords, method = embed(n, samples.mask)
    grid = seam_grid_of(samples)
    seams = seam_index(n, samples.mask, grid["period"], tuple(grid["origin"]))
    one = None if samples.image is None else one_region_consistency(n, samples.image, samples.mask, lights)
    return Analysis(clustering, lights, source, spread, np.array(mode_spread), coords, method, seams, grid, one)
