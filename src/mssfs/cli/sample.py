"""``mssfs sample``: draw normal-map samples for shading images."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from dataclasses import replace
from pathlib import Path

from . import UsageError
from .options import add_device, add_precision, add_quiet, add_resolution, precision_of

HELP = "draw N surface-normal samples for each input image (guided multiscale patch diffusion)"


EPILOG = """\
outputs (per input, in OUT/<stem>/):
  normals.npy   float32 (N, H, W, 3) unit normals, x right, y up, z to the viewer; 0 = background
  sample_XX.png each sample as a 16-bit normal-map PNG ((n + 1) / 2), the mask as alpha
  normals.tif   with --tiff: float32 (N, H, W, 3), as normals.npy
  samples.png   the input and all samples side by side
  stages.png    every V-cycle stage of every sample (rows: samples, columns: stages,
                headed by stage number and resolution; background grey)
  lights.npy    float32 (N, 3) the light each sample implies
  fused.npy     float32 (H, W, 3) the renormalised mean of the samples (refined like them)
  image.npy, mask.npy, meta.json (preset, seeds, model, timings, notes, seam index and
                one-region consistency of every sample)
  report.html   with --report: the page of 'mssfs report' (modes, relighting, height meshes)

examples:
  mssfs sample photo.png --out results
  mssfs sample stimulus:circles --samples 8 --seed 0 --out results
  mssfs sample photos/ --samples 16 --out results
  mssfs sample photo.png --preset paper --device cuda --out results
  torchrun --nproc-per-node 4 -m mssfs sample a.png b.png c.png d.png --out results
    (each process takes every WORLD_SIZE-th input, starting at its RANK)
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sample", help=HELP, description=HELP + ".", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image file (PNG, JPEG, TIFF, NPY), a folder of them "
                   "(every image in it, sorted by name) or stimulus:NAME (circles, rings, star, snake); any size and "
                   "aspect ratio")
    p.add_argument("--samples", "-n", type=int, default=8, metavar="N", help="samples per input (default 8)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seed; sample i is the same for every N > i (default 0)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder; results go to DIR/<stem>/")
    p.add_argument("--preset", default="fast", choices=("fast", "paper"),
                   help="schedule preset: fast = ours, a short V-cycle with shading guidance and region flips, the "
                        "preset that meets the quality bars with the bundled weights; paper = the publication's "
                        "V-cycle, ~11x the work (default fast)")
    p.add_argument("--schedule", metavar="FILE", help="YAML/JSON schedule file: name, num_steps, fuse_last and a list "
                   "of stages (resolution, lr, restart_t, lighting, ...); overrides --preset")
    p.add_argument("--refine", choices=("auto", "on", "off"), default="auto",
                   help="refine every sample and the fused result by the shading at the output size "
                   "(variational shape from shading under each sample's own light, pulled toward its reading): "
                   "auto = as the preset or schedule file says (default auto)")
    add_resolution(p, "input's size (the longer side)")
    add_device(p)
    add_precision(p)
    p.add_argument("--mask", action="append", metavar="FILE",
                   help="foreground mask (PNG: >=128 is foreground; NPY: non-zero); give once per input, in order. "
                   "Default: the image's alpha channel if it has transparent pixels (alpha >= 0.5 is foreground), "
                   "else automatic (black pixels connected to the border are background)")
    p.add_argument("--model", metavar="PATH", help="denoiser weights (default: the package's weights)")
    p.add_argument("--batch-samples", type=int, metavar="K",
                   help="at most K samples per batch (default: all N at once; lower it if memory is short)")
    p.add_argument("--batch-inputs", choices=("auto", "yes", "no"), default="auto",
                   help="sample all inputs in one batch (faster on a GPU) or one input after another, each "
                   "saved as soon as it is done (default auto: together on GPUs, one by one on CPUs)")
    p.add_argument("--chunk-patches", type=int, metavar="P",
                   help="run denoiser calls in slices of at most P patches (default: 128 on CPU, none on GPU)")
    p.add_argument("--workers", type=int, metavar="K",
                   help="on CPU, run K slices at once, one thread each (default: torch's thread count, i.e. "
                   "OMP_NUM_THREADS or the number of cores); any K > 1 gives the numbers of a one-thread run")
    p.add_argument("--cuda-graphs", action="store_true",
                   help="replay each denoiser call from a CUDA graph captured on its first call (CUDA only; "
                   "experimental: cuts kernel-launch overhead)")
    p.add_argument("--tiff", action="store_true", help="also write the normals as a float32 TIFF (normals.tif)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output folders")
    p.add_argument("--report", action="store_true",
                   help="also write report.html into each output folder (as 'mssfs report' does)")
    p.add_argument("--max-value", type=float, metavar="V",
                   help="integer images: the value that means full brightness (default: the type's maximum, e.g. "
                   "1023 for 10-bit data stored as 16-bit; a note says when the data looks like that)")
    p.add_argument("--check", action="store_true",
                   help="check the inputs, model, schedule, output folders and memory, then stop without sampling")
    add_quiet(p)
    p.set_defaults(func=run)


