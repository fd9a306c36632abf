"""Choose the aligned baselines' thresholds and scales on a VALIDATION pairs folder (never a test benchmark).

    python -m benchmarks.perf.tune_baselines --dataset synth_val
    python -m benchmarks.perf.tune_baselines --dataset synth_val --noedit VAL_NOEDIT_FOLDER --max-fp 0.01
    python -m benchmarks.perf.tune_baselines --dataset VAL_PAIRS_FOLDER --label my_val --generator aligned_diff

``--dataset`` / ``--noedit`` take a pairs folder or a dataset config name (a synthetic set is built on first
use, as for ``bench eval-generators``). A dataset name whose pairs come from test or holdout photos is
refused (the profile's test benchmarks, ``synth_holdout``, ``synth_subtle``, and ``synth_noedit``, the
test pool's round-trip-only pairs: report false positives on it with ``benchmarks.perf.false_positives``,
but constrain the choice with round-trip-only pairs of val-pool photos).

For each generator it grid-searches the few parameters of :data:`GRIDS` on the folder's pairs (masks
required) and ranks them by the headline metric (pixel F1 at 0.5 per image, mean over manipulated pairs;
:class:`benchmarks.metrics.PixelMetrics`). Expensive stages are cached: registration once per pair (the
generators' registration config), then per value of each earlier stage (prefilter / tone / smoothing for
``aligned_diff``; backbone distances for ``aligned_semantic``); later stages run with exactly the functions
the generators call (:func:`benchmarks.generators.aligned.diff_mask`, ``semantic_mask``).

With ``--noedit`` (pairs whose only change is the editor round trip, empty masks) the best settings'
pooled false-positive rate there is reported, and with ``--max-fp`` settings above it are not chosen. A
setting must also find the contract's sanity edit (:mod:`benchmarks.generators.sanity`, which the registry
tests check for every generator), so a re-tune cannot write a config the tests reject.

Prints the best settings, the chosen values as YAML to paste into ``configs/generator/<name>.yaml`` (with
``chosen_on: <label>``), how the chosen mask-quality score ranks pairs (Spearman correlation with per-pair
F1; F1 with and without filtering at a few thresholds), and a check: the generator built with the chosen
values, run through the evaluation loop, must score what the sweep said. ``--json PATH`` writes every row.
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Callable
import logging
import math
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.data.manifest import PairsDataset
from benchmarks.generators.aligned import diff_mask, diff_score, semantic_mask, smoothed_scales
from benchmarks.generators.difference import noise_level
from benchmarks.generators.quality_filter import f1_with_and_without_filter
from benchmarks.generators.registration import RegistrationConfig, register, warp
from benchmarks.metrics import PixelMetrics
from benchmarks.metrics.false_positive import FalsePositiveRate

log = logging.getLogger(__name__)

# Stage order matters: earlier keys are cached across later ones.
GRIDS: dict[str, dict[str, list[Any]]] = {
    "aligned_diff": {
        "prefilter_sigma": [1.0, 2.0, 3.0],
        "tone": ["none", "global", "local"],
        "sigma": [1.0, 2.0],
        "k": [3.0, 4.0, 5.0],
        "floor": [3.0, 4.0, 6.0, 8.0],
        "morphology": [(0, 0), (1, 2), (2, 3)],   # (open_radius, close_radius)
    },
    "aligned_semantic": {
        "input_scale": [1.0],                      # 2.0 scored lower on the scratch suite at twice the cost
        "layer_weights": [(1.0, 1.0, 1.0), (1.0, 1.0, 0.0), (0.0, 1.0, 1.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0),
                          (0.0, 0.0, 1.0)],
        "sigma": [2.0, 4.0, 8.0],
        "threshold": [("otsu", 0.0), ("mad", 1.0), ("mad", 1.5), ("mad", 2.0), ("mad", 3.0)],   # (method, k)
        "floor": [0.3, 0.4, 0.5, 0.6, 0.7],
    },
}
QUALITY_THRESHOLDS = (0.25, 0.5, 0.75)
FIXED_MIN_AREA = 0.001  # aligned_diff's small-component cut, not swept


@dataclass
class Pair:
    """One registered pair, as the generators see it (float32 H,W,3 images in [0,1])."""

    id: str
    edited: np.ndarray
    warped: np.ndarray
    valid: np.ndarray
    truth: np.ndarray | None
    method: str
    cache: dict[Any, Any] = field(default_factory=dict)


def load_pairs(folder: Path, registration: RegistrationConfig, limit: int | None, need_mask: bool) -> list[Pair]:
    dataset = PairsDataset(folder, require_mask=need_mask)
    n = len(dataset) if limit is None else min(limit, len(dataset))
    pairs = []
    for i in range(n):
        s = dataset[i]
        edited = np.ascontiguousarray(s["image"].permute(1, 2, 0).numpy())
        original = np.ascontiguousarray(s["original"].permute(1, 2, 0).numpy())
        reg = register(original, edited, registration)
        warped, valid = warp(original, reg.matrix, edited.shape[:2])
        pairs.append(Pair(s["id"], edited, warped, valid, s["mask"][0].numpy() > 0.5, reg.method))
    return pairs


def _by_shape(pairs: list[Pair]) -> dict[tuple[int, int], list[int]]:
    groups: dict[tuple[int, int], list[int]] = {}
    for i, p in enumerate(pairs):
        groups.setdefault(p.edited.shape[:2], []).append(i)
    return groups


def f1_rows(pairs: list[Pair], masks: list[np.ndarray]) -> list[float | None]:
    """Per-pair headline F1 (None where the truth is empty), from the harness's own metric, one call per size."""
    out: list[float | None] = [None] * len(pairs)
    for idx in _by_shape(pairs).values():
        pred = torch.from_numpy(np.stack([np.asarray(masks[i], np.float32) for i in idx]))[:, None]
        truth = torch.from_numpy(np.stack([pairs[i].truth for i in idx]))[:, None]
        for i, v in zip(idx, PixelMetrics().update(pred, truth)["f1"].tolist()):
            out[i] = None if math.isnan(v) else v
    return out


