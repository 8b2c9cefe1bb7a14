"""Evaluation result tables (Markdown) and the results files.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..core.fileio import atomic_path
from .methods import Method

__all__ = ["objects_table", "stimuli_table", "strict_table", "write_results"]


def _deg(x) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.1f}"


def _ari(x) -> str:
    return "—" if x is None else f"{x:.2f}"


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.0f} %"


def _ratio(x) -> str:
    return "—" if x is None else f"{x:.2f}"


_SCORING_LABEL = {"mean": "mean of samples", "best": "best of N", "fused": "fused"}


def objects_table(results: dict, methods: list[Method], skipped: dict[str, str], subset: str) -> str:
    """Markdown table of one subset (``objects``, ``reliefs`` or ``all``) of :func:`run_objects` output."""
    head = ("| method | scoring | mean err. | median err. | < 11.25° | < 22.5° | < 30° | seam index | s / image |\n"
            "|---|---|---:|---:|---:|---:|---:|---:|---:|")
    lines = [head]
    for m in methods:
        s = results["summary"][m.name]
        if subset not in s:
            continue
        rows = ("mean", "best", "fused") if m.stochastic else ("mean",)
        for k, scoring in enumerate(rows):
            a = s[subset][scoring]
            label = _SCORING_LABEL[scoring] if m.stochastic else "single (N = 1)"
            name, secs = (m.name, f"{s['seconds_per_image']:.1f}") if k == 0 else ("", "")
            seams = _ratio(s[subset].get("seam_index")) if k == 0 else ""
            lines.append(
                f"| {name} | {label} | {_deg(a['mean'])}° | {_deg(a['median'])}° | "
                f"{_pct(a['under_11.25'])} | {_pct(a['under_22.5'])} | {_pct(a['under_30'])} | {seams} | {secs} |"
            )
    for name, why in skipped.items():
        lines.append(f"| {name} | skipped: {why} | | | | | | | |")
    return "\n".join(lines)


def stimuli_table(results: dict, methods: list[Method], skipped: dict[str, str]) -> str:
    """Markdown table of :func:`run_stimuli` output: bundled stimuli one row each, the
    generated layouts averaged into one row per method."""
    head = ("| input | method | N | consistent | true | inverted | one-region | modes | modes ~ readings (ARI) | "
            "spread | seam index | s / image |\n"
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    lines = [head]
    names = [r["item"] for r in results["items"][methods[0].name] if r["kind"] == "bundled"] if methods else []
    for name in names + ["layouts"]:
        for m in methods:
            s = results["summary"][m.name]
            if name == "layouts":
                if "layouts" not in s:
                    continue
                r = s["layouts"]
                label, n, modes = f"layouts (mean of {r['count']})", results["items"][m.name][-1]["n"], f"{r['n_modes']:.1f}"
            else:
                r = next(x for x in results["items"][m.name] if x["item"] == name)
                label, n, modes = name, r["n"], str(r["n_modes"])
            lines.append(f"| {label} | {m.name} | {n} | {_pct(r['consistent'])} | {_pct(r['true'])} | "
                         f"{_pct(r['inverted'])} | {_pct(r.get('one_region'))} | {modes} | {_ari(r.get('reading_ari'))} | "
                         f"{_deg(r['spread'])}° | {_ratio(r.get('seam_index'))} | {s['seconds_per_image']:.1f} |")
    for name, why in skipped.items():
        lines.append(f"| | {name} | skipped: {why} | | | | | | | | | |")
    return "\n".join(lines)


def strict_table(results: dict, methods: list[Method]) -> str:
    """Markdown table of the strict scoring in :func:`run_stimuli` output (flat or undecided
    counts against a sample; docs/evaluation.md): bundled stimuli one row each, the
    generated layouts averaged into one row per method; stochastic methods only."""
    from ..analysis.clustering import INVERSION_CORRELATION

    head = ("| input | method | N | consistent (strict) | true | inverted | strict one-region | "
            "lost: shallow / inverted / other | two largest modes | their correlation | a reading and its inversion |\n"
            "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---|")
    lines = [head]
    sampled = [m for m in methods if m.stochastic]
    names = [r["item"] for r in results["items"][sampled[0].name] if r["kind"] == "bundled"] if sampled else []
    for name in names + ["layouts"]:
        for m in sampled:
            rows = results["items"][m.name]
            if name == "layouts":
                mean = results["summary"][m.name].get("layouts")
                if mean is None:
                    continue
                lines.append(f"| layouts (mean of {mean['count']}) | {m.name} | {rows[-1]['n']} | "
                             f"{_pct(mean.get('strict_consistent'))} | {_pct(mean.get('strict_true'))} | "
                             f"{_pct(mean.get('strict_inverted'))} | — | — | {_pct(mean.get('pair_share'))} | | |")
                continue
            r = next(x for x in rows if x["item"] == name)
            one = [x for x in (r.get("strict_one_region") or []) if x is not None]
            corr = r.get("pair_correlation")
            pair = "—" if corr is None else ("yes" if corr <= INVERSION_CORRELATION else "no")
            lines.append(f"| {name} | {m.name} | {r['n']} | {_pct(r.get('strict_consistent'))} | {_pct(r.get('strict_true'))} | "
                         f"{_pct(r.get('strict_inverted'))} | {_ratio(float(np.mean(one)) if one else None)} | "
                         f"{_lost(r.get('strict_lost'))} | {_pct(r.get('pair_share'))} | {_ratio(corr)} | {pair} |")
    return "\n".join(lines)


def _lost(lost: dict | None) -> str:
    """Mean shares of a one-region figure's shading lost as shallow / inverted / other, or —."""
    return "—" if not lost else " / ".join(_ratio(lost[k]) for k in ("shallow", "inverted", "other"))


def write_results(out_dir, markdown: str, data: dict) -> tuple[Path, Path]:
    """Write ``results.md`` and ``results.json`` into ``out_dir`` (each atomically)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md, js = out / "results.md", out / "results.json"
    for path, text in ((js, json.dumps(data, indent=1, default=_json_default) + "\n"),
                       (md, markdown if markdown.endswith("\n") else markdown + "\n")):
        with atomic_path(path) as tmp:
            tmp.write_text(text)
    return md, js


def _json_default(x):
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")
