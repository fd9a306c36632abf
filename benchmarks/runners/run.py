"""`bench run`: the downstream comparison end to end, one (generator, detector) cell at a time.

    bench run --generator sigma --detector all                       # what `make run` runs (plus its rows)
    bench run --generator sigma,pixel_diff,oracle --detector segformer
    bench run --generator all --detector all --profile gpu-paper      # SIGMA, every baseline and oracle

For each generator G: annotate the editing corpus (``--pairs``, default the synthetic suite's corpus) with
G into ``<paths.runs>/annotate/<G>-<key>/`` (PNG masks + IMDL-BenCo ``iml.json``; ``key`` hashes the
generator's resolved config, the bytes of its weights files and the corpus path, so a new checkpoint gets
new masks and an unchanged one reuses them; ``oracle`` uses the corpus's ground-truth masks). The
corpus's own ``split`` column (else a hash of the id) holds the same pairs out for every generator; they
choose each detector's checkpoint on *G's* masks, as a user without ground truth would — test sets are
never used for that. Then, for each detector D: train (``bench train-detector`` machinery), test on the
profile's test datasets, and publish the cell into ``<paths.results>/runs/<G>/<D>/``:

    cell.json      metrics per dataset, training summary, timing, generator provenance, git commit
    metrics.csv    one row per test dataset;  config.yaml  the resolved config;  examples/<set>.png  a prediction

A cell is finished when its run folder holds ``cell.json`` for the same test sets and test geometry; a
re-run skips finished cells (``--force`` redoes them), re-tests a trained detector asked for other test
sets, and resumes an interrupted training from its ``last.pt``. Every generator also gets
``<paths.results>/runs/<G>/annotation.json`` (mask quality vs the corpus's ground truth, when it has any,
speed, counts). The run ends with ``bench leaderboard`` and ``bench plots`` over everything in
``<paths.results>/runs/``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
import subprocess
import time
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from benchmarks.config import check_option, compose, expand, save_resolved, to_container
from benchmarks.data.imageio import load_image, load_mask, save_png, sha256_file
from benchmarks.data.iml import ImlItem, list_iml
from benchmarks.data.manifest import read_manifest
from benchmarks.metrics import PixelMetrics
from benchmarks.runners.annotate import AnnotateOptions, annotate_with_config
from benchmarks.runners.data import ensure_suite
from benchmarks.runners.eval_detector import evaluate_checkpoint, resolve_test_sets
from benchmarks.runners.train_detector import (NOT_IN_FINGERPRINT, TrainData, available, run_dir, train_one,
                                               write_json)

log = logging.getLogger(__name__)

NOT_IN_ALL = ("empty", "full")  # degenerate sanity generators: `--generator all` leaves them out (name them to run)
CORPUS_EXAMPLES = 4             # corpus pairs whose masks every generator publishes (qualitative figure)


# ---------------------------------------------------------------------------------------------- corpus


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


# ---------------------------------------------------------------------------------------------- generators


def run_generators(choice: str, cfg: DictConfig) -> list[str]:
    names = expand("generator", choice, cfg)
    return [n for n in names if n not in NOT_IN_ALL] if choice == "all" else names


TRAINED_HERE = {"sigma": "sigma (full)", "grounding_only": "grounding_only"}  # generators `bench train-sigma` makes


def ensure_weights(gcfg: DictConfig, generator: str) -> None:
    """Train SIGMA (or grounding_only) on first use when its checkpoint is missing; another generator whose
    checkpoint is missing is an error naming the file."""
    path = OmegaConf.select(gcfg, "generator.checkpoint")
    if path is None or Path(path).is_file():
        return
    if generator not in TRAINED_HERE:
        raise FileNotFoundError(f"generator {generator!r}: checkpoint {path} not found (configs/generator/"
                                f"{generator}.yaml, key checkpoint)")
    from benchmarks.runners.train_sigma import train_and_export

    print(f"[train]   {generator}: no checkpoint at {path}; training it now (bench train-sigma, cached after)",
          flush=True)
    out, summary, _ = train_and_export(gcfg, TRAINED_HERE[generator])
    if not Path(path).is_file():
        raise RuntimeError(f"{generator}: training exported {out}, but its generator config reads {path}")
    print(f"[done]    {generator} trained in {summary['total_seconds']} s: {out}", flush=True)


def annotation_key(gcfg: DictConfig, corpus: Corpus) -> str:
    """Hash of the generator's resolved config, the bytes of every file it names, and the corpus path."""
    values = to_container(gcfg.generator)
    files = {k: sha256_file(Path(v)) for k, v in values.items() if isinstance(v, str) and v and Path(v).is_file()}
    blob = json.dumps({"generator": values, "files": files, "corpus": str(corpus.pairs)}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


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
    if not _complete(out):
        options = AnnotateOptions(batch_size=int(gcfg.profile.batch_size), num_workers=int(gcfg.profile.num_workers),
                                  on_error="skip")
        start = time.perf_counter()
        prov = annotate_with_config(gcfg, corpus.pairs, out, options)
        if prov is None or not prov.get("complete", False):
            raise RuntimeError(f"{out}: the annotation did not complete; run the same command again")
        log.info("%s: corpus annotated in %.1f s -> %s", name, time.perf_counter() - start, out)
    prov = json.loads((out / "provenance.json").read_text())
    info = {"source": str(out), "pairs": prov["counts"]["annotated"], "skipped": prov["counts"]["skipped"],
            "pairs_per_s": prov["timing"]["pairs_per_s"], "weights_files": prov.get("generator", {}).get("weights_files")}
    return list_iml(listing), info


def _complete(out: Path) -> bool:
    """An annotation folder whose merge saw every pair done (a partial merge also writes iml.json)."""
    path = out / "provenance.json"
    return path.is_file() and bool(json.loads(path.read_text()).get("complete"))


def mask_quality(items: list[ImlItem], truth: dict[str, Path]) -> dict[str, Any]:
    """Per-image F1 / IoU of a generator's corpus masks against the corpus's ground truth (headline rule)."""
    pixel = PixelMetrics()
    scored = [it for it in items if it.id in truth and it.mask is not None]
    for start in range(0, len(scored), 64):
        chunk = scored[start:start + 64]
        pred = torch.stack([torch.from_numpy(load_mask(it.mask)) for it in chunk])[:, None].float()
        gt = torch.stack([torch.from_numpy(load_mask(truth[it.id])) for it in chunk])[:, None]
        pixel.update(pred, gt, torch.ones_like(gt, dtype=torch.bool))
    if not scored:
        return {"scored_pairs": 0}
    m = pixel.compute()
    return {"scored_pairs": len(scored), **{k: m[k] for k in ("f1_per_image", "iou_per_image", "f1_pooled")}}


def training_data(cfg: DictConfig, name: str, key: str, items: list[ImlItem], corpus: Corpus,
                  source: str) -> TrainData:
    fraction = float(cfg.train.val_fraction)
    train = [it for it in items if not corpus.is_val(it.id, fraction)]
    val = [it for it in items if corpus.is_val(it.id, fraction)]
    if not train:
        raise ValueError(f"{source}: no training pairs left after holding out the validation split")
    how = "the corpus's split=val pairs" if corpus.split else f"a {fraction:.0%} id-hash share of the corpus"
    return TrainData(f"run-{name}-{key}", source, train, val, f"{len(val)} pairs ({how}) with {name}'s own masks")


# ---------------------------------------------------------------------------------------------- cells


def git_commit() -> str:
    """HEAD of the repository this package lives in, '+dirty' when tracked files outside ``results/`` (which
    runs rewrite) changed; 'unknown' outside git."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ":(top)",
                                ":(top,exclude)results"], cwd=here, capture_output=True, text=True, check=True,
                               timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def training_key(cfg: DictConfig) -> str:
    """Hash of what shapes a trained detector (its config, the training settings, the seed): a cell made under
    other settings lives in another run folder, so it is neither skipped as finished nor resumed."""
    train = {k: v for k, v in to_container(cfg.train).items() if k not in NOT_IN_FINGERPRINT}
    blob = json.dumps({"detector": to_container(cfg.detector), "train": train, "seed": cfg.seed}, sort_keys=True,
                      default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:8]


def cell_folder(cfg: DictConfig, generator: str, detector: str) -> Path:
    return Path(cfg.paths.results) / "runs" / generator / detector


def publish(cell: dict[str, Any], folder: Path, config_from: Path | None) -> None:
    """Copy a finished cell's small outputs into results/ (cell.json, metrics.csv, config.yaml)."""
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "cell.json", cell)
    rows = [{"generator": cell["generator"], "detector": cell["detector"], "dataset": d, **m}
            for d, m in cell["metrics"].items()]
    pd.DataFrame(rows).to_csv(folder / "metrics.csv", index=False)
    if config_from is not None and config_from.is_file():
        shutil.copyfile(config_from, folder / "config.yaml")


