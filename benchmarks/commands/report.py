"""`bench leaderboard` and `bench plots`: the downstream table and figures from the cells in
``<paths.results>/runs/`` (the library: :mod:`benchmarks.reporting.runs`)."""

from __future__ import annotations

import argparse

from benchmarks.config import check_option, compose
from benchmarks.reporting.runs import draw_plots, write_leaderboard


def leaderboard_command(args: argparse.Namespace) -> int:
    """Write and print the downstream leaderboard."""
    check_option("profile", args.profile)
    cfg = compose([f"profile={args.profile}", *args.overrides], command="leaderboard")
    md, paths = write_leaderboard(cfg)
    print(md)
    print("\n".join(str(p) for p in paths))
    return 0


def plots_command(args: argparse.Namespace) -> int:
    """Draw the figures; print their files."""
    check_option("profile", args.profile)
    cfg = compose([f"profile={args.profile}", *args.overrides], command="plots")
    print("\n".join(str(p) for p in draw_plots(cfg)))
    return 0
