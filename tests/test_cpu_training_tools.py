"""Training for a CPU-time budget (mssfs.train.cpu_budget, mssfs.train.recipes), the CPU-time
study (experiments/cpu_time_study.py) and the background training job
(tools/keep_training.py): CPU ledger, resumable chunks, recipes, the gate's rule."""

from __future__ import annotations

import itertools
import json
import os
import sys

import pytest
from repo_files import ROOT, load_repo_module

from mssfs.train import cpu_budget
from mssfs.train.recipes import recipes

TINY = ["--objective", "diffusion", "--base-width", "8", "--mults", "1,2", "--res-blocks", "1", "--time-dim", "16",
        "--attn-heads", "1", "--attn-head-dim", "8", "--patches-per-step", "16", "--image-size", "32",
        "--val-patches", "16", "--val-every", "2", "--log-every", "1", "--checkpoint-every", "2",
        "--precision", "fp32", "--device", "cpu", "--warmup-steps", "1"]


@pytest.fixture
def study():
    return load_repo_module("experiments", "cpu_time_study")


@pytest.fixture
def keep():
    return load_repo_module("tools", "keep_training")


def _log(run, times):
    run.mkdir(parents=True, exist_ok=True)
    rows = "".join(f"{10 * (i + 1)},0.1,,,100,1e-4,{t}\n" for i, t in enumerate(times))
    (run / "log.csv").write_text("step,loss,val_loss,val_x0,patches_per_s,lr,time\n" + rows)


def test_ledger_counts_booked_cpu_and_unbooked_training(tmp_path):
    study = cpu_budget
    run = tmp_path / "r"
    assert study.cpu_minutes(run) == 0.0
    _log(run, [60.0, 120.0])  # 2 minutes of training, nothing booked (a killed chunk)
    assert study.cpu_minutes(run) == pytest.approx(2.0)
    study.book(run)  # settled at its wall time
    assert study.cpu_minutes(run) == pytest.approx(2.0)
    _log(run, [60.0, 120.0, 300.0])  # a chunk of 3 more minutes of training ...
    assert study.cpu_minutes(run) == pytest.approx(5.0)
    study.book(run, 1.5)  # ... booked at its CPU time (a busy machine: less than its wall time)
    assert study.cpu_minutes(run) == pytest.approx(3.5)
    study.book(run)  # nothing unbooked: settling changes nothing
    assert study.cpu_minutes(run) == pytest.approx(3.5)


def test_train_chunk_starts_then_resumes_and_books_cpu(tmp_path, monkeypatch):
    study = cpu_budget
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    run = tmp_path / "tiny"
    with open(tmp_path / "log.txt", "w") as log:
        study.train_chunk(TINY, run, 0.02, log)
        first = study.checkpoints(run)
        booked = study.cpu_minutes(run)
        study.train_chunk(["--bogus-option-never-used-when-resuming"], run, 0.02, log)
    assert first and booked > 0
    assert study.cpu_minutes(run) > booked
    # one thread: the booked CPU time is at most the chunks' wall time (training plus start-up)
    assert study.cpu_minutes(run) < study.trained_minutes(run) + 2.0
    assert int(study.checkpoints(run)[-1].stem.split("_")[1]) > int(first[-1].stem.split("_")[1])
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["base_width"] == 8  # the resumed chunk kept the first chunk's options


