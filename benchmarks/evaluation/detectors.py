"""Trained detectors on IML test sets: the predict function (native resolution, cropped to each image's
valid region), one test set scored with the one evaluation loop (plus the robustness sweep), one
checkpoint on every test set with its outputs, and the constant predictors a detector has to beat.

Metrics (keys name their averaging; docs/design.md, "Metrics"): ``f1_per_image`` / ``iou_per_image`` at
threshold 0.5 over manipulated images (headline), ``f1_pooled``, ``f1_best_thr_oracle`` (never the
headline), ``pixel_auc_pooled``, and ``image_auc`` / ``image_acc`` from the image score (the detector's
``score_logits`` sigmoid, else the highest pixel probability).

Outputs beside the checkpoint, in ``<run>/eval/``: ``<dataset>.json`` (metrics, counts, robustness rows),
``<dataset>.per_image.csv``, ``metrics.csv`` / ``robustness.csv`` gathered over every dataset evaluated so
far, ``skipped.jsonl`` with ``train.test.on_error=skip``, and the resolved ``config.yaml``.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.utils.data
from omegaconf import DictConfig

from benchmarks.builders import load_detector
from benchmarks.config import save_resolved, typed
from benchmarks.data.errors import SkipLog
from benchmarks.data.imageio import save_png
from benchmarks.data.iml import ImlItem
from benchmarks.data.loading import EpochSamples, check_on_error, pad_collate
from benchmarks.data.transforms import Geometry
from benchmarks.distributed import device_for
from benchmarks.evaluation.loop import Prediction, evaluate, valid_extent
from benchmarks.evaluation.robustness import Sweep, conditions
from benchmarks.io import read_json, write_csv, write_json
from benchmarks.metrics import PixelMetrics
from benchmarks.metrics.suite import MetricSuite, localization_suite
from benchmarks.paths import config_roots, portable
from detectors import Detector

log = logging.getLogger(__name__)

METRICS = ("f1_per_image", "iou_per_image", "f1_pooled", "f1_best_thr_oracle", "pixel_auc_pooled", "image_auc",
           "image_acc")
SKIP_HINT = "train.test.on_error=skip counts it and goes on"


@dataclass(frozen=True)
class TestConfig:
    """The ``train.test`` node: how trained detectors are tested (``bench eval-detector``, ``bench run``)."""

    __test__ = False  # not a pytest class

    batch_size: int = 8
    num_workers: int = 2
    on_error: str = "raise"
    geometry: Geometry = Geometry("none", 96)
    robustness: bool = False           # the perturbation sweep (F1 per condition)
    robustness_limit: int | None = None  # at most this many images per dataset in the sweep; None = all
    jpeg_quality: tuple[int, ...] = (50, 60, 70, 80, 90, 100)
    blur_sigma: tuple[float, ...] = (0, 1, 2, 3)
    noise_std: tuple[float, ...] = (0.0, 0.02, 0.04, 0.06, 0.08, 0.1)

    def __post_init__(self) -> None:
        check_on_error(self.on_error, "train.test.on_error")

    @property
    def sweep(self) -> list[tuple[str, float]]:
        return conditions(self.jpeg_quality, self.blur_sigma, self.noise_std)


def testing(cfg: DictConfig) -> TestConfig:
    """The typed ``train.test`` node of a composed config."""
    return typed(TestConfig, cfg.train.test, "train.test")


# ---------------------------------------------------------------------------------------------- predictions


def image_scores(pred: dict[str, torch.Tensor | None], valid: torch.Tensor) -> torch.Tensor:
    """Image-level probability: the detector's own score, else the highest valid pixel probability."""
    if pred.get("score") is not None:
        return pred["score"].float().flatten()
    return pred["mask"].float().masked_fill(~valid.bool(), 0.0).flatten(1).amax(1)


