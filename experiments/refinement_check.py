"""Refinement by the shading against the same samples unrefined (docs/decisions/refinement.md).

Question: does refining every sample and the fused result by the shading
(:mod:`mssfs.sampler.refine`) lower the errors, remove the patch grid and keep the
readings?  Answer: docs/decisions/refinement.md; raw files docs/results/refinement_*.json
(docs/results/README.md).

The refinement is a deterministic function of a sample, the image and the mask, so the
samples are drawn once with the refinement off and scored twice, unrefined and refined
(:func:`mssfs.sampler.refine.refine_samples`, exactly what ``refine: true`` runs): a
paired comparison on identical samples.  Per item it records the errors (mean of N, best
of N, fused) where the truth is known, the seam index (:mod:`mssfs.analysis.seams`), the
one-region consistency (:mod:`mssfs.analysis.one_region`), modes, spread and region
readings (:func:`mssfs.evaluation.metrics.score_stimulus`), the sign distance between
each sample and its refinement (:func:`mssfs.analysis.distances.sign_distances`), the number of known regions whose
reading the refinement turned (``turned_regions``) and, with ``--baselines``, the
classical, regression and flat baselines.  ``--unchecked`` also scores the refinement
without its reading check (``keep_passes = 0``) on the same samples (keys ``ref0_*``,
``sign_dist0``, ``turned_regions0``); ``--undecided T`` scores the refinement in which
regions with mean radial tilt under ``T`` take the light's reading (keys ``ref1_*``);
``--contour-light`` scores the refinement under the light of the occluding contour
(``refine_contour_light``, keys ``ref2_*``); ``--contour-integrability W`` scores it with
``refine_contour_integrability`` W (keys ``ref3_*``); ``--contour-fuse T`` scores the
schedule's refinement with ``refine_contour_fuse`` T, the fused result weighted by the
samples' shading residuals under the contour's light (keys ``ref4_*``; the refined samples
are those of ``ref``, only the fused result differs).
Every scoring includes the strict measures (``*_strict``, ``*_strict_one_region``,
``*_pair_share``, ``*_pair_correlation``) and ``turned_decided*``: known regions that the
raw sample read as a bump or a dent (disc readings) and the refinement turned.

    export OMP_NUM_THREADS=1
    python experiments/refinement_check.py --split objects --count 40 --samples 4 --bf16 --baselines --out obj.json
    python experiments/refinement_check.py --split reliefs --count 30 --samples 4 --bf16 --baselines --out rel.json
    python experiments/refinement_check.py --split stimuli --samples 8 --seed 100 --bf16 --out stim.json
    python experiments/refinement_check.py --split layouts --first 10 --count 10 --samples 4 --bf16 --baselines --out lay.json

``--summary FILE... --pair A,B`` reads result files of this script (items pooled) and
writes the paired comparison of scorings ``A`` and ``B`` (e.g. ``ref,ref2``): for the mean
of N, best of N and fused errors the mean difference ``B - A`` with its standard error,
the items where ``B`` is lower, and the two-sided Wilcoxon signed-rank p; the ratio of the
refinement times; each against the classical baseline where it was scored.  With
``--versus FILE...`` scoring ``B`` comes from another run on the same items (paired by
name), e.g. two schedules::

    python experiments/refinement_check.py --summary a.json b.json --pair ref,ref2 --out summary.json
    python experiments/refinement_check.py --summary fast.json --versus candidate.json --pair ref,ref --out s.json

A file given as ``FILE@TAG`` has its scoring ``TAG`` read as the pair's first scoring (a
``--versus`` file: as its second), so that runs which scored one setting under different tags pool; e.g. ``fast``'s objects
against the classical baseline over the 120 objects of docs/results.md (``ref4`` where
the shading-weighted fusion was the candidate, ``ref`` where ``fast`` already had it)::

    cd docs/results && python ../../experiments/refinement_check.py --pair ref,ref --out pooled.json \
        --summary objects40_fast_fuse_0-19.json@ref4 objects40_fast_fuse_20-39.json@ref4 fuse_objects_260-279.json@ref4 \
        fuse_objects_280-299.json@ref4 contour_guided_fused_fast_300-319.json contour_guided_fused_fast_320-339.json

Objects and reliefs are the objects suite's (64 px, shape seeds from ``2**30 + first``,
image ``i`` with seed ``--seed + i``); stimuli the four bundled ones at 128 px (seeds
``--seed + k``); layouts :func:`mssfs.analysis.layouts.generated_bump_dent_layout` with
seeds ``2**30 + 2**21 + first + k`` at 128 px.  ``--preset`` or ``--schedule FILE`` chooses
the schedule; its own refinement setting is ignored (turned off for the draw), its
refinement settings are those of the ``ref_*`` scoring.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from mssfs.analysis.curvature import convexity_readings
from mssfs.analysis.distances import sign_distances
from mssfs.analysis.regions import disc_readings, region_readings
from mssfs.analysis.seams import output_grid, seam_index
from mssfs.core.fileio import atomic_path
from mssfs.evaluation.items import LAYOUT_SEED_OFFSET, heldout_items, stimulus_items
from mssfs.evaluation.methods import build_methods, method_schedule
from mssfs.evaluation.metrics import error_metrics, fuse_samples, score_stimulus
from mssfs.sampler.api import sample_many
from mssfs.sampler.refine import Refinement, refine_samples
from mssfs.sampler.schedules import load_schedule


def items_of(args) -> list[dict]:
    """Images, masks, truths (None where unknown), regions and layouts of the split."""
    if args.split in ("objects", "reliefs"):
        n = args.count
        all_items = heldout_items(n if args.split == "objects" else 0, n if args.split == "reliefs" else 0, 64, args.first)
        return [dict(name=it.name, image=it.image, mask=it.mask, truth=it.normals, regions=None, layout=None)
                for it in all_items]
    if args.split == "stimuli":
        return [dict(name=it.name, image=it.image, mask=it.mask, truth=None, regions=it.regions, layout=it.layout)
                for it in stimulus_items(128, 0)]
    from mssfs.analysis.layouts import generated_bump_dent_layout
    from mssfs.data.shapes import HELDOUT_SEED_BASE

    out = []
    for k in range(args.first, args.first + args.count):
        seed = HELDOUT_SEED_BASE + LAYOUT_SEED_OFFSET + k
        lay = generated_bump_dent_layout(seed, 128)
        out.append(dict(name=f"layout-{seed}", image=lay.image, mask=lay.mask, truth=lay.normals,
                        regions=lay.regions, layout=lay.layout))
    return out


def score(tag: str, samples: np.ndarray, fused: np.ndarray, item: dict, grid) -> dict:
    """One scoring of one item's samples (``tag``: raw or ref)."""
    m = item["mask"]
    row = {f"seam_{tag}": [float(x) for x in seam_index(samples, m, *grid)],
           f"seam_fused_{tag}": float(seam_index(fused, m, *grid))}
    if item["truth"] is not None:
        per = [error_metrics(s, item["truth"], m)["mean"] for s in samples]
        row.update({f"{tag}_mean": float(np.mean(per)), f"{tag}_best": float(np.min(per)),
                    f"{tag}_fused": float(error_metrics(fused, item["truth"], m)["mean"])})
    sc = score_stimulus(samples, m, item["regions"], item["layout"], item["image"])
    row[f"orc_{tag}"] = [float("nan") if x is None else x for x in sc.one_region_samples]
    row.update({f"{tag}_modes": sc.n_modes, f"{tag}_spread": sc.spread, f"{tag}_strict": sc.strict_consistent,
                f"{tag}_strict_one_region": sc.strict_one_region, f"{tag}_pair_share": sc.pair_share,
                f"{tag}_pair_correlation": sc.pair_correlation})
    if item["regions"] is not None:
        row.update({f"{tag}_consistent": sc.consistent, f"{tag}_true": sc.true, f"{tag}_readings": sc.readings,
                    f"{tag}_disc_readings": sc.disc_readings})
    return row


