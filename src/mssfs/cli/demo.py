"""``mssfs demo``: a local web page to sample, browse and download (needs ``mssfs[demo]``)."""

from __future__ import annotations

import argparse
import sys

from . import UsageError
from .options import add_device, add_precision, precision_of

HELP = "start a local web page: upload or draw an image, sample, see the modes and relight them"

DESCRIPTION = """\
Start a web page on this machine (Gradio; install it with: pip install "mssfs[demo]").
Upload an image, draw one or pick a bundled stimulus; choose the number of samples, the
preset and the seed; press Sample. A progress bar follows the V-cycle; the result is the
page of 'mssfs report' (samples grouped by mode, a light to drag, height meshes) and a
zip of the output folder to download. Runs the package's weights (or --model) on CUDA
when there is one, else on the CPU (--device). Stop it with Ctrl+C.

examples:
  mssfs demo
  mssfs demo --port 8000 --precision auto
  mssfs demo --host 0.0.0.0 --device cuda    (reachable from other machines: mind who can reach it)
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help=HELP, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    add_device(p)
    add_precision(p)
    p.add_argument("--model", metavar="PATH", help="denoiser weights (default: the package's weights)")
    p.add_argument("--schedule", metavar="FILE", help="YAML/JSON schedule file used for every request instead of "
                   "the chosen preset (the format of 'mssfs sample --schedule')")
    p.add_argument("--workdir", metavar="DIR", help="keep every run's output folder under DIR (default: a "
                   "temporary folder removed when the server stops)")
    p.set_defaults(func=run)


def run(args) -> int:
    if not 0 < args.port < 65536:
        raise UsageError(f"--port must be between 1 and 65535, got {args.port}")
    try:
        from ..app.demo import require_gradio, serve

        require_gradio()
    except ImportError as exc:
        raise UsageError(str(exc)) from None
    from ..core.device import resolve_device
    from ..sampler import api
    from ..sampler.schedules import resolve_schedule

    try:
        schedule = resolve_schedule(args.schedule, "fast") if args.schedule else None
        device = resolve_device(args.device)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    try:
        model, info = api.resolve_model(args.model, device)
    except (OSError, ValueError, RuntimeError) as exc:
        raise UsageError(f"could not load the denoiser{' ' + args.model if args.model else ''}: {exc}") from exc
    if info.get("notice"):
        print(f"note: model {info['path']}: {info['notice']}", file=sys.stderr)
    bf16 = precision_of(args, device, "mssfs demo")
    print(f"mssfs demo: open http://{args.host}:{args.port}/ (Ctrl+C stops it)", file=sys.stderr)
    serve(host=args.host, port=args.port, workdir=args.workdir, model=model, model_info=info, schedule=schedule,
          device=str(device), bf16=bf16)
    return 0
