"""Keep training the network on idle CPU time; keep the exports that pass the rule.

Runs forever at the lowest CPU priority (``nice 19``), so it only takes time no other
process wants, and pauses its training process altogether (``SIGSTOP``) while other
processes use the CPU (:class:`Courtesy`: more than half a core for ``--busy-s`` seconds;
it continues after a minute under a quarter of a core), since ``nice`` alone does not
stop it from slowing multi-threaded work. It survives any interruption: started again, it resumes from the run's
last checkpoint; on a fresh machine (no run folder) it starts from the last export that
passed the gate (``candidates/continued/``, committed with the repository) or, before the
first one, from the package weights. The recipe is one of the CPU-time study's
(:mod:`mssfs.train.recipes`; ``base`` by default, which the study's rule kept).

Every ``--gate-every`` CPU minutes the latest checkpoint is exported and gated against the
package weights on the release split (docs/decisions/cpu-time-study.md, rule 3):

1. objects: over the 40 held-out objects (4 samples, seed 0, ``fast``, one thread; bf16 on a CPU with bfloat16 instructions, else fp32)
   the fused error is lower than the package weights' (paired Wilcoxon p < 0.05) and at
   most the regression baseline's;
2. circles: at seeds 100-115 at least 80 % of the samples are consistent with one light,
   at least the package weights' share - 1/8, and both readings occur.

The package weights' numbers are computed once per version of the sampler code (the git
tree of ``src/mssfs``) and kept in the run folder. Every gate is appended to
``docs/results/keep_training/gates.jsonl``, beside the run's ``log.csv`` and loss curve
(copied after every chunk); an export that passes replaces ``candidates/continued/`` (its
model card notes the gate). Committing it, and promoting it to the package weights, is
left to a person::

    nohup python tools/keep_training.py --run runs/keep > runs/keep.out 2>&1 &
    python tools/keep_training.py --run runs/keep --status      # where it stands
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from mssfs.core.device import resolve_precision
from mssfs.core.fileio import save_json
from mssfs.model.weights import DEFAULT_DIR
from mssfs.train.cpu_budget import (
    checkpoints,
    cpu_minutes,
    fused_difference,
    run_mssfs,
    score_export,
    stimulus_item,
    train_chunk,
)
from mssfs.train.recipes import recipes

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = str(DEFAULT_DIR)
CPU_CONFIG = str(ROOT / "configs" / "cpu.yaml")
CONTINUED = ROOT / "candidates" / "continued"
RECORDS = ROOT / "docs" / "results" / "keep_training"
#: the gate's arithmetic: bf16 where this CPU has bfloat16 instructions, else fp32 (emulated
#: bf16 is many times slower); written out, so every gate record names it
GATE_PRECISION = "bf16" if resolve_precision("auto", "cpu")[0] else "fp32"
GATE_SUITES = {
    "objects": ["--suite", "objects", "--n-objects", "40", "--n-reliefs", "0", "--size", "64", "--samples", "4",
                "--seed", "0", "--precision", GATE_PRECISION, "--preset", "fast", "--methods", "ours"],
    "circles": ["--suite", "stimuli", "--stimuli", "circles", "--n-layouts", "0", "--samples", "16", "--size", "128",
                "--seed", "100", "--precision", GATE_PRECISION, "--preset", "fast", "--methods", "ours"],
}
ALPHA, CIRCLES_BAR, CIRCLES_SLACK = 0.05, 0.8, 1 / 8
RETRY_S = 60


def _busy_jiffies() -> int | None:
    """All CPUs' non-idle time so far, in clock ticks (``/proc/stat``); None off Linux."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    return sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0)  # minus idle and iowait


def _own_jiffies(pid: int) -> int:
    """CPU time of this process and of child ``pid`` so far, in clock ticks."""
    own = os.times()
    ticks = round((own.user + own.system) * os.sysconf("SC_CLK_TCK"))
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        utime, stime = stat.rsplit(")", 1)[1].split()[11:13]
        return ticks + int(utime) + int(stime)
    except (OSError, ValueError, IndexError):
        return ticks


