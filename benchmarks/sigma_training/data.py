"""SIGMA's training data, prepared once per set of inputs and cached: the Stage I inpainting pairs, the
editor round-trip calibration pairs (a diffusers VAE, or the offline stand-in autoencoder trained here on
unedited photos) and the unlabelled corpus, all as indices into one feature bank, plus the ``step ->
batch`` functions the stages draw from. :func:`prepare_data` picks this bank or the stream
(:mod:`~benchmarks.sigma_training.stream`) by ``sigma.data.source``; under torchrun rank 0 prepares (and
caches) first and the other ranks then read its cache.

Cache: ``<paths.home>/cache/sigma/<key>/`` (``data.pt``, ``standin_ae.pt``, ``key.json``), keyed by the
hash of every input (the sets' manifests, backbone and its weights, autoencoder, calibration settings,
seed, bank format).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from benchmarks.config import to_container
from benchmarks.distributed import barrier, is_main, rank_world
from benchmarks.io import content_hash, file_hash, save_torch, write_json
from benchmarks.paths import config_roots, portable
from benchmarks.sigma_training.bank import BANK_FORMAT, FeatureBank, PairTable, load_bank, load_pairs, save_bank
from benchmarks.sigma_training.inputs import backbone_path, data_config, excluded_families, training_sets
from benchmarks.sigma_training.stream import prepare_stream

__all__ = ["SigmaTrainingData", "backbone_path", "bank_key", "prepare_bank", "prepare_data", "training_sets"]

log = logging.getLogger(__name__)


class SigmaTrainingData:
    """The three pair tables SIGMA trains on, over one FeatureBank, built once and cached on disk."""

    streamed = False  # batches carry the bank's features (the trainer needs no backbone)

    def __init__(self, bank: FeatureBank, stage1: PairTable, calibration: PairTable, corpus: PairTable, info: dict):
        self.bank, self.stage1, self.calibration, self.corpus, self.info = bank, stage1, calibration, corpus, info

    def batch_fn(self, table: PairTable, tag: int, batch_size: int, seed: int, steps: int | None = None):
        """``step -> batch``: `batch_size` indices drawn from a generator seeded by (seed, tag, step) —
        deterministic; under torchrun each rank takes its equal share of them (`steps` is the stream's)."""
        rank, world = rank_world()
        if batch_size % world:
            raise ValueError(f"sigma.batch_size={batch_size} is the global batch: it must split evenly over the "
                             f"{world} processes")
        share = batch_size // world

        def at(step: int) -> dict[str, Any]:
            rng = np.random.default_rng((seed, tag, step))
            idx = rng.integers(0, len(table), batch_size)
            if world > 1:
                idx = idx[rank * share:(rank + 1) * share]
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


def prepare_data(cfg: DictConfig, device: torch.device, progress: bool = True):
    """The training data of ``sigma.data.source``: the cached bank (:func:`prepare_bank`) or the stream
    (:func:`~benchmarks.sigma_training.stream.prepare_stream`). Under torchrun rank 0 prepares first."""
    prepare = prepare_stream if data_config(cfg).source == "stream" else prepare_bank
    if is_main():
        data = prepare(cfg, device, progress)
        barrier()
        return data
    barrier()  # rank 0 has written the caches this reads
    return prepare(cfg, device, progress=False)


def bank_key(cfg: DictConfig) -> tuple[str, dict[str, Any]]:
    """The bank's cache key and the inputs it hashes. Cheap (the manifests' hashes; no pixel is read), so a
    caller can tell whether a result was made from this bank without building it."""
    inpainting_dir, corpus_dir = training_sets(cfg)
    bpath = backbone_path(cfg)
    key_parts = {"inpainting": file_hash(inpainting_dir / "manifest.jsonl", 16),
                 "corpus": file_hash(corpus_dir / "manifest.jsonl", 16), "backbone": cfg.sigma.model.backbone,
                 "backbone_weights": file_hash(bpath, 16) if bpath else None, "vae": cfg.sigma.vae_path,
                 "standin": to_container(cfg.sigma.standin_ae), "calibration": to_container(cfg.sigma.calibration),
                 "seed": cfg.sigma.seed, "format": BANK_FORMAT,
                 "corpus_exclude_split": cfg.sigma.get("corpus_exclude_split")}
    families = excluded_families(cfg)
    if families:  # leave-one-family-out; absent otherwise, so the default bank keeps its key
        key_parts["exclude_families"] = families
    return content_hash(key_parts), key_parts


def prepare_bank(cfg: DictConfig, device: torch.device, progress: bool = True) -> SigmaTrainingData:
    from sigma.backbone import FrozenBackbone
    from sigma.roundtrip import DiffusersVAE, editor_roundtrip, train_standin

    inpainting_dir, corpus_dir = training_sets(cfg)
    bpath = backbone_path(cfg)
    families = excluded_families(cfg)
    key, key_parts = bank_key(cfg)
    cache = Path(cfg.paths.home) / "cache" / "sigma" / key
    bank_file = cache / "data.pt"
    if bank_file.is_file():
        bank, tables, info = load_bank(bank_file)
        log.info("SIGMA training data from cache %s", cache)
        return SigmaTrainingData(bank, tables["stage1"], tables["calibration"], tables["corpus"],
                                 {**info, "from_cache": True})

    t0 = time.perf_counter()
    roots = config_roots(cfg.paths)
    info: dict[str, Any] = {"inpainting": portable(inpainting_dir, roots), "corpus": portable(corpus_dir, roots),
                            "cache": portable(cache, roots), "cache_key": key}
    recs, inp_o, inp_e, inp_m, inp_int = load_pairs(inpainting_dir, with_masks=True, exclude_families=families)
    crecs, cor_o, cor_e, _, _ = load_pairs(corpus_dir, with_masks=False, exclude_families=families,
                                           exclude_split=cfg.sigma.get("corpus_exclude_split"))
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
        save_torch(ae.state_dict(), cache / "standin_ae.pt")
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
                                 float(cfg.sigma.calibration.tone), float(cfg.sigma.calibration.get("randomize", 0.0)),
                                 float(cfg.sigma.calibration.get("warp", 0.0)))
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
    save_bank(bank_file, bank, {"stage1": stage1, "calibration": calibration, "corpus": corpus}, info)
    write_json(cache / "key.json", key_parts)
    log.info("SIGMA training data ready in %.0f s (%s)", info["seconds"], cache)
    return SigmaTrainingData(bank, stage1, calibration, corpus, info)


def _psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).reshape(len(a), -1).mean(1)
    return 10 * np.log10(255.0 ** 2 / np.maximum(mse, 1e-10))
