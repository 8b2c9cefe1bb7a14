"""Validation loss of weight exports on one training run's validation patches.

Question: is a continued or retrained export better than the one it started from on the
same validation patches, and in which noise range does it gain or lose?
Answer: docs/training.md#choosing-weights (validation loss does not choose weights),
docs/decisions/cpu-continuations.md and docs/decisions/release-weights-min-snr.md; the
plot docs/release_val_loss.png.

A run's ``log.csv`` only scores that run's own EMA weights; to compare an export with
the one it was continued from (or two exports from different runs), score both on the
same held-out patches: those of the run given by ``--run`` (its ``config.json``: seed,
data source, ``val_patches``; fixed noise and evenly spread ``t``), with the loss of
docs/method.md#diffusion (unweighted), in fp32 on the CPU::

    python experiments/validation_loss.py --run runs/cpu2 src/mssfs/model/weights/default /tmp/candidate

``--by-t K`` adds the loss in K equal ranges of ``t`` and the min-SNR-weighted loss
(``--gamma``): a run trained with ``--min-snr-gamma`` gives up noise-prediction accuracy at
small ``t`` (where an error in epsilon barely moves x0), which the unweighted number hides.

``--plot FILE`` draws the losses against the patch samples each export has seen in all,
following ``training.init`` from export to export (an export started from another one
listed adds its count; otherwise from its ``init.patches_seen``)::

    python experiments/validation_loss.py --run RUN --by-t 5 --plot docs/release_val_loss.png OLD MID NEW
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import torch
import torch.nn.functional as F

import mssfs
from mssfs.model.diffusion import NoiseSchedule
from mssfs.train.batches import TrainingImagesSource, validation_batch
from mssfs.train.config import TrainConfig
from mssfs.train.losses import LOSSES, min_snr_weights


@torch.no_grad()
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="a run directory (its config.json defines the validation patches)")
    p.add_argument("exports", nargs="+", help="export folders (mssfs export) to score")
    p.add_argument("--by-t", type=int, default=0, metavar="K", help="also the loss in K equal ranges of t (diffusion only)")
    p.add_argument("--gamma", type=float, default=5.0, help="gamma of the min-SNR-weighted column (with --by-t)")
    p.add_argument("--plot", metavar="FILE", help="plot the losses against the patch samples seen in all")
    args = p.parse_args(argv)
    cfg = TrainConfig.from_dict(json.loads((Path(args.run) / "config.json").read_text()))
    if args.by_t and cfg.objective != "diffusion":
        p.error("--by-t needs a diffusion run")
    if not 0 <= args.by_t <= cfg.val_patches:
        p.error(f"--by-t must be between 0 and the run's {cfg.val_patches} validation patches")
    if args.plot and not Path(args.plot).resolve().parent.is_dir():
        p.error(f"--plot {args.plot}: its folder does not exist")
    batch = validation_batch(TrainingImagesSource(cfg.data, cfg.image_size, cfg.mix), cfg)
    scheduler = NoiseSchedule(cfg.timesteps)
    print(f"validation patches of {args.run}: {cfg.val_patches}, objective {cfg.objective}\n")
    edges = [round(i * cfg.timesteps / args.by_t) for i in range(args.by_t + 1)] if args.by_t else []
    bins = [f"t {a}-{b - 1}" for a, b in itertools.pairwise(edges)]
    extra = [f"min-SNR ({args.gamma:g})"] + bins if bins else []
    print("| export | validation loss | " + "".join(f"{h} | " for h in extra) + "\n|---|" + "---:|" * (1 + len(extra)))
    points = []  # per export: [unweighted] or [unweighted, min-SNR weighted, one per t range...]
    for path in args.exports:
        model = mssfs.load_model(path).float().eval()
        if bins:  # one forward pass; the mean of the per-patch losses is the unweighted loss
            x_t = scheduler.add_noise(batch.normals, batch.noise, batch.t)
            per = F.smooth_l1_loss(model(x_t, batch.t, batch.shading), batch.noise, reduction="none").mean(dim=(1, 2, 3))
            values = [float(per.mean()), float((min_snr_weights(scheduler, batch.t, args.gamma) * per).mean())]
            values += [float(per[(batch.t >= a) & (batch.t < b)].mean()) for a, b in itertools.pairwise(edges)]
        else:
            values = [float(LOSSES[cfg.objective](model, batch, scheduler))]
        points.append(values)
        cells = [f"{v:.6f}" for v in values[:2]] + [f"{v:.5f}" for v in values[2:]]
        print(f"| {path} | " + " | ".join(cells) + " |")
    if args.plot:
        plot(args.exports, points, seen_in_all(args.exports), args.gamma, args.plot)
    return 0


def seen_in_all(exports: list[str]) -> list[float]:
    """Patch samples behind each export, its ``training.init`` chain followed through the list."""
    info = [json.loads((Path(e) / "config.json").read_text()) for e in exports]
    by_sha = {c["weights"]["sha256"]: i for i, c in enumerate(info)}

    def total(i: int, depth: int = 0) -> float:
        tr = info[i].get("training", {})
        init = tr.get("init") or {}
        parent = by_sha.get(init.get("sha256"))
        before = total(parent, depth + 1) if parent is not None and depth < len(info) else init.get("patches_seen", 0)
        return tr.get("patches_seen", 0) + before

    return [total(i) for i in range(len(info))]


def plot(names: list[str], points: list[list[float]], seen: list[float], gamma: float, out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = sorted(range(len(seen)), key=seen.__getitem__)
    x = [seen[i] / 1e6 for i in order]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(x, [points[i][0] for i in order], "o-", label="validation loss (unweighted)")
    if all(len(pt) > 1 for pt in points):
        ax.plot(x, [points[i][1] for i in order], "s--", label=f"min-SNR weighted (gamma {gamma:g})")
    for i in order:
        ax.annotate(Path(names[i]).name, (seen[i] / 1e6, points[i][0]), textcoords="offset points", xytext=(3, 4), fontsize=7)
    ax.set_xlabel("patch samples seen in all (millions)")
    ax.set_ylabel("Huber loss on the validation patches")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    print(f"wrote {out}")


if __name__ == "__main__":
    raise SystemExit(main())
