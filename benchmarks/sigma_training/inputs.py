"""What SIGMA trains on and how it reaches the trainer: the training sets, the families left out of them
(leave-one-family-out), the frozen backbone's weights and ``sigma.data``, the typed config that picks the
data path (the cached feature bank or the stream)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from benchmarks.config import typed
from benchmarks.data.datasets import suite_root
from benchmarks.data.loading import check_on_error
from benchmarks.synth.edits import FAMILIES as EDIT_FAMILIES

SOURCES = ("bank", "stream")


@dataclass
class SigmaDataConfig:
    """``sigma.data`` (configs/sigma/default.yaml): how training pairs reach SIGMA's trainer.

    ``bank`` computes every image's backbone features once and caches them (fast for the embedded sets;
    memory and disk grow with the number of pairs). ``stream`` reads the pairs each step draws in DataLoader
    workers, makes the round-trip calibration pairs per step and runs the frozen backbone on the fly, so
    memory stays flat in the number of pairs. Only ``source`` matters for the bank; the rest is the stream's.
    """

    source: str = "bank"
    size: int | None = None        # stream: resize every pair to size x size; null: native (one size per set)
    workers: int = 2               # stream: DataLoader worker processes per training process and loader
    prefetch: int = 2              # stream: steps each worker prepares ahead
    on_error: str = "skip"         # stream: a bad pair is skipped (counted, named in skipped.jsonl, another pair
                                   # drawn in its place) or stops training (raise), naming the file
    retries: int = 8               # stream: replacement draws for a bad pair before the batch goes one short
    text_cache: int = 1024         # stream: instruction embeddings kept (bounded, so memory stays flat)
    parquet_window: int = 4        # stream: parquet row groups a stretch of steps draws from (kept per worker)

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"sigma.data.source must be one of {SOURCES}, got {self.source!r}")
        check_on_error(self.on_error, "sigma.data.on_error")
        for key in ("workers", "retries"):
            if getattr(self, key) < 0:
                raise ValueError(f"sigma.data.{key} must be >= 0, got {getattr(self, key)}")
        for key in ("prefetch", "text_cache", "parquet_window"):
            if getattr(self, key) < 1:
                raise ValueError(f"sigma.data.{key} must be >= 1, got {getattr(self, key)}")
        if self.size is not None and (self.size < 16 or self.size % 16):
            raise ValueError(f"sigma.data.size must be a multiple of 16 (the backbone's coarsest stride), got "
                             f"{self.size}")


def data_config(cfg: DictConfig) -> SigmaDataConfig:
    """``sigma.data`` as its typed config (defaults when the node is absent, as in configs written before it)."""
    node = cfg.sigma.get("data")
    return SigmaDataConfig() if node is None else typed(SigmaDataConfig, node, "sigma.data")


def backbone_path(cfg: DictConfig) -> str | None:
    """The frozen backbone's weights: ``sigma.backbone_path``, else the backbone's offline file
    (EfficientNet-Lite0/1/2), else None."""
    if cfg.sigma.backbone_path:
        return str(cfg.sigma.backbone_path)
    from benchmarks.weights import offline_backbone_file

    return offline_backbone_file(cfg.sigma.model.backbone)


def training_sets(cfg: DictConfig) -> tuple[Path, Path]:
    """The Stage I inpainting set and the unlabelled corpus: given folders, or the synthetic suite's."""
    if cfg.sigma.inpainting and cfg.sigma.corpus:
        return Path(cfg.sigma.inpainting), Path(cfg.sigma.corpus)
    root = suite_root(cfg, cfg.sigma.suite)
    return Path(cfg.sigma.inpainting or root / "inpainting"), Path(cfg.sigma.corpus or root / "corpus")


FAMILIES = tuple(EDIT_FAMILIES)  # the synthetic suite's manipulation families, in its order


def excluded_families(cfg: DictConfig) -> list[str]:
    """``sigma.exclude_families`` (optional; leave-one-family-out training, :mod:`~benchmarks.sigma_training.lofo`):
    manipulation families whose pairs stay out of every SIGMA training set; [] when absent."""
    families = [str(f) for f in (cfg.sigma.get("exclude_families") or [])]
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        raise ValueError(f"sigma.exclude_families: unknown family {unknown}; the families are {list(FAMILIES)}")
    return sorted(families)
