"""`bench train-sigma`: prepare SIGMA's data (cached), train Stage I and Stage II, export the heads.

Outputs: a work folder ``<paths.home>/sigma/<key>/`` (stage checkpoints for exact resume, the stand-in
autoencoder, logs) and the small exported checkpoint ``sigma.export`` (default
``results/sigma/<profile>/sigma.pt``) with a JSON sidecar (config, data, timings) that the ``sigma``
generator loads.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from benchmarks.config import check_option, compose, save_resolved, to_container
from benchmarks.runners.eval_generators import resolve_device
from benchmarks.runners.sigma_data import FeatureBank, PairTable, cache_key, load_pairs

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
}


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")[:48]


def work_dir(cfg: DictConfig, data: SigmaTrainingData, variant: str = "sigma (full)") -> Path:
    """Where a variant trains (stage checkpoints for exact resume): the full model in <home>/sigma/<key>/,
    the others beside it, so ablations reuse the full model's run instead of repeating it."""
    training = {k: v for k, v in to_container(cfg.sigma).items() if k != "export"}  # where it is exported is no input
    root = Path(cfg.paths.home) / "sigma" / cache_key({"data": data.info["cache"], "sigma": training})
    return root if variant == "sigma (full)" else root / "variants" / slug(variant)


def train_variant(cfg: DictConfig, data: SigmaTrainingData, variant: str, device: torch.device,
                  run_stage2: bool = True, stage1_only_from: Path | None = None) -> tuple[Any, dict]:
    spec = VARIANTS[variant]
    stage1_from = stage1_only_from
    if spec.get("stage1_from") == "full":
        stage1_from = work_dir(cfg, data) / "stage1_last.pt"
        if not stage1_from.is_file():
            raise FileNotFoundError(f"{variant!r} starts from the full model's Stage I ({stage1_from}): train it first")
    return train(cfg, data, work_dir(cfg, data, variant), model_overrides=spec.get("model"),
                 stage2_overrides=spec.get("stage2") or {}, stage1_from=stage1_from,
                 run_stage2=run_stage2 and spec.get("stage2", {}) is not None, device=device)


def sigma_config(cfg: DictConfig, **overrides: Any):
    from sigma.model import SigmaConfig

    return replace(SigmaConfig.from_dict(to_container(cfg.sigma.model)), **overrides)


def stage_config(node: DictConfig, **overrides: Any):
    from sigma.train import StageConfig

    return replace(StageConfig(**to_container(node)), **overrides)


def backbone_path(cfg: DictConfig) -> str | None:
    if cfg.sigma.backbone_path:
        return str(cfg.sigma.backbone_path)
    if cfg.sigma.model.backbone == "tf_efficientnet_lite0":
        from benchmarks.weights import efficientnet_lite0_path

        return str(efficientnet_lite0_path())
    return None


def _sets(cfg: DictConfig) -> tuple[Path, Path]:
    """The Stage I inpainting set and the unlabelled corpus: given folders, or the synthetic suite's."""
    if cfg.sigma.inpainting and cfg.sigma.corpus:
        return Path(cfg.sigma.inpainting), Path(cfg.sigma.corpus)
    from benchmarks.runners.data import ensure_suite, synth_config
    from benchmarks.synth.build import suite_dir

    suite_cfg = cfg if cfg.synth.name == cfg.sigma.suite else compose([f"synth={cfg.sigma.suite}", f"profile={cfg.profile.name}"])
    root = suite_dir(synth_config(suite_cfg), suite_cfg.paths.data)
    if not (root / "DONE").is_file():
        root = ensure_suite(suite_cfg)
    return Path(cfg.sigma.inpainting or root / "inpainting"), Path(cfg.sigma.corpus or root / "corpus")


# ---------------------------------------------------------------------------------------------- data


