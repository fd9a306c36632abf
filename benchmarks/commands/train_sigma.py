"""`bench train-sigma`: prepare SIGMA's data (the cached feature bank, or the stream), train Stage I and
Stage II, export the heads; or train every ablation, or the leave-one-family-out models (the library:
:mod:`benchmarks.sigma_training`).

Outputs: a work folder ``<paths.home>/sigma/<key>/`` (stage checkpoints for exact resume, logs, and for
streamed data ``skipped.jsonl``) and the small exported checkpoint ``sigma.export`` (default
``results/sigma/<profile>/sigma.pt``) with a JSON sidecar (config, data, timings) that the ``sigma``
generator loads. Under ``torchrun`` the processes join one group and train data-parallel; rank 0 writes.
"""

from __future__ import annotations

import argparse
import logging
import os

from benchmarks.config import check_option, compose
from benchmarks.distributed import init_process_group, is_main, leave_process_group
from benchmarks.sigma_training.ablations import run_ablations
from benchmarks.sigma_training.export import train_and_export
from benchmarks.sigma_training.lofo import run_lofo


def train_sigma_command(args: argparse.Namespace) -> int:
    """Train and export SIGMA (or grounding_only), or every ablation with its report."""
    check_option("profile", args.profile)
    overrides = [f"profile={args.profile}", *args.overrides]
    cfg = compose(overrides, command="train-sigma")
    if args.variant in ("ablations", "lofo"):
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise ValueError(f"--variant {args.variant} trains its variants in one process; run it without torchrun")
        if args.variant == "ablations":
            rows = args.rows.split(",") if getattr(args, "rows", None) else None
            path = run_ablations(cfg, overrides, rows)
        else:
            path = run_lofo(cfg, overrides, args.family.split(",") if getattr(args, "family", None) else None)
        print(path.read_text())
        print(path)
        return 0
    variant = "grounding_only" if args.variant == "grounding_only" else "sigma (full)"
    joined = init_process_group()
    try:
        if not is_main():  # one process speaks
            logging.getLogger().setLevel(logging.WARNING)
        out, summary, data_info = train_and_export(cfg, variant, stage=args.stage)
    finally:
        leave_process_group(joined)
    if not is_main():
        return 0
    data_note = "data from cache" if data_info.get("from_cache") else f"data prepared in {data_info['seconds']} s"
    if data_info.get("source") == "stream":
        data_note = f"data streamed, {sum(summary.get('skipped', {}).values())} pair(s) skipped"
    print(f"SIGMA trained in {summary['total_seconds']} s ({data_note}): {out}")
    return 0
