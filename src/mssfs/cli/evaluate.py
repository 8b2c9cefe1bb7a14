"""``mssfs evaluate``: score the sampler, its ablations and baselines (docs/evaluation.md)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from . import UsageError
from .checks import add_evaluate_checks, run_compare, run_diagnose
from .options import add_device, add_precision, precision_of, resolution_word

HELP = "score the sampler, its ablations and baselines on held-out shapes or the stimuli"


DESCRIPTION = """\
Run methods on an evaluation suite and write OUT/results.md (Markdown tables, also
printed) and OUT/results.json (every number, per image and summarised).

suites:
  objects  held-out procedural shapes (seeds >= 2**30, never used in training) with known
           normals: --n-objects objects on black and --n-reliefs reliefs, SIZE x SIZE,
           each under its own fixed light and albedo. The N samples of an image are scored
           as the mean over samples, the best of N (oracle: lowest mean angular error) and
           fused (the renormalised mean normal). Reported: mean of per-image mean angular
           error, mean of per-image median error, share of pixels under 11.25/22.5/30 deg.
  stimuli  the bundled stimuli (resized to SIZE) and --n-layouts generated bump/dent
           layouts: share of samples whose region readings fit one light (consistent),
           the true reading and its full inversion, number of interpretations (modes)
           and per-pixel angular spread. Circles: four disc regions segmented from the
           image, 'true' = three bumps and a dent (light from above). Rings, star, snake:
           modes and spread only.

