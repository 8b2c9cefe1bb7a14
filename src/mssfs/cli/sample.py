"""``mssfs sample``: draw normal-map samples for shading images."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import UsageError

HELP = "draw N surface-normal samples for each input image (guided multiscale patch diffusion)"


EPILOG = """\
outputs (per input, in OUT/<stem>/):
  normals.npy   float32 (N, H, W, 3) unit normals, x right, y up, z to the viewer; 0 = background
  sample_XX.png each sample as a 16-bit normal-map PNG ((n + 1) / 2)
  samples.png   the input and all samples side by side
  stages.png    every V-cycle stage of every sample (rows: samples, columns: stages)
  lights.npy    float32 (N, 3) the light each sample implies
  image.npy, mask.npy, meta.json (preset, seeds, model, timings, notes)

examples:
  mssfs sample stimulus:circles --samples 8 --seed 0 --out results
  mssfs sample photo.png --samples 16 --preset fast --device cuda --bf16 --out results
  torchrun --nproc-per-node 4 -m mssfs sample a.png b.png c.png d.png --out results
    (each process takes every WORLD_SIZE-th input, starting at its RANK)
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sample", help=HELP, description=HELP + ".", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image file (PNG, JPEG, TIFF, NPY) or stimulus:NAME "
                   "(circles, rings, star, snake); any size and aspect ratio")
    p.add_argument("--samples", "-n", type=int, default=8, metavar="N", help="samples per input (default 8)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seed; sample i is the same for every N > i (default 0)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder; results go to DIR/<stem>/")
    p.add_argument("--preset", default="paper", choices=("paper", "fast"),
                   help="schedule preset: paper = the publication's V-cycle, fast = ours: ~1/11 of its "
                        "work, with shading guidance and region flips; it meets the release bars with the bundled weights, "
                        "paper does not yet (docs/method.md, docs/results.md) (default paper)")
    p.add_argument("--schedule", metavar="FILE", help="YAML/JSON schedule file (overrides --preset; see docs/sampling.md)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--bf16", action="store_true", help="run the denoiser under bfloat16 autocast")
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
                   "experimental: cuts kernel-launch overhead; see docs/sampling.md)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output folders")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _rank_world() -> tuple[int, int]:
    try:
        rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError as exc:
        raise UsageError(f"RANK / WORLD_SIZE must be integers ({exc})") from exc
    if world < 1 or not 0 <= rank < world:
        raise UsageError(f"RANK={rank} is not in [0, WORLD_SIZE={world})")
    return rank, world


def _device(name: str) -> str:
    """Under torchrun, plain ``cuda`` means this process's GPU (LOCAL_RANK)."""
    if name == "cuda" and "LOCAL_RANK" in os.environ:
        return f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return name


def run(args) -> int:
    from ..core.device import resolve_device
    from ..core.images import ImageError
    from ..sampler import api
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
    masks = args.mask or []
    if masks and len(masks) != len(args.inputs):
        raise UsageError(f"--mask given {len(masks)} time(s) for {len(args.inputs)} input(s); give one per input")
    rank, world = _rank_world()
    try:
        schedule = resolve_schedule(args.schedule, args.preset)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    # Check every input and output before any work.
    items = []
    for k, spec in enumerate(args.inputs):
        try:
            items.append(prepare_input(spec, masks[k] if masks else None))
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
    existing = [str(out / it.stem) for it in mine if (out / it.stem).exists()]
    if existing and not args.overwrite:
        raise UsageError(f"output already exists: {', '.join(existing)} (use --overwrite to replace)")
    try:
        device = resolve_device(_device(args.device))
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    if args.cuda_graphs and device.type != "cuda":
        raise UsageError(f"--cuda-graphs needs a CUDA device (--device cuda), got {device}")
    if not mine:
        return 0
    try:
        model, info = api.resolve_model(args.model, device)
    except (OSError, ValueError, RuntimeError) as exc:
        raise UsageError(f"could not load the denoiser{' ' + args.model if args.model else ''}: {exc}") from exc
    if info.get("notice"):
        print(f"note: model {info['path']}: {info['notice']}", file=sys.stderr)
    for item in mine:
        for note in item.notes:
            print(f"note: {note}", file=sys.stderr)
    together = args.batch_inputs == "yes" or (args.batch_inputs == "auto" and device.type != "cpu")
    for group in ([mine] if together else [[item] for item in mine]):
        results = api.sample_many(
            group, n=args.samples, seed=args.seed, device=device, model=model, bf16=args.bf16,
            schedule=schedule, batch_samples=args.batch_samples, progress=not args.quiet,
            chunk_patches=args.chunk_patches or "auto", workers=args.workers or "auto",
            cuda_graphs=args.cuda_graphs,
        )
        for item, result in zip(group, results):
            result.model_info = info
            path = result.save(out / item.stem, overwrite=args.overwrite)
            t = result.timings
            print(f"{item.name}: {result.n} sample(s) in {t['total_s']:.1f} s ({t['per_sample_s']:.1f} s/sample"
                  f"{f', batched with {len(group) - 1} other input(s)' if len(group) > 1 else ''}) -> {path}")
    return 0
