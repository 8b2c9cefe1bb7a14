"""Scoring normals: angular errors, their summaries, fused samples, per-image and per-stimulus
scores and paired differences.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.frame import foreground_mask, normalize

__all__ = ["ImageScores", "StimulusScores", "aggregate", "angular_error", "error_metrics", "fuse_samples", "score_readings", "score_samples", "score_stimulus", "seam_scores"]


def angular_error(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Per-pixel angle in degrees between two normal maps.

    Args:
        pred, gt: ``(..., H, W, 3)`` normal maps (normalised here).
        mask: optional boolean ``(H, W)``; defaults to the foreground of ``gt``.
    Returns:
        ``(..., H, W)`` float64 degrees, NaN outside the mask.
    """
    if pred.shape[-3:] != gt.shape[-3:]:
        raise ValueError(f"normal maps differ in shape: {pred.shape} vs {gt.shape}")
    if mask is None:
        mask = foreground_mask(gt)
    cos = np.sum(normalize(np.asarray(pred, np.float64)) * normalize(np.asarray(gt, np.float64)), axis=-1)
    err = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
    return np.where(mask, err, np.nan)


def error_metrics(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> dict:
    """Summary of the angular error inside the mask.

    Returns:
        dict with ``mean``, ``median``, ``rmse`` (degrees) and ``under_11.25``,
        ``under_22.5``, ``under_30`` (share of pixels, in [0, 1]) and ``pixels``.
    """
    err = angular_error(pred, gt, mask)
    e = err[np.isfinite(err)]
    if e.size == 0:
        raise ValueError("the mask selects no pixel: nothing to score")
    return {
        "mean": float(e.mean()),
        "median": float(np.median(e)),
        "rmse": float(np.sqrt(np.mean(e**2))),
        "under_11.25": float(np.mean(e < 11.25)),
        "under_22.5": float(np.mean(e < 22.5)),
        "under_30": float(np.mean(e < 30.0)),
        "pixels": int(e.size),
    }


#: Angular error thresholds (degrees) of the pixel shares.
THRESHOLDS = (11.25, 22.5, 30.0)


def fuse_samples(samples: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Renormalised mean of ``(N, H, W, 3)`` samples -> ``(H, W, 3)``; 0 outside ``mask``.

    Where the samples cancel exactly (mean of length 0) the fused normal is ``(0, 0, 1)``.
    """
    s = np.asarray(samples, np.float64)
    mean = s.mean(0)
    fused = normalize(mean)
    dead = np.linalg.norm(fused, axis=-1) < 0.5
    fused[dead] = (0.0, 0.0, 1.0)
    if mask is None:
        mask = np.linalg.norm(s, axis=-1).max(0) > 1e-6
    return np.where(np.asarray(mask, bool)[..., None], fused, 0.0)


_METRIC_KEYS = ("mean", "median", "rmse") + tuple(f"under_{t:g}" for t in THRESHOLDS)


@dataclass
class ImageScores:
    """Error metrics of ``N`` samples of one image (dicts as :func:`mssfs.evaluation.metrics.error_metrics`).

    Attributes:
        per_sample: metrics of each sample.
        mean: each metric averaged over the samples.
        best: metrics of the sample with the lowest mean error (index ``best_index``).
        fused: metrics of :func:`fuse_samples`.
    """

    per_sample: list[dict]
    mean: dict
    best: dict
    best_index: int
    fused: dict

    def to_dict(self) -> dict:
        return {"mean": self.mean, "best": self.best, "best_index": self.best_index, "fused": self.fused,
                "per_sample_mean_error": [m["mean"] for m in self.per_sample]}


def score_samples(samples: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None,
                  fused: np.ndarray | None = None) -> ImageScores:
    """Score ``(N, H, W, 3)`` (or ``(H, W, 3)``) samples against the ``(H, W, 3)`` truth;
    ``fused`` is the method's own ``(H, W, 3)`` fused result (default :func:`fuse_samples`)."""
    s = np.asarray(samples)
    s = s[None] if s.ndim == 3 else s
    if mask is None:
        mask = np.linalg.norm(gt, axis=-1) > 1e-6
    per = [error_metrics(x, gt, mask) for x in s]
    mean = {k: float(np.mean([m[k] for m in per])) for k in _METRIC_KEYS}
    mean["pixels"] = per[0]["pixels"]
    best = int(np.argmin([m["mean"] for m in per]))
    fused = error_metrics(fuse_samples(s, mask) if fused is None else fused, gt, mask)
    return ImageScores(per, mean, dict(per[best]), best, fused)


def paired_difference(a, b, min_n_for_p: int = 1) -> dict:
    """Per-image errors ``b`` against ``a`` (same images, same order).

    Returns ``n``, the means ``a`` and ``b``, ``diff`` (mean of ``b - a``), ``se`` (its
    standard error; NaN for one image), ``b_lower`` (images where ``b < a``) and ``p``
    (two-sided Wilcoxon signed-rank; NaN below ``min_n_for_p`` images, 1 when every
    difference is 0).
    """
    from scipy import stats

    va, vb = np.asarray(a, np.float64), np.asarray(b, np.float64)
    d = vb - va
    n = len(d)
    if n < max(1, min_n_for_p):
        p = float("nan")
    else:
        p = float(stats.wilcoxon(d).pvalue) if np.any(d != 0) else 1.0
    return {"n": n, "a": float(va.mean()), "b": float(vb.mean()), "diff": float(d.mean()),
            "se": float(d.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan"), "b_lower": int(np.sum(d < 0)), "p": p}


def aggregate(metrics: list[dict]) -> dict:
    """Over images: ``mean`` = mean of the per-image mean errors, ``median`` = mean of the
    per-image median errors, ``median_of_means``, and mean per-image pixel shares."""
    if not metrics:
        return {}
    out = {
        "mean": float(np.mean([m["mean"] for m in metrics])),
        "median": float(np.mean([m["median"] for m in metrics])),
        "median_of_means": float(np.median([m["mean"] for m in metrics])),
        "images": len(metrics),
    }
    for t in THRESHOLDS:
        out[f"under_{t:g}"] = float(np.mean([m[f"under_{t:g}"] for m in metrics]))
    return out


def score_readings(readings: np.ndarray, layout) -> dict:
    """Shares of ``(N, R)`` region readings that equal ``layout`` (``true``), its full
    inversion (``inverted``), either (``consistent``), and each sample's class
    (0 true, 1 inverted, None mixed)."""
    from ..analysis.regions import consistency

    r = np.atleast_2d(np.asarray(readings))
    classes = [consistency(x, layout) for x in r]
    n = len(classes)
    true = sum(c == 0 for c in classes) / n
    inverted = sum(c == 1 for c in classes) / n
    return {"consistent": true + inverted, "true": true, "inverted": inverted, "classes": classes}


@dataclass
class StimulusScores:
    """How ``N`` samples of one stimulus read (see :func:`score_stimulus`)."""

    n: int
    n_modes: int
    mode_shares: list[float]
    spread: float
    consistent: float | None = None
    true: float | None = None
    inverted: float | None = None
    readings: list | None = None
    classes: list | None = None
    labels: list | None = None  # (N,) mode of each sample, 0 the most frequent
    reading_ari: float | None = None  # agreement of the modes with the region readings
    one_region: float | None = None  # mean one-region consistency of the samples
    one_region_samples: list | None = None  # (N,) one-region consistency per sample (None where undefined)
    # strict scoring (docs/evaluation.md, "Strict scoring"): flat or undecided counts against
    strict_consistent: float | None = None  # share of samples consistent
    strict_true: float | None = None  # region items: share read as the true layout
    strict_inverted: float | None = None  # region items: share read as its inversion
    disc_readings: list | None = None  # (N, R) from the mean radial tilt, 0 = nearly flat
    strict_one_region: list | None = None  # (N,) strict one-region consistency per sample
    strict_lost: dict | None = None  # mean shares of the image's shading read shallow / inverted / other
    pair_share: float | None = None  # share of the two largest modes together
    pair_correlation: float | None = None  # their medoids' correlation (-1: a reading and its inversion)

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("n", "n_modes", "mode_shares", "spread", "consistent", "true",
                                               "inverted", "readings", "classes", "labels", "reading_ari",
                                               "one_region", "one_region_samples", "strict_consistent", "strict_true", "strict_inverted",
                                               "disc_readings", "strict_one_region", "strict_lost", "pair_share",
                                               "pair_correlation")}



def score_stimulus(samples: np.ndarray, mask: np.ndarray, regions=None, layout=None,
                   image: np.ndarray | None = None) -> StimulusScores:
    """Modes (:func:`mssfs.analysis.clustering.cluster_samples`), mean angular spread (degrees),
    when ``regions`` and ``layout`` are given the consistency shares of the region readings,
    and when ``image`` is given the samples' mean one-region consistency
    (:func:`mssfs.analysis.one_region.one_region_consistency`, None where undefined).

    Strict scoring, in which a disc or part of a figure left flat or undecided counts
    against a sample: with ``regions`` and ``layout``, a sample is consistent when its
    :func:`mssfs.analysis.regions.disc_readings` fit one light; with ``image`` and no
    regions, when its strict one-region consistency is at least
    :data:`mssfs.analysis.one_region.STRICT_SHARE`, and the mean shares of the shading it
    loses as shallow, inverted or other (:func:`mssfs.analysis.one_region.strict_breakdown`,
    ``strict_lost``).  Also the two largest modes' joint
    share and correlation (:func:`mssfs.analysis.clustering.mode_correlation`)."""
    from ..analysis.clustering import cluster_samples, mode_correlation
    from ..analysis.regions import disc_readings, region_readings
    from ..analysis.spread import angular_spread

    s = np.asarray(samples)
    s = s[None] if s.ndim == 3 else s
    clus = cluster_samples(s, mask)
    spread = float(np.nanmean(angular_spread(s, mask))) if len(s) > 1 else 0.0
    out = StimulusScores(len(s), clus.n_modes, [float(x) for x in clus.shares], spread,
                         labels=[int(x) for x in clus.labels])
    out.pair_share = float(clus.shares[:2].sum())
    out.pair_correlation = mode_correlation(s, mask, clus)
    if regions is not None and layout is not None:
        r = region_readings(s, regions, mask)
        c = score_readings(r, layout)
        out.consistent, out.true, out.inverted = c["consistent"], c["true"], c["inverted"]
        out.readings, out.classes = r.astype(int).tolist(), c["classes"]
        out.reading_ari = modes_match_readings(clus.labels, r) if len(s) > 1 else None  # one sample: nothing to group
        d = disc_readings(s, regions)
        strict = score_readings(d, layout)
        out.strict_consistent, out.strict_true, out.strict_inverted = strict["consistent"], strict["true"], strict["inverted"]
        out.disc_readings = d.astype(int).tolist()
    if image is not None:
        from ..analysis.one_region import BREAKDOWN, STRICT_SHARE, one_region_consistency, strict_breakdown
        from ..sampler.lighting import estimate_light

        lights = np.stack([estimate_light(x, image, mask) for x in s])
        one = one_region_consistency(s, image, mask, lights)
        out.one_region = float(np.nanmean(one)) if np.isfinite(one).any() else None
        out.one_region_samples = [float(x) if np.isfinite(x) else None for x in one]
        if regions is None:
            parts = strict_breakdown(s, image, mask, lights)
            strict_one = parts[:, 0]  # the read share is the strict one-region consistency
            out.strict_one_region = [round(float(x), 4) if np.isfinite(x) else None for x in strict_one]
            out.strict_consistent = float(np.mean(np.nan_to_num(strict_one, nan=0.0) >= STRICT_SHARE))
            if np.isfinite(parts).all():
                out.strict_lost = {k: round(float(v), 4) for k, v in zip(BREAKDOWN[1:], parts[:, 1:].mean(axis=0))}
    return out


def seam_scores(samples: np.ndarray, fused: np.ndarray, mask: np.ndarray, stage_resolution: int | None) -> dict:
    """``{"seam_index": mean over the samples, "seam_index_fused": of the fused result}``
    (:func:`mssfs.analysis.seams.seam_index`, None where undefined) on the patch grid of a
    last stage at ``stage_resolution`` (:func:`mssfs.analysis.seams.output_grid`), or on a
    16-pixel grid of the output for a method without patches (None)."""
    from ..analysis.seams import output_grid, seam_index

    m = np.asarray(mask, bool)
    period, origin = output_grid(m.shape, stage_resolution) if stage_resolution else (16.0, (0.0, 0.0))
    per = seam_index(np.asarray(samples), m, period, origin)
    whole = seam_index(np.asarray(fused), m, period, origin)
    return {"seam_index": float(np.nanmean(per)) if np.isfinite(per).any() else None,
            "seam_index_fused": float(whole) if np.isfinite(whole) else None}


def modes_match_readings(labels, readings) -> float:
    """Adjusted Rand index between the modes found by :func:`mssfs.analysis.clustering.cluster_samples`
    (``labels``, ``(N,)``) and the partition of the samples by their region readings
    (``(N, R)``; samples with identical rows together): 1 when the modes are exactly the
    distinct readings, about 0 when they are unrelated (1 when both are a single group)."""
    from sklearn.metrics import adjusted_rand_score

    _, by_reading = np.unique(np.asarray(readings), axis=0, return_inverse=True)
    return float(adjusted_rand_score(by_reading.ravel(), np.asarray(labels)))
