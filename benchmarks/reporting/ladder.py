"""The label-quality ladder's reading of the downstream cells: detector F1 against label F1.

The ladder's rows (calibration generators: the ground truth degraded at known strengths) are trained on a
subset of the detector families, so every point here (ladder rows, ``oracle``, SIGMA, the baselines) is the
mean over *those* detectors only, with its 95 % bootstrap interval (images and seeds). A line fitted on the
ladder and ``oracle`` gives the dose-response; its slope against the typical half-width of a paired
comparison between neighbouring ladder rows gives the benchmark's resolving power: the smallest label-F1
difference it tells apart at 95 % (:func:`benchmarks.reporting.stats.resolving_power`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from benchmarks.reporting import stats


@dataclass(frozen=True)
class Point:
    generator: str
    label_f1: float          # its masks against the ground truth on the corpus it annotated
    f1: stats.Interval       # downstream F1, mean over the ladder's detectors and the test datasets
    calibration: bool


@dataclass(frozen=True)
class LadderView:
    detectors: tuple[str, ...]
    points: tuple[Point, ...]
    power: stats.ResolvingPower | None  # None with fewer than three rows on the ladder (oracle included)


def ladder_view(scores: stats.Scores, label_f1: Mapping[str, float], calibration: set[str],
                reference: str = "oracle", n: int = 1000, seed: int = 0) -> LadderView | None:
    """The ladder's points and fit; None when no calibration row has cells and a label F1."""
    rows = sorted(g for g in calibration if g in scores and g in label_f1)
    if not rows:
        return None
    detectors = sorted(set.intersection(*(set(scores[g]) for g in rows)))
    if not detectors:
        return None
    same = {g: {d: cells[d] for d in detectors} for g, cells in scores.items()
            if g in label_f1 and all(d in cells for d in detectors)}
    points = tuple(sorted((Point(g, float(label_f1[g]), stats.mean_interval(same, g, n=n, seed=seed), g in calibration)
                           for g in same), key=lambda p: -p.label_f1))
    ladder = rows + ([reference] if reference in same else [])
    power = stats.resolving_power(same, label_f1, ladder, n=n, seed=seed) if len(ladder) >= 3 else None
    return LadderView(tuple(detectors), points, power)


def ladder_text(view: LadderView | None) -> str:
    if view is None:
        return ("No ladder cells yet (`bench run --generator ladder_1,ladder_2,ladder_3,ladder_4 --detector "
                "mvss_net,mesorch`, or the profile's study).")
    lines = [f"Every row: mean F1 over the detectors the ladder was trained with ({', '.join(view.detectors)}) and the "
             "test datasets, 95 % bootstrap interval over test images and seeds.", "",
             "| masks | role | label F1 (corpus) | downstream F1 | 95 % CI |", "|---|---|---|---|---|"]
    for p in view.points:
        lines.append(f"| {p.generator} | {'calibration' if p.calibration else 'generator'} | {p.label_f1:.3f} | "
                     f"{p.f1.estimate:.3f} | [{p.f1.low:.3f}, {p.f1.high:.3f}] |")
    rp = view.power
    lines.append("")
    if rp is None:
        lines.append("Resolving power: needs at least three rows on the ladder (oracle included).")
    elif rp.slope <= 0:
        lines.append(f"Resolving power: none at this budget. Downstream F1 does not rise with label F1 on the ladder "
                     f"(slope {rp.slope:+.3f}, Spearman {rp.spearman:+.2f}).")
    else:
        lines.append(f"Dose-response on the ladder: downstream F1 = {rp.intercept:.3f} + {rp.slope:.3f} x label F1 "
                     f"(Spearman {rp.spearman:+.2f} over {len(rp.points)} rows); a paired comparison of neighbouring "
                     f"rows has a 95 % half-width of {rp.half_width:.3f} F1, so the benchmark tells apart label "
                     f"qualities **{rp.label_f1_difference:.3f} label F1** apart (resolving power).")
    return "\n".join(lines)


def ladder_json(view: LadderView | None) -> dict | None:
    """The ladder for the headline JSON: its detectors, points with intervals, and the resolving power."""
    if view is None:
        return None
    rp = view.power
    return {"detectors": list(view.detectors),
            "points": [{"generator": p.generator, "label_f1": p.label_f1, "calibration": p.calibration,
                        "f1": p.f1.to_dict()} for p in view.points],
            "resolving_power": None if rp is None else
            {"slope": rp.slope, "intercept": rp.intercept, "spearman": rp.spearman, "half_width": rp.half_width,
             "label_f1_difference": rp.label_f1_difference if rp.slope > 0 else None}}