def _rank_world() -> tuple[int, int]:
    try:
        rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError as exc:
        raise UsageError(f"RANK / WORLD_SIZE must be integers ({exc})") from exc
    if world < 1 or not 0 <= rank < world:
        raise UsageError(f"RANK={rank} is not in [0, WORLD_SIZE={world})")
    return rank, world


def _local_rank() -> int | None:
    """Under torchrun, this process's GPU (LOCAL_RANK): what plain ``cuda`` and ``auto`` mean."""
    return int(os.environ["LOCAL_RANK"]) if "LOCAL_RANK" in os.environ else None


def _expand(inputs: list[str]) -> list[str]:
    """Folders replaced by their image files, sorted by name."""
    from ..sampler.input_types import image_files

    out = []
    for spec in inputs:
        out += [str(p) for p in image_files(spec)] if Path(spec).is_dir() else [spec]
    return out


def run(args) -> int:
    from ..core.images import ImageError
    from ..sampler.inputs import prepare_input
    from ..sampler.schedules import resolve_schedule

    if args.samples < 1:
        raise UsageError(f"--samples must be >= 1, got {args.samples}")
    if args.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {args.seed}")
    if args.chunk_patches is not None and args.chunk_patches < 1:
        raise UsageError(f"--chunk-patches must be >= 1, got {args.chunk_patches}")
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be >= 1, got {args.workers}")
    if args.cuda_graphs and args.chunk_patches:
        raise UsageError("--cuda-graphs runs whole denoiser calls; leave out --chunk-patches")
    if args.batch_samples is not None and args.batch_samples < 1:
        raise UsageError(f"--batch-samples must be >= 1, got {args.batch_samples}")
    if args.max_value is not None and not 0 < args.max_value < float("inf"):
        raise UsageError(f"--max-value must be a positive number, got {args.max_value}")
    try:
        args.inputs = _expand(args.inputs)
    except ImageError as exc:
        raise UsageError(str(exc)) from exc
    masks = args.mask or []
    if masks and len(masks) != len(args.inputs):
        raise UsageError(f"--mask given {len(masks)} time(s) for {len(args.inputs)} input(s); give one per input")
    rank, world = _rank_world()
    try:
        schedule = resolve_schedule(args.schedule, args.preset)
        if args.refine != "auto":
            schedule = replace(schedule, refine=args.refine == "on")
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    # Check every input and output before any work.
    items = []
    for k, spec in enumerate(args.inputs):
        try:
            items.append(prepare_input(spec, masks[k] if masks else None, args.max_value))
        except ImageError as exc:
            raise UsageError(str(exc)) from exc
    stems = [it.stem for it in items]
    dups = sorted({s for s in stems if stems.count(s) > 1})
    if dups:
        raise UsageError(f"several inputs share the output name(s) {', '.join(dups)}; rename or run them separately")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    mine = items[rank::world]  # under torchrun each process checks and writes only its share
    claims = _claim_outputs(out, mine, args.overwrite)
    try:
        return _run_claimed(args, mine, schedule, out)
    finally:
        for c in claims:
            c.release()


