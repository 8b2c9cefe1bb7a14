"""Keep training the network on idle CPU time; keep the exports that pass the rule.

Runs forever at the lowest CPU priority (``nice 19``), so it only takes time no other
process wants, and pauses its training process altogether (``SIGSTOP``) while other
processes use the CPU (:class:`Courtesy`: more than ``--busy`` cores, half a core by
default, for ``--busy-s`` seconds; it continues after a minute a quarter of a core under
that), since ``nice`` alone does not stop it from slowing multi-threaded work. It survives any interruption: started again, it resumes from the run's
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
``docs/results/keep_training/gates.jsonl`` (with the run's name and recipe), and the table
and plot of all gates (``gates.md``, ``gates.png``) are written again; the run's
``log.csv`` and loss curve are copied after every chunk to a folder named after the run
(its recipe and start, kept in the run's ``run.json``), so runs on different machines keep
separate records. An export that passes replaces ``candidates/continued/`` (its model card
notes the gate). Committing it, and promoting it to the package weights, is left to a
person::

    nohup python tools/keep_training.py --run runs/keep > runs/keep.out 2>&1 &
    python tools/keep_training.py --run runs/keep --status      # where it stands
    python tools/keep_training.py --report                      # gates.md and gates.png again
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
#: the plot's objects axis spans at least this many degrees, so that differences the 40
#: objects do not resolve (about 1.3 deg) do not fill it
OBJECTS_SPAN = 4.0
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
    under ``quiet`` for ``quiet_s`` seconds it continues (by default a quarter of a core under
    ``busy``, and at most half of it: 0.25 for the default 0.5, 1.25 for 1.5, which on a
    2-core machine trains beside one single-threaded job). ``measure(pid)`` can replace the
    measurement (tests); it returns the others' cores since its last call, or None when
    unknown (then nothing is paused).
    """

    def __init__(self, busy: float = 0.5, quiet: float | None = None, busy_s: float = 10.0, quiet_s: float = 60.0,
                 poll_s: float = 5.0, measure=None):
        quiet = max(busy - 0.25, busy / 2) if quiet is None else quiet
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


def run_identity(run: Path, recipe_name: str) -> dict:
    """The run's name and recipe (``run.json``), written when the run is first seen: its
    records are kept under that name, so runs on different machines do not overwrite each
    other's. The name is the recipe and the run's start (UTC); a run that trained before
    this file existed is dated by its ``config.json``, which a resume rewrites."""
    path = run / "run.json"
    if path.exists():
        return json.loads(path.read_text())
    config = run / "config.json"
    started = config.stat().st_mtime if config.exists() else time.time()
    identity = {"name": f"{recipe_name}-{time.strftime('%Y-%m-%dT%H%MZ', time.gmtime(started))}",
                "recipe": recipe_name, "starts_from": start_from()}
    run.mkdir(parents=True, exist_ok=True)
    save_json(path, identity)
    return identity


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