def predict_batch(model: Detector, images: torch.Tensor, valid: torch.Tensor,
                  transform: Any = None) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Mask probabilities (B,1,H,W), image scores (B,) and whether the detector gave its own score, for a
    padded batch: each image is cropped to its valid region (grouped by size), optionally perturbed,
    predicted at that size, and pasted back."""
    masks = torch.zeros(images.shape[0], 1, *images.shape[-2:], device=images.device)
    scores = torch.zeros(images.shape[0], device=images.device)
    own_score = False
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i in range(images.shape[0]):
        groups[valid_extent(valid[i])].append(i)
    for (h, w), idx in groups.items():
        crops = images[idx, :, :h, :w]
        if transform is not None:
            crops = torch.stack([transform(c, i) for c, i in zip(crops, idx)])
        pred = model.predict(crops)
        masks[idx, :, :h, :w] = pred["mask"].float()
        scores[idx] = image_scores(pred, valid[idx, :, :h, :w])
        own_score = pred.get("score") is not None
    return masks, scores, own_score


@dataclass
class DetectorEval:
    metrics: dict[str, float]
    rows: list[dict[str, Any]] = field(default_factory=list)
    robustness: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    score: str | None = None  # where the image score came from


def evaluate_detector(model: Detector, dataset: EpochSamples, *, device: torch.device, batch_size: int,
                      num_workers: int, on_error: str = "raise", sweep: list[tuple[str, float]] | None = None,
                      sweep_limit: int | None = None, skip_log: SkipLog | None = None, seed: int = 0,
                      progress: bool = True) -> DetectorEval:
    """Headline + extra metrics of `model` on one IML dataset, per-image rows and the robustness sweep."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                                         collate_fn=pad_collate, generator=torch.Generator())
    rows: list[dict[str, Any]] = []
    own: list[bool] = []

    def predict(batch: dict[str, Any]) -> Prediction:
        with torch.no_grad():
            masks, scores, own_score = predict_batch(model, batch["image"].to(device), batch["valid"].to(device))
        own.append(own_score)
        return Prediction(masks, scores)

    def sweep_predict(images: torch.Tensor, valid: torch.Tensor, transform: Any) -> torch.Tensor:
        return predict_batch(model, images, valid, transform)[0]

    robust = Sweep(sweep or [], sweep_limit, seed, sweep_predict)

    def collect(batch: dict[str, Any], prediction: Prediction, per: dict[str, torch.Tensor]) -> None:
        label = batch["label"]
        for i, item_id in enumerate(batch["id"]):
            rows.append({"id": item_id, "label": int(label[i]), "score": round(float(prediction.score[i]), 6),
                         "f1": _num(per["f1"][i]), "iou": _num(per["iou"][i])})
        robust.update(list(batch["id"]), batch["image"].to(device), batch["mask"].to(device),
                      batch["valid"].to(device))

    model.eval()
    result = evaluate(loader, predict, localization_suite(image_level=True), on_error=on_error, skip_log=skip_log,
                      hint=SKIP_HINT, on_batch=collect, desc=f"{model.info.name} | {dataset.base.name}",
                      progress=progress)
    counts = {"images": result.items, "skipped": len(result.skipped), "robustness_images": robust.images}
    score = None if not own else ("score_logits sigmoid" if own[-1] else "max pixel probability")
    return DetectorEval(result.metrics, rows, robust.rows(), counts, score)


def _num(x: torch.Tensor) -> float | None:
    v = float(x)
    return None if math.isnan(v) else round(v, 6)


# ---------------------------------------------------------------------------------------------- checkpoints


def find_checkpoint(folder: Path, detector: str, explicit: str | None) -> Path:
    """`explicit` (``--checkpoint``) when given, else ``best.pt`` then ``last.pt`` of a run folder."""
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"--checkpoint {path}: file not found")
        return path
    for name in ("best.pt", "last.pt"):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{folder}: no best.pt or last.pt; train it first (bench train-detector --detector "
                            f"{detector} --train ...) or pass --checkpoint")


def samples_for_test(test: TestConfig, name: str, items: list[ImlItem], seed: int) -> EpochSamples:
    """A test set as the loader reads it: no augmentation, at the test geometry."""
    return EpochSamples(items, test.geometry, name=name, train=False, seed=seed, on_error=test.on_error)


