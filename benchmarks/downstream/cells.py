"""The downstream comparison's cells: one (generator, detector, profile, seed) cell trained on the
generator's masks, tested on the profile's test sets and published into
``<paths.results>/runs/<G>/<D>/<profile>/seed<k>/`` (``cell.json``, ``metrics.csv``, ``per_image.csv``,
``config.yaml``, ``examples/``), plus the example images the figures show.

A cell whose training diverged (:class:`detectors.train.NonFiniteLossError`, or a checkpoint with
non-finite weights) is published as failed: ``cell.json`` with ``status: failed``, its reason and no
metrics; the leaderboard lists it and never averages it in. A re-run skips it like a finished cell (the
same settings diverge again); ``--force`` retries it."""

from __future__ import annotations

import csv
import logging
import shutil
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from benchmarks.config import compose, save_resolved
from benchmarks.data.imageio import load_image, load_mask, save_png
from benchmarks.data.iml import ImlItem
from benchmarks.data.loading import EpochSamples
from benchmarks.downstream.corpus import Corpus
from benchmarks.evaluation.detectors import evaluate_checkpoint, example_index, testing
from benchmarks.io import atomic_write, read_json, write_csv, write_json
from benchmarks.paths import config_roots, portable
from benchmarks.training.data import TrainData
from benchmarks.training.detectors import run_dir, train_one, training_key
from detectors.train import NonFiniteLossError

log = logging.getLogger(__name__)

CORPUS_EXAMPLES = 4  # corpus pairs whose masks every generator publishes (qualitative figure)


