"""Generator leaderboards: a wide CSV (dataset x metric) and a Markdown page with the headline table."""

from __future__ import annotations

import json
import math
import shlex
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from benchmarks.config import save_resolved
from benchmarks.io import atomic_write, write_csv

METRIC_LABELS = {
    "f1_per_image": "F1 (per image, thr 0.5)",
    "iou_per_image": "IoU (per image, thr 0.5)",
    "f1_pooled": "F1 (pooled pixels, thr 0.5)",
    "f1_best_thr_oracle": "F1 (oracle best threshold per dataset)",
    "pixel_auc_pooled": "pixel AUC (pooled)",
}


def _fmt(v: float | None) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def headline_markdown(table: dict[str, dict[str, float]], datasets: list[str]) -> str:
    """Headline table: per-image F1 / IoU at threshold 0.5 for each dataset, and their mean; best mean first."""
    order = sorted(table, key=lambda g: -_nan_to(table[g].get("mean/f1_per_image"), -1.0))
    header = "| generator | " + " | ".join(f"{d} F1 | {d} IoU" for d in datasets) + " | **mean F1** | **mean IoU** |"
    rule = "|---" * (2 + 2 * len(datasets) + 1) + "|"
    lines = [header, rule]
    for g in order:
        cells = [f"{_fmt(table[g].get(f'{d}/f1_per_image'))} | {_fmt(table[g].get(f'{d}/iou_per_image'))}" for d in datasets]
        lines.append(f"| {g} | " + " | ".join(cells) +
                     f" | **{_fmt(table[g].get('mean/f1_per_image'))}** | **{_fmt(table[g].get('mean/iou_per_image'))}** |")
    return "\n".join(lines)


