"""`bench eval-detector`: test trained detectors on IML datasets, with an optional robustness sweep.

Each detector's checkpoint (``best.pt`` of ``<paths.runs>/detectors/<train-name>/<detector>/``, or
``--checkpoint``) is run through ``predict`` on every test set: synth_* configs use ``<suite>/<set>/iml.json``
(manipulated images plus authentic negatives), IML configs their list or adapter, a path any IML list.

Metrics (keys name their averaging; DESIGN.md): ``f1_per_image`` / ``iou_per_image`` at threshold 0.5 over
manipulated images (headline), ``f1_pooled``, ``f1_best_thr_oracle`` (never the headline), ``pixel_auc_pooled``,
and ``image_auc`` / ``image_acc`` from the image score (the detector's ``score_logits`` sigmoid, else the
highest pixel probability). The robustness sweep (``train.test.robustness`` or ``--robustness``) perturbs
each test image (JPEG quality 50..100 via a PIL round trip, Gaussian blur sigma 0..3, Gaussian noise std
0..0.1, levels in ``train.test``) and reports ``f1_per_image`` per condition.

Outputs beside the run, in ``<run>/eval/``: ``<dataset>.json`` (metrics, counts, robustness rows),
``<dataset>.per_image.csv``, and ``metrics.csv`` / ``robustness.csv`` gathered over every dataset evaluated
so far, plus the resolved ``config.yaml`` of the last invocation.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import math
import time
import zlib
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.utils.data
from omegaconf import DictConfig
from PIL import Image
from tqdm import tqdm

from benchmarks.config import check_option, compose, expand, save_resolved
from benchmarks.data.errors import SkipLog
from benchmarks.data.imageio import save_png
from benchmarks.data.iml import ImlItem, list_iml
from benchmarks.data.loading import pad_collate, record_skips
from benchmarks.data.transforms import Geometry
from benchmarks.metrics import BestThresholdF1, ImageMetrics, PixelAUC, PixelMetrics
from benchmarks.runners.train_detector import (EpochSamples, available, detector_params, image_scores, run_device,
                                               run_dir, runs_root, train_name, write_json)
from detectors import Detector, create_detector
from detectors.train import load_weights

log = logging.getLogger(__name__)

METRICS = ("f1_per_image", "iou_per_image", "f1_pooled", "f1_best_thr_oracle", "pixel_auc_pooled", "image_auc",
           "image_acc")


# ---------------------------------------------------------------------------------------------- perturbations


def conditions(test: DictConfig) -> list[tuple[str, float]]:
    """(perturbation, level) pairs of the sweep."""
    return ([("jpeg", float(q)) for q in test.jpeg_quality] + [("blur", float(s)) for s in test.blur_sigma]
            + [("noise", float(s)) for s in test.noise_std])


def perturb(image: torch.Tensor, kind: str, level: float, seed: int = 0) -> torch.Tensor:
    """One [0,1] image (3,H,W) perturbed: JPEG round trip at quality `level`, Gaussian blur of sigma
    `level`, or Gaussian noise of std `level` (seeded, clipped to [0,1]). Level 0 blur/noise is identity."""
    if kind == "jpeg":
        arr = (image.clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="JPEG", quality=int(level))
        back = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
        return torch.from_numpy(back.copy()).permute(2, 0, 1).float().div(255.0).to(image.device)
    if kind == "blur":
        if level <= 0:
            return image
        from torchvision.transforms.functional import gaussian_blur

        k = 2 * math.ceil(3 * level) + 1
        return gaussian_blur(image[None], [k, k], [level, level])[0]
    if kind == "noise":
        if level <= 0:
            return image
        g = torch.Generator().manual_seed(seed)
        return (image + level * torch.randn(image.shape, generator=g).to(image.device)).clamp(0, 1)
    raise ValueError(f"perturbation {kind!r} is unknown; use jpeg, blur or noise")


# ---------------------------------------------------------------------------------------------- evaluation


def valid_extent(valid: torch.Tensor) -> tuple[int, int]:
    """(h, w) of a sample's valid region (top-left; collate and geometry pad bottom/right)."""
    v = valid[0]
    return int(v.any(1).sum()), int(v.any(0).sum())


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