def mean_f1(values: list[float | None]) -> float:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else float("nan")


def fp_rate(masks: list[np.ndarray]) -> float:
    metric = FalsePositiveRate()
    for m in masks:
        metric.update(torch.from_numpy(np.asarray(m, np.float32))[None, None])
    return metric.compute()["fp_rate_pooled"]


def add_noedit_fp(rows: list[dict[str, Any]], fp_of: Callable[[dict[str, Any]], float], top: int) -> None:
    """Score the no-edit false-positive rate of the ``top`` best rows by F1 (for the table; it costs as much
    as the sweep, so not for every row)."""
    for row in sorted(rows, key=lambda r: -r["f1"])[:top]:
        row.setdefault("fp_noedit", fp_of(row["params"]))


# ---------------------------------------------------------------------------------------------- aligned_diff


def _diff_scores(pairs: list[Pair], pre: float, tone: str,
                 sigma: float) -> list[tuple[np.ndarray, tuple[float, float]]]:
    out = []
    for p in pairs:
        score = diff_score(p.warped, p.edited, p.valid, pre, tone, sigma)
        out.append((score, noise_level(score, p.valid)))
    return out


def _diff_masks(pairs: list[Pair], scores: list[tuple[np.ndarray, tuple[float, float]]],
                params: dict[str, Any]) -> list[np.ndarray]:
    return [diff_mask(s, p.valid, params["k"], params["floor"], params["open_radius"], params["close_radius"],
                      params["min_area"], noise)[0] >= 0.5 for (s, noise), p in zip(scores, pairs)]


