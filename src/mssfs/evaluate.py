"""Measuring the sampler against ground truth, baselines and its own ablations.

Two suites (``mssfs evaluate --suite ...``; docs/evaluation.md has the tables):

* **objects** -- a held-out set of procedural normal maps (shape seeds >= ``2**30``,
  disjoint from training; :class:`mssfs.data.HeldoutImages`): ``n_objects`` objects with
  occluding contours and ``n_reliefs`` reliefs, each rendered under its own fixed light and
  albedo.  Every method sees the image and the true foreground mask.  The ``N`` samples of
  an image are scored with :func:`mssfs.geometry.error_metrics` three ways
  (:func:`score_samples`): **mean** (the metrics averaged over the samples: what one
  random sample achieves), **best** (the sample with the lowest mean angular error: an
  oracle that shows whether the truth is among the samples) and **fused** (the
  renormalised mean normal of the samples).  Over images (:func:`aggregate`): the mean of
  the per-image mean errors, the mean of the per-image median errors, and the mean
  per-image share of pixels under 11.25, 22.5 and 30 degrees.
* **stimuli** -- the four bundled stimuli and generated bump/dent layouts with known
  geometry (:func:`mssfs.analysis.generated_bump_dent_layout`).  Per method and item
  (:func:`score_stimulus`): the share of samples whose region readings fit one light
  (:func:`mssfs.analysis.consistency` not None), the share of each consistent reading
  (the true one and its full inversion), the number of interpretations
  (:func:`mssfs.analysis.cluster_samples`) and the mean per-pixel angular spread.  The
  circles stimulus gets its four disc regions from :func:`segment_features`; its reading
  "true" is the one DESIGN.md §10 names for light from above (three bumps, the
  bottom-right disc a dent: :data:`CIRCLES_LAYOUT`).  Rings, star and snake have no
  region layout here: modes and spread only.

Methods (:func:`build_methods`): the sampler with the chosen preset (``ours``), the
``paper`` and ``fast`` presets, four ablations of the chosen preset
(:func:`ablation_schedule`), and the baselines ``regression``, ``classical`` and ``flat``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy import ndimage

from .fileio import atomic_path
from .geometry import error_metrics, normalize
from .patches import PATCH
from .schedules import Schedule, get_preset

__all__ = [
    "ABLATIONS",
    "BASELINES",
    "CIRCLES_LAYOUT",
    "DEFAULT_METHODS",
    "FIGURE_METHODS",
    "METHODS",
    "SAMPLER_METHODS",
    "ImageScores",
    "Method",
    "ObjectItem",
    "RunSettings",
    "StimulusItem",
    "StimulusScores",
    "ablation_figure",
    "ablation_schedule",
    "aggregate",
    "build_methods",
    "fuse_samples",
    "heldout_items",
    "method_schedule",
    "objects_table",
    "run_objects",
    "run_stimuli",
    "scale_schedule",
    "score_readings",
    "score_samples",
    "score_stimulus",
    "segment_features",
    "stimuli_table",
    "stimulus_items",
    "write_results",
]

#: The sampler with a schedule: the chosen preset, the two presets, and the ablations.
ABLATIONS = ("no-guidance", "seams-only", "no-lighting", "single-scale")
SAMPLER_METHODS = ("ours", "paper", "fast") + ABLATIONS
#: Deterministic predictors (one prediction per image).
BASELINES = ("regression", "classical", "flat")
METHODS = SAMPLER_METHODS + BASELINES
#: What ``--methods`` defaults to (``paper`` is expensive, ``fast`` duplicates ``ours``).
DEFAULT_METHODS = ("ours",) + ABLATIONS + BASELINES
#: Rows of the ablation figure, in the order of the publication's introductory figure.
FIGURE_METHODS = ("no-guidance", "single-scale", "seams-only", "no-lighting", "ours")
#: Angular error thresholds (degrees) of the pixel shares.
THRESHOLDS = (11.25, 22.5, 30.0)
#: Held-out reliefs and bump/dent layouts use seeds this far above ``HELDOUT_SEED_BASE``,
#: so they never share a seed with the held-out objects.
RELIEF_SEED_OFFSET = 1 << 20
LAYOUT_SEED_OFFSET = 1 << 21
#: The circles stimulus (discs in reading order: top-left, top-right, bottom-left,
#: bottom-right) read with light from above: three bumps and one dent (DESIGN.md §10).
CIRCLES_LAYOUT = (1, 1, 1, -1)
#: An export of regression weights here is used when ``--regression-model`` is not given.
DEFAULT_REGRESSION_DIR = Path(__file__).resolve().parent / "weights" / "regression"


# ----------------------------------------------------------------------------- schedules
def _snap(resolution: float) -> int:
    """Nearest multiple of the patch size, at least two patches."""
    return max(2 * PATCH, round(resolution / PATCH) * PATCH)


def scale_schedule(schedule: Schedule, finest: int) -> Schedule:
    """``schedule`` with every stage resolution scaled by ``finest / schedule.finest``.

    Resolutions are rounded to multiples of 16 (at least 32), so the V-cycle keeps its
    shape; everything else (steps, learning rates, lighting) is unchanged.  Returns the
    schedule itself when ``finest`` equals its finest resolution.
    """
    if finest == schedule.finest:
        return schedule
    if finest < 2 * PATCH or finest % PATCH:
        raise ValueError(f"the finest resolution must be a multiple of {PATCH} and at least {2 * PATCH}, got {finest}")
    k = finest / schedule.finest
    stages = tuple(replace(s, resolution=_snap(s.resolution * k)) for s in schedule.stages)
    return replace(schedule, name=f"{schedule.name}@{finest}", stages=stages)


def ablation_schedule(base: Schedule, name: str) -> Schedule:
    """One ablation of ``base``:

    * ``no-guidance``: ``lr = 0`` in every stage (no seam or integrability guidance) and
      no lighting consistency -- patches are sampled independently;
    * ``seams-only``: integrability and shading weights 0 and no lighting consistency;
    * ``no-lighting``: no lighting consistency (neither patch nor region flips);
    * ``single-scale``: one stage at ``base.finest`` from pure noise, with the first
      stage's guidance (``lr``, ``guidance_start_t``, inner iterations), no lighting.
    """
    off = dict(lighting=False, region_flips=False)
    if name == "no-guidance":
        stages = tuple(replace(s, lr=0.0, **off) for s in base.stages)
    elif name == "seams-only":
        stages = tuple(replace(s, integrability_weight=0.0, shading_weight=0.0, **off) for s in base.stages)
    elif name == "no-lighting":
        stages = tuple(replace(s, **off) for s in base.stages)
    elif name == "single-scale":
        from .diffusion import NoiseSchedule

        first = base.stages[0]
        stage = replace(first, resolution=base.finest, restart_t=NoiseSchedule().T - 1, **off)
        return replace(base, name=f"{base.name}/{name}", stages=(stage,), fuse_last=1, final_region_flips=False)
    else:
        raise ValueError(f"unknown ablation {name!r}; choose one of: {', '.join(ABLATIONS)}")
    return replace(base, name=f"{base.name}/{name}", stages=stages, final_region_flips=False)


def method_schedule(
    name: str, preset: str | Schedule = "fast", finest: int | None = None, max_finest: int | None = None
) -> Schedule:
    """The schedule of sampler method ``name`` (``ours`` = ``preset``, a preset name or a
    :class:`~mssfs.schedules.Schedule`, e.g. from a user's schedule file; the ablations
    modify it; ``paper`` and ``fast`` are always those presets).

    ``finest`` scales the preset so that its finest resolution is exactly that;
    ``max_finest`` only scales it down when its finest resolution is larger (e.g. the
    image size: sampling a 64-pixel image at 128 pixels adds cost, not information).
    """
    if name not in SAMPLER_METHODS:
        raise ValueError(f"{name!r} is not a sampler method ({', '.join(SAMPLER_METHODS)})")
    if name in ("paper", "fast"):
        base = get_preset(name)
    else:
        base = preset if isinstance(preset, Schedule) else get_preset(preset)
    if finest is not None:
        base = scale_schedule(base, finest)
    elif max_finest is not None and base.finest > max_finest:
        base = scale_schedule(base, max(2 * PATCH, max_finest // PATCH * PATCH))
    return ablation_schedule(base, name) if name in ABLATIONS else base


# ----------------------------------------------------------------------------- methods
@dataclass
class Method:
    """A method under evaluation.

    Attributes:
        name: as given to ``--methods``.
        schedule: the sampler's schedule (None for a deterministic baseline).
        predict: deterministic baselines: ``(image (H, W), mask (H, W)) -> (H, W, 3)``.
    """

    name: str
    schedule: Schedule | None = None
    predict: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
    description: str = ""

    @property
    def stochastic(self) -> bool:
        return self.schedule is not None

    def run(self, image, mask, n: int, seed: int, model=None, device="cpu", bf16: bool = False) -> np.ndarray:
        """``(N, H, W, 3)`` float32 normals (``N = n`` for the sampler, 1 otherwise)."""
        return self.run_many([image], [mask], n, [seed], model, device, bf16)[0]

    def run_many(self, images, masks, n: int, seeds, model=None, device="cpu", bf16: bool = False) -> list[np.ndarray]:
        """:meth:`run` for several images; the sampler draws all their samples in one
        batched :func:`mssfs.pipeline.sample_many` call (image ``k`` with ``seeds[k]``)."""
        if self.schedule is not None:
            from .pipeline import sample_many

            results = sample_many(list(images), n=n, seed=list(seeds), schedule=self.schedule, model=model,
                                  masks=list(masks), device=device, bf16=bf16)
            return [r.normals for r in results]
        outs = []
        for image, mask in zip(images, masks):
            m = np.asarray(mask, bool)
            pred = normalize(np.asarray(self.predict(np.asarray(image, np.float64), m), np.float32))
            outs.append(np.where(m[..., None], pred, 0.0)[None].astype(np.float32))
        return outs


def _regression_predictor(model) -> Callable:
    from .model import predict_regression

    return lambda image, mask: predict_regression(model, image)


def build_methods(
    names,
    preset: str | Schedule = "fast",
    finest: int | None = None,
    max_finest: int | None = None,
    regression_model=None,
    device="cpu",
) -> tuple[list[Method], dict[str, str]]:
    """Methods by name, and the ones skipped with the reason.

    Args:
        names: method names (see :data:`METHODS`).
        finest, max_finest: sampling resolution (see :func:`method_schedule`).
        regression_model: a loaded regression network, a path to its export, or None
            (then :data:`DEFAULT_REGRESSION_DIR` if it exists, else ``regression`` is skipped).
    Raises:
        ValueError for an unknown name or a regression export that is not a regression model.
    """
    from .baselines import classical_sfs, flat_normals

    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; choose from: {', '.join(METHODS)}")
    methods, skipped = [], {}
    for name in dict.fromkeys(names):
        if name in SAMPLER_METHODS:
            sched = method_schedule(name, preset, finest, max_finest)
            methods.append(Method(name, schedule=sched, description=f"sampler, schedule {sched.name}"))
        elif name == "flat":
            methods.append(Method(name, predict=flat_normals, description="(0, 0, 1) everywhere"))
        elif name == "classical":
            methods.append(Method(name, predict=classical_sfs, description="Brooks-Horn variational SfS, light estimated"))
        else:
            model = regression_model
            if model is None and (DEFAULT_REGRESSION_DIR / "config.json").is_file():
                model = DEFAULT_REGRESSION_DIR
            if model is None:
                skipped[name] = "no regression weights (give --regression-model PATH)"
                continue
            if not hasattr(model, "forward"):
                from .weights import load_model

                path = model
                model = load_model(path, device=device)
                objective = (getattr(model, "info", None) or {}).get("objective")
                if objective != "regression":
                    raise ValueError(f"{path}: the export's objective is {objective!r}, not 'regression'")
            methods.append(Method(name, predict=_regression_predictor(model), description="one-shot regression U-Net"))
    return methods, skipped


# ----------------------------------------------------------------------------- objects suite
@dataclass
class ObjectItem:
    """One held-out image with its ground truth."""

    name: str
    kind: str  # "objects" or "reliefs"
    family: str
    seed: int
    image: np.ndarray  # (H, W) float64
    normals: np.ndarray  # (H, W, 3) float32
    mask: np.ndarray  # (H, W) bool
    light: np.ndarray  # (3,)
    albedo: float


def heldout_items(n_objects: int = 50, n_reliefs: int = 20, size: int = 64) -> list[ObjectItem]:
    """The objects suite: ``n_objects`` objects then ``n_reliefs`` reliefs.

    Objects use shape seeds ``2**30 + i``; reliefs ``2**30 + 2**20 + i``.  Lights and
    albedos are those of :class:`mssfs.data.HeldoutImages` (a function of the seed).
    """
    from .data import HeldoutImages
    from .shapes import HELDOUT_SEED_BASE

    items = []
    for kind, n, base in (("objects", n_objects, HELDOUT_SEED_BASE), ("reliefs", n_reliefs, HELDOUT_SEED_BASE + RELIEF_SEED_OFFSET)):
        if n <= 0:
            continue
        ds = HeldoutImages(n, size=size, seed_base=base, kind=kind)
        for i in range(n):
            d = ds[i]
            items.append(
                ObjectItem(
                    name=f"{d['family']}-{d['seed']}",
                    kind=kind,
                    family=d["family"],
                    seed=int(d["seed"]),
                    image=d["image"][0].double().numpy(),
                    normals=d["normals"].permute(1, 2, 0).numpy(),
                    mask=d["mask"][0].numpy() > 0.5,
                    light=d["light"].double().numpy(),
                    albedo=float(d["albedo"]),
                )
            )
    return items


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
    """Error metrics of ``N`` samples of one image (dicts as :func:`mssfs.geometry.error_metrics`).

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


