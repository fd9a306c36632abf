"""SIGMA's ablations (``bench train-sigma --variant ablations``): every variant trained on one cached data
bank, scored with the training-free baselines beside them.

Rows: the full model; no text prior; one-way FiLM instead of bidirectional refinement; Stage I only;
Stage II without each of its parts; ``grounding_only``; the minimal learned-differencing reference (no text,
no refinement: what SIGMA's distinctive parts must beat); and the training-free baselines for reference.
Every row is scored on the profile's test benchmarks and on the groups of :data:`EXTRA_SETS` (the val-photo
sets where choices are made, the subtle split, the holdout set and the generalization set written by other
edit code), overall and split by whether a pair carries a side-effect edit. Learned rows are scored on cached float32 backbone features of the test
pairs, the same numbers the generator path computes (the full row is checked against it in the tests).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig

from benchmarks.builders import generator_from_config
from benchmarks.config import compose, save_resolved
from benchmarks.data.datasets import pair_datasets
from benchmarks.data.manifest import PairsDataset
from benchmarks.data.transforms import Geometry
from benchmarks.distributed import device_for
from benchmarks.evaluation.generators import evaluate_generator
from benchmarks.evaluation.loop import Prediction, evaluate
from benchmarks.io import atomic_write, write_csv, write_json
from benchmarks.metrics import PixelMetrics
from benchmarks.metrics.suite import MetricSuite, SlicedSuite
from benchmarks.paths import config_roots, portable_tree
from benchmarks.sigma_training.bank import FeatureBank, load_pairs
from benchmarks.sigma_training.data import backbone_path, bank_key, prepare_data
from benchmarks.sigma_training.inputs import FAMILIES, data_config
from benchmarks.sigma_training.export import export, grounding_export
from benchmarks.sigma_training.stages import VARIANTS, slug, train_variant

log = logging.getLogger(__name__)

BASELINES = ("feature_diff", "pixel_diff", "pixel_diff_otsu", "aligned_diff", "aligned_semantic")
# column -> the datasets it averages, besides the five test benchmarks: val-photo sets first (choices are judged
# there), then sets that were never used for a choice
EXTRA_SETS: dict[str, tuple[str, ...]] = {
    "val": ("synth_val",), "subtle val": ("synth_subtle_val",), "subtle": ("synth_subtle",),
    "holdout": ("synth_holdout",), "general": tuple(f"synth_general_{f}" for f in FAMILIES)}


@dataclass
class TestSet:
    name: str
    bank: FeatureBank
    orig: list[int]
    edit: list[int]
    masks: torch.Tensor
    instruction: list[str]
    side_effect: list[bool]


def test_sets(cfg: DictConfig, datasets: list[tuple[str, Path]], device: torch.device) -> list[TestSet]:
    from sigma.backbone import FrozenBackbone

    backbone = FrozenBackbone(cfg.sigma.model.backbone, pretrained_path=backbone_path(cfg)).to(device)
    out = []
    for name, folder in datasets:
        records, originals, edited, masks, _ = load_pairs(folder, with_masks=True)
        bank = FeatureBank(dtype=torch.float32)
        o = bank.add(originals, backbone, device, desc=f"features: {name} originals")
        e = bank.add(edited, backbone, device, desc=f"features: {name} edited")
        out.append(TestSet(name, bank, o, e, masks, [r.instruction for r in records],
                           [bool(r.meta.get("side_effect", False)) for r in records]))
    return out


SLICES = {"all": lambda inputs: torch.ones(len(inputs["side_effect"]), dtype=torch.bool),
          "no_side_effect": lambda inputs: ~inputs["side_effect"], "side_effect": lambda inputs: inputs["side_effect"]}


def feature_batches(ts: TestSet, batch: int = 32):
    """A test set's pairs as batches of bank indices with their truth and side-effect flags."""
    for i in range(0, len(ts.edit), batch):
        idx = list(range(i, min(i + batch, len(ts.edit))))
        yield {"idx": idx, "mask": ts.masks[idx].float(), "side_effect": torch.tensor([ts.side_effect[j] for j in idx])}


@torch.no_grad()
def score_net(net, text, sets: list[TestSet], device: torch.device, batch: int = 32) -> dict[str, dict[str, float]]:
    """Per dataset: F1/IoU (per image, thr 0.5) overall, on pairs without and with side effects."""
    results = {}
    for ts in sets:
        def predict(b: dict, ts: TestSet = ts) -> Prediction:
            idx = b["idx"]
            fo = [f.to(device) for f in ts.bank.features([ts.orig[j] for j in idx])] if net.cfg.difference else None
            fe = [f.to(device) for f in ts.bank.features([ts.edit[j] for j in idx])]
            tokens = valid = None
            if net.cfg.use_text:
                tokens, valid = text([ts.instruction[j] for j in idx], device)
            images = ts.bank.pixels([ts.orig[j] for j in idx]).to(device), ts.bank.pixels([ts.edit[j] for j in idx]).to(device)
            out = net(fo, fe, tokens, valid, *images, out_size=b["mask"].shape[-2:])
            return Prediction(torch.sigmoid(out["mask_logits"].float()).cpu())

        suite = SlicedSuite(SLICES, lambda: MetricSuite({"pixel": PixelMetrics()}))
        metrics = evaluate(feature_batches(ts, batch), predict, suite).metrics
        results[ts.name] = {f"{k}/{m}": metrics[f"{k}/{m}"] for k in SLICES for m in ("f1_per_image", "iou_per_image")}
    return results


