"""Paired bootstrap statistics for downstream comparisons (pixel F1 per image of detectors trained on each
generator's masks).

Scores are nested as ``scores[generator][detector][dataset]``: an array (seeds, images) of per-image F1,
images in the same order for every generator and detector (they are the same test images;
:func:`scores_from_rows` builds them so from flat per-image rows). A generator's
mean is the average over detectors and datasets of the per-dataset mean over seeds and images, the
leaderboard's "mean F1" (each dataset and detector counts once whatever its size).

One bootstrap replicate resamples, with replacement, the test images of every dataset (the same draw for
every generator and detector: the comparison is paired) and, for every (generator, detector) cell, its
training seeds (seeds are not paired across generators). ``compare`` reports the difference between two
generators with a percentile interval; ``gap_closed`` the share of the baseline-to-reference gap that a
generator closes; ``mean_interval`` the interval of one generator's mean; ``resolving_power`` the smallest
label-F1 difference the benchmark tells apart, from the label-quality ladder.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

Scores = Mapping[str, Mapping[str, Mapping[str, np.ndarray]]]  # generator -> detector -> dataset -> (seeds, images)


@dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap percentile interval."""

    estimate: float
    low: float
    high: float
    level: float = 0.95
    replicates: int = 0

    @property
    def significant(self) -> bool:
        """The interval excludes zero."""
        return self.low > 0 or self.high < 0

    def to_dict(self) -> dict[str, float | bool]:
        return {**asdict(self), "significant": self.significant}


def _as_2d(x: np.ndarray | Sequence[float]) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    return arr[None] if arr.ndim == 1 else arr


def scores_from_rows(rows: Iterable[tuple[str, str, str, object, str, float]]) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """Nested per-image F1 from flat rows ``(generator, detector, dataset, seed, image id, f1)``: for each
    dataset the images every (generator, detector, seed) has a score for, in one order (sorted ids), so
    that a bootstrap draw pairs the same images everywhere; seeds stacked in sorted order. NaN scores
    (an image left out) count as missing."""
    table: dict[str, dict[tuple[str, str], dict[object, dict[str, float]]]] = {}
    for generator, detector, dataset, seed, image, f1 in rows:
        if f1 is None or f1 != f1:
            continue
        table.setdefault(dataset, {}).setdefault((generator, detector), {}).setdefault(seed, {})[image] = float(f1)
    out: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for dataset, cells in sorted(table.items()):
        ids = sorted(set.intersection(*(set(per) for seeds in cells.values() for per in seeds.values())))
        if not ids:
            continue
        for (generator, detector), seeds in sorted(cells.items()):
            out.setdefault(generator, {}).setdefault(detector, {})[dataset] = np.array(
                [[seeds[s][i] for i in ids] for s in sorted(seeds, key=str)])
    return out


def check_scores(scores: Scores, generators: Sequence[str]) -> tuple[list[str], dict[str, int]]:
    """The detectors every named generator has, and the image count of every dataset (equal across cells)."""
    missing = [g for g in generators if g not in scores]
    if missing:
        raise ValueError(f"no cells for generator(s) {missing}; have {sorted(scores)}")
    detectors = sorted(set.intersection(*(set(scores[g]) for g in generators)))
    if not detectors:
        raise ValueError(f"generators {list(generators)} share no detector")
    sizes: dict[str, int] = {}
    for g in generators:
        for d in detectors:
            for ds, arr in scores[g][d].items():
                n = _as_2d(arr).shape[1]
                if sizes.setdefault(ds, n) != n:
                    raise ValueError(f"dataset {ds!r}: {n} images in cell ({g}, {d}) but {sizes[ds]} elsewhere; paired "
                                     "comparisons need the same test images in every cell")
    return detectors, sizes


def mean_f1(scores: Scores, generator: str, detectors: Sequence[str],
            image_draw: Mapping[str, np.ndarray] | None = None, rng: np.random.Generator | None = None) -> float:
    """Mean over detectors and datasets of the per-dataset mean over seeds and (drawn) images."""
    per_cell = []
    for d in detectors:
        cell = {ds: _as_2d(arr) for ds, arr in sorted(scores[generator][d].items())}
        n_seeds = next(iter(cell.values())).shape[0]
        seeds = rng.integers(0, n_seeds, n_seeds) if rng is not None else None  # one draw per trained cell
        for ds, arr in cell.items():
            if seeds is not None:
                arr = arr[seeds]
            if image_draw is not None:
                arr = arr[:, image_draw[ds]]
            per_cell.append(arr.mean())
    return float(np.mean(per_cell))


