"""`bench leaderboard` and `bench plots`: tables and figures from the cells `bench run` published.

Both read only ``<paths.results>/runs/`` (never checkpoints), so they work on a fresh clone from the committed
results. Outputs: ``<paths.results>/leaderboards/downstream{.csv,_summary.csv,.md,_headline.json}`` and
``<paths.results>/figures/*.png|pdf``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from omegaconf import DictConfig

from benchmarks.config import check_option, compose
from benchmarks.reporting import downstream, plots


# overrides that change how a run looks, not what it computes (left out of the reproduce line)
INERT = ("train.progress=", "train.num_workers=", "profile.num_workers=", "train.resume=", "train.checkpoint_every=")


def _runs(cfg: DictConfig) -> Path:
    return Path(cfg.paths.results) / "runs"


def _load(cfg: DictConfig):
    runs = _runs(cfg)
    frame = downstream.collect(runs)
    if frame.empty:
        raise FileNotFoundError(f"{runs}: no finished cells (cell.json); run `bench run --generator sigma,pixel_diff,"
                                "oracle --detector all` first")
    return frame, downstream.mask_quality(runs)


def reproduce_command(frame, cfg: DictConfig) -> str:
    """The `bench run` line that regenerates the cells in `frame`."""
    from benchmarks.config import expand

    gens = ",".join(plots.generator_order(set(frame["generator"])))
    dets = set(frame["detector"])
    dets = "all" if dets == set(expand("detector", "all", cfg)) else ",".join(sorted(dets))
    profile = ",".join(sorted(set(frame["profile"].dropna()))) or "cpu-quick"
    overrides = sorted({" ".join(o for o in line.split() if not o.startswith(INERT))
                        for line in frame["overrides"].fillna("")})
    extra = f" {overrides[0]}" if len(overrides) == 1 and overrides[0] else ""
    line = f"bench run --generator {gens} --detector {dets} --profile {profile}{extra}"
    return line if len(overrides) <= 1 else line + f"  # cells were made with different overrides: {overrides}"


def write_leaderboard(cfg: DictConfig, loaded: tuple | None = None) -> list[Path]:
    frame, quality = loaded or _load(cfg)
    md, paths = downstream.write_leaderboard(frame, quality, Path(cfg.paths.results) / "leaderboards",
                                             reproduce_command(frame, cfg))
    print(md)
    return paths


def draw_plots(cfg: DictConfig, loaded: tuple | None = None) -> list[Path]:
    frame, quality = loaded or _load(cfg)
    return plots.draw_all(frame, quality, _runs(cfg), Path(cfg.paths.results) / "figures")


def leaderboard_and_plots(cfg: DictConfig) -> int:
    loaded = _load(cfg)  # the cells are read once for both
    paths = write_leaderboard(cfg, loaded) + draw_plots(cfg, loaded)
    print("\n".join(str(p) for p in paths))
    return 0


def leaderboard_command(args: argparse.Namespace) -> int:
    check_option("profile", args.profile)
    cfg = compose([f"profile={args.profile}", *args.overrides], command="leaderboard")
    print("\n".join(str(p) for p in write_leaderboard(cfg)))
    return 0


def plots_command(args: argparse.Namespace) -> int:
    check_option("profile", args.profile)
    cfg = compose([f"profile={args.profile}", *args.overrides], command="plots")
    print("\n".join(str(p) for p in draw_plots(cfg)))
    return 0


__all__ = ["draw_plots", "leaderboard_and_plots", "leaderboard_command", "plots_command", "write_leaderboard"]