def score_samples(samples: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> ImageScores:
    """Score ``(N, H, W, 3)`` (or ``(H, W, 3)``) samples against the ``(H, W, 3)`` truth."""
    s = np.asarray(samples)
    s = s[None] if s.ndim == 3 else s
    if mask is None:
        mask = np.linalg.norm(gt, axis=-1) > 1e-6
    per = [error_metrics(x, gt, mask) for x in s]
    mean = {k: float(np.mean([m[k] for m in per])) for k in _METRIC_KEYS}
    mean["pixels"] = per[0]["pixels"]
    best = int(np.argmin([m["mean"] for m in per]))
    fused = error_metrics(fuse_samples(s, mask), gt, mask)
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


# ----------------------------------------------------------------------------- stimuli suite
def segment_features(image: np.ndarray, count: int, threshold: float = 0.04, sigma: float | None = None) -> np.ndarray:
    """Regions of round bumps/dents on flat ground, from the image alone.

    The ground's intensity is the most frequent grey level (256-bin histogram); pixels
    whose Gaussian-smoothed (``sigma``, default ``max(1, min(H, W) / 128)`` pixels)
    absolute difference from it exceeds ``threshold`` are marked and their holes filled
    (the centre of a feature faces the viewer like the ground and has the ground's grey),
    and the ``count`` largest connected components kept.  Labels follow reading order:
    components are grouped into rows (centroids closer in row than the mean equivalent
    radius) from the top, and ordered left to right within a row.

    Args:
        image: ``(H, W)`` in [0, 1].
        count: number of features to keep.
    Returns:
        ``(H, W)`` int32 labels 1..count (0 = ground).
    Raises:
        ValueError when fewer than ``count`` components are found.
    """
    img = np.asarray(image, np.float64)
    hist, edges = np.histogram(img, bins=256, range=(0.0, 1.0))
    ground = edges[np.argmax(hist)] + 0.5 / 256
    if sigma is None:
        sigma = max(1.0, min(img.shape) / 128)
    marked = ndimage.binary_fill_holes(ndimage.gaussian_filter(np.abs(img - ground), sigma) > threshold)
    labels, k = ndimage.label(marked)
    if k < count:
        raise ValueError(f"found {k} feature(s) in the image, expected {count}")
    sizes = ndimage.sum(marked, labels, range(1, k + 1))
    keep = np.argsort(-sizes, kind="stable")[:count] + 1
    centres = ndimage.center_of_mass(marked, labels, keep)
    radius = float(np.mean(np.sqrt(sizes[keep - 1] / np.pi)))
    order = sorted(range(count), key=lambda j: centres[j][0])
    rows, row = [], [order[0]]
    for j in order[1:]:
        if centres[j][0] - np.mean([centres[r][0] for r in row]) < radius:
            row.append(j)
        else:
            rows.append(row)
            row = [j]
    rows.append(row)
    out = np.zeros(img.shape, np.int32)
    label = 1
    for row in rows:
        for j in sorted(row, key=lambda j: centres[j][1]):
            out[labels == keep[j]] = label
            label += 1
    return out


@dataclass
class StimulusItem:
    """An input of the stimuli suite; ``regions``/``layout`` None when not scored by regions."""

    name: str
    kind: str  # "bundled" or "layout"
    image: np.ndarray  # (H, W) float64
    mask: np.ndarray  # (H, W) bool
    regions: np.ndarray | None = None  # (H, W) int labels 1..R
    layout: np.ndarray | None = None  # (R,) +1 bump / -1 dent for the "true" reading
    notes: str = ""


def _resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """``(H, W)`` -> ``(size, size)`` float64 in [0, 1] with :func:`mssfs.pipeline.resize`."""
    import torch

    from .pipeline import resize

    t = torch.from_numpy(np.asarray(image, np.float32))[None, None]
    return resize(t, size)[0, 0].clamp(0, 1).double().numpy()


def stimulus_items(size: int = 128, n_layouts: int = 10, names=None) -> list[StimulusItem]:
    """The bundled stimuli resized to ``size x size``, then ``n_layouts`` generated layouts
    (seeds ``2**30 + 2**21 + k``)."""
    from . import stimuli
    from .analysis import generated_bump_dent_layout
    from .shapes import HELDOUT_SEED_BASE

    items = []
    for name in names if names is not None else stimuli.NAMES:
        img = _resize_image(stimuli.load(name), size)
        mask = np.ones(img.shape, bool)
        if name == "circles":
            regions = segment_features(img, len(CIRCLES_LAYOUT))
            items.append(StimulusItem(name, "bundled", img, mask, regions, np.array(CIRCLES_LAYOUT, np.int8),
                                      "regions segmented from the image; true = light from above"))
        else:
            items.append(StimulusItem(name, "bundled", img, mask, notes="no region layout: modes and spread only"))
    for k in range(n_layouts):
        seed = HELDOUT_SEED_BASE + LAYOUT_SEED_OFFSET + k
        lay = generated_bump_dent_layout(seed, size)
        items.append(StimulusItem(f"layout-{seed}", "layout", lay.image, lay.mask, lay.regions, lay.layout))
    return items


def score_readings(readings: np.ndarray, layout) -> dict:
    """Shares of ``(N, R)`` region readings that equal ``layout`` (``true``), its full
    inversion (``inverted``), either (``consistent``), and each sample's class
    (0 true, 1 inverted, None mixed)."""
    from .analysis import consistency

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

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("n", "n_modes", "mode_shares", "spread", "consistent", "true",
                                               "inverted", "readings", "classes", "labels", "reading_ari")}


