"""Mask generators against ground truth: one generator on one pairs dataset, and the whole comparison that
``bench eval-generators`` writes (leaderboards, per-pair scores, a qualitative figure, counts).

Outputs (``<paths.results>``): ``leaderboards/<tag>.csv`` and ``.md`` (one row per generator, columns
dataset x metric plus the mean over datasets), ``leaderboards/<tag>.config.yaml`` (the resolved config),
``leaderboards/<tag>.report.json`` (counts per dataset, skips per generator and dataset, timing),
``leaderboards/<tag>.skipped.jsonl`` (with ``eval.on_error=skip``: one line per generator and pair it
left out, rewritten by every run), per-pair scores ``generators/per_pair/<dataset>.csv`` and a
qualitative figure ``figures/<tag>_qualitative.png``.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.utils.data
from omegaconf import DictConfig

from benchmarks.builders import generator_from_config
from benchmarks.config import compose, typed
from benchmarks.data.errors import DataError, SkipLog
from benchmarks.data.loading import SafeDataset, check_on_error, pad_collate
from benchmarks.data.manifest import PairsDataset
from benchmarks.data.transforms import Geometry
from benchmarks.distributed import device_for
from benchmarks.evaluation.loop import Prediction, Screen, evaluate, valid_extent
from benchmarks.generators.base import MaskGenerator
from benchmarks.io import write_csv
from benchmarks.metrics.suite import localization_suite
from benchmarks.paths import config_roots, portable_tree

log = logging.getLogger(__name__)

METRICS = ("f1_per_image", "iou_per_image", "f1_pooled", "f1_best_thr_oracle", "pixel_auc_pooled")
SHOW_PER_DATASET = 2  # pairs per dataset in the qualitative figure
SKIP_HINT = "eval.on_error=skip counts it and goes on"


@dataclass(frozen=True)
class EvalConfig:
    """The ``eval`` node of configs/config.yaml: how generators are scored."""

    batch_size: int = 16
    num_workers: int = 0
    on_error: str = "raise"
    geometry: Geometry = Geometry("none", 256)

    def __post_init__(self) -> None:
        check_on_error(self.on_error, "eval.on_error")


@dataclass
class DatasetEval:
    metrics: dict[str, float]
    rows: list[dict[str, Any]]
    shown: dict[str, torch.Tensor] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def size_screen(generator: MaskGenerator, files: dict[str, Path]) -> Screen:
    """The pairs of a batch smaller than the generator takes (``MaskGenerator.min_side``), as errors naming
    the edited image (`files`: id -> its file)."""

    def screen(batch: dict[str, Any]) -> list[tuple[int, DataError]]:
        out = []
        for i, valid in enumerate(batch["valid"]):
            h, w = valid_extent(valid)
            if min(h, w) < generator.min_side:
                path = files.get(batch["id"][i])
                out.append((i, DataError(f"{path}: {w}x{h} px (WxH) is smaller than generator {generator.info.name!r} "
                                         f"takes ({generator.min_side} px a side)", path=path, reason="too-small")))
        return out

    return screen


def evaluate_generator(generator: MaskGenerator, dataset: PairsDataset, *, batch_size: int = 16,
                       num_workers: int = 0, on_error: str = "raise", skip_log: SkipLog | None = None,
                       show_ids: set[str] = frozenset(), progress: bool = True) -> DatasetEval:
    """Run one generator over one pairs dataset (ground truth required) and score it; per-pair rows keep
    the manifest's scalar metadata (e.g. ``side_effect``)."""
    loader = torch.utils.data.DataLoader(SafeDataset(dataset, on_error), batch_size=batch_size, shuffle=False,
                                         num_workers=num_workers, collate_fn=pad_collate)
    rows: list[dict[str, Any]] = []
    shown: dict[str, torch.Tensor] = {}
    resized = 0
    meta = {r.id: r.meta for r in dataset.records}

    quality: dict[str, float] = {}  # per pair, from the generator's own score (MaskGenerator.generate_scored)

    def predict(batch: dict[str, Any]) -> Prediction:
        scored = generator.generate_scored(batch["original"], batch["image"], batch["instruction"],
                                           truth=batch["mask"])
        quality.update(zip(batch["id"], scored.quality.cpu().tolist()))
        return Prediction(scored.mask.cpu())

    def collect(batch: dict[str, Any], prediction: Prediction, per: dict[str, torch.Tensor]) -> None:
        nonlocal resized
        resized += int(batch["original_resized"].sum())
        for i, item_id in enumerate(batch["id"]):
            rows.append({"id": item_id, "f1": _num(per["f1"][i]), "iou": _num(per["iou"][i]),
                         "manipulated": bool(per["manipulated"][i]), "quality": round(quality.pop(item_id), 6),
                         **{k: v for k, v in meta[item_id].items() if isinstance(v, (str, int, float, bool))}})
            if item_id in show_ids:
                shown[item_id] = prediction.mask[i, 0]

    result = evaluate(loader, predict, localization_suite(), on_error=on_error, skip_log=skip_log, hint=SKIP_HINT,
                      screen=size_screen(generator, {r.id: r.edited for r in dataset.records}), on_batch=collect, desc=f"{generator.info.name} | {dataset.name}",
                      progress=progress)
    counts = {"pairs": result.items, "skipped": len(result.skipped), "original_resized": resized,
              "excluded_empty_gt": result.metrics["n_excluded_empty_gt"]}
    return DatasetEval(result.metrics, rows, shown, counts, result.skipped)