def test_summary_row_reads_the_rules_numbers(study, tmp_path):
    def scorings(v):
        return {k: {"mean": v + i} for i, k in enumerate(("mean", "best", "fused"))}

    record = {"variant": "base", "milestone_min": 60, "trained_min": 70.0, "cpu_min": 60.4,
              "config": {"training": {"patches_seen": 123}},
              "objects": {"summary": {"ours": {"objects": scorings(30.0), "reliefs": scorings(10.0)}}},
              "stimuli": {"items": {"ours": [{"item": "circles", "n_modes": 3, "consistent": 0.75, "one_region": None},
                                             {"item": "star", "n_modes": 5, "consistent": None, "one_region": 0.8}]}}}
    row = study.summary_row(record)
    assert row["objects_fused"] == 32.0 and row["reliefs_best"] == 11.0 and row["patches_seen"] == 123
    assert row["circles_consistent"] == 0.75 and "circles_one_region" not in row
    assert row["star_one_region"] == 0.8 and row["star_modes"] == 5
    # the study's exports are scored as the unrefined sampler, under that method's name
    renamed = {**record, "objects": {"summary": {study.METHOD: record["objects"]["summary"]["ours"]}},
               "stimuli": {"items": {study.METHOD: record["stimuli"]["items"]["ours"]}}}
    assert study.summary_row(renamed) == row
    assert study.SUITE_ARGS["objects"][-1] == study.METHOD == "no-refine"
    table = study.summary_table([row, study.summary_row({**record, "variant": "shipped"})]).splitlines()
    assert len(table) == 4 and table[0].count("|") == table[2].count("|") == table[3].count("|")
    assert "| 30.00° / 31.00° / 32.00° |" in table[2] and "| 12.00° |" in table[2]  # objects; reliefs fused
    assert "| — / 0.80 / — |" in table[2]  # one-region rings / star / snake: only the star has one
    assert table[2].startswith("| base | 60 | 123 |") and table[3].startswith("| shipped | 60 | — |")
    # summary(): the shipped weights first, then by milestone in the table's order of variants
    for name, milestone in (("x0", 60), ("base", 180), ("shipped", 0), ("base", 60)):
        (tmp_path / f"{name}_{milestone}min.json").write_text(json.dumps({**record, "variant": name, "milestone_min": milestone}))
    assert [(r["variant"], r["milestone_min"]) for r in study.summary(tmp_path)] == [
        ("shipped", 0), ("base", 60), ("x0", 60), ("base", 180)]


def test_every_variant_names_known_train_options(study):
    from mssfs.cli import build_parser

    parser = build_parser()
    for name, options in study.VARIANTS.items():
        args = parser.parse_args(["train", *options, "--out", "x"])  # argparse exits on an unknown option
        assert args.command == "train", name


def test_precision_reaches_training_and_every_suite(study):
    from mssfs.cli import build_parser

    parser = build_parser()
    for precision in study.PRECISIONS:
        args = parser.parse_args(["train", *study.variant_options("base", precision), "--out", "x"])
        assert args.opt_precision == precision
        for suite, options in study.suite_args(precision).items():
            parsed = parser.parse_args(["evaluate", *options, "--out", "x"])
            assert parsed.precision == precision, suite
            assert parsed.methods == study.METHOD and parsed.preset == "fast", suite
    assert all("--precision" not in args for args in study.SUITE_ARGS.values())  # set only by suite_args


def test_only_the_driver_that_trains_base_scores_the_shipped_weights(study, tmp_path, monkeypatch):
    scored, trained = [], []
    monkeypatch.setattr(study, "evaluate", lambda name, run, milestone, out, log, precision:
                        scored.append((name, milestone, precision)))

    def chunk(options, run, minutes, log):
        trained.append((run.name, options[options.index("--precision") + 1]))
        cpu_budget.book(run, minutes)

    monkeypatch.setattr(study, "train_chunk", chunk)
    study.main(["--root", str(tmp_path / "a"), "--variants", "v,x0", "--milestones", "30", "--chunk", "15"])
    assert [s[0] for s in scored] == ["v", "x0"] and {s[2] for s in scored} == {"fp32"}
    assert sorted(trained) == [("v", "fp32"), ("v", "fp32"), ("x0", "fp32"), ("x0", "fp32")]
    scored.clear()
    study.main(["--root", str(tmp_path / "b"), "--variants", "base", "--milestones", "15", "--precision", "bf16"])
    assert scored == [("shipped", 0, "bf16"), ("base", 15, "bf16")]