class Courtesy:
    """Run a command and pause it while other processes want the CPU.

    Every ``poll_s`` seconds the cores used by everything but this job (all CPUs' busy time
    minus this process's and the child's, per wall second) are measured. When they exceed
    ``busy`` cores for ``busy_s`` seconds in a row the child is stopped; once they stay
    under ``quiet`` for ``quiet_s`` seconds it continues. ``measure(pid)`` can replace the
    measurement (tests); it returns the others' cores since its last call, or None when
    unknown (then nothing is paused).
    """

    def __init__(self, busy: float = 0.5, quiet: float = 0.25, busy_s: float = 10.0, quiet_s: float = 60.0,
                 poll_s: float = 5.0, measure=None):
        self.busy, self.quiet, self.busy_s, self.quiet_s, self.poll_s = busy, quiet, busy_s, quiet_s, poll_s
        self.measure = measure or self._measure
        self.events: list[str] = []  # "pause" / "continue", in order
        self._last = None

    def _measure(self, pid: int) -> float | None:
        now, busy = time.monotonic(), _busy_jiffies()
        if busy is None:
            return None
        own = _own_jiffies(pid)
        last, self._last = self._last, (now, busy, own)
        if last is None or now <= last[0]:
            return None
        return ((busy - last[1]) - (own - last[2])) / os.sysconf("SC_CLK_TCK") / (now - last[0])

    def run_mssfs(self, *args: str, log=None) -> None:
        """:func:`run_mssfs` with the pausing."""
        run_mssfs(*args, log=log, run=self.run)

    def run(self, cmd: list[str], check: bool = True, **popen) -> None:
        """Like ``subprocess.run(cmd, check=check, **popen)``, pausing the process as above."""
        self._last = None
        proc = subprocess.Popen(cmd, **popen)
        paused, since = False, time.monotonic()
        try:
            while True:
                try:
                    code = proc.wait(timeout=self.poll_s)
                    break
                except subprocess.TimeoutExpired:
                    pass
                others, now = self.measure(proc.pid), time.monotonic()
                if others is None:
                    continue
                change = others < self.quiet if paused else others > self.busy
                if not change:  # the state holds: the streak starts again
                    since = now
                elif now - since >= (self.quiet_s if paused else self.busy_s):
                    proc.send_signal(signal.SIGCONT if paused else signal.SIGSTOP)
                    paused, since = not paused, now
                    self.events.append("pause" if paused else "continue")
        finally:
            if proc.poll() is None:  # interrupted: let the child finish its checkpoint, not hang stopped
                proc.send_signal(signal.SIGCONT)
                proc.terminate()
                proc.wait()
        if code and check:
            raise subprocess.CalledProcessError(code, cmd)


def start_from() -> str:
    """The export a fresh run starts from: the last one that passed the gate, else the package's."""
    return str(CONTINUED) if (CONTINUED / "model.safetensors").exists() else SHIPPED


def recipe(name: str) -> list[str]:
    """The study recipe's options, continuing from :func:`start_from` (a distilled recipe
    keeps the package weights as its teacher)."""
    return recipes(CPU_CONFIG, init=start_from(), teacher=SHIPPED)[name]


def code_version() -> str:
    """Git tree hash of ``src/mssfs`` (sampler and evaluation code), or ``unknown``."""
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD:src/mssfs"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def reference_suites() -> dict[str, list[str]]:
    """The gate suites for the package weights: the objects with the regression baseline too."""
    return dict(GATE_SUITES, objects=GATE_SUITES["objects"][:-1] + ["ours,regression"])


def reference(run: Path, log) -> dict:
    """The package weights' gate suites, cached per code version and precision."""
    return score_export(Path(SHIPPED), reference_suites(), run / "reference" / f"{code_version()}-{GATE_PRECISION}" / "shipped",
                        log)


def gate(candidate: dict, ref: dict) -> dict:
    """The rule's checks for one candidate's gate suites against the reference's."""
    fused = fused_difference(ref["objects"], candidate["objects"])
    regression = ref["objects"]["summary"]["regression"]["objects"]["mean"]["mean"]
    c, c0 = stimulus_item(candidate["circles"], "circles"), stimulus_item(ref["circles"], "circles")
    checks = {
        "objects_fused_lower": fused["diff"] < 0 and fused["p"] < ALPHA,
        "objects_fused_at_most_regression": fused["b"] <= regression,
        "circles_bar": c["consistent"] >= CIRCLES_BAR and c["true"] > 0 and c["inverted"] > 0,
        "circles_not_worse": c["consistent"] >= c0["consistent"] - CIRCLES_SLACK,
    }
    return {"passed": all(checks.values()), "checks": checks, "objects_fused": fused,
            "regression_fused": regression, "circles": {k: c[k] for k in ("consistent", "true", "inverted", "n_modes")},
            "circles_reference": {k: c0[k] for k in ("consistent", "true", "inverted", "n_modes")}}


