"""SIGMA's two training stages as the harness runs them: the variants (the full model and each ablation),
where each trains (stage checkpoints for exact resume), and one variant trained on a prepared data bank.

The stages themselves are :class:`sigma.train.SigmaTrainer` (the model library); this module turns a
composed config into its typed configs and hands the trainer deterministic ``step -> batch`` functions, of
bank features or, for streamed data, of images (then the trainer gets the frozen backbone).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from benchmarks.config import to_container, typed
from benchmarks.distributed import device_for, rank_world
from benchmarks.io import content_hash
from benchmarks.sigma_training.data import SigmaTrainingData
from benchmarks.sigma_training.inputs import backbone_path
from sigma.model import SigmaConfig
from sigma.serialization import load_file
from sigma.train import Stage2Config, StageConfig

log = logging.getLogger(__name__)


# Ablation variants: name -> how each differs from the full model (the ablation runner trains all of them;
# `bench train-sigma --variant grounding_only` trains the one the grounding_only generator loads).
# stage1_from="full" reuses the full model's Stage I weights; stage2=None stops after Stage I.
VARIANTS: dict[str, dict[str, Any]] = {
    "sigma (full)": {},
    "no text prior": {"model": {"use_text": False, "refinement": "none"}},
    "one-way FiLM instead of bidirectional refinement": {"model": {"refinement": "film"}},
    "Stage I only": {"stage1_from": "full", "stage2": None},
    "Stage II without VAE-roundtrip calibration": {"stage1_from": "full", "stage2": {"calibration": False}},
    "Stage II without EMA self-training": {"stage1_from": "full", "stage2": {"self_training": False}},
    "Stage II without disentanglement loss": {"stage1_from": "full", "stage2": {"disentangle": False}},
    "grounding_only": {"model": {"difference": False}, "stage2": {"self_training": False, "disentangle": False}},
    # the minimal learned-differencing reference (docs/design.md): frozen features of both images compared
    # per level ([a, b, |a-b|, a*b, 1-cos]) and a small conv decoder; no text, no refinement blocks, no colour
    # branch; supervised only (exact masks, then the round-tripped calibration pairs)
    "difference reference (no text)": {"model": {"use_text": False, "refinement": "none", "blocks": 0,
                                                 "color_diff": False},
                                       "stage2": {"self_training": False, "disentangle": False}},
}


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")[:48]


def work_dir(cfg: DictConfig, data: SigmaTrainingData, variant: str = "sigma (full)") -> Path:
    """Where a variant trains (stage checkpoints for exact resume): the full model in <home>/sigma/<key>/,
    the others beside it, so ablations reuse the full model's run instead of repeating it. The key covers
    the training inputs: the data's key (the bank's, or the stream's, which covers its resize, windows and
    retries) and the sigma config, not where the heads are exported nor ``sigma.data`` (how the pairs are
    delivered: on the bank path it changes nothing, and the stream's key already holds what counts)."""
    training = {k: v for k, v in to_container(cfg.sigma).items() if k not in ("export", "data")}
    root = Path(cfg.paths.home) / "sigma" / content_hash({"data": data.info["cache_key"], "sigma": training})
    return root if variant == "sigma (full)" else root / "variants" / slug(variant)


def train_variant(cfg: DictConfig, data: SigmaTrainingData, variant: str, device: torch.device,
                  run_stage2: bool = True, stage1_only_from: Path | None = None) -> tuple[Any, dict]:
    spec = VARIANTS[variant]
    stage1_from = stage1_only_from
    if spec.get("stage1_from") == "full":
        stage1_from = work_dir(cfg, data) / "stage1_last.pt"
        if not stage1_from.is_file():  # a fresh home folder: the full model's Stage I, seeded as it always is
            log.info("%r starts from the full model's Stage I, not trained in %s yet: training it", variant,
                     stage1_from.parent)
            train(cfg, data, stage1_from.parent, run_stage2=False, device=device)
    return train(cfg, data, work_dir(cfg, data, variant), model_overrides=spec.get("model"),
                 stage2_overrides=spec.get("stage2") or {}, stage1_from=stage1_from,
                 run_stage2=run_stage2 and spec.get("stage2", {}) is not None, device=device)


def sigma_config(cfg: DictConfig, **overrides: Any) -> SigmaConfig:
    """``sigma.model`` as the heads' architecture config, with `overrides` (an ablation's changes)."""
    return replace(SigmaConfig.from_dict(to_container(cfg.sigma.model)), **overrides)


def stage_config(node: DictConfig, stage: int, **overrides: Any) -> StageConfig:
    """A stage node of the sigma config (``stage1`` / ``stage2``) as its typed config, with `overrides`."""
    cls = StageConfig if stage == 1 else Stage2Config
    return replace(typed(cls, node, f"sigma.stage{stage}"), **overrides)


def train(cfg: DictConfig, data: SigmaTrainingData, work: Path, model_overrides: dict | None = None,
          stage2_overrides: dict | None = None, stage1_from: Path | None = None, run_stage2: bool = True,
          device: torch.device | None = None, progress: bool = True) -> tuple[Any, dict]:
    """Train one SIGMA variant in `work` (resumes exactly if interrupted). Returns (net, summary)."""
    from sigma.model import SigmaNet
    from sigma.text import TextEncoder
    from sigma.train import SigmaTrainer

    from sigma.backbone import FrozenBackbone

    device = device or device_for(cfg.device)
    scfg = sigma_config(cfg, **(model_overrides or {}))
    torch.manual_seed(int(cfg.sigma.seed))
    net = SigmaNet(scfg)
    streamed = getattr(data, "streamed", False)
    text_options = {"cache_size": data.cfg.text_cache} if streamed else {}
    text = TextEncoder(scfg.text_encoder, path=cfg.sigma.text_encoder_path, **text_options) if scfg.use_text else None
    backbone = FrozenBackbone(scfg.backbone, pretrained_path=backbone_path(cfg)) if streamed else None
    if streamed:
        rank = rank_world()[0]
        data.log_skips(work / ("skipped.jsonl" if rank == 0 else f"skipped.rank{rank}.jsonl"))
    trainer = SigmaTrainer(net, text, device, work, seed=int(cfg.sigma.seed), progress=progress, backbone=backbone)
    bs = int(cfg.sigma.batch_size)
    seed = int(cfg.sigma.seed)
    summary: dict[str, Any] = {"model": scfg.to_dict()}
    s1 = stage_config(cfg.sigma.stage1, 1)
    if stage1_from is not None:  # Stage II ablations start from the full model's Stage I weights
        net.load_state_dict(load_file(stage1_from)["net"])
        summary["stage1"] = {"from": str(stage1_from)}
    else:
        summary["stage1"] = trainer.stage1(s1, data.batch_fn(data.stage1, 1, bs, seed, steps=s1.steps))
    if run_stage2:
        s2 = stage_config(cfg.sigma.stage2, 2, **(stage2_overrides or {}))
        supervised = data.calibration if s2.calibration else data.stage1
        summary["stage2"] = trainer.stage2(
            s2, data.batch_fn(supervised, 2, bs, seed, steps=s2.steps),
            data.batch_fn(data.corpus, 3, bs, seed, steps=s2.steps) if s2.self_training else None)
        summary["stage2_config"] = {k: getattr(s2, k) for k in ("calibration", "self_training", "disentangle")}
        if trainer.teacher is not None:  # the mean teacher is the smoother model: it is the one we keep
            net.load_state_dict(trainer.teacher.state_dict())
    if streamed:
        summary["skipped"] = data.skips.summary()
    summary["history"] = trainer.history
    return net.eval(), summary