def test_status_says_where_each_variant_stands(study, tmp_path, capsys):
    root = tmp_path / "study"
    _log(root / "v", [60.0, 120.0])  # two log rows, steps 10 and 20
    cpu_budget.book(root / "v", 1.5)
    (root / "results").mkdir()
    (root / "results" / "v_60min.json").write_text("{}")
    rows = study.status(root, ["v", "x0"], [60, 180])
    assert rows == [{"variant": "v", "cpu_min": 1.5, "steps": 20, "scored": [60]},
                    {"variant": "x0", "cpu_min": 0.0, "steps": 0, "scored": []}]
    assert study.main(["--root", str(root), "--variants", "v,x0", "--status"]) == 0
    assert [json.loads(line)["variant"] for line in capsys.readouterr().out.splitlines()] == ["v", "x0"]
    assert not (root / "x0").exists() and not (root / "study.log").exists()  # nothing trained or written


def _objects(errors):
    return {"items": {"ours": [{"item": f"o{i}", "kind": "objects", "n": 4, "mean": {"mean": e + 5},
                                "best": {"mean": e - 5}, "fused": {"mean": e}} for i, e in enumerate(errors)]},
            "summary": {"regression": {"objects": {"mean": {"mean": 32.0}}}}}


def _circles(consistent, true=0.5, inverted=0.3):
    return {"items": {"ours": [{"item": "circles", "consistent": consistent, "true": true, "inverted": inverted,
                                "n_modes": 3}]}}


def test_gate_passes_only_a_clear_improvement(keep):
    ref = {"objects": _objects([30.0 + (i % 5) for i in range(40)]), "circles": _circles(0.81)}
    better = {"objects": _objects([27.0 + (i % 5) for i in range(40)]), "circles": _circles(0.81)}
    result = keep.gate(better, ref)
    assert result["passed"] and result["objects_fused"]["diff"] == pytest.approx(-3.0)
    same = {"objects": _objects([30.0 + (i % 5) for i in range(40)]), "circles": _circles(0.81)}
    assert not keep.gate(same, ref)["checks"]["objects_fused_lower"]
    worse_circles = dict(better, circles=_circles(0.625))
    checks = keep.gate(worse_circles, ref)["checks"]
    assert not checks["circles_bar"] and not checks["circles_not_worse"]
    one_reading = dict(better, circles=_circles(0.9, inverted=0.0))
    assert not keep.gate(one_reading, ref)["passed"]


def _row(variant, milestone=180, fused=30.0, reliefs=20.0, circles=0.875, modes=(3, 4, 4, 4)):
    return {"variant": variant, "milestone_min": milestone, "objects_fused": fused, "reliefs_fused": reliefs,
            "circles_consistent": circles, **{f"{s}_modes": m for s, m in zip(("circles", "rings", "star", "snake"), modes)}}


def test_choose_applies_the_rules_guards_then_the_lowest_objects_error(study):
    names = ["base", "x0", "v", "figures", "quarter"]
    rows = [_row("base"), _row("base", milestone=60, fused=10.0),  # another milestone is not read
            _row("x0", fused=27.0, reliefs=20.6),          # lowest error, reliefs past the margin
            _row("v", fused=28.0, circles=0.75),           # circles at base's - 1/8: allowed
            _row("figures", fused=27.5, modes=(3, 6, 4, 4)),  # rings: two modes more than base
            _row("quarter", fused=29.0, reliefs=20.5)]     # reliefs at the margin: allowed
    out = study.choose(rows, 180, names)
    assert out["candidate"] == "v" and out["base_objects_fused"] == 30.0
    assert out["variants"]["v"]["fails"] == [] and out["variants"]["quarter"]["fails"] == []
    assert [f.split()[0] for f in out["variants"]["x0"]["fails"]] == ["reliefs"]
    assert [f.split()[0] for f in out["variants"]["figures"]["fails"]] == ["rings"]
    worse_circles = [r if r["variant"] != "v" else _row("v", fused=28.0, circles=0.625) for r in rows]
    assert study.choose(worse_circles, 180, names)["candidate"] == "quarter"
    # no variant below base's objects error: base stays the recipe
    level = [_row("base"), _row("x0", fused=30.0), _row("v", fused=31.0)]
    assert study.choose(level, 180, ["base", "x0", "v"])["candidate"] is None
    # every variant must have the milestone; the error names the missing ones
    with pytest.raises(ValueError, match="180 CPU minutes: x0"):
        study.choose([_row("base"), _row("v")], 180, ["base", "x0", "v"])


