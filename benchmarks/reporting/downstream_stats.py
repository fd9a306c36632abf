"""Confidence intervals for the downstream headline, from the per-image scores every cell publishes.

Each cell folder holds ``per_image.csv`` (dataset, id, label, score, f1, iou): per-image F1 of the cell's
detector on every test image. :func:`image_scores` gathers the manipulated images' F1 into the nested
arrays :mod:`benchmarks.reporting.stats` resamples (generator -> detector -> dataset -> (seeds, images),
images in one order for every cell); :func:`add_intervals` puts a paired bootstrap interval on every ΔF1
of the headline and on the share of the gap closed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.reporting import stats

PER_IMAGE = "per_image.csv"


def image_scores(frame: pd.DataFrame, runs: Path) -> stats.Scores:
    """Per-image F1 of manipulated test images for every (generator, detector, dataset) of `frame`'s cells
    (its ``folder`` column, relative to `runs`), seeds stacked, the images every cell has in one order
    (:func:`benchmarks.reporting.stats.scores_from_rows`). Cells without ``per_image.csv`` are left out
    (their cells then have no interval)."""
    def rows():
        for (generator, detector, folder), _ in frame.groupby(["generator", "detector", "folder"]):
            path = runs / folder / PER_IMAGE
            if not path.is_file():
                continue
            table = pd.read_csv(path)
            table = table[table["label"] == 1]
            yield from ((generator, detector, d, folder, i, f) for d, i, f in
                        zip(table["dataset"], table["id"], table["f1"]))

    return stats.scores_from_rows(rows())


def add_intervals(h: dict[str, Any], scores: stats.Scores, n: int = 2000, seed: int = 0) -> dict[str, Any]:
    """The headline `h` (:func:`benchmarks.reporting.downstream.headline`) with ``ci`` on each ΔF1 and on
    the gap closed: 95 % paired bootstrap intervals over test images (and each cell's seeds)."""
    focus, reference = h["focus"], h["reference"]
    for d in h["delta"]:
        try:
            d["ci"] = stats.compare(scores, focus, d["baseline"], n=n, seed=seed).to_dict()
        except ValueError as err:  # no per-image scores for one side, or no detector in common
            d["ci_missing"] = str(err)
    if h.get("gap") and h.get("best_baseline"):
        try:
            h["gap_ci"] = stats.gap_closed(scores, focus, h["best_baseline"], reference, n=n, seed=seed).to_dict()
        except ValueError as err:
            h["gap_ci_missing"] = str(err)
    for d in h.get("reference_delta", []):  # the room label quality has: ground-truth masks against each baseline's
        try:
            d["ci"] = stats.compare(scores, reference, d["baseline"], n=n, seed=seed).to_dict()
        except ValueError as err:
            d["ci_missing"] = str(err)
    h["seeds_per_cell"] = sorted({len(next(iter(d.values()))) for g in scores.values() for d in g.values()})
    return h


def interval_text(ci: dict[str, Any] | None, percent: bool = False) -> str:
    """' [low, high] 95 % CI, significant' for a headline line; '' without an interval."""
    if not ci:
        return ""
    fmt = (lambda v: f"{v:.0%}") if percent else (lambda v: f"{v:+.3f}")  # noqa: E731
    verdict = "significant" if ci["significant"] else "not significant"
    return f", 95 % CI [{fmt(ci['low'])}, {fmt(ci['high'])}], {verdict}"


def summary_intervals(generators: list[str], scores: stats.Scores, focus: str, n: int = 1000, seed: int = 0
                      ) -> pd.DataFrame:
    """Per generator: its mean F1's 95 % interval and its ΔF1 to `focus` (paired, on the detectors both have)
    with interval and verdict; 'n/a' where a side has no per-image scores."""
    rows = []
    for g in generators:
        row = {"f1_95ci": "n/a", f"delta_vs_{focus}": "n/a", "delta_95ci": "n/a", "significant": "n/a"}
        if g in scores:
            iv = stats.mean_interval(scores, g, n=n, seed=seed)
            row["f1_95ci"] = f"[{iv.low:.3f}, {iv.high:.3f}]"
            if g != focus and focus in scores:
                try:
                    d = stats.compare(scores, g, focus, n=n, seed=seed)
                except ValueError:  # no detector in common
                    d = None
                if d is not None:
                    row.update({f"delta_vs_{focus}": f"{d.estimate:+.3f}",
                                "delta_95ci": f"[{d.low:+.3f}, {d.high:+.3f}]",
                                "significant": "significant" if d.significant else "not significant"})
        rows.append(row)
    return pd.DataFrame(rows, index=generators)
