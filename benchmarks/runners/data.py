"""`bench data synth` and `bench data check`."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from omegaconf import DictConfig

from benchmarks.config import check_option, compose, save_resolved, to_container
from benchmarks.synth.build import SynthConfig, build_suite, format_stats, suite_dir

log = logging.getLogger(__name__)


def synth_config(cfg: DictConfig) -> SynthConfig:
    return SynthConfig.from_dict(to_container(cfg.synth))


def ensure_suite(cfg: DictConfig, force: bool = False, progress: bool = True) -> Path:
    """Build (or reuse) the synthetic suite `cfg.synth` describes; return its folder."""
    scfg = synth_config(cfg)
    root = build_suite(scfg, cfg.paths.data, force=force, progress=progress)
    save_resolved(cfg, root)
    return root


def dataset_root(cfg: DictConfig, dataset: DictConfig, overrides: list[str] | None = None) -> Path:
    """Folder of a synthetic dataset entry (building its suite on first use)."""
    if dataset.source != "synth":
        raise ValueError(f"dataset {dataset.name!r} is not synthetic (source={dataset.source!r})")
    suite_cfg = cfg if cfg.synth.name == dataset.suite else compose([*(overrides or []), f"synth={dataset.suite}"])
    scfg = synth_config(suite_cfg)
    root = suite_dir(scfg, suite_cfg.paths.data)
    if not (root / "DONE").is_file():
        root = ensure_suite(suite_cfg)
    return root / dataset.set


def synth_command(args: argparse.Namespace) -> int:
    check_option("profile", args.profile)
    check_option("synth", args.synth)
    cfg = compose([f"profile={args.profile}", f"synth={args.synth}", *args.overrides], command="data synth")
    root = ensure_suite(cfg, force=args.force)
    stats = json.loads((root / "stats.json").read_text())
    print(format_stats(stats))
    print(f"suite '{stats['suite']}' ({stats['hash']}) written in {stats['seconds']} s: {root}")
    return 0


def check_command(args: argparse.Namespace) -> int:
    from benchmarks.runners.check import check_dataset

    report = check_dataset(Path(args.path), adapter=args.adapter, limit=args.limit)
    print(json.dumps(report, indent=1))
    return 0 if not report["bad"] else 1
