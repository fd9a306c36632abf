"""Training one detector with the one trainer (:class:`detectors.train.Trainer`) on resolved training data:
the loaders, the validation that picks ``best.pt`` (the one evaluation loop), the run folder and its
summary.

Outputs, per detector, in ``<paths.runs>/detectors/<train-name>/<detector>/``: ``last.pt`` (resumable),
``best.pt`` (chosen on validation), ``log.csv`` (per step), ``val.csv``, ``config.yaml`` (resolved),
``summary.json`` and ``skipped.jsonl`` when ``train.on_error=skip`` dropped items. A run folder whose
``last.pt`` exists is resumed exactly; one with ``summary.json`` is finished and skipped (``force``
starts afresh). Under ``torchrun`` every process trains on its share of each batch order (DDP).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.utils.data
from omegaconf import DictConfig

from benchmarks.builders import detector_params
from benchmarks.config import save_resolved, to_container
from benchmarks.data.errors import SkipLog
from benchmarks.data.loading import pad_collate, take_skips
from benchmarks.data.transforms import Geometry
from benchmarks.distributed import barrier, device_for, rank_world
from benchmarks.evaluation.detectors import image_scores
from benchmarks.evaluation.loop import Prediction, evaluate
from benchmarks.io import content_hash, read_json, write_json
from benchmarks.metrics.suite import localization_suite
from benchmarks.paths import config_roots, portable
from benchmarks.training.config import detector_training
from benchmarks.training.data import TrainData
from benchmarks.training.samples import samples
from detectors import Detector, create_detector
from detectors.train import EpochBatchSampler, Trainer, seed_everything

log = logging.getLogger(__name__)

SKIP_HINT = "train.on_error=skip counts it and goes on"


def runs_root(cfg: DictConfig, name: str) -> Path:
    """The folder of one training run (one sub-folder per detector)."""
    return Path(cfg.paths.runs) / "detectors" / name


def run_dir(cfg: DictConfig, name: str, detector: str) -> Path:
    return runs_root(cfg, name) / detector


def training_key(cfg: DictConfig) -> str:
    """Hash of what shapes a trained detector (its config, the training settings that count, the seed)."""
    return content_hash({"detector": to_container(cfg.detector), "train": detector_training(cfg).run_key()})


def fingerprint(cfg: DictConfig, data: TrainData) -> str:
    """What makes two runs the same run (resume only continues an identical one): the training key's
    inputs plus the training data."""
    return content_hash({"detector": to_container(cfg.detector), "train": detector_training(cfg).run_key(),
                         "source": data.source, "n_train": len(data.train), "n_val": len(data.val),
                         "train_ids": [it.id for it in data.train[:50]]}, length=16)


def make_validator(dataset: torch.utils.data.Dataset, *, batch_size: int, num_workers: int, device: torch.device,
                   on_error: str = "raise", skip_log: SkipLog | None = None) -> Callable[[Detector], dict[str, float]]:
    """``validate(model)``: headline pixel metrics + image metrics on this process's share of `dataset`
    (metric states sync over processes)."""
    rank, world = rank_world()
    share = torch.utils.data.Subset(dataset, list(range(rank, len(dataset), world)))
    loader = torch.utils.data.DataLoader(share, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                                         collate_fn=pad_collate, generator=torch.Generator())

    def validate(model: Detector) -> dict[str, float]:
        def predict(batch: dict[str, Any]) -> Prediction:
            valid = batch["valid"].to(device)
            pred = model.predict(batch["image"].to(device))
            return Prediction(pred["mask"].float(), image_scores(pred, valid))

        suite = localization_suite(thresholds=False, image_level=True)
        return evaluate(loader, predict, suite, on_error=on_error, skip_log=skip_log, hint=SKIP_HINT).metrics

    return validate


def train_one(cfg: DictConfig, detector: str, data: TrainData, *, skip_log: SkipLog | None = None,
              force: bool = False, command: str | None = None) -> dict[str, Any]:
    """Train one detector (cfg composed with ``detector=<name>``); returns the summary written beside it
    (`command`: the command line that asked for it, recorded for the reproduce lines of the reports)."""
    out = run_dir(cfg, data.name, detector)
    rank, world = rank_world()
    if force and rank == 0 and out.exists():
        shutil.rmtree(out)
    barrier()
    summary_path = out / "summary.json"
    if summary_path.is_file():
        log.info("%s: finished earlier (%s); --force retrains", detector, summary_path)
        return read_json(summary_path)
    settings = detector_training(cfg)
    run, tcfg = settings.harness, settings.trainer
    device = device_for(cfg.device)
    seed_everything(int(cfg.seed))  # the same initial weights on every rank
    params = detector_params(cfg.detector)
    model = create_detector(detector, **params)
    geometry = run.geometry.sized(model.info.input_size)
    if run.threads is not None:
        torch.set_num_threads(run.threads)
    train_ds, workers = samples(cfg, run, data.train, geometry, name=data.name, train=True)
    sampler = EpochBatchSampler(len(train_ds), run.batch_size, seed=int(cfg.seed), keyed=True)
    loader = torch.utils.data.DataLoader(train_ds, batch_sampler=sampler, num_workers=workers,
                                         collate_fn=pad_collate, pin_memory=device.type == "cuda",
                                         persistent_workers=workers > 0, generator=torch.Generator())
    validate = None
    if data.val:
        val_geometry = Geometry("none", geometry.size) if geometry.mode == "crop" else geometry  # crops: whole images
        val_ds, val_workers = samples(cfg, run, data.val, val_geometry, name=f"{data.name}-val", train=False)
        validate = make_validator(val_ds, batch_size=run.batch_size, num_workers=val_workers, device=device,
                                  on_error=run.on_error)
    if rank == 0:
        save_resolved(cfg, out)
    meta = {"detector": detector, "params": {k: v for k, v in params.items() if k != "pretrained_path"},
            "train": data.name, "fingerprint": fingerprint(cfg, data), "geometry": geometry.tag}
    trainer = Trainer(model, tcfg, out, device=device, meta=meta)
    log.info("%s: %d training / %d validation items, %d batches per epoch per process, %d process(es), %s",
             detector, len(data.train), len(data.val), len(sampler), world, device)
    counted = SkipLog(out / "skipped.jsonl") if (rank == 0 and run.on_error == "skip") else None
    result = trainer.fit(loader, validate=validate, resume=run.resume,
                         on_batch=lambda batch: take_skips(batch, counted, run.on_error, SKIP_HINT))
    roots = config_roots(cfg.paths)
    summary = {
        "detector": detector, "info": asdict(model.info), "train": data.name,
        "train_source": portable(data.source, roots), "val_source": portable(data.val_source, roots),
        "n_train": len(data.train), "n_val": len(data.val), "geometry": geometry.tag, "device": str(device),
        "world_size": world, "batch_size_per_process": run.batch_size, "accumulation": tcfg.accumulation,
        "effective_batch_size": run.batch_size * world * tcfg.accumulation,
        "skipped_items": _skipped(out, skip_log), "result": asdict(result),
        "cache": getattr(getattr(train_ds, "cache", None), "mode", "off"), "torch_threads": torch.get_num_threads(),
        "command": command, "checkpoint": portable(out / "best.pt", roots),
        "selected_by": f"validation {tcfg.select_metric} ({tcfg.select_mode})" if result.best else "last (no validation)",
    }
    summary["result"] = {k: (portable(v, roots) if k.endswith("_checkpoint") else v) for k, v in summary["result"].items()}
    if rank == 0:
        write_json(summary_path, summary)
    return summary


def _skipped(out: Path, listing: SkipLog | None) -> dict[str, Any]:
    """Items dropped at listing time plus unique ids skipped while loading (over resumes)."""
    ids = set()
    path = out / "skipped.jsonl"
    if path.is_file():
        import json

        ids = {json.loads(line)["id"] for line in path.read_text().splitlines() if line.strip()}
    return {"at_listing": listing.summary() if listing is not None else {}, "while_loading_unique": len(ids)}
