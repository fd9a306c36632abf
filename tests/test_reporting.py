"""Generator leaderboard slices: pairs with and without side-effect edits."""

from __future__ import annotations

import math

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