def evaluate_checkpoint(cfg: DictConfig, detector: str, checkpoint: Path, sets: list[tuple[str, list[ImlItem]]], *,
                        sweep: list[tuple[str, float]] | None = None, examples: Path | None = None,
                        ) -> dict[str, dict[str, Any]]:
    """Test one checkpoint on every (name, items) set with ``cfg.train.test``; writes ``<run>/eval/<set>.json``
    and ``<set>.per_image.csv`` beside the checkpoint and returns {set: metrics}. `examples`: a folder that
    receives the predicted mask (8-bit PNG) of each set's first manipulated image, for figures."""
    test = testing(cfg)
    device = device_for(cfg.device)
    model, info = load_detector(cfg, detector, checkpoint, device)
    folder = checkpoint.parent / "eval"
    save_resolved(cfg, folder)
    (folder / "skipped.jsonl").unlink(missing_ok=True)
    roots = config_roots(cfg.paths)
    out: dict[str, dict[str, Any]] = {}
    for dname, items in sets:
        ds = samples_for_test(test, dname, items, int(cfg.seed))
        skip_log = SkipLog(folder / "skipped.jsonl" if test.on_error == "skip" else None, fields={"dataset": dname})
        start = time.perf_counter()
        result = evaluate_detector(model, ds, device=device, batch_size=test.batch_size, num_workers=test.num_workers,
                                   on_error=test.on_error, sweep=sweep, sweep_limit=test.robustness_limit,
                                   skip_log=skip_log, seed=int(cfg.seed))
        m = result.metrics
        write_json(folder / f"{dname}.json", {
            "detector": detector, "dataset": dname, "checkpoint": portable(checkpoint, roots),
            "geometry": test.geometry.tag,
            "trained": {k: info.get(k) for k in ("epoch", "step", "metrics", "selected_by")},
            "metrics": m, "robustness": result.robustness, "counts": result.counts,
            "seconds": round(time.perf_counter() - start, 2), "threshold": 0.5, "image_score": result.score})
        write_csv(folder / f"{dname}.per_image.csv", result.rows)
        if examples is not None:
            save_example(model, ds, examples / f"{dname}.png", device)
        log.info("%s on %s: F1 %.3f IoU %.3f (per image, thr 0.5, %d manipulated)", detector, dname,
                 m["f1_per_image"], m["iou_per_image"], m["n_manipulated"])
        out[dname] = m
    return out


def gather_tables(folder: Path) -> tuple[Path, Path]:
    """Rebuild metrics.csv and robustness.csv from every <dataset>.json in an eval folder."""
    metrics, robustness = [], []
    for path in sorted(folder.glob("*.json")):
        data = read_json(path)
        if "metrics" not in data:
            continue
        metrics.append({"detector": data["detector"], "dataset": data["dataset"],
                        **{k: data["metrics"].get(k) for k in METRICS},
                        "n_manipulated": data["metrics"].get("n_manipulated"), "n_images": data["counts"]["images"],
                        "geometry": data["geometry"], "checkpoint": data["checkpoint"]})
        robustness += [{"detector": data["detector"], "dataset": data["dataset"], **r} for r in data["robustness"]]
    return write_csv(folder / "metrics.csv", metrics), write_csv(folder / "robustness.csv", robustness)


def constant_references(cfg: DictConfig, sets: list[tuple[str, list[ImlItem]]]) -> dict[str, dict[str, float]]:
    """Per-image F1 (threshold 0.5) of an all-zero and an all-one prediction on each test set, at the test
    geometry of ``cfg.train.test``: the floor a trained detector has to clear."""
    test = testing(cfg)
    refs: dict[str, dict[str, float]] = {"all-zero": {}, "all-one": {}}
    for dname, items in sets:
        ds = samples_for_test(test, dname, items, int(cfg.seed))
        for name, fill in (("all-zero", torch.zeros_like), ("all-one", torch.ones_like)):
            loader = torch.utils.data.DataLoader(ds, batch_size=test.batch_size, collate_fn=pad_collate)
            result = evaluate(loader, lambda batch, fill=fill: Prediction(fill(batch["mask"])),
                              MetricSuite({"pixel": PixelMetrics()}), on_error=test.on_error, hint=SKIP_HINT)
            refs[name][dname] = result.metrics["f1_per_image"]
    return refs


def example_index(dataset: EpochSamples) -> int | None:
    """The first manipulated item of a test set (the one the figures show)."""
    return next((i for i, it in enumerate(dataset.items) if it.mask is not None), None)


def save_example(model: Detector, dataset: EpochSamples, path: Path, device: torch.device) -> None:
    index = example_index(dataset)
    if index is None:
        return
    sample = dataset[index]
    if "image" not in sample:  # a skipped item
        return
    with torch.no_grad():
        masks, _, _ = predict_batch(model, sample["image"][None].to(device), sample["valid"][None].to(device))
    save_png(path, (masks[0, 0].clamp(0, 1).cpu().numpy() * 255.0 + 0.5).astype(np.uint8))


def uses_sweep(test: TestConfig, flag: bool | None) -> list[tuple[str, float]] | None:
    """The sweep's conditions when it runs (``--robustness`` wins over ``train.test.robustness``)."""
    return test.sweep if (test.robustness if flag is None else flag) else None


__all__ = ["DetectorEval", "TestConfig", "constant_references", "evaluate_checkpoint", "evaluate_detector",
           "example_index", "find_checkpoint", "gather_tables", "image_scores", "predict_batch", "save_example",
           "samples_for_test", "testing", "uses_sweep"]
