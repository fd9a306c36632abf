"""The downstream leaderboard: detectors trained on each generator's masks, tested on the test datasets.

Reads the cells `bench run` publishes (``<results>/runs/<generator>/<detector>/cell.json``) into one long
table (generator x detector x dataset) and derives the paper's headline rows:

- mean ΔF1 of detectors trained on the focus generator's masks (SIGMA) over those trained on each
  baseline's, averaged over the (detector, dataset) cells both have, with the count of cells it wins;
- the share of the gap between the best baseline and ``oracle`` (ground-truth masks) that SIGMA closes:
  (F1_sigma - F1_best) / (F1_oracle - F1_best), means over the cells all three have.

Every F1 is the headline metric: per-image pixel F1 at threshold 0.5 over manipulated images.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.io import atomic_write, write_csv
from benchmarks.reporting.downstream_stats import add_intervals, interval_text, summary_intervals
from benchmarks.reporting.ladder import LadderView, ladder_json, ladder_text
from benchmarks.reporting.stats import Scores

FOCUS = "sigma"
MEANINGFUL_GAP = 0.02  # below this oracle-over-best-baseline margin the gap share is reported as not meaningful
REFERENCE = "oracle"
METRICS = ("f1_per_image", "iou_per_image", "f1_pooled", "f1_best_thr_oracle", "pixel_auc_pooled", "image_auc")


CELL_GLOB = "*/*/*/seed*/cell.json"   # <G>/<D>/<profile>/seed<k>/cell.json (benchmarks.downstream.cells)


def cell_records(runs: Path, profile: str | None = None) -> list[dict[str, Any]]:
    """Every published cell under `runs` (of `profile` only, when given), each with its folder."""
    out = []
    for path in sorted(runs.glob(CELL_GLOB)):
        cell = json.loads(path.read_text())
        if profile is None or cell.get("profile") == profile:
            out.append({**cell, "folder": path.parent.relative_to(runs).as_posix()})
    return out


def legacy_cells(runs: Path) -> list[str]:
    """Cells in the layout before seeds and profiles had folders (``<G>/<D>/cell.json``): never read."""
    return sorted(p.parent.relative_to(runs).as_posix() for p in runs.glob("*/*/cell.json"))


def failed_cells(runs: Path, profile: str | None = None) -> list[dict[str, Any]]:
    """The cells whose training diverged: generator, detector, seed, folder, reason."""
    return [{k: c.get(k) for k in ("generator", "detector", "seed", "folder", "reason")}
            for c in cell_records(runs, profile) if c.get("status") == "failed"]


def stale_cells(runs: Path, profile: str | None = None) -> list[dict[str, Any]]:
    """Finished cells whose detector was trained on another annotation of their generator than the one
    ``<G>/annotation.json`` now records (other weights or annotation settings, e.g. cells made before a
    checkpoint was retrained): generator, detector, seed and both annotation keys. Their rows stay in the
    means; the leaderboard lists them, and `bench run` with the generator's current weights remakes them."""
    current = {g: record.get("key") for g, record in latest_annotations(runs).items()}
    out = []
    for cell in cell_records(runs, profile):
        key, now = (cell.get("annotation") or {}).get("key"), current.get(cell["generator"])
        if cell.get("status", "done") == "done" and key and now and key != now:
            out.append({"generator": cell["generator"], "detector": cell["detector"], "seed": cell.get("seed", 0),
                        "key": key, "current": now})
    return out


def collect(runs: Path, profile: str | None = None) -> pd.DataFrame:
    """One row per (generator, detector, seed, dataset) from every finished cell under `runs` (of `profile`
    only, when given). Failed cells (status ``failed``) have no rows: :func:`failed_cells` lists them."""
    rows = []
    for cell in cell_records(runs, profile):
        if cell.get("status", "done") != "done":
            continue
        for dataset, m in cell["metrics"].items():
            rows.append({"generator": cell["generator"], "detector": cell["detector"], "seed": cell.get("seed", 0),
                         "dataset": dataset, **{k: m.get(k) for k in METRICS}, "n_manipulated": m.get("n_manipulated"),
                         "profile": cell.get("profile"), "overrides": " ".join(cell.get("overrides", [])),
                         "git_commit": cell.get("git_commit"), "folder": cell["folder"]})
    columns = ["generator", "detector", "seed", "dataset", *METRICS, "n_manipulated", "profile", "overrides",
               "git_commit", "folder"]
    return pd.DataFrame(rows, columns=columns).astype({m: float for m in METRICS})