def test_adopt_needs_a_clear_gain_on_the_release_split(study, tmp_path, monkeypatch):
    from mssfs.cli import build_parser

    parser = build_parser()
    for suite, options in study.RELEASE_ARGS.items():  # the held-out split, scored by the study's sampler
        parsed = parser.parse_args(["evaluate", *options, "--out", "x"])
        assert parsed.methods == study.METHOD and parsed.preset == "fast" and parsed.first == 0, suite
    assert "40" in study.RELEASE_ARGS["objects"] and "100" in study.RELEASE_ARGS["circles"]

    def results(errors, circles):
        obj = _objects(errors)
        return {"objects": {"items": {study.METHOD: obj["items"]["ours"]}},
                "circles": {"items": {study.METHOD: _circles(circles)["items"]["ours"]}}}

    fake = {"base": results([30.0 + (i % 5) for i in range(40)], 0.875)}
    scored = []

    def score(export, suites, dest, log):
        scored.append((export.name, suites["objects"][suites["objects"].index("--precision") + 1], dest.name))
        return fake[export.name.split("_")[0]]

    monkeypatch.setattr(study, "score_export", score)
    root = tmp_path / "study"
    with pytest.raises(ValueError, match="no export"):
        study.adopt(root, "x0", 180, "fp32", None)
    for name in ("base", "x0"):
        (root / "exports" / f"{name}_180min").mkdir(parents=True)
        (root / "exports" / f"{name}_180min" / "model.safetensors").write_bytes(b"")
    fake["x0"] = results([28.0 + (i % 5) for i in range(40)], 0.75)
    record = study.adopt(root, "x0", 180, "fp32", None)
    assert record["adopted"] and record["objects_fused"]["diff"] == pytest.approx(-2.0)
    assert scored[-2:] == [("base_180min", "fp32", "release_base_180min"), ("x0_180min", "fp32", "release_x0_180min")]
    assert json.loads((root / "results" / "adoption" / "x0_180min.json").read_text())["adopted"] is True
    assert study.summary(root / "results") == []  # the adoption record is not a milestone's row
    fake["x0"] = results([28.0 + (i % 5) for i in range(40)], 0.625)  # circles below base's - 1/8
    record = study.adopt(root, "x0", 180, "fp32", None)
    assert not record["adopted"] and record["checks"] == {"objects_fused_lower": True, "circles_not_worse": False}
    # lower on average (-0.075 deg) but not clearly (differences spread both ways)
    fake["x0"] = results([30.0 + (i % 5) + ((i * 7) % 11 - 5) * 0.5 - 0.1 for i in range(40)], 0.875)
    record = study.adopt(root, "x0", 180, "fp32", None)
    assert record["objects_fused"]["diff"] < 0 and record["objects_fused"]["p"] > 0.05
    assert not record["checks"]["objects_fused_lower"] and not record["adopted"]


