"""Sampling schedules: the stages of the multiscale V-cycle, as data (docs/method.md#guided-ddim to #v-cycle).

A :class:`Schedule` is a list of :class:`Stage` plus a few global settings.  Timestep
thresholds are given as timesteps (not grid indices) so a schedule with a coarser DDIM
grid keeps its meaning.  On the published 50-step grid ``g`` (``g[0] = 299``):
``g[8] = 250``, ``g[11] = 232``, ``g[15] = 207``, ``g[40] = 55``.

Presets: ``paper`` (the published V-cycle) and ``fast`` (ours, 1/11 of the denoiser
calls and 1/19 of the patch forwards, with shading guidance and region flips; see
docs/sampling.md).  A schedule file is YAML or JSON::

    name: my-schedule
    num_steps: 50          # DDIM grid size (optional)
    fuse_last: 3           # stages averaged in gradient space at the end (optional)
    final_region_flips: false  # region flips on the fused result (ours, optional)
    refine: false          # refine every sample and the fused result by the shading (ours, optional)
    refine_max_resolution: 256  # ... at the output size, at most this many pixels a side
    refine_anchor: 0.01    # ... pulled this strongly toward the sample's reading
    refine_undecided: 0.0  # ... regions with |mean radial tilt| below this take the light's reading
    refine_contour_light: false  # ... under the light of the occluding contour, where there is one
    refine_contour_integrability: 0.5  # ... and then with this weight of the integrable projection
    refine_contour_fuse: 0.0  # ... and fuses the samples weighted by their shading residual (0: plain mean)
    stages:
      - {resolution: 160, lr: 20, restart_t: 299, guidance_start_t: 250, lighting: true}
      - {resolution: 128, lr: 15, lighting: true}
      - {resolution: 160, lr: 20, region_flips: false}

Every :class:`Stage` field may be given per stage; omitted ones take their defaults.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from ..core.patches import PATCH
from ..model.diffusion import NoiseSchedule
from .refine import Refinement
from .schedule_checks import LIMITS, MAX_PATCH_FORWARDS, ScheduleError, check_fields

__all__ = [
    "PRESETS",
    "Schedule",
    "ScheduleError",
    "Stage",
    "StageCost",
    "StageRun",
    "get_preset",
    "load_schedule",
    "resolve_schedule",
    "scale_schedule",
    "working_schedule",
]


@dataclass(frozen=True)
class Stage:
    """One guided-DDIM pass at one resolution.

    Attributes:
        resolution: side of the square working image (multiple of 16).
        lr: guidance step size.
        restart_t: the stage starts at this timestep: ``>= T - 1`` means pure noise at
            ``T - 1``; otherwise the previous stage's normals are resized to
            ``resolution`` and noised forward to ``restart_t`` (published 232).  The
            stage then runs ``restart_t`` followed by the grid steps below it.
        guidance_start_t: guidance on the steps with ``t <= guidance_start_t`` (published:
            250 = ``g[8]`` for the first stage; later stages guide from their first step).
        lighting: after the stage, run lighting consistency (§8), noise the result to
            ``lighting_restart_t`` and run the stage again from there.
        lighting_restart_t: restart timestep of that second run (published 232).
        region_flips: after every run of the stage, flip whole shading regions so that
            one light explains the image (ours, default off;
            :func:`mssfs.sampler.lighting.consistent_regions`); with ``lighting`` it runs before
            the patch flips.
        inner_iters_high: guidance iterations per step while ``t >= high_iters_min_t``.
        inner_iters_low: guidance iterations per step below it.
        high_iters_min_t: published ``g[15] = 207``.
        late_t: once ``t <= late_t`` (published ``g[40] = 55``) the integrability loss is
            added and ``lr`` is divided by ``lr_decay`` at every inner iteration.
        integrability_weight: weight of the integrability loss (0.5).
        seam_weight: weight of the seam loss (1: the mean over all seam pixels of both
            directions, as the publication describes it).  The publication's code adds the
            two directions' means instead, which is ``seam_weight = 2``
            (docs/method.md#guided-ddim).
        shading_weight: weight of the shading loss (ours, default 0 = off;
            :func:`mssfs.sampler.guidance.shading_loss`): how badly one light explains the image.
        shading_min_lateral: floor on the image-plane share of the light that the shading
            loss fits (ours, default 0 = off; :func:`mssfs.sampler.guidance.lateral_floor`).
        shading_tilt_from_image: set the tilt of the light that the shading loss fits to the
            image's own shading axis, up to sign (ours, default off;
            :func:`mssfs.sampler.guidance.image_tilt_axis`, :func:`~mssfs.sampler.guidance.lock_tilt`).
        Both act only on images without an occluding contour (the sampler decides per image).
        shading_contour_light: on an image with a lit occluding contour, the light that the
            shading loss fits keeps the direction read off the contour and fits only its
            strength (ours, default off; :func:`mssfs.core.sfs.contour_light`).
        lr_decay: 1.5.
        grad_clip: the gradient is clamped to ``[-grad_clip, grad_clip]`` (5).
    """

    resolution: int
    lr: float
    restart_t: int = 232
    guidance_start_t: int = 299
    lighting: bool = False
    lighting_restart_t: int = 232
    region_flips: bool = False
    inner_iters_high: int = 10
    inner_iters_low: int = 3
    high_iters_min_t: int = 207
    late_t: int = 55
    integrability_weight: float = 0.5
    seam_weight: float = 1.0
    shading_weight: float = 0.0
    shading_min_lateral: float = 0.0
    shading_tilt_from_image: bool = False
    shading_contour_light: bool = False
    lr_decay: float = 1.5
    grad_clip: float = 5.0

    def __post_init__(self):
        check_fields(self)
        if self.resolution <= 0 or self.resolution % PATCH:
            raise ScheduleError(f"stage resolution must be a positive multiple of {PATCH}, got {self.resolution}")
        if self.resolution < 2 * PATCH:
            raise ScheduleError(f"stage resolution {self.resolution} is below {2 * PATCH}: a single patch has no seams")
        if self.lr < 0 or self.lr_decay <= 0 or self.grad_clip <= 0:
            raise ScheduleError("lr must be >= 0 and lr_decay, grad_clip > 0")
        if min(self.seam_weight, self.integrability_weight, self.shading_weight) < 0:
            raise ScheduleError("seam_weight, integrability_weight and shading_weight must be >= 0")
        if not 0.0 <= self.shading_min_lateral < 1.0:
            raise ScheduleError(f"shading_min_lateral must lie in [0, 1), got {self.shading_min_lateral}")
        if self.inner_iters_high < 0 or self.inner_iters_low < 0:
            raise ScheduleError("inner iteration counts must be >= 0")
        if self.restart_t < 0 or self.lighting_restart_t < 0:
            raise ScheduleError("restart timesteps must be >= 0")

    def inner_iters(self, t: int) -> int:
        """Guidance iterations at timestep ``t``."""
        return self.inner_iters_high if t >= self.high_iters_min_t else self.inner_iters_low


@dataclass(frozen=True)
class StageRun:
    """One run of a stage: its timesteps (descending) and where guidance starts."""

    index: int
    stage: Stage
    timesteps: list[int]
    guidance_start_t: int
    rerun: bool


@dataclass(frozen=True)
class StageCost:
    """Denoiser work of one stage run: ``calls`` forwards of ``patches`` patches each."""

    resolution: int
    calls: int
    guided_calls: int
    patch_forwards: int


@dataclass(frozen=True)
class Schedule:
    """A V-cycle: stages run in order, the last ``fuse_last`` fused into the result.

    ``min_pixels`` and ``flip_threshold`` are the patch flips' settings (docs/method.md#lighting-consistency);
    ``region_threshold`` (relative drop of the one-light residual a region flip must
    bring) and ``flat_gradient`` (image gradient, per image width, below which a pixel
    is featureless and separates regions) are the region flips' (ours, used by stages
    with ``region_flips`` and, with ``final_region_flips``, once more on the fused
    result; :func:`mssfs.sampler.lighting.consistent_regions`).  ``refine`` ends the
    schedule with the refinement of every sample and of the fused result by the shading
    (ours, :mod:`mssfs.sampler.refine`), at the output size but at most
    ``refine_max_resolution`` pixels a side, with the anchor weight ``refine_anchor``;
    a shading region the sample reads neither as a bump nor as a dent (mean radial tilt
    below ``refine_undecided``) is solved from the shading alone under the sample's light
    (:func:`mssfs.sampler.refine.undecided_regions`; 0 = off); with
    ``refine_contour_light`` an image with an occluding contour is refined under the light
    read off that contour, which also decides its reading, with the integrable projection at
    weight ``refine_contour_integrability``, and with ``refine_contour_fuse`` > 0 the fused
    result there weights each refined sample by how well it renders the image under that
    light (:func:`mssfs.sampler.refine.fusion_weights`; 0 = the plain mean).
    """

    name: str
    stages: tuple[Stage, ...]
    num_steps: int = 50
    fuse_last: int = 3
    min_pixels: int = 10
    flip_threshold: float = 0.1
    region_threshold: float = 0.0
    flat_gradient: float = 1.0
    final_region_flips: bool = False
    refine: bool = False
    refine_max_resolution: int = 256
    refine_anchor: float = 0.01
    refine_undecided: float = 0.0
    refine_contour_light: bool = False
    refine_contour_integrability: float = 0.5
    refine_contour_fuse: float = 0.0
    description: str = ""

    def __post_init__(self):
        if not self.stages:
            raise ScheduleError("a schedule needs at least one stage")
        object.__setattr__(self, "stages", tuple(self.stages))
        if not all(isinstance(s, Stage) for s in self.stages):
            raise ScheduleError("every stage must be a Stage")
        if len(self.stages) > LIMITS["stages"]:
            raise ScheduleError(f"{len(self.stages)} stages is above the limit {LIMITS['stages']}")
        check_fields(self)
        if not 1 <= self.fuse_last <= len(self.stages):
            raise ScheduleError(f"fuse_last must lie in [1, {len(self.stages)}], got {self.fuse_last}")
        if self.num_steps < 2:
            raise ScheduleError(f"num_steps must be >= 2, got {self.num_steps}")
        if not 0 <= self.region_threshold < 1:
            raise ScheduleError(f"region_threshold must lie in [0, 1), got {self.region_threshold}")
        if self.flat_gradient <= 0:
            raise ScheduleError(f"flat_gradient must be > 0, got {self.flat_gradient}")
        self.refinement(checked=True)
        forwards = self.total_cost()[1]
        if forwards > MAX_PATCH_FORWARDS:
            raise ScheduleError(f"the schedule needs {forwards:,} patch forwards per sample, above the limit of "
                                f"{MAX_PATCH_FORWARDS:,} (the paper preset needs about 140,000): is a resolution, "
                                "num_steps or iteration count mistyped?")

    def refinement(self, checked: bool = False) -> Refinement | None:
        """The refinement settings, or None when the schedule does not refine (``checked``:
        build them even then, to validate the ``refine_*`` fields)."""
        if not (self.refine or checked):
            return None
        settings = Refinement(max_resolution=self.refine_max_resolution, anchor=self.refine_anchor,
                              undecided_tilt=self.refine_undecided, contour_light=self.refine_contour_light,
                              contour_integrability=self.refine_contour_integrability,
                              contour_fuse=self.refine_contour_fuse)
        return settings if self.refine else None

    @property
    def guides_by_contour_light(self) -> bool:
        """Whether a stage's shading guidance keeps the light read off an occluding contour
        (``shading_contour_light`` with a non-zero ``shading_weight``)."""
        return any(st.shading_contour_light and st.shading_weight > 0 for st in self.stages)

    @property
    def finest(self) -> int:
        """Resolution of the fused output: the largest of the fused stages."""
        return max(s.resolution for s in self.stages[-self.fuse_last :])

    def timesteps(self, restart_t: int, noise: NoiseSchedule | None = None) -> list[int]:
        """Timesteps a run starting at ``restart_t`` visits (descending)."""
        noise = noise or NoiseSchedule()
        grid = noise.ddim_grid(self.num_steps)
        if restart_t >= noise.T - 1:
            return grid
        return [restart_t] + [t for t in grid if t < restart_t]

    def runs(self, noise: NoiseSchedule | None = None) -> list[StageRun]:
        """Every stage run in order (a stage with ``lighting`` runs twice)."""
        out = []
        for i, s in enumerate(self.stages):
            out.append(StageRun(i, s, self.timesteps(s.restart_t, noise), s.guidance_start_t, rerun=False))
            if s.lighting:
                # The re-run restarts lower and is guided from its first step.
                start = s.lighting_restart_t
                out.append(StageRun(i, s, self.timesteps(start, noise), max(s.guidance_start_t, start), rerun=True))
        return out

    def cost(self, noise: NoiseSchedule | None = None) -> list[StageCost]:
        """Denoiser calls and patch forwards of every stage run (per sample)."""
        out = []
        for run in self.runs(noise):
            s = run.stage
            guided = sum(s.inner_iters(t) for t in run.timesteps if t <= run.guidance_start_t)
            calls = len(run.timesteps) + guided
            out.append(StageCost(s.resolution, calls, guided, calls * (s.resolution // PATCH) ** 2))
        return out

    def total_cost(self, noise: NoiseSchedule | None = None) -> tuple[int, int]:
        """``(denoiser calls, patch forwards)`` for one sample."""
        c = self.cost(noise)
        return sum(x.calls for x in c), sum(x.patch_forwards for x in c)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["stages"] = [asdict(s) for s in self.stages]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Schedule:
        if not isinstance(d, dict) or "stages" not in d:
            raise ScheduleError("a schedule must be a mapping with a 'stages' list")
        if not isinstance(d["stages"], (list, tuple)):
            raise ScheduleError(f"'stages' must be a list of mappings, got {type(d['stages']).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ScheduleError(f"unknown schedule key(s): {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
        stage_keys = {f.name for f in fields(Stage)}
        stages = []
        for k, s in enumerate(d["stages"]):
            if not isinstance(s, dict):
                raise ScheduleError(f"stage {k}: expected a mapping, got {type(s).__name__}")
            bad = set(s) - stage_keys
            if bad:
                raise ScheduleError(f"stage {k}: unknown key(s) {', '.join(sorted(bad))}; known: {', '.join(sorted(stage_keys))}")
            try:
                stages.append(Stage(**s))
            except (TypeError, ValueError) as exc:
                raise ScheduleError(f"stage {k}: {exc}") from exc
        try:  # only "stages" is required; the name defaults to the file's stem (load_schedule)
            return cls(**{"name": "", **d, "stages": tuple(stages)})
        except TypeError as exc:
            raise ScheduleError(str(exc)) from exc


def _paper() -> Schedule:
    res = (160, 128, 64, 80, 96, 112, 128, 144, 160)
    lrs = (20, 15, 10, 10, 10, 15, 15, 20, 20)
    stages = [Stage(res[0], lrs[0], restart_t=299, guidance_start_t=250, lighting=True)]
    stages += [Stage(r, lr, lighting=(i == 1)) for i, (r, lr) in enumerate(zip(res, lrs)) if i > 0]
    return Schedule("paper", tuple(stages), description="published V-cycle (docs/method.md#v-cycle)")


def _fast() -> Schedule:
    # Ours: a short V-cycle (96 -> 64 -> 96 -> 128) on a 20-step DDIM grid with 4 / 1
    # guidance iterations per step: 194 denoiser calls and 7,288 patch forwards per
    # sample (1/11 and 1/19 of ``paper``), plus shading guidance at weight 10 in every
    # stage (docs/decisions/shading-guidance.md), its light kept at least half lateral on
    # images without an occluding contour (docs/decisions/lateral-light-floor.md), region
    # flips after every stage run
    # and on the fused result (docs/decisions/region-flips.md), and the reading-keeping
    # refinement of every sample and of the fused result by the shading
    # (docs/decisions/refinement.md), in which a disc-shaped region the sample reads
    # neither way is solved from the shading (docs/decisions/undecided-regions.md); on
    # images with an occluding contour the refinement takes the contour's light, without
    # the integrable projection (docs/decisions/contour-light.md), and fuses the refined
    # samples weighted by how well they render the image (docs/decisions/shading-weighted-fusion.md);
    # on the V-cycle's way down (its first two stages) the shading guidance keeps the light
    # read off an object's contour (docs/decisions/contour-light.md, fifth question).
    kw = dict(inner_iters_high=4, inner_iters_low=1, shading_weight=10.0, shading_min_lateral=0.5, region_flips=True)
    stages = (
        Stage(96, 15, restart_t=299, guidance_start_t=250, lighting=True, shading_contour_light=True, **kw),
        Stage(64, 10, shading_contour_light=True, **kw),
        Stage(96, 15, **kw),
        Stage(128, 20, **kw),
    )
    return Schedule(
        "fast", stages, num_steps=20, fuse_last=2, final_region_flips=True, refine=True, refine_undecided=0.1,
        refine_contour_light=True, refine_contour_integrability=0.0, refine_contour_fuse=0.2,
        description="ours: short V-cycle, 20-step grid, shading guidance 10 (light floor 0.5 without a contour), "
                    "region flips, refinement "
                    "(undecided discs solved from the shading; objects under their contour's light, "
                    "without the integrable projection, fused by their shading residuals); objects "
                    "guided under their contour's light on the way down",
    )


PRESETS = {"paper": _paper, "fast": _fast}


def get_preset(name: str) -> Schedule:
    """The named preset schedule (``paper`` or ``fast``)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name]()