def score_stimulus(samples: np.ndarray, mask: np.ndarray, regions=None, layout=None) -> StimulusScores:
    """Modes (:func:`mssfs.analysis.cluster_samples`), mean angular spread (degrees) and,
    when ``regions`` and ``layout`` are given, the consistency shares of the region readings."""
    from .analysis import angular_spread, cluster_samples, region_readings

    s = np.asarray(samples)
    s = s[None] if s.ndim == 3 else s
    clus = cluster_samples(s, mask)
    spread = float(np.nanmean(angular_spread(s, mask))) if len(s) > 1 else 0.0
    out = StimulusScores(len(s), clus.n_modes, [float(x) for x in clus.shares], spread,
                         labels=[int(x) for x in clus.labels])
    if regions is not None and layout is not None:
        r = region_readings(s, regions, mask)
        c = score_readings(r, layout)
        out.consistent, out.true, out.inverted = c["consistent"], c["true"], c["inverted"]
        out.readings, out.classes = r.astype(int).tolist(), c["classes"]
        out.reading_ari = modes_match_readings(clus.labels, r) if len(s) > 1 else None  # one sample: nothing to group
    return out


def modes_match_readings(labels, readings) -> float:
    """Adjusted Rand index between the modes found by :func:`mssfs.analysis.cluster_samples`
    (``labels``, ``(N,)``) and the partition of the samples by their region readings
    (``(N, R)``; samples with identical rows together): 1 when the modes are exactly the
    distinct readings, about 0 when they are unrelated (1 when both are a single group)."""
    from sklearn.metrics import adjusted_rand_score

    _, by_reading = np.unique(np.asarray(readings), axis=0, return_inverse=True)
    return float(adjusted_rand_score(by_reading.ravel(), np.asarray(labels)))