def test_choose_and_adopt_from_the_command_line(study, tmp_path, capsys, monkeypatch):
    out = tmp_path / "study" / "results"
    out.mkdir(parents=True)
    monkeypatch.setattr(study, "summary", lambda folder: [_row("base"), _row("x0", fused=28.0)])
    assert study.main(["--root", str(tmp_path / "study"), "--variants", "base,x0", "--choose"]) == 0
    assert json.loads(capsys.readouterr().out)["candidate"] == "x0"
    adopted = []
    monkeypatch.setattr(study, "adopt", lambda root, name, milestone, precision, log:
                        adopted.append((name, milestone, os.environ.get("PYTHONPATH"))) or {"adopted": False})
    src = tmp_path / "checkout" / "src"
    with pytest.raises(SystemExit):  # not a package source folder: a one-line error, nothing scored
        study.main(["--root", str(tmp_path / "study"), "--variants", "base,x0", "--adopt", "--sampler-src", str(src)])
    assert adopted == [] and "no mssfs package" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        study.main(["--root", str(tmp_path / "study"), "--variants", "base,x0", "--choose", "--sampler-src", str(src)])
    assert "applies to --adopt only" in capsys.readouterr().err
    (src / "mssfs").mkdir(parents=True)
    (src / "mssfs" / "__init__.py").write_text("")
    monkeypatch.setenv("PYTHONPATH", "")
    assert study.main(["--root", str(tmp_path / "study"), "--variants", "base,x0", "--adopt", "--sampler-src", str(src)]) == 0
    assert adopted == [("x0", 180, str(src.resolve()))]
    monkeypatch.setattr(study, "summary", lambda folder: [_row("base")])
    with pytest.raises(SystemExit):
        study.main(["--root", str(tmp_path / "study"), "--variants", "base,x0", "--choose"])
    assert "not yet scored at 180 CPU minutes: x0" in capsys.readouterr().err


def test_recipe_starts_from_the_last_passing_export(keep, tmp_path, monkeypatch):
    assert keep.recipe("base")[keep.recipe("base").index("--init") + 1] == keep.SHIPPED
    continued = tmp_path / "continued"
    continued.mkdir()
    (continued / "model.safetensors").write_bytes(b"x")
    monkeypatch.setattr(keep, "CONTINUED", continued)
    options = keep.recipe("base")
    assert options[options.index("--init") + 1] == str(continued)
    # a distilled recipe still learns from the package weights, not from the continued export
    quarter = keep.recipe("quarter")
    assert quarter[quarter.index("--teacher") + 1] == keep.SHIPPED and "--init" not in quarter


def test_recipes_follow_their_arguments_and_the_study_starts_all_from_the_shipped_weights(study):
    table = recipes("cfg.yaml", init="A", teacher="T")
    for name, options in table.items():
        assert options[options.index("--config") + 1] == "cfg.yaml", name
        assert ("--init" in options) != ("--teacher" in options), name  # continued or distilled, never both
        if "--init" in options:
            assert options[options.index("--init") + 1] == "A", name
        else:
            assert options[options.index("--teacher") + 1] == "T", name
    table["base"].append("--changed")  # each call builds new lists
    assert "--changed" not in recipes("cfg.yaml", init="A", teacher="T")["base"]
    assert study.VARIANTS == recipes(str(ROOT / "configs" / "cpu.yaml"), init=study.SHIPPED, teacher=study.SHIPPED)


def test_gate_suites_score_the_sampler_only_and_the_reference_adds_regression(keep):
    from mssfs.cli import build_parser

    parser = build_parser()
    for suites, objects_methods in ((keep.GATE_SUITES, "ours"), (keep.reference_suites(), "ours,regression")):
        objects = parser.parse_args(["evaluate", *suites["objects"], "--out", "x"])
        circles = parser.parse_args(["evaluate", *suites["circles"], "--out", "x"])
        assert objects.methods == objects_methods and circles.methods == "ours"
        assert (objects.n_objects, objects.first, objects.samples) == (40, 0, 4)  # the release split
        assert (circles.stimuli, circles.samples, circles.seed) == ("circles", 16, 100)


