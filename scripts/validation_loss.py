"""Validation loss of weight exports on one training run's validation patches.

A run's ``log.csv`` only scores that run's own EMA weights; to compare an export with
the one it was continued from (or two exports from different runs), score both on the
same held-out patches: those of the run given by ``--run`` (its ``config.json``: seed,
data source, ``val_patches``; fixed noise and evenly spread ``t``), with the loss of
DESIGN.md §5 (unweighted), in fp32 on the CPU::

    python scripts/validation_loss.py --run runs/cpu2 src/mssfs/weights/default /tmp/candidate
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import mssfs
from mssfs.diffusion import NoiseSchedule
from mssfs.train import LOSSES, TrainConfig, TrainingImagesSource, validation_batch


@torch.no_grad()
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="a run directory (its config.json defines the validation patches)")
    p.add_argument("exports", nargs="+", help="export folders (mssfs export) to score")
    args = p.parse_args(argv)
    cfg = TrainConfig.from_dict(json.loads((Path(args.run) / "config.json").read_text()))
    batch = validation_batch(TrainingImagesSource(cfg.data, cfg.image_size), cfg)
    scheduler = NoiseSchedule(cfg.timesteps).diffusers_ddpm()
    print(f"validation patches of {args.run}: {cfg.val_patches}, objective {cfg.objective}\n")
    print("| export | validation loss |\n|---|---:|")
    for path in args.exports:
        model = mssfs.load_model(path).float().eval()
        print(f"| {path} | {float(LOSSES[cfg.objective](model, batch, scheduler)):.6f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
