"""`bench train-detector`: train IML detectors on an IML training list with the one trainer.

``--train`` names the training data: ``synth`` (the synthetic suite's ground-truth corpus:
``corpus_truth/iml_train.json``, validated on ``corpus_truth/iml_val.json``), an IMDL-BenCo JSON list
(e.g. a generator's annotation output), a ``Tp/`` + ``Gt/`` folder, an ``<adapter>:<root>`` spec, or an
IML dataset config name (configs/dataset/, source iml or adapter). Without a validation list (``--val``),
``train.val_fraction`` of the training list is held out for checkpoint choice; test sets never are.

Outputs, per detector, in ``<paths.runs>/detectors/<train-name>/<detector>/``: ``last.pt`` (resumable),
``best.pt`` (chosen on validation), ``log.csv`` (per step), ``val.csv``, ``config.yaml`` (resolved),
``summary.json`` and ``skipped.jsonl`` when ``train.on_error=skip`` dropped items. A run folder whose
``last.pt`` exists is resumed exactly; one with ``summary.json`` is finished and skipped (``--force``
starts afresh). Under ``torchrun`` every process trains on its share of each batch order (DDP).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import random
import shutil
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.utils.data
from omegaconf import DictConfig

from benchmarks.config import check_option, compose, expand, group_options, save_resolved, to_container
from benchmarks.data.errors import DataError, SkipLog
from benchmarks.data.iml import ImlDataset, ImlItem, list_iml, load_item, read_benco_json
from benchmarks.data.loading import SKIP, pad_collate, record_skips
from benchmarks.data.transforms import Geometry
from benchmarks.metrics import ImageMetrics, PixelMetrics
from detectors import Detector, create_detector, list_detectors
from detectors.train import EpochBatchSampler, NonFiniteLossError, Trainer, TrainConfig, seed_everything

log = logging.getLogger(__name__)

OFFLINE_LITE0 = "offline-efficientnet-lite0"  # detector config value that asks for the offline ImageNet weights
RUNNER_KEYS = ("name", "run_name", "batch_size", "on_error", "num_workers", "val_fraction", "geometry", "input_size",
               "resume", "test")
NOT_IN_FINGERPRINT = ("num_workers", "resume", "test", "checkpoint_every", "progress", "compile")


# ---------------------------------------------------------------------------------------------- data


@dataclass
class TrainData:
    name: str                   # names the run folder
    source: str                 # what --train resolved to (for the summary)
    train: list[ImlItem]
    val: list[ImlItem]
    val_source: str


class EpochSamples(torch.utils.data.Dataset):
    """IML Samples keyed by ``(epoch, index)`` (see EpochBatchSampler): train-time flips change with the
    epoch yet replay exactly on resume, in any worker. A bad item raises (naming its file) or, with
    ``on_error="skip"``, becomes a skip marker that :func:`pad_collate` drops and lists."""

    def __init__(self, items: list[ImlItem], geometry: Geometry, *, name: str, train: bool, seed: int,
                 on_error: str = "raise"):
        if on_error not in ("raise", "skip"):
            raise ValueError(f"train.on_error must be 'raise' or 'skip', got {on_error!r}")
        self.base = ImlDataset(items, geometry, name=name, train=train, seed=seed)
        self.on_error = on_error

    def __len__(self) -> int:
        return len(self.base)

    @property
    def items(self) -> list[ImlItem]:
        return self.base.items

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        item = self.base.items[index]
        try:
            arrays = load_item(item)
        except DataError as exc:
            if self.on_error == "raise":
                raise
            return {SKIP: exc.reason, "id": item.id, "error": str(exc)}
        resized = arrays.pop("mask_resized")
        sample = self.base.transform(arrays, index, epoch)
        sample.update(id=item.id, dataset=self.base.name, label=item.label, source=str(item.image),
                      mask_resized=resized)
        return sample


def list_items(spec: str | Path, *, adapter: str | None = None, on_error: str = "raise",
               skip_log: SkipLog | None = None) -> list[ImlItem]:
    """Items of an IML list. With ``on_error="skip"`` listed files that do not exist are recorded in
    `skip_log` and dropped (once, here) instead of failing the listing."""
    path = Path(spec).expanduser()
    if on_error == "skip" and adapter is None and path.suffix.lower() == ".json" and path.is_file():
        kept = []
        for item in read_benco_json(path, check_files=False):
            missing = [p for p in (item.image, item.mask) if p is not None and not p.is_file()]
            if not missing:
                kept.append(item)
            elif skip_log is not None:
                skip_log.record(item.id, DataError(f"{missing[0]}: file not found (listed in {path})",
                                                   path=missing[0], reason="missing"))
        return kept
    return list_iml(spec, adapter=adapter)


def synth_root(cfg: DictConfig) -> Path:
    """The synthetic suite folder of `cfg.synth` (built on first use)."""
    from benchmarks.runners.data import ensure_suite, synth_config
    from benchmarks.synth.build import suite_dir

    root = suite_dir(synth_config(cfg), cfg.paths.data)
    return root if (root / "DONE").is_file() else ensure_suite(cfg)


def train_name(cfg: DictConfig, spec: str) -> str:
    """The run-folder name for `--train` (``train.run_name`` wins): synth -> synth[-suite], a JSON list ->
    <folder>-<stem> (annotation outputs are often all called iml.json), a folder -> its name."""
    if cfg.train.get("run_name"):
        return str(cfg.train.run_name)
    if spec == "synth":
        return "synth" if cfg.synth.name == "default" else f"synth-{cfg.synth.name}"
    if ":" in spec and not Path(spec).exists():
        return spec.split(":", 1)[0]
    path = Path(spec).expanduser()
    if path.suffix.lower() == ".json":
        return f"{path.resolve().parent.name}-{path.stem}"
    return path.resolve().name if (path.exists() or "/" in spec) else spec


def resolve_training_data(cfg: DictConfig, spec: str, val_spec: str | None, overrides: list[str],
                          skip_log: SkipLog | None = None) -> TrainData:
    """What `--train` / `--val` name, as item lists (see the module docstring)."""
    on_error = cfg.train.on_error
    name = train_name(cfg, spec)
    if spec == "synth":
        truth = synth_root(cfg) / "corpus_truth"
        train = list_items(truth / "iml_train.json", on_error=on_error, skip_log=skip_log)
        source, val_default = str(truth / "iml_train.json"), truth / "iml_val.json"
    elif Path(spec).expanduser().exists() or "/" in spec or ":" in spec:
        train, source, val_default = list_items(spec, on_error=on_error, skip_log=skip_log), spec, None
    elif spec in group_options("dataset"):
        ds = compose([*overrides, f"dataset={spec}"]).dataset
        if ds.source == "synth":
            raise ValueError(f"--train {spec}: synth_* datasets are test benchmarks; train on 'synth' (the suite's "
                             "ground-truth corpus) or on a generator's annotation list")
        if ds.source not in ("iml", "adapter"):
            raise ValueError(f"--train {spec}: dataset source {ds.source!r} is not an IML dataset")
        adapter = ds.adapter if ds.source == "adapter" else None
        train = list_items(ds.root, adapter=adapter, on_error=on_error, skip_log=skip_log)
        source, val_default = f"{adapter + ':' if adapter else ''}{ds.root}", None
    else:
        raise ValueError(f"--train {spec!r}: not 'synth', an existing path (IMDL-BenCo .json or Tp/+Gt/ folder), an "
                         f"'<adapter>:<root>' spec, or an IML dataset config ({group_options('dataset')})")
    if not train:
        raise DataError(f"--train {spec}: the training list is empty", reason="empty")
    if val_spec:
        val, val_source = list_items(val_spec, on_error=on_error, skip_log=skip_log), val_spec
    elif val_default is not None and val_default.is_file():
        val, val_source = list_items(val_default, on_error=on_error, skip_log=skip_log), str(val_default)
    else:
        train, val = split_validation(train, float(cfg.train.val_fraction), int(cfg.seed))
        val_source = f"{len(val)} items held out of the training list (train.val_fraction={cfg.train.val_fraction})"
    return TrainData(name, source, train, val, val_source)


def split_validation(items: list[ImlItem], fraction: float, seed: int) -> tuple[list[ImlItem], list[ImlItem]]:
    """Hold out a seeded `fraction` of `items` (at least 1 when fraction > 0 and 2+ items)."""
    if fraction <= 0 or len(items) < 2:
        return items, []
    n_val = min(len(items) - 1, max(1, round(fraction * len(items))))
    chosen = set(random.Random(seed).sample(range(len(items)), n_val))
    return [it for i, it in enumerate(items) if i not in chosen], [it for i, it in enumerate(items) if i in chosen]


# ---------------------------------------------------------------------------------------------- model


def detector_params(dcfg: DictConfig | dict) -> dict[str, Any]:
    """Factory keyword arguments from a detector config (minus ``name``); ``pretrained_path:
    offline-efficientnet-lite0`` becomes the offline ImageNet EfficientNet-Lite0 file."""
    params = {k: v for k, v in (to_container(dcfg) if isinstance(dcfg, DictConfig) else dict(dcfg)).items()
              if k != "name"}
    if params.get("pretrained_path") == OFFLINE_LITE0:
        from benchmarks.weights import efficientnet_lite0_path

        params["pretrained_path"] = str(efficientnet_lite0_path())
    return params


def image_scores(pred: dict[str, torch.Tensor | None], valid: torch.Tensor) -> torch.Tensor:
    """Image-level probability: the detector's own score, else the highest valid pixel probability."""
    if pred.get("score") is not None:
        return pred["score"].float().flatten()
    return pred["mask"].float().masked_fill(~valid.bool(), 0.0).flatten(1).amax(1)


