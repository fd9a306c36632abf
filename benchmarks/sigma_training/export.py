"""SIGMA's exported heads: the small checkpoint the ``sigma`` / ``grounding_only`` generators load, its
JSON sidecar (config, data, stage summaries, loss history), and training a variant end to end into it."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from omegaconf import DictConfig

from benchmarks.config import save_resolved, to_container
from benchmarks.distributed import device_for, is_main
from benchmarks.io import file_hash, write_json
from benchmarks.paths import config_roots, portable_tree
from benchmarks.sigma_training.data import prepare_data
from benchmarks.sigma_training.stages import train_variant, work_dir
from sigma.serialization import load_file

log = logging.getLogger(__name__)


def same_export(net, path: Path) -> bool:
    """Whether `path` already holds exactly these heads (same architecture config, bit-identical weights)."""
    if not path.is_file():
        return False
    old = load_file(path)
    mine = net.state_dict()
    return (old.get("config") == net.cfg.to_dict() and old.get("state_dict", {}).keys() == mine.keys()
            and all(torch.equal(old["state_dict"][k].cpu(), v.cpu()) for k, v in mine.items()))


def export(net, cfg: DictConfig, summary: dict, path: Path, data_info: dict) -> Path:
    """Write the heads and their JSON sidecar. An export of the same weights is kept as it is: re-running a
    finished training (it resumes at its last step and does no work) must not replace the record of the run
    that made the weights, nor change the file hash that annotation caches key on."""
    from sigma.annotator import save_checkpoint

    if same_export(net, path):
        log.info("%s already holds these weights; kept with its training record", path)
        return path
    roots = config_roots(cfg.get("paths") or {})
    meta = portable_tree({"backbone_path": None if cfg.sigma.backbone_path is None else str(cfg.sigma.backbone_path),
                          "text_encoder_path": cfg.sigma.text_encoder_path, "data": data_info,
                          "stage1": summary.get("stage1"), "stage2": summary.get("stage2"),
                          "profile": cfg.profile.name}, roots)
    if summary.get("skipped"):
        meta["skipped"] = summary["skipped"]
    save_checkpoint(path, net, meta)
    # sigma.data (how pairs reached the trainer) is recorded in data_info when it mattered (the stream's
    # settings); the bank path's record stays what it was before that node existed
    config = {k: v for k, v in to_container(cfg.sigma).items() if k != "data"}
    sidecar = {"checkpoint": path.name, "sha256_16": file_hash(path, 16),
               "config": portable_tree(config, roots), **meta, "history": summary.get("history", [])}
    write_json(path.with_suffix(".json"), sidecar)
    return path


def grounding_export(cfg: DictConfig) -> Path:
    """Where the grounding_only generator (configs/generator/grounding_only.yaml) looks for its heads."""
    return Path(cfg.paths.results) / "sigma" / str(cfg.profile.get("trained_models") or cfg.profile.name) / "grounding_only.pt"


def train_and_export(cfg: DictConfig, variant: str = "sigma (full)", stage: str = "all") -> tuple[Path, dict, dict]:
    """Train `variant` ("sigma (full)" or "grounding_only") and export its heads where its generator config looks
    (resuming an interrupted run exactly). Returns (exported file, summary, data info)."""
    device = device_for(cfg.device)
    t0 = time.perf_counter()
    data = prepare_data(cfg, device)
    if is_main():
        save_resolved(cfg, work_dir(cfg, data, variant))
    stage1_from = None
    if stage == "2":
        stage1_from = work_dir(cfg, data, variant) / "stage1_last.pt"
        if not stage1_from.is_file():
            raise FileNotFoundError(f"--stage 2 needs Stage I first: {stage1_from} is missing (run --stage 1 or all)")
    net, summary = train_variant(cfg, data, variant, device, run_stage2=stage in ("2", "all"),
                                 stage1_only_from=stage1_from)
    summary["total_seconds"] = round(time.perf_counter() - t0, 1)
    target = Path(cfg.sigma.export) if variant == "sigma (full)" else grounding_export(cfg)
    if not is_main():  # under torchrun every rank holds the same heads; rank 0 writes them
        return target, summary, data.info
    out = export(net, cfg, summary, target, data.info)
    save_resolved(cfg, out.parent, "config.yaml" if variant == "sigma (full)" else f"{out.stem}.config.yaml")
    return out, summary, data.info