def sweep_diff(pairs: list[Pair]) -> list[dict[str, Any]]:
    grid = GRIDS["aligned_diff"]
    rows = []
    for pre, tone, sigma in itertools.product(grid["prefilter_sigma"], grid["tone"], grid["sigma"]):
        scores = _diff_scores(pairs, pre, tone, sigma)
        for k, floor, (o, c) in itertools.product(grid["k"], grid["floor"], grid["morphology"]):
            params = {"prefilter_sigma": pre, "tone": tone, "sigma": sigma, "k": k, "floor": floor,
                      "open_radius": o, "close_radius": c, "min_area": FIXED_MIN_AREA}
            rows.append({"params": params, "f1": mean_f1(f1_rows(pairs, _diff_masks(pairs, scores, params)))})
        log.info("aligned_diff: prefilter %.1f tone %s sigma %.1f done (%d settings)", pre, tone, sigma, len(rows))
    return rows


def diff_fp(noedit: list[Pair], params: dict[str, Any]) -> float:
    scores = _diff_scores(noedit, params["prefilter_sigma"], params["tone"], params["sigma"])
    return fp_rate(_diff_masks(noedit, scores, params))


def diff_quality(pairs: list[Pair], params: dict[str, Any]) -> tuple[list[float], list[float | None]]:
    from benchmarks.generators.quality import stability

    quality, masks = [], []
    for p in pairs:
        score = diff_score(p.warped, p.edited, p.valid, params["prefilter_sigma"], params["tone"], params["sigma"])
        soft, raw, _ = diff_mask(score, p.valid, params["k"], params["floor"], params["open_radius"],
                                 params["close_radius"], params["min_area"])
        quality.append(float(stability(torch.from_numpy(raw)[None, None])[0]))
        masks.append(soft >= 0.5)
    return quality, f1_rows(pairs, masks)


# ---------------------------------------------------------------------------------------------- aligned_semantic


def semantic_distances(pairs: list[Pair], generator: Any, batch: int = 16) -> None:
    """Cache each pair's per-scale distance maps (float32, 3 x H x W: about 0.8 MB per 256 px pair) at the
    generator's ``input_scale``, under ``cache[("dists", input_scale)]``."""
    key = ("dists", generator.input_scale)
    for idx in _by_shape(pairs).values():
        for start in range(0, len(idx), batch):
            group = [pairs[i] for i in idx[start:start + batch]]
            w = torch.from_numpy(np.stack([p.warped for p in group])).permute(0, 3, 1, 2)
            e = torch.from_numpy(np.stack([p.edited for p in group])).permute(0, 3, 1, 2)
            with torch.no_grad():
                dists = generator.layer_distances(w, e)
            for j, p in enumerate(group):
                p.cache[key] = torch.cat([d[j] for d in dists])


def _smoothed(pairs: list[Pair], idx: list[int], input_scale: float, sigma: float) -> list[torch.Tensor]:
    """The size group's per-scale maps smoothed at ``sigma``, cached on the group's first pair."""
    key = ("smoothed", tuple(idx), input_scale, sigma)
    first = pairs[idx[0]].cache
    if key not in first:
        for old in [k for k in first if isinstance(k, tuple) and k[0] == "smoothed"]:
            del first[old]  # one sigma at a time: the sweep runs sigma in the outer loop
        stacked = torch.stack([pairs[i].cache[("dists", input_scale)] for i in idx])  # (N,3,H,W)
        first[key] = smoothed_scales([stacked[:, j:j + 1] for j in range(stacked.shape[1])], sigma)
    return first[key]


def _semantic(pairs: list[Pair], params: dict[str, Any],
              with_quality: bool = False) -> tuple[list[np.ndarray], list[float | None]]:
    """Masks (and quality) of every pair, each size group in one batched call."""
    masks: list[np.ndarray | None] = [None] * len(pairs)
    quality: list[float | None] = [None] * len(pairs)
    for idx in _by_shape(pairs).values():
        valid = torch.from_numpy(np.stack([pairs[i].valid for i in idx]))[:, None]
        mask, _, q = semantic_mask(_smoothed(pairs, idx, params["input_scale"], params["sigma"]), valid,
                                   params["layer_weights"],
                                   params["threshold"], params["k"], params["floor"], with_quality)
        for j, i in enumerate(idx):
            masks[i] = mask[j, 0].numpy() >= 0.5
            quality[i] = float(q[j]) if q is not None else None
    return masks, quality