def secondary_markdown(table: dict[str, dict[str, float]]) -> str:
    metrics = ["f1_pooled", "f1_best_thr_oracle", "pixel_auc_pooled"]
    order = sorted(table, key=lambda g: -_nan_to(table[g].get("mean/f1_per_image"), -1.0))
    lines = ["| generator | " + " | ".join(METRIC_LABELS[m] for m in metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for g in order:
        lines.append(f"| {g} | " + " | ".join(_fmt(table[g].get(f"mean/{m}")) for m in metrics) + " |")
    return "\n".join(lines)


def _nan_to(v: float | None, default: float) -> float:
    return default if v is None or (isinstance(v, float) and math.isnan(v)) else v


def side_effect_slices(rows: list[dict[str, Any]]) -> str:
    """Per-image F1 (thr 0.5) over manipulated pairs with and without side-effect edits (edits the
    instruction does not mention, included in the truth mask), pooled over datasets; '' without that column."""
    import pandas as pd

    frame = pd.DataFrame(rows)
    if frame.empty or "side_effect" not in frame:
        return ""
    frame = frame[frame["manipulated"].astype(bool)].dropna(subset=["f1"])
    frame = frame.assign(side_effect=frame["side_effect"].fillna(False).astype(bool))
    stats = frame.groupby(["generator", "side_effect"])["f1"].agg(["mean", "size"]).unstack("side_effect")
    order = stats[("mean", True)].sort_values(ascending=False).index if ("mean", True) in stats else stats.index
    lines = ["| generator | F1, pairs with side effects | F1, pairs without | n with / without |", "|---|---|---|---|"]
    for g in order:
        get = lambda key, flag: stats[(key, flag)].get(g) if (key, flag) in stats else None  # noqa: E731
        n_with, n_without = get("size", True), get("size", False)
        lines.append(f"| {g} | {_fmt(get('mean', True))} | {_fmt(get('mean', False))} | "
                     f"{0 if n_with is None else int(n_with)} / {0 if n_without is None else int(n_without)} |")
    return "\n".join(lines)


CONSTANT_ROWS = ("empty", "full")  # sanity rows that predict one value everywhere: never a competitor
QUALITY_FILTER = 0.5  # the leaderboard's "with filtering" column: pairs whose own mask-quality score is at least this


def quality_filter_markdown(rows: list[dict[str, Any]], min_quality: float = QUALITY_FILTER) -> str:
    """Per generator, headline F1 over every manipulated pair and over those whose mask-quality score
    (``MaskGenerator.generate_scored``) is at least ``min_quality``, with how many each keeps, pooled over
    the datasets (as ``bench annotate --min-quality`` would filter a corpus); '' without scores."""
    from benchmarks.generators.quality_filter import f1_with_and_without_filter

    by_gen: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        q = row.get("quality")
        if q is not None and not (isinstance(q, float) and math.isnan(q)):
            by_gen.setdefault(row["generator"], []).append(row)
    if not by_gen:
        return ""
    stats = {g: f1_with_and_without_filter(r, min_quality) for g, r in by_gen.items()}
    lines = [f"| generator | F1, all pairs | F1, quality >= {min_quality:g} | pairs kept |", "|---|---|---|---|"]
    for g in sorted(stats, key=lambda g: -_nan_to(stats[g]["f1_per_image"], -1.0)):
        st = stats[g]
        lines.append(f"| {g} | {_fmt(st['f1_per_image'])} | {_fmt(st['f1_per_image_filtered'])} | "
                     f"{st['n_kept']} / {st['n_pairs']} |")
    return "\n".join(lines)


def paired_deltas(rows: list[dict[str, Any]], reference: str, others: list[str], n: int = 2000,
                  seed: int = 0) -> dict[str, Any]:
    """Headline F1 of ``reference`` minus each other generator's, with a 95 % paired bootstrap interval:
    the manipulated pairs of every dataset resampled (the same draw for both generators), per-dataset means
    averaged as in the headline. Pairs some generator has no score for (skipped) are left out of both."""
    from benchmarks.reporting.stats import compare, scores_from_rows

    kept = [r for r in rows if r.get("manipulated")]
    out = {}
    for other in others:
        scores = scores_from_rows((r["generator"], "mask", r["dataset"], 0, r["id"], r.get("f1")) for r in kept
                                  if r["generator"] in (reference, other))
        if reference in scores and other in scores:
            out[other] = compare(scores, reference, other, n=n, seed=seed)
    return out


SIGMA_ROWS = ("sigma", "sigma_aligned")  # SIGMA and the rows built on its masks: compared, never a baseline


def deltas_markdown(rows: list[dict[str, Any]], report: dict[str, Any]) -> str:
    """Each SIGMA row in the table (``SIGMA_ROWS``) against every baseline (not the SIGMA rows, not the rows
    that read the truth, not constant rows), ΔF1 with its interval; a row built on SIGMA (``sigma_aligned``)
    also against plain ``sigma``. '' when no SIGMA row is in the table."""
    gens = report.get("generators", {})
    baselines = [g for g, r in gens.items()
                 if g not in SIGMA_ROWS and not r.get("reads_truth") and g not in CONSTANT_ROWS]
    tables = []
    for reference in (r for r in SIGMA_ROWS if r in gens):
        others = baselines + (["sigma"] if reference != "sigma" and "sigma" in gens else [])
        deltas = paired_deltas(rows, reference, others)
        if not deltas:
            continue
        lines = [f"| {reference} minus | ΔF1 | 95 % CI | significant |", "|---|---|---|---|"]
        for g, iv in sorted(deltas.items(), key=lambda kv: kv[1].estimate):
            lines.append(f"| {g} | {iv.estimate:+.3f} | [{iv.low:+.3f}, {iv.high:+.3f}] | "
                         f"{'yes' if iv.significant else 'no'} |")
        tables.append("\n".join(lines))
    return "\n\n".join(tables)


def write_generator_leaderboard(table: dict[str, dict[str, float]], datasets: list[str], results_dir: Path, tag: str,
                                cfg: DictConfig, report: dict[str, Any],
                                per_pair: list[dict[str, Any]] | None = None) -> list[Path]:
    import pandas as pd

    out_dir = results_dir / "leaderboards"
    frame = pd.DataFrame.from_dict(table, orient="index")
    frame.index.name = "generator"
    csv_path = out_dir / f"{tag}.csv"
    write_csv(csv_path, frame.sort_values("mean/f1_per_image", ascending=False).round(6), index=True)
    config_path = save_resolved(cfg, out_dir, f"{tag}.config.yaml")
    report_path = out_dir / f"{tag}.report.json"
    atomic_write(report_path, json.dumps(report, indent=1) + "\n")
    command = "bench " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else "bench eval-generators"
    counts = report.get("datasets", {})
    notes = [f"- `{d}`: {c.get('pairs', 0)} pairs, {c.get('excluded_empty_gt', 0)} with an all-zero mask (excluded from "
             f"pixel F1/IoU), {c.get('skipped', 0)} skipped, {c.get('original_resized', 0)} originals resized"
             for d, c in counts.items()]
    speed = [f"- `{g}`: {r['pairs_per_s']} pairs/s on {report.get('device')} ({r['info']})"
             for g, r in report.get("generators", {}).items()]
    papers = [f"- `{g}`: {r['paper']}" for g, r in report.get("generators", {}).items() if r.get("paper")]
    counters = [f"- `{g}`: " + ", ".join(f"{k} {v}" for k, v in r["counters"].items())
                for g, r in report.get("generators", {}).items() if r.get("counters")]
    md = "\n".join([
        f"# Mask generators vs ground truth ({tag})", "",
        "Headline: pixel F1 and IoU at threshold 0.5, averaged per image over manipulated images, valid pixels only.",
        "", headline_markdown(table, datasets), "",
        "Means over datasets of the secondary metrics (pooled = one confusion matrix over all pixels; the oracle "
        "threshold is chosen on the test data itself and is never the headline):", "",
        secondary_markdown(table), "",
        *(["## Side effects", "",
           "Pairs whose truth mask also holds an edit the instruction does not mention (the editor's side "
           "effect) against pairs without one; per-image F1 at 0.5, pooled over the datasets:", "",
           slices, ""] if (slices := side_effect_slices(per_pair or [])) else []),
        *(["## SIGMA against each baseline", "",
           "Headline F1 difference (mean over the datasets of per-dataset means) with a 95 % paired bootstrap "
           "interval over the manipulated pairs of each dataset (2,000 resamples; `benchmarks/reporting/stats.py`); "
           "smallest difference first:", "",
           dtable, ""] if (dtable := deltas_markdown(per_pair or [], report)) else []),
        *(["## Quality filter", "",
           "Each generator's own per-pair mask-quality score (`bench annotate --min-quality` filters a corpus "
           "by it, as CAAAv2 / MIMLv2, arXiv 2508.20987, filters its masks): headline F1 over every "
           "manipulated pair and over the pairs the filter keeps, pooled over the datasets:", "",
           qtable, ""] if (qtable := quality_filter_markdown(per_pair or [])) else []),
        *(["## What each generator follows", "", *papers, ""] if papers else []),
        *(["## Counters", "", "Per generator, over all datasets (e.g. registration fallbacks):", "",
           *counters, ""] if counters else []),
        "## Reproduce", "", f"```\n{command}\n```", "",
        f"Resolved config: `{config_path.name}`; counts and timing: `{report_path.name}`; per-pair scores: "
        "`../generators/per_pair/`; geometry: " + str(report.get("geometry")) + ".", "",
        "## Data", "", *notes, "", "## Speed", "", *speed, "",
    ])
    md_path = out_dir / f"{tag}.md"
    atomic_write(md_path, md)
    return [csv_path, md_path, config_path, report_path]
