"""`bench data synth` (write the synthetic suite) and `bench data check` (decode a dataset, report it)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.config import check_option, compose
from benchmarks.data.check import check_dataset
from benchmarks.data.datasets import ensure_suite
from benchmarks.io import read_json
from benchmarks.synth.build import format_stats


def synth_command(args: argparse.Namespace) -> int:
    """Build (or reuse) the suite --synth describes and print its per-set statistics."""
    check_option("profile", args.profile)
    check_option("synth", args.synth)
    cfg = compose([f"profile={args.profile}", f"synth={args.synth}", *args.overrides], command="data synth")
    root = ensure_suite(cfg, force=args.force)
    stats = read_json(root / "stats.json")
    print(format_stats(stats))
    print(f"suite '{stats['suite']}' ({stats['hash']}) written in {stats['seconds']} s: {root}")
    return 0


def check_command(args: argparse.Namespace) -> int:
    """Print the JSON report of `path`; exit 1 when any item is bad."""
    report = check_dataset(Path(args.path), adapter=args.adapter, limit=args.limit)
    print(json.dumps(report, indent=1))
    return 0 if not report["bad"] else 1