def make_validator(dataset: torch.utils.data.Dataset, *, batch_size: int, num_workers: int, device: torch.device,
                   skip_log: SkipLog | None = None) -> Callable[[Detector], dict[str, float]]:
    """``validate(model)``: headline pixel metrics + image metrics on this process's share of `dataset`
    (metric states sync over processes)."""
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else (0, 1)
    share = torch.utils.data.Subset(dataset, list(range(rank, len(dataset), world)))
    loader = torch.utils.data.DataLoader(share, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                                         collate_fn=pad_collate, generator=torch.Generator())

    def validate(model: Detector) -> dict[str, float]:
        pixel, image = PixelMetrics(), ImageMetrics()
        for batch in loader:
            if skip_log is not None:
                record_skips(batch, skip_log)
            if "image" not in batch:
                continue
            valid = batch["valid"].to(device)
            pred = model.predict(batch["image"].to(device))
            pixel.update(pred["mask"].float(), batch["mask"].to(device), valid)
            image.update(image_scores(pred, valid), batch["label"].to(device))
        return {**pixel.compute(), **image.compute()}

    return validate


def init_distributed() -> bool:
    """Join the torchrun process group (nccl on CUDA, else gloo); False when not launched by torchrun."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return False
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group("nccl" if cuda else "gloo")
    return True


def run_device(cfg: DictConfig) -> torch.device:
    from benchmarks.runners.eval_generators import resolve_device

    device = resolve_device(cfg.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return device


# ---------------------------------------------------------------------------------------------- run


def trainer_config(cfg: DictConfig) -> TrainConfig:
    values = {k: v for k, v in to_container(cfg.train).items() if k not in RUNNER_KEYS}
    return TrainConfig.from_dict({**values, "seed": int(cfg.seed)})


def fingerprint(cfg: DictConfig, data: TrainData) -> str:
    """What makes two runs the same run (resume only continues an identical one)."""
    train = {k: v for k, v in to_container(cfg.train).items() if k not in NOT_IN_FINGERPRINT}
    blob = {"detector": to_container(cfg.detector), "train": train, "seed": cfg.seed, "source": data.source,
            "n_train": len(data.train), "n_val": len(data.val), "train_ids": [it.id for it in data.train[:50]]}
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:16]


def runs_root(cfg: DictConfig, name: str) -> Path:
    """The folder of one training run (one sub-folder per detector)."""
    return Path(cfg.paths.runs) / "detectors" / name


def run_dir(cfg: DictConfig, name: str, detector: str) -> Path:
    return runs_root(cfg, name) / detector


def train_one(cfg: DictConfig, detector: str, data: TrainData, *, skip_log: SkipLog | None = None,
              force: bool = False, command: str | None = None) -> dict[str, Any]:
    """Train one detector (cfg composed with ``detector=<name>``); returns the summary written beside it
    (`command`: the command line that asked for it, recorded for the reproduce lines of the reports)."""
    out = run_dir(cfg, data.name, detector)
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    if force and rank == 0 and out.exists():
        shutil.rmtree(out)
    if world > 1:
        dist.barrier()
    summary_path = out / "summary.json"
    if summary_path.is_file():
        log.info("%s: finished earlier (%s); --force retrains", detector, summary_path)
        return json.loads(summary_path.read_text())
    device = run_device(cfg)
    seed_everything(int(cfg.seed))  # the same initial weights on every rank
    params = detector_params(cfg.detector)
    model = create_detector(detector, **params)
    geometry = Geometry(cfg.train.geometry, int(cfg.train.get("input_size") or model.info.input_size))
    tcfg = trainer_config(cfg)
    train_ds = EpochSamples(data.train, geometry, name=data.name, train=True, seed=int(cfg.seed),
                            on_error=cfg.train.on_error)
    sampler = EpochBatchSampler(len(train_ds), int(cfg.train.batch_size), seed=int(cfg.seed), keyed=True)
    workers = int(cfg.train.num_workers)
    loader = torch.utils.data.DataLoader(train_ds, batch_sampler=sampler, num_workers=workers, collate_fn=pad_collate,
                                         pin_memory=device.type == "cuda", persistent_workers=workers > 0,
                                         generator=torch.Generator())
    validate = None
    if data.val:
        val_geometry = Geometry("none", geometry.size) if geometry.mode == "crop" else geometry  # crops: whole images
        val_ds = EpochSamples(data.val, val_geometry, name=f"{data.name}-val", train=False, seed=int(cfg.seed),
                              on_error=cfg.train.on_error)
        validate = make_validator(val_ds, batch_size=int(cfg.train.batch_size), num_workers=workers, device=device)
    if rank == 0:
        save_resolved(cfg, out)
    meta = {"detector": detector, "params": {k: v for k, v in params.items() if k != "pretrained_path"},
            "train": data.name, "fingerprint": fingerprint(cfg, data), "geometry": geometry.tag}
    trainer = Trainer(model, tcfg, out, device=device, meta=meta)
    log.info("%s: %d training / %d validation items, %d batches per epoch per process, %d process(es), %s",
             detector, len(data.train), len(data.val), len(sampler), world, device)
    counted = SkipLog(out / "skipped.jsonl") if (rank == 0 and cfg.train.on_error == "skip") else None
    result = trainer.fit(loader, validate=validate, resume=bool(cfg.train.resume),
                         on_batch=(lambda b: record_skips(b, counted)) if counted is not None else None)
    summary = {
        "detector": detector, "info": asdict(model.info), "train": data.name,
        "train_source": data.source, "val_source": data.val_source, "n_train": len(data.train),
        "n_val": len(data.val), "geometry": geometry.tag, "device": str(device), "world_size": world,
        "batch_size_per_process": int(cfg.train.batch_size), "accumulation": tcfg.accumulation,
        "effective_batch_size": int(cfg.train.batch_size) * world * tcfg.accumulation,
        "skipped_items": _skipped(out, skip_log), "result": asdict(result),
        "command": command, "checkpoint": str(out / "best.pt"),
        "selected_by": f"validation {tcfg.select_metric} ({tcfg.select_mode})" if result.best else "last (no validation)",
    }
    if rank == 0:
        write_json(summary_path, summary)
    return summary


def finite_or_none(obj: Any) -> Any:
    """NaN / inf floats as None, recursively: JSON outputs stay standard JSON (undefined metrics are null)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    return obj


