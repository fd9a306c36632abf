"""`bench eval-detector`: test trained detectors on IML datasets (with the optional robustness sweep) and
publish the training run's detector leaderboard (what is measured and written: :mod:`benchmarks.evaluation.detectors`).

Each detector's checkpoint (``best.pt`` of ``<paths.runs>/detectors/<train-name>/<detector>/``, or
``--checkpoint``) is run on every test set: synth_* configs use ``<suite>/<set>/iml.json`` (manipulated
images plus authentic negatives), IML configs their list or adapter, a path any IML list.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from omegaconf import DictConfig

from benchmarks.builders import implemented
from benchmarks.config import check_option, compose, expand
from benchmarks.data.datasets import iml_test_sets
from benchmarks.data.iml import ImlItem
from benchmarks.evaluation.detectors import (constant_references, evaluate_checkpoint, find_checkpoint, gather_tables,
                                             testing, uses_sweep)
from benchmarks.reporting.detectors import collect_run, write_detector_report
from benchmarks.training.data import train_name
from benchmarks.training.detectors import run_dir, runs_root


def publish(cfg: DictConfig, train: str, sets: list[tuple[str, list[ImlItem]]], args: argparse.Namespace) -> Path:
    """The training run's detector leaderboard in ``<results>/leaderboards/detectors_<train>.md`` (with
    metrics.csv and val_curves.csv in ``<results>/detectors/<train>/``), over every detector of the run
    that has been tested on these sets, beside the all-zero / all-one references."""
    run = runs_root(cfg, train)
    tested = sorted(p.name for p in run.iterdir() if (p / "summary.json").is_file())
    metrics, curves, summaries = collect_run(run, tested, [d for d, _ in sets])
    trained = sorted({s.get("command") or "" for s in summaries.values()} - {""})
    reproduce = trained or [f"bench train-detector --train {args.train} --profile {args.profile}"
                            f"{f' --name {args.name}' if args.name else ''}  # training overrides: <run>/config.yaml"]
    reproduce.append(getattr(args, "command_line", None) or " ".join(
        ["bench eval-detector", f"--train {args.train}", f"--profile {args.profile}",
         *([f"--name {args.name}"] if args.name else []), *args.overrides]))
    return write_detector_report(Path(cfg.paths.results), train, metrics, curves, summaries,
                                 constant_references(cfg, sets), reproduce)


def eval_detector_command(args: argparse.Namespace) -> int:
    """Test each detector's checkpoint on the test sets, print a table, publish the run's leaderboard."""
    check_option("profile", args.profile)
    overrides = [f"profile={args.profile}", *args.overrides, *([f"train.run_name={args.name}"] if args.name else [])]
    cfg = compose(overrides, command="eval-detector")
    detectors = implemented("detector", expand("detector", args.detector, cfg), args.detector)
    if args.checkpoint and len(detectors) != 1:
        raise ValueError(f"--checkpoint names one model; pass one --detector (got {detectors})")
    sweep = uses_sweep(testing(cfg), args.robustness)
    name = train_name(cfg, args.train)
    sets = iml_test_sets(cfg, args.dataset, overrides)
    lines = []
    for detector in detectors:
        dcfg = compose([*overrides, f"detector={detector}"], command="eval-detector")
        checkpoint = find_checkpoint(run_dir(dcfg, name, detector), detector, args.checkpoint)
        results = evaluate_checkpoint(dcfg, detector, checkpoint, sets, sweep=sweep)
        for dname, m in results.items():
            lines.append(f"| {detector} | {dname} | {m['f1_per_image']:.4f} | {m['iou_per_image']:.4f} | "
                         f"{m['f1_best_thr_oracle']:.4f} | {m['pixel_auc_pooled']:.4f} | {m['image_auc']:.4f} |")
        print("\n".join(str(p) for p in gather_tables(checkpoint.parent / "eval")))
    print("| detector | dataset | F1 per image @0.5 | IoU per image @0.5 | F1 oracle thr | pixel AUC pooled | "
          "image AUC |\n|---|---|---|---|---|---|---|")
    print("\n".join(lines))
    if not args.checkpoint:
        print(f"leaderboard of the training run, with all-zero / all-one references: {publish(cfg, name, sets, args)}")
    return 0
