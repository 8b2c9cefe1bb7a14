"""Equal CPU time: which training recipe improves the network most per CPU hour?

Question (issue: a network trained well enough on the CPU hours we have): with the same
training wall time on one CPU thread, which of network size, prediction target, batch and
learning rate, and training data moves the evaluation suites most?
Answer: docs/decisions/cpu-time-study.md (rule, milestones, outcome), raw numbers under
docs/results/cpu_time_study/.

Every variant is a list of ``mssfs train`` options (``VARIANTS``). The budget is CPU
time of the training process on one thread (``OMP_NUM_THREADS=1``; data rendering,
validation and checkpoints included), so that a variant is not favoured by running while
the machine is quieter. The variants train in turn, a chunk of ``--chunk`` CPU minutes
each; the one with the least CPU time goes next. Each chunk's CPU time is added to the
run's ledger (``cpu_minutes.json``); a chunk killed before it could be booked counts the
training wall time it added to ``log.csv``, an upper bound. At each milestone
(``--milestones``, CPU minutes) every variant's latest checkpoint is exported and judged
by the tuning suites (``SUITE_ARGS``: objects and reliefs from held-out item 5000, never
the release split; the four stimuli). Everything is resumable: a killed run continues
from its last checkpoint (``mssfs train --resume``), and a milestone whose result file
exists is not evaluated again::

    OMP_NUM_THREADS=1 nohup python experiments/cpu_time_study.py --root runs/cpu_study \\
        --variants base,gpu-recipe,x0,v,quarter,figures --milestones 60,180 &
    python experiments/cpu_time_study.py --root runs/cpu_study --summary   # table so far

The variants are compared at equal CPU time, not at equal patch samples; ``summary``
reports both.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

from mssfs.train.runlog import read_log

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = str(ROOT / "src" / "mssfs" / "model" / "weights" / "default")
# the CPU continuation recipe of the shipped weights used so far (docs/training.md#choosing-weights)
COMMON = ["--config", str(ROOT / "configs" / "cpu.yaml"), "--linear-attn-from", "1"]
BASE = COMMON + ["--init", SHIPPED, "--min-snr-gamma", "5", "--lr", "1e-4", "--patches-per-step", "256",
                 "--warmup-steps", "50"]
# student networks start from the shipped weights' knowledge by distillation
DISTIL = COMMON + ["--teacher", SHIPPED, "--distill-weight", "0.5", "--lr", "4e-4", "--patches-per-step", "256",
                   "--warmup-steps", "200"]
_DEFAULT_MIX = ("blob=0.096,quadrics=0.112,torus=0.048,capsules=0.08,revolution=0.072,extrusion=0.072,"
                "bumps=0.088,ridges=0.08,craters=0.072,noise=0.08")

VARIANTS: dict[str, list[str]] = {
    "base": BASE,
    "gpu-recipe": COMMON + ["--init", SHIPPED, "--min-snr-gamma", "5", "--lr", "4e-4", "--patches-per-step", "8192",
                            "--accumulate", "32", "--warmup-steps", "20"],
    "x0": BASE + ["--prediction", "x0"],
    "v": BASE + ["--prediction", "v"],
    "half": DISTIL + ["--base-width", "12"],
    "quarter": DISTIL + ["--base-width", "8"],
    "eighth": DISTIL + ["--base-width", "8", "--res-blocks", "1"],
    "figures": BASE + ["--mix", _DEFAULT_MIX + ",figures=0.2"],
}

#: the sampler every export is scored with: ``fast`` without the refinement by the shading,
#: which is what ``fast`` was when the rule was written (the refinement became part of it
#: later); every score in the study, the shipped weights' included, comes from this sampler
METHOD = "no-refine"

#: the tuning suites: the settings of the shipped weights' reference run (experiments/learning_curve.py)
#: on a split of held-out items that the release checks never use
SUITE_ARGS = {
    "objects": ["--suite", "objects", "--first", "5000", "--n-objects", "20", "--n-reliefs", "10", "--size", "64", "--samples", "4",
                "--seed", "0", "--precision", "bf16", "--preset", "fast", "--methods", METHOD],
    "stimuli": ["--suite", "stimuli", "--samples", "8", "--size", "128", "--seed", "0", "--precision", "bf16",
                "--preset", "fast", "--methods", METHOD, "--n-layouts", "0"],
}


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


def _book(run: Path, cpu: float | None = None) -> None:
    """Book a finished chunk's ``cpu`` minutes, its training time then counting as booked;
    without ``cpu``, book the training time no chunk booked (a killed one) at its wall time."""
    run.mkdir(parents=True, exist_ok=True)
    booked = cpu_minutes(run) if cpu is None else _ledger(run)["cpu"] + cpu
    write_json(run / "cpu_minutes.json", {"cpu": booked, "trained": trained_minutes(run)})


def _children_cpu_minutes() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (r.ru_utime + r.ru_stime) / 60


def checkpoints(run: Path) -> list[Path]:
    return sorted((run / "checkpoints").glob("step_*.safetensors"))


def train_chunk(options: list[str], run: Path, minutes: float, log, runner=None) -> None:
    """Train the run for about ``minutes`` more CPU minutes and book the CPU time the chunk
    took: resumed from its checkpoints, or started with the ``mssfs train`` ``options``
    when it has none. Wall time is at least CPU time on one thread, so ``--max-minutes``
    never lets a chunk run much past its CPU share. ``runner`` replaces :func:`run_mssfs`
    (same arguments; it must wait for the process, whose CPU time is then booked)."""
    runner = runner or run_mssfs
    _book(run)  # first settle the training time of a chunk killed before it was booked
    before = _children_cpu_minutes()
    try:
        if checkpoints(run):
            runner("train", "--resume", str(run), "--max-minutes", f"{minutes:.2f}", "-q", log=log)
        else:
            runner("train", *options, "--steps", "10000000", "--checkpoint-minutes", "5",
                   "--max-minutes", f"{minutes:.2f}", "--out", str(run), "--overwrite", "-q", log=log)
    finally:
        _book(run, _children_cpu_minutes() - before)


def evaluate(name: str, run: Path, milestone: int, out: Path, log) -> None:
    """Export the run's latest checkpoint and score it on the tuning suites (``name``
    ``shipped``: the shipped weights themselves, the start of every continued variant)."""
    target = out / f"{name}_{milestone}min.json"
    if target.exists():
        return
    if name == "shipped":
        export = Path(SHIPPED)
        record = {"variant": name, "options": [], "milestone_min": 0, "trained_min": 0.0, "cpu_min": 0.0}
    else:
        export = run.parent / "exports" / f"{name}_{milestone}min"
        run_mssfs("export", str(run), "--out", str(export), log=log)
        record = {"variant": name, "options": VARIANTS[name], "milestone_min": milestone,
                  "trained_min": trained_minutes(run), "cpu_min": cpu_minutes(run)}
    record["config"] = json.loads((export / "config.json").read_text())
    record.update(score_export(export, SUITE_ARGS, run.parent / "eval" / f"{name}_{milestone}min", log))
    write_json(target, record)


def score_export(export: Path, suites: dict[str, list[str]], dest: Path, log) -> dict:
    """``{suite: results.json}`` of ``mssfs evaluate`` with each suite's options on ``export``;
    a suite whose results exist under ``dest`` is read, not run again."""
    out = {}
    for suite, args in suites.items():
        folder = Path(f"{dest}_{suite}")
        if not (folder / "results.json").exists():
            run_mssfs("evaluate", *args, "--model", str(export), "--out", str(folder), "-q", log=log)
        out[suite] = json.loads((folder / "results.json").read_text())
    return out


def write_json(path: Path, data) -> None:
    """Write ``data`` as JSON atomically (temporary file, then rename)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def summary_row(record: dict) -> dict:
    """The numbers the rule reads from one result file: object and relief errors (mean of
    the per-image mean errors for the mean over samples, best of N and fused), and per
    stimulus the modes, consistency (circles) and one-region consistency."""
    # the shipped weights were scored while ``fast`` had no refinement, as method ``ours``
    key = METHOD if METHOD in record["objects"]["summary"] else "ours"
    obj = record["objects"]["summary"][key]
    row = {"variant": record["variant"], "milestone_min": record["milestone_min"],
           "cpu_min": round(record["cpu_min"], 1), "trained_min": round(record["trained_min"], 1),
           "patches_seen": record["config"].get("training", {}).get("patches_seen")}
    for subset in ("objects", "reliefs"):
        for scoring in ("mean", "best", "fused"):
            row[f"{subset}_{scoring}"] = round(obj[subset][scoring]["mean"], 2)
    for item in record["stimuli"]["items"][key]:
        row[f"{item['item']}_modes"] = item["n_modes"]
        for key in ("consistent", "one_region"):
            if item.get(key) is not None:
                row[f"{item['item']}_{key}"] = round(float(item[key]), 3)
    return row


