"""One annotation job: the generator of a composed config over a pair source into an output folder, this
process's share of the pairs (torchrun or RANK / WORLD_SIZE), then the merge by whoever finishes last;
plus the folder's ``run.json``, which a resumed job must match."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from benchmarks.annotation.loop import AnnotateOptions, annotate, set_cpu_threads
from benchmarks.annotation.shards import FORMAT, merge
from benchmarks.builders import generator_from_config
from benchmarks.config import save_resolved
from benchmarks.data.pair_sources import PairSource, open_source
from benchmarks.distributed import barrier, device_for, has_group, rank_world
from benchmarks.generators.base import MaskGenerator
from benchmarks.generators.quality_filter import with_quality_filter
from benchmarks.io import atomic_write, file_hash, read_json, to_json
from benchmarks.paths import config_roots, portable, portable_tree

log = logging.getLogger(__name__)


def generator_record(generator: MaskGenerator, gen_cfg: dict[str, Any], roots: dict[str, Path]) -> dict[str, Any]:
    """Name, info, config and the SHA-256 of every weights file the config points to (paths written
    against `roots`, see :func:`benchmarks.paths.portable`)."""
    files = {key: {"path": portable(Path(value).resolve(), roots), "sha256": file_hash(value)}
             for key, value in gen_cfg.items() if isinstance(value, str) and value and Path(value).is_file()}
    return {**asdict(generator.info), "config": portable_tree(gen_cfg, roots), "weights_files": files}


def prepare_output(out: Path, pairs: str, source: PairSource, record: dict[str, Any], mask: str,
                   config: dict[str, Any] | None = None) -> None:
    """Create ``out/run.json`` or check that it describes the same source, generator and mask mode."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "run.json"
    if path.is_file():
        have = read_json(path)
        source.check_same(have["source"])
        for key, want in (("generator", {k: record[k] for k in ("name", "config", "weights_files")}), ("mask", mask)):
            got = have[key] if key == "mask" else {k: have[key][k] for k in ("name", "config", "weights_files")}
            if got != want:
                raise ValueError(f"{out} holds masks made with {key} {got}, not {want}; resume with the same "
                                 "settings or annotate into a new --out folder")
        return
    run = {"format": FORMAT, "pairs": str(pairs), "source": source.describe(), "generator": record, "mask": mask,
           "config": config}
    atomic_write(path, to_json(run, indent=2) + "\n")


def finish(out: Path, source: PairSource, *, rank: int, world: int, limit: int | None,
           on_duplicate: str = "skip") -> dict[str, Any] | None:
    """Mark this rank done; merge if this process is rank 0 after a barrier (with a process group), or the
    last rank to finish (independent processes)."""
    expected = source.count(limit)
    atomic_write(out / "state" / f"done-w{world}-r{rank}.json",
                 json.dumps({"rank": rank, "world": world, "pairs": expected}))
    if has_group():
        barrier()
        return merge(out, source, limit, on_duplicate) if rank == 0 else None
    for r in range(world):
        marker = out / "state" / f"done-w{world}-r{r}.json"
        if not marker.is_file() or read_json(marker)["pairs"] != expected:
            log.info("rank %d done; rank %d is still running (the last rank to finish merges)", rank, r)
            return None
    return merge(out, source, limit, on_duplicate)


def annotate_with_config(cfg: Any, pairs: str | Path, out: Path, options: AnnotateOptions, *,
                         source: PairSource | None = None,
                         generator: MaskGenerator | None = None) -> dict[str, Any] | None:
    """Annotate `pairs` into `out` with the generator of a composed config (``cfg.generator``; `generator`:
    that generator already built from it): this process's share under torchrun / RANK+WORLD_SIZE, then the
    merge. Returns the provenance, or None when another rank merges."""
    rank, world = rank_world()
    source = source if source is not None else open_source(pairs)
    OmegaConf.update(cfg, "annotate", {"pairs": str(pairs), "out": str(out), **asdict(options)}, force_add=True)
    generator = generator if generator is not None else generator_from_config(cfg)
    if generator.needs_truth:
        raise ValueError(f"generator {cfg.generator.name!r} needs ground-truth masks; annotation is for unlabelled "
                         "corpora")
    device = device_for(cfg.device)
    generator = generator.to(device).eval()
    roots = config_roots(cfg.paths)
    gen_cfg = OmegaConf.to_container(cfg.generator, resolve=True)
    prepare_output(out, os.path.abspath(pairs), source, generator_record(generator, gen_cfg, roots),
                   "soft" if options.soft else "binary", portable_tree(OmegaConf.to_container(cfg, resolve=True), roots))
    if rank == 0:
        save_resolved(cfg, out)
    threads = torch.get_num_threads()
    try:
        if device.type == "cpu":
            log.debug("torch intra-op threads: %d", set_cpu_threads(options.num_workers))
        session = annotate(generator, source, out, options, rank=rank, world=world, device=device)
    finally:
        torch.set_num_threads(threads)  # may be called in-process (bench run, tests, notebooks)
    log.info("rank %d/%d: %d annotated, %d skipped in %.1f s (%s pairs/s)", rank, world, session["annotated"],
             session["skipped"], session["seconds"], session["pairs_per_s"])
    provenance = finish(out, source, rank=rank, world=world, limit=options.limit, on_duplicate=options.on_error)
    return with_quality_filter(out, provenance, options.min_quality)
