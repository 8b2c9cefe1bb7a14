"""scripts/validation_loss.py scores an export exactly as its run's own validation did."""

import importlib.util
import re
from pathlib import Path

import pytest

from mssfs.model import UNetConfig
from mssfs.train import TrainConfig, train
from mssfs.weights import export_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def test_validation_loss_script_matches_the_runs_own_validation(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("validation_loss", ROOT / "scripts" / "validation_loss.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    cfg = TrainConfig(model=UNetConfig(base_width=8, mults=(1, 2), res_blocks=1, attn_heads=1, attn_head_dim=8,
                                       time_sin_dim=8, time_dim=16),
                      steps=4, patches_per_step=4, image_size=32, val_patches=8, val_every=4, log_every=2,
                      checkpoint_every=4, warmup_steps=1, precision="fp32", keep_checkpoints=0, device="cpu")
    tr = train(cfg, tmp_path / "run", progress=False)  # procedural data, as the script re-creates it
    export_checkpoint(tmp_path / "run", tmp_path / "exp")
    assert mod.main(["--run", str(tmp_path / "run"), str(tmp_path / "exp")]) == 0
    score = float(re.search(r"\| \S*exp \| ([0-9.]+) \|", capsys.readouterr().out).group(1))
    assert score == pytest.approx(tr.last_val, rel=1e-4)
