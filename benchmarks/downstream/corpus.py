"""The downstream comparison's corpus side: the corpus ``bench run`` annotates (with its ground truth and
split, when it has them), each generator's masks for it (annotated once per generator config, weights and
corpus, then cached), their quality against ground truth, and the training data they make."""

from __future__ import annotations

import json
import logging
import os
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from benchmarks.annotation.job import annotate_with_config, generator_record
from benchmarks.annotation.loop import THRESHOLD, AnnotateOptions, model_input
from benchmarks.annotation.shards import file_stem
from benchmarks.annotation.stream import write_png
from benchmarks.builders import generator_from_config
from benchmarks.config import expand, to_container
from benchmarks.data.datasets import ensure_suite
from benchmarks.data.imageio import load_image, load_mask, resize_image
from benchmarks.data.iml import ImlItem, list_iml
from benchmarks.data.manifest import read_manifest
from benchmarks.evaluation.loop import Prediction, evaluate
from benchmarks.generators.base import MaskGenerator
from benchmarks.io import atomic_write, content_hash, file_hash, read_json
from benchmarks.metrics import PixelMetrics
from benchmarks.metrics.suite import MetricSuite
from benchmarks.paths import config_roots, portable, portable_tree
from benchmarks.training.data import TrainData

log = logging.getLogger(__name__)

NOT_IN_ALL = ("empty", "full")  # degenerate sanity generators: `--generator all` leaves them out (name them to run)
TRAINED_HERE = {"sigma": "sigma (full)", "grounding_only": "grounding_only"}  # generators `bench train-sigma` makes


@dataclass
class Corpus:
    pairs: Path                  # the pairs-manifest folder each generator annotates
    truth: dict[str, Path]       # id -> ground-truth mask (for oracle and mask quality); empty when unknown
    split: dict[str, str]        # id -> "train" | "val" from the manifest's `split` column; empty when absent

    def is_val(self, item_id: str, fraction: float) -> bool:
        if self.split:
            return self.split.get(item_id) == "val"
        return zlib.crc32(item_id.encode()) % 10_000 < fraction * 10_000


def open_corpus(cfg: DictConfig, pairs: str | None) -> Corpus:
    """The corpus `--pairs` names, or the synthetic suite's (with ground truth from ``corpus_truth/``)."""
    if pairs is None:
        root = ensure_suite(cfg)
        folder, truth_folder = root / "corpus", root / "corpus_truth"
    else:
        folder = truth_folder = Path(pairs).expanduser()
    records = read_manifest(folder)
    truth = {r.id: r.mask for r in read_manifest(truth_folder) if r.mask is not None} if truth_folder != folder \
        else {r.id: r.mask for r in records if r.mask is not None}
    split = {r.id: str(r.meta["split"]) for r in records if "split" in r.meta}
    return Corpus(folder.resolve(), truth, split)


def run_generators(choice: str, cfg: DictConfig) -> list[str]:
    """The generators of a ``bench run --generator`` choice (``all`` leaves out the degenerate rows)."""
    names = expand("generator", choice, cfg)
    return [n for n in names if n not in NOT_IN_ALL] if choice == "all" else names


def ensure_weights(gcfg: DictConfig, generator: str) -> None:
    """Train SIGMA (or grounding_only) on first use when its checkpoint is missing; another generator whose
    checkpoint is missing is an error naming the file."""
    path = OmegaConf.select(gcfg, "generator.checkpoint")
    if path is None or Path(path).is_file():
        return
    if generator not in TRAINED_HERE:
        raise FileNotFoundError(f"generator {generator!r}: checkpoint {path} not found (configs/generator/"
                                f"{generator}.yaml, key checkpoint)")
    from benchmarks.sigma_training.export import train_and_export

    log.info("%s: no checkpoint at %s; training it now (bench train-sigma, cached after)", generator, path)
    out, summary, _ = train_and_export(gcfg, TRAINED_HERE[generator])
    if not Path(path).is_file():
        raise RuntimeError(f"{generator}: training exported {out}, but its generator config reads {path}")
    log.info("%s trained in %s s: %s", generator, summary["total_seconds"], out)


def annotation_key(gcfg: DictConfig, corpus: Corpus) -> str:
    """Hash of the generator's resolved config, the bytes of every file it names, and the corpus path (paths
    written against the project root and ``paths.*``, so a checkout elsewhere computes the same key)."""
    roots = config_roots(gcfg.paths)
    values = to_container(gcfg.generator)
    files = {k: file_hash(v) for k, v in values.items() if isinstance(v, str) and v and Path(v).is_file()}
    return content_hash({"generator": portable_tree(values, roots), "files": files,
                         "corpus": portable(corpus.pairs, roots)})