def _replicates(scores: Scores, generators: Sequence[str], n: int, seed: int,
                draws: Sequence[Mapping[str, np.ndarray]] | None = None) -> tuple[np.ndarray, list[str]]:
    """(replicates, generators) means under the shared image resample (and per-cell seed resample)."""
    detectors, sizes = check_scores(scores, generators)
    rng = np.random.default_rng(seed)
    if draws is None:
        draws = [{ds: rng.integers(0, k, k) for ds, k in sorted(sizes.items())} for _ in range(n)]
        seed_rng = rng
    else:
        seed_rng = None  # given draws (tests): images only
    out = np.array([[mean_f1(scores, g, detectors, draw, seed_rng) for g in generators] for draw in draws])
    return out, detectors


def _interval(point: float, samples: np.ndarray, level: float) -> Interval:
    samples = samples[np.isfinite(samples)]
    lo, hi = np.quantile(samples, [(1 - level) / 2, 1 - (1 - level) / 2]) if len(samples) else (np.nan, np.nan)
    return Interval(float(point), float(lo), float(hi), level, int(len(samples)))


def mean_interval(scores: Scores, generator: str, *, n: int = 2000, seed: int = 0, level: float = 0.95) -> Interval:
    """A generator's mean F1 over its detectors and datasets, with its bootstrap interval (images and seeds)."""
    reps, detectors = _replicates(scores, [generator], n, seed)
    return _interval(mean_f1(scores, generator, detectors), reps[:, 0], level)


def compare(scores: Scores, a: str, b: str, *, n: int = 2000, seed: int = 0, level: float = 0.95,
            draws: Sequence[Mapping[str, np.ndarray]] | None = None) -> Interval:
    """Mean F1 of `a` minus mean F1 of `b`, paired over test images, with its bootstrap interval."""
    detectors, _ = check_scores(scores, [a, b])
    point = mean_f1(scores, a, detectors) - mean_f1(scores, b, detectors)
    reps, _ = _replicates(scores, [a, b], n, seed, draws)
    return _interval(point, reps[:, 0] - reps[:, 1], level)


def gap_closed(scores: Scores, generator: str, baseline: str, reference: str = "oracle", *, n: int = 2000,
               seed: int = 0, level: float = 0.95) -> Interval:
    """(generator - baseline) / (reference - baseline): the share of the gap to ground-truth labels closed."""
    names = [generator, baseline, reference]
    detectors, _ = check_scores(scores, names)
    g, b, r = (mean_f1(scores, x, detectors) for x in names)
    reps, _ = _replicates(scores, names, n, seed)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = (reps[:, 0] - reps[:, 1]) / (reps[:, 2] - reps[:, 1])
    point = (g - b) / (r - b) if r != b else float("nan")
    return _interval(point, share, level)


@dataclass(frozen=True)
class ResolvingPower:
    """Downstream F1 as a linear function of label F1 (fitted on the ladder), and the smallest label-F1
    difference whose downstream difference clears the typical 95 % interval half-width of a paired comparison."""

    slope: float
    intercept: float
    spearman: float
    half_width: float
    label_f1_difference: float
    points: tuple[tuple[str, float, float], ...]  # (generator, label F1, downstream F1)


def resolving_power(scores: Scores, label_f1: Mapping[str, float], ladder: Sequence[str], *, n: int = 1000,
                    seed: int = 0, level: float = 0.95) -> ResolvingPower:
    """Fit downstream F1 against label F1 over the ladder's rows; the half-width is the mean over pairs of
    neighbouring ladder rows of their paired interval's half-width."""
    from scipy.stats import spearmanr

    ladder = sorted(ladder, key=lambda g: -label_f1[g])
    detectors, _ = check_scores(scores, ladder)
    xs = np.array([label_f1[g] for g in ladder])
    ys = np.array([mean_f1(scores, g, detectors) for g in ladder])
    slope, intercept = np.polyfit(xs, ys, 1)
    halves = []
    for hi, lo in zip(ladder, ladder[1:]):
        iv = compare(scores, hi, lo, n=n, seed=seed, level=level)
        halves.append((iv.high - iv.low) / 2)
    half = float(np.mean(halves))
    rho = float(spearmanr(xs, ys).statistic) if len(xs) > 2 else float("nan")
    return ResolvingPower(float(slope), float(intercept), rho, half, half / slope if slope > 0 else float("inf"),
                          tuple((g, float(x), float(y)) for g, x, y in zip(ladder, xs, ys)))
