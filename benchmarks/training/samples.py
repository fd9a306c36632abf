"""The training and validation samples of one detector run: decoded once (:mod:`benchmarks.data.cache`) or
per epoch (``train.cache=off``), and the loader settings that go with each."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch.utils.data
from omegaconf import DictConfig

from benchmarks.data.cache import CachedSamples, DecodedCache, choose_mode
from benchmarks.data.iml import ImlItem
from benchmarks.data.loading import EpochSamples
from benchmarks.data.transforms import Geometry, SampleTransform
from benchmarks.distributed import barrier, rank_world
from benchmarks.io import content_hash
from benchmarks.training.config import HarnessTraining

log = logging.getLogger(__name__)


def cache_key(items: list[ImlItem], transform: SampleTransform) -> str:
    """Names a disk cache: every item's files (path, size, modification time) and the cached geometry."""
    files = []
    for it in items:
        for path in (it.image, it.mask):
            if path is None:
                files.append(None)
                continue
            try:
                st = Path(path).stat()
                files.append([str(path), st.st_size, st.st_mtime_ns])
            except OSError:  # missing: the decode records the error
                files.append([str(path)])
    geometry = transform.geometry
    fixed = geometry.tag if geometry.mode in ("resize", "pad") else "native"
    return content_hash({"files": files, "ids": [it.id for it in items], "labels": [it.label for it in items],
                         "fixed": fixed}, length=16)


def samples(cfg: DictConfig, run: HarnessTraining, items: list[ImlItem], geometry: Geometry, *, name: str,
            train: bool) -> tuple[torch.utils.data.Dataset, int]:
    """(dataset, loader workers) for `items`: a :class:`CachedSamples` (workers 0: nothing left to decode)
    unless ``train.cache=off``, then :class:`EpochSamples` with ``train.num_workers``."""
    seed = int(cfg.seed)
    mode = choose_mode(run.cache, items, geometry, run.cache_memory_mb)
    if mode == "off":
        return EpochSamples(items, geometry, name=name, train=train, seed=seed, on_error=run.on_error), run.num_workers
    transform = SampleTransform(geometry, train=train, seed=seed)
    start = time.perf_counter()
    if mode == "memory":
        cache = DecodedCache.in_memory(items, transform, run.num_workers)
    else:
        folder = Path(cfg.paths.home) / "cache" / "decoded" / cache_key(items, transform)
        rank = rank_world()[0]
        if rank == 0:
            cache = DecodedCache.on_disk(items, transform, folder, run.num_workers)
        barrier()
        if rank != 0:
            cache = DecodedCache.on_disk(items, transform, folder, build=False)
    log.info("%s: %d items decoded once (%s, %.0f MB) in %.1f s", name, len(items), cache.mode, cache.nbytes / 2**20,
             time.perf_counter() - start)
    return CachedSamples(items, transform, cache, name=name, on_error=run.on_error), 0