class SigmaTrainingData:
    """The three pair tables SIGMA trains on, over one FeatureBank, built once and cached on disk."""

    def __init__(self, bank: FeatureBank, stage1: PairTable, calibration: PairTable, corpus: PairTable, info: dict):
        self.bank, self.stage1, self.calibration, self.corpus, self.info = bank, stage1, calibration, corpus, info

    def batch_fn(self, table: PairTable, tag: int, batch_size: int, seed: int):
        """``step -> batch``: indices drawn from a generator seeded by (seed, tag, step) — deterministic."""

        def at(step: int) -> dict[str, Any]:
            rng = np.random.default_rng((seed, tag, step))
            idx = rng.integers(0, len(table), batch_size)
            orig = [table.orig[i] for i in idx]
            edit = [table.edit[i] for i in idx]
            batch: dict[str, Any] = {"feats_o": self.bank.features(orig), "feats_e": self.bank.features(edit),
                                     "original": self.bank.pixels(orig), "edited": self.bank.pixels(edit),
                                     "instruction": [table.instruction[i] for i in idx]}
            if table.masks is not None:
                batch["mask"] = table.masks[idx].float()
                batch["intended"] = table.intended[idx].float()
            if table.roundtrip is not None:
                batch["roundtrip"] = table.roundtrip[idx]
            return batch

        return at


def prepare_data(cfg: DictConfig, device: torch.device, progress: bool = True) -> SigmaTrainingData:
    from benchmarks.data.imageio import file_digest
    from sigma.backbone import FrozenBackbone
    from sigma.roundtrip import DiffusersVAE, editor_roundtrip, train_standin

    inpainting_dir, corpus_dir = _sets(cfg)
    bpath = backbone_path(cfg)
    key_parts = {"inpainting": file_digest(inpainting_dir / "manifest.jsonl"), "corpus": file_digest(corpus_dir / "manifest.jsonl"),
                 "backbone": cfg.sigma.model.backbone, "backbone_weights": file_digest(bpath) if bpath else None,
                 "vae": cfg.sigma.vae_path, "standin": to_container(cfg.sigma.standin_ae),
                 "calibration": to_container(cfg.sigma.calibration), "seed": cfg.sigma.seed, "format": 1}
    key = cache_key(key_parts)
    cache = Path(cfg.paths.home) / "cache" / "sigma" / key
    bank_file = cache / "data.pt"
    if bank_file.is_file():
        state = torch.load(bank_file, map_location="cpu", weights_only=False)
        log.info("SIGMA training data from cache %s", cache)
        return SigmaTrainingData(FeatureBank.from_state(state["bank"]), *state["tables"], {**state["info"], "from_cache": True})

    t0 = time.perf_counter()
    info: dict[str, Any] = {"inpainting": str(inpainting_dir), "corpus": str(corpus_dir), "cache": str(cache)}
    recs, inp_o, inp_e, inp_m, inp_int = load_pairs(inpainting_dir, with_masks=True)
    crecs, cor_o, cor_e, _, _ = load_pairs(corpus_dir, with_masks=False)
    seed = int(cfg.sigma.seed)

    # the round-trip autoencoder: a real VAE when given, else the stand-in trained on unedited photos
    if cfg.sigma.vae_path:
        ae = DiffusersVAE(str(cfg.sigma.vae_path)).to(device)
        ae_roundtrip = ae.roundtrip
        info["autoencoder"] = f"diffusers AutoencoderKL {cfg.sigma.vae_path}"
    else:
        photos = np.concatenate([inp_o, cor_o])
        crop = min(int(cfg.sigma.standin_ae.crop), photos.shape[1], photos.shape[2])
        bs = int(cfg.sigma.standin_ae.batch_size)

        def crops(step: int) -> torch.Tensor:
            rng = np.random.default_rng((seed, 7, step))
            out = []
            for i in rng.integers(0, len(photos), bs):
                y, x = rng.integers(0, photos.shape[1] - crop + 1), rng.integers(0, photos.shape[2] - crop + 1)
                out.append(photos[i, y:y + crop, x:x + crop])
            return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float().div(255)

        ae, ae_info = train_standin(crops, int(cfg.sigma.standin_ae.steps), device, seed=seed, progress=progress)
        latent_gen = torch.Generator().manual_seed(seed + 1)
        ae_roundtrip = lambda x: ae.roundtrip(x, latent_gen, float(cfg.sigma.standin_ae.latent_noise))  # noqa: E731
        cache.mkdir(parents=True, exist_ok=True)
        torch.save(ae.state_dict(), cache / "standin_ae.pt")
        info["autoencoder"] = {"kind": "stand-in (8x latent, 4 channels)", **ae_info}

    # calibration pairs: the inpainting edits, and unedited originals, through the editor round trip
    gen = torch.Generator().manual_seed(seed)
    n_noedit = int(round(len(recs) * float(cfg.sigma.calibration.noedit_fraction)))
    noedit_idx = np.random.default_rng((seed, 11)).choice(len(recs), n_noedit, replace=False)

    def roundtrip(images: np.ndarray) -> np.ndarray:
        out = []
        for i in range(0, len(images), 32):
            x = torch.from_numpy(images[i:i + 32]).permute(0, 3, 1, 2).float().div(255).to(device)
            y = editor_roundtrip(x, ae_roundtrip, gen, float(cfg.sigma.calibration.shift), tuple(cfg.sigma.calibration.jpeg),
                                 float(cfg.sigma.calibration.tone))
            out.append((y.cpu() * 255).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy())
        return np.concatenate(out)

    cal_e = roundtrip(inp_e)
    cal_n = roundtrip(inp_o[noedit_idx])
    psnr = _psnr(cal_n, inp_o[noedit_idx])
    info["calibration_noedit_psnr_db_median"] = round(float(np.median(psnr)), 2)

    backbone = FrozenBackbone(cfg.sigma.model.backbone, pretrained_path=bpath).to(device)
    bank = FeatureBank()
    io_ = bank.add(inp_o, backbone, device, desc="features: inpainting originals", progress=progress)
    ie_ = bank.add(inp_e, backbone, device, desc="features: inpainting edited", progress=progress)
    ce_ = bank.add(cal_e, backbone, device, desc="features: round-trip edited", progress=progress)
    cn_ = bank.add(cal_n, backbone, device, desc="features: round-trip unedited", progress=progress)
    co_ = bank.add(cor_o, backbone, device, desc="features: corpus originals", progress=progress)
    cc_ = bank.add(cor_e, backbone, device, desc="features: corpus edited", progress=progress)
    bank.stack()

    instr = [r.instruction for r in recs]
    stage1 = PairTable(io_, ie_, instr, inp_m, inp_int)
    zeros = torch.zeros((n_noedit, *inp_m.shape[1:]), dtype=torch.bool)
    calibration = PairTable(io_ + [io_[i] for i in noedit_idx], ce_ + cn_, instr + [instr[i] for i in noedit_idx],
                            torch.cat([inp_m, zeros]), torch.cat([inp_int, zeros]), torch.ones(len(ce_) + n_noedit, dtype=torch.bool))
    corpus = PairTable(co_, cc_, [r.instruction for r in crecs])
    info.update(pairs_stage1=len(stage1), pairs_calibration=len(calibration), pairs_corpus=len(corpus),
                seconds=round(time.perf_counter() - t0, 1))
    cache.mkdir(parents=True, exist_ok=True)
    tmp = bank_file.with_name("data.pt.tmp")
    torch.save({"bank": bank.state(), "tables": (stage1, calibration, corpus), "info": info}, tmp)
    tmp.replace(bank_file)
    (cache / "key.json").write_text(json.dumps(key_parts, indent=1, default=str))
    log.info("SIGMA training data ready in %.0f s (%s)", info["seconds"], cache)
    return SigmaTrainingData(bank, stage1, calibration, corpus, info)


