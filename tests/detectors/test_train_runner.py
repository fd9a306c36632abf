"""`bench train-detector` / `bench eval-detector` on tiny IML lists written here, with a tiny conv detector
registered for the test (and a copy of configs/ that names it)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.metrics import f1_score
from torch import nn

from benchmarks.cli import main
from benchmarks.config import compose, config_dir, group_options
from benchmarks.data.errors import DataError, SkipLog
from benchmarks.data.loading import pad_collate
from benchmarks import builders
from benchmarks.data.datasets import iml_test_sets
from benchmarks.evaluation import detectors as eval_detector
from benchmarks.evaluation import robustness
from benchmarks.training import data as training_data
from benchmarks.training import detectors as train_detector
from benchmarks.training.config import detector_training
from detectors.base import DETECTORS, Detector, DetectorInfo
from detectors.losses import bce, dice

NAME = "tiny_test"


class TinyDetector(Detector):
    info = DetectorInfo(name=NAME, family="2-layer conv", paper="none (test fixture)", input_size=16, stride=1)

    def __init__(self, variant: str = "tiny", pretrained_path: str | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 1, 3, padding=1)

    def forward(self, x):
        return {"mask_logits": self.conv2(F.relu(self.conv1(x))), "score_logits": None}

    def loss(self, out, batch):
        b, d = bce(out["mask_logits"], batch), dice(out["mask_logits"], batch)
        return b + d, {"bce": b.detach(), "dice": d.detach()}


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """Register the tiny detector and point the configs at a copy with configs/detector/tiny_test.yaml."""
    configs = tmp_path / "configs"
    shutil.copytree(config_dir(), configs)
    (configs / "detector" / f"{NAME}.yaml").write_text(f"name: {NAME}\nvariant: ${{profile.variant}}\n")
    monkeypatch.setenv("SIGMA_BENCH_CONFIGS", str(configs))
    DETECTORS[NAME] = TinyDetector
    handlers = logging.root.handlers[:]  # main() re-points logging at this test's captured stderr
    yield tmp_path
    DETECTORS.pop(NAME, None)
    logging.root.handlers[:] = handlers


def write_list(folder: Path, n_manipulated: int = 6, n_authentic: int = 2, *, missing: bool = False,
               wrong_size: bool = False, seed: int = 0) -> Path:
    """A tiny IMDL-BenCo list of PNGs (mixed sizes), with optional defects."""
    rng = np.random.default_rng(seed)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    (folder / "mask").mkdir(exist_ok=True)
    rows = []
    for i in range(n_manipulated + n_authentic):
        h, w = (20, 24) if i % 2 else (24, 18)
        image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        Image.fromarray(image).save(folder / "img" / f"{i}.png")
        if i >= n_manipulated:
            rows.append([f"img/{i}.png", "Negative"])
            continue
        mask = np.zeros((h, w), dtype=np.uint8)
        mask[2:12, 3:14] = 255
        if wrong_size and i == 1:
            mask = np.zeros((h + 5, w), dtype=np.uint8)
        Image.fromarray(mask).save(folder / "mask" / f"{i}.png")
        rows.append([f"img/{i}.png", f"mask/{i}.png"])
    if missing:
        rows.append(["img/not_there.png", "mask/0.png"])
    path = folder / "list.json"
    path.write_text(json.dumps(rows))
    return path


def cfg_for(home: Path, *extra: str):
    return compose([f"detector={NAME}", f"paths.runs={home / 'runs'}", "train.epochs=2", "train.batch_size=4",
                    "train.num_workers=0", "train.progress=false", "train.test.num_workers=0", *extra])


# ---------------------------------------------------------------------------------------------- CLI


@pytest.mark.parametrize("command", ["train-detector", "eval-detector"])
def test_help_works(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "usage: bench" in out and "--detector" in out


def test_train_then_eval_end_to_end(tiny, capsys):
    train_list = write_list(tiny / "train_set", n_manipulated=8, n_authentic=2)
    val_list = write_list(tiny / "val_set", n_manipulated=3, n_authentic=1, seed=2)
    test_list = write_list(tiny / "test_set", n_manipulated=3, n_authentic=2, seed=1)
    common = [f"paths.runs={tiny / 'runs'}", f"paths.results={tiny / 'results'}", "train.batch_size=4",
              "train.num_workers=0", "train.progress=false", "train.test.num_workers=0"]
    assert main(["train-detector", "--detector", NAME, "--train", str(train_list), "--val", str(val_list),
                 "train.epochs=2", "train.checkpoint_every=1", *common]) == 0
    run = tiny / "runs" / "detectors" / "train_set-list" / NAME
    assert {"last.pt", "best.pt", "log.csv", "val.csv", "config.yaml", "summary.json"} <= {p.name for p in run.iterdir()}
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["n_train"], summary["n_val"]) == (10, 4) and summary["result"]["steps"] == 4
    assert summary["selected_by"].startswith("validation f1_per_image")
    assert "[done] tiny_test" in capsys.readouterr().out
    assert main(["train-detector", "--detector", NAME, "--train", str(train_list), "--val", str(val_list),
                 "train.epochs=2", *common]) == 0  # finished: not retrained
    assert json.loads((run / "summary.json").read_text())["result"]["seconds"] == summary["result"]["seconds"]

    assert main(["eval-detector", "--detector", NAME, "--train", str(train_list), "--dataset", str(test_list),
                 "--robustness", "train.test.jpeg_quality=[50,100]", "train.test.blur_sigma=[0,2]",
                 "train.test.noise_std=[0.1]", "train.test.robustness_limit=3", *common]) == 0
    result = json.loads((run / "eval" / "list.json").read_text())
    m = result["metrics"]
    assert m["n_manipulated"] == 3 and m["n_excluded_empty_gt"] == 2 and result["counts"]["images"] == 5
    assert 0 <= m["f1_per_image"] <= 1 and "f1_best_thr_oracle" in m and "image_auc" in m
    assert result["image_score"] == "max pixel probability" and result["counts"]["robustness_images"] == 3
    assert [(r["perturbation"], r["level"]) for r in result["robustness"]] == [
        ("jpeg", 50.0), ("jpeg", 100.0), ("blur", 0.0), ("blur", 2.0), ("noise", 0.1)]
    blur0 = result["robustness"][2]["f1_per_image"]
    assert blur0 is not None  # identity condition over the first 3 images
    assert (run / "eval" / "metrics.csv").is_file() and (run / "eval" / "robustness.csv").is_file()
    assert len((run / "eval" / "list.per_image.csv").read_text().strip().splitlines()) == 6

    board = (tiny / "results" / "leaderboards" / "detectors_train_set-list.md").read_text()
    assert f"| {NAME} | {m['f1_per_image']:.3f} |" in board  # the detector's row, from eval/list.json
    assert "| *all-zero (reference)* | 0.000 |" in board and "*all-one (reference)*" in board
    assert "bench train-detector --detector tiny_test --train" in board  # the recorded training command
    assert "bench eval-detector --detector tiny_test --train" in board  # and this one
    curves = pd.read_csv(tiny / "results" / "detectors" / "train_set-list" / "val_curves.csv")
    assert list(curves["epoch"]) == [1, 2] and set(curves["detector"]) == {NAME}


def test_constant_references_match_sklearn(tiny):
    """The all-zero / all-one floors of the detector leaderboard: per-image F1 over manipulated images."""
    test_list = write_list(tiny / "test_set", n_manipulated=4, n_authentic=2, seed=3)
    cfg = cfg_for(tiny, "train.test.geometry.mode=none")
    refs = iml_test_sets(cfg, str(test_list), [])
    got = eval_detector.constant_references(cfg, refs)
    expected = []
    for image, mask in json.loads(test_list.read_text()):
        if mask == "Negative":
            continue
        truth = (np.asarray(Image.open(test_list.parent / mask)) > 127).ravel()
        expected.append(f1_score(truth, np.ones_like(truth)))
    assert got["all-one"]["list"] == pytest.approx(float(np.mean(expected)), abs=1e-6)
    assert got["all-zero"]["list"] == 0.0


# ---------------------------------------------------------------------------------------------- bad input


def test_missing_file_is_named_or_counted_when_skipping(tiny):
    listed = write_list(tiny / "data", missing=True)
    with pytest.raises(DataError, match="not_there.png"):
        training_data.resolve_training_data(cfg_for(tiny), str(listed), None, [])
    cfg = cfg_for(tiny, "train.on_error=skip", "train.max_steps=1")
    log = SkipLog()
    data = training_data.resolve_training_data(cfg, str(listed), None, [], skip_log=log)
    assert log.summary() == {"missing": 1} and len(data.train) + len(data.val) == 8
    summary = train_detector.train_one(cfg, NAME, data, skip_log=log)
    assert summary["skipped_items"]["at_listing"] == {"missing": 1} and summary["result"]["steps"] == 1


def test_wrong_size_mask_is_a_clear_error(tiny):
    listed = write_list(tiny / "data", wrong_size=True)
    cfg = cfg_for(tiny, "train.val_fraction=0")
    data = training_data.resolve_training_data(cfg, str(listed), None, [])
    with pytest.raises(DataError, match=r"mask/1\.png: mask is .* must match"):
        train_detector.train_one(cfg, NAME, data)


def test_all_authentic_training_data_trains(tiny):
    listed = write_list(tiny / "data", n_manipulated=0, n_authentic=8)
    cfg = cfg_for(tiny, "train.val_fraction=0.25")
    data = training_data.resolve_training_data(cfg, str(listed), None, [])
    summary = train_detector.train_one(cfg, NAME, data)
    assert summary["result"]["steps"] == 2 and summary["result"]["nonfinite_steps"] == 0
    assert summary["selected_by"] == "last (no validation)"  # f1 is undefined without manipulated images


def test_unknown_train_spec_lists_what_is_accepted(tiny):
    with pytest.raises(ValueError, match="IMDL-BenCo"):
        training_data.resolve_training_data(cfg_for(tiny), "no_such_thing", None, [])


# ---------------------------------------------------------------------------------------------- pieces


def test_train_configs_compose_and_profiles_differ():
    assert group_options("train") == ["default"]
    quick, paper = compose(["profile=cpu-quick"]), compose(["profile=gpu-paper"])
    tq, tp = detector_training(quick).trainer, detector_training(paper).trainer
    assert tq.epochs < tp.epochs and tq.lr == 5e-4 and tp.lr == 1e-4 and tq.betas == (0.9, 0.999)
    assert quick.train.batch_size == quick.profile.batch_size
    assert not quick.train.test.robustness and paper.train.test.robustness


def test_offline_weights_placeholder_is_filled():
    params = builders.detector_params({"name": "x", "variant": "tiny",
                                             "pretrained_path": builders.OFFLINE_LITE0})
    assert "name" not in params and Path(params["pretrained_path"]).is_file()
    assert builders.detector_params({"name": "x", "pretrained_path": None})["pretrained_path"] is None


def test_perturbations():
    img = torch.rand(3, 20, 24)
    assert torch.equal(robustness.perturb(img, "blur", 0), img)
    assert torch.equal(robustness.perturb(img, "noise", 0.0), img)
    jpeg = robustness.perturb(img, "jpeg", 50)
    assert jpeg.shape == img.shape and 0.005 < float((jpeg - img).abs().mean()) < 0.3
    a, b = (robustness.perturb(img, "noise", 0.1, seed=3) for _ in range(2))
    assert torch.equal(a, b) and float(a.min()) >= 0 and float(a.max()) <= 1
    assert float(robustness.perturb(img, "blur", 2.0).std()) < float(img.std())


def test_predict_batch_crops_mixed_sizes_back_to_each_image():
    torch.manual_seed(0)
    model = TinyDetector().eval()
    samples = []
    for h, w in ((20, 24), (24, 18)):
        samples.append({"image": torch.rand(3, h, w), "valid": torch.ones(1, h, w, dtype=torch.bool)})
    batch = pad_collate(samples)
    masks, scores, own = eval_detector.predict_batch(model, batch["image"], batch["valid"])
    assert masks.shape == (2, 1, 24, 24) and not own
    for i, s in enumerate(samples):
        h, w = s["image"].shape[-2:]
        alone = model.predict(s["image"][None])["mask"][0]
        torch.testing.assert_close(masks[i, :, :h, :w], alone)
        assert float(masks[i].sum()) == pytest.approx(float(alone.sum()), rel=1e-5)  # zeros on padding
        assert float(scores[i]) == pytest.approx(float(alone.max()))


def test_seed_changes_initial_weights_and_data_order_reproducibly(tiny):
    """`seed=` reaches the detector's initialization, the batch order and the flips; the same seed repeats."""
    from detectors.train import load_checkpoint

    listed = write_list(tiny / "data", n_manipulated=8, n_authentic=0)

    def trained(seed, name):
        cfg = cfg_for(tiny, f"seed={seed}", "train.epochs=1", "train.val_fraction=0", f"train.run_name={name}")
        data = training_data.resolve_training_data(cfg, str(listed), None, [])
        summary = train_detector.train_one(cfg, NAME, data)
        return load_checkpoint(tiny / "runs" / "detectors" / name / NAME / "best.pt")["model"], summary

    a, summary = trained(0, "a")
    b, _ = trained(0, "b")
    c, _ = trained(1, "c")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not any(torch.equal(a[k], c[k]) for k in a)
    assert summary["cache"] == "memory" and summary["torch_threads"] == torch.get_num_threads()
    from detectors.sampling import EpochBatchSampler
    assert list(EpochBatchSampler(8, 4, seed=0)) != list(EpochBatchSampler(8, 4, seed=1))


def test_decoded_cache_trains_to_the_same_weights_as_decoding_every_epoch(tiny):
    listed = write_list(tiny / "data", n_manipulated=6, n_authentic=2)
    states = []
    for mode in ("off", "memory", "mmap"):
        cfg = cfg_for(tiny, f"train.cache={mode}", f"train.run_name={mode}", f"paths.home={tiny / 'home'}")
        data = training_data.resolve_training_data(cfg, str(listed), None, [])
        assert train_detector.train_one(cfg, NAME, data)["cache"] == mode
        states.append(torch.load(tiny / "runs" / "detectors" / mode / NAME / "last.pt", weights_only=True)["model"])
    assert all(torch.equal(states[0][k], s[k]) for s in states[1:] for k in states[0])
    assert list((tiny / "home" / "cache" / "decoded").iterdir())                 # the mmap cache's folder