def annotate_corpus(gcfg: DictConfig, name: str, corpus: Corpus, key: str) -> tuple[list[ImlItem], dict[str, Any]]:
    """G's masks for the corpus as IML items, annotating (or finishing an interrupted annotation) first."""
    if name == "oracle":
        if not corpus.truth:
            raise ValueError(f"generator 'oracle' needs ground-truth masks for the corpus {corpus.pairs}; its manifest "
                             "has no 'mask' column")
        records = read_manifest(corpus.pairs)
        items = [ImlItem(r.id, r.edited, corpus.truth[r.id]) for r in records if r.id in corpus.truth]
        return items, {"source": "ground-truth masks", "pairs": len(items)}
    out = Path(gcfg.paths.runs) / "annotate" / f"{name}-{key}"
    listing = out / "iml.json"
    generator = None if _complete(out) else generator_from_config(gcfg)  # built once, only when there is work
    if generator is not None and generator.needs_truth:
        from_truth(generator, gcfg, corpus, out)
    elif generator is not None:
        options = AnnotateOptions(batch_size=int(gcfg.profile.batch_size), num_workers=int(gcfg.profile.num_workers),
                                  on_error="skip")
        start = time.perf_counter()
        prov = annotate_with_config(gcfg, corpus.pairs, out, options, generator=generator)
        if prov is None or not prov.get("complete", False):
            raise RuntimeError(f"{out}: the annotation did not complete; run the same command again")
        log.info("%s: corpus annotated in %.1f s -> %s", name, time.perf_counter() - start, out)
    prov = read_json(out / "provenance.json")
    record = prov.get("generator", {})
    info = {"source": portable(out, config_roots(gcfg.paths)), "pairs": prov["counts"]["annotated"],
            "skipped": prov["counts"]["skipped"], "pairs_per_s": prov["timing"]["pairs_per_s"],
            "weights_files": record.get("weights_files"),
            "calibration": bool(record.get("calibration", False))}  # it reads the truth: never a baseline
    return list_iml(listing), info


def from_truth(generator: MaskGenerator, gcfg: DictConfig, corpus: Corpus, out: Path) -> None:
    """The masks of a generator that reads the ground truth (a ladder row) for every corpus pair that has
    one, written as an annotation folder (``masks/``, ``iml.json``, then ``provenance.json``, which marks it
    complete). ``bench annotate`` refuses such generators (an unlabelled corpus has no truth); here the
    corpus's own truth is at hand. It takes seconds, so an interrupted run simply starts it again."""
    if not corpus.truth:
        raise ValueError(f"generator {generator.info.name!r} reads ground-truth masks; the corpus {corpus.pairs} has "
                         "none (no 'mask' column, no corpus_truth/)")
    start = time.perf_counter()
    masks, tmp = out / "masks", out / "tmp"
    for folder in (masks, tmp):
        folder.mkdir(parents=True, exist_ok=True)
    listing = []
    for record in read_manifest(corpus.pairs):
        if record.id not in corpus.truth:
            continue
        edited = load_image(record.edited)
        original = resize_image(load_image(record.original), edited.shape[:2])  # as the pair sources do
        original, edited = (model_input(torch.from_numpy(a).permute(2, 0, 1)[None].contiguous())
                            for a in (original, edited))
        truth = torch.from_numpy(load_mask(corpus.truth[record.id]))[None, None].float()
        mask = generator.generate(original, edited, [record.instruction], truth=truth)[0, 0] >= THRESHOLD
        path = masks / f"{file_stem(record.id)}.png"
        write_png(path, mask.numpy().astype(np.uint8) * 255, tmp)
        listing.append([str(record.edited), os.path.relpath(path, out)])
    atomic_write(out / "iml.json", json.dumps(listing, indent=0) + "\n")
    roots = config_roots(gcfg.paths)
    seconds = time.perf_counter() - start
    atomic_write(out / "provenance.json", json.dumps({
        "complete": True, "source": "the corpus's ground-truth masks through the generator (it reads the truth)",
        "generator": generator_record(generator, to_container(gcfg.generator), roots),
        "pairs": portable(corpus.pairs, roots), "mask": "binary",
        "counts": {"pairs": len(listing), "annotated": len(listing), "skipped": 0},
        "timing": {"wall_s": round(seconds, 3), "pairs_per_s": round(len(listing) / seconds, 2) if seconds else None},
    }, indent=2) + "\n")
    tmp.rmdir()
    log.info("%s: %d corpus masks made from the ground truth in %.1f s -> %s", generator.info.name, len(listing),
             seconds, out)


def _complete(out: Path) -> bool:
    """An annotation folder whose merge saw every pair done (a partial merge also writes iml.json)."""
    path = out / "provenance.json"
    return path.is_file() and bool(read_json(path).get("complete"))


def mask_quality(items: list[ImlItem], truth: dict[str, Path]) -> dict[str, Any]:
    """Per-image F1 / IoU of a generator's corpus masks against the corpus's ground truth (headline rule)."""
    scored = [it for it in items if it.id in truth and it.mask is not None]
    if not scored:
        return {"scored_pairs": 0}

    def chunks():
        for start in range(0, len(scored), 64):
            chunk = scored[start:start + 64]
            pred = torch.stack([torch.from_numpy(load_mask(it.mask)) for it in chunk])[:, None].float()
            gt = torch.stack([torch.from_numpy(load_mask(truth[it.id])) for it in chunk])[:, None]
            yield {"prediction": pred, "mask": gt, "valid": torch.ones_like(gt, dtype=torch.bool)}

    m = evaluate(chunks(), lambda batch: Prediction(batch["prediction"]), MetricSuite({"pixel": PixelMetrics()})).metrics
    return {"scored_pairs": len(scored), **{k: m[k] for k in ("f1_per_image", "iou_per_image", "f1_pooled")}}


def training_data(cfg: DictConfig, name: str, key: str, items: list[ImlItem], corpus: Corpus,
                  source: str) -> TrainData:
    """A generator's corpus masks as detector training data: the corpus's validation split held out (with
    the generator's own masks: no ground truth chooses a checkpoint)."""
    fraction = float(cfg.train.val_fraction)
    train = [it for it in items if not corpus.is_val(it.id, fraction)]
    val = [it for it in items if corpus.is_val(it.id, fraction)]
    if not train:
        raise ValueError(f"{source}: no training pairs left after holding out the validation split")
    how = "the corpus's split=val pairs" if corpus.split else f"a {fraction:.0%} id-hash share of the corpus"
    return TrainData(f"run-{name}-{key}", source, train, val, f"{len(val)} pairs ({how}) with {name}'s own masks")