# ----------------------------------------------------------------------------- runners
@dataclass
class RunSettings:
    """What the sampler methods are run with."""

    samples: int = 4
    seed: int = 0
    device: str = "cpu"
    bf16: bool = False
    model: object = None  # a loaded denoiser (None: the package default)
    batch_images: int = 0  # sampler methods: images per batched call (0: automatic, see _images_per_call)


def _bar(total: int, enabled: bool, unit: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, unit=unit, dynamic_ncols=True)


#: Automatic batching: at most this many patches (samples x patches of the finest stage)
#: per sampler call; 1,024 on CPU keeps memory near 3 GB, 16,384 on a GPU about 20 GB.
PATCH_BUDGET = {"cpu": 1024, "cuda": 16384}


def _images_per_call(settings: RunSettings, schedule) -> int:
    """``settings.batch_images``, or (0) as many images as fit :data:`PATCH_BUDGET`."""
    if settings.batch_images:
        return settings.batch_images
    budget = PATCH_BUDGET.get(str(settings.device).split(":")[0], PATCH_BUDGET["cpu"])
    per_image = settings.samples * (schedule.finest // PATCH) ** 2
    return max(1, budget // per_image)


def _run_methods(items, methods: list[Method], settings: RunSettings, progress: bool, score) -> tuple[dict, dict]:
    """Run every method on every item (image ``i`` with seed ``settings.seed + i``).

    Sampler methods draw the samples of several images (``settings.batch_images``, or
    automatically as many as :data:`PATCH_BUDGET` allows) in one batched call
    (:meth:`Method.run_many`, a seed per image, so the samples do not depend on the
    batching beyond float rounding); baselines run image by image.  ``score(item, normals)`` turns one item's samples into a JSON-ready
    row.  Returns ``(rows per method, seconds per method)``.
    """
    per_item = {m.name: [] for m in methods}
    seconds = {m.name: 0.0 for m in methods}
    with _bar(len(items) * len(methods), progress, "image") as bar:
        for m in methods:
            step = _images_per_call(settings, m.schedule) if m.stochastic else 1
            for a in range(0, len(items), step):
                group = items[a : a + step]
                bar.set_description(f"{m.name} {group[0].name}" + (f" +{len(group) - 1}" if len(group) > 1 else ""))
                t0 = time.perf_counter()
                outs = m.run_many([it.image for it in group], [it.mask for it in group], settings.samples,
                                  [settings.seed + a + j for j in range(len(group))], settings.model,
                                  settings.device, settings.bf16)
                seconds[m.name] += time.perf_counter() - t0
                for it, normals in zip(group, outs):
                    per_item[m.name].append(score(it, normals))
                bar.update(len(group))
    return per_item, seconds


def run_objects(items: list[ObjectItem], methods: list[Method], settings: RunSettings, progress: bool = True) -> dict:
    """Run and score every method on every item; returns the JSON-ready results.

    Image ``i`` is sampled with seed ``settings.seed + i`` by every sampler method, so the
    methods are compared on the same noise.
    """
    per_item, seconds = _run_methods(
        items, methods, settings, progress,
        lambda it, normals: {"item": it.name, "kind": it.kind, "family": it.family, "seed": it.seed,
                             "n": int(normals.shape[0]), **score_samples(normals, it.normals, it.mask).to_dict()},
    )
    summary = {}
    for m in methods:
        rows = per_item[m.name]
        summary[m.name] = {}
        for subset in ("objects", "reliefs", "all"):
            sel = [r for r in rows if subset == "all" or r["kind"] == subset]
            if sel:
                summary[m.name][subset] = {s: aggregate([r[s] for r in sel]) for s in ("mean", "best", "fused")}
        summary[m.name]["seconds"] = seconds[m.name]
        summary[m.name]["seconds_per_image"] = seconds[m.name] / max(1, len(items))
    return {"summary": summary, "items": per_item}


def run_stimuli(items: list[StimulusItem], methods: list[Method], settings: RunSettings, progress: bool = True) -> dict:
    """Run and score every method on every stimulus item; returns the JSON-ready results."""
    per_item, seconds = _run_methods(
        items, methods, settings, progress,
        lambda it, normals: {"item": it.name, "kind": it.kind,
                             **score_stimulus(normals, it.mask, it.regions, it.layout).to_dict()},
    )
    summary = {}
    for m in methods:
        rows = per_item[m.name]
        lay = [r for r in rows if r["kind"] == "layout"]
        s = {"seconds": seconds[m.name], "seconds_per_image": seconds[m.name] / max(1, len(items))}
        if lay:
            s["layouts"] = {k: float(np.mean([r[k] for r in lay])) for k in ("consistent", "true", "inverted", "n_modes", "spread")}
            aris = [r["reading_ari"] for r in lay]
            s["layouts"]["reading_ari"] = None if None in aris else float(np.mean(aris))
            s["layouts"]["count"] = len(lay)
        summary[m.name] = s
    return {"summary": summary, "items": per_item}


# ----------------------------------------------------------------------------- tables
def _deg(x) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.1f}"


def _ari(x) -> str:
    return "—" if x is None else f"{x:.2f}"


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.0f} %"


