"""``mssfs export CKPT --out DIR``: inference weights from a training checkpoint."""

from __future__ import annotations

from . import UsageError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export",
        help="write inference weights (EMA) + config.json + MODEL_CARD.md from a training checkpoint",
        description="Export the EMA weights of a training checkpoint as model.safetensors with config.json "
        "and MODEL_CARD.md, loadable with `mssfs.load_model(DIR)` and `mssfs sample --model DIR`.",
    )
    p.add_argument("checkpoint", metavar="CKPT", help="checkpoint file, or a run directory (its latest checkpoint)")
    p.add_argument("--out", metavar="DIR", required=True, help="output folder (created; files in it are replaced)")
    p.add_argument("--note", default="", help="extra text for the model card's Notes section")
    p.add_argument("--notice", default="",
                   help="a warning stored in config.json and printed by `mssfs sample` whenever these weights are "
                        "used (e.g. that they are interim)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..model.checkpoint import CheckpointError
    from ..model.weights import export_checkpoint, load_model

    try:
        out = export_checkpoint(args.checkpoint, args.out, note=args.note, notice=args.notice)
        model = load_model(out)  # read back what was written
    except CheckpointError as exc:
        raise UsageError(str(exc)) from exc
    tr = model.info["training"]
    print(f"exported {args.checkpoint} -> {out} (step {tr['steps']:,}, {model.info['parameters']:,} parameters, "
          f"val loss {tr['val_loss']})")
    return 0