def summary(out: Path) -> list[dict]:
    """One row per variant and milestone from the result files under ``out``."""
    return [summary_row(json.loads(f.read_text())) for f in sorted(out.glob("*min.json"))]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default="runs/cpu_study", help="run folders, exports and evaluations")
    p.add_argument("--variants", default="base,gpu-recipe,x0,v,quarter,figures",
                   help=f"comma-separated, from: {', '.join(VARIANTS)}")
    p.add_argument("--milestones", default="60,180", help="CPU minutes of training at which to evaluate")
    p.add_argument("--chunk", type=float, default=15.0, help="CPU minutes per variant per turn")
    p.add_argument("--results", default=None, help="result JSON folder (default ROOT/results)")
    p.add_argument("--summary", action="store_true", help="print the results so far and stop")
    args = p.parse_args(argv)
    root = Path(args.root)
    out = Path(args.results) if args.results else root / "results"
    if args.summary:
        for row in summary(out):
            print(json.dumps(row))
        return 0
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    milestones = sorted(int(m) for m in args.milestones.split(","))
    out.mkdir(parents=True, exist_ok=True)
    with (root / "study.log").open("a") as log:
        evaluate("shipped", root / "shipped", 0, out, log)
        for milestone in milestones:
            while True:
                spent = [(cpu_minutes(root / n), n) for n in names]
                behind = [(done, n) for done, n in spent if done < milestone - 1.0]
                if not behind:
                    break
                done, name = min(behind)
                train_chunk(VARIANTS[name], root / name, min(args.chunk, milestone - done), log)
            for name in names:
                evaluate(name, root / name, milestone, out, log)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