def _state(pid):
    """The process state letter from /proc (T: stopped)."""
    return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_courtesy_pauses_the_child_while_others_are_busy_and_continues_when_quiet(keep):
    states = []
    readings = iter([2.0, 2.0, 2.0, 0.1, 0.1, 0.1, 0.1] + [0.0] * 100)  # others' cores, poll by poll

    def measure(pid):
        states.append(_state(pid))
        return next(readings)

    courtesy = keep.Courtesy(busy=0.5, quiet=0.25, busy_s=0.1, quiet_s=0.1, poll_s=0.05, measure=measure)
    courtesy.run([sys.executable, "-c", "import time; time.sleep(1.0)"])
    assert courtesy.events == ["pause", "continue"]
    assert "T" in states and states.index("T") < len(states) - 1 and states[-1] != "T"  # stopped, then running again
    with pytest.raises(keep.subprocess.CalledProcessError):
        courtesy.run([sys.executable, "-c", "raise SystemExit(3)"])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_courtesy_measures_other_processes_not_its_own_child(keep):
    courtesy = keep.Courtesy(poll_s=0.3)
    seen = []

    def measure(pid):  # records, and returns None: never pause
        t, busy = keep.time.monotonic(), keep._busy_jiffies()
        seen.append((t, busy, courtesy._measure(pid)))

    courtesy.measure = measure
    courtesy.run([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 1.5: pass"])
    tick = keep.os.sysconf("SC_CLK_TCK")
    # all CPUs' busy cores minus the others' = the job's own: the spinning child, up to one core
    own = [(b1 - b0) / tick / (t1 - t0) - o1 for (t0, b0, _), (t1, b1, o1) in itertools.pairwise(seen) if o1 is not None]
    assert own, "no measurement after the first poll"
    assert 0.25 < sum(own) / len(own) < 1.2 and courtesy.events == []


def test_courtesy_continues_a_quarter_core_under_its_busy_threshold(keep):
    assert keep.Courtesy().quiet == pytest.approx(0.25)
    assert keep.Courtesy(busy=1.5).quiet == pytest.approx(1.25)  # beside one single-threaded job on 2 cores
    assert keep.Courtesy(busy=0.2).quiet == pytest.approx(0.1)  # never above busy, never negative
    assert keep.Courtesy(busy=1.5, quiet=0.3).quiet == 0.3


def test_a_run_keeps_its_name_and_recipe_and_refuses_another_recipe(keep, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    os.utime(run / "config.json", (0, 1_700_000_000))  # 2023-11-14 22:13 UTC
    identity = keep.run_identity(run, "figures")
    assert identity["name"] == "figures-2023-11-14T2213Z" and identity["recipe"] == "figures"
    assert keep.run_identity(run, "base") == identity  # read back, not made again
    monkeypatch.setattr(keep, "train_chunk", lambda *a, **k: pytest.fail("must not train"))
    monkeypatch.setattr(keep.os, "nice", lambda n: pytest.fail("refused before it lowers its priority"))
    with pytest.raises(SystemExit):
        keep.main(["--run", str(run), "--recipe", "base", "--busy", "0"])
    assert "trains recipe 'figures'" in capsys.readouterr().err
    fresh = keep.run_identity(tmp_path / "new", "base")  # a new run is named at its first start
    assert fresh["name"].startswith("base-") and (tmp_path / "new" / "run.json").exists()


def _gate_record(run, cpu_min, fused, ref_fused, p, circles, passed, patches=None):
    return {"run": run, "recipe": run.split("-")[0], "checkpoint": "step_1", "cpu_min": cpu_min,
            "patches_seen": patches, "passed": passed,
            "objects_fused": {"a": ref_fused, "b": fused, "diff": fused - ref_fused, "p": p},
            "circles": {"consistent": circles}, "circles_reference": {"consistent": 1.0}}


def test_gate_records_are_tabled_and_plotted_per_run(keep, tmp_path, monkeypatch):
    records = tmp_path / "records"
    records.mkdir()
    old = _gate_record("x", 360, 13.0, 12.6, 0.3, 0.75, False)
    del old["run"], old["recipe"]  # written before records named their run
    rows = [old, _gate_record("base-2026-12-07T1904Z", 90, 12.9, 12.6, 0.41, 0.9375, False, 2_000_000),
            _gate_record("figures-2026-12-07T1918Z", 90, 11.1, 12.6, 0.004, 0.875, True)]
    (records / "gates.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    gates = keep.read_gates(records / "gates.jsonl")
    assert (gates[0]["run"], gates[0]["recipe"]) == ("unnamed", "base")
    table = keep.gates_table(gates).splitlines()
    assert len(table) == 2 + 3
    assert table[3] == ("| base-2026-12-07T1904Z | 90 | 2,000,000 | 12.90° / 12.60° (+0.30°, p = 0.41) | "
                        "0.938 / 1.000 | no |")
    assert table[4].endswith("| 0.875 / 1.000 | yes |") and "11.10° / 12.60° (-1.50°, p = 0.004)" in table[4]
    keep.report(records)
    assert (records / "gates.md").read_text() == keep.gates_table(gates)
    assert (records / "gates.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    monkeypatch.setattr(keep, "RECORDS", records)
    assert keep.main(["--report"]) == 0


def test_each_run_publishes_its_log_to_its_own_folder(keep, tmp_path, monkeypatch):
    monkeypatch.setattr(keep, "RECORDS", tmp_path / "records")
    for name in ("a", "b"):
        run = tmp_path / name
        _log(run, [1.0, 2.0])
        keep.publish_log(run, {"name": f"base-{name}"})
    assert sorted(p.name for p in (tmp_path / "records").iterdir()) == ["base-a", "base-b"]
    assert (tmp_path / "records" / "base-b" / "log.csv").read_text() == (tmp_path / "b" / "log.csv").read_text()


def test_a_passing_gate_keeps_the_export_with_a_noted_model_card_and_a_failing_one_keeps_nothing(
        keep, tmp_path, monkeypatch):
    run, records, continued = tmp_path / "run", tmp_path / "records", tmp_path / "continued"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "step_00000020.safetensors").write_bytes(b"ckpt")
    cpu_budget.book(run, 91.0)
    exports = []

    def fake_mssfs(command, source, *args, log=None):  # `mssfs export SOURCE --out DIR [--note TEXT]`
        out = args[args.index("--out") + 1]
        os.makedirs(out)
        with open(os.path.join(out, "model.safetensors"), "w") as f:
            f.write(source)
        with open(os.path.join(out, "config.json"), "w") as f:
            json.dump({"training": {"patches_seen": 1234}}, f)
        exports.append((source, args[args.index("--note") + 1] if "--note" in args else None))

    ref = {"objects": _objects([30.0 + (i % 5) for i in range(40)]), "circles": _circles(0.875)}
    monkeypatch.setattr(keep, "run_mssfs", fake_mssfs)
    monkeypatch.setattr(keep, "reference", lambda run, log: ref)
    monkeypatch.setattr(keep, "RECORDS", records)
    monkeypatch.setattr(keep, "CONTINUED", continued)
    identity = {"name": "base-x", "recipe": "base"}

    monkeypatch.setattr(keep, "score_export", lambda *a: {"objects": ref["objects"], "circles": _circles(0.875)})
    record = keep.run_gate(run, None, identity)
    assert not record["passed"] and not continued.exists()
    assert [src for src, _ in exports] == [str(run)]  # the gate's own export only

    better = {"objects": _objects([27.0 + (i % 5) for i in range(40)]), "circles": _circles(0.875)}
    monkeypatch.setattr(keep, "score_export", lambda *a: better)
    record = keep.run_gate(run, None, identity)
    assert record["passed"] and (record["run"], record["recipe"], record["patches_seen"]) == ("base-x", "base", 1234)
    source, note = exports[-1]
    assert source.endswith("step_00000020.safetensors") and "Passed the continued-training gate at 91.0 CPU" in note
    assert (continued / "model.safetensors").read_text() == source
    assert not continued.with_name("continued.new").exists()
    assert [json.loads(line)["passed"] for line in (records / "gates.jsonl").read_text().splitlines()] == [False, True]
    assert json.loads((run / "last_gate.json").read_text()) == {"cpu_min": 91.0, "passed": True}
