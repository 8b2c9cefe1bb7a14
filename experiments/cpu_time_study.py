"""Equal CPU time: which training recipe improves the network most per CPU hour?

Question (issue: a network trained well enough on the CPU hours we have): with the same
training wall time on one CPU thread, which of network size, prediction target, batch and
learning rate, and training data moves the evaluation suites most?
Answer: docs/decisions/cpu-time-study.md (rule, milestones, outcome), raw numbers under
docs/results/cpu_time_study/.

Every variant is a list of ``mssfs train`` options (``VARIANTS``, from
:mod:`mssfs.train.recipes`). The budget is CPU
time of the training process on one thread (``OMP_NUM_THREADS=1``; data rendering,
validation and checkpoints included), so that a variant is not favoured by running while
the machine is quieter. The variants train in turn, a chunk of ``--chunk`` CPU minutes
each; the one with the least CPU time goes next. Each chunk's CPU time is added to the
run's ledger (``cpu_minutes.json``, :mod:`mssfs.train.cpu_budget`); a chunk killed before it could be booked counts the
training wall time it added to ``log.csv``, an upper bound. At each milestone
(``--milestones``, CPU minutes) every variant's latest checkpoint is exported and judged
by the tuning suites (``SUITE_ARGS``: objects and reliefs from held-out item 5000, never
the release split; the four stimuli). Everything is resumable: a killed run continues
from its last checkpoint (``mssfs train --resume``), and a milestone whose result file
exists is not evaluated again::

    OMP_NUM_THREADS=1 nohup python experiments/cpu_time_study.py --root runs/cpu_study \\
        --variants base,gpu-recipe,x0,v,quarter,figures --milestones 60,180 &
    python experiments/cpu_time_study.py --root runs/cpu_study --summary --markdown   # table so far

Once every variant has its last milestone, ``--choose`` applies the rule's first part
(:func:`choose`: the candidate from the tuning suites) and ``--adopt`` its second
(:func:`adopt`: the candidate against ``base`` on the release split; ``--sampler-src``
scores with the study's own checkout of the package, so that every number of the study
comes from one sampler)::

    python experiments/cpu_time_study.py --root runs/cpu_study --choose
    OMP_NUM_THREADS=1 python experiments/cpu_time_study.py --root runs/cpu_study --adopt --sampler-src ../study/src

The variants are compared at equal CPU time, not at equal patch samples; ``summary``
reports both.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from mssfs.core.fileio import save_json
from mssfs.model.weights import DEFAULT_DIR
from mssfs.train.cpu_budget import (
    cpu_minutes,
    fused_difference,
    run_mssfs,
    score_export,
    stimulus_item,
    train_chunk,
    trained_minutes,
)
from mssfs.train.recipes import recipes
from mssfs.train.runlog import read_log

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = str(DEFAULT_DIR)
#: every variant starts from the shipped weights' knowledge: continued from them, or
#: distilled from them into a smaller network (mssfs.train.recipes)
VARIANTS: dict[str, list[str]] = recipes(str(ROOT / "configs" / "cpu.yaml"), init=SHIPPED, teacher=SHIPPED)

#: the sampler every export is scored with: ``fast`` without the refinement by the shading,
#: which is what ``fast`` was when the rule was written (the refinement became part of it
#: later); every score in the study, the shipped weights' included, comes from this sampler
METHOD = "no-refine"

#: the tuning suites: the settings of the shipped weights' reference run (experiments/learning_curve.py)
#: on a split of held-out items that the release checks never use
SUITE_ARGS = {
    "objects": ["--suite", "objects", "--first", "5000", "--n-objects", "20", "--n-reliefs", "10", "--size", "64", "--samples", "4",
                "--seed", "0", "--preset", "fast", "--methods", METHOD],
    "stimuli": ["--suite", "stimuli", "--samples", "8", "--size", "128", "--seed", "0",
                "--preset", "fast", "--methods", METHOD, "--n-layouts", "0"],
}

#: the rule's second part, the held-out check of the candidate against ``base`` (the
#: release split: the 40 held-out objects; the circles at seeds 100-115), scored by the
#: study's sampler
RELEASE_ARGS = {
    "objects": ["--suite", "objects", "--n-objects", "40", "--n-reliefs", "0", "--size", "64", "--samples", "4",
                "--seed", "0", "--preset", "fast", "--methods", METHOD],
    "circles": ["--suite", "stimuli", "--stimuli", "circles", "--n-layouts", "0", "--samples", "16", "--size", "128",
                "--seed", "100", "--preset", "fast", "--methods", METHOD],
}

#: the rule's margins against ``base`` (docs/decisions/cpu-time-study.md): reliefs fused
#: error at most + 0.5 deg, circles consistent share at least - 1/8, modes per stimulus at
#: most + 1; the held-out objects' paired test at p < 0.05
RELIEFS_MARGIN, CIRCLES_SLACK, MODES_MARGIN, ALPHA = 0.5, 1 / 8, 1, 0.05
STIMULI = ("circles", "rings", "star", "snake")

#: the arithmetic of training and scoring (``--precision``): ``fp32`` gives the same numbers
#: on every CPU and is the fast one on a CPU without bfloat16 instructions; the first
#: attempt of the study ran ``bf16`` on a CPU that has them
PRECISIONS = ("fp32", "bf16")


def variant_options(name: str, precision: str) -> list[str]:
    """The ``mssfs train`` options of variant ``name`` in ``precision``."""
    return [*VARIANTS[name], "--precision", precision]


def suite_args(precision: str) -> dict[str, list[str]]:
    """The ``mssfs evaluate`` options of every suite in :data:`SUITE_ARGS`, scored in ``precision``."""
    return {suite: [*args, "--precision", precision] for suite, args in SUITE_ARGS.items()}


def evaluate(name: str, run: Path, milestone: int, out: Path, log, precision: str) -> None:
    """Export the run's latest checkpoint and score it on the tuning suites in ``precision``
    (``name`` ``shipped``: the shipped weights themselves, the start of every continued variant)."""
    target = out / f"{name}_{milestone}min.json"
    if target.exists():
        return
    if name == "shipped":
        export = Path(SHIPPED)
        record = {"variant": name, "options": [], "milestone_min": 0, "trained_min": 0.0, "cpu_min": 0.0}
    else:
        export = run.parent / "exports" / f"{name}_{milestone}min"
        run_mssfs("export", str(run), "--out", str(export), log=log)
        record = {"variant": name, "options": variant_options(name, precision), "milestone_min": milestone,
                  "trained_min": trained_minutes(run), "cpu_min": cpu_minutes(run)}
    record["config"] = json.loads((export / "config.json").read_text())
    record["precision"] = precision
    record.update(score_export(export, suite_args(precision), run.parent / "eval" / f"{name}_{milestone}min", log))
    save_json(target, record)


def summary_row(record: dict) -> dict:
    """The numbers the rule reads from one result file: object and relief errors (mean of
    the per-image mean errors for the mean over samples, best of N and fused), and per
    stimulus the modes, consistency (circles) and one-region consistency."""
    # the shipped weights were scored while ``fast`` had no refinement, as method ``ours``
    key = METHOD if METHOD in record["objects"]["summary"] else "ours"
    obj = record["objects"]["summary"][key]
    row = {"variant": record["variant"], "milestone_min": record["milestone_min"],
           "cpu_min": round(record["cpu_min"], 1), "trained_min": round(record["trained_min"], 1),
           # patch samples this variant trained (a run counts its own; the shipped weights' config
           # holds their last run's, which the study did not train)
           "patches_seen": None if record["variant"] == "shipped" else
           record["config"].get("training", {}).get("patches_seen")}
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
    """One row per variant and milestone from the result files under ``out``: the shipped
    weights first, then by milestone in the order of ``VARIANTS``."""
    rows = [summary_row(json.loads(f.read_text())) for f in out.glob("*min.json")]
    order = ["shipped", *VARIANTS]
    return sorted(rows, key=lambda r: (r["milestone_min"], order.index(r["variant"]) if r["variant"] in order else len(order)))


#: the columns of the Markdown summary: (heading, row key, format)
TABLE = (("variant", "variant", "{}"), ("CPU min", "cpu_min", "{:.0f}"), ("patch samples trained", "patches_seen", "{:,}"),
         ("objects mean / best / fused", ("objects_mean", "objects_best", "objects_fused"), "{:.2f}°"),
         ("reliefs fused", "reliefs_fused", "{:.2f}°"), ("circles consistent", "circles_consistent", "{:.3f}"),
         ("one-region rings / star / snake", ("rings_one_region", "star_one_region", "snake_one_region"), "{:.2f}"),
         ("modes circles / rings / star / snake", ("circles_modes", "rings_modes", "star_modes", "snake_modes"), "{}"))


def summary_table(rows: list[dict]) -> str:
    """The summary rows as a Markdown table with the numbers the rule reads (— where a row lacks one)."""
    def cell(row, keys, fmt):
        keys = keys if isinstance(keys, tuple) else (keys,)
        return " / ".join("—" if row.get(k) is None else fmt.format(row[k]) for k in keys)

    lines = ["| " + " | ".join(h for h, _, _ in TABLE) + " |", "|" + "---|" * len(TABLE)]
    lines += ["| " + " | ".join(cell(row, k, f) for _, k, f in TABLE) + " |" for row in rows]
    return "\n".join(lines)


def status(root: Path, names: list[str], milestones: list[int]) -> list[dict]:
    """Per variant: CPU minutes booked, training steps logged, and the milestones scored
    (a result file under ``root/results``) — where a resumed study stands."""
    out = root / "results"
    rows = []
    for name in names:
        log = read_log(root / name / "log.csv")
        rows.append({"variant": name, "cpu_min": round(cpu_minutes(root / name), 1),
                     "steps": int(log[-1]["step"]) if log else 0,
                     "scored": [m for m in milestones if (out / f"{name}_{m}min.json").exists()]})
    return rows


def choose(rows: list[dict], milestone: int, names: list[str]) -> dict:
    """The rule's first part on the summary rows at ``milestone``: among the variants
    ``names`` (``base`` among them) that keep ``base``'s reliefs, circles and modes within
    the margins, the one with the lowest objects fused error is the candidate, if that
    error is below ``base``'s; else there is none (``base`` stays the recipe).

    Returns ``{"milestone", "candidate": name or None, "variants": {name: {"objects_fused",
    "fails": [reasons]}}}``. Raises :class:`ValueError` naming the variants without a row
    at ``milestone`` (the rule compares them all at the same CPU time)."""
    at = {r["variant"]: r for r in rows if r["milestone_min"] == milestone}
    missing = [n for n in ["base", *names] if n not in at]
    if missing:
        raise ValueError(f"not yet scored at {milestone} CPU minutes: {', '.join(dict.fromkeys(missing))}")
    base = at["base"]
    verdicts = {}
    for name in names:
        if name == "base":
            continue
        row, fails = at[name], []
        if row["reliefs_fused"] > base["reliefs_fused"] + RELIEFS_MARGIN:
            fails.append(f"reliefs fused {row['reliefs_fused']:.2f} > base's {base['reliefs_fused']:.2f} + {RELIEFS_MARGIN}")
        if row["circles_consistent"] < base["circles_consistent"] - CIRCLES_SLACK:
            fails.append(f"circles consistent {row['circles_consistent']:.3f} < base's "
                         f"{base['circles_consistent']:.3f} - {CIRCLES_SLACK:.3f}")
        for stim in STIMULI:
            if row[f"{stim}_modes"] > base[f"{stim}_modes"] + MODES_MARGIN:
                fails.append(f"{stim} modes {row[f'{stim}_modes']} > base's {base[f'{stim}_modes']} + {MODES_MARGIN}")
        if row["objects_fused"] >= base["objects_fused"]:
            fails.append(f"objects fused {row['objects_fused']:.2f} not below base's {base['objects_fused']:.2f}")
        verdicts[name] = {"objects_fused": row["objects_fused"], "fails": fails}
    passing = [n for n, v in verdicts.items() if not v["fails"]]
    candidate = min(passing, key=lambda n: verdicts[n]["objects_fused"]) if passing else None
    return {"milestone": milestone, "base_objects_fused": base["objects_fused"], "candidate": candidate,
            "variants": verdicts}


def adopt(root: Path, name: str, milestone: int, precision: str, log) -> dict:
    """The rule's second part: ``name``'s and ``base``'s exports at ``milestone`` scored on
    the release split (:data:`RELEASE_ARGS` in ``precision``; scorings kept under
    ``root/eval/release_*``). ``name`` is adopted when its fused error over the 40 objects
    is lower than ``base``'s (paired Wilcoxon p < 0.05) and its circles consistent share
    is at least ``base``'s - 1/8. The outcome is written to
    ``root/results/adoption/{name}_{milestone}min.json`` and returned."""
    suites = {suite: [*args, "--precision", precision] for suite, args in RELEASE_ARGS.items()}
    scores = {}
    for variant in ("base", name):
        export = root / "exports" / f"{variant}_{milestone}min"
        if not (export / "model.safetensors").exists():
            raise ValueError(f"{export}: no export; score the milestone first (run the study to {milestone} minutes)")
        scores[variant] = score_export(export, suites, root / "eval" / f"release_{variant}_{milestone}min", log)
    fused = fused_difference(scores["base"]["objects"], scores[name]["objects"], METHOD, METHOD)
    circles = {v: stimulus_item(scores[v]["circles"], "circles", METHOD)["consistent"] for v in scores}
    checks = {"objects_fused_lower": fused["diff"] < 0 and fused["p"] < ALPHA,
              "circles_not_worse": circles[name] >= circles["base"] - CIRCLES_SLACK}
    record = {"variant": name, "milestone_min": milestone, "precision": precision, "adopted": all(checks.values()),
              "checks": checks, "objects_fused": fused, "circles_consistent": circles,
              "sampler": str(Path(_package_dir()).resolve())}
    (root / "results" / "adoption").mkdir(parents=True, exist_ok=True)
    save_json(root / "results" / "adoption" / f"{name}_{milestone}min.json", record)
    return record


def _package_dir() -> str:
    """Where the scoring children import ``mssfs`` from (their ``PYTHONPATH`` first)."""
    out = subprocess.run([sys.executable, "-c", "import mssfs, os; print(os.path.dirname(mssfs.__file__))"],
                         check=False, capture_output=True, text=True, env=dict(os.environ))
    return out.stdout.strip() or "unknown"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default="runs/cpu_study", help="run folders, exports and evaluations")
    p.add_argument("--variants", default="base,gpu-recipe,x0,v,quarter,figures",
                   help=f"comma-separated, from: {', '.join(VARIANTS)}")
    p.add_argument("--milestones", default="60,180", help="CPU minutes of training at which to evaluate")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="arithmetic of training and scoring, the same for every variant (fp32: the same numbers on every CPU)")
    p.add_argument("--chunk", type=float, default=15.0, help="CPU minutes per variant per turn")
    p.add_argument("--results", default=None, help="result JSON folder (default ROOT/results)")
    p.add_argument("--summary", action="store_true", help="print the results so far (JSON lines) and stop")
    p.add_argument("--markdown", action="store_true", help="with --summary: one Markdown table instead")
    p.add_argument("--status", action="store_true",
                   help="print each variant's CPU minutes, steps and scored milestones (JSON lines) and stop")
    p.add_argument("--choose", action="store_true",
                   help="apply the rule's first part at the last milestone (tuning suites) and print the outcome")
    p.add_argument("--adopt", action="store_true",
                   help="apply both parts of the rule: the chosen candidate against base on the release split "
                   "(writes ROOT/results/adoption/)")
    p.add_argument("--sampler-src", default=None, metavar="DIR",
                   help="with --adopt: score with the mssfs package under DIR (the study's fixed checkout's src/)")
    args = p.parse_args(argv)
    root = Path(args.root)
    out = Path(args.results) if args.results else root / "results"
    if args.summary:
        rows = summary(out)
        print(summary_table(rows) if args.markdown else "\n".join(json.dumps(row) for row in rows))
        return 0
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    milestones = sorted(int(m) for m in args.milestones.split(","))
    if args.status:
        print("\n".join(json.dumps(row) for row in status(root, names, milestones)))
        return 0
    if args.sampler_src and not args.adopt:
        p.error("--sampler-src applies to --adopt only")
    if args.sampler_src and not (Path(args.sampler_src) / "mssfs" / "__init__.py").exists():
        p.error(f"--sampler-src {args.sampler_src}: no mssfs package there")
    if args.choose or args.adopt:
        try:
            chosen = choose(summary(out), milestones[-1], names)
        except ValueError as exc:
            p.error(str(exc))
        print(json.dumps(chosen, indent=1))
        if not args.adopt or chosen["candidate"] is None:
            return 0
        if args.sampler_src:
            os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(args.sampler_src).resolve()),
                                                                     os.environ.get("PYTHONPATH")]))
        try:
            with (root / "study.log").open("a") as log:
                record = adopt(root, chosen["candidate"], milestones[-1], args.precision, log)
        except ValueError as exc:
            p.error(str(exc))
        print(json.dumps(record, indent=1))
        return 0
    out.mkdir(parents=True, exist_ok=True)
    with (root / "study.log").open("a") as log:
        if "base" in names:  # the reference of the rule, scored once by the driver that trains base
            evaluate("shipped", root / "shipped", 0, out, log, args.precision)
        for milestone in milestones:
            while True:
                spent = [(cpu_minutes(root / n), n) for n in names]
                behind = [(done, n) for done, n in spent if done < milestone - 1.0]
                if not behind:
                    break
                done, name = min(behind)
                train_chunk(variant_options(name, args.precision), root / name, min(args.chunk, milestone - done), log)
            for name in names:
                evaluate(name, root / name, milestone, out, log, args.precision)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