_SCORING_LABEL = {"mean": "mean of samples", "best": "best of N", "fused": "fused"}


def objects_table(results: dict, methods: list[Method], skipped: dict[str, str], subset: str) -> str:
    """Markdown table of one subset (``objects``, ``reliefs`` or ``all``) of :func:`run_objects` output."""
    head = ("| method | scoring | mean err. | median err. | < 11.25° | < 22.5° | < 30° | s / image |\n"
            "|---|---|---:|---:|---:|---:|---:|---:|")
    lines = [head]
    for m in methods:
        s = results["summary"][m.name]
        if subset not in s:
            continue
        rows = ("mean", "best", "fused") if m.stochastic else ("mean",)
        for k, scoring in enumerate(rows):
            a = s[subset][scoring]
            label = _SCORING_LABEL[scoring] if m.stochastic else "single (N = 1)"
            name, secs = (m.name, f"{s['seconds_per_image']:.1f}") if k == 0 else ("", "")
            lines.append(
                f"| {name} | {label} | {_deg(a['mean'])}° | {_deg(a['median'])}° | "
                f"{_pct(a['under_11.25'])} | {_pct(a['under_22.5'])} | {_pct(a['under_30'])} | {secs} |"
            )
    for name, why in skipped.items():
        lines.append(f"| {name} | skipped: {why} | | | | | | |")
    return "\n".join(lines)


