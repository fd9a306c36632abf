"""What a detector trains and validates on: ``--train`` / ``--val`` resolved to item lists.

``--train`` names the training data: ``synth`` (the synthetic suite's ground-truth corpus:
``corpus_truth/iml_train.json``, validated on ``corpus_truth/iml_val.json``), an IMDL-BenCo JSON list (e.g.
a generator's annotation output), a ``Tp/`` + ``Gt/`` folder, an ``<adapter>:<root>`` spec, or an IML
dataset config name (configs/dataset/, source iml or adapter). Without a validation list (``--val``),
``train.val_fraction`` of the training list is held out for checkpoint choice; test sets never are.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from benchmarks.config import group_options
from benchmarks.data.datasets import dataset_config, suite_root
from benchmarks.data.errors import DataError, SkipLog
from benchmarks.data.iml import ImlItem, list_iml, read_benco_json


@dataclass
class TrainData:
    name: str                   # names the run folder
    source: str                 # what --train resolved to (for the summary)
    train: list[ImlItem]
    val: list[ImlItem]
    val_source: str


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
        truth = suite_root(cfg) / "corpus_truth"
        train = list_items(truth / "iml_train.json", on_error=on_error, skip_log=skip_log)
        source, val_default = str(truth / "iml_train.json"), truth / "iml_val.json"
    elif Path(spec).expanduser().exists() or "/" in spec or ":" in spec:
        train, source, val_default = list_items(spec, on_error=on_error, skip_log=skip_log), spec, None
    elif spec in group_options("dataset"):
        ds = dataset_config(cfg, overrides, spec)
        if ds.source == "synth":
            raise ValueError(f"--train {spec}: synth_* datasets are test benchmarks; train on 'synth' (the suite's "
                             "ground-truth corpus) or on a generator's annotation list")
        if ds.source not in ("iml", "adapter"):
            raise ValueError(f"--train {spec}: dataset source {ds.source!r} is not an IML dataset")
        train = list_items(str(ds.root), adapter=ds.adapter, on_error=on_error, skip_log=skip_log)
        source, val_default = f"{ds.adapter + ':' if ds.adapter else ''}{ds.root}", None
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
