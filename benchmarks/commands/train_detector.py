"""`bench train-detector`: train IML detectors on an IML training list with the one trainer.

What ``--train`` accepts: :mod:`benchmarks.training.data`; what a run folder holds and how it resumes:
:mod:`benchmarks.training.detectors`. Under ``torchrun`` the processes join one group (DDP).
"""

from __future__ import annotations

import argparse
import logging
import sys

from benchmarks.builders import implemented
from benchmarks.config import check_option, compose, expand
from benchmarks.data.errors import SkipLog
from benchmarks.distributed import barrier, init_process_group, leave_process_group, rank_world
from benchmarks.training.data import resolve_training_data
from benchmarks.training.detectors import run_dir, train_one
from detectors.train import NonFiniteLossError


def train_detector_command(args: argparse.Namespace) -> int:
    """Train each detector on --train (validated on --val or a held-out share); one line per detector."""
    check_option("profile", args.profile)
    overrides = [f"profile={args.profile}", *args.overrides, *([f"train.run_name={args.name}"] if args.name else [])]
    cfg = compose(overrides, command="train-detector")
    detectors = implemented("detector", expand("detector", args.detector, cfg), args.detector)
    joined = init_process_group()
    try:
        rank = rank_world()[0]
        if rank != 0:  # one process speaks; the others wait for rank 0 to list (and build the suite) first
            logging.getLogger().setLevel(logging.WARNING)
            barrier()
        listing = SkipLog()
        data = resolve_training_data(cfg, args.train, args.val, overrides, skip_log=listing if rank == 0 else None)
        if rank == 0:
            barrier()
        if listing.total:
            print(f"skipped {listing.total} listed item(s) whose files are missing: {listing.summary()}")
        for name in detectors:
            dcfg = compose([*overrides, f"detector={name}"], command="train-detector")
            try:
                summary = train_one(dcfg, name, data, skip_log=listing, force=args.force,
                                    command=getattr(args, "command_line", None))
            except NonFiniteLossError as exc:
                if args.verbose:
                    raise
                print(f"bench train-detector: error: {name}: {exc}", file=sys.stderr)
                return 2
            if rank == 0:
                best = summary["result"]["best"]
                score = f"{best['metric']} {best['value']:.4f} at epoch {best['epoch']}" if best else "no validation"
                print(f"[done] {name}: {summary['result']['steps']} steps, {summary['result']['nonfinite_steps']} "
                      f"skipped non-finite, best {score} -> {run_dir(dcfg, data.name, name)}")
    finally:
        leave_process_group(joined)
    return 0