def _psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).reshape(len(a), -1).mean(1)
    return 10 * np.log10(255.0 ** 2 / np.maximum(mse, 1e-10))


# ---------------------------------------------------------------------------------------------- training


def train(cfg: DictConfig, data: SigmaTrainingData, work: Path, model_overrides: dict | None = None,
          stage2_overrides: dict | None = None, stage1_from: Path | None = None, run_stage2: bool = True,
          device: torch.device | None = None, progress: bool = True) -> tuple[Any, dict]:
    """Train one SIGMA variant in `work` (resumes exactly if interrupted). Returns (net, summary)."""
    from sigma.model import SigmaNet
    from sigma.text import TextEncoder
    from sigma.train import SigmaTrainer

    device = device or resolve_device(cfg.device)
    scfg = sigma_config(cfg, **(model_overrides or {}))
    torch.manual_seed(int(cfg.sigma.seed))
    net = SigmaNet(scfg)
    text = TextEncoder(scfg.text_encoder, path=cfg.sigma.text_encoder_path) if scfg.use_text else None
    trainer = SigmaTrainer(net, text, device, work, seed=int(cfg.sigma.seed), progress=progress)
    bs = int(cfg.sigma.batch_size)
    seed = int(cfg.sigma.seed)
    summary: dict[str, Any] = {"model": scfg.to_dict()}
    s1 = stage_config(cfg.sigma.stage1)
    if stage1_from is not None:  # Stage II ablations start from the full model's Stage I weights
        state = torch.load(stage1_from, map_location="cpu", weights_only=False)
        net.load_state_dict(state["net"])
        summary["stage1"] = {"from": str(stage1_from)}
    else:
        summary["stage1"] = trainer.stage1(s1, data.batch_fn(data.stage1, 1, bs, seed))
    if run_stage2:
        s2 = stage_config(cfg.sigma.stage2, **(stage2_overrides or {}))
        supervised = data.calibration if s2.calibration else data.stage1
        summary["stage2"] = trainer.stage2(s2, data.batch_fn(supervised, 2, bs, seed),
                                           data.batch_fn(data.corpus, 3, bs, seed) if s2.self_training else None)
        summary["stage2_config"] = {k: getattr(s2, k) for k in ("calibration", "self_training", "disentangle")}
        if trainer.teacher is not None:  # the mean teacher is the smoother model: it is the one we keep
            net.load_state_dict(trainer.teacher.state_dict())
    summary["history"] = trainer.history
    return net.eval(), summary


