"""The study leaderboard: the ladder's dose-response and resolving power, calibration rows kept out of the
headline's baselines, intervals in the generator table, and the study cells it does not hold yet."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from benchmarks.config import compose
from benchmarks.downstream.study import study_cells
from benchmarks.reporting.runs import leaderboard_and_plots

DATASETS = ("s1", "s2")
IMAGES = 40


def _cell(runs, generator, detector, seed, level, rng, calibration=False, key=None, label_f1=None):
    """A finished cpu-study cell whose per-image F1 sits around `level` (a shared per-image difficulty),
    trained on the annotation `key` of its generator when given."""
    folder = runs / generator / detector / "cpu-study" / f"seed{seed}"
    folder.mkdir(parents=True)
    difficulty = np.linspace(-0.1, 0.1, IMAGES)
    rows, metrics = [], {}
    for ds in DATASETS:
        f1 = np.clip(level + difficulty + 0.03 * rng.standard_normal(IMAGES), 0, 1)
        rows += [{"dataset": ds, "id": f"{ds}-{i}", "label": 1, "score": 0.5, "f1": v, "iou": v / 2}
                 for i, v in enumerate(f1)]
        metrics[ds] = {"f1_per_image": float(f1.mean()), "iou_per_image": float(f1.mean() / 2)}
    pd.DataFrame(rows).to_csv(folder / "per_image.csv", index=False)
    cell = {"generator": generator, "detector": detector, "profile": "cpu-study", "seed": seed, "overrides": [],
            "git_commit": "abc", "status": "done", "metrics": metrics}
    if key:
        cell["annotation"] = {"key": key, "quality_vs_truth": {"f1_per_image": label_f1}}
    (folder / "cell.json").write_text(json.dumps(cell))


def _annotation(runs, generator, label_f1, calibration=False, key=None):
    (runs / generator).mkdir(parents=True, exist_ok=True)
    (runs / generator / "annotation.json").write_text(json.dumps(
        {"calibration": calibration, "quality_vs_truth": {"f1_per_image": label_f1}, **({"key": key} if key else {})}))


def test_study_grid_lists_every_cell_once():
    cfg = compose(["profile=cpu-study"], command="run")
    cells = study_cells(cfg)
    assert len(cells) == len(set(cells)) == 4 * 6 * 2 + 4 * 2 * 2
    assert cells[0] == ("sigma", "mvss_net", 0) and cells[-1] == ("ladder_4", "mesorch", 1)
    assert study_cells(compose(["profile=cpu-quick"], command="run")) == []


def test_ladder_gives_dose_response_and_calibration_rows_are_not_baselines(tmp_path):
    runs = tmp_path / "runs"
    rng = np.random.default_rng(0)
    # downstream F1 = 0.2 + 0.3 x label F1 on the ladder; sigma and pixel_diff on every detector
    ladder = {"oracle": 1.0, "ladder_1": 0.8, "ladder_2": 0.6, "ladder_3": 0.4, "ladder_4": 0.2}
    for g, q in ladder.items():
        _annotation(runs, g, q, calibration=g != "oracle")
        for d in ("mvss_net", "mesorch"):
            for seed in (0, 1):
                _cell(runs, g, d, seed, 0.2 + 0.3 * q, rng)
    for g, q in {"sigma": 0.7, "pixel_diff": 0.55}.items():
        _annotation(runs, g, q)
        for d in ("mvss_net", "mesorch", "trufor"):
            _cell(runs, g, d, 0, 0.2 + 0.3 * q, rng)
    md, paths = leaderboard_and_plots(compose(["profile=cpu-study", f"paths.results={tmp_path}"], command="run"))
    h = json.loads((tmp_path / "leaderboards" / "downstream_cpu-study_headline.json").read_text())
    assert [d["baseline"] for d in h["delta"]] == ["pixel_diff"]        # ladder rows read the truth: not baselines
    room = h["reference_delta"]
    assert [d["baseline"] for d in room] == ["pixel_diff"] and room[0]["ci"]["significant"]
    assert room[0]["mean_delta_f1"] == pytest.approx(0.3 * (1.0 - 0.55), abs=0.02)
    assert h["best_baseline"] == "pixel_diff"
    rp = h["ladder"]["resolving_power"]
    assert h["ladder"]["detectors"] == ["mesorch", "mvss_net"]
    assert rp["slope"] == pytest.approx(0.3, abs=0.03) and rp["spearman"] == pytest.approx(1.0)
    assert 0 < rp["label_f1_difference"] < 0.2
    points = {p["generator"]: p for p in h["ladder"]["points"]}
    assert set(points) == {*ladder, "sigma", "pixel_diff"} and points["ladder_2"]["calibration"]
    assert points["sigma"]["f1"]["low"] < points["sigma"]["f1"]["estimate"] < points["sigma"]["f1"]["high"]
    assert "## Label-quality ladder" in md and "resolving power" in md
    assert "| ladder_3 | calibration |" in md
    # the generator table: interval and verdict against sigma; the study's missing cells named
    assert "| pixel_diff | baseline |" in md and "significant" in md
    assert "cell(s) missing" in md and "`grounding_only` seed 0: mvss_net, trufor" in md
    assert (tmp_path / "figures" / "cpu-study" / "quality_vs_downstream.png").stat().st_size > 0


def test_a_flat_ladder_says_the_benchmark_does_not_resolve(tmp_path):
    runs = tmp_path / "runs"
    rng = np.random.default_rng(1)
    for g, q in {"oracle": 1.0, "ladder_1": 0.8, "ladder_3": 0.4}.items():
        _annotation(runs, g, q, calibration=g != "oracle")
        for d in ("mvss_net", "mesorch"):
            _cell(runs, g, d, 0, 0.3 - 0.02 * q, rng)                        # no dose-response at all
    md, _ = leaderboard_and_plots(compose(["profile=cpu-study", f"paths.results={tmp_path}"], command="run"))
    assert "Resolving power: none at this budget" in md
    h = json.loads((tmp_path / "leaderboards" / "downstream_cpu-study_headline.json").read_text())
    assert h["ladder"]["resolving_power"]["label_f1_difference"] is None


def test_cells_trained_on_an_earlier_annotation_of_their_generator_are_listed(tmp_path):
    """A generator whose weights changed after some of its cells were trained (its annotation key moved on):
    the leaderboard and the headline JSON name those cells; cells of the current annotation are not listed."""
    runs = tmp_path / "runs"
    rng = np.random.default_rng(2)
    _annotation(runs, "oracle", 1.0, key="truth")
    _annotation(runs, "sigma", 0.7, key="new")
    for d in ("mvss_net", "mesorch"):
        _cell(runs, "oracle", d, 0, 0.5, rng, key="truth")
    _cell(runs, "sigma", "mvss_net", 0, 0.4, rng, key="old")
    _cell(runs, "sigma", "mvss_net", 1, 0.4, rng, key="old")
    _cell(runs, "sigma", "mesorch", 0, 0.4, rng, key="new")
    md, _ = leaderboard_and_plots(compose(["profile=cpu-study", f"paths.results={tmp_path}"], command="run"))
    assert "**2 cell(s) were trained on an earlier annotation of their generator**" in md
    assert "- `sigma` (annotation old; now new): mvss_net [0], mvss_net [1]" in md
    h = json.loads((tmp_path / "leaderboards" / "downstream_cpu-study_headline.json").read_text())
    assert sorted((c["detector"], c["seed"]) for c in h["stale_cells"]) == [("mvss_net", 0), ("mvss_net", 1)]


def test_corpus_mask_f1_is_of_the_annotation_the_profiles_cells_were_trained_on(tmp_path):
    """All of a profile's cells of a generator share an earlier annotation: its label F1 is theirs, not the
    latest annotation's; cells from two annotations fall back to the latest."""
    from benchmarks.reporting.downstream import mask_quality

    runs = tmp_path / "runs"
    rng = np.random.default_rng(3)
    _annotation(runs, "sigma", 0.75, key="new")
    for d in ("mvss_net", "mesorch"):
        _cell(runs, "sigma", d, 0, 0.4, rng, key="old", label_f1=0.70)
    assert mask_quality(runs, "cpu-study") == {"sigma": 0.70}
    _cell(runs, "sigma", "trufor", 0, 0.4, rng, key="new", label_f1=0.75)
    _cell(runs, "sigma", "trufor", 1, 0.4, rng, key="old", label_f1=0.70)
    assert mask_quality(runs, "cpu-study") == {"sigma": 0.75}