def score_generator(cfg: DictConfig, name: str, datasets: list[tuple[str, Path]], overrides: list[str]) -> dict:
    """A training-free baseline's rows: means of its per-pair scores, overall and by side effect."""
    gen = generator_from_config(compose([*overrides, f"generator={name}"])).to(device_for(cfg.device)).eval()
    results = {}
    for dname, folder in datasets:
        ds = PairsDataset(folder, Geometry("none"), require_mask=True, name=dname)
        res = evaluate_generator(gen, ds, batch_size=16, progress=False)
        row = {}
        for key, keep in (("all", lambda r: True), ("no_side_effect", lambda r: not r.get("side_effect")),
                          ("side_effect", lambda r: bool(r.get("side_effect")))):
            rows = [r for r in res.rows if keep(r) and r["f1"] is not None]
            for m, col in (("f1_per_image", "f1"), ("iou_per_image", "iou")):
                row[f"{key}/{m}"] = sum(r[col] for r in rows) / len(rows) if rows else float("nan")
        results[dname] = row
    return results


ROWS = (*VARIANTS, *BASELINES)  # the table's rows, in its order


def pick_rows(names: list[str] | None) -> list[str]:
    """Rows named by their name or slug (``no_text_prior``), in the table's order; every row when None."""
    if not names:
        return list(ROWS)
    by_slug = {slug(r): r for r in ROWS}
    unknown = [n for n in names if n not in ROWS and n not in by_slug]
    if unknown:
        raise ValueError(f"--rows {unknown}: unknown; the rows are {[slug(r) for r in ROWS]}")
    wanted = {by_slug.get(n, n) for n in names}
    return [r for r in ROWS if r in wanted]


def cell_path(cfg: DictConfig, row: str) -> Path:
    """One row's scores: ``<results>/sigma/<profile>/ablations/<slug>.json`` (committed as rows finish)."""
    profile = str(cfg.profile.get("trained_models") or cfg.profile.name)
    return Path(cfg.paths.results) / "sigma" / profile / "ablations" / f"{slug(row)}.json"


def training_data_path(cfg: DictConfig) -> Path:
    """What the learned rows trained on (the data's facts, as the report prints them), kept beside the rows,
    so that a run that trains nothing (baseline rows only) still reports it."""
    return cell_path(cfg, "training data")


def run_ablations(cfg: DictConfig, overrides: list[str], rows: list[str] | None = None) -> Path:
    """Train and score the asked rows (every variant and baseline by default) on the one data bank, each
    row a cell reused when it was scored on the same data and sets, then the report over every row held.
    The bank is built only when a learned row is to train: its key comes from its inputs' hashes."""
    from sigma.text import TextEncoder

    device = device_for(cfg.device)
    t0 = time.perf_counter()
    data = None
    if data_config(cfg).source == "bank":
        data_key = bank_key(cfg)[0]
    else:  # the stream's key needs its sources opened and its autoencoder: prepare it
        data = prepare_data(cfg, device)
        data_key = data.info.get("cache_key")
    extra = [name for names in EXTRA_SETS.values() for name in names]
    datasets = pair_datasets(cfg, "all", overrides) + pair_datasets(cfg, ",".join(extra), overrides)
    names = [n for n, _ in datasets]
    key = {"data": data_key, "sets": names}
    sets = None
    text = None
    for name in pick_rows(rows):
        path = cell_path(cfg, name)
        if path.is_file() and json.loads(path.read_text()).get("key") == key:
            continue
        start = time.perf_counter()
        if name in VARIANTS:
            if data is None:
                data = prepare_data(cfg, device)
            if sets is None:
                sets = test_sets(cfg, datasets, device)
                text = TextEncoder(cfg.sigma.model.text_encoder, path=cfg.sigma.text_encoder_path)
            net, summary = train_variant(cfg, data, name, device)
            scores = score_net(net, text if net.cfg.use_text else None, sets, device)
            if name == "grounding_only":  # the baseline generator of the same name loads this export
                export(net, cfg, summary, grounding_export(cfg), data.info)
        else:
            scores = score_generator(cfg, name, datasets, overrides)
        write_json(path, {"row": name, "key": key, "scores": scores, "seconds": round(time.perf_counter() - start, 1)})
        log.info("%s: %s", name, {d: round(v["all/f1_per_image"], 3) for d, v in scores.items()})
    info_path = training_data_path(cfg)
    if data is not None:
        write_json(info_path, {"key": data_key, "info": data.info})
    held = json.loads(info_path.read_text()) if info_path.is_file() else {}
    info = held["info"] if held.get("key") == data_key else {"cache_key": data_key}
    cells = {r: json.loads(cell_path(cfg, r).read_text()) for r in ROWS if cell_path(cfg, r).is_file()}
    cells = {r: c for r, c in cells.items() if c.get("key") == key}
    table = {r: c["scores"] for r, c in cells.items()}
    timings = {r: c["seconds"] for r, c in cells.items()}
    out = write_report(cfg, table, names, timings, time.perf_counter() - t0, info,
                       missing=[r for r in ROWS if r not in table])
    save_resolved(cfg, out.parent, "sigma_ablations.config.yaml")
    return out