def evaluate_dataset(model: Detector, dataset: EpochSamples, *, device: torch.device, batch_size: int,
                     num_workers: int, sweep: list[tuple[str, float]] | None = None, sweep_limit: int | None = None,
                     skip_log: SkipLog | None = None, seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """Headline + extra metrics of `model` on one IML dataset, per-image rows and the robustness sweep."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                                         collate_fn=pad_collate, generator=torch.Generator())
    pixel, best, auc, image = PixelMetrics(), BestThresholdF1(), PixelAUC(), ImageMetrics()
    swept = {c: PixelMetrics() for c in (sweep or [])}
    rows: list[dict[str, Any]] = []
    counts = {"images": 0, "skipped": 0, "robustness_images": 0}
    score_source = None
    model.eval()
    for batch in tqdm(loader, desc=f"{model.info.name} | {dataset.base.name}", unit="batch", leave=False,
                      disable=not progress):
        counts["skipped"] += record_skips(batch, skip_log) if skip_log is not None else len(batch.get("skipped", []))
        if "image" not in batch:
            continue
        images, valid = batch["image"].to(device), batch["valid"].to(device)
        truth, label = batch["mask"].to(device), batch["label"].to(device)
        with torch.no_grad():
            masks, scores, own_score = predict_batch(model, images, valid)
        score_source = "score_logits sigmoid" if own_score else "max pixel probability"
        per = pixel.update(masks, truth, valid)
        best.update(masks, truth, valid)
        auc.update(masks, truth, valid)
        image.update(scores, label)
        for i, item_id in enumerate(batch["id"]):
            rows.append({"id": item_id, "label": int(label[i]), "score": round(float(scores[i]), 6),
                         "f1": _num(per["f1"][i]), "iou": _num(per["iou"][i])})
        room = len(batch["id"]) if sweep_limit is None else max(0, sweep_limit - counts["robustness_images"])
        if swept and room:
            keep = slice(0, min(room, len(batch["id"])))
            ids = batch["id"][keep]
            for (kind, level), metric in swept.items():
                def transform(img: torch.Tensor, i: int, kind: str = kind, level: float = level) -> torch.Tensor:
                    return perturb(img, kind, level, seed=seed + zlib.crc32(f"{ids[i]}|{kind}|{level}".encode()))
                with torch.no_grad():
                    pm, _, _ = predict_batch(model, images[keep], valid[keep], transform)
                metric.update(pm, truth[keep], valid[keep])
            counts["robustness_images"] += len(ids)
        counts["images"] += len(batch["id"])
    metrics = {**pixel.compute(), **best.compute(), **auc.compute(), **image.compute()}
    robustness = [{"perturbation": kind, "level": level, **{k: v for k, v in m.compute().items()
                                                            if k in ("f1_per_image", "iou_per_image", "n_manipulated")}}
                  for (kind, level), m in swept.items()]
    return {"metrics": metrics, "rows": rows, "robustness": robustness, "counts": counts, "score": score_source}


def _num(x: torch.Tensor) -> float | None:
    v = float(x)
    return None if math.isnan(v) else round(v, 6)


# ---------------------------------------------------------------------------------------------- datasets, checkpoints


def resolve_test_sets(cfg: DictConfig, choice: str, overrides: list[str]) -> list[tuple[str, list[ImlItem]]]:
    """(name, items) for `--dataset`: config names, 'all' (the profile's test sets), or an IML list path."""
    from benchmarks.runners.data import dataset_root

    path = Path(choice).expanduser()
    if path.exists() or "/" in choice:
        return [(path.stem if path.suffix else path.name, list_iml(path))]
    out = []
    for name in expand("dataset", choice, cfg):
        ds = compose([*overrides, f"dataset={name}"]).dataset
        if ds.source == "synth":
            out.append((name, list_iml(dataset_root(cfg, ds, overrides) / "iml.json")))
        elif ds.source == "iml":
            out.append((name, list_iml(ds.root)))
        elif ds.source == "adapter":
            out.append((name, list_iml(ds.root, adapter=ds.adapter)))
        else:
            raise ValueError(f"dataset {name!r} (source={ds.source}) is not an IML dataset; detectors are tested on "
                             "IMDL-BenCo lists, Tp/+Gt/ folders, adapters or synth_* benchmarks")
    return out


def find_checkpoint(cfg: DictConfig, train: str, detector: str, explicit: str | None) -> Path:
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"--checkpoint {path}: file not found")
        return path
    folder = run_dir(cfg, train, detector)
    for name in ("best.pt", "last.pt"):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{folder}: no best.pt or last.pt; train it first (bench train-detector --detector "
                            f"{detector} --train ...) or pass --checkpoint")


def load_detector(cfg: DictConfig, detector: str, checkpoint: Path, device: torch.device) -> tuple[Detector, dict]:
    """The detector built as it was trained (params from the checkpoint's meta when present), with weights."""
    from detectors.train import load_checkpoint

    meta = load_checkpoint(checkpoint).get("meta", {})
    if meta.get("detector") not in (None, detector):
        raise ValueError(f"{checkpoint}: trained for detector {meta['detector']!r}, not {detector!r}")
    params = dict(meta["params"]) if "params" in meta else detector_params(cfg.detector)
    params.pop("pretrained_path", None)  # the checkpoint holds every weight
    model = create_detector(detector, **params)
    info = load_weights(model, checkpoint)
    return model.to(device).eval(), info


# ---------------------------------------------------------------------------------------------- outputs


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    import pandas as pd

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    pd.DataFrame(rows).to_csv(tmp, index=False)
    tmp.replace(path)


def gather_tables(folder: Path) -> tuple[Path, Path]:
    """Rebuild metrics.csv and robustness.csv from every <dataset>.json in an eval folder."""
    metrics, robustness = [], []
    for path in sorted(folder.glob("*.json")):
        data = json.loads(path.read_text())
        if "metrics" not in data:
            continue
        metrics.append({"detector": data["detector"], "dataset": data["dataset"],
                        **{k: data["metrics"].get(k) for k in METRICS},
                        "n_manipulated": data["metrics"].get("n_manipulated"), "n_images": data["counts"]["images"],
                        "geometry": data["geometry"], "checkpoint": data["checkpoint"]})
        robustness += [{"detector": data["detector"], "dataset": data["dataset"], **r} for r in data["robustness"]]
    _write_csv(folder / "metrics.csv", metrics)
    _write_csv(folder / "robustness.csv", robustness)
    return folder / "metrics.csv", folder / "robustness.csv"


def evaluate_checkpoint(cfg: DictConfig, detector: str, checkpoint: Path, sets: list[tuple[str, list[ImlItem]]], *,
                        sweep: list[tuple[str, float]] | None = None, examples: Path | None = None,
                        ) -> dict[str, dict[str, Any]]:
    """Test one checkpoint on every (name, items) set with ``cfg.train.test``; writes ``<run>/eval/<set>.json``
    and ``<set>.per_image.csv`` beside the checkpoint and returns {set: metrics}. `examples`: a folder that
    receives the predicted mask (8-bit PNG) of each set's first manipulated image, for figures."""
    test = cfg.train.test
    geometry = Geometry(test.geometry.mode, int(test.geometry.size))
    device = run_device(cfg)
    model, info = load_detector(cfg, detector, checkpoint, device)
    folder = checkpoint.parent / "eval"
    save_resolved(cfg, folder)
    skip_log = SkipLog(folder / "skipped.jsonl" if test.on_error == "skip" else None)
    out: dict[str, dict[str, Any]] = {}
    for dname, items in sets:
        ds = EpochSamples(items, geometry, name=dname, train=False, seed=int(cfg.seed), on_error=test.on_error)
        start = time.perf_counter()
        result = evaluate_dataset(model, ds, device=device, batch_size=int(test.batch_size),
                                  num_workers=int(test.num_workers), sweep=sweep,
                                  sweep_limit=test.robustness_limit, skip_log=skip_log, seed=int(cfg.seed))
        m = result["metrics"]
        write_json(folder / f"{dname}.json", {
            "detector": detector, "dataset": dname, "checkpoint": str(checkpoint), "geometry": geometry.tag,
            "trained": {k: info.get(k) for k in ("epoch", "step", "metrics", "selected_by")},
            "metrics": m, "robustness": result["robustness"], "counts": result["counts"],
            "seconds": round(time.perf_counter() - start, 2), "threshold": 0.5, "image_score": result["score"]})
        _write_csv(folder / f"{dname}.per_image.csv", result["rows"])
        if examples is not None:
            save_example(model, ds, examples / f"{dname}.png", device)
        log.info("%s on %s: F1 %.3f IoU %.3f (per image, thr 0.5, %d manipulated)", detector, dname,
                 m["f1_per_image"], m["iou_per_image"], m["n_manipulated"])
        out[dname] = m
    return out


def constant_references(cfg: DictConfig, sets: list[tuple[str, list[ImlItem]]]) -> dict[str, dict[str, float]]:
    """Per-image F1 (threshold 0.5) of an all-zero and an all-one prediction on each test set, at the test
    geometry of ``cfg.train.test``: the floor a trained detector has to clear."""
    test = cfg.train.test
    geometry = Geometry(test.geometry.mode, int(test.geometry.size))
    refs: dict[str, dict[str, float]] = {"all-zero": {}, "all-one": {}}
    for dname, items in sets:
        ds = EpochSamples(items, geometry, name=dname, train=False, seed=int(cfg.seed), on_error=test.on_error)
        loader = torch.utils.data.DataLoader(ds, batch_size=int(test.batch_size), collate_fn=pad_collate)
        zero, one = PixelMetrics(), PixelMetrics()
        for batch in loader:
            if "mask" in batch:
                zero.update(torch.zeros_like(batch["mask"]), batch["mask"], batch["valid"])
                one.update(torch.ones_like(batch["mask"]), batch["mask"], batch["valid"])
        refs["all-zero"][dname] = zero.compute()["f1_per_image"]
        refs["all-one"][dname] = one.compute()["f1_per_image"]
    return refs


def publish(cfg: DictConfig, train: str, sets: list[tuple[str, list[ImlItem]]], args: argparse.Namespace) -> Path:
    """The training run's detector leaderboard in ``<results>/leaderboards/detectors_<train>.md`` (with
    metrics.csv and val_curves.csv in ``<results>/detectors/<train>/``), over every detector of the run
    that has been tested on these sets."""
    from benchmarks.reporting.detectors import collect_run, write_detector_report

    run = runs_root(cfg, train)
    tested = sorted(p.name for p in run.iterdir() if (p / "summary.json").is_file())
    metrics, curves, summaries = collect_run(run, tested, [d for d, _ in sets])
    trained = sorted({s.get("command") or "" for s in summaries.values()} - {""})
    reproduce = trained or [f"bench train-detector --train {args.train} --profile {args.profile}"
                            f"{f' --name {args.name}' if args.name else ''}  # training overrides: <run>/config.yaml"]
    reproduce.append(getattr(args, "command_line", None) or " ".join(
        ["bench eval-detector", f"--train {args.train}", f"--profile {args.profile}",
         *([f"--name {args.name}"] if args.name else []), *args.overrides]))
    return write_detector_report(Path(cfg.paths.results), train, metrics, curves, summaries,
                                 constant_references(cfg, sets), reproduce)


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


# ---------------------------------------------------------------------------------------------- command


def eval_detector_command(args: argparse.Namespace) -> int:
    check_option("profile", args.profile)
    overrides = [f"profile={args.profile}", *args.overrides, *([f"train.run_name={args.name}"] if args.name else [])]
    cfg = compose(overrides, command="eval-detector")
    detectors = available(expand("detector", args.detector, cfg), args.detector)
    if args.checkpoint and len(detectors) != 1:
        raise ValueError(f"--checkpoint names one model; pass one --detector (got {detectors})")
    test = cfg.train.test
    robust = test.robustness if args.robustness is None else args.robustness
    sweep = conditions(test) if robust else None
    name = train_name(cfg, args.train)
    sets = resolve_test_sets(cfg, args.dataset, overrides)
    lines = []
    for detector in detectors:
        dcfg = compose([*overrides, f"detector={detector}"], command="eval-detector")
        checkpoint = find_checkpoint(dcfg, name, detector, args.checkpoint)
        results = evaluate_checkpoint(dcfg, detector, checkpoint, sets, sweep=sweep)
        for dname, m in results.items():
            lines.append(f"| {detector} | {dname} | {m['f1_per_image']:.4f} | {m['iou_per_image']:.4f} | "
                         f"{m['f1_best_thr_oracle']:.4f} | {m['pixel_auc_pooled']:.4f} | {m['image_auc']:.4f} |")
        print("\n".join(str(p) for p in gather_tables(checkpoint.parent / "eval")))
    print("| detector | dataset | F1 per image @0.5 | IoU per image @0.5 | F1 oracle thr | pixel AUC pooled | "
          "image AUC |\n|---|---|---|---|---|---|---|")
    print("\n".join(lines))
    if not args.checkpoint:
        print(f"leaderboard of the training run, with all-zero / all-one references: {publish(cfg, name, sets, args)}")
    return 0
