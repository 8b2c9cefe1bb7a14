"""Paired, per-image comparison of two objects-suite runs (``mssfs evaluate --compare``).

Two ``mssfs evaluate --suite objects`` runs over the same images and seeds (same
``--n-objects``, ``--n-reliefs``, ``--seed``, ``--samples`` and ``--size``) but with different
weights or settings give every image a mean angular error under both. Run-to-run averages
over a few dozen images move by about a degree; pairing the images removes the variation
between images and leaves the one between the runs. For every image kind and scoring
(mean of samples, best of N, fused) :func:`compare_runs` gives both means, the mean paired
difference B - A with its standard error, on how many images B is lower and the two-sided
Wilcoxon signed-rank p-value (:func:`mssfs.evaluation.metrics.paired_difference`).

A method with one output per image (``n`` = 1, e.g. ``regression``) stands in under every
scoring of the other run with its single result.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .metrics import paired_difference

__all__ = ["SCORINGS", "compare_runs", "comparison_table", "load_run_items", "parse_item_range"]

#: The per-image scorings of the objects suite, in table order.
SCORINGS = ("mean", "best", "fused")

#: Fewest paired images for which a Wilcoxon p-value is reported (NaN below).
MIN_IMAGES_FOR_P = 6


def load_run_items(path: str | Path, method: str, kind: str | None = None) -> list[dict]:
    """The per-image entries of ``method`` in an objects-suite ``results.json``.

    Each entry holds ``item`` (image id), ``kind`` (``objects`` or ``reliefs``), ``n``
    (outputs per image) and one ``{"mean": degrees, ...}`` dict per scoring. With ``kind``,
    only that kind's entries. Raises :class:`ValueError` naming ``path`` when the file
    cannot be read or has no entries for ``method`` (or ``kind``).
    """
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read an evaluation results.json ({exc})") from exc
    items = data.get("items", {}).get(method) if isinstance(data, dict) else None
    if not items:
        raise ValueError(f"{path}: no per-image results for method {method!r}")
    if kind is not None:
        items = [x for x in items if x.get("kind") == kind]
        if not items:
            raise ValueError(f"{path}: no {kind!r} images for method {method!r}")
    return items


def parse_item_range(spec: str) -> slice:
    """``START:STOP`` (either may be empty, counted from 0) as a :class:`slice`.

    Raises :class:`ValueError` for anything else.
    """
    try:
        start, stop = spec.split(":")
        return slice(int(start) if start.strip() else None, int(stop) if stop.strip() else None)
    except ValueError:
        raise ValueError(f"item range {spec!r}: expected START:STOP, e.g. 20:40") from None


def _select(run: list[dict], items: slice) -> list[dict]:
    """The entries of ``run`` in the ``items`` slice of each kind's images, in run order."""
    keep = set()
    for kind in dict.fromkeys(x["kind"] for x in run):
        keep.update(id(x) for x in [y for y in run if y["kind"] == kind][items])
    return [x for x in run if id(x) in keep]


def compare_runs(a: list[dict], b: list[dict], items: slice = slice(None)) -> list[dict]:
    """One row per (kind, scoring) over the images both runs scored, in A's order.

    ``a``, ``b``: entries of :func:`load_run_items`. ``items``: only that slice of each
    kind's images, taken from each run (so ``0:20`` pairs a 20-object run with the first
    20 objects of a 40-object run). The selected images must be the same, in the same
    order (else :class:`ValueError`). Each row
    is ``{"kind", "scoring"}`` plus the keys of
    :func:`~mssfs.evaluation.metrics.paired_difference` (``n``, ``a``, ``b``, ``diff``,
    ``se``, ``b_lower``, ``p``), with B - A as the difference.
    """
    a, b = _select(a, items), _select(b, items)
    if [x["item"] for x in a] != [x["item"] for x in b]:
        raise ValueError("the two runs scored different images (or in another order); use the same "
                         "--n-objects/--n-reliefs/--seed/--size for both, or pair a part with --kind/--items")
    kinds = list(dict.fromkeys(x["kind"] for x in a))
    pairs_all = list(zip(a, b))
    rows = []
    for kind in kinds:
        for sc in SCORINGS:
            pairs = [(x[sc if x.get("n", 1) > 1 else "mean"]["mean"], y[sc]["mean"]) for x, y in pairs_all
                     if x["kind"] == kind and (sc in x or x.get("n", 1) == 1) and sc in y]
            if pairs:
                va, vb = np.array(pairs).T
                rows.append({"kind": kind, "scoring": sc, **paired_difference(va, vb, min_n_for_p=MIN_IMAGES_FOR_P)})
    return rows


def comparison_table(rows: list[dict]) -> str:
    """The rows of :func:`compare_runs` as a Markdown table (errors in degrees)."""
    lines = ["| images | scoring | n | A mean err. | B mean err. | B - A (± s.e.) | B lower on | Wilcoxon p |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['kind']} | {r['scoring']} | {r['n']} | {r['a']:.1f}° | {r['b']:.1f}° | "
              f"{r['diff']:+.2f}° ± {r['se']:.2f} | {r['b_lower']}/{r['n']} | {r['p']:.3f} |" for r in rows]
    return "\n".join(lines)