def _num(x: torch.Tensor) -> float | None:
    v = float(x)
    return None if math.isnan(v) else round(v, 6)


# ---------------------------------------------------------------------------------------------- the comparison


def run_eval(cfg: DictConfig, generators: list[str], datasets: list[tuple[str, Path]], tag: str,
             overrides: list[str], progress: bool = True, skip_untrained: bool = False) -> dict[str, Any]:
    """Every generator on every dataset; writes the outputs listed in the module docstring and returns
    ``{"table", "report", "paths"}``. `skip_untrained`: a learned generator without a checkpoint is left
    out with a warning instead of failing the run."""
    from benchmarks.reporting.leaderboard import write_generator_leaderboard
    from benchmarks.reporting.qualitative import generator_grid

    ecfg = typed(EvalConfig, cfg.eval, "eval")
    device = device_for(cfg.device)
    results_dir = Path(cfg.paths.results)
    data = {name: PairsDataset(path, ecfg.geometry, require_mask=True, name=name) for name, path in datasets}
    show = {name: {r.id for r in ds.records[:SHOW_PER_DATASET]} for name, ds in data.items()}
    skip_path = results_dir / "leaderboards" / f"{tag}.skipped.jsonl"
    skip_path.unlink(missing_ok=True)  # this run's list, not every run's
    table: dict[str, dict[str, float]] = {}
    per_pair: dict[str, list[dict[str, Any]]] = {name: [] for name in data}
    shown: dict[str, dict[str, torch.Tensor]] = {}
    skipped_ids: dict[str, set[str]] = {name: set() for name in data}
    report: dict[str, Any] = {"device": str(device), "geometry": ecfg.geometry.tag, "datasets": {}, "generators": {},
                              "skipped": {}}
    for gname in generators:
        try:
            generator = generator_from_config(compose([*overrides, f"generator={gname}"])).to(device).eval()
        except FileNotFoundError as exc:  # a learned generator that was never trained
            if not skip_untrained:
                raise
            log.warning("generator %s left out: %s", gname, exc)
            continue
        start, n_pairs = time.perf_counter(), 0
        for dname, ds in data.items():
            skip_log = SkipLog(skip_path if ecfg.on_error == "skip" else None,
                               fields={"generator": gname, "dataset": dname})
            result = evaluate_generator(generator, ds, batch_size=ecfg.batch_size, num_workers=ecfg.num_workers,
                                        on_error=ecfg.on_error, skip_log=skip_log, show_ids=show[dname],
                                        progress=progress)
            for metric in METRICS:
                table.setdefault(gname, {})[f"{dname}/{metric}"] = result.metrics[metric]
            per_pair[dname] += [{"generator": gname, **row} for row in result.rows]
            shown.setdefault(gname, {}).update(result.shown)
            skipped_ids[dname] |= {item_id for item_id, _ in result.skipped}
            if skip_log.total:
                report["skipped"].setdefault(gname, {})[dname] = skip_log.summary()
            report["datasets"][dname] = {**result.counts, "pairs": len(ds), "skipped": len(skipped_ids[dname]),
                                         "path": str(ds.folder)}
            n_pairs += result.counts["pairs"]
            log.info("%s on %s: F1 %.3f IoU %.3f (per image, thr 0.5, %d manipulated)", gname, dname,
                     result.metrics["f1_per_image"], result.metrics["iou_per_image"], result.metrics["n_manipulated"])
        seconds = time.perf_counter() - start
        report["generators"][gname] = {"info": generator.info.summary, "paper": generator.info.paper,
                                       "reads_truth": bool(generator.needs_truth),
                                       "weights": generator.info.weights,
                                       "seconds": round(seconds, 2), "pairs_per_s": round(n_pairs / seconds, 2),
                                       "counters": generator.counters()}  # e.g. registration fallbacks
        for metric in METRICS:
            values = [table[gname][f"{d}/{metric}"] for d in data]
            table[gname][f"mean/{metric}"] = sum(values) / len(values)
    report = portable_tree(report, config_roots(cfg.paths))
    paths = write_generator_leaderboard(table, list(data), results_dir, tag, cfg, report,
                                        [{**row, "dataset": d} for d, rows in per_pair.items() for row in rows])
    for name, rows in per_pair.items():
        paths.append(write_csv(results_dir / "generators" / "per_pair" / f"{name}.csv", rows))
    paths.append(generator_grid(data, shown, results_dir / "figures" / f"{tag}_qualitative.png"))
    if skip_path.is_file():
        paths.append(skip_path)
    return {"table": table, "report": report, "paths": [str(p) for p in paths]}