def same_export(net, path: Path) -> bool:
    """Whether `path` already holds exactly these heads (same architecture config, bit-identical weights)."""
    if not path.is_file():
        return False
    old = torch.load(path, map_location="cpu", weights_only=True)
    mine = net.state_dict()
    return (old.get("config") == net.cfg.to_dict() and old.get("state_dict", {}).keys() == mine.keys()
            and all(torch.equal(old["state_dict"][k].cpu(), v.cpu()) for k, v in mine.items()))


def export(net, cfg: DictConfig, summary: dict, path: Path, data_info: dict) -> Path:
    """Write the heads and their JSON sidecar. An export of the same weights is kept as it is: re-running a
    finished training (it resumes at its last step and does no work) must not replace the record of the run
    that made the weights, nor change the file hash that annotation caches key on."""
    from sigma.annotator import file_hash, save_checkpoint

    if same_export(net, path):
        log.info("%s already holds these weights; kept with its training record", path)
        return path
    meta = {"backbone_path": None if cfg.sigma.backbone_path is None else str(cfg.sigma.backbone_path),
            "text_encoder_path": cfg.sigma.text_encoder_path, "data": data_info,
            "stage1": summary.get("stage1"), "stage2": summary.get("stage2"), "profile": cfg.profile.name}
    save_checkpoint(path, net, meta)
    sidecar = {"checkpoint": path.name, "sha256_16": file_hash(path), "config": to_container(cfg.sigma), **meta,
               "history": summary.get("history", [])}
    path.with_suffix(".json").write_text(json.dumps(sidecar, indent=1, default=str) + "\n")
    return path


def grounding_export(cfg: DictConfig) -> Path:
    """Where the grounding_only generator (configs/generator/grounding_only.yaml) looks for its heads."""
    return Path(cfg.paths.results) / "sigma" / cfg.profile.name / "grounding_only.pt"


def train_sigma_command(args: argparse.Namespace) -> int:
    check_option("profile", args.profile)
    overrides = [f"profile={args.profile}", *args.overrides]
    cfg = compose(overrides, command="train-sigma")
    if args.variant == "ablations":
        from benchmarks.runners.sigma_ablations import run_ablations

        path = run_ablations(cfg, overrides)
        print(path.read_text())
        print(path)
        return 0
    variant = "grounding_only" if args.variant == "grounding_only" else "sigma (full)"
    out, summary, data_info = train_and_export(cfg, variant, stage=args.stage)
    data_note = "data from cache" if data_info.get("from_cache") else f"data prepared in {data_info['seconds']} s"
    print(f"SIGMA trained in {summary['total_seconds']} s ({data_note}): {out}")
    return 0


def train_and_export(cfg: DictConfig, variant: str = "sigma (full)", stage: str = "all") -> tuple[Path, dict, dict]:
    """Train `variant` ("sigma (full)" or "grounding_only") and export its heads where its generator config looks
    (resuming an interrupted run exactly). Returns (exported file, summary, data info)."""
    device = resolve_device(cfg.device)
    t0 = time.perf_counter()
    data = prepare_data(cfg, device)
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
    out = export(net, cfg, summary, target, data.info)
    save_resolved(cfg, out.parent, "config.yaml" if variant == "sigma (full)" else f"{out.stem}.config.yaml")
    return out, summary, data.info