methods (--methods, comma-separated; default: ours and the ablations, regression when
weights exist, classical, flat):
  ours          the sampler with --preset (or      paper, fast   those presets
                --schedule FILE)
  no-guidance   lr 0, no lighting consistency      seams-only    seam guidance only (no integrability,
  no-lighting   no lighting consistency                          shading guidance or lighting)
                                                   single-scale  one stage from noise, stage-1 guidance
  no-refine     no refinement by the shading at the end
  regression    regression U-Net (--regression-model PATH, default: the package's regression weights)
  classical     Brooks-Horn variational shape from shading (light estimated)
  flat          (0, 0, 1) everywhere

--ablation-figure INPUT draws one row per ablation (N samples each) for INPUT into the
PNG file --out instead of running a suite.

checks (no --out; they print a table):
  --compare A.json B.json  pair two objects-suite runs image by image (--methods M, or MA,MB
                           for A's and B's method; default ours; --kind, --items)
  --diagnose               patch-level numbers of the denoiser --model: does it use its
                           shading input? (--regression-model, --n-objects, --seed)

examples:
  OMP_NUM_THREADS=1 mssfs evaluate --suite objects --samples 4 --out eval/objects
  mssfs evaluate --suite stimuli --methods ours,classical,flat --n-layouts 5 --out eval/stimuli
  mssfs evaluate --ablation-figure stimulus:circles --samples 4 --out ablation.png
  mssfs evaluate --compare eval_before/objects/results.json eval/objects/results.json
  mssfs evaluate --compare reg/results.json eval/objects/results.json --methods regression,ours --items 0:20
  mssfs evaluate --diagnose --model my-weights --regression-model my-regression
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate", help=HELP, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--suite", help="objects or stimuli")
    what.add_argument("--ablation-figure", metavar="INPUT",
                      help="draw the ablation figure for INPUT (image file or stimulus:NAME) into --out (a .png)")
    add_evaluate_checks(p, what)
    p.add_argument("--samples", "-n", type=int, default=4, metavar="N", help="samples per image for sampler methods (default 4)")
    p.add_argument("--methods", metavar="M1,M2", help="comma-separated methods (default: see above)")
    p.add_argument("--n-objects", type=int, default=None, metavar="K",
                   help="objects suite: held-out objects (default 50); --diagnose: images (default 12)")
    p.add_argument("--n-reliefs", type=int, default=20, metavar="K", help="objects suite: held-out reliefs (default 20)")
    p.add_argument("--first", type=int, default=0, metavar="K",
                   help="objects suite: start at held-out item K (shape seeds 2**30 + K + i; default 0, the release "
                   "split; e.g. 5000 for a tuning split that never overlaps it)")
    p.add_argument("--n-layouts", type=int, default=10, metavar="K", help="stimuli suite: generated bump/dent layouts (default 10)")
    p.add_argument("--stimuli", default="all", metavar="NAMES",
                   help="stimuli suite: comma-separated bundled stimuli to include, 'all' (default) or 'none' "
                        "(layouts only; image i still gets seed S + i, so add 4 to --seed to reuse the "
                        "full suite's layout seeds)")
    p.add_argument("--size", type=int, metavar="S",
                   help="image size, a multiple of 16 (default 64 for objects, 128 for stimuli)")
    p.add_argument("--preset", default="fast", choices=("paper", "fast"), help="schedule of 'ours' and the ablations (default fast)")
    p.add_argument("--schedule", metavar="FILE",
                   help="a schedule file (YAML/JSON, as for 'mssfs sample --schedule') for 'ours' and the ablations "
                   "instead of --preset")
    p.add_argument("--resolution", type=resolution_word, default="auto", metavar="auto|preset|R",
                   help="finest sampling resolution: auto = the preset's, scaled down to the image size when "
                   "larger (default); preset = as the preset has it; R = scale the preset's stages to R")
    add_device(p)
    add_precision(p)
    p.add_argument("--model", metavar="PATH", help="denoiser weights (default: the package's weights)")
    p.add_argument("--regression-model", metavar="PATH", help="regression weights for the 'regression' method")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="image i is sampled with seed S + i (default 0)")
    p.add_argument("--batch-images", type=int, default=0, metavar="K",
                   help="sampler methods: sample K images per batched call (default 0: as many as keep a call "
                   "under 1,024 patches on CPU, 16,384 on a GPU; results do not depend on it beyond float rounding)")
    p.add_argument("--out", metavar="DIR",
                   help="output folder (results.md, results.json); with --ablation-figure the PNG file")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _check(args) -> None:
    from ..core.patches import PATCH

    if args.n_objects is None:
        args.n_objects = 50
    if args.suite is not None and args.suite not in ("objects", "stimuli"):
        raise UsageError(f"unknown suite {args.suite!r}; choose objects or stimuli")
    if args.samples < 1:
        raise UsageError(f"--samples must be >= 1, got {args.samples}")
    if args.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {args.seed}")
    if args.batch_images < 0:
        raise UsageError(f"--batch-images must be >= 0, got {args.batch_images}")
    for name in ("n_objects", "n_reliefs", "n_layouts", "first"):
        if getattr(args, name) < 0:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    if args.suite == "objects" and args.n_objects + args.n_reliefs == 0:
        raise UsageError("--n-objects and --n-reliefs are both 0: nothing to evaluate")
    args.stimulus_names = _stimulus_names(args) if args.suite == "stimuli" else None
    if args.stimulus_names == [] and args.n_layouts == 0:
        raise UsageError("--stimuli none and --n-layouts 0: nothing to evaluate")
    if args.size is not None and (args.size < 2 * PATCH or args.size % PATCH):
        raise UsageError(f"--size must be a multiple of {PATCH} and at least {2 * PATCH}, got {args.size}")
    r = args.resolution
    if isinstance(r, int) and (r < 2 * PATCH or r % PATCH):
        raise UsageError(f"--resolution must be a multiple of {PATCH} and at least {2 * PATCH}, got {r}")
    args.base_schedule = args.preset
    if args.schedule:
        from ..sampler.schedules import load_schedule

        try:
            args.base_schedule = load_schedule(args.schedule)
        except ValueError as exc:
            raise UsageError(f"--schedule: {exc}") from exc


def _stimulus_names(args) -> list[str]:
    """The bundled stimuli ``--stimuli`` asks for, in the order given (repeats dropped)."""
    from ..data import stimuli

    text = args.stimuli.strip().lower()
    if text == "all":
        return list(stimuli.NAMES)
    if text == "none":
        return []
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in stimuli.NAMES]
    if unknown or not names:
        raise UsageError(f"unknown stimulus name(s) in --stimuli {args.stimuli!r}: {', '.join(unknown) or '(empty)'}; "
                         f"choose from {', '.join(stimuli.NAMES)}, 'all' or 'none'")
    return list(dict.fromkeys(names))


