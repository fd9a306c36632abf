"""`bench eval-generators`: score mask generators against ground-truth masks, write leaderboards.

Outputs (``<paths.results>``): ``leaderboards/<tag>.csv`` and ``.md`` (one row per generator, columns
dataset x metric plus the mean over datasets), ``leaderboards/<tag>.config.yaml`` (the resolved config),
``leaderboards/<tag>.report.json`` (counts: pairs, skipped, excluded all-zero masks, resized originals,
timing), per-pair scores ``generators/per_pair/<dataset>.csv`` and a qualitative figure
``figures/<tag>_qualitative.png``.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.utils.data
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from benchmarks.config import check_option, compose, expand
from benchmarks.data.errors import SkipLog
from benchmarks.data.loading import SafeDataset, pad_collate, record_skips
from benchmarks.data.manifest import PairsDataset
from benchmarks.data.transforms import Geometry
from benchmarks.generators.base import MaskGenerator, create_generator, list_generators
from benchmarks.metrics import BestThresholdF1, PixelAUC, PixelMetrics

log = logging.getLogger(__name__)

METRICS = ("f1_per_image", "iou_per_image", "f1_pooled", "f1_best_thr_oracle", "pixel_auc_pooled")
HEADLINE = ("f1_per_image", "iou_per_image")
SHOW_PER_DATASET = 2  # pairs per dataset in the qualitative figure


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def generator_from_config(cfg: DictConfig) -> MaskGenerator:
    params = {k: v for k, v in OmegaConf.to_container(cfg.generator, resolve=True).items() if k != "name"}
    return create_generator(cfg.generator.name, **params)


@dataclass
class DatasetEval:
    metrics: dict[str, float]
    rows: list[dict[str, Any]]
    shown: dict[str, torch.Tensor] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)


def evaluate(generator: MaskGenerator, dataset: PairsDataset, *, batch_size: int = 16, num_workers: int = 0,
             on_error: str = "raise", skip_log: SkipLog | None = None, show_ids: set[str] = frozenset(),
             progress: bool = True) -> DatasetEval:
    """Run one generator over one pairs dataset (ground truth required) and score it."""
    skip_log = skip_log if skip_log is not None else SkipLog()
    loader = torch.utils.data.DataLoader(SafeDataset(dataset, on_error), batch_size=batch_size, shuffle=False,
                                         num_workers=num_workers, collate_fn=pad_collate)
    pixel, best, auc = PixelMetrics(), BestThresholdF1(), PixelAUC()
    rows: list[dict[str, Any]] = []
    shown: dict[str, torch.Tensor] = {}
    counts = {"pairs": 0, "skipped": 0, "original_resized": 0}
    meta = {r.id: r.meta for r in dataset.records}
    for batch in tqdm(loader, desc=f"{generator.info.name} | {dataset.name}", unit="batch", disable=not progress,
                      leave=False):
        counts["skipped"] += record_skips(batch, skip_log)
        if "image" not in batch:
            continue
        truth = batch["mask"]
        scored = generator.generate_scored(batch["original"], batch["image"], batch["instruction"], truth=truth)
        pred, quality = scored.mask.cpu(), scored.quality.cpu()
        per = pixel.update(pred, truth, batch["valid"])
        best.update(pred, truth, batch["valid"])
        auc.update(pred, truth, batch["valid"])
        counts["pairs"] += len(batch["id"])
        counts["original_resized"] += int(batch["original_resized"].sum())
        for i, item_id in enumerate(batch["id"]):
            rows.append({"id": item_id, "f1": _num(per["f1"][i]), "iou": _num(per["iou"][i]),
                         "manipulated": bool(per["manipulated"][i]), "quality": _num(quality[i]),
                         **{k: v for k, v in meta[item_id].items() if isinstance(v, (str, int, float, bool))}})
            if item_id in show_ids:
                shown[item_id] = pred[i, 0]
    metrics = {**pixel.compute(), **best.compute(), **auc.compute()}
    counts["excluded_empty_gt"] = metrics["n_excluded_empty_gt"]
    return DatasetEval(metrics, rows, shown, counts)


def _num(x: torch.Tensor) -> float | None:
    v = float(x)
    return None if math.isnan(v) else round(v, 6)


def resolve_datasets(cfg: DictConfig, choice: str, overrides: list[str]) -> list[tuple[str, Path]]:
    """(name, pairs folder) for `--dataset`: config names, 'all', or a folder path."""
    from benchmarks.runners.data import dataset_root

    if Path(choice).expanduser().is_dir() or "/" in choice:
        path = Path(choice).expanduser()
        return [(path.name or "pairs", path)]
    out = []
    for name in expand("dataset", choice, cfg):
        ds = compose([*overrides, f"dataset={name}"]).dataset
        if ds.source == "synth":
            out.append((name, dataset_root(cfg, ds, overrides)))
        elif ds.source == "pairs":
            out.append((name, Path(ds.root)))
        else:
            raise ValueError(f"dataset {name!r} is an IML dataset (source={ds.source}); generators need pairs "
                             "(original, edited, instruction) with masks: a pairs-manifest folder or a synth benchmark")
    return out


def run_eval(cfg: DictConfig, generators: list[str], datasets: list[tuple[str, Path]], tag: str,
             overrides: list[str], progress: bool = True, skip_untrained: bool = False) -> dict[str, Any]:
    device = resolve_device(cfg.device)
    results_dir = Path(cfg.paths.results)
    geometry = Geometry(cfg.eval.geometry.mode, cfg.eval.geometry.size)
    data = {name: PairsDataset(path, geometry, require_mask=True, name=name) for name, path in datasets}
    show = {name: {r.id for r in ds.records[:SHOW_PER_DATASET]} for name, ds in data.items()}
    skip_log = SkipLog(results_dir / "leaderboards" / f"{tag}.skipped.jsonl" if cfg.eval.on_error == "skip" else None)
    table: dict[str, dict[str, float]] = {}
    per_pair: dict[str, list[dict[str, Any]]] = {name: [] for name in data}
    shown: dict[str, dict[str, torch.Tensor]] = {}
    report: dict[str, Any] = {"device": str(device), "geometry": geometry.tag, "datasets": {}, "generators": {}}
    for gname in generators:
        gcfg = compose([*overrides, f"generator={gname}"])
        try:
            generator = generator_from_config(gcfg).to(device).eval()
        except FileNotFoundError as exc:  # a learned generator that was never trained
            if not skip_untrained:
                raise
            print(f"[missing] generator {gname}: {exc}; skipped")
            continue
        start = time.perf_counter()
        n_pairs = 0
        for dname, ds in data.items():
            result = evaluate(generator, ds, batch_size=cfg.eval.batch_size, num_workers=cfg.eval.num_workers,
                              on_error=cfg.eval.on_error, skip_log=skip_log, show_ids=show[dname], progress=progress)
            for metric in METRICS:
                table.setdefault(gname, {})[f"{dname}/{metric}"] = result.metrics[metric]
            per_pair[dname] += [{"generator": gname, **row} for row in result.rows]
            shown.setdefault(gname, {}).update(result.shown)
            report["datasets"][dname] = {**result.counts, "path": str(ds.folder)}
            n_pairs += result.counts["pairs"]
            log.info("%s on %s: F1 %.3f IoU %.3f (per image, thr 0.5, %d manipulated)", gname, dname,
                     result.metrics["f1_per_image"], result.metrics["iou_per_image"], result.metrics["n_manipulated"])
        seconds = time.perf_counter() - start
        report["generators"][gname] = {"info": generator.info.summary, "paper": generator.info.paper,
                                       "weights": generator.info.weights,
                                       "seconds": round(seconds, 2), "pairs_per_s": round(n_pairs / seconds, 2),
                                       "counters": generator.counters()}  # e.g. registration fallbacks
        for metric in METRICS:
            values = [table[gname][f"{d}/{metric}"] for d in data]
            table[gname][f"mean/{metric}"] = sum(values) / len(values)
    report["skipped"] = skip_log.summary()
    from benchmarks.reporting.leaderboard import write_generator_leaderboard
    from benchmarks.reporting.qualitative import generator_grid

    paths = write_generator_leaderboard(table, list(data), results_dir, tag, cfg, report,
                                        [row for rows in per_pair.values() for row in rows])
    for name, rows in per_pair.items():
        out = results_dir / "generators" / "per_pair" / f"{name}.csv"
        _write_csv(out, rows)
        paths.append(out)
    figure = generator_grid(data, shown, results_dir / "figures" / f"{tag}_qualitative.png")
    paths.append(figure)
    return {"table": table, "report": report, "paths": [str(p) for p in paths]}


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    import pandas as pd

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    pd.DataFrame(rows).to_csv(tmp, index=False)
    tmp.replace(path)


def eval_generators_command(args: argparse.Namespace) -> int:
    check_option("profile", args.profile)
    overrides = [f"profile={args.profile}", *args.overrides]
    cfg = compose(overrides, command="eval-generators")
    available = set(list_generators())
    generators = []
    for name in expand("generator", args.generator, cfg):
        if name in available:
            generators.append(name)
        elif args.generator == "all":
            print(f"[missing] generator {name}: not implemented yet; skipped")
        else:
            raise ValueError(f"generator {name!r} is not implemented yet; available: {sorted(available)}")
    datasets = resolve_datasets(cfg, args.dataset, overrides)
    tag = args.tag or ("generators" if args.dataset == "all" else "generators_" + "_".join(n for n, _ in datasets))
    out = run_eval(cfg, generators, datasets, tag, overrides, skip_untrained=args.generator == "all")
    from benchmarks.reporting.leaderboard import headline_markdown

    print(headline_markdown(out["table"], [n for n, _ in datasets]))
    print("\n".join(out["paths"]))
    return 0
