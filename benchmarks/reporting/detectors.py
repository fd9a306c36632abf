"""The detector leaderboard of one training run: each detector's test metrics beside trivial predictors.

`bench eval-detector` publishes, for the training run it tested (``<paths.runs>/detectors/<train>/``):

- ``<results>/detectors/<train>/metrics.csv``: detector x dataset, every metric of ``eval/<dataset>.json``;
- ``<results>/detectors/<train>/val_curves.csv``: each detector's validation metrics per epoch (``val.csv``),
  the learning curve the checkpoint was chosen on (never a test set);
- ``<results>/leaderboards/detectors_<train>.md``: per-image F1 at threshold 0.5 per test set, its mean, how
  many sets reach F1 0.5, the same numbers for an all-zero and an all-one predictor at the same test
  geometry, and each detector's training budget (epochs, steps, seconds, selected epoch).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.io import atomic_write

TARGET_F1 = 0.5  # the bar: F1 >= 0.5 on at least three of the five synthetic test sets


def collect_run(run: Path, detectors: list[str], datasets: list[str]) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(metrics rows, validation curves, training summaries) of `detectors` in one training-run folder."""
    rows, curves, summaries = [], [], {}
    for detector in detectors:
        folder = run / detector
        for dataset in datasets:
            path = folder / "eval" / f"{dataset}.json"
            if path.is_file():
                data = json.loads(path.read_text())
                rows.append({"detector": detector, "dataset": dataset, **data["metrics"],
                             "geometry": data["geometry"], "checkpoint": data["checkpoint"]})
        if (folder / "val.csv").is_file():
            curves.append(pd.read_csv(folder / "val.csv").assign(detector=detector))
        if (folder / "summary.json").is_file():
            summaries[detector] = json.loads((folder / "summary.json").read_text())
    curve = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame()
    return pd.DataFrame(rows), curve, summaries


def _budget(summary: dict[str, Any]) -> str:
    r = summary.get("result", {})
    best = r.get("best") or {}
    seconds = r.get("seconds")
    return (f"{r.get('epochs', '?')} epochs, {r.get('steps', '?')} steps of {summary.get('effective_batch_size', '?')}, "
            f"{summary.get('geometry', '?')}, {'?' if seconds is None else f'{seconds / 60:.1f} min'} on "
            f"{summary.get('device', '?')}; checkpoint from epoch {best.get('epoch', '?')} "
            f"(validation F1 {best.get('value', float('nan')):.3f})")


def write_detector_report(results: Path, train: str, metrics: pd.DataFrame, curves: pd.DataFrame,
                          summaries: dict[str, dict], references: dict[str, dict[str, float]],
                          reproduce: list[str]) -> Path:
    """Write metrics.csv, val_curves.csv and the Markdown leaderboard; returns the Markdown path."""
    out = results / "detectors" / train
    out.mkdir(parents=True, exist_ok=True)
    metrics.to_csv(out / "metrics.csv", index=False)
    if not curves.empty:
        curves.to_csv(out / "val_curves.csv", index=False)
    datasets = sorted(metrics["dataset"].unique()) if not metrics.empty else []
    table = metrics.pivot(index="detector", columns="dataset", values="f1_per_image") if datasets else pd.DataFrame()
    head = "| predictor | " + " | ".join(datasets) + f" | **mean** | sets with F1 >= {TARGET_F1} |"
    lines = [head, "|---" * (len(datasets) + 3) + "|"]

    def line(name: str, values: list[float]) -> str:
        mean = sum(values) / len(values) if values else float("nan")
        hits = sum(v >= TARGET_F1 for v in values)
        return f"| {name} | " + " | ".join(f"{v:.3f}" for v in values) + f" | **{mean:.3f}** | {hits} of {len(values)} |"

    for detector in table.index:
        lines.append(line(detector, [float(table.loc[detector, d]) for d in datasets]))
    for name, per_set in references.items():
        lines.append(line(f"*{name} (reference)*", [per_set[d] for d in datasets]))
    budget = [f"- `{d}`: {_budget(s)}" for d, s in sorted(summaries.items())]
    md = "\n".join([
        f"# Detectors trained on `{train}`", "",
        "Pixel F1 per image at threshold 0.5 over the manipulated test images (headline metric), each detector's "
        "checkpoint chosen on its validation split. The reference rows score a constant prediction at the same "
        "test geometry.", "", *lines, "", "## Training budget", "", *budget, "",
        "Validation F1 per epoch (the learning curve): `../../detectors/" + train + "/val_curves.csv`; every test "
        "metric: `../../detectors/" + train + "/metrics.csv`.", "",
        "## Reproduce", "", "```", *reproduce, "```", ""])
    path = results / "leaderboards" / f"detectors_{train}.md"
    return atomic_write(path, md)
