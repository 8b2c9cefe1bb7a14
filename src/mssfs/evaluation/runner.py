"""Measuring the sampler against ground truth, baselines and its own ablations.

Two suites (``mssfs evaluate --suite ...``; docs/evaluation.md; current tables in docs/results.md):

* **objects** -- a held-out set of procedural normal maps (shape seeds >= ``2**30``,
  disjoint from training; :class:`mssfs.data.datasets.HeldoutImages`): ``n_objects`` objects with
  occluding contours and ``n_reliefs`` reliefs, each rendered under its own fixed light and
  albedo.  Every method sees the image and the true foreground mask.  The ``N`` samples of
  an image are scored with :func:`mssfs.evaluation.metrics.error_metrics` three ways
  (:func:`score_samples`): **mean** (the metrics averaged over the samples: what one
  random sample achieves), **best** (the sample with the lowest mean angular error: an
  oracle that shows whether the truth is among the samples) and **fused** (the
  renormalised mean normal of the samples).  Over images (:func:`aggregate`): the mean of
  the per-image mean errors, the mean of the per-image median errors, and the mean
  per-image share of pixels under 11.25, 22.5 and 30 degrees.
* **stimuli** -- the four bundled stimuli and generated bump/dent layouts with known
  geometry (:func:`mssfs.analysis.layouts.generated_bump_dent_layout`).  Per method and item
  (:func:`score_stimulus`): the share of samples whose region readings fit one light
  (:func:`mssfs.analysis.regions.consistency` not None), the share of each consistent reading
  (the true one and its full inversion), the number of interpretations
  (:func:`mssfs.analysis.clustering.cluster_samples`) and the mean per-pixel angular spread.  The
  circles stimulus gets its four disc regions from :func:`segment_features`; its reading
  "true" is the one the publication names for light from above (three bumps, the
  bottom-right disc a dent: :data:`CIRCLES_LAYOUT`).  Rings, star and snake have no
  region layout here: modes and spread only.

Methods (:func:`build_methods`): the sampler with the chosen preset (``ours``), the
``paper`` and ``fast`` presets, four ablations of the chosen preset
(:func:`ablation_schedule`), and the baselines ``regression``, ``classical`` and ``flat``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..core.patches import PATCH
from .items import ObjectItem, StimulusItem
from .methods import Method
from .metrics import aggregate, score_samples, score_stimulus, seam_scores

__all__ = ["RunSettings", "run_objects", "run_stimuli"]


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
    batching beyond float rounding); baselines run image by image.  ``score(item, normals,
    fused, stage_resolution)`` turns one item's samples and the method's fused result into a
    JSON-ready row (``stage_resolution``: the sampler's last stage, whose patch grid the
    seam index is measured on; None for a baseline).  Returns ``(rows per method, seconds per method)``.
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
                                  settings.device, settings.bf16, with_fused=True)
                seconds[m.name] += time.perf_counter() - t0
                last = m.schedule.stages[-1].resolution if m.stochastic else None
                for it, (normals, fused) in zip(group, outs):
                    per_item[m.name].append(score(it, normals, fused, last))
                bar.update(len(group))
    return per_item, seconds


def run_objects(items: list[ObjectItem], methods: list[Method], settings: RunSettings, progress: bool = True) -> dict:
    """Run and score every method on every item; returns the JSON-ready results.

    Image ``i`` is sampled with seed ``settings.seed + i`` by every sampler method, so the
    methods are compared on the same noise.
    """
    per_item, seconds = _run_methods(
        items, methods, settings, progress,
        lambda it, normals, fused, last: {"item": it.name, "kind": it.kind, "family": it.family, "seed": it.seed,
                                          "n": int(normals.shape[0]),
                                          **score_samples(normals, it.normals, it.mask, fused).to_dict(),
                                          **seam_scores(normals, fused, it.mask, last)},
    )
    summary = {}
    for m in methods:
        rows = per_item[m.name]
        summary[m.name] = {}
        for subset in ("objects", "reliefs", "all"):
            sel = [r for r in rows if subset == "all" or r["kind"] == subset]
            if sel:
                summary[m.name][subset] = {s: aggregate([r[s] for r in sel]) for s in ("mean", "best", "fused")}
                summary[m.name][subset]["seam_index"] = _mean_of([r["seam_index"] for r in sel])
        summary[m.name]["seconds"] = seconds[m.name]
        summary[m.name]["seconds_per_image"] = seconds[m.name] / max(1, len(items))
    return {"summary": summary, "items": per_item}


def run_stimuli(items: list[StimulusItem], methods: list[Method], settings: RunSettings, progress: bool = True) -> dict:
    """Run and score every method on every stimulus item; returns the JSON-ready results."""
    per_item, seconds = _run_methods(
        items, methods, settings, progress,
        lambda it, normals, fused, last: {"item": it.name, "kind": it.kind,
                                          **score_stimulus(normals, it.mask, it.regions, it.layout, it.image).to_dict(),
                                          **seam_scores(normals, fused, it.mask, last)},
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
            s["layouts"]["seam_index"] = _mean_of([r["seam_index"] for r in lay])
            s["layouts"]["one_region"] = _mean_of([r["one_region"] for r in lay])
            for k in ("strict_consistent", "strict_true", "strict_inverted", "pair_share"):
                s["layouts"][k] = _mean_of([r.get(k) for r in lay])
        summary[m.name] = s
    return {"summary": summary, "items": per_item}


def _mean_of(values: list) -> float | None:
    """Mean of the values that are not None (None when there are none)."""
    v = [x for x in values if x is not None]
    return float(np.mean(v)) if v else None