def run_gate(run: Path, log, identity: dict) -> dict:
    """Export the latest checkpoint, gate it, record the outcome (under the run's
    ``identity``), keep it if it passed."""
    step = checkpoints(run)[-1].stem
    export = run / "exports" / step
    if not (export / "model.safetensors").exists():
        run_mssfs("export", str(run), "--out", str(export), log=log)
    result = gate(score_export(export, GATE_SUITES, run / "gates" / step, log), reference(run, log))
    record = {"run": identity["name"], "recipe": identity["recipe"], "checkpoint": step,
              "cpu_min": round(cpu_minutes(run), 1), "code": code_version(), "precision": GATE_PRECISION,
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


def publish_log(run: Path, identity: dict) -> None:
    """Copy the run's ``log.csv`` and loss curve to the records, in a folder named after the
    run (docs/results/keep_training/{name}/)."""
    dest = RECORDS / identity["name"]
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("log.csv", "loss.png"):
        if (run / name).exists():
            shutil.copyfile(run / name, dest / name)


def read_gates(path: Path | None = None) -> list[dict]:
    """The gate records (``gates.jsonl``), oldest first; records written before they named
    their run get the run ``unnamed`` and the recipe ``base``."""
    path = path or RECORDS / "gates.jsonl"
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [{"run": "unnamed", "recipe": "base", **row} for row in rows]


def gates_table(gates: list[dict]) -> str:
    """A markdown table of the gate records: each gate's objects and circles numbers against
    the package weights' and whether it passed."""
    lines = ["| run | CPU min | patch samples | objects fused: export / package (diff, p) | circles consistent: "
             "export / package | passed |", "|---|---:|---:|---|---|---|"]
    for g in gates:
        f, c, c0 = g["objects_fused"], g["circles"], g["circles_reference"]
        seen = f"{g['patches_seen']:,}" if g.get("patches_seen") else "—"
        lines.append(f"| {g['run']} | {g['cpu_min']:.0f} | {seen} | {f['b']:.2f}° / {f['a']:.2f}° "
                     f"({f['diff']:+.2f}°, p = {f['p']:.2g}) | {c['consistent']:.3f} / {c0['consistent']:.3f} | "
                     f"{'yes' if g['passed'] else 'no'} |")
    return "\n".join(lines) + "\n"


def plot_gates(gates: list[dict], png: Path) -> None:
    """Objects fused error and circles consistent share at each gate against CPU minutes,
    one line per run, with the package weights' values (dashed) beside them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_o, ax_c) = plt.subplots(1, 2, figsize=(9, 3.4))
    for name in dict.fromkeys(g["run"] for g in gates):
        rows = [g for g in gates if g["run"] == name]
        x = [g["cpu_min"] for g in rows]
        line, = ax_o.plot(x, [g["objects_fused"]["b"] for g in rows], "o-", label=name)
        ax_o.plot(x, [g["objects_fused"]["a"] for g in rows], "_--", color=line.get_color(), markersize=14)
        ax_c.plot(x, [g["circles"]["consistent"] for g in rows], "o-", color=line.get_color())
        ax_c.plot(x, [g["circles_reference"]["consistent"] for g in rows], "_--", color=line.get_color(),
                  markersize=14)
        for g in rows:
            if g["passed"]:
                ax_o.plot(g["cpu_min"], g["objects_fused"]["b"], "*", markerfacecolor="none",
                          markeredgecolor="goldenrod", markersize=18)  # passed
    values = [g["objects_fused"][k] for g in gates for k in ("a", "b")]
    middle, half = (max(values) + min(values)) / 2, max((max(values) - min(values)) / 2 + 0.5, OBJECTS_SPAN / 2)
    ax_o.set(xlabel="CPU minutes trained", ylabel="objects fused error (deg)", xlim=(0, None),
             ylim=(middle - half, middle + half),
             title="40 held-out objects (dashes: package; star: passed)")
    ax_c.axhline(CIRCLES_BAR, color="grey", lw=0.8)
    ax_c.set(xlabel="CPU minutes trained", ylabel="consistent share", ylim=(-0.05, 1.05), xlim=(0, None),
             title="circles, seeds 100-115 (line: bar)")
    ax_o.legend(fontsize=7)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100)
    plt.close(fig)


def report(records: Path | None = None) -> None:
    """Write ``gates.md`` and ``gates.png`` beside ``gates.jsonl`` in the records."""
    records = records or RECORDS
    gates = read_gates(records / "gates.jsonl")
    (records / "gates.md").write_text(gates_table(gates))
    if gates:
        plot_gates(gates, records / "gates.png")


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
                   help="pause training while other processes use more than this many cores (0: never pause); "
                        "it continues once they use a quarter of a core less (at most half as many)")
    p.add_argument("--busy-s", type=float, default=10.0, help="... for this many seconds in a row (default 10)")
    p.add_argument("--status", action="store_true", help="print where the run stands and stop")
    p.add_argument("--report", action="store_true",
                   help="write the gate records' table and plot (gates.md, gates.png) and stop")
    args = p.parse_args(argv)
    run = Path(args.run)
    last_path = run / "last_gate.json"
    if args.report:
        report()
        print(f"wrote {RECORDS / 'gates.md'} and gates.png ({len(read_gates())} gates)")
        return 0
    if args.status:
        last = json.loads(last_path.read_text()) if last_path.exists() else None
        identity = json.loads((run / "run.json").read_text()) if (run / "run.json").exists() else None
        print(json.dumps({"run": identity and identity["name"], "cpu_min": round(cpu_minutes(run), 1),
                          "checkpoints": len(checkpoints(run)), "starts_from": start_from(), "last_gate": last}))
        return 0
    identity = run_identity(run, args.recipe)
    if identity["recipe"] != args.recipe:
        p.error(f"{run} trains recipe {identity['recipe']!r}, not {args.recipe!r}: give that recipe or another --run")
    courtesy = Courtesy(busy=args.busy, busy_s=args.busy_s) if args.busy > 0 else None
    os.nice(19)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with (run / "keep.log").open("a") as log:
        while not args.stop_after or cpu_minutes(run) < args.stop_after:
            try:
                train_chunk(recipe(args.recipe), run, args.chunk, log, runner=courtesy.run_mssfs if courtesy else None)
                publish_log(run, identity)
                last = json.loads(last_path.read_text())["cpu_min"] if last_path.exists() else 0.0
                if cpu_minutes(run) - last >= args.gate_every:
                    print(json.dumps(run_gate(run, log, identity)), flush=True)
                    report()
            except subprocess.CalledProcessError as exc:  # e.g. the code changed under a running job
                print(f"{' '.join(exc.cmd[2:4])} failed (exit {exc.returncode}); retrying in {RETRY_S} s", flush=True)
                time.sleep(RETRY_S)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
