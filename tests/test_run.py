"""`bench run`, `bench leaderboard`, `bench plots`: cells, resume between cells, the headline arithmetic."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import f1_score

from benchmarks.cli import main
from benchmarks.reporting import downstream
from benchmarks.downstream import cells as run_module
from benchmarks.downstream.corpus import mask_quality
from benchmarks.training.detectors import training_key

SMOKE = ["experiment=smoke", "profile.num_workers=0", "train.epochs=1", "train.progress=false"]


def _cells(results):
    return sorted(p.parent.relative_to(results / "runs").as_posix()
                  for p in (results / "runs").glob("*/*/*/seed*/cell.json"))


def _cell(results, generator, detector="segformer", seed=0):
    return results / "runs" / generator / detector / "cpu-quick" / f"seed{seed}"


def test_run_resumes_between_cells_and_writes_leaderboard_and_figures(tmp_path, monkeypatch, capsys, _bench_home):
    results = tmp_path / "res"
    argv = ["run", "--generator", "pixel_diff,oracle", "--detector", "segformer", *SMOKE, f"paths.results={results}"]
    real = run_module.train_one
    calls = []

    def dies_on_second_cell(cfg, detector, data, **kw):
        calls.append(data.name)
        if len(calls) == 2:
            raise KeyboardInterrupt("interrupted between cells")
        return real(cfg, detector, data, **kw)

    monkeypatch.setattr(run_module, "train_one", dies_on_second_cell)
    with pytest.raises(KeyboardInterrupt):
        main(argv)
    assert _cells(results) == ["pixel_diff/segformer/cpu-quick/seed0"]
    first = (_cell(results, "pixel_diff") / "cell.json").read_text()

    calls.clear()
    monkeypatch.setattr(run_module, "train_one", lambda *a, **kw: (calls.append(a[2].name), real(*a, **kw))[1])
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert len(calls) == 1 and calls[0].startswith("run-oracle")          # the finished cell was not redone
    assert "[skipped] pixel_diff x segformer" in out and "[done] oracle x segformer" in out
    assert (_cell(results, "pixel_diff") / "cell.json").read_text() == first
    assert _cells(results) == ["oracle/segformer/cpu-quick/seed0", "pixel_diff/segformer/cpu-quick/seed0"]

    cell = json.loads((_cell(results, "oracle") / "cell.json").read_text())
    assert set(cell["metrics"]) == {"synth_removal", "synth_splice", "synth_recolour", "synth_restyle", "synth_copymove"}
    assert cell["git_commit"] and cell["train"]["n_val"] > 0 and "seconds" in cell
    assert cell["torch_threads"] == torch.get_num_threads()
    assert "split=val" in cell["train"]["val_source"]                    # checkpoint choice on held-out corpus pairs
    assert (_cell(results, "oracle") / "config.yaml").is_file()
    curve = pd.read_csv(_cell(results, "oracle") / "val.csv")              # the learning curve, one row per epoch
    assert list(curve["epoch"]) == [1] and 0 <= curve["f1_per_image"].iloc[0] <= 1
    assert len(list((_cell(results, "oracle") / "examples").glob("*.png"))) == 5
    per_image = pd.read_csv(_cell(results, "oracle") / "per_image.csv")   # what the paired bootstrap resamples
    assert set(per_image.dataset) == set(cell["metrics"]) and {"id", "f1", "iou", "label"} <= set(per_image.columns)
    for name, m in cell["metrics"].items():
        assert per_image[per_image.dataset == name].f1.dropna().mean() == pytest.approx(m["f1_per_image"], abs=1e-5)
    quality = json.loads((results / "runs" / "oracle" / "annotation.json").read_text())["quality_vs_truth"]
    assert quality["f1_per_image"] == pytest.approx(1.0)                 # ground truth vs itself
    table = pd.read_csv(results / "leaderboards" / "downstream.csv")
    assert len(table) == 10 and set(table.generator) == {"pixel_diff", "oracle"}
    md = (results / "leaderboards" / "downstream.md").read_text()
    assert "experiment=smoke" in md and "No sigma headline yet" in md    # no sigma cells in this run
    assert "`oracle` vs `pixel_diff` (ground-truth masks against the baseline's): ΔF1" in md
    for stem in ("downstream_bars", "quality_vs_downstream", "downstream_heatmap", "qualitative_generators",
                 "qualitative_detectors_oracle", "learning_curves"):
        assert (results / "figures" / f"{stem}.png").stat().st_size > 0 and (results / "figures" / f"{stem}.pdf").is_file()

    # leaderboard / plots alone read results/ only
    assert main(["leaderboard", f"paths.results={results}"]) == 0
    assert main(["plots", f"paths.results={results}"]) == 0

    # other test sets: the trained detectors are tested again, not retrained
    logs = {p: p.read_text() for p in Path(_bench_home).glob("runs/detectors/run-*/segformer/log.csv")}
    assert len(logs) == 2
    assert main(["run", "--dataset", "synth_removal", *argv[1:]]) == 0
    assert {p: p.read_text() for p in logs} == logs
    assert set(json.loads((_cell(results, "oracle") / "cell.json").read_text())["metrics"]) == \
        {"synth_removal"}

    # --force redoes the cells
    calls.clear()
    assert main([*argv[:5], "--force", *argv[5:]]) == 0
    assert len(calls) == 2


def test_leaderboard_without_cells_is_a_clear_error(tmp_path, capsys):
    assert main(["leaderboard", f"paths.results={tmp_path}"]) == 2
    assert "no finished cells" in capsys.readouterr().err


def _frame(values: dict[str, list[float]]) -> pd.DataFrame:
    rows = []
    for g, f1s in values.items():
        for i, f1 in enumerate(f1s):
            rows.append({"generator": g, "detector": f"d{i % 2}", "dataset": f"s{i // 2}", "f1_per_image": f1,
                         "iou_per_image": f1 / 2})
    return pd.DataFrame(rows)


def test_headline_delta_and_gap_closed():
    frame = _frame({"sigma": [0.5, 0.6, 0.7, 0.8], "pixel_diff": [0.4, 0.4, 0.5, 0.5],
                    "ssim_diff": [0.1, 0.2, 0.3, 0.9], "oracle": [0.8, 0.8, 0.9, 0.9]})
    h = downstream.headline(frame)
    delta = {d["baseline"]: d for d in h["delta"]}
    assert delta["pixel_diff"]["mean_delta_f1"] == pytest.approx(0.65 - 0.45)
    assert delta["pixel_diff"]["wins"] == 4 and delta["ssim_diff"]["wins"] == 3
    assert h["best_baseline"] == "pixel_diff"                            # best mean F1 among the baselines
    assert h["gap_closed"] == pytest.approx((0.65 - 0.45) / (0.85 - 0.45))
    assert downstream.headline(frame.query("generator != 'sigma'"))["delta"] == []


def test_headline_pairs_only_shared_cells():
    frame = _frame({"sigma": [0.5, 0.6], "pixel_diff": [0.4, 0.4, 0.9, 0.9]})
    d = downstream.headline(frame)["delta"][0]
    assert d["cells"] == 2 and d["mean_delta_f1"] == pytest.approx(0.15)
    assert downstream.headline(frame)["gap_closed"] is None              # no oracle cells


def test_mask_quality_matches_sklearn(tmp_path):
    from PIL import Image

    from benchmarks.data.iml import ImlItem

    g = torch.Generator().manual_seed(0)
    items, truth, f1s = [], {}, []
    for i in range(5):
        gt = torch.rand(16, 16, generator=g) > 0.7
        pred = gt ^ (torch.rand(16, 16, generator=g) > 0.85)
        for name, m in (("p", pred), ("t", gt)):
            Image.fromarray(m.numpy().astype("uint8") * 255).save(tmp_path / f"{name}{i}.png")
        items.append(ImlItem(f"x{i}", tmp_path / "img.png", tmp_path / f"p{i}.png"))
        truth[f"x{i}"] = tmp_path / f"t{i}.png"
        f1s.append(f1_score(gt.flatten().numpy(), pred.flatten().numpy()))
    q = mask_quality(items, truth)
    assert q["scored_pairs"] == 5 and math.isclose(q["f1_per_image"], sum(f1s) / 5, rel_tol=1e-5)


def test_cells_made_under_other_training_settings_are_not_reused():
    from benchmarks.config import compose

    base = ["profile=cpu-quick", "generator=pixel_diff", "detector=segformer"]
    key = training_key(compose(base))
    assert training_key(compose([*base, "train.num_workers=0", "train.progress=false"])) == key
    assert training_key(compose([*base, "train.lr=3e-4"])) != key
    assert training_key(compose([*base, "train.epochs=1"])) != key
    assert training_key(compose([*base, "seed=1"])) != key


def _write_cell(runs, generator, detector, profile, seed, f1s=None, reason=None):
    folder = runs / generator / detector / profile / f"seed{seed}"
    folder.mkdir(parents=True)
    cell = {"generator": generator, "detector": detector, "profile": profile, "seed": seed, "overrides": [],
            "git_commit": "abc", "status": "failed" if reason else "done", "reason": reason,
            "metrics": {d: {"f1_per_image": v, "iou_per_image": v / 2} for d, v in (f1s or {}).items()}}
    (folder / "cell.json").write_text(json.dumps(cell))


def test_leaderboard_reads_one_profile_averages_seeds_and_lists_failed_cells(tmp_path):
    from benchmarks.config import compose
    from benchmarks.reporting.runs import write_leaderboard

    runs = tmp_path / "runs"
    _write_cell(runs, "oracle", "d1", "cpu-quick", 0, {"s1": 0.2, "s2": 0.4})
    _write_cell(runs, "oracle", "d1", "cpu-quick", 1, {"s1": 0.4, "s2": 0.6})    # a second seed beside the first
    _write_cell(runs, "oracle", "d2", "cpu-quick", 0, reason="training diverged: NaN")
    _write_cell(runs, "oracle", "d1", "cpu-study", 0, {"s1": 0.9, "s2": 0.9})    # another profile: never mixed in
    (runs / "oracle" / "d3").mkdir(parents=True)
    (runs / "oracle" / "d3" / "cell.json").write_text("{}")                      # the layout before seeds
    frame = downstream.collect(runs, "cpu-quick")
    assert sorted(set(frame.seed)) == [0, 1] and set(frame.profile) == {"cpu-quick"} and len(frame) == 4
    means = downstream.seed_means(frame)
    assert means.set_index("dataset").f1_per_image.to_dict() == pytest.approx({"s1": 0.3, "s2": 0.5})
    assert [f["detector"] for f in downstream.failed_cells(runs, "cpu-quick")] == ["d2"]

    md, paths = write_leaderboard(compose(["profile=cpu-quick", f"paths.results={tmp_path}"]))
    assert "1 failed cell(s)" in md and "training diverged: NaN" in md and "d1 [0,1]" in md
    assert "oracle/d3" in md and "0.900" not in md                               # legacy listed, cpu-study left out
    assert "seed=K  # once for each K in [0, 1]" in md
    assert [p.name for p in paths][0] == "downstream.csv"
    md, paths = write_leaderboard(compose(["profile=cpu-study", f"paths.results={tmp_path}"]))
    assert "0.900" in md and "failed" not in md and paths[0].name == "downstream_cpu-study.csv"


def test_a_diverged_training_is_published_as_a_failed_cell(tmp_path, monkeypatch):
    from benchmarks.config import compose
    from benchmarks.training.data import TrainData
    from detectors.train import NonFiniteLossError

    def diverges(*args, **kwargs):
        raise NonFiniteLossError("20 consecutive optimizer steps had a non-finite loss")

    monkeypatch.setattr(run_module, "train_one", diverges)
    overrides = ["profile=cpu-quick", *SMOKE, f"paths.results={tmp_path / 'res'}", f"paths.runs={tmp_path / 'runs'}",
                 "seed=3"]
    data = TrainData("run-x", "src", [], [], "val")
    status, cell = run_module.run_cell(compose(overrides), overrides, "oracle", "segformer", data, [], {}, False)
    assert status == "failed" and cell["metrics"] == {} and "non-finite" in cell["reason"] and cell["seed"] == 3
    folder = tmp_path / "res" / "runs" / "oracle" / "segformer" / "cpu-quick" / "seed3"
    assert json.loads((folder / "cell.json").read_text())["status"] == "failed"
    status, _ = run_module.run_cell(compose(overrides), overrides, "oracle", "segformer", data, [], {}, False)
    assert status == "failed"                                                    # a re-run does not retry it
    frame = downstream.collect(tmp_path / "res" / "runs", "cpu-quick")
    assert frame.empty and downstream.failed_cells(tmp_path / "res" / "runs", "cpu-quick")[0]["seed"] == 3


def _labelled_corpus(folder, n=4, side=64):
    from PIL import Image

    for sub in "oem":
        (folder / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        image = rng.integers(0, 255, (side, side, 3), dtype=np.uint8)
        mask = np.zeros((side, side), np.uint8)
        mask[8 + i:40 + i, 10:44] = 255
        for name, array in (("o", image), ("e", image[::-1].copy()), ("m", mask)):
            Image.fromarray(array).save(folder / name / f"p{i}.png")   # files named by id, as the suite's
        rows.append({"id": f"p{i}", "original": f"o/p{i}.png", "edited": f"e/p{i}.png", "instruction": "x",
                     "mask": f"m/p{i}.png"})
    (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_a_ladder_row_makes_its_corpus_masks_from_the_truth(tmp_path):
    """bench run's ladder generators read the corpus's ground truth (bench annotate refuses them): each mask is
    the truth degraded by the ladder, the folder is a complete calibration-row annotation, and it is reused."""
    from benchmarks.config import compose
    from benchmarks.data.imageio import load_mask
    from benchmarks.downstream.corpus import annotate_corpus, annotation_key, open_corpus
    from benchmarks.generators.ladder import LADDER, degrade

    corpus_dir = _labelled_corpus(tmp_path / "corpus")
    cfg = compose([f"paths.home={tmp_path / 'home'}", "generator=ladder_4"], command="run")
    corpus = open_corpus(cfg, str(corpus_dir))
    key = annotation_key(cfg, corpus)
    items, info = annotate_corpus(cfg, "ladder_4", corpus, key)
    assert info["calibration"] is True and info["pairs"] == 4 and info["skipped"] == 0
    assert [it.id for it in items] == ["p0", "p1", "p2", "p3"]
    for it in items:
        truth = load_mask(corpus.truth[it.id])
        np.testing.assert_array_equal(load_mask(it.mask), degrade(truth, "mix", LADDER[4]))
    assert mask_quality(items, corpus.truth)["f1_per_image"] < 0.95       # degraded: not the truth itself
    stamp = items[0].mask.stat().st_mtime_ns
    again, _ = annotate_corpus(cfg, "ladder_4", corpus, key)                # complete: reused, not redone
    assert again[0].mask.stat().st_mtime_ns == stamp


def test_a_ladder_row_needs_a_corpus_with_truth(tmp_path):
    from benchmarks.config import compose
    from benchmarks.downstream.corpus import Corpus, annotate_corpus

    cfg = compose([f"paths.home={tmp_path / 'home'}", "generator=ladder_1"], command="run")
    with pytest.raises(ValueError, match="reads ground-truth masks; the corpus .* has none"):
        annotate_corpus(cfg, "ladder_1", Corpus(tmp_path, {}, {}), "k")