def sweep_semantic(pairs: list[Pair]) -> list[dict[str, Any]]:
    grid = GRIDS["aligned_semantic"]
    rows = []
    for scale, sigma, weights, (method, k), floor in itertools.product(
            grid["input_scale"], grid["sigma"], grid["layer_weights"], grid["threshold"], grid["floor"]):
        params = {"input_scale": scale, "layer_weights": weights, "sigma": sigma, "threshold": method, "k": k,
                  "floor": floor}
        rows.append({"params": params, "f1": mean_f1(f1_rows(pairs, _semantic(pairs, params)[0]))})
    return rows


def semantic_fp(noedit: list[Pair], params: dict[str, Any]) -> float:
    return fp_rate(_semantic(noedit, params)[0])


def semantic_quality(pairs: list[Pair], params: dict[str, Any]) -> tuple[list[float], list[float | None]]:
    masks, quality = _semantic(pairs, params, with_quality=True)
    return quality, f1_rows(pairs, masks)


# ---------------------------------------------------------------------------------------------- report


def choose(rows: list[dict[str, Any]], fp_of: Callable[[dict[str, Any]], float] | None, max_fp: float | None,
           sane: Callable[[dict[str, Any]], bool]) -> tuple[dict[str, Any], int]:
    """The best row by F1 whose no-edit FP rate is <= ``max_fp`` (when given) and that finds the contract's
    sanity edit (:mod:`benchmarks.generators.sanity`); returns it and how many better rows the sanity check
    refused. F1 ties go to the row with fewer false positives."""
    if max_fp is not None and fp_of is None:
        raise SystemExit("--max-fp needs --noedit (the round-trip-only pairs the rate is measured on)")
    refused = 0
    for row in sorted(rows, key=lambda r: (-r["f1"], r.get("fp_noedit", math.inf))):
        if max_fp is not None and row.setdefault("fp_noedit", fp_of(row["params"])) > max_fp:
            continue
        if not sane(row["params"]):
            row["sanity"] = False
            refused += 1
            continue
        return row, refused
    raise SystemExit(f"no setting passes (no-edit FP <= {max_fp}, sanity edit found); raise --max-fp or widen GRIDS")


