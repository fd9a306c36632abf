"""`bench eval-generators`: score mask generators against ground-truth masks and write the leaderboards
(what is written where: :mod:`benchmarks.evaluation.generators`)."""

from __future__ import annotations

import argparse

from benchmarks.builders import implemented
from benchmarks.config import check_option, compose, expand
from benchmarks.data.datasets import pair_datasets
from benchmarks.evaluation.generators import run_eval
from benchmarks.reporting.leaderboard import headline_markdown


def eval_generators_command(args: argparse.Namespace) -> int:
    """Score each generator on each dataset; print the headline table and the files written."""
    check_option("profile", args.profile)
    overrides = [f"profile={args.profile}", *args.overrides]
    cfg = compose(overrides, command="eval-generators")
    generators = implemented("generator", expand("generator", args.generator, cfg), args.generator)
    datasets = pair_datasets(cfg, args.dataset, overrides)
    tag = args.tag or ("generators" if args.dataset == "all" else "generators_" + "_".join(n for n, _ in datasets))
    out = run_eval(cfg, generators, datasets, tag, overrides, skip_untrained=args.generator == "all")
    print(headline_markdown(out["table"], [n for n, _ in datasets]))
    print("\n".join(out["paths"]))
    return 0