def _methods(args) -> list[str]:
    from ..evaluation.figures import FIGURE_METHODS
    from ..evaluation.methods import DEFAULT_METHODS, METHODS, SAMPLER_METHODS

    if args.methods is None:
        return list(FIGURE_METHODS if args.ablation_figure else DEFAULT_METHODS)
    names = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not names:
        raise UsageError("--methods is empty")
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        raise UsageError(f"unknown method(s) {', '.join(unknown)}; choose from: {', '.join(METHODS)}")
    if args.ablation_figure:
        bad = [m for m in names if m not in SAMPLER_METHODS]
        if bad:
            raise UsageError(f"the ablation figure shows sampler methods only; not: {', '.join(bad)}")
    return names


def _command(args, methods: list[str], size: int) -> str:
    parts = ["mssfs evaluate"]
    parts.append(f"--ablation-figure {args.ablation_figure}" if args.ablation_figure else f"--suite {args.suite}")
    parts.append(f"--samples {args.samples} --methods {','.join(methods)}")
    if args.suite == "objects":
        parts.append(f"--n-objects {args.n_objects} --n-reliefs {args.n_reliefs}")
        if args.first:
            parts.append(f"--first {args.first}")
    elif args.suite == "stimuli":
        parts.append(f"--n-layouts {args.n_layouts}")
        if args.stimuli.strip().lower() != "all":
            parts.append(f"--stimuli {','.join(args.stimulus_names) or 'none'}")
    if not args.ablation_figure:
        parts.append(f"--size {size}")
    parts.append(f"--schedule {args.schedule}" if args.schedule else f"--preset {args.preset}")
    parts.append(f"--resolution {args.resolution} --seed {args.seed}")
    for flag, value in (("--model", args.model), ("--regression-model", args.regression_model), ("--device", args.device)):
        if value and not (flag == "--device" and value == "auto"):
            parts.append(f"{flag} {value}")
    parts.append(f"--precision {args.precision}")  # resolved: the command repeats on any machine
    return " ".join(parts) + f" --out {args.out}"


