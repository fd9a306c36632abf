"""`bench train-sigma`: prepare SIGMA's data (cached), train Stage I and Stage II, export the heads; or
train every ablation (the library: :mod:`benchmarks.sigma_training`).

Outputs: a work folder ``<paths.home>/sigma/<key>/`` (stage checkpoints for exact resume, logs) and the
small exported checkpoint ``sigma.export`` (default ``results/sigma/<profile>/sigma.pt``) with a JSON
sidecar (config, data, timings) that the ``sigma`` generator loads.
"""

from __future__ import annotations

import argparse

from benchmarks.config import check_option, compose
from benchmarks.sigma_training.ablations import run_ablations
from benchmarks.sigma_training.export import train_and_export


def train_sigma_command(args: argparse.Namespace) -> int:
    """Train and export SIGMA (or grounding_only), or every ablation with its report."""
    check_option("profile", args.profile)
    overrides = [f"profile={args.profile}", *args.overrides]
    cfg = compose(overrides, command="train-sigma")
    if args.variant == "ablations":
        path = run_ablations(cfg, overrides)
        print(path.read_text())
        print(path)
        return 0
    variant = "grounding_only" if args.variant == "grounding_only" else "sigma (full)"
    out, summary, data_info = train_and_export(cfg, variant, stage=args.stage)
    data_note = "data from cache" if data_info.get("from_cache") else f"data prepared in {data_info['seconds']} s"
    print(f"SIGMA trained in {summary['total_seconds']} s ({data_note}): {out}")
    return 0