def write_json(path: Path, obj: Any) -> None:
    """Atomic JSON write (temporary file, then rename); undefined metrics become null."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(finite_or_none(obj), indent=1, default=str, allow_nan=False))
    tmp.replace(path)


def _skipped(out: Path, listing: SkipLog | None) -> dict[str, Any]:
    """Items dropped at listing time plus unique ids skipped while loading (over resumes)."""
    ids = set()
    path = out / "skipped.jsonl"
    if path.is_file():
        ids = {json.loads(line)["id"] for line in path.read_text().splitlines() if line.strip()}
    return {"at_listing": listing.summary() if listing is not None else {}, "while_loading_unique": len(ids)}


def available(names: list[str], choice: str) -> list[str]:
    known = set(list_detectors())
    out = []
    for name in names:
        if name in known:
            out.append(name)
        elif choice == "all":
            print(f"[missing] detector {name}: not implemented yet; skipped")
        else:
            raise ValueError(f"detector {name!r} is not implemented yet; available: {sorted(known)}")
    return out


def train_detector_command(args: argparse.Namespace) -> int:
    check_option("profile", args.profile)
    overrides = [f"profile={args.profile}", *args.overrides]
    if args.name:
        overrides.append(f"train.run_name={args.name}")
    cfg = compose(overrides, command="train-detector")
    detectors = available(expand("detector", args.detector, cfg), args.detector)
    joined = init_distributed()
    try:
        rank = dist.get_rank() if dist.is_initialized() else 0
        if rank != 0:  # one process speaks
            logging.getLogger().setLevel(logging.WARNING)
        listing = SkipLog()
        if rank != 0:  # rank 0 lists first (and builds the synthetic suite if needed), the others then read it
            dist.barrier()
        data = resolve_training_data(cfg, args.train, args.val, overrides, skip_log=listing if rank == 0 else None)
        if rank == 0 and dist.is_initialized():
            dist.barrier()
        if listing.total:
            print(f"skipped {listing.total} listed item(s) whose files are missing: {listing.summary()}")
        for name in detectors:
            dcfg = compose([*overrides, f"detector={name}"], command="train-detector")
            try:
                summary = train_one(dcfg, name, data, skip_log=listing, force=args.force,
                                    command=getattr(args, "command_line", None))
            except NonFiniteLossError as exc:
                if args.verbose:
                    raise
                print(f"bench train-detector: error: {name}: {exc}", file=sys.stderr)
                return 2
            if rank == 0:
                best = summary["result"]["best"]
                score = f"{best['metric']} {best['value']:.4f} at epoch {best['epoch']}" if best else "no validation"
                print(f"[done] {name}: {summary['result']['steps']} steps, {summary['result']['nonfinite_steps']} "
                      f"skipped non-finite, best {score} -> {run_dir(dcfg, data.name, name)}")
    finally:
        if joined:
            dist.destroy_process_group()
    return 0


__all__ = ["EpochSamples", "TrainData", "detector_params", "image_scores", "list_items", "make_validator",
           "resolve_training_data", "train_detector_command", "train_name", "train_one", "write_json"]