def seed_means(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (generator, detector, dataset): each metric averaged over the cell's seeds, ``seeds`` the
    count (so a pair trained with more seeds does not weigh more in a mean over cells)."""
    if frame.empty:
        return frame.assign(seeds=pd.Series(dtype=int))
    keys = ["generator", "detector", "dataset"]
    means = frame.groupby(keys, as_index=False)[[*METRICS, "n_manipulated"]].mean()
    seeds = frame.groupby(keys, as_index=False)["seed"].nunique().rename(columns={"seed": "seeds"})
    rest = frame.groupby(keys, as_index=False)[["profile", "overrides", "git_commit"]].first()
    return means.merge(seeds, on=keys).merge(rest, on=keys)


def latest_annotations(runs: Path) -> dict[str, dict[str, Any]]:
    """Generator -> its latest annotation record, ``<G>/annotation.json`` (written by `bench run`)."""
    return {path.parent.name: json.loads(path.read_text()) for path in sorted(runs.glob("*/annotation.json"))}


def mask_quality(runs: Path, profile: str | None = None) -> dict[str, float]:
    """Generator -> per-image F1 of its corpus masks vs ground truth, where known: of the one annotation all of
    the profile's finished cells of that generator were trained on (their ``annotation`` record), else of the
    latest, ``<G>/annotation.json``."""
    out = {}
    for generator, record in latest_annotations(runs).items():
        q = record.get("quality_vs_truth", {})
        if q.get("f1_per_image") is not None:
            out[generator] = float(q["f1_per_image"])
    trained: dict[str, set[tuple[str | None, float | None]]] = {}
    for cell in cell_records(runs, profile):
        if cell.get("status", "done") == "done":
            a = cell.get("annotation") or {}
            trained.setdefault(cell["generator"], set()).add((a.get("key"), (a.get("quality_vs_truth") or {}).get(
                "f1_per_image")))
    for generator, seen in trained.items():
        if len(seen) == 1:
            key, f1 = next(iter(seen))
            if key is not None and f1 is not None:
                out[generator] = float(f1)
    return out


def calibration_rows(runs: Path) -> set[str]:
    """Generators whose annotation read the ground truth to calibrate the benchmark (the label-quality ladder):
    never a baseline in the headline."""
    return {generator for generator, record in latest_annotations(runs).items() if record.get("calibration")}


def generator_summary(frame: pd.DataFrame, quality: dict[str, float], calibration: set[str] = frozenset()
                      ) -> pd.DataFrame:
    g = frame.groupby("generator").agg(mean_f1=("f1_per_image", "mean"), mean_iou=("iou_per_image", "mean"),
                                       detectors=("detector", "nunique"), cells=("f1_per_image", "size"))
    g.insert(0, "corpus_mask_f1", [quality.get(name, math.nan) for name in g.index])
    g.insert(0, "role", [role(name, calibration) for name in g.index])
    return g.sort_values("mean_f1", ascending=False)


def role(generator: str, calibration: set[str]) -> str:
    """How a row is read: the focus, the ground-truth reference, a calibration (ladder) row or a baseline."""
    if generator == FOCUS:
        return "focus"
    if generator == REFERENCE:
        return "reference"
    return "calibration" if generator in calibration else "baseline"


def paired(frame: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """F1 of generators a and b side by side on the (detector, dataset) cells both have."""
    wide = frame.pivot_table(index=["detector", "dataset"], columns="generator", values="f1_per_image")
    if a not in wide or b not in wide:
        return pd.DataFrame(columns=[a, b])
    return wide[[a, b]].dropna()


def headline(frame: pd.DataFrame, focus: str = FOCUS, reference: str = REFERENCE,
             calibration: set[str] = frozenset()) -> dict[str, Any]:
    """ΔF1 of `focus` over every baseline (not the reference, not the calibration rows, which read the ground
    truth) and the share of the best-baseline-to-reference gap closed."""
    out: dict[str, Any] = {"focus": focus, "reference": reference, "delta": [], "best_baseline": None,
                           "gap_closed": None, "reference_delta": []}
    generators = sorted(set(frame["generator"]))
    baselines = [g for g in generators if g not in (focus, reference) and g not in calibration]
    for b in baselines if reference in generators else []:  # the room label quality has over each baseline
        p = paired(frame, reference, b)
        if len(p):
            out["reference_delta"].append({"baseline": b, "mean_delta_f1": float((p[reference] - p[b]).mean()),
                                           "cells": int(len(p))})
    if focus not in generators:
        return out
    for b in baselines:
        p = paired(frame, focus, b)
        if len(p):
            diff = p[focus] - p[b]
            out["delta"].append({"baseline": b, "mean_delta_f1": float(diff.mean()), "wins": int((diff > 0).sum()),
                                 "cells": int(len(p)), "focus_f1": float(p[focus].mean()), "baseline_f1": float(p[b].mean())})
    if out["delta"]:
        best = max(out["delta"], key=lambda d: d["baseline_f1"])
        out["best_baseline"] = best["baseline"]
        wide = frame.pivot_table(index=["detector", "dataset"], columns="generator", values="f1_per_image")
        if reference in wide:
            trio = wide[[focus, best["baseline"], reference]].dropna()
            if len(trio):
                s, b, r = (float(trio[c].mean()) for c in (focus, best["baseline"], reference))
                out["gap"] = {"focus_f1": s, "best_baseline_f1": b, "reference_f1": r, "cells": int(len(trio))}
                out["gap_closed"] = (s - b) / (r - b) if r - b > 1e-9 else None
    return out


def _f(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:+.{digits}f}" if isinstance(v, float) and digits < 0 else f"{v:.{digits}f}"


def reference_text(h: dict[str, Any]) -> list[str]:
    """`reference` (ground-truth masks) against each baseline: how much label quality shows downstream."""
    return [f"- `{h['reference']}` vs `{d['baseline']}` (ground-truth masks against the baseline's): ΔF1 "
            f"**{d['mean_delta_f1']:+.3f}**{interval_text(d.get('ci'))} ({d['cells']} detector x dataset cells)"
            for d in h.get("reference_delta", [])]


def headline_text(h: dict[str, Any]) -> str:
    if not h["delta"]:
        return "\n".join([f"No {h['focus']} headline yet: it needs cells for `{h['focus']}` and at least one baseline "
                          f"(e.g. `bench run --generator {h['focus']},pixel_diff,{h['reference']} --detector all`).",
                          *([""] + reference_text(h) if h.get("reference_delta") else [])])
    lines = []
    for d in sorted(h["delta"], key=lambda d: -d["baseline_f1"]):
        lines.append(f"- vs `{d['baseline']}`: mean ΔF1 **{d['mean_delta_f1']:+.3f}**{interval_text(d.get('ci'))} "
                     f"({h['focus']} {d['focus_f1']:.3f} vs {d['baseline_f1']:.3f}; {h['focus']} better in {d['wins']} "
                     f"of {d['cells']} detector x dataset cells)")
    if h.get("gap"):
        g = h["gap"]
        room = g["reference_f1"] - g["best_baseline_f1"]
        if h["gap_closed"] is None:
            closed = "n/a (the reference is not above the best baseline)"
        elif room < MEANINGFUL_GAP:
            closed = (f"{h['gap_closed']:.0%}, not meaningful: ground-truth masks lead the best baseline by only "
                      f"{room:.3f} F1 here, so the detectors, not the masks, limit the result")
        else:
            closed = f"**{h['gap_closed']:.0%}**"
        if h["gap_closed"] is not None:
            closed += interval_text(h.get("gap_ci"), percent=True)
        lines.append(f"- share of the gap from the best baseline (`{h['best_baseline']}`, {g['best_baseline_f1']:.3f}) "
                     f"to `{h['reference']}` ({g['reference_f1']:.3f}) that {h['focus']} ({g['focus_f1']:.3f}) closes: "
                     f"{closed} ({g['cells']} cells)")
    lines += reference_text(h)
    if h.get("seeds_per_cell") == [1]:
        lines.append("- intervals: paired bootstrap over the test images of each dataset (2,000 resamples); one "
                     "training seed per cell, so seed-to-seed variation is not inside them")
    elif h.get("seeds_per_cell"):
        lines.append("- intervals: paired bootstrap over the test images of each dataset and each cell's training "
                     f"seeds ({'/'.join(map(str, h['seeds_per_cell']))} per cell; 2,000 resamples)")
    return "\n".join(lines)


def _table(frame: pd.DataFrame, index_name: str) -> str:
    cols = list(frame.columns)
    integer = {c for c in cols if pd.api.types.is_integer_dtype(frame[c])}
    lines = [f"| {index_name} | " + " | ".join(str(c) for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for idx in frame.index:
        label = " / ".join(idx) if isinstance(idx, tuple) else str(idx)
        cells = [str(frame.at[idx, c]) if c in integer or isinstance(frame.at[idx, c], str)
                 else _f(float(frame.at[idx, c])) for c in cols]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def holdings(frame: pd.DataFrame, failed: list[dict[str, Any]], missing: list[tuple[str, str, int]] | None = None,
             stale: list[dict[str, Any]] | None = None) -> str:
    """What the leaderboard holds: cells (generator x detector x seed) per generator, the failed ones, the
    cells trained on an earlier annotation of their generator (`stale`, :func:`stale_cells`) and the cells of
    the profile's study it does not hold yet (`missing`, None when the profile names no study)."""
    cells = frame.drop_duplicates(["generator", "detector", "seed"])
    lines = [f"{len(cells)} finished cell(s) (generator x detector x seed); seeds per generator x detector:", ""]
    for g, part in cells.groupby("generator"):
        seeds = part.groupby("detector")["seed"].apply(lambda s: ",".join(str(int(v)) for v in sorted(s)))
        lines.append(f"- `{g}`: " + "; ".join(f"{d} [{v}]" for d, v in seeds.items()))
    if failed:
        lines += ["", f"**{len(failed)} failed cell(s)**, left out of every mean:", ""]
        lines += [f"- `{f['generator']}` x `{f['detector']}` seed {f['seed']}: {f['reason']}" for f in failed]
    if stale:
        lines += ["", f"**{len(stale)} cell(s) were trained on an earlier annotation of their generator** than "
                  "`runs/<generator>/annotation.json` now records (other weights or settings); their rows are in the "
                  "means below, and where a generator's cells come from two annotations its `corpus_mask_f1` is "
                  "of the latest. `bench run --generator G --detector all` with this profile and seed remakes "
                  "them:", ""]
        by_key: dict[tuple[str, str, str], list[str]] = {}
        for c in stale:
            by_key.setdefault((c["generator"], c["key"], c["current"]), []).append(f"{c['detector']} [{c['seed']}]")
        lines += [f"- `{g}` (annotation {key}; now {now}): {', '.join(cells)}"
                  for (g, key, now), cells in by_key.items()]
    if missing:
        lines += ["", f"**The profile's study is incomplete: {len(missing)} cell(s) missing** "
                  "(`bash benchmarks/perf/downstream_study.sh` runs them; a partial study's means cover only the "
                  "cells above):", ""]
        by_pair: dict[tuple[str, int], list[str]] = {}
        for g, d, seed in missing:
            by_pair.setdefault((g, seed), []).append(d)
        lines += [f"- `{g}` seed {seed}: {', '.join(ds)}" for (g, seed), ds in by_pair.items()]
    elif missing is not None:
        lines += ["", "The profile's study is complete (every cell of `profile.study` is here)."]
    return "\n".join(lines)


def write_leaderboard(frame: pd.DataFrame, quality: dict[str, float], out_dir: Path, command: str, *,
                      profile: str | None = None, suffix: str = "", failed: list[dict[str, Any]] | None = None,
                      legacy: list[str] | None = None, scores: Scores | None = None, view: LadderView | None = None,
                      calibration: set[str] = frozenset(), missing: list[tuple[str, str, int]] | None = None,
                      stale: list[dict[str, Any]] | None = None) -> tuple[str, list[Path]]:
    """downstream{suffix}.csv (long), _summary.csv, .md and _headline.json over the cells of one profile;
    every mean averages a cell's seeds first; with the cells' per-image `scores`
    (:func:`~benchmarks.reporting.downstream_stats.image_scores`) the headline and the generator table carry
    95 % paired bootstrap intervals, and `view` (:func:`~benchmarks.reporting.ladder.ladder_view` of them) is
    the ladder section. `calibration`: the ladder's rows (never baselines); `missing`: the profile's study
    cells not held; `stale`: cells trained on an earlier annotation of their generator. Returns (markdown, paths)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    failed = failed or []
    long_frame, frame = frame, seed_means(frame)
    summary = generator_summary(frame, quality, calibration)
    h = headline(frame, calibration=calibration)
    if scores is not None:  # intervals from the cells' per-image scores
        h = add_intervals(h, scores)
        summary = summary.join(summary_intervals(list(summary.index), scores, FOCUS))
        h["ladder"] = ladder_json(view)
    by_detector = frame.pivot_table(index="generator", columns="detector", values="f1_per_image").reindex(summary.index)
    by_detector["mean"] = by_detector.mean(axis=1)
    full = frame.pivot_table(index=["generator", "detector"], columns="dataset", values="f1_per_image")
    full["mean"] = full.mean(axis=1)
    stem = f"downstream{suffix}"
    paths = [out_dir / f"{stem}.csv", out_dir / f"{stem}_summary.csv", out_dir / f"{stem}.md",
             out_dir / f"{stem}_headline.json"]
    write_csv(paths[0], long_frame.sort_values(["generator", "detector", "seed", "dataset"]).round(6))
    write_csv(paths[1], summary.round(6), index=True)
    commits = sorted(set(long_frame["git_commit"].dropna()))
    profiles = sorted(set(long_frame["profile"].dropna()))
    md = "\n".join([
        f"# Downstream: IML detectors trained on each generator's masks (profile {profile or ', '.join(profiles)})", "",
        "Each cell: a detector trained on the editing corpus annotated by one mask generator (`oracle` = the "
        "ground-truth masks), checkpoint chosen on held-out corpus pairs with that generator's own masks, then "
        "tested on the test datasets. Metric: pixel F1 per image at threshold 0.5 over manipulated images.", "",
        "## Cells", "", holdings(long_frame, failed, missing, stale), "",
        *([f"Not read: {len(legacy)} cell(s) in the layout before seeds and profiles had folders "
           f"(`<generator>/<detector>/cell.json`: {', '.join(legacy)}); remake them with `bench run`.", ""]
          if legacy else []),
        "## Headline", "", headline_text(h), "",
        "## Generators (mean over detectors x datasets)", "",
        "`corpus_mask_f1`: the generator's own masks vs ground truth on the corpus it annotated. `f1_95ci`: "
        f"bootstrap interval of `mean_f1` (test images and seeds); `delta_vs_{FOCUS}`: the row minus `{FOCUS}`, paired "
        "on the detectors both have (a calibration row was trained on fewer detectors), with its interval.", "",
        _table(summary, "generator"), "",
        *(["## Label-quality ladder", "", ladder_text(view), ""] if calibration else []),
        "## Mean F1 per detector (over datasets)", "", _table(by_detector, "generator"), "",
        "## Every cell (F1 per dataset)", "", _table(full, "generator / detector"), "",
        "## Reproduce", "", f"```\n{command}\n```", "",
        f"Profile(s): {', '.join(profiles) or 'n/a'}; code: {', '.join(commits) or 'n/a'}. Per-cell metrics, "
        "per-image scores, resolved configs and timings: `results/runs/<generator>/<detector>/<profile>/seed<k>/`.", "",
    ])
    atomic_write(paths[2], md)
    atomic_write(paths[3], json.dumps({**h, "stale_cells": stale or []}, indent=1) + "\n")
    return md, paths