def stimuli_table(results: dict, methods: list[Method], skipped: dict[str, str]) -> str:
    """Markdown table of :func:`run_stimuli` output: bundled stimuli one row each, the
    generated layouts averaged into one row per method."""
    head = ("| input | method | N | consistent | true | inverted | modes | modes ~ readings (ARI) | spread | s / image |\n"
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    lines = [head]
    names = [r["item"] for r in results["items"][methods[0].name] if r["kind"] == "bundled"] if methods else []
    for name in names + ["layouts"]:
        for m in methods:
            s = results["summary"][m.name]
            if name == "layouts":
                if "layouts" not in s:
                    continue
                r = s["layouts"]
                label, n, modes = f"layouts (mean of {r['count']})", results["items"][m.name][-1]["n"], f"{r['n_modes']:.1f}"
            else:
                r = next(x for x in results["items"][m.name] if x["item"] == name)
                label, n, modes = name, r["n"], str(r["n_modes"])
            lines.append(f"| {label} | {m.name} | {n} | {_pct(r['consistent'])} | {_pct(r['true'])} | "
                         f"{_pct(r['inverted'])} | {modes} | {_ari(r.get('reading_ari'))} | {_deg(r['spread'])}° | "
                         f"{s['seconds_per_image']:.1f} |")
    for name, why in skipped.items():
        lines.append(f"| | {name} | skipped: {why} | | | | | | | |")
    return "\n".join(lines)


def write_results(out_dir, markdown: str, data: dict) -> tuple[Path, Path]:
    """Write ``results.md`` and ``results.json`` into ``out_dir`` (each atomically)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md, js = out / "results.md", out / "results.json"
    for path, text in ((js, json.dumps(data, indent=1, default=_json_default) + "\n"),
                       (md, markdown if markdown.endswith("\n") else markdown + "\n")):
        with atomic_path(path) as tmp:
            tmp.write_text(text)
    return md, js


def _json_default(x):
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


# ----------------------------------------------------------------------------- figure
def ablation_figure(
    path, image: np.ndarray, rows: dict[str, np.ndarray], title: str = "", column_titles: list[str] | None = None
) -> Path:
    """Draw the input and one row of samples per method (normal-map colours) to ``path``.

    Args:
        image: ``(H, W)`` input.
        rows: method name -> ``(N, H, W, 3)`` samples (same N for all).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .plots import normal_rgb, save_figure

    n = max(len(v) for v in rows.values())
    fig = plt.figure(figsize=(1.8 * n + 3.4, 1.8 * len(rows) + 0.6))
    grid = fig.add_gridspec(len(rows), n + 1, width_ratios=[1.6] + [1] * n, wspace=0.05, hspace=0.08)
    ax = fig.add_subplot(grid[:, 0])
    ax.imshow(image, cmap="gray", vmin=0, vmax=1)
    ax.set_title("input", fontsize=11)
    ax.axis("off")
    for r, (name, samples) in enumerate(rows.items()):
        for c in range(n):
            ax = fig.add_subplot(grid[r, c + 1])
            ax.set_xticks([])
            ax.set_yticks([])
            for sp in ax.spines.values():
                sp.set_visible(False)
            if c < len(samples):
                ax.imshow(normal_rgb(samples[c]), interpolation="nearest")
            if c == 0:
                ax.set_ylabel(name, fontsize=11)
            if r == 0 and column_titles is not None and c < len(column_titles):
                ax.set_title(column_titles[c], fontsize=10)
    if title:
        fig.suptitle(title, fontsize=11)
    return save_figure(fig, path, dpi=90)
