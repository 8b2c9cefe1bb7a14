"""Learning curve: suite errors against the patch samples the weights have seen.

Question: how many patch samples of training do the targets of the default preset need
(circles, rings, star and snake: at least 80 % of samples consistent; objects: best of 8
and fused lower than the shipped weights' with p < 0.05 on the 40 held-out objects), and
how long is that on this 2-core CPU and on one H100?
Answer: docs/training.md#learning-curve-how-much-training-the-targets-need, with the
numbers in docs/results/learning_curve.json and the figure docs/learning_curve.png.

Nothing is trained or sampled here: the script reads the records in docs/results/ —
the exports of the default weights' lineage and their continuations
(``learning_curve_exports.csv``: patch samples seen in all, network, recipe, evaluation
threads, the raw suite files and the validation loss on the common 512 held-out patches,
each row with the record it was taken from), the suite results those rows name, and the
training logs. Only suite runs with the same settings as the shipped weights' reference
run (20 objects and 10 reliefs at 64 x 64, 4 samples, seed 0, bf16, one thread, the
`fast` schedule without shading guidance or region flips) enter a fit; the others are
listed with the reason they are left out.

Each series is fitted with ``error = a + b * (samples / 1e6) ** -c`` (least squares; for
each exponent ``c`` the best ``a`` and ``b`` are linear, so the fit is a one-dimensional
search over ``c``), with leave-one-out refits as its uncertainty::

    python experiments/learning_curve.py
    python experiments/learning_curve.py --out-json /tmp/lc.json --figure /tmp/lc.png
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
from scipy import optimize, stats

from mssfs.core.fileio import save_json

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
EXPORTS_CSV = "learning_curve_exports.csv"
SHIPPED = "default (bundled)"
# the suite settings every fitted point must share (those of the shipped weights' reference run)
OBJECTS_SETTINGS = {"suite": "objects", "samples": 4, "n_objects": 20, "n_reliefs": 10, "size": 64, "seed": 0,
                    "preset": "fast", "bf16": True}
OBJECTS_REFERENCE = "objects_candidate_linear_attn_from1.json"
STIMULI_SETTINGS = {"suite": "stimuli", "samples": 16, "size": 128, "seed": 0, "preset": "fast", "bf16": True}
STIMULI_REFERENCE = "stimuli_shipped.json"
# the targets, measured on the default preset as it is now
CURRENT_OBJECTS = "objects40_fast_regions.json"
CURRENT_BEST_OF_8 = "objects_fused_vs_samples_40.json"
CURRENT_STIMULI = ("stimuli_fast.json", "stimuli_circles_seed100_regions.json")
CURRENT_ONE_REGION = "refinement_summary.json"
TARGET_CONSISTENT = 0.8
TARGET_OBJECTS = 40
ALPHA = 0.05
POWER = 0.8
CPU_LOGS = ("cpu_probe_linear_attn_from1_log.csv", "cpu_batch2048_2026-11-27_log.csv")
GPU_LOGS = ("gpu_2026-11-27_run1_log.csv", "gpu_2026-11-27_run2_log.csv")
# H100 (SXM) against H200: the same compute, 3.35 against 4.8 TB/s of memory bandwidth; the
# training step is memory-bound (docs/benchmarks.md#training-throughput), so an H100 gives
# between the bandwidth ratio and the full H200 rate
H100_OVER_H200 = (3.35 / 4.8, 1.0)
# logs on the common held-out patches: (file, patch samples at step 0, patches per step, first step kept)
VAL_LOGS = (("cpu_probe_linear_attn_from1_log.csv", 27834880, 256, 4610),
            ("cpu_batch2048_2026-11-27_log.csv", 29015040, 2048, 0))
EXPONENTS = (0.25, 0.5, 1.0, 2.0)


class LearningCurveError(ValueError):
    """A record the learning curve needs is missing or unreadable."""


class PowerLaw(NamedTuple):
    """``y = a + b * (x / 1e6) ** -c`` fitted to points ``(x, y)``; ``rmse`` of the fit."""

    a: float
    b: float
    c: float
    rmse: float
    n: int

    def __call__(self, samples):
        return self.a + self.b * (np.asarray(samples, dtype=float) / 1e6) ** -self.c

    def samples_for(self, value: float) -> float:
        """Patch samples at which the curve reaches ``value``; ``inf`` where it never does."""
        if self.b <= 0 or value <= self.a:
            return math.inf
        return 1e6 * (self.b / (value - self.a)) ** (1.0 / self.c)


def _linear_in_ab(x, y, c):
    """Best ``a, b`` and the sum of squared residuals for a fixed exponent ``c``."""
    design = np.stack([np.ones_like(x), x ** -c], axis=1)
    (a, b), *_ = np.linalg.lstsq(design, y, rcond=None)
    return a, b, float(np.sum((design @ np.array([a, b]) - y) ** 2))


def fit_power_law(samples, values, c_range=(0.02, 5.0), c=None) -> PowerLaw:
    """Least-squares fit of ``values = a + b * (samples / 1e6) ** -c``.

    ``samples``, ``values``: 1-D arrays of equal length (at least 3 points, or 2 with a
    fixed ``c``). The exponent is searched on a log grid over ``c_range`` and refined by a
    bounded scalar search; ``c`` given fixes it.
    """
    x = np.asarray(samples, dtype=float) / 1e6
    y = np.asarray(values, dtype=float)
    if x.ndim != 1 or x.shape != y.shape:
        raise LearningCurveError(f"samples and values must be 1-D of one length, got {x.shape} and {y.shape}")
    if len(x) < (2 if c is not None else 3):
        raise LearningCurveError(f"a power-law fit needs at least {2 if c is not None else 3} points, got {len(x)}")
    if np.any(x <= 0) or not np.all(np.isfinite(y)):
        raise LearningCurveError("samples must be positive and values finite")
    if c is None:
        grid = np.geomspace(*c_range, 200)
        sse = [_linear_in_ab(x, y, g)[2] for g in grid]
        i = int(np.argmin(sse))
        lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
        c = float(optimize.minimize_scalar(lambda g: _linear_in_ab(x, y, g)[2], bounds=(lo, hi),
                                           method="bounded").x) if hi > lo else float(grid[i])
    a, b, sse = _linear_in_ab(x, y, c)
    return PowerLaw(float(a), float(b), float(c), math.sqrt(sse / len(x)), len(x))


def leave_one_out(samples, values) -> list[PowerLaw]:
    """The fit repeated with each point left out once (points beyond 3 only)."""
    x, y = np.asarray(samples, dtype=float), np.asarray(values, dtype=float)
    if len(x) < 4:
        return []
    keep = ~np.eye(len(x), dtype=bool)
    return [fit_power_law(x[k], y[k]) for k in keep]


def _read_json(name):
    path = RESULTS / name
    try:
        return json.loads(path.read_text())
    except OSError as e:
        raise LearningCurveError(f"{path}: cannot read ({e.strerror})") from None
    except json.JSONDecodeError as e:
        raise LearningCurveError(f"{path}: not JSON ({e})") from None


def read_exports(path=None) -> list[dict]:
    """The rows of ``learning_curve_exports.csv`` with typed columns."""
    path = Path(path) if path else RESULTS / EXPORTS_CSV
    try:
        rows = list(csv.DictReader(path.open()))
    except OSError as e:
        raise LearningCurveError(f"{path}: cannot read ({e.strerror})") from None
    for i, r in enumerate(rows, start=2):
        try:
            r["patch_samples"] = int(r["patch_samples"])
            r["threads"] = int(r["threads"])
            r["val_loss"] = float(r["val_loss"]) if r["val_loss"] else None
        except (KeyError, ValueError) as e:
            raise LearningCurveError(f"{path}, line {i}: bad or missing column ({e})") from None
    return rows


def check_patch_counts(exports, root=ROOT) -> dict:
    """Check the list's counts for the kept exports against their ``config.json``.

    ``published-arch-2026-11-27`` = the previous weights + GPU run 1 + GPU run 2 (its
    ``init.patches_seen`` and ``patches_seen``); the bundled weights = that + their own
    ``patches_seen``. Raises :class:`LearningCurveError` on a mismatch.
    """
    by_name = {e["export"]: e["patch_samples"] for e in exports}
    checks = {}
    for export, folder, parent in (("published-arch-2026-11-27", "candidates/published-arch-2026-11-27",
                                    "previous 2026-11-26"),
                                   (SHIPPED, "src/mssfs/model/weights/default", "published-arch-2026-11-27")):
        path = Path(root) / folder / "config.json"
        try:
            cfg = json.loads(path.read_text())["training"]
        except (OSError, json.JSONDecodeError, KeyError) as e:
            raise LearningCurveError(f"{path}: cannot read ({e})") from None
        added = cfg["patches_seen"] + (cfg["init"]["patches_seen"] if export != SHIPPED else 0)
        if by_name[parent] + added != by_name[export]:
            raise LearningCurveError(f"{EXPORTS_CSV}: {export} lists {by_name[export]:,} patch samples, but "
                                     f"{by_name[parent]:,} ({parent}) + {added:,} ({path}) = {by_name[parent] + added:,}")
        checks[export] = {"config": str(path.relative_to(root)), "parent": parent, "added": added}
    return checks


def _schedule_key(result, method="ours"):
    """The sampler schedule of a suite run without its name: what decides comparability."""
    sched = dict(result["methods"][method]["schedule"])
    for k in ("name", "description"):
        sched.pop(k, None)
    sched["stages"] = [{**s, "shading_weight": s.get("shading_weight") or 0.0} for s in sched["stages"]]
    return json.dumps(sched, sort_keys=True)


def _comparable(result, settings, reference, threads):
    """``''`` when a run matches the reference settings, else why it does not."""
    got = {**result["settings"], "suite": result.get("suite")}
    diff = [f"{k} {got.get(k)}" for k, v in settings.items() if got.get(k) != v]
    if diff:
        return "settings differ: " + ", ".join(diff)
    if _schedule_key(result) != reference:
        return "another schedule"
    return "" if threads == 1 else f"{threads} threads (guided samples depend on float rounding)"


def _scores(result, kind, method="ours"):
    """Per-item errors of one image kind: {scoring: array}, items in suite order."""
    items = [it for it in result["items"][method] if it["kind"] == kind]
    return {s: np.array([it[s]["mean"] for it in items]) for s in ("mean", "best", "fused")}


def suite_rows(exports) -> list[dict]:
    """One row per export with its suite numbers and whether it is comparable."""
    obj_ref = _schedule_key(_read_json(OBJECTS_REFERENCE))
    stim_ref = _schedule_key(_read_json(STIMULI_REFERENCE))
    rows = []
    for e in exports:
        row = {k: e[k] for k in ("export", "patch_samples", "architecture", "recipe", "threads", "val_loss", "source")}
        row["replicate_of"] = e["replicate_of"] or None
        row.update(objects_file=e["objects_file"] or None, stimuli_file=e["stimuli_file"] or None)
        if e["objects_file"]:
            res = _read_json(e["objects_file"])
            o, r = res["summary"]["ours"]["objects"], res["summary"]["ours"]["reliefs"]
            row.update(preset=res["settings"]["preset"], n=res["settings"]["samples"],
                       n_objects=o["fused"]["images"], n_reliefs=r["fused"]["images"],
                       objects_mean=o["mean"]["mean"], objects_best=o["best"]["mean"],
                       objects_fused=o["fused"]["mean"], reliefs_fused=r["fused"]["mean"],
                       objects_not_comparable=_comparable(res, OBJECTS_SETTINGS, obj_ref, e["threads"]))
            if e["replicate_of"] and not row["objects_not_comparable"]:
                row["objects_not_comparable"] = f"a replicate of {e['replicate_of']} (code noise, not training)"
        if e["stimuli_file"]:
            res = _read_json(e["stimuli_file"])
            items = {it["item"]: it for it in res["items"]["ours"]}
            circ = items.get("circles")
            row.update(stimuli_not_comparable=_comparable(res, STIMULI_SETTINGS, stim_ref, e["threads"])
                       or (f"a replicate of {e['replicate_of']}" if e["replicate_of"] else ""),
                       circles_consistent=circ["consistent"] if circ else None,
                       circles_n=circ["n"] if circ else None,
                       modes={k: it["n_modes"] for k, it in items.items()})
        rows.append(row)
    return rows


def paired_spread(exports, rows) -> dict:
    """Standard deviation of per-object differences between exports of one comparable series.

    Consecutive comparable exports (by patch samples) are paired object by object; the
    median of their standard deviations says how large a mean improvement a paired test
    on ``TARGET_OBJECTS`` objects can see.
    """
    fitted = [r for r in rows if r.get("objects_not_comparable") == ""]  # replicates are marked not comparable
    fitted.sort(key=lambda r: r["patch_samples"])
    pairs, sds = [], {"best": [], "fused": []}
    for lo, hi in itertools.pairwise(fitted):
        a = _scores(_read_json(lo["objects_file"]), "objects")
        b = _scores(_read_json(hi["objects_file"]), "objects")
        entry = {"from": lo["export"], "to": hi["export"]}
        for s, sd_list in sds.items():
            d = b[s] - a[s]
            sd_list.append(float(np.std(d, ddof=1)))
            entry[s] = {"mean_difference": float(d.mean()), "sd": sd_list[-1],
                        "wilcoxon_p": float(stats.wilcoxon(d).pvalue)}
        pairs.append(entry)
    n = TARGET_OBJECTS
    t_crit = stats.t.ppf(1 - ALPHA / 2, n - 1)
    z = stats.norm.ppf(1 - ALPHA / 2) + stats.norm.ppf(POWER)
    out = {"pairs": pairs}
    for s, v in sds.items():
        sd = float(np.median(v))
        out[s] = {"sd_median": sd, "sd_range": [min(v), max(v)],
                  "just_significant": float(t_crit * sd / math.sqrt(n)),
                  "with_80_percent_power": float(z * sd / math.sqrt(n))}
    return out


def replicate_noise(rows) -> list[dict]:
    """Mean-error differences between runs of the same weights (other code or thread count)."""
    by_name = {r["export"]: r for r in rows}
    out = []
    for r in rows:
        if r["replicate_of"] and "objects_fused" in r:
            base = by_name[r["replicate_of"]]
            out.append({"export": r["export"], **{s: r[s] - base[s] for s in
                        ("objects_mean", "objects_best", "objects_fused", "reliefs_fused")}})
    return out


def fit_log_linear(samples, values) -> dict:
    """``values = alpha + beta * log10(samples)``: slope per decade with its standard error."""
    reg = stats.linregress(np.log10(np.asarray(samples, dtype=float)), np.asarray(values, dtype=float))
    return {"alpha": float(reg.intercept), "beta_per_decade": float(reg.slope), "beta_se": float(reg.stderr),
            "p": float(reg.pvalue)}


def _needed_log_linear(fit, start, drop):
    """Patch samples at which a log-linear fit is ``drop`` below its value at ``start``."""
    return start * 10 ** (drop / -fit["beta_per_decade"]) if fit["beta_per_decade"] < 0 else math.inf


def _needed(fit, start, drop):
    """Patch samples at which ``fit`` is ``drop`` below its value at ``start``."""
    return fit.samples_for(float(fit(start)) - drop)


def _fit_summary(samples, values, start=None, drops=None):
    fit = fit_power_law(samples, values)
    loo = leave_one_out(samples, values)
    lin = fit_log_linear(samples, values)
    out = {"fit": fit._asdict(), "c_at_bound": not 0.021 < fit.c < 4.99, "log_linear": lin,
           "leave_one_out_c": [f.c for f in loo],
           "at_fixed_c": {str(c): fit_power_law(samples, values, c=c)._asdict() for c in EXPONENTS}}
    if start is not None:
        out["needed"] = {}
        for name, drop in drops.items():
            fixed = [_needed(fit_power_law(samples, values, c=c), start, drop) for c in EXPONENTS]
            out["needed"][name] = {"drop": drop, "fit": _needed(fit, start, drop),
                                   "leave_one_out": [_needed(f, start, drop) for f in loo],
                                   "log_linear": _needed_log_linear(lin, start, drop),
                                   "at_fixed_c": dict(zip(map(str, EXPONENTS), fixed))}
    return out


def _log_rows(name):
    path = RESULTS / name
    try:
        return list(csv.DictReader(path.open()))
    except OSError as e:
        raise LearningCurveError(f"{path}: cannot read ({e.strerror})") from None


def throughput() -> dict:
    """Median patch samples per second of the CPU and GPU training logs (warm-up rows dropped)."""
    def rates(names):
        return [float(r["patches_per_s"]) for n in names for r in _log_rows(n)[1:]]
    cpu, gpu = rates(CPU_LOGS), rates(GPU_LOGS)
    h200 = float(np.median(gpu))
    return {"cpu_2_threads": float(np.median(cpu)), "cpu_range": [float(np.percentile(cpu, 10)), float(np.percentile(cpu, 90))],
            "h200": h200, "h100_assumed": [h200 * f for f in H100_OVER_H200],
            "cpu_logs": list(CPU_LOGS), "gpu_logs": list(GPU_LOGS)}


def validation_logs() -> list[dict]:
    """Validation loss on the common held-out patches against patch samples, from the logs."""
    out = []
    for name, start, per_step, first in VAL_LOGS:
        pts = [(start + int(r["step"]) * per_step, float(r["val_loss"]))
               for r in _log_rows(name) if r["val_loss"] and int(r["step"]) >= first]
        out.append({"log": name, "samples": [p[0] for p in pts], "val_loss": [p[1] for p in pts],
                    "log_linear": fit_log_linear([p[0] for p in pts], [p[1] for p in pts])})
    return out


def current_targets() -> dict:
    """Where the default preset stands now (shipped weights only: one amount of training)."""
    obj = _read_json(CURRENT_OBJECTS)["summary"]["ours"]["objects"]
    by_k = [it["k"] for it in _read_json(CURRENT_BEST_OF_8)["items"] if it["kind"] == "objects"]
    stim = {}
    for name in CURRENT_STIMULI:
        res = _read_json(name)
        for it in res["items"]["ours"]:
            stim.setdefault(it["item"], []).append({"file": name, "seed": res["settings"]["seed"], "n": it["n"],
                                                    "consistent": it["consistent"], "modes": it["n_modes"]})
    one_region = {k: v["one_region_raw"] for k, v in _read_json(CURRENT_ONE_REGION)["stimuli"].items()}
    return {"objects40_fused": obj["fused"]["mean"], "objects40_best_of_4": obj["best"]["mean"],
            "objects40_best_of_8_without_additions": float(np.mean([k["8"]["best"] for k in by_k])),
            "objects40_best_of_4_without_additions": float(np.mean([k["4"]["best"] for k in by_k])),
            "stimuli": stim, "one_region_share_N8": one_region}


def circles_trend(rows) -> dict:
    """Slope of circles consistency against log10 patch samples, with its 95 % interval."""
    pts = [r for r in rows if r.get("stimuli_not_comparable") == "" and r.get("circles_consistent") is not None]
    x = np.log10([r["patch_samples"] for r in pts])
    y = np.array([r["circles_consistent"] for r in pts])
    reg = stats.linregress(x, y)
    half = stats.t.ppf(0.975, len(x) - 2) * reg.stderr
    return {"points": [{"export": r["export"], "patch_samples": r["patch_samples"], "consistent": r["circles_consistent"],
                        "n": r["circles_n"]} for r in pts],
            "slope_per_decade": float(reg.slope), "slope_95": [float(reg.slope - half), float(reg.slope + half)],
            "binomial_95_of_one_point": [float(v) for v in stats.binomtest(2, 16).proportion_ci()]}


def analyse(exports) -> dict:
    counts = check_patch_counts(exports)
    rows = suite_rows(exports)
    shipped = next(r for r in rows if r["export"] == SHIPPED)
    spread = paired_spread(exports, rows)
    fits = {}
    groups = {"all comparable": lambda r: True,
              "publication network": lambda r: r["architecture"] == "publication"}
    for gname, keep in groups.items():
        pts = [r for r in rows if r.get("objects_not_comparable") == "" and keep(r)]
        xs = [r["patch_samples"] for r in pts]
        fits[gname] = {"exports": [r["export"] for r in pts]}
        for series in ("objects_mean", "objects_best", "objects_fused", "reliefs_fused"):
            drops = None
            if series in ("objects_best", "objects_fused"):
                sp = spread[series.split("_")[1]]
                drops = {"just_significant": sp["just_significant"], "with_80_percent_power": sp["with_80_percent_power"]}
            fits[gname][series] = _fit_summary(xs, [r[series] for r in pts],
                                               shipped["patch_samples"] if drops else None, drops)
        vpts = [r for r in rows if r["val_loss"] is not None and keep(r) and not r["replicate_of"]]
        fits[gname]["val_loss"] = _fit_summary([r["patch_samples"] for r in vpts], [r["val_loss"] for r in vpts])
    both = [r for r in rows if r["val_loss"] is not None and r.get("objects_not_comparable") == ""]
    rho = stats.spearmanr([r["val_loss"] for r in both], [r["objects_fused"] for r in both])
    rate = throughput()
    start = shipped["patch_samples"]
    budget = []
    for gname, g in fits.items():
        for series in ("objects_best", "objects_fused"):
            for target, need in g[series]["needed"].items():
                for how in ("fit", "log_linear"):
                    more = need[how] - start
                    budget.append({"group": gname, "series": series, "target": target, "model": how,
                                   "patch_samples": need[how], "more_than_shipped": more,
                                   "cpu_hours": hours(more, rate["cpu_2_threads"]),
                                   "h200_minutes": hours(more, rate["h200"]) * 60,
                                   "h100_minutes": [hours(more, r) * 60 for r in rate["h100_assumed"]][::-1]})
    return {"question": __doc__.split("\n\n")[1].replace("\n", " "),
            "patch_count_checks": counts, "rows": rows, "paired_spread": spread, "replicates": replicate_noise(rows), "fits": fits,
            "val_loss_vs_objects_fused": {"exports": [r["export"] for r in both], "spearman": float(rho.statistic),
                                          "p": float(rho.pvalue)},
            "validation_logs": validation_logs(), "circles": circles_trend(rows), "current": current_targets(),
            "throughput": rate, "budget": budget, "shipped_patch_samples": start}


def hours(samples, rate):
    """Wall hours for ``samples`` patch samples at ``rate`` per second (``inf`` passes through)."""
    return samples / rate / 3600.0


def figure(result, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mssfs.analysis.plots import save_figure

    rows = result["rows"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    grid = np.geomspace(1e6, 3e8, 200)
    ax = axes[0]
    for series, colour in (("objects_mean", "C0"), ("objects_best", "C1"), ("objects_fused", "C2")):
        for r in rows:
            if series not in r:
                continue
            ok = r["objects_not_comparable"] == ""
            marker = "o" if r["architecture"] == "publication" else "s"
            ax.plot(r["patch_samples"], r[series], marker, color=colour, mfc=colour if ok else "none")
        f = result["fits"]["all comparable"][series]["fit"]
        ax.plot(grid, PowerLaw(**f)(grid), "-", color=colour, lw=1,
                label=f"{series.replace('objects_', 'objects ')}: {f['a']:.1f} + {f['b']:.1f} S^-{f['c']:.2f}")
    ax.axvline(result["shipped_patch_samples"], color="grey", ls=":", lw=1)
    ax.set(xscale="log", ylim=(25, 50), xlabel="patch samples seen", ylabel="mean angular error (deg)",
           title="objects suite, 20 objects, N = 4\n(open: left out; squares: no level-0 attention)")
    ax.legend(fontsize=7)
    ax = axes[1]
    vp = [r for r in rows if r["val_loss"] is not None]
    ax.plot([r["patch_samples"] for r in vp], [r["val_loss"] for r in vp], "ko", label="exports")
    for log in result["validation_logs"]:
        ax.plot(log["samples"], log["val_loss"], "-", lw=1, label=log["log"])
    f = result["fits"]["all comparable"]["val_loss"]["fit"]
    ax.plot(grid, PowerLaw(**f)(grid), "k--", lw=1, label="fit over exports")
    ax.set(xscale="log", xlabel="patch samples seen", ylabel="validation loss",
           title="validation loss\n(512 common held-out patches)")
    ax.legend(fontsize=7)
    ax = axes[2]
    for p in result["circles"]["points"]:
        lo, hi = stats.binomtest(round(p["consistent"] * p["n"]), p["n"]).proportion_ci()
        ax.errorbar(p["patch_samples"], p["consistent"], yerr=[[p["consistent"] - lo], [hi - p["consistent"]]], fmt="o",
                    color="C3")
    for s in result["current"]["stimuli"]["circles"]:
        ax.plot(result["shipped_patch_samples"], s["consistent"], "*", ms=12, color="C4")
    ax.axhline(TARGET_CONSISTENT, color="grey", ls=":")
    ax.set(xscale="log", ylim=(0, 1), xlabel="patch samples seen", ylabel="share of 16 samples consistent",
           title="circles, 16 samples\n(dots: fast without additions; stars: fast now)")
    for ax in axes:
        ax.title.set_fontsize(10)
    fig.tight_layout()
    return save_figure(fig, path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exports", default=None, help=f"the export list (default docs/results/{EXPORTS_CSV})")
    p.add_argument("--out-json", default=str(RESULTS / "learning_curve.json"))
    p.add_argument("--figure", default=str(ROOT / "docs" / "learning_curve.png"))
    args = p.parse_args(argv)
    for out in (args.out_json, args.figure):
        if not Path(out).resolve().parent.is_dir():
            p.error(f"{out}: its folder does not exist")
    try:
        result = analyse(read_exports(args.exports))
    except LearningCurveError as e:
        p.error(str(e))
    rate = result["throughput"]
    for g, fits in result["fits"].items():
        print(f"## {g}: {', '.join(fits['exports'])}")
        for series in ("objects_mean", "objects_best", "objects_fused", "reliefs_fused", "val_loss"):
            f = fits[series]["fit"]
            lin = fits[series]["log_linear"]
            print(f"{series:14s} a={f['a']:.5g} b={f['b']:.5g} c={f['c']:.3f} rmse={f['rmse']:.3g} "
                  f"{'(c at a bound) ' if fits[series]['c_at_bound'] else ''}"
                  f"loo c={[round(c, 2) for c in fits[series]['leave_one_out_c']]}; log-linear "
                  f"{lin['beta_per_decade']:.4g} +- {lin['beta_se']:.2g} per decade (p {lin['p']:.2g})")
            for name, need in fits[series].get("needed", {}).items():
                more = need["fit"] - result["shipped_patch_samples"]
                print(f"   {name} (-{need['drop']:.2f} deg): {need['fit'] / 1e6:.1f} M patch samples ({more / 1e6:.1f} M more); "
                      f"CPU {hours(more, rate['cpu_2_threads']):.1f} h, H200 {hours(more, rate['h200']) * 60:.1f} min; "
                      f"fixed c {({c: round(v / 1e6, 1) for c, v in need['at_fixed_c'].items()})}; "
                      f"log-linear {need['log_linear'] / 1e6:.1f} M; loo {', '.join(f'{v / 1e6:.0f}' for v in sorted(need['leave_one_out']))} M")
    save_json(args.out_json, result)
    figure(result, args.figure)
    print(f"wrote {args.out_json} and {args.figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