def baseline_scores(item: dict, baselines) -> dict:
    """The baselines' error (where the truth is known) and seam index on one item."""
    row = {}
    for b in baselines:
        pred = b.run(item["image"], item["mask"], 1, 0)[0]
        if item["truth"] is not None:
            row[b.name] = float(error_metrics(pred, item["truth"], item["mask"])["mean"])
        row[f"seam_{b.name}"] = float(seam_index(pred, item["mask"]))
    return row


def time_key(tag: str) -> str:
    """The key of scoring ``tag``'s refinement time (``ref``: ``refine_s``, ``ref4``: ``refine4_s``)."""
    return "refine_s" if tag == "ref" else f"refine{tag[3:]}_s"


def file_rows(spec: str, a: str) -> list[dict]:
    """The items of one result file, ``spec`` a path or ``PATH@TAG``: then the file's scoring
    ``TAG`` is read under the name ``a`` (its ``TAG_*`` keys and time replace ``a``'s), so
    that files whose setting of interest carries different tags pool into one scoring."""
    path, _, tag = spec.partition("@")
    rows = json.loads(Path(path).read_text())["items"]
    if not tag or tag == a:
        return rows
    if not any(k.startswith(f"{tag}_") for k in rows[0]):
        raise ValueError(f"{path} has no scoring {tag!r}")
    renamed = []
    for row in rows:
        kept = {k: v for k, v in row.items() if not k.startswith(f"{a}_") and k != time_key(a)}
        kept.update({f"{a}_{k[len(tag) + 1:]}": v for k, v in row.items() if k.startswith(f"{tag}_")})
        if time_key(tag) in row:
            kept[time_key(a)] = row[time_key(tag)]
        renamed.append(kept)
    return renamed


