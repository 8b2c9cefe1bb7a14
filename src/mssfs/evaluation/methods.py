"""The methods compared: sampler presets, ablations of a schedule and baselines.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..core.frame import normalize
from ..core.patches import PATCH
from ..sampler.schedules import Schedule, get_preset, scale_schedule

__all__ = ["ABLATIONS", "BASELINES", "DEFAULT_METHODS", "METHODS", "SAMPLER_METHODS", "Method", "ablation_schedule", "build_methods", "method_schedule", "scale_schedule"]


#: The sampler with a schedule: the chosen preset, the two presets, and the ablations.
ABLATIONS = ("no-guidance", "seams-only", "no-lighting", "single-scale", "no-refine")


SAMPLER_METHODS = ("ours", "paper", "fast") + ABLATIONS


#: Deterministic predictors (one prediction per image).
BASELINES = ("regression", "classical", "flat")


METHODS = SAMPLER_METHODS + BASELINES


#: What ``--methods`` defaults to (``paper`` is expensive, ``fast`` duplicates ``ours``).
DEFAULT_METHODS = ("ours",) + ABLATIONS + BASELINES


#: An export of regression weights here is used when ``--regression-model`` is not given.
DEFAULT_REGRESSION_DIR = Path(__file__).resolve().parent.parent / "model" / "weights" / "regression"


def ablation_schedule(base: Schedule, name: str) -> Schedule:
    """One ablation of ``base``:

    * ``no-guidance``: ``lr = 0`` in every stage (no seam or integrability guidance) and
      no lighting consistency -- patches are sampled independently;
    * ``seams-only``: integrability and shading weights 0 and no lighting consistency;
    * ``no-lighting``: no lighting consistency (neither patch nor region flips);
    * ``single-scale``: one stage at ``base.finest`` from pure noise, with the first
      stage's guidance (``lr``, ``guidance_start_t``, inner iterations), no lighting;
    * ``no-refine``: no refinement by the shading at the end (:mod:`mssfs.sampler.refine`).

    The ablations other than ``no-refine`` keep ``base``'s refinement.
    """
    off = dict(lighting=False, region_flips=False)
    if name == "no-refine":
        return replace(base, name=f"{base.name}/{name}", refine=False)
    if name == "no-guidance":
        stages = tuple(replace(s, lr=0.0, **off) for s in base.stages)
    elif name == "seams-only":
        stages = tuple(replace(s, integrability_weight=0.0, shading_weight=0.0, **off) for s in base.stages)
    elif name == "no-lighting":
        stages = tuple(replace(s, **off) for s in base.stages)
    elif name == "single-scale":
        from ..model.diffusion import NoiseSchedule

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
    :class:`~mssfs.sampler.schedules.Schedule`, e.g. from a user's schedule file; the ablations
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

    def run_many(self, images, masks, n: int, seeds, model=None, device="cpu", bf16: bool = False,
                 with_fused: bool = False) -> list:
        """:meth:`run` for several images; the sampler draws all their samples in one
        batched :func:`mssfs.sampler.api.sample_many` call (image ``k`` with ``seeds[k]``).

        With ``with_fused`` each entry is ``(normals, fused)``: the sampler's fused result
        (:attr:`mssfs.sampler.result.SampleResult.fused`, refined when the schedule
        refines), or a baseline's single prediction."""
        if self.schedule is not None:
            from ..sampler.api import sample_many

            results = sample_many(list(images), n=n, seed=list(seeds), schedule=self.schedule, model=model,
                                  masks=list(masks), device=device, bf16=bf16)
            return [(r.normals, r.fused) if with_fused else r.normals for r in results]
        outs = []
        for image, mask in zip(images, masks):
            m = np.asarray(mask, bool)
            pred = normalize(np.asarray(self.predict(np.asarray(image, np.float64), m), np.float32))
            pred = np.where(m[..., None], pred, 0.0)[None].astype(np.float32)
            outs.append((pred, pred[0]) if with_fused else pred)
        return outs


def _regression_predictor(model) -> Callable:
    from ..model.regression import predict_regression

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
                from ..model.weights import load_model

                path = model
                model = load_model(path, device=device)
                objective = (getattr(model, "info", None) or {}).get("objective")
                if objective != "regression":
                    raise ValueError(f"{path}: the export's objective is {objective!r}, not 'regression'")
            methods.append(Method(name, predict=_regression_predictor(model), description="one-shot regression U-Net"))
    return methods, skipped