def run_gate(run: Path, log) -> dict:
    """Export the latest checkpoint, gate it, record the outcome, keep it if it passed."""
    step = checkpoints(run)[-1].stem
    export = run / "exports" / step
    if not (export / "model.safetensors").exists():
        run_mssfs("export", str(run), "--out", str(export), log=log)
    result = gate(score_export(export, GATE_SUITES, run / "gates" / step, log), reference(run, log))
    record = {"checkpoint": step, "cpu_min": round(cpu_minutes(run), 1), "code": code_version(),
              "patches_seen": json.loads((export / "config.json").read_text()).get("training", {}).get("patches_seen"),
              **result}
    RECORDS.mkdir(parents=True, exist_ok=True)
    with (RECORDS / "gates.jsonl").open("a") as f:
        f.write(json.dumps(record) + "\n")
    if record["passed"]:
        fused = result["objects_fused"]
        note = (f"Passed the continued-training gate at {record['cpu_min']} CPU minutes: objects fused "
                f"{fused['b']:.2f} vs {fused['a']:.2f} deg (p = {fused['p']:.3g}), circles consistent "
                f"{result['circles']['consistent']:.2f}.")
        staged = CONTINUED.with_name(CONTINUED.name + ".new")
        shutil.rmtree(staged, ignore_errors=True)
        run_mssfs("export", str(checkpoints(run)[-1]), "--out", str(staged), "--note", note, log=log)
        shutil.rmtree(CONTINUED, ignore_errors=True)
        os.replace(staged, CONTINUED)
    save_json(run / "last_gate.json", {"cpu_min": record["cpu_min"], "passed": record["passed"]})
    return record


def publish_log(run: Path) -> None:
    """Copy the run's ``log.csv`` and loss curve to the records (docs/results/keep_training/)."""
    RECORDS.mkdir(parents=True, exist_ok=True)
    for name in ("log.csv", "loss.png"):
        if (run / name).exists():
            shutil.copyfile(run / name, RECORDS / name)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", default="runs/keep", help="run folder (checkpoints, exports, gate results)")
    p.add_argument("--recipe", default="base", choices=sorted(recipes(CPU_CONFIG, SHIPPED, SHIPPED)),
                   help="the CPU-time study variant to train (default base)")
    p.add_argument("--chunk", type=float, default=30.0, help="CPU minutes per training chunk (default 30)")
    p.add_argument("--gate-every", type=float, default=90.0,
                   help="CPU minutes between gates (default 90: a gate before a machine is replaced)")
    p.add_argument("--stop-after", type=float, default=0.0, help="stop after this many CPU minutes (0: never)")
    p.add_argument("--busy", type=float, default=0.5,
                   help="pause training while other processes use more than this many cores (0: never pause)")
    p.add_argument("--busy-s", type=float, default=10.0, help="... for this many seconds in a row (default 10)")
    p.add_argument("--status", action="store_true", help="print where the run stands and stop")
    args = p.parse_args(argv)
    run = Path(args.run)
    last_path = run / "last_gate.json"
    if args.status:
        last = json.loads(last_path.read_text()) if last_path.exists() else None
        print(json.dumps({"cpu_min": round(cpu_minutes(run), 1), "checkpoints": len(checkpoints(run)),
                          "starts_from": start_from(), "last_gate": last}))
        return 0
    courtesy = Courtesy(busy=args.busy, busy_s=args.busy_s) if args.busy > 0 else None
    os.nice(19)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    run.mkdir(parents=True, exist_ok=True)
    with (run / "keep.log").open("a") as log:
        while not args.stop_after or cpu_minutes(run) < args.stop_after:
            try:
                train_chunk(recipe(args.recipe), run, args.chunk, log, runner=courtesy.run_mssfs if courtesy else None)
                publish_log(run)
                last = json.loads(last_path.read_text())["cpu_min"] if last_path.exists() else 0.0
                if cpu_minutes(run) - last >= args.gate_every:
                    print(json.dumps(run_gate(run, log)), flush=True)
            except subprocess.CalledProcessError as exc:  # e.g. the code changed under a running job
                print(f"{' '.join(exc.cmd[2:4])} failed (exit {exc.returncode}); retrying in {RETRY_S} s", flush=True)
                time.sleep(RETRY_S)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