def summary(paths: list[str], a: str, b: str, versus: list[str] | None = None) -> dict:
    """Paired comparison of scorings ``a`` and ``b`` over the pooled items of ``paths``, or,
    with ``versus``, of ``a`` in ``paths`` against ``b`` in ``versus`` (items paired by
    name; see the module docstring)."""
    from scipy.stats import wilcoxon

    def pooled(files, name):
        return [row for spec in files for row in file_rows(spec, name)]

    rows = pooled(paths, a)
    if versus:
        by_name = {r["item"]: r for r in pooled(versus, b)}
        missing = [r["item"] for r in rows if r["item"] not in by_name]
        if missing or len(by_name) != len(rows):
            raise ValueError(f"--versus files do not hold the same items (missing: {missing[:3]})")
        others = [by_name[r["item"]] for r in rows]
    else:
        others = rows
    out = {"files": paths, "versus": versus, "pair": [a, b], "n": len(rows)}
    for kind in ("mean", "best", "fused"):
        x = np.array([r[f"{a}_{kind}"] for r in rows])
        y = np.array([r[f"{b}_{kind}"] for r in others])
        d = y - x
        name_b = f"{b}_versus" if versus and b == a else b  # the same scoring of the other run
        row = {a: float(x.mean()), name_b: float(y.mean()), "diff": float(d.mean()),
               "se": float(d.std(ddof=1) / np.sqrt(len(d))), "lower": int((d < 0).sum()),
               "p": float(wilcoxon(y, x).pvalue) if np.any(d) else 1.0}  # identical: no difference
        if "classical" in rows[0] and not versus:
            c = np.array([r["classical"] for r in rows])
            dc = y - c
            row.update(classical=float(c.mean()), diff_classical=float(dc.mean()),
                       se_classical=float(dc.std(ddof=1) / np.sqrt(len(dc))), lower_classical=int((dc < 0).sum()),
                       p_classical=float(wilcoxon(y, c).pvalue))
        out[kind] = row
    ta = np.mean([r[time_key(a)] for r in rows])
    tb = np.mean([r[time_key(b)] for r in others])
    out["time_ratio"] = float(tb / ta)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--split", choices=("objects", "reliefs", "stimuli", "layouts"), help="the split to draw (required)")
    p.add_argument("--summary", nargs="+", metavar="FILE", help="summarise result files instead (with --pair); FILE@TAG reads scoring TAG of FILE as "
                        "the pair's first (in --versus files: its second)")
    p.add_argument("--pair", default="ref,ref2", help="with --summary: the two scorings to compare, A,B")
    p.add_argument("--versus", nargs="+", metavar="FILE",
                   help="with --summary: take scoring B from these files (another run on the same items)")
    p.add_argument("--first", type=int, default=0, help="first item (objects, reliefs, layouts)")
    p.add_argument("--count", type=int, default=40, help="number of items (objects, reliefs, layouts)")
    p.add_argument("--samples", type=int, default=4, help="samples per item (0 with --baselines: the baselines alone)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--preset", default="fast", choices=("fast", "paper"))
    p.add_argument("--schedule", metavar="FILE", help="a schedule file instead of --preset (its refinement settings are used)")
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--baselines", action="store_true", help="also score classical, regression and flat")
    p.add_argument("--unchecked", action="store_true",
                   help="also score the refinement without its reading check (keep_passes 0), tag ref0")
    p.add_argument("--undecided", type=float, default=0.0,
                   help="also score the refinement with refine_undecided at this value, tag ref1")
    p.add_argument("--undecided-roundness", type=float, default=Refinement().undecided_roundness,
                   help="with --undecided: only regions at least this round are freed (0: any region)")
    p.add_argument("--contour-light", action="store_true",
                   help="also score the refinement under the occluding contour's light (refine_contour_light), tag ref2")
    p.add_argument("--contour-integrability", type=float, default=None, metavar="W",
                   help="also score the refinement under the contour's light with refine_contour_integrability W, tag ref3")
    p.add_argument("--contour-fuse", type=float, default=None, metavar="T",
                   help="also score the refinement with refine_contour_fuse T (shading-weighted fusion), tag ref4")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    if args.summary:
        a, b = args.pair.split(",")
        try:
            result = summary(args.summary, a, b, args.versus)
        except (KeyError, ValueError, OSError) as exc:
            p.error(f"--summary: {exc}")
        with atomic_path(args.out) as tmp:
            tmp.write_text(json.dumps(result, indent=1))
        print(json.dumps(result, indent=1))
        return 0
    if args.split is None:
        p.error("--split is required (or --summary)")
    if args.samples < 0:
        p.error(f"--samples must be 0 or more, got {args.samples}")
    if args.samples == 0 and not args.baselines:
        p.error("--samples 0 scores the baselines alone: add --baselines")
    items = items_of(args)
    baselines = build_methods(["classical", "regression", "flat"])[0] if args.baselines else []
    if args.samples == 0:  # the baselines alone
        rows = [{"item": it["name"], **baseline_scores(it, baselines)} for it in items]
        with atomic_path(args.out) as tmp:
            tmp.write_text(json.dumps({"kind": args.split, "baselines_only": True, "items": rows}, indent=1))
        print(json.dumps(rows, indent=1))
        return 0
    size = items[0]["image"].shape[0]
    preset = load_schedule(args.schedule) if args.schedule else args.preset
    sched = replace(method_schedule("ours", preset, None, size), refine=False)
    settings = replace(sched, refine=True).refinement()
    per_call = max(1, 1024 // (args.samples * (sched.finest // 16) ** 2))
    rows = []
    for a in range(0, len(items), per_call):
        group = items[a : a + per_call]
        results = sample_many([it["image"] for it in group], n=args.samples, seed=[args.seed + a + j for j in range(len(group))],
                              schedule=sched, masks=[it["mask"] for it in group], bf16=args.bf16)
        for it, res in zip(group, results):
            raw = res.normals
            t0 = time.perf_counter()
            ref, fused, _ = refine_samples(raw, it["image"], it["mask"], settings)
            grid = output_grid(it["mask"].shape, sched.stages[-1].resolution)
            row = {"item": it["name"], "n": len(raw), "refine_s": time.perf_counter() - t0,
                   **score("raw", raw, fuse_samples(raw, it["mask"]), it, grid), **score("ref", ref, fused, it, grid)}
            variants = {"": ref}
            if args.unchecked:
                t0 = time.perf_counter()
                ref0, fused0, _ = refine_samples(raw, it["image"], it["mask"], replace(settings, keep_passes=0))
                row.update(refine0_s=time.perf_counter() - t0, **score("ref0", ref0, fused0, it, grid))
                variants["0"] = ref0
            if args.undecided:
                t0 = time.perf_counter()
                ref1, fused1, _ = refine_samples(raw, it["image"], it["mask"], replace(settings, undecided_tilt=args.undecided,
                                                                                    undecided_roundness=args.undecided_roundness))
                row.update(refine1_s=time.perf_counter() - t0, **score("ref1", ref1, fused1, it, grid))
                variants["1"] = ref1
            if args.contour_light:
                t0 = time.perf_counter()
                ref2, fused2, _ = refine_samples(raw, it["image"], it["mask"], replace(settings, contour_light=True))
                row.update(refine2_s=time.perf_counter() - t0, **score("ref2", ref2, fused2, it, grid))
                variants["2"] = ref2
            if args.contour_integrability is not None:
                t0 = time.perf_counter()
                ref3, fused3, _ = refine_samples(raw, it["image"], it["mask"], replace(
                    settings, contour_light=True, contour_integrability=args.contour_integrability))
                row.update(refine3_s=time.perf_counter() - t0, **score("ref3", ref3, fused3, it, grid))
                variants["3"] = ref3
            if args.contour_fuse is not None:
                t0 = time.perf_counter()
                ref4, fused4, _ = refine_samples(raw, it["image"], it["mask"], replace(settings, contour_fuse=args.contour_fuse))
                row.update(refine4_s=time.perf_counter() - t0, **score("ref4", ref4, fused4, it, grid))
            for suffix, r in variants.items():
                d = sign_distances(convexity_readings(np.concatenate([raw, r]), it["mask"]))
                row[f"sign_dist{suffix}"] = [float(d[j, len(raw) + j]) for j in range(len(raw))]
                if it["regions"] is not None:
                    turned = region_readings(r, it["regions"], it["mask"]) != region_readings(raw, it["regions"], it["mask"])
                    row[f"turned_regions{suffix}"] = [int(t) for t in turned.sum(1)]
                    # regions the raw sample read as a bump or a dent (disc readings) and the refinement turned
                    decided = disc_readings(raw, it["regions"]) != 0
                    row[f"turned_decided{suffix}"] = [int(t) for t in (turned & decided).sum(1)]
            row.update(baseline_scores(it, baselines))
            rows.append(row)
            print(it["name"], {k: round(v, 2) for k, v in row.items() if isinstance(v, float)}, flush=True)
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps({"kind": args.split, "preset": args.schedule or args.preset, "seed": args.seed,
                                   "refine": asdict(settings), "items": rows}, indent=1))
    print("wrote", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
