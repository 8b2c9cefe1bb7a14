"""Training for a budget of CPU time, in resumable chunks, and scoring of the exports.

Used by the CPU-time study (``experiments/cpu_time_study.py``) and the background
training job (``tools/keep_training.py``). Every ``mssfs`` command runs as a child
process (:func:`run_mssfs`), on one thread unless ``OMP_NUM_THREADS`` says otherwise, so
that its CPU time can be measured.

A run folder's CPU ledger (``cpu_minutes.json``: ``cpu`` minutes booked, ``trained``
minutes of ``log.csv`` they cover) books each finished chunk at the CPU time its process
took. Training time that no booked chunk covers (a chunk killed before it was booked)
counts at its wall time, an upper bound of its CPU time on one thread.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

from ..core.fileio import save_json
from .runlog import read_log


def run_mssfs(*args: str, log=None, run=subprocess.run) -> None:
    """``python -m mssfs ARGS`` on one thread unless told otherwise, output to ``log``;
    ``run`` (``subprocess.run``'s signature) starts and waits for it."""
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    cmd = [sys.executable, "-m", "mssfs", *args]
    print("+", " ".join(cmd), flush=True)
    run(cmd, check=True, env=env, stdout=log, stderr=subprocess.STDOUT if log else None)


def trained_minutes(run: Path) -> float:
    """Training wall time so far in minutes (``log.csv``'s last ``time``); 0 before the first row."""
    rows = read_log(run / "log.csv")
    return float(rows[-1]["time"]) / 60 if rows else 0.0


def _ledger(run: Path) -> dict:
    ledger = run / "cpu_minutes.json"
    return json.loads(ledger.read_text()) if ledger.exists() else {"cpu": 0.0, "trained": 0.0}


def cpu_minutes(run: Path) -> float:
    """CPU minutes booked in the run's ledger, plus the training wall time that no booked
    chunk covers (a chunk killed before booking)."""
    book = _ledger(run)
    return book["cpu"] + max(0.0, trained_minutes(run) - book["trained"])


def book(run: Path, cpu: float | None = None) -> None:
    """Book a finished chunk's ``cpu`` minutes, its training time then counting as booked;
    without ``cpu``, book the training time no chunk booked (a killed one) at its wall time."""
    run.mkdir(parents=True, exist_ok=True)
    booked = cpu_minutes(run) if cpu is None else _ledger(run)["cpu"] + cpu
    save_json(run / "cpu_minutes.json", {"cpu": booked, "trained": trained_minutes(run)})


def children_cpu_minutes() -> float:
    """CPU minutes (user and system) of this process's finished children so far."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (r.ru_utime + r.ru_stime) / 60


def checkpoints(run: Path) -> list[Path]:
    """The run's checkpoints, oldest first."""
    return sorted((run / "checkpoints").glob("step_*.safetensors"))


def train_chunk(options: list[str], run: Path, minutes: float, log, runner=None) -> None:
    """Train the run for about ``minutes`` more CPU minutes and book the CPU time the chunk
    took: resumed from its checkpoints, or started with the ``mssfs train`` ``options``
    when it has none. Wall time is at least CPU time on one thread, so ``--max-minutes``
    never lets a chunk run much past its CPU share. ``runner`` replaces :func:`run_mssfs`
    (same arguments; it must wait for the process, whose CPU time is then booked)."""
    runner = runner or run_mssfs
    book(run)  # first settle the training time of a chunk killed before it was booked
    before = children_cpu_minutes()
    try:
        if checkpoints(run):
            runner("train", "--resume", str(run), "--max-minutes", f"{minutes:.2f}", "-q", log=log)
        else:
            runner("train", *options, "--steps", "10000000", "--checkpoint-minutes", "5",
                   "--max-minutes", f"{minutes:.2f}", "--out", str(run), "--overwrite", "-q", log=log)
    finally:
        book(run, children_cpu_minutes() - before)


def score_export(export: Path, suites: dict[str, list[str]], dest: Path, log) -> dict:
    """``{suite: results.json}`` of ``mssfs evaluate`` with each suite's options on ``export``,
    written to ``{dest}_{suite}``; a suite whose results exist there is read, not run again."""
    out = {}
    for suite, args in suites.items():
        folder = Path(f"{dest}_{suite}")
        if not (folder / "results.json").exists():
            run_mssfs("evaluate", *args, "--model", str(export), "--out", str(folder), "-q", log=log)
        out[suite] = json.loads((folder / "results.json").read_text())
    return out


def fused_difference(reference: dict, candidate: dict, method_ref: str = "ours", method_cand: str = "ours") -> dict:
    """Paired fused error of two objects-suite ``results.json`` contents over their objects
    images (not the reliefs): the ``fused`` row of
    :func:`mssfs.evaluation.compare.compare_runs`, with ``diff`` = candidate - reference and
    its Wilcoxon ``p``."""
    from ..evaluation.compare import compare_runs

    def objects(results: dict, method: str) -> list[dict]:
        return [x for x in results["items"][method] if x["kind"] == "objects"]

    rows = compare_runs(objects(reference, method_ref), objects(candidate, method_cand))
    return next(r for r in rows if r["scoring"] == "fused")


def stimulus_item(results: dict, name: str, method: str = "ours") -> dict:
    """The entry of stimulus ``name`` (``circles``, ...) for ``method`` in a stimuli-suite
    ``results.json``'s contents (consistent share, readings, modes)."""
    return next(x for x in results["items"][method] if x["item"] == name)
