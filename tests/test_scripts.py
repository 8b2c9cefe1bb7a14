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


def test_clustering_diagnostics_reads_a_sample_folder(tmp_path, capsys):
    import json

    import numpy as np

    from mssfs.analysis import generated_bump_dent_layout

    spec = importlib.util.spec_from_file_location("clustering_diagnostics", ROOT / "scripts" / "clustering_diagnostics.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    lay = generated_bump_dent_layout(7, 64)
    inverted = lay.normals * np.array([-1.0, -1.0, 1.0])
    folder = tmp_path / "s"
    folder.mkdir()
    np.save(folder / "normals.npy", np.stack([lay.normals, lay.normals, inverted]).astype(np.float32))
    np.save(folder / "image.npy", lay.image.astype(np.float32))
    (folder / "meta.json").write_text(json.dumps({"stem": "s", "n_samples": 3}))
    k = len(lay.layout)
    assert mod.main([str(folder), "--regions", str(k), "--sizes", "32", "--against", str(folder)]) == 0
    out = capsys.readouterr().out
    inside = re.search(r"in the \d+ regions: ([0-9.]+)-([0-9.]+) of the total; they cover ([0-9.]+)", out)
    assert float(inside.group(1)) > float(inside.group(3))  # a true layout's curvature sits in its features
    assert "same region reading: 0.00 (1 pairs)" in out  # the two identical samples
    assert "modes at the default cut: 2" in out
    assert "max 0.00 degrees" in out
    assert mod.main([str(tmp_path / "missing")]) == 2
