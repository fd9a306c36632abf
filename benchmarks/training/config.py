"""The ``train`` config group as one typed config: the harness's keys (what to train on, how data is sized
and loaded, how detectors are tested) and the trainer's (:class:`detectors.train.TrainConfig`) side by side,
as the YAML has them.

What makes two trainings the same run is derived from the fields: every field counts except those marked
``metadata=INERT`` (how a run goes, not what it computes: workers, resume, progress bars, checkpoint
spacing, compilation, the test settings), here and in ``TrainConfig``. A new key is in the run key unless
it says otherwise.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig

from benchmarks.config import to_container, typed
from benchmarks.data.cache import check_cache_mode
from benchmarks.data.loading import check_on_error
from benchmarks.data.transforms import Geometry
from benchmarks.evaluation.detectors import TestConfig
from detectors.train import INERT, TrainConfig


@dataclass(frozen=True)
class HarnessTraining:
    """The harness's keys of the ``train`` group (configs/train/default.yaml)."""

    name: str = "default"
    run_name: str | None = None         # run folder <paths.runs>/detectors/<run_name>/<detector>/; None: from --train
    batch_size: int = 16                # per process; effective = batch_size x processes x accumulation
    on_error: str = "raise"             # raise: a bad training item stops the run naming its file; skip: count, go on
    num_workers: int = field(default=2, metadata=INERT)  # loader processes; with a decoded cache they only decode it
    cache: str = field(default="auto", metadata=INERT)   # decode the lists once: auto | memory | mmap | off
    cache_memory_mb: float = field(default=4096.0, metadata=INERT)  # auto: memory up to this, else mmap on disk
    threads: int | None = field(default=None, metadata=INERT)  # torch CPU threads; None = torch's default (cores)
    val_fraction: float = 0.1           # held out of a training list that comes without a validation list
    geometry: Geometry = Geometry("resize", None)  # size None: the detector variant's input_size
    resume: bool = field(default=True, metadata=INERT)
    test: TestConfig = field(default_factory=TestConfig, metadata=INERT)

    def __post_init__(self) -> None:
        check_on_error(self.on_error, "train.on_error")
        check_cache_mode(self.cache)
        if self.cache_memory_mb < 0:
            raise ValueError(f"train.cache_memory_mb must be >= 0, got {self.cache_memory_mb}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"train.threads must be >= 1 or null (torch's default), got {self.threads}")


@dataclass(frozen=True)
class DetectorTraining:
    """A composed ``train`` node, split into the harness's keys and the trainer's."""

    harness: HarnessTraining
    trainer: TrainConfig

    @classmethod
    def from_config(cls, node: DictConfig, seed: int) -> DetectorTraining:
        """Unknown keys are an error naming them (a key belongs to one of the two typed configs)."""
        values = to_container(node)
        ours = {f.name for f in dataclasses.fields(HarnessTraining)}
        theirs = {f.name for f in dataclasses.fields(TrainConfig)} - {"seed"}
        unknown = sorted(set(values) - ours - theirs)
        if unknown:
            raise ValueError(f"train config: unknown key(s) {unknown}; the harness knows {sorted(ours)}, the trainer "
                             f"{sorted(theirs)}")
        harness = typed(HarnessTraining, {k: v for k, v in values.items() if k in ours}, "train")
        trainer = TrainConfig.from_dict({**{k: v for k, v in values.items() if k in theirs}, "seed": seed})
        return cls(harness, trainer)

    def run_key(self) -> dict[str, Any]:
        """The settings that shape a trained detector: every field not marked inert (see the module)."""
        return {**_shaping(self.harness), **_shaping(self.trainer)}


def inert_keys() -> list[str]:
    """The ``train`` keys marked inert (how a run goes, not what it computes), harness's and trainer's."""
    return [f.name for cls in (HarnessTraining, TrainConfig) for f in dataclasses.fields(cls)
            if not f.metadata.get("fingerprint", True)]


def _shaping(obj: Any) -> dict[str, Any]:
    return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)
            if f.metadata.get("fingerprint", True)}


def _plain(value: Any) -> Any:
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value


def detector_training(cfg: DictConfig) -> DetectorTraining:
    """The typed ``train`` node of a composed config (the run's ``seed`` goes to the trainer)."""
    return DetectorTraining.from_config(cfg.train, int(cfg.seed))
