"""``mssfs train``: train the patch denoiser (or the regression baseline).

Every field of :class:`mssfs.train.config.TrainConfig` (and of the model's
:class:`mssfs.model.unet.UNetConfig`) is an option; options given on the command line override
the ``--config`` file, which overrides the defaults.  Run the same command under
``torchrun --nproc-per-node K`` for data-parallel training.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing

from . import UsageError
from .options import add_quiet

#: Model fields not offered on the command line (fixed by the sampler's contract; the
#: model's ``timesteps`` is the run's ``--timesteps``).
_HIDDEN_MODEL_FIELDS = {"shading_channels", "normal_channels", "patch", "timesteps"}

#: Model fields that are not the network's shape: an ``--init`` run given only these still
#: takes the export's shape.
_TARGET_FIELDS = {"prediction", "timesteps"}


def _parse_bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _tuple_of(kind):
    def parse(text: str):
        try:
            return tuple(kind(v) for v in text.replace(" ", "").split(",") if v)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None

    return parse


def _field_type(cls, f: dataclasses.Field):
    hint = typing.get_type_hints(cls)[f.name]
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple:
        return _tuple_of(args[0]), "A,B,..."
    if hint is bool:
        return _parse_bool, "BOOL"
    if type(None) in args:  # Optional[str]
        return str, "VALUE"
    return hint, None


def _add_dataclass_options(group, cls, helps: dict, skip=()):
    defaults = cls()
    for f in dataclasses.fields(cls):
        if f.name in skip or f.name == "model":
            continue
        kind, metavar = _field_type(cls, f)
        default = getattr(defaults, f.name)
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        group.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f"opt_{f.name}",
            type=kind,
            metavar=metavar or f.name.upper(),
            default=argparse.SUPPRESS,
            help=helps.get(f.name, "") + ("" if default is None else f" (default: {shown})"),
        )


def register(subparsers) -> None:
    from ..model import unet
    from ..train import config

    p = subparsers.add_parser(
        "train",
        help="train the patch diffusion model (or the regression baseline)",
        description="Train the patch denoiser (or the regression baseline). Options given here override "
        "--config, which overrides the defaults. Run the same command under `torchrun --nproc-per-node K` "
        "for data-parallel training. 'mssfs train --print-config' prints every setting (YAML, usable as "
        "--config).",
    )
    p.add_argument("--config", metavar="FILE", help="YAML/JSON config with any of the options below as keys (the "
                   "model's under 'model:'); options given here override it")
    p.add_argument("--print-config", action="store_true",
                   help="print the configuration these options give (defaults, --config, options) as YAML and exit")
    p.add_argument("--out", metavar="DIR", help="run directory (default runs/train; with --resume: the resumed run)")
    p.add_argument("--resume", metavar="PATH", help="continue from a run directory (its latest checkpoint) or a checkpoint file")
    p.add_argument("--overwrite", action="store_true", help="start over when --out already holds a run")
    add_quiet(p)
    p.add_argument("--no-progress", dest="quiet", action="store_true", help=argparse.SUPPRESS)
    _add_dataclass_options(p.add_argument_group("training options"), config.TrainConfig, config.FIELD_HELP)
    _add_dataclass_options(p.add_argument_group("model options"), unet.UNetConfig, unet.FIELD_HELP,
                           skip=_HIDDEN_MODEL_FIELDS)
    p.set_defaults(func=run)


def collect_overrides(args) -> dict:
    """Options given on the command line, as a nested config dict."""
    from ..model.unet import UNetConfig

    model_fields = {f.name for f in dataclasses.fields(UNetConfig)}
    out: dict = {}
    for key, value in vars(args).items():
        if not key.startswith("opt_"):
            continue
        name = key[4:]
        if name in model_fields and name not in _HIDDEN_MODEL_FIELDS:  # --timesteps is the run's
            out.setdefault("model", {})[name] = value
        else:
            out[name] = value
    return out


def run(args) -> int:
    from ..model.checkpoint import CheckpointError
    from ..model.weights import read_export_config
    from ..train.config import TrainConfig, TrainingError, load_config_file
    from ..train.trainer import train

    overrides = collect_overrides(args)
    try:
        if args.resume:
            if args.config:
                raise UsageError("--resume takes the config from the checkpoint; drop --config")
            if "model" in overrides:
                raise UsageError("model options cannot change when resuming")
            if args.print_config:
                raise UsageError("--print-config shows a new run's configuration; drop --resume")
            train(None, args.out, resume=args.resume, overrides=overrides, progress=not args.quiet)
            return 0
        d = load_config_file(args.config) if args.config else {}
        model = dict(d.get("model") or {})
        model.update(overrides.pop("model", {}))
        d.update(overrides)
        if not set(model) - _TARGET_FIELDS and d.get("init"):  # continuing an export needs no shape options
            model = {**read_export_config(d["init"])["model"], **model}
        d["model"] = model
        cfg = TrainConfig.from_dict(d)
        if args.print_config:
            import json

            import yaml

            print(yaml.safe_dump(json.loads(json.dumps(cfg.to_dict())), sort_keys=False), end="")
            return 0
        train(cfg, args.out or "runs/train", overwrite=args.overwrite, progress=not args.quiet)
    except (TrainingError, CheckpointError, ValueError) as exc:
        raise UsageError(str(exc)) from exc
    return 0
