"""Leaderboard pieces: generator slices by side-effect edits; downstream intervals from per-image scores."""

from __future__ import annotations

import math

import pytest

from benchmarks.reporting.leaderboard import side_effect_slices


def test_side_effect_slices_average_manipulated_pairs_per_slice():
    rows = [
        {"generator": "a", "f1": 0.8, "manipulated": True, "side_effect": True},
        {"generator": "a", "f1": 0.6, "manipulated": True, "side_effect": True},
        {"generator": "a", "f1": 0.2, "manipulated": True, "side_effect": False},
        {"generator": "a", "f1": math.nan, "manipulated": False, "side_effect": math.nan},  # authentic: left out
        {"generator": "b", "f1": 0.1, "manipulated": True, "side_effect": True},
        {"generator": "b", "f1": 0.9, "manipulated": True, "side_effect": False},
    ]
    lines = side_effect_slices(rows).splitlines()
    assert lines[2] == "| a | 0.700 | 0.200 | 2 / 1 |"       # best on side-effect pairs first
    assert lines[3] == "| b | 0.100 | 0.900 | 1 / 1 |"
    assert side_effect_slices([{"generator": "a", "f1": 0.5, "manipulated": True}]) == ""


def test_downstream_intervals_come_from_the_cells_per_image_scores(tmp_path):
    """Per-image F1 of every cell are stacked by id (authentic images left out) and every headline ΔF1 gets a
    paired interval; a difference that is the same on every image has a zero-width interval."""
    import pandas as pd

    from benchmarks.reporting.downstream_stats import add_intervals, image_scores

    rows = []
    for g, offset in (("sigma", 0.2), ("pixel_diff", 0.1), ("oracle", 0.3)):
        folder = f"{g}/mvss_net/cpu-quick/seed0"
        (tmp_path / folder).mkdir(parents=True)
        table = pd.DataFrame({"dataset": ["synth_removal"] * 6, "id": [f"r{i}" for i in (5, 4, 3, 2, 1, 0)],
                              "label": [1, 1, 1, 1, 1, 0], "f1": [offset + 0.1 * i for i in range(6)]})
        table.to_csv(tmp_path / folder / "per_image.csv", index=False)
        rows.append({"generator": g, "detector": "mvss_net", "folder": folder})
    scores = image_scores(pd.DataFrame(rows), tmp_path)
    assert scores["sigma"]["mvss_net"]["synth_removal"].shape == (1, 5)          # authentic r0 left out
    assert list(scores["sigma"]["mvss_net"]["synth_removal"][0]) == pytest.approx([0.6, 0.5, 0.4, 0.3, 0.2])
    h = {"focus": "sigma", "reference": "oracle", "best_baseline": "pixel_diff", "gap": {"cells": 1},
         "delta": [{"baseline": "pixel_diff"}]}
    h = add_intervals(h, scores, n=200)
    ci = h["delta"][0]["ci"]
    assert ci["estimate"] == pytest.approx(0.1) and ci["low"] == pytest.approx(0.1) and ci["significant"]
    assert h["gap_ci"]["estimate"] == pytest.approx(0.5) and h["seeds_per_cell"] == [1]