def _claim_outputs(out: Path, mine: list, overwrite: bool) -> list:
    """Claim every output folder of this process before any work (:func:`mssfs.core.outputs.claim`):
    refused at once when one exists (without ``overwrite``) or another run writes it."""
    from ..core.outputs import OutputError, claim

    claims = []
    try:
        for item in mine:
            claims.append(claim(out / item.stem, exist_ok=overwrite))
    except OutputError as exc:
        for c in claims:
            c.release()
        raise UsageError(str(exc)) from None
    for c in claims:
        for note in c.notes:
            print(f"note: {note}", file=sys.stderr)
    return claims


def _run_claimed(args, mine: list, schedule, out: Path) -> int:
    """The rest of :func:`run`, with every output folder claimed: device, model, memory, sampling."""
    from ..core.device import resolve_device
    from ..sampler import api

    try:
        device = resolve_device(args.device, _local_rank())
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    if args.cuda_graphs and device.type != "cuda":
        raise UsageError(f"--cuda-graphs needs a CUDA device (--device cuda), got {device}")
    bf16 = precision_of(args, device, "mssfs sample")
    if not mine:
        return 0
    try:
        model, info = api.resolve_model(args.model, device)
    except (OSError, ValueError, RuntimeError) as exc:
        raise UsageError(f"could not load the denoiser{' ' + args.model if args.model else ''}: {exc}") from exc
    if info.get("notice"):  # printed here, so the Python API's warning is silenced below
        print(f"note: model {info['path']}: {info['notice']}", file=sys.stderr)
    for item in mine:
        for note in item.notes:
            print(f"note: {note}", file=sys.stderr)
    together = args.batch_inputs == "yes" or (args.batch_inputs == "auto" and device.type != "cpu")
    groups = [mine] if together else [[item] for item in mine]
    plans = [api.plan_memory(group, args.samples, schedule, args.resolution, args.batch_samples, device, model)
             for group in groups]  # memory, before any work
    for note in {note: 0 for plan in plans for note in plan.notes}:
        print(f"note: {note}", file=sys.stderr)
    if args.check:
        calls, forwards = schedule.total_cost()
        print(f"check passed: {len(mine)} input(s), schedule {schedule.name} ({calls:,} denoiser calls and "
              f"{forwards:,} patch forwards per sample at its own resolutions), about {max(p.held for p in plans) / 1e6:,.0f} "
              "MB of results at a time; nothing sampled")
        return 0
    for group, plan in zip(groups, plans):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", api.WeightsNotice)
            results = api.sample_many(
                group, n=args.samples, seed=args.seed, device=device, model=model, bf16=bf16,
                schedule=schedule, resolution=args.resolution, batch_samples=plan.batch,
                progress=not args.quiet, chunk_patches=args.chunk_patches or "auto", workers=args.workers or "auto",
                cuda_graphs=args.cuda_graphs,
            )
        for item, result in zip(group, results):
            result.model_info = info
            path = result.save(out / item.stem, overwrite=args.overwrite, tiff=args.tiff)
            t = result.timings
            print(f"{item.name}: {result.n} sample(s) in {t['total_s']:.1f} s ({t['per_sample_s']:.1f} s/sample"
                  f"{f', batched with {len(group) - 1} other input(s)' if len(group) > 1 else ''}) -> {path}")
            if args.report:
                from ..analysis.html_report import write_folder_report

                print(f"{item.name}: report -> {write_folder_report(path)}")
    return 0