def run(args) -> int:
    from .. import evaluation as ev
    from ..core.device import resolve_device
    from ..sampler import api
    from ..sampler.inputs import prepare_input

    if args.compare:
        return run_compare(args)
    if args.diagnose:
        return run_diagnose(args)
    if args.kind or args.items != ":":
        raise UsageError("--kind and --items go with --compare")
    if args.out is None:
        raise UsageError("--out is required with --suite and --ablation-figure")
    _check(args)
    names = _methods(args)
    out = Path(args.out)
    if args.ablation_figure:
        if out.suffix.lower() != ".png":
            raise UsageError(f"--out must be a .png file with --ablation-figure, got {out}")
        if out.is_dir():
            raise UsageError(f"--out {out} is a folder; give the PNG file to write")
    elif out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    size = args.size or (64 if args.suite == "objects" else 128)
    # Check the inputs before loading any model.
    item = None
    if args.ablation_figure:
        from ..core.images import ImageError

        try:
            item = prepare_input(args.ablation_figure)
        except ImageError as exc:
            raise UsageError(str(exc)) from exc
        size = max(item.image.shape)
    finest = args.resolution if isinstance(args.resolution, int) else None
    max_finest = size if args.resolution == "auto" else None
    try:
        device = resolve_device(args.device)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    args.bf16 = precision_of(args, device, "mssfs evaluate")
    from ..model.checkpoint import CheckpointError

    try:
        methods, skipped = ev.build_methods(names, args.base_schedule, finest, max_finest, args.regression_model, device)
    except (OSError, ValueError, CheckpointError) as exc:
        raise UsageError(f"could not set up the methods: {exc}") from exc
    model, info = None, None
    if any(m.stochastic for m in methods):
        try:
            model, info = api.resolve_model(args.model, device)
        except (OSError, ValueError, RuntimeError) as exc:
            raise UsageError(f"could not load the denoiser{' ' + args.model if args.model else ''}: {exc}") from exc
    settings = ev.RunSettings(args.samples, args.seed, str(device), args.bf16, model, args.batch_images)
    command = _command(args, names, size)
    if args.ablation_figure:
        return _figure(args, item, methods, settings, out, command)

    t0 = time.perf_counter()
    if args.suite == "objects":
        items = ev.heldout_items(args.n_objects, args.n_reliefs, size, args.first)
        results = ev.run_objects(items, methods, settings, progress=not args.quiet)
        tables = []
        for subset, title in (("objects", f"Objects ({args.n_objects}, occluding contours)"), ("reliefs", f"Reliefs ({args.n_reliefs})")):
            if any(subset in results["summary"][m.name] for m in methods):
                tables.append(f"### {title}\n\n" + ev.objects_table(results, methods, skipped, subset))
    else:
        try:
            items = ev.stimulus_items(size, args.n_layouts, args.stimulus_names)
        except ValueError as exc:
            raise UsageError(f"could not prepare the stimuli at size {size}: {exc}") from exc
        results = ev.run_stimuli(items, methods, settings, progress=not args.quiet)
        tables = [f"### Stimuli ({size} x {size}) and generated layouts\n\n" + ev.stimuli_table(results, methods, skipped)]
        if any(m.stochastic for m in methods):
            tables.append("### Strict scoring (a disc or part left flat or undecided counts against a sample)\n\n"
                          + ev.strict_table(results, methods))
    wall = time.perf_counter() - t0
    schedules = {m.name: m.schedule.to_dict() if m.schedule else None for m in methods}
    header = (
        f"## mssfs evaluate: {args.suite}\n\n"
        f"Command: `{command}`\n\n"
        f"N = {args.samples} samples per image for sampler methods; denoiser: {info['path'] if info else 'not used'}; "
        f"device {device}; total wall time {wall:.0f} s.\n\n"
        + "".join(f"- {m.name}: {m.description}\n" for m in methods)
    )
    markdown = header + "\n" + "\n\n".join(tables) + "\n"
    data = {
        "suite": args.suite,
        "command": command,
        "settings": {"samples": args.samples, "seed": args.seed, "size": size, "preset": args.preset,
                     "schedule_file": args.schedule,
                     "resolution": args.resolution, "device": str(device), "bf16": args.bf16,
                     "n_objects": args.n_objects, "n_reliefs": args.n_reliefs, "n_layouts": args.n_layouts,
                     "first": args.first,
                     "stimuli": args.stimulus_names},
        "model": info,
        "methods": {m.name: {"description": m.description, "stochastic": m.stochastic, "schedule": schedules[m.name]}
                    for m in methods},
        "skipped": skipped,
        "wall_s": wall,
        **results,
    }
    md, js = ev.write_results(out, markdown, data)
    print(markdown)
    print(f"wrote {md} and {js}", file=sys.stderr)
    return 0


def _figure(args, item, methods, settings, out: Path, command: str) -> int:
    from tqdm.auto import tqdm

    from .. import evaluation as ev

    for note in item.notes:
        print(f"note: {note}", file=sys.stderr)
    rows, seconds = {}, {}
    for m in tqdm(methods, disable=args.quiet, unit="method"):
        t0 = time.perf_counter()
        rows[m.name] = m.run(item.image, item.mask, args.samples, args.seed, settings.model, settings.device, settings.bf16)
        seconds[m.name] = time.perf_counter() - t0
    out.parent.mkdir(parents=True, exist_ok=True)
    ev.ablation_figure(out, item.image, rows, title=f"{item.stem}: one row per method, same seeds in every column",
                       column_titles=[f"sample {i}" for i in range(args.samples)])
    print(f"command: {command}")
    print(json.dumps({"schedules": {m.name: m.schedule.name for m in methods},
                      "seconds": {k: round(v, 1) for k, v in seconds.items()}}, indent=1))
    print(f"wrote {out}", file=sys.stderr)
    return 0