def _mean(values: list[float | None]) -> float:
    """NaN when any value is missing (a slice without pairs: NaN when scored, null in a cell read back)."""
    return sum(_number(v) for v in values) / len(values) if values else float("nan")


def _number(v: float | None) -> float:
    return float("nan") if v is None else v


def _fmt(v: float | None) -> str:
    v = _number(v)
    return "n/a" if v != v else f"{v:.3f}"


def write_report(cfg: DictConfig, table: dict, names: list[str], timings: dict, seconds: float, data_info: dict,
                 missing: list[str] | None = None) -> Path:
    """``<results>/leaderboards/sigma_ablations.{md,csv}``."""
    import pandas as pd

    extra = {group: [n for n in sets if n in names] for group, sets in EXTRA_SETS.items()}
    extra = {group: sets for group, sets in extra.items() if sets}
    tests = [n for n in names if not any(n in sets for sets in extra.values())]
    rows = []
    for variant, res in table.items():
        row = {"variant": variant}
        for d in names:
            for k, v in res[d].items():
                row[f"{d}/{k}"] = v
        for key in ("all", "no_side_effect", "side_effect"):
            for m in ("f1_per_image", "iou_per_image"):
                row[f"mean5/{key}/{m}"] = _mean([res[d][f"{key}/{m}"] for d in tests])
        for group, sets in extra.items():
            for m in ("f1_per_image", "iou_per_image"):
                row[f"{group}/all/{m}"] = _mean([res[d][f"all/{m}"] for d in sets])
        rows.append(row)
    frame = pd.DataFrame(rows).set_index("variant")
    out_dir = Path(cfg.paths.results) / "leaderboards"
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(out_dir / "sigma_ablations.csv", frame.round(6), index=True)
    head = ("| variant | " + " | ".join(f"{d} F1" for d in tests) + " | **mean F1** | **mean IoU** | " +
            " | ".join(f"{group} F1" for group in extra) + " | F1 no side effect (mean) | F1 with side effect (mean) |")
    lines = [head, "|---" * (len(tests) + len(extra) + 5) + "|"]
    for variant, res in table.items():
        r = frame.loc[variant]
        lines.append(f"| {variant} | " + " | ".join(_fmt(res[d]["all/f1_per_image"]) for d in tests) +
                     f" | **{_fmt(r['mean5/all/f1_per_image'])}** | **{_fmt(r['mean5/all/iou_per_image'])}** | " +
                     " | ".join(_fmt(r[f"{group}/all/f1_per_image"]) for group in extra) +
                     f" | {_fmt(r['mean5/no_side_effect/f1_per_image'])} | {_fmt(r['mean5/side_effect/f1_per_image'])} |")
    groups = "; ".join(f"`{group}`: {', '.join(sets)}" for group, sets in extra.items())
    md = "\n".join([
        "# SIGMA ablations", "",
        "Pixel F1 / IoU at threshold 0.5, averaged per image over manipulated images (valid pixels). `mean` is over the "
        "five synthetic test benchmarks. Further columns (F1, mean over their sets): " + groups + ". `val` and "
        "`subtle val` come from the val photos, where choices are judged; `subtle`, `holdout` and `general` (other "
        "photos, and for `general` other edit and round-trip code) were never used for a choice. The last two "
        "columns split the five benchmarks' pairs by whether they carry a side-effect edit the instruction does "
        "not mention.", "",
        *lines, "",
        *([f"Rows not run yet: {', '.join(missing)} (`bench train-sigma --variant ablations --rows "
           f"{','.join(slug(r) for r in missing)}`).", ""] if missing else []),
        "## Reproduce", "", f"```\nbench train-sigma --variant ablations --profile {cfg.profile.name}\n```", "",
        f"Resolved config: `sigma_ablations.config.yaml`; all columns: `sigma_ablations.csv`; each row's scores: "
        f"`{Path(cfg.paths.results).name}/{cell_path(cfg, 'x').parent.relative_to(Path(cfg.paths.results)).as_posix()}/<row>.json`. This run "
        f"{seconds / 60:.1f} min on {device_for(cfg.device)}; per-row training and scoring (s): {json.dumps(timings)}. "
        "Training data: "
        f"{json.dumps(portable_tree(data_info, config_roots(cfg.paths)), default=str)}", ""])
    return atomic_write(out_dir / "sigma_ablations.md", md)
