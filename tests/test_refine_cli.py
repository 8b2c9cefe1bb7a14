"""``mssfs sample --refine`` and ``mssfs analyze`` on refined output."""

import json

import numpy as np
import pytest
from test_sample_cli import env, run  # noqa: F401  (env is a fixture)

from mssfs.cli import main


def test_refine_flag_overrides_the_schedule_and_analyze_reports_seams(env, tmp_path, capsys):  # noqa: F811
    assert run(env, tmp_path / "plain", inputs=env["inputs"][:1]) == 0
    assert run(env, tmp_path / "refined", "--refine", "on", inputs=env["inputs"][:1]) == 0
    plain = json.loads((tmp_path / "plain" / "ball" / "meta.json").read_text())
    meta = json.loads((tmp_path / "refined" / "ball" / "meta.json").read_text())
    assert plain["refined"] is False and meta["refined"] is True and meta["timings"]["refine_s"] > 0
    assert not np.allclose(np.load(tmp_path / "plain" / "ball" / "normals.npy"),
                           np.load(tmp_path / "refined" / "ball" / "normals.npy"), atol=1e-2)
    assert np.load(tmp_path / "refined" / "ball" / "fused.npy").shape == (40, 56, 3)
    assert len(meta["quality"]["seam_index"]["samples"]) == 2
    capsys.readouterr()
    assert main(["analyze", str(tmp_path / "refined" / "ball"), "--no-plot"]) == 0
    assert "seam index" in capsys.readouterr().out
    report = json.loads((tmp_path / "refined" / "ball" / "report.json").read_text())
    assert report["seam_index"]["samples"] == pytest.approx(meta["quality"]["seam_index"]["samples"], abs=1e-3)