def load_schedule(path) -> Schedule:
    """Read a schedule from a YAML (``.yaml``/``.yml``) or JSON file; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ScheduleError(f"{path}: no such schedule file")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ScheduleError(f"{path}: could not be read ({exc})") from exc
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:
        raise ScheduleError(f"{path}: not valid {path.suffix.lstrip('.') or 'JSON'} ({exc})") from exc
    try:
        sched = Schedule.from_dict(data)
    except (ValueError, TypeError) as exc:
        raise ScheduleError(f"{path}: {exc}") from exc
    return sched if sched.name else replace(sched, name=path.stem)


def resolve_schedule(schedule=None, preset: str = "fast") -> Schedule:
    """A :class:`Schedule` from an instance, a dict, a file path, or else the preset name."""
    if schedule is None:
        return get_preset(preset)
    if isinstance(schedule, Schedule):
        return schedule
    if isinstance(schedule, dict):
        return Schedule.from_dict(schedule)
    return load_schedule(schedule)


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


def working_schedule(schedule: Schedule, side: int, resolution: int | str = "auto") -> Schedule:
    """The schedule an input whose padded square has ``side`` pixels is sampled with.

    Args:
        resolution: ``"auto"`` -- the schedule's own, scaled down (:func:`scale_schedule`)
            when its finest resolution exceeds ``side`` (rounded down to a multiple of 16,
            at least 32): sampling a 48-pixel image at 128 pixels adds work, not detail;
            ``"preset"`` -- the schedule as it is; an int ``R`` -- scaled so that its
            finest resolution is ``R`` (a multiple of 16, at least 32).
    """
    if resolution == "preset":
        return schedule
    if resolution == "auto":
        cap = max(2 * PATCH, side // PATCH * PATCH)
        return scale_schedule(schedule, cap) if schedule.finest > cap else schedule
    if isinstance(resolution, bool) or not isinstance(resolution, int):
        raise ValueError(f"resolution must be 'auto', 'preset' or an integer, got {resolution!r}")
    return scale_schedule(schedule, resolution)
