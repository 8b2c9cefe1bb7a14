"""experiments/learning_curve.py: the power-law fit recovers a known exponent, and the
script reads the repository's records into the rows, fits and budgets the docs quote."""

import json
import math

import numpy as np
import pytest
from repo_files import load_repo_module


@pytest.fixture(scope="module")
def lc():
    return load_repo_module("experiments", "learning_curve")


@pytest.mark.parametrize("c", [0.4, 1.3])
def test_fit_recovers_a_known_exponent(lc, c):
    samples = np.geomspace(1e6, 1e8, 9)
    values = 30.0 + 50.0 * (samples / 1e6) ** -c
    fit = lc.fit_power_law(samples, values)
    assert fit.c == pytest.approx(c, rel=1e-3)
    assert (fit.a, fit.b) == (pytest.approx(30.0, abs=1e-3), pytest.approx(50.0, rel=1e-3))
    # the inverse lands on the sample count that produced a value; below the floor never
    assert fit.samples_for(float(values[4])) == pytest.approx(samples[4], rel=1e-3)
    assert fit.samples_for(29.0) == math.inf
    # a little noise moves the exponent a little; each leave-one-out refit stays close
    noisy = values + np.random.default_rng(0).normal(0, 0.02, len(values))
    assert lc.fit_power_law(samples, noisy).c == pytest.approx(c, rel=0.15)
    assert all(f.c == pytest.approx(c, rel=0.3) for f in lc.leave_one_out(samples, noisy))


def test_fit_refuses_too_few_or_bad_points(lc):
    with pytest.raises(lc.LearningCurveError, match="at least 3 points"):
        lc.fit_power_law([1e6, 2e6], [3.0, 2.0])
    with pytest.raises(lc.LearningCurveError, match="positive"):
        lc.fit_power_law([0.0, 1e6, 2e6], [3.0, 2.0, 1.0])


def test_log_linear_fit_and_its_inverse(lc):
    samples = np.array([1e6, 1e7, 1e8])
    fit = lc.fit_log_linear(samples, 40.0 - 5.0 * np.log10(samples))
    assert fit["beta_per_decade"] == pytest.approx(-5.0)
    assert lc._needed_log_linear(fit, 1e7, 5.0) == pytest.approx(1e8)


def test_script_on_the_records(lc, tmp_path, capsys):
    out, fig = tmp_path / "lc.json", tmp_path / "lc.png"
    assert lc.main(["--out-json", str(out), "--figure", str(fig)]) == 0
    assert fig.stat().st_size > 0 and "objects_fused" in capsys.readouterr().out
    res = json.loads(out.read_text())
    rows = {r["export"]: r for r in res["rows"]}
    exports = lc.read_exports()
    assert set(rows) == {e["export"] for e in exports}
    # the shipped weights are the reference: comparable, and their numbers those of their raw file
    shipped = rows[lc.SHIPPED]
    assert shipped["objects_not_comparable"] == "" and shipped["patch_samples"] == res["shipped_patch_samples"]
    raw = json.loads((lc.RESULTS / shipped["objects_file"]).read_text())["summary"]["ours"]["objects"]
    assert shipped["objects_fused"] == raw["fused"]["mean"]
    # runs at 2 threads and replicates of the same weights are kept out of the fits
    assert "threads" in rows["interim"]["objects_not_comparable"]
    assert "replicate" in rows["published-arch-2026-11-27 with later code"]["objects_not_comparable"]
    fitted = res["fits"]["all comparable"]["exports"]
    assert lc.SHIPPED in fitted and "interim" not in fitted
    assert all(rows[e]["architecture"] == "publication" for e in res["fits"]["publication network"]["exports"])
    # a budget row per group, scoring, target and model, continuing from the shipped weights
    assert len(res["budget"]) == 2 * 2 * 2 * 2
    for b in res["budget"]:
        assert b["more_than_shipped"] == pytest.approx(b["patch_samples"] - res["shipped_patch_samples"])
    # throughputs are the medians of the training logs' rates, warm-up rows dropped
    for key, logs in (("cpu_2_threads", lc.CPU_LOGS), ("h200", lc.GPU_LOGS)):
        rates = [float(line.split(",")[3]) for name in logs
                 for line in (lc.RESULTS / name).read_text().splitlines()[2:]]
        assert res["throughput"][key] == pytest.approx(float(np.median(rates)))


def test_script_names_a_missing_record(lc, tmp_path):
    bad = tmp_path / "exports.csv"
    bad.write_text((lc.RESULTS / lc.EXPORTS_CSV).read_text().replace("objects_release.json", "missing.json"))
    with pytest.raises(SystemExit):
        lc.main(["--exports", str(bad), "--out-json", str(tmp_path / "x.json"), "--figure", str(tmp_path / "x.png")])
    assert not (tmp_path / "x.json").exists()


def test_patch_counts_agree_with_the_exports_configs(lc):
    exports = lc.read_exports()
    checks = lc.check_patch_counts(exports)
    assert checks[lc.SHIPPED]["added"] == 1180160
    wrong = [{**e, "patch_samples": e["patch_samples"] + 1} if e["export"] == lc.SHIPPED else e for e in exports]
    with pytest.raises(lc.LearningCurveError, match="default \\(bundled\\) lists 29,015,041"):
        lc.check_patch_counts(wrong)