def _fmt(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={list(v) if isinstance(v, tuple) else v}" for k, v in params.items())


def table(rows: list[dict[str, Any]], top: int) -> str:
    best = sorted(rows, key=lambda r: -r["f1"])[:top]  # the FP rate is scored for (at least) these
    lines = [f"{'F1/img':>7} {'FP noedit':>10}  parameters"]
    for r in best:
        fp = f"{r['fp_noedit']:.4f}" if "fp_noedit" in r else "-"
        note = "  (misses the sanity edit)" if r.get("sanity") is False else ""
        lines.append(f"{r['f1']:7.4f} {fp:>10}  {_fmt(r['params'])}{note}")
    return "\n".join(lines)


def yaml_lines(params: dict[str, Any], label: str) -> str:
    out = [f"chosen_on: {label}"]
    for k, v in params.items():
        out.append(f"{k}: {list(v) if isinstance(v, tuple) else v}")
    return "\n".join(out)


def spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    if len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def quality_report(quality: list[float], f1: list[float | None]) -> str:
    pairs = [(q, f) for q, f in zip(quality, f1) if f is not None]
    rho = spearman([q for q, _ in pairs], [f for _, f in pairs])
    rows = [{"f1": f, "quality": q} for q, f in zip(quality, f1)]
    lines = [f"quality vs per-pair F1: Spearman {rho:.3f} over {len(pairs)} manipulated pairs"]
    for t in QUALITY_THRESHOLDS:
        r = f1_with_and_without_filter(rows, t)
        lines.append(f"  quality >= {t:.2f}: F1 {r['f1_per_image_filtered']:.4f} on {r['n_kept']} kept pairs "
                     f"(all: {r['f1_per_image']:.4f} on {r['n_pairs']}; {r['n_excluded']} excluded)")
    return "\n".join(lines)


def build(name: str, base: dict[str, Any], params: dict[str, Any]) -> Any:
    """The generator with the config's values overridden by ``params``."""
    from benchmarks.generators.base import create_generator

    kwargs = {**base, **{k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}}
    kwargs.pop("chosen_on", None)
    return create_generator(name, **kwargs).eval()


def passes_sanity(name: str, base: dict[str, Any], params: dict[str, Any]) -> bool:
    from benchmarks.generators.sanity import finds_the_sanity_edit

    return finds_the_sanity_edit(build(name, base, params))


def check(name: str, params: dict[str, Any], folder: Path, limit: int | None, base: dict[str, Any]) -> float:
    """F1 of the generator built with the chosen values, through the harness's evaluation loop."""
    from benchmarks.evaluation.generators import evaluate_generator

    generator = build(name, base, params)
    dataset = PairsDataset(folder, require_mask=True)
    if limit is not None:
        dataset.records = dataset.records[:limit]  # the first `limit` pairs, as the sweep used
    result = evaluate_generator(generator, dataset, batch_size=16, progress=False)
    return float(result.metrics["f1_per_image"])


def test_photos_in(choice: str, overrides: list[str]) -> bool:
    """Whether a dataset config name draws its pairs from test or holdout photos (folders: not known)."""
    from benchmarks.config import compose, group_options
    from benchmarks.data.datasets import synth_config
    from benchmarks.synth.build import set_photos

    if choice not in group_options("dataset"):
        return False
    ds = compose([*overrides, f"dataset={choice}"]).dataset
    if ds.source != "synth":
        return False
    suite = synth_config(compose([*overrides, f"synth={ds.suite}"]))
    pools = suite.world.pools()
    return bool(set(set_photos(suite, str(ds.set))) & (set(pools["test"]) | set(pools["holdout"])))


def refuse_test_sets(choices: list[str], overrides: list[str]) -> None:
    """Stop before anything is built when a set drawn from test or holdout photos is named for tuning."""
    from benchmarks.config import compose

    tests = set(compose(overrides).profile.test_datasets)
    for choice in choices:
        if choice in tests or test_photos_in(choice, overrides):
            raise SystemExit(f"{choice}: drawn from the test or holdout photos; choose thresholds on the validation "
                             "split only (synth_val, or round-trip-only pairs made from val-pool photos)")


def resolve_folder(choice: str, overrides: list[str]) -> tuple[str, Path]:
    """(name, folder) of a pairs folder or a dataset config name (a synthetic set is built on first use)."""
    from benchmarks.config import compose
    from benchmarks.data.datasets import pair_datasets

    found = pair_datasets(compose(overrides), choice, overrides)
    if len(found) != 1:
        raise SystemExit(f"{choice}: names {len(found)} datasets; give one folder or dataset name")
    return found[0]


def config_params(name: str, overrides: list[str]) -> dict[str, Any]:
    from omegaconf import OmegaConf

    from benchmarks.config import compose

    cfg = OmegaConf.to_container(compose([*overrides, f"generator={name}"]).generator, resolve=True)
    cfg.pop("name")
    return cfg


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True,
                        help="validation pairs: a folder (manifest.jsonl with masks) or a dataset name (synth_val)")
    parser.add_argument("--label", default=None, help="name recorded as chosen_on (default: the dataset's name)")
    parser.add_argument("--noedit", default=None,
                        help="pairs whose only change is the editor round trip: a folder or a name (synth_val_noedit)")
    parser.add_argument("--profile", default="cpu-quick", help="config profile (sizes of a synthetic set it builds)")
    parser.add_argument("--max-fp", type=float, default=None, help="choose only settings with no-edit FP rate <= this")
    parser.add_argument("--generator", default="aligned_diff,aligned_semantic")
    parser.add_argument("--limit", type=int, default=None, help="use the first N pairs of each folder")
    parser.add_argument("--top", type=int, default=8, help="rows of the table per generator")
    parser.add_argument("--threads", type=int, default=1, help="torch and OpenCV threads (default 1)")
    parser.add_argument("--json", default=None, help="write every setting's scores here")
    parser.add_argument("overrides", nargs="*", help="config overrides (key=value), as for bench")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    import cv2

    cv2.setNumThreads(args.threads)
    torch.set_num_threads(args.threads)
    overrides = [f"profile={args.profile}", *args.overrides]
    refuse_test_sets([args.dataset] + ([args.noedit] if args.noedit else []), overrides)
    dataset_name, folder = resolve_folder(args.dataset, overrides)
    noedit_folder = resolve_folder(args.noedit, overrides)[1] if args.noedit else None
    label = args.label or dataset_name
    names = [n.strip() for n in args.generator.split(",") if n.strip()]
    unknown = sorted(set(names) - set(GRIDS))
    if unknown:
        raise SystemExit(f"--generator {unknown}: this script tunes {sorted(GRIDS)}")
    print(f"tuning on {folder} (label {label!r}); parameters chosen here must come from a validation split")
    report: dict[str, Any] = {"dataset": str(folder), "label": label,
                              "noedit": str(noedit_folder) if noedit_folder else None, "generators": {}}
    registered: dict[RegistrationConfig, tuple[list[Pair], list[Pair]]] = {}
    for name in names:
        base = config_params(name, overrides)
        reg_cfg = RegistrationConfig.from_dict(base.get("registration"))
        start = time.perf_counter()
        if reg_cfg not in registered:
            pairs = load_pairs(folder, reg_cfg, args.limit, need_mask=True)
            noedit = load_pairs(noedit_folder, reg_cfg, args.limit, need_mask=False) if noedit_folder else []
            registered[reg_cfg] = (pairs, noedit)
            methods: dict[str, int] = {}
            for p in pairs + noedit:
                methods[p.method] = methods.get(p.method, 0) + 1
            print(f"registered {len(pairs)} pairs (+{len(noedit)} no-edit) in {time.perf_counter() - start:.1f} s: "
                  + ", ".join(f"{k} {v}" for k, v in sorted(methods.items())))
        pairs, noedit = registered[reg_cfg]
        if name == "aligned_diff":
            rows = sweep_diff(pairs)
            fp_of = partial(diff_fp, noedit) if noedit else None
        else:
            generator = build(name, base, {})
            for scale in GRIDS[name]["input_scale"]:
                generator.input_scale = scale
                semantic_distances(pairs + noedit, generator)
            rows = sweep_semantic(pairs)
            fp_of = partial(semantic_fp, noedit) if noedit else None
        if fp_of is not None:
            add_noedit_fp(rows, fp_of, args.top)
        best, refused = choose(rows, fp_of, args.max_fp, partial(passes_sanity, name, base))
        quality, f1 = (diff_quality if name == "aligned_diff" else semantic_quality)(pairs, best["params"])
        seconds = time.perf_counter() - start
        checked = check(name, best["params"], folder, args.limit, base)
        print(f"\n== {name}: {len(rows)} settings on {len(pairs)} pairs in {seconds:.0f} s")
        print(table(rows, args.top))
        rule = "max F1" if args.max_fp is None else f"max F1 with no-edit FP <= {args.max_fp}"
        print(f"\nchosen ({rule}, finding the sanity edit; {refused} better settings refused for missing it):")
        print(yaml_lines(best["params"], label))
        print(quality_report(quality, f1))
        print(f"check: {name} built with these values scores F1 {checked:.4f} through the evaluation loop "
              f"(sweep: {best['f1']:.4f})")
        report["generators"][name] = {"chosen": best, "check_f1": checked, "seconds": round(seconds, 1),
                                      "refused_by_sanity": refused, "rows": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=list) + "\n")
        print(f"\nall settings: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
