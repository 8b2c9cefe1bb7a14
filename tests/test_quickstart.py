"""examples/quickstart.py runs as a user would run it (quick mode: seconds)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from test_sampling import sphere_image

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_runs_end_to_end(tmp_path):
    np.save(tmp_path / "ball.npy", sphere_image(48, 48))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py"), str(tmp_path / "ball.npy"), "--quick",
         "--out", str(tmp_path / "out")],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    folder = tmp_path / "out" / "ball"
    assert "mode 0:" in run.stdout and f"outputs in {folder}" in run.stdout
    report = json.loads((folder / "report.json").read_text())
    assert report["n_samples"] == 2 and sum(m["count"] for m in report["modes"]) == 2
    assert "<html" in (folder / "report.html").read_text(encoding="utf-8").lower()
    for name in ("normals.npy", "sample_00.png", "mesh_00.ply", "mesh_01.ply", "quickstart.png", "meta.json"):
        assert (folder / name).stat().st_size > 0, name
