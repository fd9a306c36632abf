"""`bench run`, `bench leaderboard`, `bench plots`: cells, resume between cells, the headline arithmetic."""

from __future__ import annotations

import json
import math
from pathlib import Path

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
    return sorted(p.parent.relative_to(results / "runs").as_posix() for p in (results / "runs").glob("*/*/cell.json"))


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
    assert _cells(results) == ["pixel_diff/segformer"]
    first = (results / "runs" / "pixel_diff" / "segformer" / "cell.json").read_text()

    calls.clear()
    monkeypatch.setattr(run_module, "train_one", lambda *a, **kw: (calls.append(a[2].name), real(*a, **kw))[1])
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert len(calls) == 1 and calls[0].startswith("run-oracle")          # the finished cell was not redone
    assert "[skipped] pixel_diff x segformer" in out and "[done] oracle x segformer" in out
    assert (results / "runs" / "pixel_diff" / "segformer" / "cell.json").read_text() == first
    assert _cells(results) == ["oracle/segformer", "pixel_diff/segformer"]

    cell = json.loads((results / "runs" / "oracle" / "segformer" / "cell.json").read_text())
    assert set(cell["metrics"]) == {"synth_removal", "synth_splice", "synth_recolour", "synth_restyle", "synth_copymove"}
    assert cell["git_commit"] and cell["train"]["n_val"] > 0 and "seconds" in cell
    assert cell["torch_threads"] == torch.get_num_threads()
    assert "split=val" in cell["train"]["val_source"]                    # checkpoint choice on held-out corpus pairs
    assert (results / "runs" / "oracle" / "segformer" / "config.yaml").is_file()
    assert len(list((results / "runs" / "oracle" / "segformer" / "examples").glob("*.png"))) == 5
    quality = json.loads((results / "runs" / "oracle" / "annotation.json").read_text())["quality_vs_truth"]
    assert quality["f1_per_image"] == pytest.approx(1.0)                 # ground truth vs itself
    table = pd.read_csv(results / "leaderboards" / "downstream.csv")
    assert len(table) == 10 and set(table.generator) == {"pixel_diff", "oracle"}
    md = (results / "leaderboards" / "downstream.md").read_text()
    assert "experiment=smoke" in md and "No headline yet" in md          # no sigma cells in this run
    for stem in ("downstream_bars", "quality_vs_downstream", "downstream_heatmap", "qualitative_generators",
                 "qualitative_detectors_oracle"):
        assert (results / "figures" / f"{stem}.png").stat().st_size > 0 and (results / "figures" / f"{stem}.pdf").is_file()

    # leaderboard / plots alone read results/ only
    assert main(["leaderboard", f"paths.results={results}"]) == 0
    assert main(["plots", f"paths.results={results}"]) == 0

    # other test sets: the trained detectors are tested again, not retrained
    logs = {p: p.read_text() for p in Path(_bench_home).glob("runs/detectors/run-*/segformer/log.csv")}
    assert len(logs) == 2
    assert main(["run", "--dataset", "synth_removal", *argv[1:]]) == 0
    assert {p: p.read_text() for p in logs} == logs
    assert set(json.loads((results / "runs" / "oracle" / "segformer" / "cell.json").read_text())["metrics"]) == \
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