def git_commit() -> str:
    """HEAD of the repository this package lives in, '+dirty' when tracked files outside ``results/`` (which
    runs rewrite) changed; 'unknown' outside git."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ":(top)",
                                ":(top,exclude)results"], cwd=here, capture_output=True, text=True, check=True,
                               timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def cell_folder(cfg: DictConfig, generator: str, detector: str) -> Path:
    """Where a cell is published: ``<paths.results>/runs/<G>/<D>/<profile>/seed<k>/``, so the seeds and
    profiles of one (generator, detector) pair sit side by side."""
    return Path(cfg.paths.results) / "runs" / generator / detector / str(cfg.profile.name) / f"seed{int(cfg.seed)}"


def publish(cell: dict[str, Any], folder: Path, config_from: Path | None, eval_folder: Path | None = None) -> None:
    """Copy a cell's small outputs into results/: cell.json, metrics.csv, per_image.csv (every test image's
    F1 / IoU, from `eval_folder`'s ``<set>.per_image.csv``: what the paired bootstrap resamples), config.yaml
    and val.csv (the validation curve, one row per epoch, beside `config_from`)."""
    write_json(folder / "cell.json", cell)
    write_csv(folder / "metrics.csv", [{"generator": cell["generator"], "detector": cell["detector"], "dataset": d,
                                        **m} for d, m in cell["metrics"].items()])
    if eval_folder is not None and cell["metrics"]:
        write_csv(folder / "per_image.csv", per_image_rows(eval_folder, list(cell["metrics"])))
    if config_from is not None and config_from.is_file():
        atomic_write(folder / "config.yaml", config_from.read_bytes())
    curve = config_from.parent / "val.csv" if config_from is not None else None
    if curve is not None and curve.is_file():
        atomic_write(folder / "val.csv", curve.read_bytes())


def per_image_rows(eval_folder: Path, datasets: list[str]) -> list[dict[str, Any]]:
    """dataset, id, label, score, f1, iou of every test image (f1 / iou empty for authentic images)."""
    rows = []
    for name in datasets:
        path = eval_folder / f"{name}.per_image.csv"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: the per-image scores of {name} are missing; re-test the cell "
                                    "(bench run ... --force)")
        with open(path, newline="", encoding="utf-8") as fh:
            rows += [{"dataset": name, **row} for row in csv.DictReader(fh)]
    return rows


def nonfinite_tensors(checkpoint: Path) -> list[str]:
    """Names of the weights and buffers of a trainer checkpoint that hold NaN or inf."""
    from detectors.train import load_checkpoint

    state = load_checkpoint(checkpoint)["model"]
    return [k for k, v in state.items() if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()]


def failed_cell(generator: str, detector: str, dcfg: DictConfig, overrides: list[str], reason: str,
                annotation: dict[str, Any], test_geometry: str) -> dict[str, Any]:
    """The record of a cell whose training diverged: no metrics, the reason instead."""
    return {"generator": generator, "detector": detector, "profile": dcfg.profile.name, "seed": int(dcfg.seed),
            "status": "failed", "reason": reason, "metrics": {},
            "overrides": [o for o in overrides if not o.startswith("profile=")], "annotation": annotation,
            "git_commit": git_commit(), "torch_threads": torch.get_num_threads(), "test_geometry": test_geometry,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def run_cell(cfg: DictConfig, overrides: list[str], generator: str, detector: str, data: TrainData,
             sets: list[tuple[str, list[ImlItem]]], annotation: dict[str, Any], force: bool) -> tuple[str, dict]:
    """Train + test one detector on one generator's masks; ('skipped' | 'done' | 'failed', cell record)."""
    dcfg = compose([*overrides, f"generator={generator}", f"detector={detector}"], command="run")
    data = replace(data, name=f"{data.name}-{training_key(dcfg)}")
    folder = run_dir(dcfg, data.name, detector)
    done = folder / "cell.json"
    target = cell_folder(dcfg, generator, detector)
    test_geometry = f"{dcfg.train.test.geometry.mode}-{dcfg.train.test.geometry.size}"
    if done.is_file() and not force:
        cell = read_json(done)
        if cell.get("status") == "failed":
            publish(cell, target, folder / "config.yaml")
            return "failed", cell
        if set(cell["metrics"]) == {name for name, _ in sets} and cell.get("test_geometry") == test_geometry:
            publish(cell, target, folder / "config.yaml", folder / "eval")
            return "skipped", cell
        log.info("%s x %s: trained earlier, tested on other sets or geometry; testing again", generator, detector)
    start = time.perf_counter()
    try:
        summary = train_one(dcfg, detector, data, force=force)
    except NonFiniteLossError as exc:
        return _fail(failed_cell(generator, detector, dcfg, overrides, f"training diverged: {exc}", annotation,
                                 test_geometry), dcfg, folder, target)
    trained = time.perf_counter()
    checkpoint = folder / "best.pt" if (folder / "best.pt").is_file() else folder / "last.pt"
    bad = nonfinite_tensors(checkpoint)
    if bad:
        reason = (f"training diverged: {checkpoint.name} holds non-finite values in {len(bad)} tensor(s) (first: "
                  f"{bad[:3]}); {summary['result']['nonfinite_steps']} optimizer step(s) were skipped as non-finite")
        return _fail(failed_cell(generator, detector, dcfg, overrides, reason, annotation, test_geometry), dcfg,
                     folder, target)
    if (target / "examples").is_dir():
        shutil.rmtree(target / "examples")
    metrics = evaluate_checkpoint(dcfg, detector, checkpoint, sets, examples=target / "examples")
    cell = {
        "generator": generator, "detector": detector, "profile": dcfg.profile.name, "seed": int(dcfg.seed),
        "status": "done", "overrides": [o for o in overrides if not o.startswith("profile=")], "metrics": metrics,
        "train": {k: summary.get(k) for k in ("train_source", "val_source", "n_train", "n_val", "geometry",
                                              "device", "world_size", "effective_batch_size", "skipped_items",
                                              "cache")},
        "result": {k: summary["result"].get(k) for k in ("steps", "epochs", "best", "nonfinite_steps")},
        "checkpoint": portable(checkpoint, config_roots(dcfg.paths)), "annotation": annotation,
        "git_commit": git_commit(),
        "torch_threads": torch.get_num_threads(),  # part of the numerics on CPU: other counts, other last bits
        "seconds": {"train_this_invocation": round(trained - start, 1),
                    "train_total": summary["result"].get("seconds"),
                    "test": round(time.perf_counter() - trained, 1)},
        "test_geometry": test_geometry,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    save_resolved(dcfg, folder)
    write_json(done, cell)
    publish(cell, target, folder / "config.yaml", folder / "eval")
    return "done", cell


def _fail(cell: dict[str, Any], dcfg: DictConfig, folder: Path, target: Path) -> tuple[str, dict]:
    log.error("%s x %s: %s", cell["generator"], cell["detector"], cell["reason"])
    save_resolved(dcfg, folder)
    write_json(folder / "cell.json", cell)
    for stale in ("metrics.csv", "per_image.csv"):
        (target / stale).unlink(missing_ok=True)
    publish(cell, target, folder / "config.yaml")
    return "failed", cell


def save_test_examples(cfg: DictConfig, sets: list[tuple[str, list[ImlItem]]]) -> None:
    """The image and truth behind each set's example prediction (first manipulated item), for the figures."""
    test = testing(cfg)
    folder = Path(cfg.paths.results) / "runs" / "_examples" / "test"
    for name, items in sets:
        ds = EpochSamples(items, test.geometry, name=name, train=False, seed=int(cfg.seed))
        index = example_index(ds)
        if index is None:
            continue
        sample = ds[index]
        save_png(folder / f"{name}_image.png", _uint8(sample["image"].permute(1, 2, 0).numpy()))
        save_png(folder / f"{name}_truth.png", sample["mask"][0].numpy() > 0.5)


def save_corpus_examples(cfg: DictConfig, generator: str, items: list[ImlItem], corpus: Corpus) -> None:
    """A few corpus pairs (the first validation ids): G's mask, and once the edited image and its truth."""
    val = sorted(it.id for it in items if corpus.is_val(it.id, float(cfg.train.val_fraction)))[:CORPUS_EXAMPLES]
    by_id = {it.id: it for it in items}
    root = Path(cfg.paths.results) / "runs"
    for item_id in val:
        item = by_id[item_id]
        if item.mask is not None:
            save_png(root / generator / "corpus_examples" / f"{item_id}.png", load_mask(item.mask))
        shared = root / "_examples" / "corpus"
        if not (shared / f"{item_id}_image.png").is_file():
            save_png(shared / f"{item_id}_image.png", load_image(item.image))
            if item_id in corpus.truth:
                save_png(shared / f"{item_id}_truth.png", load_mask(corpus.truth[item_id]))


def _uint8(array: np.ndarray) -> np.ndarray:
    """[0, 1] floats as 8-bit."""
    return (np.clip(array, 0, 1) * 255.0 + 0.5).astype(np.uint8)
