"""Paired bootstrap statistics: against a brute-force enumeration on a tiny case, and their behaviour."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from benchmarks.reporting.stats import compare, gap_closed, mean_f1, resolving_power, scores_from_rows


def _scores(rng: np.random.Generator, means: dict[str, float], n_images=(4, 3), seeds: int = 1, noise: float = 0.2):
    """generator -> detector -> dataset -> (seeds, images), a shared per-image difficulty plus noise."""
    difficulty = {f"ds{i}": rng.uniform(-0.2, 0.2, n) for i, n in enumerate(n_images)}
    return {g: {d: {ds: np.clip(m + diff + noise * rng.standard_normal((seeds, len(diff))), 0, 1)
                    for ds, diff in difficulty.items()} for d in ("det_a", "det_b")} for g, m in means.items()}


def test_bootstrap_matches_brute_force_enumeration():
    """Every image resample of a 3 + 2 image case, computed the slow way, gives the same interval."""
    rng = np.random.default_rng(0)
    scores = _scores(rng, {"a": 0.5, "b": 0.4}, n_images=(3, 2))
    draws = [{"ds0": np.array(i), "ds1": np.array(j)}
             for i in itertools.product(range(3), repeat=3) for j in itertools.product(range(2), repeat=2)]
    brute = []
    for draw in draws:  # per detector, per dataset mean over the drawn images; then the plain average
        per = [[np.mean([scores[g][d][ds][0][k] for k in draw[ds]]) for d in ("det_a", "det_b") for ds in ("ds0", "ds1")]
               for g in ("a", "b")]
        brute.append(np.mean(per[0]) - np.mean(per[1]))
    iv = compare(scores, "a", "b", draws=draws)
    lo, hi = np.quantile(brute, [0.025, 0.975])
    assert iv.low == pytest.approx(lo) and iv.high == pytest.approx(hi) and iv.replicates == len(draws)
    point = np.mean([scores["a"][d][ds].mean() - scores["b"][d][ds].mean() for d in ("det_a", "det_b") for ds in ("ds0", "ds1")])
    assert iv.estimate == pytest.approx(point)
    # the Monte Carlo interval approaches the exact one
    mc = compare(scores, "a", "b", n=4000, seed=1)
    assert abs(mc.low - lo) < 0.02 and abs(mc.high - hi) < 0.02


def test_real_differences_are_significant_and_null_ones_are_not():
    rng = np.random.default_rng(1)
    scores = _scores(rng, {"good": 0.55, "bad": 0.40, "twin": 0.40}, n_images=(60, 60, 60), seeds=2, noise=0.1)
    assert compare(scores, "good", "bad", n=500).significant
    null = compare(scores, "twin", "bad", n=500)
    assert null.low < 0 < null.high or abs(null.estimate) < 0.02


def test_seed_resampling_widens_the_interval():
    rng = np.random.default_rng(2)
    scores = _scores(rng, {"a": 0.5, "b": 0.45}, n_images=(40, 40), seeds=3, noise=0.05)
    for g, shift in (("a", 0.05), ("b", -0.05)):   # seed-to-seed spread the image resample alone would not see
        for d in scores[g]:
            for ds in scores[g][d]:
                scores[g][d][ds][0] += shift
    one = {g: {d: {ds: a[:1] for ds, a in v.items()} for d, v in cells.items()} for g, cells in scores.items()}
    assert compare(scores, "a", "b", n=800).high - compare(scores, "a", "b", n=800).low > \
        compare(one, "a", "b", n=800).high - compare(one, "a", "b", n=800).low


def test_gap_closed_and_resolving_power():
    rng = np.random.default_rng(3)
    ladder = {"oracle": 0.50, "l1": 0.45, "l2": 0.40, "l3": 0.35, "l4": 0.30}
    scores = _scores(rng, {**ladder, "base": 0.30, "mine": 0.40}, n_images=(80, 80), noise=0.05)
    share = gap_closed(scores, "mine", "base", "oracle", n=400)
    assert 0.3 < share.estimate < 0.7 and share.low < share.estimate < share.high
    label = {"oracle": 1.0, "l1": 0.8, "l2": 0.6, "l3": 0.4, "l4": 0.2}
    rp = resolving_power(scores, label, list(ladder), n=300)
    assert rp.slope == pytest.approx(0.25, abs=0.05) and rp.spearman == pytest.approx(1.0)
    assert 0 < rp.label_f1_difference < 0.2 and rp.label_f1_difference == pytest.approx(rp.half_width / rp.slope)
    assert mean_f1(scores, "oracle", ["det_a", "det_b"]) > mean_f1(scores, "l4", ["det_a", "det_b"])


def test_unpaired_cells_are_refused():
    rng = np.random.default_rng(4)
    scores = _scores(rng, {"a": 0.5, "b": 0.4})
    scores["b"]["det_a"]["ds0"] = scores["b"]["det_a"]["ds0"][:, :2]
    with pytest.raises(ValueError, match="same test images"):
        compare(scores, "a", "b", n=10)
    with pytest.raises(ValueError, match="no cells"):
        compare(scores, "a", "zzz", n=10)


def test_scores_from_rows_pairs_the_same_images_everywhere():
    """Images are matched by id (not by position), an image some cell lacks or scored NaN is left out of
    every cell of its dataset, and seeds stack in order."""
    rows = [("a", "d", "s", 0, "x", 0.1), ("a", "d", "s", 0, "y", 0.2), ("a", "d", "s", 0, "z", 0.3),
            ("a", "d", "s", 1, "z", 0.6), ("a", "d", "s", 1, "x", 0.4), ("a", "d", "s", 1, "y", 0.5),
            ("b", "d", "s", 0, "y", 0.9), ("b", "d", "s", 0, "x", 0.8), ("b", "d", "s", 0, "z", float("nan")),
            ("b", "d", "t", 0, "w", 1.0)]
    scores = scores_from_rows(rows)
    assert scores["a"]["d"]["s"].tolist() == [[0.1, 0.2], [0.4, 0.5]]      # z: NaN for b, left out everywhere
    assert scores["b"]["d"]["s"].tolist() == [[0.8, 0.9]]
    assert scores["b"]["d"]["t"].tolist() == [[1.0]] and "t" not in scores["a"]["d"]


def test_compare_evals_pairs_two_runs_of_one_generator(tmp_path, capsys):
    """benchmarks/perf/compare_evals.py: the same pairs scored in two results folders, their difference paired."""
    import pandas as pd

    from benchmarks.perf.compare_evals import main as compare_evals

    rng = np.random.default_rng(0)
    base = rng.uniform(0.3, 0.9, 80)
    for folder, shift in (("a", 0.0), ("b", 0.1)):
        out = tmp_path / folder / "generators" / "per_pair"
        out.mkdir(parents=True)
        pd.DataFrame({"generator": "sigma", "id": [f"p{i}" for i in range(80)], "f1": base - shift,
                      "manipulated": True}).to_csv(out / "set1.csv", index=False)
    assert compare_evals(["--a", str(tmp_path / "a"), "--b", str(tmp_path / "b"), "--dataset", "set1"]) == 0
    out = capsys.readouterr().out
    assert "a - b: +0.100 F1" in out and "(significant)" in out
    with pytest.raises(ValueError, match="no rows for generator 'other'"):
        compare_evals(["--a", str(tmp_path / "a"), "--b", str(tmp_path / "b"), "--dataset", "set1",
                       "--generator", "other"])