def run_cell(cfg: DictConfig, overrides: list[str], generator: str, detector: str, data: TrainData,
             sets: list[tuple[str, list[ImlItem]]], annotation: dict[str, Any], force: bool) -> tuple[str, dict]:
    """Train + test one detector on one generator's masks; ('skipped' | 'done', cell record)."""
    dcfg = compose([*overrides, f"generator={generator}", f"detector={detector}"], command="run")
    data = replace(data, name=f"{data.name}-{training_key(dcfg)}")
    folder = run_dir(dcfg, data.name, detector)
    done = folder / "cell.json"
    target = cell_folder(dcfg, generator, detector)
    test_geometry = f"{dcfg.train.test.geometry.mode}-{dcfg.train.test.geometry.size}"
    if done.is_file() and not force:
        cell = json.loads(done.read_text())
        if set(cell["metrics"]) == {name for name, _ in sets} and cell.get("test_geometry") == test_geometry:
            publish(cell, target, folder / "config.yaml")
            return "skipped", cell
        log.info("%s x %s: trained earlier, tested on other sets or geometry; testing again", generator, detector)
    start = time.perf_counter()
    summary = train_one(dcfg, detector, data, force=force)
    trained = time.perf_counter()
    checkpoint = Path(summary["checkpoint"])
    if not checkpoint.is_file():
        checkpoint = folder / "last.pt"
    if (target / "examples").is_dir():
        shutil.rmtree(target / "examples")
    metrics = evaluate_checkpoint(dcfg, detector, checkpoint, sets, examples=target / "examples")
    cell = {
        "generator": generator, "detector": detector, "profile": dcfg.profile.name,
        "overrides": [o for o in overrides if not o.startswith("profile=")], "metrics": metrics,
        "train": {k: summary.get(k) for k in ("train_source", "val_source", "n_train", "n_val", "geometry",
                                              "device", "world_size", "effective_batch_size", "skipped_items")},
        "result": {k: summary["result"].get(k) for k in ("steps", "epochs", "best", "nonfinite_steps")},
        "checkpoint": str(checkpoint), "annotation": annotation, "git_commit": git_commit(),
        "torch_threads": torch.get_num_threads(),  # part of the numerics on CPU: other counts, other last bits
        "seconds": {"train_this_invocation": round(trained - start, 1),
                    "test": round(time.perf_counter() - trained, 1)},
        "test_geometry": test_geometry,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    save_resolved(dcfg, folder)
    write_json(done, cell)
    publish(cell, target, folder / "config.yaml")
    return "done", cell


def save_test_examples(cfg: DictConfig, sets: list[tuple[str, list[ImlItem]]]) -> None:
    """The image and truth behind each set's example prediction (first manipulated item), for the figures."""
    from benchmarks.data.transforms import Geometry
    from benchmarks.runners.eval_detector import example_index
    from benchmarks.runners.train_detector import EpochSamples

    test = cfg.train.test
    folder = Path(cfg.paths.results) / "runs" / "_examples" / "test"
    folder.mkdir(parents=True, exist_ok=True)
    for name, items in sets:
        ds = EpochSamples(items, Geometry(test.geometry.mode, int(test.geometry.size)), name=name, train=False,
                          seed=int(cfg.seed))
        index = example_index(ds)
        if index is None:
            continue
        sample = ds[index]
        save_png(folder / f"{name}_image.png", _uint8(sample["image"].permute(1, 2, 0).numpy()))
        save_png(folder / f"{name}_truth.png", sample["mask"][0].numpy() > 0.5)


def save_corpus_examples(cfg: DictConfig, generator: str, items: list[ImlItem], corpus: Corpus) -> None:
    """A few corpus pairs (the first validation ids): G's mask, and once the edited image and its truth."""
    val = sorted(it.id for it in items if corpus.is_val(it.id, float(cfg.train.val_fraction)))[:CORPUS_EXAMPLES]
    by_id = {it.id: it for it in items}
    root = Path(cfg.paths.results) / "runs"
    for item_id in val:
        item = by_id[item_id]
        if item.mask is not None:
            save_png(root / generator / "corpus_examples" / f"{item_id}.png", load_mask(item.mask))
        shared = root / "_examples" / "corpus"
        if not (shared / f"{item_id}_image.png").is_file():
            save_png(shared / f"{item_id}_image.png", load_image(item.image))
            if item_id in corpus.truth:
                save_png(shared / f"{item_id}_truth.png", load_mask(corpus.truth[item_id]))


def _uint8(array: np.ndarray) -> np.ndarray:
    """[0, 1] floats as 8-bit."""
    return (np.clip(array, 0, 1) * 255.0 + 0.5).astype(np.uint8)


# ---------------------------------------------------------------------------------------------- command


def run_command(args: argparse.Namespace) -> int:
    from benchmarks.runners.report import leaderboard_and_plots

    check_option("profile", args.profile)
    overrides = [f"profile={args.profile}", *args.overrides]
    cfg = compose(overrides, command="run")
    generators = run_generators(args.generator, cfg)
    detectors = available(expand("detector", args.detector, cfg), args.detector)
    corpus = open_corpus(cfg, args.pairs)
    sets = resolve_test_sets(cfg, args.dataset, overrides)
    save_test_examples(cfg, sets)
    log.info("bench run: generators %s x detectors %s on %s; test sets %s", generators, detectors, corpus.pairs,
             [n for n, _ in sets])
    start = time.perf_counter()
    counts = {"done": 0, "skipped": 0}
    for generator in generators:
        gcfg = compose([*overrides, f"generator={generator}"], command="run")
        ensure_weights(gcfg, generator)
        key = annotation_key(gcfg, corpus) if generator != "oracle" else "truth"
        items, annotation = annotate_corpus(gcfg, generator, corpus, key)
        annotation = {**annotation, "key": key, "quality_vs_truth": mask_quality(items, corpus.truth)}
        write_json(Path(cfg.paths.results) / "runs" / generator / "annotation.json", annotation)
        save_corpus_examples(cfg, generator, items, corpus)
        data = training_data(cfg, generator, key, items, corpus, annotation["source"])
        for detector in detectors:
            status, cell = run_cell(cfg, overrides, generator, detector, data, sets, annotation, args.force)
            counts[status] += 1
            mean = np.mean([m["f1_per_image"] for m in cell["metrics"].values()])
            print(f"[{status}] {generator} x {detector}: mean F1 {mean:.3f} over {len(cell['metrics'])} test sets "
                  f"({time.perf_counter() - start:.0f} s so far)", flush=True)
    print(f"bench run: {counts['done']} cell(s) run, {counts['skipped']} finished earlier, "
          f"{time.perf_counter() - start:.0f} s")
    return leaderboard_and_plots(cfg)
